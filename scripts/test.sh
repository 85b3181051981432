#!/usr/bin/env bash
# Runs warren's whole test suite: installs the Python client libraries the integration tests
# drive (pika, paho-mqtt, celery, selenium) into a project-local virtual environment, .venv/, then
# runs every Rust test in the workspace with WARREN_TEST_PYTHON pointing at that environment's
# interpreter.
#
# A virtual environment rather than `pip install` into the system Python: Debian 12's system
# Python refuses that (PEP 668, "externally managed"). Creating one needs the venv module with
# ensurepip, which Debian ships separately (apt-get install python3-venv; .ci/run does that).
# The install is skipped when .venv already holds this requirements.txt, so reruns are quick.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
venv="$root/.venv"
requirements="tests/python/requirements.txt"
# A copy of the requirements the environment was last filled from: a changed file reinstalls.
stamp="$venv/warren-requirements.txt"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
  if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    echo "scripts/test.sh: python3 cannot create a virtual environment (no venv/ensurepip);" \
      "on Debian/Ubuntu: apt-get install python3-venv" >&2
    exit 1
  fi
  # A half-made environment (an earlier failed run) would fail the same way again.
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
if ! cmp -s "$requirements" "$stamp" || ! "$venv/bin/python" -c 'import pika, paho.mqtt, celery, selenium' 2>/dev/null; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$stamp"
fi

# tests/prometheus_dashboards.rs runs a real Prometheus server against warren; it fails (it is
# never skipped) without one, so say up front how to get it.
prometheus="${WARREN_TEST_PROMETHEUS:-prometheus}"
if ! command -v "$prometheus" >/dev/null 2>&1; then
  echo "scripts/test.sh: $prometheus not found; the Grafana dashboard test needs a Prometheus" \
    "server: on Debian/Ubuntu apt-get install prometheus (or set WARREN_TEST_PROMETHEUS to a" \
    "prometheus binary)" >&2
  exit 1
fi

export WARREN_TEST_PYTHON="$venv/bin/python"
exec cargo test --workspace "$@"
