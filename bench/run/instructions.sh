#!/usr/bin/env bash
# User-space instructions per request of `lameduck run --proxy` and of HAProxy configured as the
# same sidecar (HTTP with X-Forwarded-For, and TCP), each run under valgrind's callgrind while
# wrk drives it. Instruction counts barely move with machine load, so they show changes of a
# few percent that wall-clock rounds on a shared machine (±15% throughput) cannot.
#
#   bench/run/instructions.sh [SECONDS] [CONNECTIONS]
#   CACHE_SIM=1 bench/run/instructions.sh   # also simulated L1 misses per request
#   APP=nginx bench/run/instructions.sh     # nginx as the app (see app.sh)
#   CLOSE=1 bench/run/instructions.sh       # a new connection per request (Connection: close)
#
# lameduck is also measured with `--protocol auto` (HTTP detected per connection): on
# keep-alive connections detection is paid once per connection; CLOSE=1 makes every request
# pay it, the worst case.
#
# With CACHE_SIM=1 callgrind also simulates the caches and the tables add L1 instruction-read,
# data-read and data-write misses per request: code and memory the proxy touches per request,
# which cost time the instruction count does not show. Slower, and the counts are of a model
# cache, so compare them only with each other.
# Counting starts after warm-up requests and stops when wrk ends (callgrind_control), so start-up
# and shutdown are not in the figure. Kernel time (the syscalls both proxies make, one send and
# one receive per message) is not counted: see bench/run/bench.sh for the wall-clock view.
# Needs wrk, haproxy, valgrind and curl (apt-get install -y wrk haproxy valgrind curl).
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=bench/run/app.sh
source bench/run/app.sh
check_app
seconds=${1:-8}
cache_sim=${CACHE_SIM:-0}
close=${CLOSE:-0}
[[ $close == 0 || $close == 1 ]] || { echo "CLOSE=$close: expected 0 or 1" >&2; exit 2; }
wrk_flags=()
[[ $close == 1 ]] && wrk_flags=(-H "Connection: close")
valgrind_opts=(--tool=callgrind --instr-atstart=no)
[[ $cache_sim == 1 ]] && valgrind_opts+=(--cache-sim=yes)
connections=${2:-16}
for tool in wrk haproxy valgrind callgrind_control curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y wrk haproxy valgrind curl" >&2; exit 2; }
done

target_dir=${CARGO_TARGET_DIR:-target}
cargo build --release -q -p lameduck-cli --no-default-features --features run,demo-app
bin=$target_dir/release/lameduck
out=$(mktemp -d)
# Below Linux's ephemeral range (32768+), so no client connection of this run holds one.
base=$((20000 + RANDOM % 12000))
app=$((base + 1)); port=$((base + 2))
pids=()
app_pid=
cleanup() {
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  # TERM, not KILL: nginx's master stops its workers on the way out.
  [[ -n $app_pid ]] && kill -TERM "$app_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

start_app "$bin" "$app" "$out"; app_pid=$!

haproxy_config() {
  cat <<CFG
global
  maxconn 4000
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend in
  mode $1
  bind 127.0.0.1:$port
$([[ $1 == http ]] && echo "  option forwardfor")
  default_backend app
backend app
  mode $1
$([[ $1 == http ]] && echo "  http-reuse always")
  server app 127.0.0.1:$app
CFG
}

# measure NAME MODE: starts the proxy under callgrind, counts while wrk runs, prints one line.
measure() {
  local name=$1 mode=$2 vpid req ir i1mr d1mr d1mw
  rm -f "$out"/cg.out*
  if [[ $name == lameduck ]]; then
    valgrind "${valgrind_opts[@]}" --callgrind-out-file="$out/cg.out" \
      "$bin" run --admin off --log warn --proxy "127.0.0.1:$port=127.0.0.1:$app" --protocol "$mode" \
      -- sleep 1000000 2>"$out/$name-$mode.err" &
  else
    haproxy_config "$mode" >"$out/haproxy.cfg"
    valgrind "${valgrind_opts[@]}" --callgrind-out-file="$out/cg.out" \
      haproxy -db -f "$out/haproxy.cfg" 2>"$out/$name-$mode.err" &
  fi
  vpid=$!
  pids+=("$vpid")
  for _ in $(seq 1 150); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.2; done
  for _ in $(seq 1 20); do curl -sf "http://127.0.0.1:$port/" >/dev/null; done
  callgrind_control -i on "$vpid" >/dev/null 2>&1
  req=$(timeout $((seconds + 30)) wrk "${wrk_flags[@]}" -t2 -c"$connections" -d"${seconds}s" "http://127.0.0.1:$port/" |
    awk '/requests in/ {print $1}')
  callgrind_control -i off "$vpid" >/dev/null 2>&1
  callgrind_control -d "$vpid" >/dev/null 2>&1
  # Each thread's dump is a file of its own; the dump is written before callgrind_control returns.
  # Per event (Ir, and with the cache model Dr Dw I1mr D1mr D1mw ...), summed over threads.
  read -r ir i1mr d1mr d1mw < <(cat "$out"/cg.out* | awk '/^(summary|totals):/ {
    for (i = 2; i <= NF; i++) s[i] += $i } END { print s[2] + 0, s[5] + 0, s[6] + 0, s[7] + 0 }')
  # lameduck's wrapped `sleep` first: it would outlive a killed parent.
  pkill -KILL -P "$vpid" 2>/dev/null || true
  kill -KILL "$vpid" 2>/dev/null || true
  wait "$vpid" 2>/dev/null || true
  if [[ -z $req || $req == 0 || $ir == 0 ]]; then
    echo "$name $mode: no measurement (requests: ${req:-none}); log:" >&2
    cat "$out/$name-$mode.err" >&2
    exit 1
  fi
  echo "$name $mode $req $ir $i1mr $d1mr $d1mw" >>"$out/results"
}

for tool in lameduck haproxy; do
  for mode in http tcp; do measure "$tool" "$mode"; done
done
measure lameduck auto

connection_kind="keep-alive"
[[ $close == 1 ]] && connection_kind="a new connection per request"
echo "app: $app_kind; callgrind, wrk -t2 -c$connections -d${seconds}s per proxy, $connection_kind; $(nproc) CPUs: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
if [[ $cache_sim == 1 ]]; then
  echo "| proxy | mode | requests | user-space instructions per request | L1 instruction misses | L1 data read misses | L1 data write misses |"
  echo "|---|---|---:|---:|---:|---:|---:|"
  awk '{ printf "| %s | %s | %d | %.0f | %.0f | %.0f | %.0f |\n", $1, $2, $3, $4 / $3, $5 / $3, $6 / $3, $7 / $3 }' "$out/results"
else
  echo "| proxy | mode | requests | user-space instructions per request |"
  echo "|---|---|---:|---:|"
  awk '{ printf "| %s | %s | %d | %.0f |\n", $1, $2, $3, $4 / $3 }' "$out/results"
fi
echo
echo "| mode | lameduck / HAProxy instructions per request |"
echo "|---|---:|"
awk '{ per[$1 " " $2] = $4 / $3 } END {
  printf "| http | %.3f |\n| tcp | %.3f |\n| auto (vs HAProxy http) | %.3f |\n", per["lameduck http"] / per["haproxy http"],
    per["lameduck tcp"] / per["haproxy tcp"], per["lameduck auto"] / per["haproxy http"]
  printf "\nlameduck auto / lameduck http instructions per request: %.3f\n", per["lameduck auto"] / per["lameduck http"] }' "$out/results"
