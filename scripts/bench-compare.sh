#!/usr/bin/env bash
# Benchmark warren against RabbitMQ (AMQP 0-9-1 and its MQTT plugin) and Mosquitto (MQTT) with
# `warren perf`, the same client for every broker, and print ONE table of medians with
# warren/peer ratios plus machine information.
#
# Usage: scripts/bench-compare.sh [options]
#   --only LIST        comma-separated scenarios (default: all, see below)
#   --brokers LIST     comma-separated brokers among warren,rabbitmq,mosquitto,relay (default:
#                      all); relay is `warren relay`, a loopback forwarder with no queues that
#                      shows the client's own ceiling on the throughput scenarios
#   --runs N           repetitions per scenario and broker (default 3; the table shows medians)
#   --warren-bin PATH  warren binary, also used as the client (default:
#                      ${CARGO_TARGET_DIR:-target}/release/warren, built when missing)
#   --no-install       do not apt-get install missing brokers
#   --keep DIR         copy every run's output and the broker logs to DIR
#   --list             print the scenarios and exit
#
# Scenarios (each bounded: RUN_SECS of publishing, or a fixed count):
#   amqp-16b          AMQP transient 16 B, 1 producer / 1 consumer, auto-ack
#   amqp-1k-4p4c      AMQP transient 1 KiB, 4p/4c on 4 queues, manual ack, prefetch 100
#   amqp-persistent   AMQP persistent 1 KiB, durable queue, confirms (window 256), 1p/1c,
#                     manual ack, prefetch 256
#   mqtt-qos0-1p1c    MQTT QoS 0 64 B, 1 publisher / 1 subscriber
#   mqtt-qos0-10p10c  MQTT QoS 0 64 B, 10 publishers / 10 subscribers, 10 topics (pairs)
#   mqtt-qos1-10p10c  MQTT QoS 1 64 B, 10p/10c, 10 topics, 256 unacknowledged per publisher
#   mqtt-to-amqp      MQTT QoS 1 64 B publisher -> amq.topic -> AMQP queue, manual ack
#                     (prefetch 256); warren and RabbitMQ
#   latency-amqp      AMQP 64 B at a fixed 5,000 msg/s, manual ack: p50/p99 end-to-end latency
#   latency-mqtt      MQTT QoS 0 64 B at a fixed 5,000 msg/s: p50/p99 end-to-end latency
#   idle-mqtt         IDLE_COUNT (10,000) idle MQTT connections: broker RSS growth per connection
#   idle-amqp         IDLE_COUNT idle AMQP connections with one channel open (warren, RabbitMQ)
#   queue-1m          QUEUE_COUNT (1,000,000) transient 1 KiB messages published (confirmed) to
#                     one queue without a consumer: broker RSS growth vs the payload (warren,
#                     RabbitMQ)
#
# Environment: RUN_SECS=4 LAT_SECS=5 LAT_RATE=5000 IDLE_COUNT=10000 IDLE_HOLD=5
#   QUEUE_COUNT=1000000 RABBIT_AMQP=127.0.0.1:5672 RABBIT_MQTT=127.0.0.1:1883
#   QUIET_LOAD=1.5 QUIET_WAIT=0 (before each run wait up to QUIET_WAIT s for the 1-minute load
#   average to drop below QUIET_LOAD; off by default, as the previous run keeps the average up
#   for a minute; the load at each run's start is recorded either way)
#   MOSQ_MAX_INFLIGHT=256 (Mosquitto's per-client outgoing window; warren's is 256 as well)
#   RABBIT_IDLE_COUNT=1000 (idle connections opened on RabbitMQ: its MQTT listener stopped
#   answering CONNECT somewhere between 1,000 and 10,000 here, and at ~150 KiB per connection
#   1,000 measure its cost well enough; the count is shown in the table)
#
# Brokers: warren (release build, spare loopback ports, a temporary data dir) and Mosquitto (own
# config on a spare port: anonymous, no persistence, max_queued_messages 0 so QoS 1 is never
# dropped, TCP_NODELAY like the others) are started by this script, one at a time, fresh for
# every scenario (and for every run of the memory scenarios), with the open-file limit raised to
# the hard limit. RabbitMQ is reused when it answers on RABBIT_AMQP (it is never restarted;
# its MQTT plugin is enabled online, on a spare port, only when nothing answers on RABBIT_MQTT,
# and disabled again at the end); when it is not running at all it is installed if missing and
# started as a private node on spare ports, then stopped. Only processes this script started
# are stopped, by PID. A running RabbitMQ keeps its own open-file limit, so its idle scenarios
# open at most 80% of what it has left (the count is shown in the table).
#
# Table: one row per figure, the median over the runs of each broker, and warren/peer ratios
# (above 1 = warren higher: better for rates, worse for latency and memory); relay/w is the
# relay's figure over warren's: how many times warren's load the client can drive on this
# machine (its ceiling, with the relay itself sharing the CPUs). client% is the highest median
# CPU use of the client over the brokers, relay runs excepted (share of one core, all threads);
# the JSON lines (with --keep) also carry the broker's CPU and the client's per-message CPU.
# Exit status: non-zero if any run failed (the table shows "FAIL", or marks with "*" the figures
# that include runs which failed after reporting them, e.g. messages lost; the notes say why).

