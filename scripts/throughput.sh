#!/usr/bin/env bash
# Compare warren's AMQP 0-9-1 throughput with RabbitMQ's using `warren perf` (1 producer + 1
# auto-ack consumer, each on its own connection). scripts/bench-compare.sh runs the full
# scenario set against warren, RabbitMQ and Mosquitto.
#
# Usage: scripts/throughput.sh [WARREN_BIN] [-- EXTRA_CLIENT_ARGS...]
#   WARREN_BIN   warren binary (default: ${CARGO_TARGET_DIR:-target}/release/warren; built with
#                `cargo build --release --bin warren` when the default is missing)
#   EXTRA_CLIENT_ARGS are passed to every `warren perf` run, e.g. -- --confirm 1024 --persistent
#
# Environment:
#   COUNT=200000 SIZE=16 RUNS=3   messages per run, body size, runs per broker
#   RABBIT_ADDR=127.0.0.1:5672    RabbitMQ to compare with (skipped when not reachable)
#   CARGO_TARGET_DIR              where cargo builds (default: target/ in the repo)
#   CLIENT                        warren binary used as the client (`CLIENT perf ...`; default:
#                                 WARREN_BIN)
#
# Starts warren on a free loopback port with a temporary data dir, runs the client RUNS times
# against it and against RabbitMQ, and prints medians and the warren/RabbitMQ ratio. It stops
# only the warren process it started (by PID). Exit status is non-zero if any run failed.
# Columns: publish = producer rate (without --confirm: how fast the broker took the bytes off
# the socket), consume = consumer's first->last message, overall = first publish -> last
# message consumed; client_cpu% = the client's own CPU use (share of one core, all its
# threads), to show it is not the bottleneck; brk_cpu% = the broker's (when its PID is known).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
COUNT="${COUNT:-200000}"
SIZE="${SIZE:-16}"
RUNS="${RUNS:-3}"
RABBIT_ADDR="${RABBIT_ADDR:-127.0.0.1:5672}"

