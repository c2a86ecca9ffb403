#!/usr/bin/env bash
# shellcheck disable=SC2317  # functions are also called indirectly ("install_$c", "start_$svc", ...)
# Install, start and stop the three real services trackstream's tests need, as plain local
# processes on 127.0.0.1 (no Docker): Apache Kafka (KRaft, single node), ClickHouse server,
# SeaweedFS (S3 API, signed requests).
#
#   services.sh install                      install everything (cached, idempotent)
#   services.sh up [kafka|clickhouse|s3...]  install if needed, start, wait until healthy (no-op if up)
#   services.sh down [--purge]               stop what we started (by pidfile); --purge deletes data
#   services.sh purge                        delete the data/log dirs (services must be down)
#   services.sh status                       show state; exit 0 only if all are running and healthy
#   services.sh env                          print the TRACKSTREAM_* export lines
#   services.sh start|stop|kill SERVICE...   single-service restart for fault tests (same data dir);
#                                            kill = SIGKILL (crash), stop = graceful
#   services.sh cluster-up                   a 3-broker KRaft cluster (broker1..3) besides the rest;
#                                            writes .services/cluster-env; `down` stops it too
#   services.sh cluster-down [--purge]       stop the cluster (--purge deletes its data)
#   SERVICE: kafka, clickhouse, s3, or one of the cluster's broker1, broker2, broker3
#
# Environment (all optional):
#   TRACKSTREAM_CACHE            install cache           (default ~/.cache/trackstream)
#   TRACKSTREAM_SERVICES_DIR     data/log/pid dirs       (default <repo>/.services)
#   TRACKSTREAM_SVC_TIMEOUT      seconds to wait for health per service (default 120)
#   TRACKSTREAM_SVC_KAFKA_PORT (19092) TRACKSTREAM_SVC_KAFKA_CONTROLLER_PORT (19093)
#   TRACKSTREAM_SVC_CH_TCP_PORT (19000) TRACKSTREAM_SVC_CH_HTTP_PORT (18123)
#   TRACKSTREAM_SVC_S3_PORT (18333)  SeaweedFS internals: TRACKSTREAM_SVC_WEED_MASTER_PORT (19333),
#   TRACKSTREAM_SVC_WEED_VOLUME_PORT (18080), TRACKSTREAM_SVC_WEED_FILER_PORT (18888);
#   each SeaweedFS gRPC port is its HTTP port + 1.
#   TRACKSTREAM_SVC_CLUSTER_PORT (19500): cluster broker N listens on it + N, its controller on it + 10 + N.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
CACHE=${TRACKSTREAM_CACHE:-$HOME/.cache/trackstream}
SDIR=${TRACKSTREAM_SERVICES_DIR:-$REPO/.services}
TIMEOUT=${TRACKSTREAM_SVC_TIMEOUT:-120}

KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")
KAFKA_LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
# SeaweedFS: pinned Go pseudo-version (github.com/seaweedfs/seaweedfs). `go install pkg@version`
# refuses it because its go.mod has a replace directive, so the module is built as the main module.
WEED_MODULE=github.com/seaweedfs/seaweedfs
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
WEED=$CACHE/bin/weed