# Functions are called through "start_$name" and the EXIT trap, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS=3
RUN_SECS="${RUN_SECS:-4}"
LAT_SECS="${LAT_SECS:-5}"
LAT_RATE="${LAT_RATE:-5000}"
IDLE_COUNT="${IDLE_COUNT:-10000}"
IDLE_HOLD="${IDLE_HOLD:-5}"
QUEUE_COUNT="${QUEUE_COUNT:-1000000}"
RABBIT_AMQP="${RABBIT_AMQP:-127.0.0.1:5672}"
RABBIT_MQTT="${RABBIT_MQTT:-127.0.0.1:1883}"
QUIET_LOAD="${QUIET_LOAD:-1.5}"
QUIET_WAIT="${QUIET_WAIT:-0}"
MOSQ_MAX_INFLIGHT="${MOSQ_MAX_INFLIGHT:-256}"
RABBIT_IDLE_COUNT="${RABBIT_IDLE_COUNT:-1000}"
ALL_SCENARIOS="amqp-16b amqp-1k-4p4c amqp-persistent mqtt-qos0-1p1c mqtt-qos0-10p10c mqtt-qos1-10p10c mqtt-to-amqp latency-amqp latency-mqtt idle-mqtt idle-amqp queue-1m"
SCENARIOS="$ALL_SCENARIOS"
BROKERS="warren mosquitto rabbitmq relay"
WARREN_BIN=""
INSTALL=1
KEEP_DIR=""

log() { echo "bench-compare: $*" >&2; }
die() {
    log "$*"
    exit 2
}

while [[ $# -gt 0 ]]; do
    case "$1" in
    --only)
        [[ $# -ge 2 ]] || die "--only needs a list"
        SCENARIOS="${2//,/ }"
        shift 2
        ;;
    --brokers)
        [[ $# -ge 2 ]] || die "--brokers needs a list"
        BROKERS=""
        for b in warren mosquitto rabbitmq relay; do
            [[ ",$2," == *",$b,"* ]] && BROKERS+="$b "
        done
        for b in ${2//,/ }; do
            [[ " warren mosquitto rabbitmq relay " == *" $b "* ]] || die "unknown broker $b"
        done
        shift 2
        ;;
    --runs)
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || die "--runs needs a positive number"
        RUNS="$2"
        shift 2
        ;;
    --warren-bin)
        WARREN_BIN="${2:-}"
        shift 2
        ;;
    --no-install)
        INSTALL=0
        shift
        ;;
    --keep)
        KEEP_DIR="${2:-}"
        shift 2
        ;;
    --list)
        echo "$ALL_SCENARIOS" | tr ' ' '\n'
        exit 0
        ;;
    -h | --help)
        sed -n '2,/^# Exit status/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *) die "unknown argument $1 (see --help)" ;;
    esac
done
for s in $SCENARIOS; do
    [[ " $ALL_SCENARIOS " == *" $s "* ]] || die "unknown scenario $s (see --list)"
done

# Which brokers a scenario applies to.
# The relay (the client's ceiling) runs the throughput scenarios without persistence.
scenario_brokers() {
    case "$1" in
    mqtt-qos0-1p1c | mqtt-qos0-10p10c | mqtt-qos1-10p10c) echo "warren mosquitto rabbitmq relay" ;;
    latency-mqtt | idle-mqtt) echo "warren mosquitto rabbitmq" ;;
    amqp-16b | amqp-1k-4p4c) echo "warren rabbitmq relay" ;;
    *) echo "warren rabbitmq" ;;
    esac
}

