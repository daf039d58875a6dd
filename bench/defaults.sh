#!/usr/bin/env bash
# Measures what the drain defaults buy: the built-in naive app wrapped in `lameduck run` (drain
# proxy) is rolled by `lameduck verify` behind an L4 and an L7 router (propagation uniform
# 0.5–3 s, the range DESIGN.md reports), at a low and a normal request rate, with the drain
# settings below. For each: failed requests (summed over seeds) and the mean time from deletion
# to exit of the old pods. Prints a markdown table (docs/defaults.md quotes it).
#
#   bench/defaults.sh [SEEDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-2}
# LAMEDUCK_BIN: an already built `lameduck` binary to measure instead of building one.
bin=${LAMEDUCK_BIN:-}
if [ -z "$bin" ]; then
  # Everything but the gate, whose Kubernetes client would double the release build.
  cargo build --release -q -p lameduck-cli --no-default-features --features lint,verify,run
  bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/lameduck
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# min_wait quiet_window
settings=("0s 250ms" "0s 1s" "1s 1s" "3s 1s" "3s 3s")
echo "| min_wait | quiet_window | rate (req/s) | failed / started | failure classes | mean deletion→exit (s) |"
echo "|---|---|---|---|---|---|"
for rate in 10 200; do
  for pair in "${settings[@]}"; do
    read -r min quiet <<<"$pair"
    for seed in $(seq 1 "$seeds"); do
      "$bin" verify -q --json --seed "$seed" --replicas 3 --router l4,l7 \
        --propagation uniform:0.5s..3s --rate "$rate" --grace 30 --max-failures 1000000 \
        --probe-port admin --probe-path /readyz -- \
        "$bin" run --admin "127.0.0.1:{admin_port}" --proxy "127.0.0.1:{port}=127.0.0.1:{app_port}" \
        --grace 30 --min-wait "$min" --quiet-window "$quiet" -- \
        "$bin" demo-app --listen "127.0.0.1:{app_port}" >"$out/$rate-$min-$quiet-$seed.json" || true
    done
    python3 - "$out" "$rate" "$min" "$quiet" <<'PY'
import glob, json, sys
out, rate, mn, quiet = sys.argv[1:]
failed = started = 0
exits = []
classes = {}
for path in glob.glob(f"{out}/{rate}-{mn}-{quiet}-*.json"):
    for report in json.load(open(path)):
        failed += report["load"]["failed"]
        started += report["load"]["started"]
        for name, count in report["failuresByClass"].items():
            classes[name] = classes.get(name, 0) + count
        exits += [p["exited"] - p["deleted"] for p in report["pods"] if p.get("deleted") is not None and p.get("exited") is not None]
mean = sum(exits) / len(exits) if exits else float("nan")
kinds = ", ".join(f"{k} {v}" for k, v in sorted(classes.items())) or "-"
print(f"| {mn} | {quiet} | {rate} | {failed} / {started} | {kinds} | {mean:.2f} |")
PY
  done
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); seeds=$seeds; load average $(cut -d' ' -f1-3 /proc/loadavg)"
