#!/usr/bin/env bash
# Benchmarks warren's transports against each other with `warren perf`: AMQP 16 B 1p1c over
# plain TCP and TLS, MQTT QoS 0 64 B 1p1c over TCP, TLS, WebSocket and secure WebSocket, and
# the broker's memory per idle connection on each transport (a fresh broker per transport).
# Runs are interleaved (plain, TLS, plain, TLS, ...) so the machine's drift hits all alike;
# the table shows medians and ratios to plain TCP.
#
# The throughput runs are bench-compare.sh's amqp-16b (auto-ack) and mqtt-qos0-1p1c scenarios.
#
# Usage: scripts/bench-transports.sh [--warren-bin PATH] [--runs N] [--idle N] [--secs S]
#                                    [--no-idle]
#   defaults: ${CARGO_TARGET_DIR:-target}/release/warren (built when missing), 3 runs,
#   10,000 idle connections (--idle 0 or --no-idle skips them), 10 s per throughput run.
# Everything listens on 127.0.0.1; every broker started here is stopped by its PID.
set -euo pipefail
cd "$(dirname "$0")/.."
WARREN_BIN="${CARGO_TARGET_DIR:-target}/release/warren"
RUNS=3
IDLE=10000
SECS=10
while [[ $# -gt 0 ]]; do
    case "$1" in
        --warren-bin) WARREN_BIN="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --idle) IDLE="$2"; shift 2 ;;
        --secs) SECS="$2"; shift 2 ;;
        --no-idle) IDLE=0; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [[ ! -x "$WARREN_BIN" ]]; then
    cargo build --release --bin warren
fi
TMP="$(mktemp -d)"
BROKER_PID=""
cleanup() {
    if [[ -n "$BROKER_PID" ]]; then kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true
"$WARREN_BIN" gen-certs "$TMP/certs" --client guest >/dev/null
CA="$TMP/certs/ca_certificate.pem"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_broker() {
    AMQP=$(port); AMQPS=$(port); MQTT=$(port); MQTTS=$(port); WS=$(port); WSS=$(port)
    rm -rf "$TMP/data"
    "$WARREN_BIN" --bind 127.0.0.1 --data-dir "$TMP/data" --amqp-port "$AMQP" --amqps-port "$AMQPS" \
        --mqtt-port "$MQTT" --mqtts-port "$MQTTS" --ws-port "$WS" --wss-port "$WSS" --prometheus-port 0 --management-port 0 \
        --tls-cert "$TMP/certs/server_certificate.pem" --tls-key "$TMP/certs/server_key.pem" \
        >"$TMP/broker.log" 2>&1 &
    BROKER_PID=$!
    for _ in $(seq 1 100); do
        grep -q "secure WebSocket listener started" "$TMP/broker.log" && return 0
        sleep 0.1
    done
    echo "broker did not start:" >&2; cat "$TMP/broker.log" >&2; exit 1
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

uri() {
    case "$1" in
        amqp) echo "amqp://guest:guest@127.0.0.1:$AMQP/%2f" ;;
        amqps) echo "amqps://guest:guest@127.0.0.1:$AMQPS/%2f" ;;
        mqtt) echo "mqtt://127.0.0.1:$MQTT" ;;
        mqtts) echo "mqtts://127.0.0.1:$MQTTS" ;;
        ws) echo "ws://127.0.0.1:$WS/ws" ;;
        wss) echo "wss://127.0.0.1:$WSS/ws" ;;
    esac
}

tls_args() { case "$1" in amqps | mqtts | wss) echo "--tls-ca $CA" ;; esac; }

# Throughput: one broker, interleaved runs.
start_broker
for run in $(seq 1 "$RUNS"); do
    for t in amqp amqps; do
        # shellcheck disable=SC2046
        "$WARREN_BIN" perf --quiet --duration "$SECS" --broker-pid "$BROKER_PID" --uri "$(uri $t)" \
            --size 16 -x 1 -y 1 --auto-ack $(tls_args $t) | tail -1 >"$TMP/tput-$t-$run.json"
        echo "throughput $t run $run done" >&2
    done
    for t in mqtt mqtts ws wss; do
        # shellcheck disable=SC2046
        "$WARREN_BIN" perf --quiet --duration "$SECS" --broker-pid "$BROKER_PID" --uri "$(uri $t)" \
            --size 64 -x 1 -y 1 --qos 0 $(tls_args $t) | tail -1 >"$TMP/tput-$t-$run.json"
        echo "throughput $t run $run done" >&2
    done
done
stop_broker

# Memory per idle connection: a fresh broker per transport and run.
for run in $(seq 1 "$RUNS"); do
    [[ "$IDLE" -gt 0 ]] || break
    for t in amqp amqps mqtt mqtts ws wss; do
        start_broker
        # shellcheck disable=SC2046
        "$WARREN_BIN" perf --quiet --idle "$IDLE" --duration 5 --broker-pid "$BROKER_PID" \
            --uri "$(uri $t)" $(tls_args $t) | tail -1 >"$TMP/idle-$t-$run.json"
        stop_broker
        echo "idle $t run $run done" >&2
    done
done

python3 - "$TMP" "$RUNS" "$IDLE" <<'PY'
import json, os, statistics, sys
tmp, runs, idle = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def load(kind, t):
    out = []
    for run in range(1, runs + 1):
        path = os.path.join(tmp, "%s-%s-%d.json" % (kind, t, run))
        try:
            out.append(json.load(open(path)))
        except (OSError, ValueError):
            pass
    return out
def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
print("| transport | consumed msg/s (median of %d) | vs plain | broker µs/msg | idle KiB/conn (%d conns) | vs plain |" % (runs, idle))
print("|---|---|---|---|---|---|")
for plain, group in (("amqp", ["amqp", "amqps"]), ("mqtt", ["mqtt", "mqtts", "ws", "wss"])):
    base_rate = median([r.get("consume_rate") for r in load("tput", plain)])
    base_idle = median([(r.get("idle") or {}).get("rss_per_conn_kib") for r in load("idle", plain)])
    for t in group:
        rate = median([r.get("consume_rate") for r in load("tput", t)])
        cpu = median([r.get("broker_cpu_us_per_msg") for r in load("tput", t)])
        kib = median([(r.get("idle") or {}).get("rss_per_conn_kib") for r in load("idle", t)])
        ratio = "%.2f×" % (rate / base_rate) if rate and base_rate else "-"
        iratio = "%.2f×" % (kib / base_idle) if kib and base_idle else "-"
        print("| %s | %s | %s | %s | %s | %s |" % (
            t, "{:,.0f}".format(rate) if rate else "-", ratio,
            "%.2f" % cpu if cpu else "-", "%.2f" % kib if kib else "-", iratio))
PY