# Scenarios that need a fresh broker for every run (memory is measured).
fresh_per_run() {
    case "$1" in idle-* | queue-1m) return 0 ;; *) return 1 ;; esac
}

# The protocol the scenario's --uri speaks.
scenario_proto() {
    case "$1" in amqp-* | latency-amqp | idle-amqp | queue-1m) echo amqp ;; *) echo mqtt ;; esac
}

# perf arguments of a scenario (without URIs and --broker-pid).
scenario_args() {
    case "$1" in
    amqp-16b) echo "--size 16 --auto-ack --duration $RUN_SECS" ;;
    amqp-1k-4p4c) echo "--size 1024 -x 4 -y 4 --queues 4 --prefetch 100 --duration $RUN_SECS" ;;
    amqp-persistent) echo "--size 1024 --persistent --confirm 256 --prefetch 256 --duration $RUN_SECS" ;;
    mqtt-qos0-1p1c) echo "--qos 0 --size 64 --duration $RUN_SECS" ;;
    mqtt-qos0-10p10c) echo "--qos 0 --size 64 -x 10 -y 10 --queues 10 --duration $RUN_SECS" ;;
    mqtt-qos1-10p10c) echo "--qos 1 --size 64 -x 10 -y 10 --queues 10 --duration $RUN_SECS" ;;
    mqtt-to-amqp) echo "--mode mqtt-to-amqp --qos 1 --size 64 --prefetch 256 --duration $RUN_SECS" ;;
    latency-amqp) echo "--size 64 --prefetch 100 --rate $LAT_RATE --duration $LAT_SECS" ;;
    latency-mqtt) echo "--qos 0 --size 64 --rate $LAT_RATE --duration $LAT_SECS" ;;
    idle-mqtt | idle-amqp) echo "--idle IDLE --duration $IDLE_HOLD" ;;
    queue-1m) echo "--size 1024 -y 0 --count $QUEUE_COUNT --confirm 1000" ;;
    esac
}

# host:port accepting TCP connections?
reachable() {
    local host="${1%:*}" port="${1##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# A loopback port no socket uses, below Linux's ephemeral range (32768+), where client sockets
# in TIME-WAIT would make bind fail.
free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 12000))
        if ! reachable "127.0.0.1:$p" && ! ss -Htan "sport = :$p" 2>/dev/null | grep -q .; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# PID of the process listening on TCP port $1 (empty when unknown).
listener_pid() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2 || true
}

wants_broker() { [[ " $BROKERS " == *" $1 "* ]]; }
wants_scenario_for() {
    local s
    for s in $SCENARIOS; do
        [[ " $(scenario_brokers "$s") " == *" $1 "* ]] && return 0
    done
    return 1
}

