#!/usr/bin/env bash
# Throughput of queue features on warren and RabbitMQ with `warren perf` (the same client for
# both): a 100-level priority queue against a plain queue, and dead lettering (expired and
# rejected messages). Prints ONE table of medians with warren/RabbitMQ ratios and each
# feature's rate over the plain queue's, plus machine information.
#
# Usage: scripts/bench-queue-features.sh [options]
#   --only LIST        comma-separated scenarios (default: all but dlx-ttl0-flood, see below)
#   --brokers LIST     warren,rabbitmq (default: both)
#   --runs N           runs per scenario and broker (default 3; the table shows medians); the
#                      brokers alternate run by run (warren, RabbitMQ, warren, …) so they
#                      share the machine's noise
#   --warren-bin PATH  warren binary, also used as the client (default:
#                      ${CARGO_TARGET_DIR:-target}/release/warren, built when missing)
#   --keep DIR         copy every run's output and the broker logs to DIR
#   --list             print the scenarios and exit
#
# Scenarios: 1 producer and 1 consumer connection, 64 B transient messages, published flat out
# (no confirms); the consumer acks each message (prefetch 100). The figure is the consume
# rate: messages received per second, from the start to the last one received.
#   plain              a queue without arguments; RUN_SECS of publishing
#   prio100-spread10   x-max-priority 100; priorities cycle 0,1,…,9 message by message;
#                      RUN_SECS of publishing
#   prio100-spread100  x-max-priority 100; priorities cycle 0,1,…,99; RUN_SECS
#   dlx-ttl0           DLX_COUNT messages published to a queue with x-message-ttl 0,
#                      x-dead-letter-exchange "" and x-dead-letter-routing-key <dest>, which
#                      nobody consumes: every message expires and is dead-lettered to <dest>,
#                      where the consumer is. A count, not a time: the backlog a fast publisher
#                      builds ahead of the dead lettering stays small (400,000 x 64 B bodies,
#                      under warren's 32 MiB in-memory budget per queue, so nothing is paged)
#   dlx-reject         DLX_COUNT messages to the same queue without the TTL, consumed by a
#                      second connection that rejects everything (basic.nack requeue=false, one
#                      multiple nack per read, prefetch 100): all are dead-lettered to <dest>
#   dlx-ttl0-flood     dlx-ttl0 for RUN_SECS of publishing instead (not in the default set):
#                      with a publisher faster than the dead lettering the source queue's
#                      backlog grows for the whole run, and what is measured is mostly how the
#                      broker copes with that backlog
#
# Environment: RUN_SECS=4 DLX_COUNT=400000 BUILD_WAIT=600 (before each run, wait up to
#   BUILD_WAIT s while a cargo or rustc process runs on the machine: the machine is shared)
#
# Brokers: warren (release build, spare loopback ports, a temporary data dir) is started fresh
# for every scenario. RabbitMQ (Debian's rabbitmq-server; not installed by this script) runs as
# a private node started by this script: node name qfbench<PID>@localhost, AMQP, distribution
# and epmd on spare ports bound to 127.0.0.1, no plugins, its data and logs in a temporary
# directory; it is stopped at the end (rabbitmqctl stop, then by PID, and its epmd). Only
# processes this script started are stopped, by PID. Both brokers stay up while the other one
# is measured (idle).
#
# Exit status: non-zero if any run failed (its cell shows FAIL, or "*" when a failed run still
# reported figures that are included; the notes say why).

# Functions are called through the EXIT trap, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS=3
RUN_SECS="${RUN_SECS:-4}"
BUILD_WAIT="${BUILD_WAIT:-600}"
DLX_COUNT="${DLX_COUNT:-400000}"
DEFAULT_SCENARIOS="plain prio100-spread10 prio100-spread100 dlx-ttl0 dlx-reject"
ALL_SCENARIOS="$DEFAULT_SCENARIOS dlx-ttl0-flood"
SCENARIOS="$DEFAULT_SCENARIOS"
BROKERS="warren rabbitmq"
WARREN_BIN=""
KEEP_DIR=""

