# trackstream — two commands: `make run` (embedded, no services) and `make test` (real services, whole suite).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UI_STAMP := $(VENV)/.installed-ui

.PHONY: run test test-cluster test-unit lint typecheck venv clean browser helm

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ui]'
	touch $(STAMP)

# `make run` needs the gateway and the MLflow UI, not the test tools. The UI is static files inside the
# mlflow package (ingest/ui.py never imports it), so the ui extra is installed without its dependencies
# (pandas, scikit-learn, pyarrow, ...): a fresh clone serves in well under a minute on a warm cache.
$(UI_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e .
	$(PY) -m pip install -q --no-deps $$($(PY) -c "import tomllib; print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['ui']))")
	touch $(UI_STAMP)

venv: $(STAMP)

## The embedded default: gateway and MLflow UI on http://127.0.0.1:5000 (TRACKSTREAM_PORT), data under ./data.
run: $(UI_STAMP)
	$(VENV)/bin/trackstream serve

## Install and start Kafka, ClickHouse and SeaweedFS, check lint, types and import layers, then run the
## whole suite (all but tests/cluster, which needs the 3-broker cluster: `make test-cluster`).
test: $(STAMP) lint typecheck services-up browser helm
	source .services/env && $(PY) -m pytest -q -ra --ignore=tests/cluster

## Also start a 3-broker Kafka cluster (deploy/local: replication 3, min.insync.replicas 2) and run the
## fault tests that need it. `make services-down` stops it with the rest.
test-cluster: $(STAMP) services-up
	$(SERVICES_SH) cluster-up
	source .services/env && source .services/cluster-env && $(PY) -m pytest -q -ra tests/cluster

test-unit: $(STAMP) browser
	$(PY) -m pytest -q -ra -m "not services" --ignore=tests/cluster

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports --no-cache --no-logo

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## Debian's headless Chromium and its driver, for the browser test (tests/ui); nothing is downloaded at run time.
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

## helm, for the chart test (tests/ops/test_deploy.py): built once from its Go module into .tools/ (a few
## minutes on 2 cores; the Go module cache keeps the sources).
HELM_VERSION := v3.22.0
.tools/helm:
	GOBIN=$(CURDIR)/.tools go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

helm: .tools/helm

clean:
	rm -rf $(VENV) data

# --- services (deploy/local) ---
# Kafka, ClickHouse and SeaweedFS (S3) as local processes on 127.0.0.1; see deploy/local/README.md.
SERVICES_SH := bash deploy/local/services.sh

.PHONY: services-install services-up services-down services-status services-env services-purge services-cluster-up

services-install:
	$(SERVICES_SH) install

services-up:
	$(SERVICES_SH) up

services-down:
	$(SERVICES_SH) down

services-cluster-up:
	$(SERVICES_SH) cluster-up

services-status:
	$(SERVICES_SH) status

services-env:
	@$(SERVICES_SH) env

services-purge:
	$(SERVICES_SH) down --purge
# --- end services ---

## Side-by-side benchmark, never a test (see bench/README.md), e.g.
##   make bench BENCH_ARGS="--system trackstream-kafka --duration 60"
## Without BENCH_ARGS: the ingest load on mlflow server and trackstream-kafka, their summary (ratios), then
## the read figures of mlflow server, trackstream-kafka and -embedded side by side (bench/reads.py, READS_ARGS),
## then run set-up for sweeps in every system, side by side with mlflow server (bench/setup.py; SETUP_ARGS),
## search at 100,000 runs (bench-search), the 2 GiB artifact (bench-artifacts), and last issue #14's table of
## every figure with its ratio to mlflow server and its target (bench/report.py → bench/results/TARGETS.md).
## About an hour on 2 cores.
.PHONY: bench bench-search bench-artifacts bench-chart
bench: $(STAMP)
	test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q -e '.[test,bench]'
ifdef BENCH_ARGS
	$(PY) -m bench.run $(BENCH_ARGS)
else
	$(PY) -m bench.run --system mlflow
	$(PY) -m bench.run --system trackstream-kafka
	$(PY) -m bench.run --report
	$(PY) -m bench.reads $(READS_ARGS)
	$(PY) -m bench.setup $(SETUP_ARGS)
	$(MAKE) --no-print-directory bench-search bench-artifacts
	$(PY) -m bench.report
endif

## runs/search over 100,000 runs and experiments/search over 10,000 experiments, HTTP p50/p95 per query: trackstream
## kafka and embedded, and mlflow server (SQLite) at SEARCH_MLFLOW_RUNS (filling its tables is quick, its searches
## take seconds a call at 100k runs). The fixture is written into each system's tables, not through its API.
SEARCH_MLFLOW_RUNS ?= 10000
bench-search: $(STAMP)
	test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q -e '.[test,bench]'
	source .services/env && $(PY) -m bench.search --systems trackstream-kafka,trackstream-embedded $(SEARCH_ARGS)
	source .services/env && $(PY) -m bench.search --runs $(SEARCH_MLFLOW_RUNS) $(SEARCH_ARGS)

## A 2 GiB file up and down through the gateway (kafka and embedded) and mlflow server's proxied artifacts, next to
## the object store's own throughput (minio client straight to SeaweedFS), with the servers' peak RSS.
bench-artifacts: $(STAMP)
	test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q -e '.[test,bench]'
	source .services/env && $(PY) -m bench.artifacts $(ARTIFACTS_ARGS)

## The run's chart view of a 1,000,000-point run drawn in headless Chromium (cold navigation and a click on its tab),
## with each load's waterfall: mlflow server, trackstream embedded and kafka, and a stub serving recorded answers from
## memory (the web app's own floor). CHART_ARGS e.g. "--systems trackstream-embedded --repeat 3".
bench-chart: $(STAMP) browser
	source .services/env && $(PY) -m bench.chart $(CHART_ARGS)

## Span ingestion (POST /v1/traces) side by side: mlflow server (SQLite), trackstream kafka and embedded.
bench-traces: $(STAMP)
	test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q -e '.[test,bench]'
	source .services/env && $(PY) -m bench.traces $(BENCH_TRACES_ARGS)