# ---- installation --------------------------------------------------------------------------
APT_UPDATED=0
apt_install() {
    [[ "$INSTALL" == 1 ]] || return 1
    command -v apt-get >/dev/null || return 1
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

if wants_broker mosquitto && wants_scenario_for mosquitto && ! command -v mosquitto >/dev/null; then
    apt_install mosquitto || log "mosquitto is not installed and could not be: skipped"
fi
if wants_broker rabbitmq && wants_scenario_for rabbitmq && ! reachable "$RABBIT_AMQP" &&
    ! command -v rabbitmq-server >/dev/null; then
    apt_install rabbitmq-server || log "rabbitmq-server is not installed and could not be: skipped"
fi

if [[ -z "$WARREN_BIN" ]]; then
    WARREN_BIN="$TARGET_DIR/release/warren"
    if [[ ! -x "$WARREN_BIN" ]]; then
        log "building warren (release)"
        cargo build --release --quiet --bin warren || die "could not build warren"
    fi
fi
[[ -x "$WARREN_BIN" ]] || die "no warren binary at $WARREN_BIN"
"$WARREN_BIN" perf --help >/dev/null 2>&1 || die "$WARREN_BIN has no perf subcommand"

TMP="$(mktemp -d -t bench-compare.XXXXXX)"
chmod 755 "$TMP" # Mosquitto started as root drops to its own user; it must read its config.
mkdir -p "$TMP/res"
declare -A PID   # broker -> PID (ours or found)
declare -A OWNED # broker -> 1 if this script started it
declare -A AMQP  # broker -> host:port
declare -A MQTT  # broker -> host:port
RABBIT_MQTT_ENABLED_BY_US=0
RABBIT_PRIVATE_ENV=()

# The open-file limit the brokers we start (and the client) get.
NOFILE="$(ulimit -Hn)"
if [[ "$NOFILE" == unlimited || "$NOFILE" -gt 1048576 ]]; then
    NOFILE=1048576
fi
ulimit -n "$NOFILE" 2>/dev/null || true

# stop NAME: stops the broker NAME if this script started it (TERM, then KILL after 10 s).
stop() {
    local pid="${PID[$1]:-}"
    [[ -n "${OWNED[$1]:-}" && -n "$pid" ]] || return 0
    if [[ "$1" == rabbitmq ]]; then
        env "${RABBIT_PRIVATE_ENV[@]}" rabbitmqctl stop >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    elif kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    PID[$1]=""
    OWNED[$1]=""
}

cleanup() {
    stop warren
    stop relay
    stop mosquitto
    stop rabbitmq
    if [[ "$RABBIT_MQTT_ENABLED_BY_US" == 1 ]]; then
        log "disabling the rabbitmq_mqtt plugin this script enabled"
        rabbitmq-plugins disable --online rabbitmq_mqtt >/dev/null 2>&1 || true
    fi
    if [[ -n "$KEEP_DIR" ]]; then
        if mkdir -p "$KEEP_DIR"; then
            cp -r "$TMP"/. "$KEEP_DIR"/ 2>/dev/null || true
        fi
        log "outputs kept in $KEEP_DIR"
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listening NAME ADDR LOGFILE: waits up to 20 s for ADDR to accept connections.
wait_listening() {
    for _ in $(seq 1 200); do
        reachable "$2" && return 0
        if ! kill -0 "${PID[$1]}" 2>/dev/null; then
            log "$1 exited during startup:"
            tail -n 20 "$3" >&2
            return 1
        fi
        sleep 0.1
    done
    log "$1 is not listening on $2 after 20 s"
    tail -n 20 "$3" >&2
    return 1
}

start_warren() {
    local aport mport dir
    aport="$(free_port)" && mport="$(free_port)" || return 1
    dir="$TMP/warren-data.$RANDOM"
    mkdir -p "$dir"
    # The WebSocket listener (on by default at 15675) gets a free port too, when the binary
    # has one, so a second broker or anything else on 15675 does not stop this one.
    local extra=()
    if "$WARREN_BIN" --help 2>/dev/null | grep -q -- '--ws-port'; then
        extra=(--ws-port 0)
    fi
    # Likewise the Prometheus endpoint (on by default at 15692): still on, on a free port.
    if "$WARREN_BIN" --help 2>/dev/null | grep -q -- '--prometheus-port'; then
        extra+=(--prometheus-port 0)
    fi
    if "$WARREN_BIN" --help 2>/dev/null | grep -q -- '--management-port'; then
        extra+=(--management-port 0)
    fi
    (ulimit -n "$NOFILE" && exec "$WARREN_BIN" --bind 127.0.0.1 --amqp-port "$aport" \
        --mqtt-port "$mport" --data-dir "$dir" "${extra[@]}") >>"$TMP/warren.log" 2>&1 &
    PID[warren]=$!
    OWNED[warren]=1
    AMQP[warren]="127.0.0.1:$aport"
    MQTT[warren]="127.0.0.1:$mport"
    wait_listening warren "${AMQP[warren]}" "$TMP/warren.log" &&
        wait_listening warren "${MQTT[warren]}" "$TMP/warren.log"
}

start_relay() {
    local aport mport
    aport="$(free_port)" && mport="$(free_port)" || return 1
    (ulimit -n "$NOFILE" && exec "$WARREN_BIN" relay --bind 127.0.0.1 --amqp-port "$aport" \
        --mqtt-port "$mport") >>"$TMP/relay.log" 2>&1 &
    PID[relay]=$!
    OWNED[relay]=1
    AMQP[relay]="127.0.0.1:$aport"
    MQTT[relay]="127.0.0.1:$mport"
    wait_listening relay "${AMQP[relay]}" "$TMP/relay.log" &&
        wait_listening relay "${MQTT[relay]}" "$TMP/relay.log"
}

start_mosquitto() {
    local port conf="$TMP/mosquitto.conf"
    port="$(free_port)" || return 1
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "persistence false"
        echo "max_queued_messages 0"
        echo "set_tcp_nodelay true"
        [[ -n "$MOSQ_MAX_INFLIGHT" ]] && echo "max_inflight_messages $MOSQ_MAX_INFLIGHT"
    } >"$conf"
    chmod 644 "$conf"
    (ulimit -n "$NOFILE" && exec mosquitto -c "$conf") >>"$TMP/mosquitto.log" 2>&1 &
    PID[mosquitto]=$!
    OWNED[mosquitto]=1
    MQTT[mosquitto]="127.0.0.1:$port"
    wait_listening mosquitto "${MQTT[mosquitto]}" "$TMP/mosquitto.log"
}

# A private RabbitMQ node on spare ports, for machines where none runs.
start_rabbitmq() {
    command -v rabbitmq-server >/dev/null || return 1
    local aport mport dport base="$TMP/rabbitmq"
    aport="$(free_port)" && mport="$(free_port)" && dport="$(free_port)" || return 1
    mkdir -p "$base"
    printf 'listeners.tcp.default = %s\nmqtt.listeners.tcp.default = %s\nloopback_users = none\n' \
        "$aport" "$mport" >"$base/rabbitmq.conf"
    echo '[rabbitmq_mqtt].' >"$base/enabled_plugins"
    chown -R rabbitmq: "$base" 2>/dev/null || chmod -R a+rwX "$base"
    RABBIT_PRIVATE_ENV=(RABBITMQ_NODENAME="bench$$@localhost" RABBITMQ_NODE_PORT="$aport"
        RABBITMQ_DIST_PORT="$dport" RABBITMQ_CONFIG_FILE="$base/rabbitmq"
        RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" RABBITMQ_MNESIA_BASE="$base/mnesia"
        RABBITMQ_LOG_BASE="$base/log" RABBITMQ_PID_FILE="$base/pid")
    (ulimit -n "$NOFILE" && exec env "${RABBIT_PRIVATE_ENV[@]}" rabbitmq-server) \
        >>"$TMP/rabbitmq.log" 2>&1 &
    OWNED[rabbitmq]=1
    PID[rabbitmq]=$!
    AMQP[rabbitmq]="127.0.0.1:$aport"
    MQTT[rabbitmq]="127.0.0.1:$mport"
    for _ in $(seq 1 600); do
        if reachable "${AMQP[rabbitmq]}" && reachable "${MQTT[rabbitmq]}"; then
            PID[rabbitmq]="$(listener_pid "$aport")"
            [[ -n "${PID[rabbitmq]}" ]] || PID[rabbitmq]=$!
            return 0
        fi
        sleep 0.1
    done
    log "the private RabbitMQ node did not start:"
    tail -n 20 "$TMP/rabbitmq.log" >&2
    return 1
}

# Finds (or starts) RabbitMQ; enables its MQTT plugin on a spare port when nothing answers.
setup_rabbitmq() {
    if reachable "$RABBIT_AMQP"; then
        AMQP[rabbitmq]="$RABBIT_AMQP"
        PID[rabbitmq]="$(listener_pid "${RABBIT_AMQP##*:}")"
        if reachable "$RABBIT_MQTT"; then
            MQTT[rabbitmq]="$RABBIT_MQTT"
        elif command -v rabbitmq-plugins >/dev/null; then
            local port
            port="$(free_port)" || return 0
            log "enabling rabbitmq_mqtt online on port $port (RabbitMQ is not restarted)"
            rabbitmqctl eval "application:set_env(rabbitmq_mqtt, tcp_listeners, [$port])." \
                >/dev/null 2>&1 || true
            if rabbitmq-plugins enable --online rabbitmq_mqtt >/dev/null 2>&1; then
                RABBIT_MQTT_ENABLED_BY_US=1
                for _ in $(seq 1 100); do
                    reachable "127.0.0.1:$port" && break
                    sleep 0.1
                done
                reachable "127.0.0.1:$port" && MQTT[rabbitmq]="127.0.0.1:$port"
            fi
        fi
        log "reusing the running RabbitMQ: AMQP ${AMQP[rabbitmq]}, MQTT ${MQTT[rabbitmq]:-none}, pid ${PID[rabbitmq]:-unknown}"
        return 0
    fi
    log "no RabbitMQ at $RABBIT_AMQP: starting a private node"
    start_rabbitmq
}

start_broker() {
    local attempt
    for attempt in 1 2 3; do
        "start_$1" && return 0
        stop "$1"
        log "starting $1 failed (attempt $attempt)"
    done
    return 1
}

# wait_quiet: up to QUIET_WAIT s for the 1-minute load average to drop below QUIET_LOAD.
wait_quiet() {
    for _ in $(seq 1 "$QUIET_WAIT"); do
        awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l < q) }' &&
            return 0
        sleep 1
    done
}