log() { echo "bench-queue-features: $*" >&2; }
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
        for b in warren rabbitmq; do
            [[ ",$2," == *",$b,"* ]] && BROKERS+="$b "
        done
        for b in ${2//,/ }; do
            [[ " warren rabbitmq " == *" $b "* ]] || die "unknown broker $b"
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
[[ -n "$BROKERS" ]] || die "no broker selected"
[[ "$RUN_SECS" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "RUN_SECS must be a number of seconds"
[[ "$DLX_COUNT" =~ ^[1-9][0-9]*$ ]] || die "DLX_COUNT must be a positive number"

# perf arguments of scenario $1 for queue names starting with $2 (without URI and broker PID).
scenario_args() {
    local common="--size 64 --prefetch 100 --queue-pattern $2-%d"
    local secs="--duration $RUN_SECS" count="--count $DLX_COUNT"
    local dlx="--queue-arg x-dead-letter-exchange= --queue-arg x-dead-letter-routing-key=$2-dead --consume-queue $2-dead"
    case "$1" in
    plain) echo "$common $secs" ;;
    prio100-spread10) echo "$common $secs --queue-arg x-max-priority=100 --priority-spread 10" ;;
    prio100-spread100) echo "$common $secs --queue-arg x-max-priority=100 --priority-spread 100" ;;
    dlx-ttl0) echo "$common $count $dlx --queue-arg x-message-ttl=0" ;;
    dlx-reject) echo "$common $count $dlx --rejecters 1" ;;
    dlx-ttl0-flood) echo "$common $secs $dlx --queue-arg x-message-ttl=0" ;;
    esac
}

