#!/usr/bin/env bash
# Throughput and p99 latency through `lameduck run --proxy` against the same app reached
# directly and through HAProxy configured as the same sidecar, in HTTP and TCP modes (and
# lameduck's `auto`, which detects HTTP per connection and must stay within 3% of `http`), measured
# in one run on one machine with wrk. Rounds rotate the order of the targets so drift in machine
# load hits all of them. Prints a markdown table of medians over the rounds.
#
# Also the CPU time (user + system, all threads) the serving process spent per request during
# each wrk run, from /proc/PID/stat: wrk, the app and the proxy share the CPUs, so throughput and
# p99 move with whatever else the machine runs, while CPU per request is the proxy's own cost.
#
#   bench/run/bench.sh [ROUNDS] [SECONDS] [CONNECTIONS] [THREADS]
#
# Needs wrk and haproxy (apt-get install -y wrk haproxy). The app is `lameduck demo-app`
# (axum, GET / -> "ok"); each proxy forwards to it over loopback with keep-alive and, in HTTP
# mode, adds X-Forwarded-For.
#
# A second, identical HAProxy runs as a control: its ratios to the first show how far this
# machine's noise alone moves the ratios of two equal proxies in the same run.
#
# BASELINE_BIN=/path/to/an/older/lameduck adds its `run --proxy` (HTTP and TCP) as two more
# targets, so a change is measured against what it replaces in the same run.
#
# APP=nginx puts nginx (`return 200 "ok\n"`; NGINX_WORKERS workers, default 2) behind the
# proxies instead of the demo app, to see how much of a proxy's latency comes from its
# interplay with one particular app.
#
# PROXY_THREADS=N gives every proxy N event-loop threads (`--proxy-threads`, HAProxy's
# `nbthread`) instead of its default of one per CPU; with 1, the gap between two event loops is
# not blurred by how each spreads connections over its threads.
#
# REFERENCE=1 adds the reference proxies of crates/bench-peers (`bare-proxy`): in TCP mode a bare
# tokio splice (copy_bidirectional per connection) and a bare level-triggered epoll loop, in HTTP
# mode a first hyper proxy (hyper's server and hyper-util's pooled client). Where lameduck
# trails HAProxy, they tell whether a plain tokio proxy trails as much (the runtime's share) and
# whether a loop without a task runtime does (the kernel's and the machine's).
#
# ISOLATE=1 gives the proxies a CPU of their own: each proxy runs with one thread on CPU 0, the
# app and the load generator on CPU 1 (taskset), so a proxy's p99 is its own event loop's and
# not how the scheduler shares 2 cores between it, the app and the load generator.
#
# RATE=N measures at a fixed offered load of N requests per second instead of wrk's closed loop
# at saturation: oha (installed into the target directory with `cargo install` on first use)
# sends on a schedule over the same CONNECTIONS and counts latency from each request's scheduled
# start (--latency-correction), so a stalled proxy is charged for the requests it held back.
# A closed loop's p99 is mostly queueing at the machine's limit; this is the latency a proxy
# adds when it has CPU to spare, which is where a sidecar usually runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-64}
threads=${4:-2}
for tool in wrk haproxy curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: apt-get install -y wrk haproxy curl" >&2; exit 2; }
done
# shellcheck source=bench/run/app.sh
source bench/run/app.sh
check_app

proxy_threads=${PROXY_THREADS:-}
[[ -z $proxy_threads || ( $proxy_threads =~ ^[1-9][0-9]{0,2}$ && $proxy_threads -le 256 ) ]] ||
  { echo "PROXY_THREADS=$proxy_threads: expected a number of threads from 1 to 256" >&2; exit 2; }
reference=${REFERENCE:-0}
[[ $reference == 0 || $reference == 1 ]] || { echo "REFERENCE=$reference: expected 0 or 1" >&2; exit 2; }
isolate=${ISOLATE:-0}
[[ $isolate == 0 || $isolate == 1 ]] || { echo "ISOLATE=$isolate: expected 0 or 1" >&2; exit 2; }
# Launchers that pin a process to its CPU (ISOLATE=1) or do nothing.
proxy_launcher=()
load_launcher=()
if [[ $isolate == 1 ]]; then
  [[ -z $proxy_threads || $proxy_threads == 1 ]] ||
    { echo "ISOLATE=1 gives each proxy one CPU: PROXY_THREADS=$proxy_threads must be 1 or unset" >&2; exit 2; }
  command -v taskset >/dev/null || { echo "taskset is missing: apt-get install -y util-linux" >&2; exit 2; }
  [[ $(nproc) -ge 2 ]] || { echo "ISOLATE=1 needs 2 CPUs; this machine has $(nproc)" >&2; exit 2; }
  proxy_threads=1
  proxy_launcher=(taskset -c 0)
  load_launcher=(taskset -c 1)
  app_launcher=(taskset -c 1)