# How many idle connections RabbitMQ (not started by us) can take: 80% of its free descriptors.
idle_count_for() {
    local broker="$1" pid="${PID[$1]:-}" limit used
    if [[ "$broker" == rabbitmq && "$RABBIT_IDLE_COUNT" -lt "$IDLE_COUNT" ]]; then
        echo "$RABBIT_IDLE_COUNT"
        return
    fi
    if [[ "$broker" == rabbitmq && -z "${OWNED[rabbitmq]:-}" && -r "/proc/$pid/limits" ]]; then
        limit="$(awk '/Max open files/ {print $4}' "/proc/$pid/limits")"
        used="$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
        if [[ "$limit" =~ ^[0-9]+$ ]]; then
            local cap=$(((limit - used) * 80 / 100))
            ((cap < IDLE_COUNT)) && { echo "$cap"; return; }
        fi
    fi
    echo "$IDLE_COUNT"
}

FAILED=0

# run_one SCENARIO BROKER REP: one client run; its JSON line (plus load, n) in res/.
run_one() {
    local scen="$1" broker="$2" rep="$3" out args uri=() pid_args=() idle_n load
    out="$TMP/res/$scen.$broker.$rep"
    read -r -a args <<<"$(scenario_args "$scen")"
    if [[ "$scen" == idle-* ]]; then
        idle_n="$(idle_count_for "$broker")"
        args=("${args[@]/IDLE/$idle_n}")
    fi
    case "$(scenario_proto "$scen")" in
    amqp)
        [[ -n "${AMQP[$broker]:-}" ]] || { echo "no AMQP listener" >"$out.fail"; return 1; }
        uri=(--uri "amqp://guest:guest@${AMQP[$broker]}/%2f")
        ;;
    mqtt)
        [[ -n "${MQTT[$broker]:-}" ]] || { echo "no MQTT listener" >"$out.fail"; return 1; }
        uri=(--uri "mqtt://${MQTT[$broker]}")
        if [[ "$scen" == mqtt-to-amqp ]]; then
            [[ -n "${AMQP[$broker]:-}" ]] || { echo "no AMQP listener" >"$out.fail"; return 1; }
            uri+=(--amqp-uri "amqp://guest:guest@${AMQP[$broker]}/%2f")
        fi
        ;;
    esac
    [[ -n "${PID[$broker]:-}" ]] && pid_args=(--broker-pid "${PID[$broker]}")
    wait_quiet
    load="$(cut -d' ' -f1 /proc/loadavg)"
    if timeout 600 "$WARREN_BIN" perf "${uri[@]}" "${args[@]}" "${pid_args[@]}" \
        --queue-pattern "bench-$$-%d" >"$out.out" 2>&1; then
        grep '^{"mode"' "$out.out" | tail -n 1 >"$out.json"
        echo "$load" >"$out.load"
        log "$scen $broker #$rep: $(python3 "$TMP/summary.py" line "$scen" "$out.json") (load $load)"
    else
        FAILED=1
        # A run that lost messages still reports what it measured.
        grep '^{"mode"' "$out.out" | tail -n 1 >"$out.json" || true
        echo "$load" >"$out.load"
        grep -E 'error' "$out.out" | tail -n 1 >"$out.fail" || true
        [[ -s "$out.fail" ]] || tail -n 1 "$out.out" >"$out.fail"
        log "$scen $broker #$rep FAILED: $(cat "$out.fail")"
    fi
}

