{{- define "trackstream.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "trackstream.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "trackstream.secretName" -}}
{{- default (printf "%s-secrets" (include "trackstream.fullname" .)) .Values.existingSecret -}}
{{- end -}}

{{- define "trackstream.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "trackstream.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "trackstream.fullname" . }}-settings
  - secretRef:
      name: {{ include "trackstream.secretName" . }}
{{- end -}}