# host:port accepting TCP connections?
reachable() {
    local host="${1%:*}" port="${1##*:}"
    (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

# A loopback port no socket uses, below Linux's ephemeral range (32768+).
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

if wants_broker rabbitmq && ! command -v rabbitmq-server >/dev/null; then
    die "rabbitmq-server is not installed (apt-get install rabbitmq-server, or --brokers warren)"
fi
if [[ -z "$WARREN_BIN" ]]; then
    WARREN_BIN="$TARGET_DIR/release/warren"
    if [[ ! -x "$WARREN_BIN" ]]; then
        log "building warren (release)"
        cargo build --release --quiet --bin warren || die "could not build warren"
    fi
fi
[[ -x "$WARREN_BIN" ]] || die "no warren binary at $WARREN_BIN"
"$WARREN_BIN" perf --help 2>/dev/null | grep -q -- '--rejecters' ||
    die "$WARREN_BIN perf has no --queue-arg/--priority-spread/--consume-queue/--rejecters (rebuild it)"

TMP="$(mktemp -d -t bench-queue-features.XXXXXX)"
chmod 755 "$TMP" # RabbitMQ runs as its own user: it must reach its directory inside.
mkdir -p "$TMP/res"
declare -A PID  # broker -> PID
declare -A AMQP # broker -> host:port
RABBIT_ENV=()
# Debian's rabbitmqctl wrapper re-runs itself as the rabbitmq user through su, which drops
# ERL_EPMD_PORT, so the stop command may start an epmd on the default port 4369. One that was
# not running before this script is ended with the node.
DEFAULT_EPMD_BEFORE="$(listener_pid 4369)"
RABBIT_NODE=""
RABBIT_EPMD_PORT=""

NOFILE="$(ulimit -Hn)"
if [[ "$NOFILE" == unlimited || "$NOFILE" -gt 1048576 ]]; then
    NOFILE=1048576
fi
ulimit -n "$NOFILE" 2>/dev/null || true

# stop NAME: stops the broker NAME this script started (politely, then KILL after 10 s).
stop() {
    local pid="${PID[$1]:-}"
    [[ -n "$pid" ]] || return 0
    if [[ "$1" == rabbitmq ]]; then
        env "${RABBIT_ENV[@]}" rabbitmqctl -n "$RABBIT_NODE" stop >/dev/null 2>&1 ||
            kill "$pid" 2>/dev/null || true
    elif kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if [[ "$1" == rabbitmq && -n "$RABBIT_EPMD_PORT" ]]; then
        # The node started an epmd of its own on that port: end it too.
        epmd -port "$RABBIT_EPMD_PORT" -kill >/dev/null 2>&1 || true
        local default_epmd
        default_epmd="$(listener_pid 4369)"
        if [[ -z "$DEFAULT_EPMD_BEFORE" && -n "$default_epmd" ]]; then
            kill "$default_epmd" 2>/dev/null || true
        fi
    fi
    PID[$1]=""
}

cleanup() {
    stop warren
    stop rabbitmq
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

start_warren() {
    local aport mport dir extra=()
    aport="$(free_port)" && mport="$(free_port)" || return 1
    dir="$TMP/warren-data.$RANDOM"
    mkdir -p "$dir"
    # Every other listener on a spare port, so nothing else running stops this one.
    for flag in --ws-port --prometheus-port --management-port; do
        "$WARREN_BIN" --help 2>/dev/null | grep -q -- "$flag" && extra+=("$flag" 0)
    done
    (ulimit -n "$NOFILE" && exec "$WARREN_BIN" --bind 127.0.0.1 --amqp-port "$aport" \
        --mqtt-port "$mport" --data-dir "$dir" "${extra[@]}") >>"$TMP/warren.log" 2>&1 &
    PID[warren]=$!
    AMQP[warren]="127.0.0.1:$aport"
    for _ in $(seq 1 200); do
        reachable "${AMQP[warren]}" && return 0
        kill -0 "${PID[warren]}" 2>/dev/null || break
        sleep 0.1
    done
    log "warren did not start:"
    tail -n 20 "$TMP/warren.log" >&2
    return 1
}

# A private RabbitMQ node on spare loopback ports (no plugins).
start_rabbitmq() {
    local aport dport base="$TMP/rabbitmq"
    aport="$(free_port)" && dport="$(free_port)" && RABBIT_EPMD_PORT="$(free_port)" || return 1
    mkdir -p "$base"
    printf 'listeners.tcp.1 = 127.0.0.1:%s\n' "$aport" >"$base/rabbitmq.conf"
    echo '[].' >"$base/enabled_plugins"
    chown -R rabbitmq: "$base" 2>/dev/null || chmod -R a+rwX "$base"
    RABBIT_NODE="qfbench$$@localhost"
    RABBIT_ENV=(RABBITMQ_NODENAME="$RABBIT_NODE" RABBITMQ_NODE_PORT="$aport"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_DIST_PORT="$dport"
        ERL_EPMD_PORT="$RABBIT_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
        RABBITMQ_CONFIG_FILE="$base/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins"
        RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log"
        RABBITMQ_PID_FILE="$base/pid")
    (ulimit -n "$NOFILE" && exec env "${RABBIT_ENV[@]}" rabbitmq-server) \
        >>"$TMP/rabbitmq.log" 2>&1 &
    PID[rabbitmq]=$!
    AMQP[rabbitmq]="127.0.0.1:$aport"
    for _ in $(seq 1 600); do
        if reachable "${AMQP[rabbitmq]}"; then
            local beam
            beam="$(listener_pid "$aport")"
            [[ -n "$beam" ]] && PID[rabbitmq]="$beam"
            return 0
        fi
        kill -0 "${PID[rabbitmq]}" 2>/dev/null || break
        sleep 0.1
    done
    log "the private RabbitMQ node did not start:"
    tail -n 20 "$TMP/rabbitmq.log" >&2
    return 1
}

# Waits (up to BUILD_WAIT s) while a cargo or rustc process runs; says so when it gives up.
wait_no_build() {
    local waited=0
    while pgrep -x cargo >/dev/null || pgrep -x rustc >/dev/null; do
        if ((waited == 0)); then log "a cargo/rustc process is running: waiting (up to $BUILD_WAIT s)"; fi
        if ((waited >= BUILD_WAIT)); then
            log "still building after $BUILD_WAIT s: running anyway"
            echo 1
            return
        fi
        sleep 5
        waited=$((waited + 5))
    done
    echo 0
}

FAILED=0

# run_one SCENARIO BROKER REP: one client run; its JSON line, the load and build flag in res/.
run_one() {
    local scen="$1" broker="$2" rep="$3" out args load building
    out="$TMP/res/$scen.$broker.$rep"
    read -r -a args <<<"$(scenario_args "$scen" "qf-$$-$scen")"
    building="$(wait_no_build)"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    echo "$load $building" >"$out.load"
    if timeout 300 "$WARREN_BIN" perf --uri "amqp://guest:guest@${AMQP[$broker]}/%2f" \
        "${args[@]}" --broker-pid "${PID[$broker]}" >"$out.out" 2>&1; then
        grep '^{"mode"' "$out.out" | tail -n 1 >"$out.json"
        log "$scen $broker #$rep: $(python3 "$TMP/summary.py" line "$out.json") (load $load)"
    else
        FAILED=1
        grep '^{"mode"' "$out.out" | tail -n 1 >"$out.json" || true
        grep -E 'error' "$out.out" | tail -n 1 >"$out.fail" || true
        [[ -s "$out.fail" ]] || tail -n 1 "$out.out" >"$out.fail"
        log "$scen $broker #$rep FAILED: $(cat "$out.fail")"
    fi
}

# ---- the table -----------------------------------------------------------------------------
cat >"$TMP/summary.py" <<'PY'
import json, os, statistics, sys

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def line(path):
    r = load(path) or {}
    parts = [f"received {r.get('consume_rate', 0):,.0f} msg/s",
             f"sent {r.get('publish_rate', 0):,.0f} msg/s"]
    if r.get("rejected"):
        parts.append(f"rejected {r['rejected']:,}")
    parts.append(f"client {r.get('client_cpu_pct', 0):.0f}%")
    if r.get("broker_cpu_pct") is not None:
        parts.append(f"broker {r['broker_cpu_pct']:.0f}%")
    return ", ".join(parts)

def table(resdir, scenarios, brokers, runs):
    brokers = [b for b in ["warren", "rabbitmq"] if b in brokers]
    med = {}    # (scen, broker) -> median consume rate
    cells = {}  # (scen, broker) -> text
    cpu = {}    # (scen, broker) -> median broker CPU %
    notes = []
    for scen in scenarios:
        for b in brokers:
            rates, cpus, fails = [], [], []
            for i in range(1, runs + 1):
                base = os.path.join(resdir, f"{scen}.{b}.{i}")
                r = load(base + ".json") if os.path.exists(base + ".json") else None
                if r is not None and r.get("consumed"):
                    rates.append(r["consume_rate"])
                    if r.get("broker_cpu_pct") is not None:
                        cpus.append(r["broker_cpu_pct"])
                if os.path.exists(base + ".fail"):
                    with open(base + ".fail") as f:
                        fails.append(f.read().strip())
            if fails:
                notes.append(f"{scen} on {b}: {len(fails)} failed run(s): {fails[0][:200]}")
            if rates:
                med[(scen, b)] = statistics.median(rates)
                text = f"{med[(scen, b)]:,.0f}"
                if len(rates) > 1:
                    text += f" ({min(rates) / 1000:,.0f}k-{max(rates) / 1000:,.0f}k)"
                cells[(scen, b)] = text + ("*" if fails else "")
            else:
                cells[(scen, b)] = "FAIL" if fails else "-"
            if cpus:
                cpu[(scen, b)] = statistics.median(cpus)
    def ratio(a, b):
        return f"{a / b:.2f}x" if a is not None and b else ""
    head = ["scenario"]
    for b in brokers:
        head.append(f"{b} msg/s (range)")
    if len(brokers) == 2:
        head.append("warren/rabbit")
    for b in brokers:
        head.append(f"{b}/plain")
    for b in brokers:
        head.append(f"{b} CPU%")
    rows = []
    for scen in scenarios:
        row = [scen] + [cells[(scen, b)] for b in brokers]
        if len(brokers) == 2:
            row.append(ratio(med.get((scen, "warren")), med.get((scen, "rabbitmq"))))
        for b in brokers:
            row.append("" if scen == "plain" else ratio(med.get((scen, b)), med.get(("plain", b))))
        for b in brokers:
            c = cpu.get((scen, b))
            row.append(f"{c:.0f}" if c is not None else "")
        rows.append(row)
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    def pr(cs):
        print("  ".join(str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i])
                        for i, c in enumerate(cs)))
    pr(head)
    pr(["-" * w for w in widths])
    for r in rows:
        pr(r)
    for n in notes:
        print("note: " + n)

if __name__ == "__main__":
    if sys.argv[1] == "line":
        print(line(sys.argv[2]))
    else:
        table(sys.argv[2], sys.argv[3].split(), sys.argv[4].split(), int(sys.argv[5]))
PY

# ---- the runs ------------------------------------------------------------------------------
START_DATE="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
START_LOAD="$(cut -d' ' -f1-3 /proc/loadavg)"
SECONDS=0
log "scenarios: $SCENARIOS; brokers: $BROKERS; $RUNS run(s) each, alternating"

if wants_broker rabbitmq; then
    start_rabbitmq || die "could not start a private RabbitMQ node"
    log "RabbitMQ node $RABBIT_NODE on ${AMQP[rabbitmq]}, pid ${PID[rabbitmq]}"
fi
for scen in $SCENARIOS; do
    if wants_broker warren; then
        stop warren
        start_warren || die "could not start warren"
    fi
    for rep in $(seq 1 "$RUNS"); do
        for broker in $BROKERS; do
            run_one "$scen" "$broker" "$rep" || true
        done
    done
done
stop warren

# ---- report ----------------------------------------------------------------------------------
WARREN_VERSION="$("$WARREN_BIN" --version 2>/dev/null | head -n 1 | sed 's/^warren //') ($(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo '+changes'))"
RABBIT_VERSION=""
if wants_broker rabbitmq; then
    RABBIT_VERSION="$(env "${RABBIT_ENV[@]}" rabbitmqctl -n "$RABBIT_NODE" version 2>/dev/null | head -n 1 || true)"
fi
stop rabbitmq
BUILDS="$(cat "$TMP"/res/*.load 2>/dev/null | awk '$2 == 1' | wc -l)"
echo
echo "queue features: warren vs RabbitMQ — scripts/bench-queue-features.sh, client: warren perf (same binary for both)"
echo "date: $START_DATE; duration $((SECONDS / 60)) min $((SECONDS % 60)) s; $RUNS run(s) per cell (brokers alternating), medians (min-max)"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "load average: $START_LOAD at start, $(cut -d' ' -f1-3 /proc/loadavg) at end; 1-min load at run starts: median $(cut -d' ' -f1 "$TMP"/res/*.load 2>/dev/null | sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)] ", max " v[NR]; else print "n/a"}'); runs started during a cargo build: $BUILDS"
echo "brokers: warren ${WARREN_VERSION}; RabbitMQ ${RABBIT_VERSION:-n/a}"
echo "runs: 1 producer, 1 consumer, 64 B transient, no confirms, manual ack, prefetch 100; ${RUN_SECS} s of publishing, or $DLX_COUNT messages for dlx-ttl0 and dlx-reject; figure: messages received per second by the consumer (of the dead-letter queue for dlx-*)"
echo
python3 "$TMP/summary.py" table "$TMP/res" "$SCENARIOS" "$BROKERS" "$RUNS"
exit "$FAILED"