# ---- the table -----------------------------------------------------------------------------
cat >"$TMP/summary.py" <<'PY'
import json, os, statistics, sys

def metrics(scen, r):
    """(label, value, unit) figures of one run."""
    lat = r.get("latency") or {}
    if scen.startswith("latency-"):
        return [("p50 latency", lat.get("p50_us", 0) / 1000, "ms"),
                ("p99 latency", lat.get("p99_us", 0) / 1000, "ms")]
    if scen.startswith("idle-"):
        idle = r.get("idle") or {}
        return [("RSS per conn", idle.get("rss_per_conn_kib"), "KiB"),
                ("conns open", idle.get("still_open"), "")]
    if scen == "queue-1m":
        b, a = r.get("broker_rss_before_kib"), r.get("broker_rss_after_kib")
        payload = r.get("published", 0) * r.get("size", 0) / 1048576
        growth = (a - b) / 1024 if a is not None and b is not None else None
        return [("RSS growth", growth, "MiB"),
                ("RSS/payload", growth / payload if growth is not None and payload else None, "x"),
                ("publish rate", r.get("publish_rate"), "msg/s")]
    out = [("consume rate", r.get("consume_rate"), "msg/s")]
    if r.get("confirm") is not None:
        out.append(("confirm rate", r.get("confirm_rate"), "msg/s"))
    else:
        out.append(("publish rate", r.get("publish_rate"), "msg/s"))
    if r.get("lost"):
        out.append(("lost", 100.0 * r["lost"] / max(r.get("expected", 1), 1), "%"))
    return out

