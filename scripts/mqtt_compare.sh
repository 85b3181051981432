#!/usr/bin/env bash
# Compare warren's MQTT 3.1.1 throughput and idle-connection memory with Mosquitto's (and
# RabbitMQ's MQTT plugin, when one listens) using examples/mqtt_throughput.rs and
# scripts/idle_connections.py.
#
# Usage: scripts/mqtt_compare.sh [WARREN_BIN]
#   WARREN_BIN   warren binary (default: ${CARGO_TARGET_DIR:-target}/release/warren; built with
#                `cargo build --release --bin warren` when the default is missing)
#
# Tests (TESTS, default "qos0 qos1 idle"):
#   qos0  QoS 0, 1 publisher + 1 subscriber, QOS0_COUNT (200000) msgs x SIZE (64) B
#   qos1  QoS 1, publisher window INFLIGHT (256), QOS1_COUNT (100000) msgs; RabbitMQ gets
#         RABBIT_QOS1_COUNT (20000), it is much slower
#   idle  IDLE_COUNT (10000) idle MQTT connections: broker RSS growth per connection, on a
#         freshly started warren and Mosquitto (RabbitMQ: as it is, with at most ~80% of its
#         file descriptor limit, see RABBIT_IDLE_COUNT)
#
# Environment:
#   RUNS=3                       client runs per broker and test (interleaved across brokers)
#   SIZE=64 INFLIGHT=256         payload bytes, QoS 1 publisher window
#   QOS0_COUNT=200000 QOS1_COUNT=100000 RABBIT_QOS0_COUNT=QOS0_COUNT RABBIT_QOS1_COUNT=20000
#   IDLE_COUNT=10000             idle connections per broker
#   RABBIT_IDLE_COUNT            idle connections for RabbitMQ (default: IDLE_COUNT capped at
#                                80% of beam.smp's open-file limit)
#   BROKERS="warren mosquitto rabbitmq"   which brokers to measure (unavailable ones are skipped)
#   MOSQUITTO=mosquitto          Mosquitto binary
#   MOSQ_MAX_INFLIGHT=256        Mosquitto's max_inflight_messages (its default is 20; 256 is
#                                warren's per-client delivery window); set empty to keep 20
#   RABBIT_ADDR=127.0.0.1:1883   RabbitMQ MQTT listener (skipped when not reachable)
#   QUIET_LOAD=1.5 QUIET_WAIT=60 before each run wait up to QUIET_WAIT s for the 1-minute load
#                                average to drop below QUIET_LOAD (other builds on the box)
#   CARGO_TARGET_DIR             where cargo builds (default: target/ in the repo)
#   CLIENT                       prebuilt mqtt_throughput binary (skips building the client)
#   KEEP_DIR                     if set, every run's output, JSON line and the broker logs are
#                                copied there at the end
#
# Starts warren and Mosquitto on free loopback ports (temporary data dir and config), raises
# their open-file limit to the hard limit, and stops only the processes it started (by PID);
# RabbitMQ is only connected to. Every run logs the load average before it and the broker's
# CPU time during it (utime + stime from /proc/PID/stat). Prints medians per broker and
# warren/peer ratios; exit status is non-zero if any run failed or lost QoS 1 messages.
# Columns: publish = publisher rate (QoS 0: how fast the broker took the bytes; QoS 1: up to
# the last PUBACK), receive = subscriber's first->last message, overall = messages received
# over first publish -> last received, lost = messages that never arrived (max over runs),
# brk_cpu = broker CPU seconds per run, pub%/sub% = the client's own CPU (share of one core).

# The start_* functions are called through "start_$name", which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS="${RUNS:-3}"
SIZE="${SIZE:-64}"
INFLIGHT="${INFLIGHT:-256}"
QOS0_COUNT="${QOS0_COUNT:-200000}"
QOS1_COUNT="${QOS1_COUNT:-100000}"
RABBIT_QOS0_COUNT="${RABBIT_QOS0_COUNT:-$QOS0_COUNT}"
RABBIT_QOS1_COUNT="${RABBIT_QOS1_COUNT:-20000}"
IDLE_COUNT="${IDLE_COUNT:-10000}"
TESTS="${TESTS:-qos0 qos1 idle}"
BROKERS="${BROKERS:-warren mosquitto rabbitmq}"
MOSQUITTO="${MOSQUITTO:-mosquitto}"
MOSQ_MAX_INFLIGHT="${MOSQ_MAX_INFLIGHT-256}"
RABBIT_ADDR="${RABBIT_ADDR:-127.0.0.1:1883}"
QUIET_LOAD="${QUIET_LOAD:-1.5}"
QUIET_WAIT="${QUIET_WAIT:-60}"
CLK_TCK="$(getconf CLK_TCK)"

