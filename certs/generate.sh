#!/usr/bin/env bash
# Writes development TLS material for warren into DIR (default: certs/dev, git-ignored): a CA,
# a server certificate for localhost / 127.0.0.1 / ::1 and client certificates (CN = each
# NAME, default guest), through `warren gen-certs` (rcgen). Not for production.
# Usage: certs/generate.sh [DIR] [NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-certs/dev}"
shift || true
clients=()
for name in "${@:-guest}"; do
    clients+=(--client "$name")
done
exec cargo run --quiet --release -- gen-certs "$dir" "${clients[@]}"