fi
rate=${RATE:-}
[[ -z $rate || $rate =~ ^[1-9][0-9]{0,6}$ ]] ||
  { echo "RATE=$rate: expected requests per second from 1 to 9999999" >&2; exit 2; }

target_dir=${CARGO_TARGET_DIR:-target}
if [[ -n $rate ]]; then
  command -v jq >/dev/null || { echo "jq is missing: apt-get install -y jq" >&2; exit 2; }
  # A pinned release, built with its own lock file, so every run measures with the same client.
  oha=$target_dir/bench-tools/bin/oha
  [[ -x $oha ]] || cargo install -q --locked --version 1.16.0 --root "$target_dir/bench-tools" oha
fi
cargo build --release -q -p lameduck-cli --no-default-features --features run,demo-app
bin=$target_dir/release/lameduck
if [[ $reference == 1 ]]; then
  cargo build --release -q -p bench-peers
fi
out=$(mktemp -d)
# Below Linux's ephemeral range (32768+), so no client connection of this run holds one.
base=$((20000 + RANDOM % 12000))
app=$((base + 1)); ld_http=$((base + 2)); ld_tcp=$((base + 3)); hap_http=$((base + 4)); hap_tcp=$((base + 5))
base_http=$((base + 6)); base_tcp=$((base + 7)); control_http=$((base + 8)); control_tcp=$((base + 9))
bare_tokio=$((base + 10)); bare_epoll=$((base + 11)); bare_hyper=$((base + 12)); ld_auto=$((base + 13))
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.2
  # A second SIGTERM makes `lameduck run` stop at once instead of draining.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

start_app "$bin" "$app" "$out"; pids+=($!)
# The process whose CPU time a target's requests cost, with its children's (nginx's workers).
declare -A serving
# The URL wrk measures each target at.
declare -A url
serving[direct]=$!
# Flags every `lameduck run` of this benchmark shares.
run_flags=(--admin off --log warn ${proxy_threads:+--proxy-threads "$proxy_threads"})
"${proxy_launcher[@]}" "$bin" run "${run_flags[@]}" --proxy "127.0.0.1:$ld_http=127.0.0.1:$app" --protocol http \
  -- sleep 1000000 2>"$out/ld-http.err" & pids+=($!)
serving[lameduck-http]=$!
"${proxy_launcher[@]}" "$bin" run "${run_flags[@]}" --proxy "127.0.0.1:$ld_tcp=127.0.0.1:$app" --protocol tcp \
  -- sleep 1000000 2>"$out/ld-tcp.err" & pids+=($!)
serving[lameduck-tcp]=$!
"${proxy_launcher[@]}" "$bin" run "${run_flags[@]}" --proxy "127.0.0.1:$ld_auto=127.0.0.1:$app" --protocol auto \
  -- sleep 1000000 2>"$out/ld-auto.err" & pids+=($!)
serving[lameduck-auto]=$!
# haproxy_config HTTP_PORT TCP_PORT: HAProxy as the same sidecar as lameduck, in both modes.
haproxy_config() {
  cat <<CFG
global
  maxconn 4000
${proxy_threads:+  nbthread $proxy_threads}
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend http_in
  mode http
  bind 127.0.0.1:$1
  # lameduck's HTTP mode appends X-Forwarded-For too.
  option forwardfor
  default_backend http_app
backend http_app
  mode http
  http-reuse always
  server app 127.0.0.1:$app
frontend tcp_in
  mode tcp
  bind 127.0.0.1:$2
  default_backend tcp_app
backend tcp_app
  mode tcp
  server app 127.0.0.1:$app
CFG
}
haproxy_config "$hap_http" "$hap_tcp" >"$out/haproxy.cfg"
"${proxy_launcher[@]}" haproxy -db -f "$out/haproxy.cfg" 2>"$out/haproxy.err" & pids+=($!)
# One HAProxy serves both modes; during a wrk run the other mode's frontend is idle.
serving[haproxy-http]=$!
serving[haproxy-tcp]=$!
# The control: a second, identical HAProxy. How far its ratios to the first stray from 1 is
# what this machine's noise alone does to two equal proxies in this run.
haproxy_config "$control_http" "$control_tcp" >"$out/control.cfg"
"${proxy_launcher[@]}" haproxy -db -f "$out/control.cfg" 2>"$out/control.err" & pids+=($!)
serving[control-http]=$!
serving[control-tcp]=$!
if [[ -n ${BASELINE_BIN:-} ]]; then
  "${proxy_launcher[@]}" "$BASELINE_BIN" run "${run_flags[@]}" --proxy "127.0.0.1:$base_http=127.0.0.1:$app" --protocol http \
    -- sleep 1000000 2>"$out/base-http.err" & pids+=($!)
  serving[baseline-http]=$!
  "${proxy_launcher[@]}" "$BASELINE_BIN" run "${run_flags[@]}" --proxy "127.0.0.1:$base_tcp=127.0.0.1:$app" --protocol tcp \
    -- sleep 1000000 2>"$out/base-tcp.err" & pids+=($!)
  serving[baseline-tcp]=$!