KAFKA_PORT=${TRACKSTREAM_SVC_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${TRACKSTREAM_SVC_KAFKA_CONTROLLER_PORT:-19093}
CH_TCP_PORT=${TRACKSTREAM_SVC_CH_TCP_PORT:-19000}
CH_HTTP_PORT=${TRACKSTREAM_SVC_CH_HTTP_PORT:-18123}
S3_PORT=${TRACKSTREAM_SVC_S3_PORT:-18333}
WEED_MASTER_PORT=${TRACKSTREAM_SVC_WEED_MASTER_PORT:-19333}
WEED_VOLUME_PORT=${TRACKSTREAM_SVC_WEED_VOLUME_PORT:-18080}
WEED_FILER_PORT=${TRACKSTREAM_SVC_WEED_FILER_PORT:-18888}
# The cluster's port base is recorded by cluster-up, so a later `start brokerN` from a shell without
# the variable does not configure that broker with other ports (it then never reaches its quorum).
CLUSTER_PORT=${TRACKSTREAM_SVC_CLUSTER_PORT:-$(cat "$SDIR/cluster.port" 2>/dev/null || echo 19500)}
CLUSTER_BROKERS=(broker1 broker2 broker3)

# the only identity in seaweedfs/s3.json (also used by deploy/docker-compose.yml): keep in sync
S3_ACCESS_KEY=trackstream
S3_SECRET_KEY=trackstream-secret
S3_BUCKET=trackstream
S3_REGION=us-east-1

ALL_SERVICES=(kafka clickhouse s3)

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root for: $*"; fi; }

apt_install() {  # apt_install pkg... : install the missing ones
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  as_root apt-get update -q >/dev/null || log "apt-get update reported errors; trying the install anyway"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

install_clickhouse() {
  if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then return 0; fi
  apt_install clickhouse-server clickhouse-client
}

install_kafka() {
  local stamp=$KAFKA_LIBS/.pom.sha256 want
  want=$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  local tmp=$KAFKA_LIBS.tmp.$$
  rm -rf "$tmp"; mkdir -p "$tmp"
  local mlog=$CACHE/kafka-$KAFKA_VERSION-mvn.log
  log "resolving Kafka $KAFKA_VERSION jars from Maven Central (log: $mlog)"
  if ! mvn -B -Dstyle.color=never -f "$KAFKA_POM" dependency:copy-dependencies -DoutputDirectory="$tmp" >"$mlog" 2>&1; then
    tail -n 30 "$mlog" >&2; rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed for $KAFKA_POM (full log: $mlog)"
  fi
  echo "$want" > "$tmp/.pom.sha256"
  rm -rf "$KAFKA_LIBS"; mv "$tmp" "$KAFKA_LIBS"
}

weed_ok() { [ -x "$WEED" ] && { [ ! -f "$WEED.version" ] || [ "$(cat "$WEED.version")" = "$WEED_VERSION" ]; }; }

install_weed() {
  local stamp=$WEED.version
  weed_ok && return 0
  command -v go >/dev/null || die "Go toolchain not found (needed to build SeaweedFS $WEED_VERSION)"
  local dir src wlog=$CACHE/weed-build.log
  mkdir -p "$CACHE/src" "$CACHE/bin"
  log "building SeaweedFS weed $WEED_VERSION (several minutes on 2 cores; cached afterwards; log: $wlog)"
  dir=$(go mod download -json "$WEED_MODULE@$WEED_VERSION" 2>"$wlog" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p') || true
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    cat "$wlog" >&2; die "go mod download $WEED_MODULE@$WEED_VERSION failed"
  fi
  src=$(mktemp -d "$CACHE/src/seaweedfs-$WEED_VERSION.XXXXXX")  # private: never shared with another build
  cp -r "$dir/." "$src"; chmod -R u+w "$src"
  if ! (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WEED.tmp" ./weed) >>"$wlog" 2>&1; then
    tail -n 30 "$wlog" >&2
    die "go build of SeaweedFS failed (source in $src, full log: $wlog)"
  fi
  mv "$WEED.tmp" "$WEED"
  echo "$WEED_VERSION" > "$stamp"
  rm -rf "$src"
}

cmd_install() {
  local t c
  # One install at a time per cache, whichever checkout (and so whichever services dir) asks: the
  # per-checkout lock of `up` does not serialize two worktrees building SeaweedFS into one cache.
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.install.lock"
  flock -w 1200 8 || die "could not lock $CACHE/.install.lock (another install still running?)"
  command -v curl >/dev/null || apt_install curl
  for c in clickhouse kafka weed; do
    t=$(now)
    "install_$c"
    log "install $c: done in $(elapsed "$t") s"
  done
}

installed() {  # quick check used by `up`
  command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null &&
    [ -f "$KAFKA_LIBS/.pom.sha256" ] && [ "$(cat "$KAFKA_LIBS/.pom.sha256")" = "$(sha256sum "$KAFKA_POM" | cut -d' ' -f1)" ] &&
    weed_ok && command -v curl >/dev/null
}

# ---------------------------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------------------------
svc_dir() { echo "$SDIR/$1"; }
pidfile() { echo "$SDIR/$1/pid"; }
svc_log() {
  case $1 in
    kafka) echo "$SDIR/kafka/log/kafka.log" ;;
    broker?) echo "$SDIR/$1/log/kafka.log" ;;
    clickhouse) echo "$SDIR/clickhouse/log/clickhouse-server.log (and clickhouse-server.err.log, stdout.log)" ;;
    s3) echo "$SDIR/s3/log/weed.log" ;;
  esac
}
svc_marker() {  # a string that must be in /proc/PID/cmdline, guards against PID reuse
  case $1 in
    kafka|broker?) echo "kafka.Kafka" ;;
    clickhouse) echo "$SDIR/clickhouse/config.xml" ;;
    s3) echo "-s3.port=" ;;
  esac
}
svc_ports() {
  case $1 in
    kafka) echo "$KAFKA_PORT $KAFKA_CONTROLLER_PORT" ;;
    broker?) echo "$(broker_port "$1") $(broker_controller_port "$1")" ;;
    clickhouse) echo "$CH_TCP_PORT $CH_HTTP_PORT" ;;
    s3) echo "$S3_PORT $((S3_PORT + 1)) $WEED_MASTER_PORT $((WEED_MASTER_PORT + 1)) $WEED_VOLUME_PORT $((WEED_VOLUME_PORT + 1)) $WEED_FILER_PORT $((WEED_FILER_PORT + 1))" ;;
  esac
}