WARREN_BIN="${1:-}"

log() { echo "mqtt_compare.sh: $*" >&2; }

# host:port accepting TCP connections?
reachable() {
    local host="${1%:*}" port="${1##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# A TCP port no socket uses, below the ephemeral range (the idle test's thousands of client
# connections leave ephemeral ports in TIME_WAIT, and a broker could not bind those).
free_port() {
    local lo p
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range || lo=32768
    [[ "$lo" -gt 11024 ]] || lo=32768
    for _ in $(seq 1 100); do
        p=$((10000 + RANDOM % (lo - 10000)))
        if [[ -z "$(ss -tanH "( sport = :$p )" 2>/dev/null)" ]] && ! reachable "127.0.0.1:$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

wants() { [[ " $1 " == *" $2 "* ]]; }

if [[ -z "${CLIENT:-}" ]]; then
    log "building the client (release)"
    cargo build --release --quiet --example mqtt_throughput
    CLIENT="$TARGET_DIR/release/examples/mqtt_throughput"
fi
if [[ -z "$WARREN_BIN" ]]; then
    WARREN_BIN="$TARGET_DIR/release/warren"
    if [[ ! -x "$WARREN_BIN" ]] && wants "$BROKERS" warren; then
        log "building warren (release)"
        cargo build --release --quiet --bin warren || log "could not build warren"
    fi
fi

TMP="$(mktemp -d -t mqtt-compare.XXXXXX)"
chmod 755 "$TMP" # Mosquitto started as root drops to its own user; it must read its config.
declare -A PID    # broker -> PID of the process we started
declare -A ADDR   # broker -> host:port of its MQTT listener
declare -A OWNED  # broker -> 1 if this script started it

# stop NAME: stops the broker NAME if this script started it (TERM, then KILL after 5 s).
stop() {
    local pid="${PID[$1]:-}"
    [[ -n "${OWNED[$1]:-}" && -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    PID[$1]=""
}

cleanup() {
    stop warren
    stop mosquitto
    if [[ -n "${KEEP_DIR:-}" ]]; then
        mkdir -p "$KEEP_DIR" || true
        cp "$TMP"/*.out "$TMP"/*.json "$TMP"/*.log "$KEEP_DIR"/ 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_listening NAME LOGFILE: waits up to 10 s for ADDR[NAME] to accept connections.
wait_listening() {
    local name="$1" logfile="$2"
    for _ in $(seq 1 100); do
        reachable "${ADDR[$name]}" && return 0
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            log "$name exited during startup:"
            tail -n 20 "$logfile" >&2
            return 1
        fi
        sleep 0.1
    done
    log "$name is not listening on ${ADDR[$name]} after 10 s"
    tail -n 20 "$logfile" >&2
    return 1
}

# The open-file limit the brokers we start get: as high as the hard limit allows.
NOFILE="$(ulimit -Hn)"
if [[ "$NOFILE" == unlimited || "$NOFILE" -gt 1048576 ]]; then
    NOFILE=1048576
fi

start_warren() {
    [[ -x "$WARREN_BIN" ]] || { log "no warren binary at $WARREN_BIN: skipped"; return 1; }
    local mport aport dir
    if ! mport="$(free_port)" || ! aport="$(free_port)"; then
        log "no free port"
        return 1
    fi
    dir="$TMP/warren-data.$RANDOM"
    mkdir -p "$dir"
    (ulimit -n "$NOFILE" && exec "$WARREN_BIN" --bind 127.0.0.1 --amqp-port "$aport" \
        --mqtt-port "$mport" --data-dir "$dir") >>"$TMP/warren.log" 2>&1 &
    PID[warren]=$!
    OWNED[warren]=1
    ADDR[warren]="127.0.0.1:$mport"
    wait_listening warren "$TMP/warren.log" || return 1
    log "warren $(readlink "/proc/${PID[warren]}/exe") started: pid ${PID[warren]}, MQTT on ${ADDR[warren]}, open files $NOFILE"
}

start_mosquitto() {
    command -v "$MOSQUITTO" >/dev/null || { log "no $MOSQUITTO binary: skipped"; return 1; }
    local port conf="$TMP/mosquitto.conf"
    port="$(free_port)" || { log "no free port"; return 1; }
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        if [[ -n "$MOSQ_MAX_INFLIGHT" ]]; then
            echo "max_inflight_messages $MOSQ_MAX_INFLIGHT"
        fi
    } >"$conf"
    chmod 644 "$conf"
    (ulimit -n "$NOFILE" && exec "$MOSQUITTO" -c "$conf") >>"$TMP/mosquitto.log" 2>&1 &
    PID[mosquitto]=$!
    OWNED[mosquitto]=1
    ADDR[mosquitto]="127.0.0.1:$port"
    wait_listening mosquitto "$TMP/mosquitto.log" || return 1
    log "$("$MOSQUITTO" -h 2>/dev/null | head -n 1) ($(readlink "/proc/${PID[mosquitto]}/exe")) started: pid ${PID[mosquitto]}, on ${ADDR[mosquitto]}, config: $(paste -sd ';' "$conf")"
}

# start_retry NAME: start_NAME, up to 3 attempts (a port can be taken between choosing and
# binding it).
start_retry() {
    local attempt
    for attempt in 1 2 3; do
        "start_$1" && return 0
        stop "$1"
        log "starting $1 failed (attempt $attempt)"
    done
    return 1
}

# RabbitMQ: only used when its MQTT listener answers; PID = the process listening there.
find_rabbit() {
    reachable "$RABBIT_ADDR" || { log "RabbitMQ MQTT not reachable at $RABBIT_ADDR: skipped"; return 1; }
    ADDR[rabbitmq]="$RABBIT_ADDR"
    PID[rabbitmq]="$(ss -ltnpH "sport = :${RABBIT_ADDR##*:}" 2>/dev/null |
        grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2 || true)"
    log "RabbitMQ MQTT at $RABBIT_ADDR (pid ${PID[rabbitmq]:-unknown})"
}

# cpu_ticks PID: utime + stime of PID in clock ticks (empty if unreadable).
cpu_ticks() {
    [[ -n "$1" && -r "/proc/$1/stat" ]] || return 0
    sed -E 's/^.*\) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# wait_quiet: up to QUIET_WAIT s for the 1-minute load average to drop below QUIET_LOAD.
wait_quiet() {
    local i
    for i in $(seq 1 "$QUIET_WAIT"); do
        awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v q="$QUIET_LOAD" 'BEGIN { exit !(l < q) }' &&
            return 0
        [[ $i != 1 ]] || log "load $(cut -d' ' -f1 /proc/loadavg) >= $QUIET_LOAD, waiting up to ${QUIET_WAIT}s"
        sleep 1
    done
}

FAILED=0
declare -A RESULTS # test.broker -> space-separated result files

# run_client TEST NAME COUNT QOS: one client run; its JSON line plus broker_cpu_s and load1 go
# to $TMP/TEST.NAME.N.json.
run_client() {
    local test="$1" name="$2" count="$3" qos="$4" i out t0 t1 cpu load
    i=$(($(wc -w <<<"${RESULTS[$test.$name]:-}") + 1))
    out="$TMP/$test.$name.$i.out"
    wait_quiet
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    t0="$(cpu_ticks "${PID[$name]:-}")"
    if "$CLIENT" --addr "${ADDR[$name]}" --count "$count" --size "$SIZE" --qos "$qos" \
        --inflight "$INFLIGHT" >"$out" 2>&1; then
        :
    else
        FAILED=1
    fi
    t1="$(cpu_ticks "${PID[$name]:-}")"
    cpu="$(awk -v a="${t0:-}" -v b="${t1:-}" -v hz="$CLK_TCK" \
        'BEGIN { if (a == "" || b == "") print -1; else printf "%.2f", (b - a) / hz }')"
    if grep -q '^{"broker_addr"' "$out"; then
        grep '^{"broker_addr"' "$out" | tail -n 1 |
            sed -E "s/\}\$/,\"broker_cpu_s\":$cpu,\"load1\":${load%% *}}/" >"$TMP/$test.$name.$i.json"
        RESULTS[$test.$name]+="$TMP/$test.$name.$i.json "
        log "$test $name run $i (load $load): $(grep -E '^(publish|receive |overall|received)' "$out" |
            tr -s ' ' | paste -sd '|' -) | broker CPU ${cpu}s"
    else
        log "$test $name run $i FAILED (load $load):"
        sed 's/^/    /' "$out" >&2
    fi
    if grep -q '^mqtt_throughput: error' "$out"; then
        FAILED=1
        grep '^mqtt_throughput: error' "$out" | sed 's/^/    /' >&2
    fi
}

# field FILE KEY: a numeric field of the JSON line in FILE.
field() {
    sed -E "s/.*\"$2\":(-?[0-9.eE+]+).*/\1/" "$1"
}

# median TEST.NAME KEY: median of KEY over the successful runs (empty when none).
median() {
    local files="${RESULTS[$1]:-}" f
    [[ -n "$files" ]] || return 0
    for f in $files; do field "$f" "$2"; done | sort -g |
        awk '{v[NR]=$1} END {if (NR==0) exit; if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

# maximum TEST.NAME KEY
maximum() {
    local files="${RESULTS[$1]:-}" f
    [[ -n "$files" ]] || return 0
    for f in $files; do field "$f" "$2"; done | sort -g | tail -n 1
}

ratio() {
    awk -v w="$1" -v p="$2" 'BEGIN { if (w != "" && p != "" && p > 0) printf "%.2fx", w / p; else printf "n/a" }'
}

# Brokers that are up, in order.
ACTIVE=()
for b in $BROKERS; do
    case "$b" in
        warren | mosquitto)
            if start_retry "$b"; then ACTIVE+=("$b"); fi
            ;;
        rabbitmq)
            if find_rabbit; then ACTIVE+=(rabbitmq); fi
            ;;
        *) log "unknown broker $b" ;;
    esac
done
[[ ${#ACTIVE[@]} -gt 0 ]] || { log "no broker to measure"; exit 1; }

for test in qos0 qos1; do
    wants "$TESTS" "$test" || continue
    for _ in $(seq 1 "$RUNS"); do
        for name in "${ACTIVE[@]}"; do
            if [[ $test == qos0 ]]; then
                count=$QOS0_COUNT
                [[ $name == rabbitmq ]] && count=$RABBIT_QOS0_COUNT
                run_client qos0 "$name" "$count" 0
            else
                count=$QOS1_COUNT
                [[ $name == rabbitmq ]] && count=$RABBIT_QOS1_COUNT
                run_client qos1 "$name" "$count" 1
            fi
        done
    done
done

declare -A IDLE # broker -> "KiB per connection|connections|detail"
if wants "$TESTS" idle; then
    for name in "${ACTIVE[@]}"; do
        n="$IDLE_COUNT"
        if [[ $name == rabbitmq ]]; then
            if [[ -z "${PID[rabbitmq]:-}" ]]; then
                log "idle rabbitmq: beam.smp pid unknown (not root?): skipped"
                continue
            fi
            limit="$(awk '/^Max open files/ {print $4}' "/proc/${PID[rabbitmq]}/limits")"
            n="${RABBIT_IDLE_COUNT:-$(awk -v c="$IDLE_COUNT" -v l="$limit" \
                'BEGIN { m = int(l * 0.8); print (c < m ? c : m) }')}"
            [[ "$n" == "$IDLE_COUNT" ]] ||
                log "idle rabbitmq: beam.smp open-file limit $limit: $n connections instead of $IDLE_COUNT"
        else
            # A fresh broker, so memory the throughput runs left behind does not absorb the
            # connections' allocations.
            stop "$name"
            start_retry "$name" || {
                FAILED=1
                continue
            }
        fi
        wait_quiet
        out="$TMP/idle.$name.out"
        if python3 scripts/idle_connections.py --pid "${PID[$name]}" --port "${ADDR[$name]##*:}" \
            --host "${ADDR[$name]%:*}" --count "$n" >"$out" 2>&1; then
            per="$(sed -nE 's/.* ([0-9.-]+) KiB per connection.*/\1/p' "$out" | tail -n 1)"
            IDLE[$name]="$per|$n|$(tail -n 1 "$out")"
            log "idle $name: $(tail -n 1 "$out")"
        else
            FAILED=1
            IDLE[$name]="|$n|FAILED: $(tail -n 1 "$out")"
            log "idle $name with $n connections FAILED:"
            sed 's/^/    /' "$out" >&2
        fi
    done
fi

if wants "$TESTS" qos0 || wants "$TESTS" qos1; then
    echo
    echo "MQTT 3.1.1, 1 publisher + 1 subscriber, $SIZE B payloads; medians of up to $RUNS runs (msg/s)"
    echo "load average (1 min) at the start of each run: $(cat "$TMP"/*.json 2>/dev/null |
        sed -nE 's/.*"load1":([0-9.]+).*/\1/p' | sort -g | paste -sd ' ' - || true)"
fi
for test in qos0 qos1; do
    wants "$TESTS" "$test" || continue
    echo
    if [[ $test == qos0 ]]; then
        echo "QoS 0"
    else
        echo "QoS 1 (publisher window $INFLIGHT; Mosquitto max_inflight_messages ${MOSQ_MAX_INFLIGHT:-20 (default)})"
    fi
    printf '%-10s %4s %8s %11s %11s %11s %8s %8s %6s %6s\n' broker runs count publish receive \
        overall lost brk_cpu pub% sub%
    for name in "${ACTIVE[@]}"; do
        key="$test.$name"
        [[ -n "${RESULTS[$key]:-}" ]] || continue
        printf '%-10s %4s %8s %11.0f %11.0f %11.0f %8s %8s %6.1f %6.1f\n' "$name" \
            "$(wc -w <<<"${RESULTS[$key]}")" "$(median "$key" count)" \
            "$(median "$key" publish_rate)" "$(median "$key" receive_rate)" \
            "$(median "$key" overall_rate)" "$(maximum "$key" lost)" \
            "$(median "$key" broker_cpu_s)" "$(median "$key" publisher_cpu_pct)" \
            "$(median "$key" subscriber_cpu_pct)"
    done
    for peer in mosquitto rabbitmq; do
        [[ -n "${RESULTS[$test.warren]:-}" && -n "${RESULTS[$test.$peer]:-}" ]] || continue
        printf '%-10s %4s %8s %11s %11s %11s\n' "w/$peer" '' '' \
            "$(ratio "$(median "$test.warren" publish_rate)" "$(median "$test.$peer" publish_rate)")" \
            "$(ratio "$(median "$test.warren" receive_rate)" "$(median "$test.$peer" receive_rate)")" \
            "$(ratio "$(median "$test.warren" overall_rate)" "$(median "$test.$peer" overall_rate)")"
    done
done
if wants "$TESTS" idle && [[ ${#IDLE[@]} -gt 0 ]]; then
    echo
    echo "Idle MQTT connections: broker RSS growth (KiB per connection; lower is better)"
    for name in "${ACTIVE[@]}"; do
        [[ -n "${IDLE[$name]:-}" ]] || continue
        IFS='|' read -r per n detail <<<"${IDLE[$name]}"
        printf '%-10s %8s conns  %8s KiB/conn   %s\n' "$name" "$n" "${per:-n/a}" "$detail"
    done
    w="${IDLE[warren]:-}"
    for peer in mosquitto rabbitmq; do
        p="${IDLE[$peer]:-}"
        [[ -n "$w" && -n "$p" ]] || continue
        printf '%-10s %s\n' "w/$peer" "$(ratio "${w%%|*}" "${p%%|*}")"
    done
fi
if [[ -s "$TMP/warren.log" ]]; then
    # Strip colours; anything above INFO is worth a look.
    sed -E 's/\x1b\[[0-9;]*m//g' "$TMP/warren.log" >"$TMP/warren.plain.log"
    n="$(grep -cE ' (WARN|ERROR) ' "$TMP/warren.plain.log" || true)"
    echo
    echo "warren log: $n WARN/ERROR lines"
    grep -E ' (WARN|ERROR) ' "$TMP/warren.plain.log" | head -n 5 || true
fi
exit "$FAILED"
