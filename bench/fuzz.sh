#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ (cargo fuzz, libFuzzer, nightly) for MINUTES minutes and
# prints per target: executions per second, coverage (libFuzzer's final `cov:` edges and `ft:`
# features), corpus size, and whether it found a crash. Exits non-zero if any target did.
#
#   MINUTES=10 bench/fuzz.sh [TARGET...]      (default: every target, 10 minutes each)
#   FUZZ_SECONDS=20 bench/fuzz.sh              (a smoke run)
#
# The checked-in seeds (fuzz/corpus/<target>/) are read, never written: new inputs go to
# fuzz/corpus/<target>.run/ and findings to fuzz/artifacts/<target>/ (both ignored by git).
# Logs are in bench/out/fuzz/. Run it under `nice`: it keeps one core busy.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${MINUTES:-10}
# FUZZ_SECONDS overrides MINUTES for short smoke runs.
seconds=${FUZZ_SECONDS:-$((minutes * 60))}

cargo +nightly --version >/dev/null 2>&1 || {
  echo "the nightly toolchain is missing: rustup toolchain install nightly" >&2
  exit 2
}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi

# The code measured: the commit the targets are built from, and whether the crates they build
# had uncommitted changes.
built_at="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates/lameduck crates/lameduck-core \
  crates/lameduck-proxy crates/lameduck-lint fuzz Cargo.toml || echo ' (with uncommitted changes)')"
# Release code with debug assertions (`-a`): arithmetic overflow is a finding too.
(cd fuzz && cargo +nightly fuzz build -a) >&2
out=bench/out/fuzz
mkdir -p "$out"
failed=0
results=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target.run"
  log="$out/$target.log"
  echo "fuzzing $target for $seconds s (log: $log)" >&2
  status=0
  # Bounded twice: libFuzzer stops at -max_total_time; `timeout` ends a hung run 5 min later.
  (cd fuzz && timeout --signal=INT --kill-after=30 $((seconds + 300)) \
    cargo +nightly fuzz run -a "$target" "corpus/$target.run" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1) \
    >"$log" 2>&1 || status=$?
  # The last status line (`#N DONE cov: E ft: F corp: U/SIZE ...`) and the final stats.
  last=$(grep -E '^#[0-9]+[[:space:]].*cov: ' "$log" | tail -n 1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/p' <<<"$last")
  execs=$(sed -nE 's/^stat::number_of_executed_units:[[:space:]]+([0-9]+)/\1/p' "$log" | tail -n 1)
  rate=$(sed -nE 's/^stat::average_exec_per_sec:[[:space:]]+([0-9]+)/\1/p' "$log" | tail -n 1)
  if [ "$status" -eq 0 ]; then
    finding=none
  else
    failed=1
    artifact=$(sed -nE 's/.*Test unit written to (.*)$/\1/p' "$log" | tail -n 1)
    finding="exit $status${artifact:+, $artifact}"
  fi
  line="| $target | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${ft:-?} | ${corp:-?} | $finding |"
  results+=("$line")
  echo "$line" >&2
done

echo "fuzzing for $seconds s per target, built at $built_at"
echo
echo "| target | execs | execs/s | cov | ft | corpus (inputs/bytes) | finding |"
echo "|---|---:|---:|---:|---:|---|---|"
printf '%s\n' "${results[@]}"
exit "$failed"