running_pid() {  # prints the pid if the service we started is alive
  local pf pid
  pf=$(pidfile "$1")
  [ -f "$pf" ] || return 1
  pid=$(cat "$pf")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(svc_marker "$1")" || return 1
  echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports_free() {
  local p
  for p in $(svc_ports "$1"); do
    if port_open "$p"; then
      die "$1: port 127.0.0.1:$p is already in use by a process we did not start (no live pidfile $(pidfile "$1")). Free it or choose other ports (see the TRACKSTREAM_SVC_* variables in $0)."
    fi
  done
}

spawn() {  # spawn SERVICE LOGFILE CMD... : start detached in its own session, record the pid
  local svc=$1 logf=$2; shift 2
  # 8>&- 9>&- : do not leak the lock fds (see cmd_install, with_lock) into the long-running service
  (cd "$(svc_dir "$svc")" && exec setsid "$@" >>"$logf" 2>&1 </dev/null 8>&- 9>&-) &
  echo $! > "$(pidfile "$svc")"
}

wait_healthy() {  # wait_healthy SERVICE : poll health_SERVICE until ok, the process dies, or timeout
  local svc=$1 t0=$2 deadline=$((SECONDS + TIMEOUT))
  local pid
  pid=$(cat "$(pidfile "$svc")")
  while :; do
    # plain kill -0 here: right after spawn the pid may still show the forking shell's cmdline
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$(pidfile "$svc")"
      die "$svc exited during startup; see $(svc_log "$svc")"
    fi
    if "health_$svc" 2>/dev/null; then
      log "$svc up and healthy in $(elapsed "$t0") s (pid $(cat "$(pidfile "$svc")"))"
      return 0
    fi
    if [ $SECONDS -ge $deadline ]; then
      die "$svc not healthy after ${TIMEOUT}s (still running as pid $(cat "$(pidfile "$svc")"), left running for inspection; stop it with '$0 stop $svc'); see $(svc_log "$svc")"
    fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------------------------------------
# Kafka (KRaft, combined broker+controller, node.id 1)
# ---------------------------------------------------------------------------------------------
java_bin() { if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then echo "$JAVA_HOME/bin/java"; else echo java; fi; }

kafka_tool() {  # kafka_tool CLASS ARGS... : run a Kafka CLI class with quiet logging, 60 s max
  timeout 60 "$(java_bin)" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$SDIR/kafka/log4j2-tools.properties" -cp "$KAFKA_LIBS/*" "$@"
}

# kafka_properties DIR COMMENT NODE_ID VOTERS PORT CONTROLLER_PORT REPLICATION MIN_ISR: a combined
# broker+controller node's server.properties on stdout (single broker: 1 1; cluster: 3 2).
kafka_properties() {
  local d=$1 rf=$7 isr=$8
  cat <<EOF
# $2
process.roles=broker,controller
node.id=$3
controller.quorum.voters=$4
listeners=PLAINTEXT://127.0.0.1:$5,CONTROLLER://127.0.0.1:$6
advertised.listeners=PLAINTEXT://127.0.0.1:$5
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$d/data
num.partitions=4
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
EOF
}

kafka_configure() {
  local d=$SDIR/kafka
  mkdir -p "$d/data" "$d/log"
  kafka_logging "$d"
  kafka_properties "$d" "generated by deploy/local/services.sh" 1 "1@127.0.0.1:$KAFKA_CONTROLLER_PORT" \
    "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" 1 1 > "$d/server.properties"
  if [ ! -f "$d/data/meta.properties" ]; then
    local id
    id=$(kafka_tool kafka.tools.StorageTool random-uuid)
    kafka_tool kafka.tools.StorageTool format -t "$id" -c "$d/server.properties" >>"$d/log/kafka.log" 2>&1 \
      || die "kafka storage format failed; see $d/log/kafka.log"
  fi
}

kafka_logging() {  # kafka_logging DIR : log4j2 configs for a broker and for kafka_tool
  local d=$1
  mkdir -p "$d"
  cat > "$d/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
EOF
  cat > "$d/log4j2-tools.properties" <<'EOF'
status = error
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = ERR
EOF
}

start_kafka() {
  kafka_configure
  local d=$SDIR/kafka
  spawn kafka "$d/log/kafka.log" "$(java_bin)" -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$d/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$d/server.properties"
}

health_kafka() {
  port_open "$KAFKA_PORT" || return 1
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# Kafka cluster: three combined broker+controller nodes (broker1..3, node.id 1..3), replication
# factor 3, min.insync.replicas 2, so acks=all keeps being answered with one broker down.
# ---------------------------------------------------------------------------------------------
broker_id() { echo "${1#broker}"; }
broker_port() { echo $((CLUSTER_PORT + $(broker_id "$1"))); }
broker_controller_port() { echo $((CLUSTER_PORT + 10 + $(broker_id "$1"))); }
cluster_bootstrap() {
  local b out=()
  for b in "${CLUSTER_BROKERS[@]}"; do out+=("127.0.0.1:$(broker_port "$b")"); done
  (IFS=,; echo "${out[*]}")
}

broker_configure() {
  local b=$1 id d=$SDIR/$1 voters=() v
  id=$(broker_id "$b")
  for v in "${CLUSTER_BROKERS[@]}"; do voters+=("$(broker_id "$v")@127.0.0.1:$(broker_controller_port "$v")"); done
  mkdir -p "$d/data" "$d/log"
  kafka_logging "$d"
  {
    kafka_properties "$d" "generated by deploy/local/services.sh (cluster node $id of ${#CLUSTER_BROKERS[@]})" "$id" \
      "$(IFS=,; echo "${voters[*]}")" "$(broker_port "$b")" "$(broker_controller_port "$b")" 3 2
    cat <<EOF
unclean.leader.election.enable=false
# The controller fences a broker that stopped heartbeating after this long, and only then moves its
# partitions' leadership: the default 9 s was the whole write pause when a broker was SIGKILLed.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
EOF
  } > "$d/server.properties"
  if [ ! -f "$d/data/meta.properties" ]; then
    [ -s "$SDIR/cluster.id" ] || kafka_tool kafka.tools.StorageTool random-uuid > "$SDIR/cluster.id"
    kafka_tool kafka.tools.StorageTool format -t "$(cat "$SDIR/cluster.id")" -c "$d/server.properties" >>"$d/log/kafka.log" 2>&1 \
      || die "$b: kafka storage format failed; see $d/log/kafka.log"
  fi
}

start_broker() {
  local b=$1 d=$SDIR/$1
  broker_configure "$b"
  spawn "$b" "$d/log/kafka.log" "$(java_bin)" -Xms128m -Xmx384m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$d/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$d/server.properties"
}
start_broker1() { start_broker broker1; }
start_broker2() { start_broker broker2; }
start_broker3() { start_broker broker3; }

health_broker() {  # this broker answers a metadata request
  port_open "$(broker_port "$1")" || return 1
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$(broker_port "$1")" --list >/dev/null 2>&1
}
health_broker1() { health_broker broker1; }
health_broker2() { health_broker broker2; }
health_broker3() { health_broker broker3; }

cmd_cluster_up() {
  with_lock
  installed || cmd_install
  mkdir -p "$SDIR/kafka"
  printf '*\n' > "$SDIR/.gitignore"
  kafka_logging "$SDIR/kafka"  # kafka_tool's logging config
  # All three start before any is waited for: one KRaft voter of three has no quorum, never healthy.
  local b t0
  t0=$(now)
  echo "$CLUSTER_PORT" > "$SDIR/cluster.port"
  for b in "${CLUSTER_BROKERS[@]}"; do
    running_pid "$b" >/dev/null && continue
    rm -f "$(pidfile "$b")"
    check_ports_free "$b"
    mkdir -p "$SDIR/$b"
    "start_$b"
  done
  for b in "${CLUSTER_BROKERS[@]}"; do wait_healthy "$b" "$t0"; done
  echo "$CLUSTER_PORT" > "$SDIR/cluster.port"
  echo "export TRACKSTREAM_CLUSTER_BOOTSTRAP=$(cluster_bootstrap)" > "$SDIR/cluster-env"
  log "cluster up ($(cluster_bootstrap)); env written to $SDIR/cluster-env"
}

cmd_cluster_down() {
  [ -d "$SDIR" ] || return 0
  with_lock
  local b
  # In parallel: the broker stopped last cannot finish its controlled shutdown without a quorum
  # (stopped one after the other, the third waited the full 60 s grace and was killed).
  for b in "${CLUSTER_BROKERS[@]}"; do stop_one "$b" TERM & done
  wait
  if [ "${1:-}" = --purge ]; then
    for b in "${CLUSTER_BROKERS[@]}"; do rm -rf "${SDIR:?}/$b"; done
    rm -f "$SDIR/cluster.id" "$SDIR/cluster.port" "$SDIR/cluster-env"
    log "purged the cluster's data"
  fi
}

# ---------------------------------------------------------------------------------------------
# ClickHouse server (Debian's 18.16 package)
# ---------------------------------------------------------------------------------------------
start_clickhouse() {
  local d=$SDIR/clickhouse
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/format_schemas" "$d/log"
  # A self-contained config rather than an edited copy of /etc/clickhouse-server/config.xml: only
  # loopback, only our two ports (no interserver/https/mysql ports), all paths in $d.
  cat > "$d/config.xml" <<EOF
<?xml version="1.0"?>
<!-- generated by deploy/local/services.sh -->
<yandex>
    <logger>
        <level>information</level>
        <log>$d/log/clickhouse-server.log</log>
        <errorlog>$d/log/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>3</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>$CH_TCP_PORT</tcp_port>
    <http_port>$CH_HTTP_PORT</http_port>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>3</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <mark_cache_size>268435456</mark_cache_size>
    <path>$d/data/</path>
    <tmp_path>$d/tmp/</tmp_path>
    <user_files_path>$d/user_files/</user_files_path>
    <format_schema_path>$d/format_schemas/</format_schema_path>
    <users_config>$d/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
</yandex>
EOF
  cat > "$d/users.xml" <<'EOF'
<?xml version="1.0"?>
<!-- generated by deploy/local/services.sh: user "default", no password, loopback only -->
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
EOF
  spawn clickhouse "$d/log/stdout.log" clickhouse-server --config-file="$d/config.xml"
}

health_clickhouse() {
  timeout 10 clickhouse-client --host 127.0.0.1 --port "$CH_TCP_PORT" -q 'SELECT 1' >/dev/null 2>&1
}

# ---------------------------------------------------------------------------------------------
# SeaweedFS: master + volume + filer + S3 gateway in one `weed server` process
# ---------------------------------------------------------------------------------------------
s3_curl() {  # s3_curl METHOD PATH : SigV4-signed request, prints the HTTP status
  local m=(-X "$1"); [ "$1" = HEAD ] && m=(-I)
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 "${m[@]}" \
    --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    "http://127.0.0.1:$S3_PORT$2"
}

start_s3() {
  local d=$SDIR/s3
  mkdir -p "$d/data" "$d/log"
  spawn s3 "$d/log/weed.log" "$WEED" server \
    -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$d/data" \
    -master.port="$WEED_MASTER_PORT" -master.port.grpc="$((WEED_MASTER_PORT + 1))" \
    -master.telemetry=false -master.volumeSizeLimitMB=1024 \
    -volume.port="$WEED_VOLUME_PORT" -volume.port.grpc="$((WEED_VOLUME_PORT + 1))" \
    -volume.max=100 -volume.preStopSeconds=0 \
    -filer -filer.port="$WEED_FILER_PORT" -filer.port.grpc="$((WEED_FILER_PORT + 1))" \
    -s3 -s3.port="$S3_PORT" -s3.port.grpc="$((S3_PORT + 1))" \
    -s3.port.iceberg=0 -s3.port.lance=0 -s3.config="$SCRIPT_DIR/seaweedfs/s3.json"
}

health_s3() {
  # a signed ListBuckets must succeed, then the bucket must exist (created once, kept in data dir)
  [ "$(s3_curl GET /)" = 200 ] || return 1
  [ "$(s3_curl HEAD "/$S3_BUCKET")" = 200 ] && return 0
  s3_curl PUT "/$S3_BUCKET" >/dev/null
  [ "$(s3_curl HEAD "/$S3_BUCKET")" = 200 ]
}

# ---------------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------------
env_lines() {
  cat <<EOF
export TRACKSTREAM_KAFKA_BOOTSTRAP=127.0.0.1:$KAFKA_PORT
export TRACKSTREAM_CLICKHOUSE_URL=clickhouse://default:@127.0.0.1:$CH_TCP_PORT/default
export TRACKSTREAM_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export TRACKSTREAM_S3_ACCESS_KEY=$S3_ACCESS_KEY
export TRACKSTREAM_S3_SECRET_KEY=$S3_SECRET_KEY
export TRACKSTREAM_S3_BUCKET=$S3_BUCKET
EOF
}

valid_services() {
  local s
  for s in "$@"; do
    case $s in kafka|clickhouse|s3|broker1|broker2|broker3) ;; *) die "unknown service '$s' (expected: ${ALL_SERVICES[*]} ${CLUSTER_BROKERS[*]})" ;; esac
  done
}

with_lock() {  # serialize concurrent up/down/start/stop calls
  mkdir -p "$SDIR"
  exec 9>"$SDIR/.lock"
  flock -w 600 9 || die "could not lock $SDIR/.lock"
}

start_one() {
  local svc=$1 t0
  if running_pid "$svc" >/dev/null; then
    # ours and alive: make sure it's healthy, otherwise wait for it like after a fresh start
    if "health_$svc" 2>/dev/null; then log "$svc already up (pid $(cat "$(pidfile "$svc")"))"; return 0; fi
    wait_healthy "$svc" "$(now)"
    return 0
  fi
  rm -f "$(pidfile "$svc")"
  check_ports_free "$svc"
  t0=$(now)
  "start_$svc"
  wait_healthy "$svc" "$t0"
}

stop_one() {  # stop_one SERVICE [SIGNAL]
  local svc=$1 sig=${2:-TERM} pid
  if ! pid=$(running_pid "$svc"); then
    rm -f "$(pidfile "$svc")"
    log "$svc not running"
    return 0
  fi
  # Grace period before SIGKILL. `weed server` stops its volume server before its filer, whose
  # shutdown then waits ~15 s trying to flush a metadata-change log to that stopped volume server
  # (and drops it anyway). Objects and filer metadata survive SIGKILL (leveldb journal), so give
  # SeaweedFS a short grace; Kafka and ClickHouse get a real one.
  local grace=60 t0=$SECONDS t0f
  t0f=$(now)
  [ "$svc" = s3 ] && grace=${TRACKSTREAM_SVC_S3_STOP_GRACE:-5}
  kill "-$sig" "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt "$grace" ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    [ "$sig" = KILL ] || log "$svc (pid $pid) still running ${grace}s after SIG$sig; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ $((SECONDS - t0)) -lt $((grace + 10)) ]; do sleep 0.2; done
  fi
  rm -f "$(pidfile "$svc")"
  if [ "$svc" = s3 ]; then  # unix sockets weed server creates next to its gRPC/HTTP ports
    local p
    for p in $(svc_ports s3); do rm -f /tmp/seaweedfs-*-"$p".sock; done
  fi
  log "$svc stopped in $(elapsed "$t0f") s (pid $pid, SIG$sig)"
}

cmd_up() {
  local svcs=("$@")
  [ ${#svcs[@]} -gt 0 ] || svcs=("${ALL_SERVICES[@]}")
  valid_services "${svcs[@]}"
  with_lock  # before installing too: concurrent first-time `up` calls must not build twice
  installed || cmd_install
  printf '*\n' > "$SDIR/.gitignore"
  local s
  for s in "${svcs[@]}"; do start_one "$s"; done
  env_lines > "$SDIR/env"
  log "env written to $SDIR/env"
}

cmd_stop() {  # cmd_stop SIGNAL SERVICE...
  local sig=$1; shift
  local svcs=("$@")
  [ ${#svcs[@]} -gt 0 ] || svcs=("${ALL_SERVICES[@]}")
  valid_services "${svcs[@]}"
  [ -d "$SDIR" ] || return 0
  with_lock
  local s
  for s in "${svcs[@]}"; do stop_one "$s" "$sig"; done
}

cmd_purge() {
  local s
  for s in "${ALL_SERVICES[@]}"; do
    running_pid "$s" >/dev/null && die "$s is running; run '$0 down --purge'"
  done
  for s in "${ALL_SERVICES[@]}"; do rm -rf "${SDIR:?}/$s"; done
  rm -f "$SDIR/env"
  log "purged data under $SDIR"
}

cmd_status() {
  local s pid rc=0 health
  for s in "${ALL_SERVICES[@]}"; do
    if pid=$(running_pid "$s"); then
      if "health_$s" 2>/dev/null; then health=healthy; else health=UNHEALTHY; rc=3; fi
      printf '%-10s running  pid %-7s %-9s ports %s\n' "$s" "$pid" "$health" "$(svc_ports "$s")"
    else
      printf '%-10s stopped\n' "$s"
      rc=3
    fi
  done
  for s in "${CLUSTER_BROKERS[@]}"; do  # the cluster is optional: listed only while running
    pid=$(running_pid "$s") || continue
    if "health_$s" 2>/dev/null; then health=healthy; else health=UNHEALTHY; rc=3; fi
    printf '%-10s running  pid %-7s %-9s ports %s\n' "$s" "$pid" "$health" "$(svc_ports "$s")"
  done
  return $rc
}

usage() { sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

main() {
  local cmd=${1:-}; [ $# -gt 0 ] && shift
  case $cmd in
    install) cmd_install ;;
    up) cmd_up "$@" ;;
    start) [ $# -gt 0 ] || usage; cmd_up "$@" ;;
    down)
      if [ "${1:-}" = --purge ]; then cmd_stop TERM; cmd_cluster_down --purge; cmd_purge
      elif [ $# -eq 0 ]; then cmd_stop TERM; cmd_cluster_down
      else cmd_stop TERM "$@"; fi ;;
    cluster-up) cmd_cluster_up ;;
    cluster-down) cmd_cluster_down "$@" ;;
    stop) [ $# -gt 0 ] || usage; cmd_stop TERM "$@" ;;
    kill) [ $# -gt 0 ] || usage; cmd_stop KILL "$@" ;;
    purge) cmd_purge ;;
    status) cmd_status ;;
    env) env_lines ;;
    *) usage ;;
  esac
}

main "$@"; exit  # (on one line: editing this file while it runs stays safe)
