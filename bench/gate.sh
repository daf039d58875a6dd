#!/usr/bin/env bash
# The gate's benchmark: its memory with PODS pods and their EndpointSlices in a real API
# server, and the allow path (a pod not opted in) under wrk, beside nginx answering the same
# AdmissionReview with a fixed answer over TLS (wrk's and TLS's ceiling on this machine).
#
#   bench/gate.sh [SECONDS] [ROUNDS] [CONNECTIONS] [PODS]      (defaults 10 2 32 10000)
#
# PROFILE=debug measures the debug build (scripts/test's smoke run: figures mean nothing then).
#
# Needs: wrk, nginx, curl, and the control plane (scripts/k8s-build; LAMEDUCK_K8S_BIN if set).
# Prints a Markdown table (medians of ROUNDS alternating rounds) and the gate's memory.
set -euo pipefail
cd "$(dirname "$0")/.."

number() { [[ $2 =~ ^[1-9][0-9]*$ ]] || { echo "$1: expected a positive whole number, got '$2'" >&2; exit 2; }; }
SECONDS_PER_RUN=${1:-10}; ROUNDS=${2:-2}; CONNECTIONS=${3:-32}; PODS=${4:-10000}
number SECONDS "$SECONDS_PER_RUN"; number ROUNDS "$ROUNDS"; number CONNECTIONS "$CONNECTIONS"; number PODS "$PODS"
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install $tool)" >&2; exit 1; }
done
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || { echo "nginx is missing (apt-get install nginx)" >&2; exit 1; }

case ${PROFILE:-release} in
  release) flag=--release; dir=release ;;
  debug) flag=; dir=debug ;;
  *) echo "PROFILE: expected release or debug, got '$PROFILE'" >&2; exit 2 ;;
esac
if [ -z "${LAMEDUCK_K8S_BIN:-}" ]; then
  LAMEDUCK_K8S_BIN=$(scripts/k8s-build)
  export LAMEDUCK_K8S_BIN
fi
cargo build $flag -q -p lameduck-cli --example gate_bench
cargo build $flag -q -p lameduck-cli
target=${CARGO_TARGET_DIR:-target}
echo "lameduck gate at $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(nproc) cores, $dir build" >&2
LAMEDUCK_BIN="$target/$dir/lameduck" SECONDS="$SECONDS_PER_RUN" ROUNDS="$ROUNDS" \
  CONNECTIONS="$CONNECTIONS" PODS="$PODS" "$target/$dir/examples/gate_bench"
