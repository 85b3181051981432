#!/usr/bin/env bash
# Times Prometheus scrapes and management API lists of a warren holding many queues and
# connections: starts the release binary on free ports, creates QUEUES queues (each with a few
# messages) with `warren perf --keep-queues`, holds CONNECTIONS idle AMQP connections open
# with `warren perf --idle`, then times SCRAPES requests each of /metrics,
# /metrics/per-object, /metrics/detailed (queue families), /api/overview and paged
# /api/queues with curl, and prints min / median / max in milliseconds and the size of each
# response. Bounded: everything it starts stops by itself or at exit.
#
#   scripts/scrape-bench.sh [QUEUES] [CONNECTIONS] [SCRAPES]     (defaults 10000 10000 20)
#
# WARREN_BIN picks the binary (default target/release/warren, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
QUEUES="${1:-10000}"
CONNECTIONS="${2:-10000}"
SCRAPES="${3:-20}"
WARREN_BIN="${WARREN_BIN:-target/release/warren}"
if [[ ! -x "$WARREN_BIN" ]]; then
    cargo build --release --bin warren
fi
command -v curl >/dev/null || { echo "scrape-bench: needs curl" >&2; exit 1; }
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
AMQP=$(port); MQTT=$(port); METRICS=$(port); API=$(port)
"$WARREN_BIN" --bind 127.0.0.1 --amqp-port "$AMQP" --mqtt-port "$MQTT" --ws-port 0 \
    --prometheus-port "$METRICS" --management-port "$API" --data-dir "$TMP/data" >"$TMP/broker.log" 2>&1 &
BROKER=$!
PIDS+=("$BROKER")
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$METRICS/metrics" >/dev/null && break
    sleep 0.1
done
URI="amqp://guest:guest@127.0.0.1:$AMQP/%2f"
echo "creating $QUEUES queues..."
"$WARREN_BIN" perf --uri "$URI" -x 1 -y 0 -u "$QUEUES" -C $((QUEUES * 3)) --keep-queues \
    --queue-pattern 'scrape-bench-%d' --quiet --timeout 300 >/dev/null
echo "opening $CONNECTIONS idle connections..."
"$WARREN_BIN" perf --uri "$URI" --idle "$CONNECTIONS" --duration 600 --quiet >"$TMP/idle.log" 2>&1 &
IDLE=$!
PIDS+=("$IDLE")
for _ in $(seq 1 600); do
    open=$(curl -sf "http://127.0.0.1:$METRICS/metrics" | awk '$1 == "rabbitmq_connections" {print $2}')
    [[ "${open:-0}" -ge "$CONNECTIONS" ]] && break
    sleep 0.5
done
curl -sf "http://127.0.0.1:$METRICS/metrics" | awk '$1 == "rabbitmq_connections" || $1 == "rabbitmq_queues"'
time_path() {
    local path="$1" base="${2:-http://127.0.0.1:$METRICS}" times=() size
    for _ in $(seq 1 "$SCRAPES"); do
        times+=("$(curl -s -u guest:guest -o "$TMP/body" -w '%{time_total}' "$base$path")")
    done
    size=$(wc -c <"$TMP/body")
    printf '%s\n' "${times[@]}" | sort -n | awk -v path="$path" -v size="$size" '
        {v[NR]=$1*1000} END {printf "%-70s min %7.1f ms  median %7.1f ms  max %7.1f ms  %9d bytes\n",
            path, v[1], v[int((NR+1)/2)], v[NR], size}'
}
time_path /metrics
time_path /metrics/per-object
time_path '/metrics/detailed?family=queue_coarse_metrics&family=queue_consumer_count&family=queue_metrics'
time_path '/api/overview' "http://127.0.0.1:$API"
time_path '/api/queues?page=1&page_size=100' "http://127.0.0.1:$API"
time_path '/api/queues/%2F?page=50&page_size=100&sort=messages&sort_reverse=true' "http://127.0.0.1:$API"
