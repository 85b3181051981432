#!/usr/bin/env bash
# Runs warren's whole test suite: installs the Python client libraries the integration tests
# drive (pika, …) if they are missing, then runs every Rust test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import pika, paho.mqtt" 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi
exec cargo test --workspace "$@"