def fmt(v, unit):
    if v is None:
        return "n/a"
    if unit == "msg/s":
        return f"{v:,.0f}"
    if unit in ("", ) and float(v).is_integer():
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"

def line(scen, path):
    r = json.load(open(path))
    parts = [f"{l} {fmt(v, u)} {u}".strip() for l, v, u in metrics(scen, r)]
    parts.append(f"client {r.get('client_cpu_pct', 0):.0f}%")
    if r.get("broker_cpu_pct") is not None:
        parts.append(f"broker {r['broker_cpu_pct']:.0f}%")
    return ", ".join(parts)

def table(resdir, scenarios, brokers):
    brokers = [b for b in ["warren", "rabbitmq", "mosquitto", "relay"] if b in brokers]
    rows = []
    notes = []
    for scen in scenarios:
        per = {}       # label -> broker -> [values]
        units = {}
        cpu = {}
        n_idle = {}
        fails = {}
        for b in brokers:
            i = 1
            while True:
                base = os.path.join(resdir, f"{scen}.{b}.{i}")
                if os.path.exists(base + ".json") and os.path.getsize(base + ".json") > 0:
                    r = json.load(open(base + ".json"))
                    for l, v, u in metrics(scen, r):
                        units[l] = u
                        if v is not None:
                            per.setdefault(l, {}).setdefault(b, []).append(v)
                    cpu.setdefault(b, []).append(r.get("client_cpu_pct", 0))
                    if r.get("idle"):
                        n_idle[b] = r["idle"].get("requested")
                    if os.path.exists(base + ".fail"):
                        fails.setdefault(b, []).append(open(base + ".fail").read().strip())
                elif os.path.exists(base + ".fail"):
                    fails.setdefault(b, []).append(open(base + ".fail").read().strip())
                elif not os.path.exists(base + ".out") and not os.path.exists(base + ".fail"):
                    break
                i += 1
        if not per and not fails:
            continue
        labels = list(units) or ["(all runs failed)"]
        for k, l in enumerate(labels):
            vals = {}
            for b in brokers:
                vs = per.get(l, {}).get(b)
                if vs:
                    vals[b] = statistics.median(vs)
                elif b in fails:
                    vals[b] = "FAIL"
            if not vals:
                continue
            def ratio(p):
                if l in ("conns open", "lost"):
                    return ""
                w, o = vals.get("warren"), vals.get(p)
                if p == "relay":
                    w, o = o, w
                if isinstance(w, (int, float)) and isinstance(o, (int, float)) and o:
                    return f"{w / o:.2f}x"
                return ""
            u = units.get(l, "")
            label = f"{l} ({u})" if u else l
            if scen.startswith("idle-") and k == 0 and any(n != n_idle.get("warren") for n in n_idle.values()):
                label += " n=" + "/".join(str(n_idle.get(b, "-")) for b in brokers if b in n_idle)
            c = max((statistics.median(v) for b, v in cpu.items() if b != "relay"), default=0)
            def cell(b):
                v = vals.get(b, "-")
                if not isinstance(v, (int, float)):
                    return v
                return fmt(v, u) + ("*" if b in fails else "")
            rows.append([scen if k == 0 else "", label] + [cell(b) for b in brokers] +
                        [ratio("rabbitmq"), ratio("mosquitto")] +
                        ([ratio("relay")] if "relay" in brokers else []) + [f"{c:.0f}" if k == 0 else ""])
        for b, fs in fails.items():
            notes.append(f"* {scen} on {b}: {len(fs)} failed run(s) (figures of failed runs that"
                         f" reported them are included): {fs[0][:200]}")
    head = ["scenario", "figure"] + brokers + ["w/rabbit", "w/mosq"] + (["relay/w"] if "relay" in brokers else []) + ["client%"]
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    def pr(cells):
        print("  ".join(str(c).ljust(widths[i]) if i < 2 else str(c).rjust(widths[i]) for i, c in enumerate(cells)))
    pr(head)
    pr(["-" * w for w in widths])
    for r in rows:
        pr(r)
    for n in notes:
        print("note: " + n)