fi
if [[ $reference == 1 ]]; then
  # target, port, kind
  for peer in "bare-tokio-tcp $bare_tokio tokio-splice" "bare-epoll-tcp $bare_epoll epoll-splice" \
    "bare-hyper-http $bare_hyper hyper-http"; do
    read -r name port kind <<<"$peer"
    "${proxy_launcher[@]}" "$target_dir/release/bare-proxy" --kind "$kind" --listen "127.0.0.1:$port" \
      --upstream "127.0.0.1:$app" --threads "${proxy_threads:-$(nproc)}" >"$out/$name.err" 2>&1 &
    pids+=($!)
    serving[$name]=$!
    url[$name]="http://127.0.0.1:$port/"
  done
fi

url+=(
  [direct]="http://127.0.0.1:$app/"
  [lameduck-http]="http://127.0.0.1:$ld_http/"
  [haproxy-http]="http://127.0.0.1:$hap_http/"
  [lameduck-tcp]="http://127.0.0.1:$ld_tcp/"
  [lameduck-auto]="http://127.0.0.1:$ld_auto/"
  [haproxy-tcp]="http://127.0.0.1:$hap_tcp/"
  [control-http]="http://127.0.0.1:$control_http/"
  [control-tcp]="http://127.0.0.1:$control_tcp/"
)
targets=(direct lameduck-http haproxy-http lameduck-tcp haproxy-tcp control-http control-tcp lameduck-auto)
if [[ -n ${BASELINE_BIN:-} ]]; then
  url[baseline-http]="http://127.0.0.1:$base_http/"
  url[baseline-tcp]="http://127.0.0.1:$base_tcp/"
  targets+=(baseline-http baseline-tcp)
fi
if [[ $reference == 1 ]]; then
  targets+=(bare-tokio-tcp bare-epoll-tcp bare-hyper-http)
