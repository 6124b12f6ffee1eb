#!/usr/bin/env bash
# A/B of the native callback path between two gateway builds, in the same sitting: starts the
# given gateway binary on a fresh embedded cluster with 100,000 demo players, warms it up, runs
# `loadtest` at RATE for 20 s and prints the achieved rate, latency, and the CPU the gateway and
# its PostgreSQL spent per callback (from /proc). Run from the repository root after
# `cargo build --release -p gateway -p loadtest`.
#
#   loadtest/ab.sh GATEWAY_BIN LABEL RATE [CONFIG]
#
# To compare with an older revision: `git worktree add /tmp/base REV`, build its gateway with
# `CARGO_TARGET_DIR=/tmp/base-target cargo build --release -p gateway` there, and pass that
# binary with `/tmp/base/config/demo.toml` (an older gateway refuses a newer config).
set -euo pipefail
bin=$1; label=$2; rate=$3; config=${4:-config/demo.toml}
dir=$(mktemp -d /tmp/ab-XXXX)
trap 'kill -TERM $gw 2>/dev/null || true; wait $gw 2>/dev/null || true; rm -rf "$dir"' EXIT
GATEWAY__DEMO__PLAYERS=100000 "$bin" --config "$config" --listen 127.0.0.1:0 --data-dir "$dir" > "$dir/out" 2> "$dir/err" &
gw=$!
for _ in $(seq 1 120); do grep -q listening "$dir/out" && break; sleep 1; done
addr=$(sed -n 's/listening on //p' "$dir/out")
target/release/loadtest --target "$addr" --players 100000 --rate 5000 --duration 5 --warmup 1 > /dev/null 2>&1 || true
ticks() { local t=0; for p in "$@"; do [ -e "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
pm=$(head -1 "$dir/pg/postmaster.pid")
g0=$(ticks "$gw"); p0=$(ticks "$pm" $(pgrep -P "$pm"))
target/release/loadtest --target "$addr" --players 100000 --rate "$rate" --duration 20 --warmup 2 --json > "$dir/lt.json" 2>/dev/null || true
g1=$(ticks "$gw"); p1=$(ticks "$pm" $(pgrep -P "$pm"))
python3 - "$dir/lt.json" "$label" "$rate" $((g1 - g0)) $((p1 - p0)) "$(getconf CLK_TCK)" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
label, rate, g, p, hz = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
n = max(r["completed"], 1)
us = lambda ticks: ticks * 1e6 / hz / n
print(f'{label} at {rate}/s: achieved {r["achieved_rate"]:.0f}/s, p50 {r["latency_ms"]["p50"]:.2f} ms, '
      f'p99 {r["latency_ms"]["p99"]:.2f} ms; CPU per callback: gateway {us(g):.1f} us, PostgreSQL {us(p):.1f} us')
PY
