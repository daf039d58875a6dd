#!/usr/bin/env bash
# Benchmarks of the `lameduck verify` testbed (figures in docs/benchmarks/verify.md):
#
# 1. Full accounting at scale: 10 replicas of the built-in naive app (preStop sleep 4s), one L4
#    and one L7 router, 2,000 requests/s, one rolling update. Reports the achieved rate and what
#    the testbed process itself (routers, load generator, accounting) cost in CPU.
# 2. The embedded L7 router's throughput against HAProxy in the same role (same two backends,
#    wrk with keep-alive), rounds alternating between the two; medians and their ratio.
#
#   bench/verify/run.sh [ROUNDS] [SECONDS] [CONNECTIONS]
# Needs: wrk, haproxy (apt-get install -y wrk haproxy), python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
seconds=${2:-10}
connections=${3:-64}
for b in wrk haproxy python3; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "$b is missing: apt-get install -y wrk haproxy" >&2; exit 2; }
done
haproxy_bin=$(command -v haproxy || echo /usr/sbin/haproxy)
target=${CARGO_TARGET_DIR:-target}
# Everything but the gate, whose Kubernetes client would double the release build.
cargo build --release -q -p lameduck-cli --bin lameduck --no-default-features --features lint,verify,run
cargo build --release -q -p lameduck-verify --example l7_router
lameduck=$target/release/lameduck
router_bin=$target/release/examples/l7_router
out=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$out"; }
trap cleanup EXIT

echo "## machine"
echo "$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo

echo "## 1. 10 replicas, 2,000 req/s, full accounting ($rounds rounds)"
for i in $(seq 1 "$rounds"); do
  "$lameduck" verify --json -q --replicas 10 --router l4,l7 --connections 16 --rate 2000 \
    --max-surge 25% --max-unavailable 0 --probe-path /healthz --pre-stop-sleep 4s \
    --propagation uniform:0.5s..3s --seed "$i" --max-failures 1000000 \
    -- "$lameduck" demo-app --listen '127.0.0.1:{port}' >"$out/scale-$i.json"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(1, rounds + 1):
    r = json.load(open(f"{out}/scale-{i}.json"))[0]
    l, t = r["load"], r["testbed"]
    rows.append((l["started"], l["achievedRate"], l["failed"], l["latencyMs"]["p50"], l["latencyMs"]["p99"],
                 t["cpuSeconds"], t["wallSeconds"], t["accountingSeconds"] * 1000, t["records"]))
print("| round | requests | achieved req/s | failed | p50 ms | p99 ms | testbed CPU s | wall s | CPU share of 2 cores | accounting ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for i, x in enumerate(rows, 1):
    print(f"| {i} | {x[0]} | {x[1]:.0f} | {x[2]} | {x[3]:.2f} | {x[4]:.2f} | {x[5]:.2f} | {x[6]:.1f} | {100 * x[5] / x[6] / 2:.0f}% | {x[7]:.1f} |")
med = lambda k: statistics.median(x[k] for x in rows)
print(f"| median | {med(0):.0f} | {med(1):.0f} | {med(2):.0f} | {med(3):.2f} | {med(4):.2f} | {med(5):.2f} | {med(6):.1f} | {100 * med(5) / med(6) / 2:.0f}% | {med(7):.1f} |")
PY
echo

echo "## 2. embedded L7 router vs HAProxy, wrk -t2 -c$connections -d${seconds}s, $rounds rounds"
b1=18181; b2=18182; hp=18190
for p in $b1 $b2; do
  "$lameduck" demo-app --listen "127.0.0.1:$p" >"$out/app-$p.log" 2>&1 &
  pids+=($!)
done
"$router_bin" "127.0.0.1:$b1,127.0.0.1:$b2" >"$out/l7.addr" 2>"$out/l7.err" &
l7_pid=$!
pids+=($l7_pid)
cat >"$out/haproxy.cfg" <<CFG
global
    maxconn 4000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    retries 0
frontend fe
    bind 127.0.0.1:$hp
    default_backend be
backend be
    balance roundrobin
    server a 127.0.0.1:$b1
    server b 127.0.0.1:$b2
CFG
"$haproxy_bin" -db -f "$out/haproxy.cfg" >"$out/haproxy.log" 2>&1 &
hp_pid=$!
pids+=($hp_pid)
for _ in $(seq 1 100); do
  [ -s "$out/l7.addr" ] && curl -sf "http://$(cat "$out/l7.addr")/" >/dev/null && curl -sf "http://127.0.0.1:$hp/" >/dev/null && break
  sleep 0.1
done
l7=$(cat "$out/l7.addr")
# CPU ticks (user + system) of a process, to report requests per CPU-second of each router:
# on a shared 2-core machine the throughput depends on what else runs, the efficiency less so.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
bench() { # name addr pid
  local t0 t1 rps
  t0=$(ticks "$3")
  rps=$(wrk -t2 -c"$connections" -d"${seconds}s" "http://$2/" | awk '/Requests\/sec/{print $2}')
  t1=$(ticks "$3")
  echo "$1 $rps $(( t1 - t0 ))" >>"$out/rps"
}
: >"$out/rps"
for i in $(seq 1 "$rounds"); do
  bench l7 "$l7" "$l7_pid"
  bench haproxy "127.0.0.1:$hp" "$hp_pid"
done
echo "load average during the run: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$out/rps" "$seconds" "$hz" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
seconds, hz = float(sys.argv[2]), float(sys.argv[3])
def get(name):
    rps = [float(r) for k, r, t in rows if k == name]
    eff = [float(r) * seconds / (float(t) / hz) for k, r, t in rows if k == name and float(t) > 0]
    return rps, eff
print("| router | req/s per round | median req/s | median requests per router CPU-second |")
print("|---|---|---|---|")
res = {}
for name, label in (("l7", "embedded L7"), ("haproxy", "HAProxy")):
    rps, eff = get(name)
    res[name] = (statistics.median(rps), statistics.median(eff))
    print(f"| {label} | {', '.join(f'{v:.0f}' for v in rps)} | {res[name][0]:.0f} | {res[name][1]:.0f} |")
print(f"\nratio embedded L7 / HAProxy (medians): throughput {res['l7'][0] / res['haproxy'][0]:.2f}, "
      f"per CPU-second {res['l7'][1] / res['haproxy'][1]:.2f}")
PY