if __name__ == "__main__":
    if sys.argv[1] == "line":
        print(line(sys.argv[2], sys.argv[3]))
    else:
        table(sys.argv[2], sys.argv[3].split(), sys.argv[4].split())
PY

# ---- the runs ------------------------------------------------------------------------------
START_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
START_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
SECONDS=0
log "scenarios: $SCENARIOS; brokers: $BROKERS; $RUNS run(s) each"

for broker in $BROKERS; do
    wants_scenario_for "$broker" || continue
    case "$broker" in
    mosquitto)
        command -v mosquitto >/dev/null || { log "no mosquitto: skipped"; continue; }
        ;;
    rabbitmq)
        setup_rabbitmq || { log "no RabbitMQ: skipped"; continue; }
        ;;
    esac
    for scen in $SCENARIOS; do
        [[ " $(scenario_brokers "$scen") " == *" $broker "* ]] || continue
        for rep in $(seq 1 "$RUNS"); do
            if [[ "$broker" != rabbitmq ]] && { [[ "$rep" == 1 ]] || fresh_per_run "$scen"; }; then
                stop "$broker"
                if ! start_broker "$broker"; then
                    FAILED=1
                    echo "could not start $broker" >"$TMP/res/$scen.$broker.$rep.fail"
                    continue
                fi
            fi
            run_one "$scen" "$broker" "$rep" || true
        done
    done
    stop "$broker"
done

# ---- report ----------------------------------------------------------------------------------
WARREN_VERSION="$("$WARREN_BIN" --version 2>/dev/null | head -n 1 | sed 's/^warren //') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes'))"
RABBIT_VERSION="$(rabbitmqctl version 2>/dev/null | head -n 1 || true)"
MOSQ_VERSION="$(mosquitto -h 2>/dev/null | head -n 1 | sed 's/mosquitto version //' || true)"
echo
echo "warren vs RabbitMQ vs Mosquitto — scripts/bench-compare.sh, client: warren perf (same binary for every broker)"
echo "date: $START_DATE; duration $((SECONDS / 60)) min $((SECONDS % 60)) s; $RUNS run(s) per cell, medians"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "load average: $START_LOAD at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; median at run start: $(cat "$TMP"/res/*.load 2>/dev/null | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "n/a"}')"
echo "brokers: warren ${WARREN_VERSION}; RabbitMQ ${RABBIT_VERSION:-n/a}; Mosquitto ${MOSQ_VERSION:-n/a}"
echo "settings: RUN_SECS=$RUN_SECS LAT_SECS=$LAT_SECS LAT_RATE=$LAT_RATE IDLE_COUNT=$IDLE_COUNT QUEUE_COUNT=$QUEUE_COUNT MOSQ_MAX_INFLIGHT=$MOSQ_MAX_INFLIGHT"
echo
python3 "$TMP/summary.py" table "$TMP/res" "$SCENARIOS" "$BROKERS"
exit "$FAILED"