WARREN_BIN=""
if [[ $# -gt 0 && "$1" != "--" ]]; then
    WARREN_BIN="$1"
    shift
fi
if [[ $# -gt 0 && "$1" == "--" ]]; then
    shift
fi
EXTRA_ARGS=("$@")

log() { echo "throughput.sh: $*" >&2; }

# host:port accepting TCP connections?
reachable() {
    local host="${1%:*}" port="${1##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# A loopback port nothing listens on.
free_port() {
    local p i
    for i in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! reachable "127.0.0.1:$p"; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

if [[ -z "$WARREN_BIN" ]]; then
    WARREN_BIN="$TARGET_DIR/release/warren"
    if [[ ! -x "$WARREN_BIN" ]]; then
        log "building warren (release)"
        cargo build --release --quiet --bin warren || log "could not build warren"
    fi
fi
CLIENT="${CLIENT:-$WARREN_BIN}"
if [[ ! -x "$CLIENT" ]]; then
    log "no client binary at $CLIENT"
    exit 1
fi

WARREN_PID=""
TMP="$(mktemp -d -t warren-throughput.XXXXXX)"
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    if [[ -n "$WARREN_PID" ]] && kill -0 "$WARREN_PID" 2>/dev/null; then
        kill "$WARREN_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$WARREN_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$WARREN_PID" 2>/dev/null || true
        wait "$WARREN_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILED=0
declare -A RESULTS # broker -> space-separated JSON files

# PID of the process listening on TCP port $1 (empty when unknown).
listener_pid() {
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -oE 'pid=[0-9]+' | head -n 1 | cut -d= -f2
}

# run_client NAME ADDR [PID]: RUNS client runs, JSON lines kept in $TMP/NAME.N.json.
run_client() {
    local name="$1" addr="$2" pid="${3:-}" i out
    local pid_args=()
    [[ -n "$pid" ]] && pid_args=(--broker-pid "$pid")
    for i in $(seq 1 "$RUNS"); do
        out="$TMP/$name.$i.out"
        if "$CLIENT" perf --uri "amqp://guest:guest@$addr/%2f" --count "$COUNT" --size "$SIZE" \
            --auto-ack --queue-pattern "throughput-$$-%d" "${pid_args[@]}" "${EXTRA_ARGS[@]}" \
            >"$out" 2>&1; then
            grep '^{"mode"' "$out" | tail -n 1 >"$TMP/$name.$i.json"
            RESULTS[$name]+="$TMP/$name.$i.json "
            log "$name run $i: $(grep -E '^(published|consumed|latency|client CPU)' "$out" | tr -s ' ' | paste -sd '|' -)"
        else
            FAILED=1
            log "$name run $i FAILED:"
            sed 's/^/    /' "$out" >&2
        fi
    done
}

# field FILE KEY: a numeric field of the JSON line in FILE (0 when absent or null).
# Derived keys: consume_first_last (consumer's first -> last message), overall (start -> last
# message consumed).
field() {
    python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
k = sys.argv[2]
if k == "consume_first_last":
    span = r["consume_s"] - r["first_consume_s"]
    v = (r["consumed"] - 1) / span if span > 0 and r["consumed"] > 1 else 0
elif k == "overall":
    v = r["consume_rate"]
else:
    v = r.get(k)
print(v if isinstance(v, (int, float)) else 0)
' "$1" "$2"
}

# median NAME KEY: median of KEY over NAME's successful runs (empty when none).
median() {
    local files="${RESULTS[$1]:-}" f
    [[ -n "$files" ]] || return 0
    for f in $files; do field "$f" "$2"; done | sort -g |
        awk '{v[NR]=$1} END {if (NR==0) exit; if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'
}

if [[ -x "$WARREN_BIN" ]]; then
    PORT="$(free_port)" || { log "no free port found"; exit 1; }
    log "starting $WARREN_BIN on 127.0.0.1:$PORT (data dir $TMP/data)"
    mkdir -p "$TMP/data"
    # Other listeners (e.g. --mqtt-port) get free ports too, so a broker already running on
    # their default ports doesn't stop this one from starting.
    OTHER_PORTS=()
    for opt in $("$WARREN_BIN" --help 2>/dev/null | grep -oE -- '--[a-z0-9-]+-port' | sort -u); do
        [[ "$opt" == "--amqp-port" ]] && continue
        # The TLS listeners stay off (they need a certificate).
        [[ "$opt" =~ ^--(amqps|mqtts|wss)-port$ ]] && continue
        OTHER_PORTS+=("$opt" "$(free_port)")
    done
    "$WARREN_BIN" --bind 127.0.0.1 --amqp-port "$PORT" --data-dir "$TMP/data" "${OTHER_PORTS[@]}" \
        >"$TMP/warren.log" 2>&1 &
    WARREN_PID=$!
    for _ in $(seq 1 100); do
        reachable "127.0.0.1:$PORT" && break
        if ! kill -0 "$WARREN_PID" 2>/dev/null; then
            log "warren exited during startup:"
            tail -n 20 "$TMP/warren.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    if ! reachable "127.0.0.1:$PORT"; then
        log "warren is not listening on 127.0.0.1:$PORT after 10 s"
        tail -n 20 "$TMP/warren.log" >&2
        exit 1
    fi
    run_client warren "127.0.0.1:$PORT" "$WARREN_PID"
else
    log "no warren binary at $WARREN_BIN: measuring RabbitMQ only"
fi

if reachable "$RABBIT_ADDR"; then
    run_client rabbitmq "$RABBIT_ADDR" "$(listener_pid "${RABBIT_ADDR##*:}")"
else
    log "RabbitMQ not reachable at $RABBIT_ADDR: skipped"
fi

echo
echo "1 producer / 1 auto-ack consumer, $COUNT msgs x $SIZE B, ${EXTRA_ARGS[*]:-transient, no confirms}; median of $RUNS runs (msg/s)"
printf '%-10s %5s %12s %12s %12s %10s %10s\n' broker runs publish consume overall client_cpu% brk_cpu%
for name in warren rabbitmq; do
    [[ -n "${RESULTS[$name]:-}" ]] || continue
    runs=$(wc -w <<<"${RESULTS[$name]}")
    printf '%-10s %5s %12.0f %12.0f %12.0f %10.1f %10.1f\n' "$name" "$runs" \
        "$(median "$name" publish_rate)" "$(median "$name" consume_first_last)" \
        "$(median "$name" overall)" "$(median "$name" client_cpu_pct)" \
        "$(median "$name" broker_cpu_pct)"
done
if [[ -n "${RESULTS[warren]:-}" && -n "${RESULTS[rabbitmq]:-}" ]]; then
    printf '%-10s %5s' 'ratio w/r' ''
    for key in publish_rate consume_first_last overall; do
        printf ' %12s' "$(awk -v w="$(median warren "$key")" -v r="$(median rabbitmq "$key")" \
            'BEGIN { if (r > 0) printf "%.2fx", w / r; else print "n/a" }')"
    done
    echo
fi
exit "$FAILED"
