#!/usr/bin/env bash
# Crash soak (by hand, not in CI): runs tests/crash.rs with many kill -9 cycles.
#
# Usage: scripts/crash_soak.sh [CYCLES]
#   CYCLES   kill cycles (default: $CRASH_CYCLES, else 50)
#
# Environment:
#   RELEASE=1          build and run in release mode (default: the debug build CI uses)
#   CARGO_TARGET_DIR   where cargo builds (default: target/ in the repo)
#   LOG                where the full output goes (default: a temporary file, kept)
#
# Each cycle starts the warren binary on a temporary data directory (the same one for every
# cycle), publishes persistent messages with publisher confirms at full speed to a new durable
# queue, SIGKILLs the broker after a random 200-1500 ms, restarts it, and checks that every
# confirmed message is there exactly once (see tests/crash.rs). Prints one line per cycle and
# the totals: confirmed, recovered, lost (must be 0), duplicates. Exit status is non-zero if
# any cycle failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CYCLES="${1:-${CRASH_CYCLES:-50}}"
if ! [[ "$CYCLES" =~ ^[0-9]+$ ]] || [[ "$CYCLES" -lt 1 ]]; then
    echo "crash_soak.sh: CYCLES must be a positive integer, got '$CYCLES'" >&2
    exit 2
fi
PROFILE=()
if [[ "${RELEASE:-0}" == "1" ]]; then
    PROFILE=(--release)
fi
LOG="${LOG:-$(mktemp -t warren-crash-soak.XXXXXX.log)}"

echo "crash soak: $CYCLES kill cycles${PROFILE:+ (release)}; full output in $LOG"
set +e
CRASH_CYCLES="$CYCLES" cargo test "${PROFILE[@]}" --test crash -- --nocapture --test-threads=1 \
    2>&1 | tee "$LOG" | grep --line-buffered -oE '(cycle [0-9]+/[0-9]+:.*|crash totals:.*|test result:.*|thread .* panicked.*)'
status=${PIPESTATUS[0]}
set -e

if ! grep -q '^crash totals:' "$LOG"; then
    echo "crash soak FAILED before the totals (see $LOG):" >&2
    grep -A 20 'panicked at' "$LOG" | grep -vE '^\s+(at |[0-9]+:)' | head -40 >&2 || true
    exit 1
fi
if [[ "$status" -ne 0 ]]; then
    echo "crash soak FAILED (exit $status, see $LOG)" >&2
    exit "$status"
fi
echo "crash soak passed"
