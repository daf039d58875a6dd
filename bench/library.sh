#!/usr/bin/env bash
# Throughput and p99 latency of a hello-world axum app served by `lameduck::serve` against
# plain `axum::serve`, measured in one run on one machine with wrk (rounds alternate between
# the two servers so drift in machine load hits both). Prints a markdown table of medians.
#
#   bench/library.sh [ROUNDS] [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-10}
connections=${3:-64}
command -v wrk >/dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 2; }

cargo build --release -q -p lameduck --example hello
bin=${CARGO_TARGET_DIR:-target}/release/examples/hello
out=$(mktemp -d)
pids=()
# The servers are ours, by PID; SIGKILL because a drain would only slow the benchmark's exit.
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

start() { # mode port
  if curl -s -o /dev/null "http://127.0.0.1:$2/"; then
    echo "port $2 is already in use: stop what listens there first" >&2
    exit 1
  fi
  LISTEN=127.0.0.1:$2 MODE=$1 LAMEDUCK_ADMIN_ADDR=off "$bin" >/dev/null 2>"$out/$1.err" &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$2/" >/dev/null && return 0
    sleep 0.05
  done
  echo "$1 server did not start: $(cat "$out/$1.err")" >&2
  exit 1
}
start axum 18081
start lameduck 18082

to_ms() { # wrk latency like 1.23ms, 850.00us, 1.01s
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n = n; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
for round in $(seq 1 "$rounds"); do
  for mode in axum lameduck; do
    port=18081; [ "$mode" = lameduck ] && port=18082
    wrk -t2 -c"$connections" -d"${seconds}s" --latency "http://127.0.0.1:$port/" >"$out/wrk"
    rps=$(awk '/^Requests\/sec/ { print $2 }' "$out/wrk")
    p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' "$out/wrk")")
    echo "$mode $rps $p99" >>"$out/results"
    echo "round $round $mode: ${rps} req/s, p99 ${p99} ms" >&2
  done
done

median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
axum_rps=$(awk '$1 == "axum" { print $2 }' "$out/results" | median)
ld_rps=$(awk '$1 == "lameduck" { print $2 }' "$out/results" | median)
axum_p99=$(awk '$1 == "axum" { print $3 }' "$out/results" | median)
ld_p99=$(awk '$1 == "lameduck" { print $3 }' "$out/results" | median)

echo "| server | median req/s | median p99 (ms) |"
echo "|---|---|---|"
echo "| axum::serve | $axum_rps | $axum_p99 |"
echo "| lameduck::serve | $ld_rps | $ld_p99 |"
awk -v a="$axum_rps" -v l="$ld_rps" -v ap="$axum_p99" -v lp="$ld_p99" \
  'BEGIN { printf "\nthroughput ratio lameduck/axum: %.3f (goal >= 0.97); p99 ratio: %.3f (goal <= 1.10)\n", l / a, lp / ap }'
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); rounds=$rounds seconds=$seconds connections=$connections; wrk -t2"