fi
for t in "${targets[@]}"; do
  for _ in $(seq 1 100); do curl -sf "${url[$t]}" >/dev/null && continue 2; sleep 0.05; done
  echo "$t did not come up; logs:" >&2; cat "$out"/*.err >&2; exit 1
done

# cpu_ticks PID: user + system time of PID's threads and its children's so far, in clock ticks.
cpu_ticks() {
  # shellcheck disable=SC2046 # one word per PID
  cat $(printf '/proc/%s/stat ' "$1" $(pgrep -P "$1")) 2>/dev/null | awk '{ t += $14 + $15 } END { print t + 0 }'
}
ticks_per_second=$(getconf CLK_TCK)
# measure URL: one round against URL, printed as "REQUESTS REQ/S P99_MS ERRORS" (ERRORS is the
# tool's own words, empty when there were none).
measure() {
  if [[ -n $rate ]]; then
    # -w: requests still in flight at the deadline finish instead of counting as errors.
    "${load_launcher[@]}" "$oha" --no-tui --output-format json -z "${seconds}s" -c "$connections" -q "$rate" \
      --latency-correction -w "$1" | jq -r '
        ([.statusCodeDistribution[]] | add // 0) as $ok | ([.errorDistribution[]] | add // 0) as $failed
        | [$ok + $failed, (.summary.requestsPerSec * 100 | round) / 100, (.latencyPercentiles.p99 * 1e6 | round) / 1000]
        + (if $failed > 0 then [($failed | tostring) + " errors: " + (.errorDistribution | keys | join(", "))] else [] end)
        + ([.statusCodeDistribution | to_entries[] | select(.key | startswith("2") | not)
            | "\(.value) responses with status \(.key)"])
        | map(tostring) | join(" ")'
  else
    local report
    report=$("${load_launcher[@]}" wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$1")
    awk '/requests in/ { n = $1 } /^Requests\/sec/ { rps = $2 }
      $1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
        if (u == "us") v /= 1000; else if (u == "s") v *= 1000; p99 = v }
      /Non-2xx|Socket errors/ { errors = errors " " $0 }
      END { printf "%s %s %.3f%s\n", n, rps, p99, errors }' <<<"$report"
  fi
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$rounds"); do
  n=${#targets[@]}
  for i in $(seq 0 $((n - 1))); do
    t=${targets[$(((i + round - 1) % n))]}
    ticks_before=$(cpu_ticks "${serving[$t]}")
    measure "${url[$t]}" >"$out/$t.$round"
    ticks=$(($(cpu_ticks "${serving[$t]}") - ticks_before))
    read -r requests rps p99 errors <"$out/$t.$round"
    cpu_us=$(awk -v t="$ticks" -v hz="$ticks_per_second" -v n="$requests" 'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "nan" }')
    echo "round $round $t rps=$rps p99_ms=$p99 cpu_us_per_request=$cpu_us $errors" >&2
    echo "$rps" >>"$out/$t.rps"
    echo "$p99" >>"$out/$t.p99"
    echo "$cpu_us" >>"$out/$t.cpu"
  done
done

median() { sort -g "$1" | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A rps p99 cpu
for t in "${targets[@]}"; do
  rps[$t]=$(median "$out/$t.rps"); p99[$t]=$(median "$out/$t.p99"); cpu[$t]=$(median "$out/$t.cpu")
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# The median over rounds of A/B measured in the same round: drift in machine load between
# rounds cancels out of each round's ratio.
paired() { paste "$1" "$2" | awk '{ print $1 / $2 }' | sort -g |
  awk '{ a[NR] = $1 } END { printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

if [[ -n $rate ]]; then
  load="oha $($oha --version | awk '{print $2}') -c$connections -q$rate --latency-correction -z${seconds}s (fixed rate)"
else
  load="wrk -t$threads -c$connections -d${seconds}s"
fi
[[ $isolate == 1 ]] && load="$load; proxies on CPU 0, app and load generator on CPU 1"
echo "app: $app_kind; proxy threads: ${proxy_threads:-default}; $load, $rounds rounds, medians; $(nproc) CPUs: $(awk -F: '/model name/ {print $2; exit}' /proc/cpuinfo | xargs)"
echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| target | req/s | p99 (ms) | req/s vs direct | CPU µs per request |"
echo "|---|---:|---:|---:|---:|"
for t in "${targets[@]}"; do
  echo "| $t | ${rps[$t]} | ${p99[$t]} | $(ratio "${rps[$t]}" "${rps[direct]}") | ${cpu[$t]} |"
done
echo
if [[ -n $rate ]]; then
  # At a fixed rate both sides serve the offered load; which one's req/s is higher is chance.
  wins="rounds A's p99 at or below B's"
else
  wins="rounds A at or above B on both"
fi
echo "| A / B: lameduck / HAProxy unless named | A / B req/s | A p99 / B p99 | paired req/s | paired p99 | paired CPU per request | $wins |"
echo "|---|---:|---:|---:|---:|---:|---:|"
# both A B: in how many rounds A had at least B's req/s (unless the rate is fixed) and at most
# B's p99.
both() {
  paste "$out/$1.rps" "$out/$1.p99" "$out/$2.rps" "$out/$2.p99" |
    awk -v fixed="${rate:+1}" '(fixed || $1 >= $3) && $2 <= $4 { k++ } END { printf "%d/%d", k, NR }'
}
# compare A B LABEL: one row of target A's ratios to target B.
compare() {
  local a=$1 b=$2
  echo "| $3 | $(ratio "${rps[$a]}" "${rps[$b]}") | $(ratio "${p99[$a]}" "${p99[$b]}") |" \
    "$(paired "$out/$a.rps" "$out/$b.rps") | $(paired "$out/$a.p99" "$out/$b.p99") |" \
    "$(paired "$out/$a.cpu" "$out/$b.cpu") | $(both "$a" "$b") |"
}
for mode in http tcp; do compare "lameduck-$mode" "haproxy-$mode" "$mode"; done
for mode in http tcp; do compare "control-$mode" "haproxy-$mode" "$mode (control: HAProxy vs HAProxy)"; done
compare lameduck-auto haproxy-http "auto (lameduck auto vs HAProxy http)"
compare lameduck-auto lameduck-http "auto vs http (lameduck vs lameduck)"
if [[ -n ${BASELINE_BIN:-} ]]; then
  for mode in http tcp; do compare "baseline-$mode" "haproxy-$mode" "$mode (baseline)"; done
fi
if [[ $reference == 1 ]]; then
  compare bare-hyper-http haproxy-http "http (bare hyper proxy vs HAProxy)"
  compare lameduck-http bare-hyper-http "http (lameduck vs bare hyper proxy)"
  compare bare-tokio-tcp haproxy-tcp "tcp (bare tokio splice vs HAProxy)"
  compare bare-epoll-tcp haproxy-tcp "tcp (bare epoll loop vs HAProxy)"
  compare lameduck-tcp bare-tokio-tcp "tcp (lameduck vs bare tokio splice)"
fi
echo
echo "The first two ratio columns divide medians; the paired ones are medians of per-round ratios."
echo "The control rows compare two identical HAProxy processes: their distance from 1 is noise, and"
echo "their count of rounds in the last column is what chance gives two equal proxies."
