#!/usr/bin/env bash
# Paging soak (by hand, not in CI): the `paging` test of tests/durability.rs at full size.
#
# Usage: scripts/paging.sh [MB] [RSS_LIMIT_MB]
#   MB             MiB of 64 KiB messages published to one queue with no consumer (default 2048)
#   RSS_LIMIT_MB   the broker's resident set size must stay below this (default 512)
#
# Environment:
#   PAGING_MODE=mixed|persistent|transient   delivery mode of the messages (default mixed:
#                                            even-numbered persistent, odd transient)
#   RELEASE=1          build and run in release mode (default: the debug build CI uses)
#   CARGO_TARGET_DIR   where cargo builds (default: target/ in the repo)
#
# Starts the warren binary with default settings on a temporary data directory (needs about MB
# of free disk under $TMPDIR), publishes with publisher confirms while sampling the broker's
# RSS from /proc/<pid>/status, then consumes everything and checks every message's sequence
# number, checksum and contents. Prints the timings and the RSS peaks; exit status is non-zero
# if the RSS limit was exceeded or a message was wrong or missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PAGING_MB="${1:-${PAGING_MB:-2048}}"
export PAGING_RSS_LIMIT_MB="${2:-${PAGING_RSS_LIMIT_MB:-512}}"
PROFILE=()
if [[ "${RELEASE:-0}" == "1" ]]; then
    PROFILE=(--release)
fi

echo "paging: ${PAGING_MB} MiB, RSS limit ${PAGING_RSS_LIMIT_MB} MiB, mode ${PAGING_MODE:-mixed}"
exec cargo test "${PROFILE[@]}" --test durability -- --exact paging --nocapture
