#!/usr/bin/env bash
# Benchmark of `lameduck lint` (not a timed test): objects per second and peak memory.
#
#   bash bench/lint/run.sh            # 10,000 and 40,000 objects, 10 runs each
#   RUNS=5 SIZES="10000" bash bench/lint/run.sh
#   CALLGRIND=1 bash bench/lint/run.sh  # also count instructions (valgrind): noise-free evidence
#
# Builds the release binary, generates the inputs with bench/lint/generate.py, times the runs
# (hyperfine when installed, else a bounded loop of runs), reports the median objects/s and the
# peak RSS from /usr/bin/time -v (when installed) at each size. Figures go to
# docs/benchmarks/lint.md by hand, with the machine they were measured on.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-10}
SIZES=${SIZES:-"10000 40000"}
OUT=bench/out/lint
mkdir -p "$OUT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
# Everything but the gate, whose Kubernetes client would double the release build.
cargo build --release -q -p lameduck-cli --no-default-features --features lint,verify,run
BIN="$CARGO_TARGET_DIR/release/lameduck"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "binary: $BIN ($("$BIN" --version))"
for n in $SIZES; do
  input="$OUT/objects-$n.yaml"
  python3 bench/lint/generate.py "$n" > "$input"
  echo "== $n objects, $(du -h "$input" | cut -f1) of YAML"
  if command -v hyperfine >/dev/null; then
    hyperfine --runs "$RUNS" --warmup 1 -N -i --export-json "$OUT/hyperfine-$n.json" \
      "$BIN lint --no-config --format json $input" >/dev/null
    median=$(python3 -c "import json;print(json.load(open('$OUT/hyperfine-$n.json'))['results'][0]['median'])")
  else
    times=()
    for ((r = 0; r < RUNS; r++)); do
      start=$(date +%s%N)
      "$BIN" lint --no-config --format json "$input" >/dev/null || true
      end=$(date +%s%N)
      times+=("$(( (end - start) / 1000 ))")
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.6f", m/1e6}')
  fi
  echo "median: ${median}s over $RUNS runs -> $(python3 -c "print(f'{$n/$median:,.0f}')") objects/s"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v "$BIN" lint --no-config --format json "$input" 2>"$OUT/time-$n.txt" >/dev/null || true
    echo "peak RSS: $(grep 'Maximum resident' "$OUT/time-$n.txt" | awk '{print $NF}') KiB"
  else
    echo "peak RSS: /usr/bin/time not installed (apt-get install time)"
  fi
  if [ -n "${CALLGRIND:-}" ] && command -v valgrind >/dev/null; then
    valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind-$n.out" \
      "$BIN" lint --no-config --format json "$input" 2>"$OUT/callgrind-$n.txt" >/dev/null || true
    echo "instructions: $(grep -o 'refs: *[0-9,]*' "$OUT/callgrind-$n.txt" | awk '{print $2}')"
  fi
done
