#!/usr/bin/env bash
# Fuzz the config and mode file parsers with cargo-fuzz (libFuzzer).
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  how long each target runs (default 30: enough for CI to catch a regression)
#   TARGET   config_parse, mode_parse, mode_round_trip (default: all of them, one after another)
# A crash, a panic or an input that takes over 10 s fails the script; libFuzzer leaves the input
# in fuzz/artifacts/<target>/ (replay: cargo fuzz run <target> <file>). The corpus grows in
# fuzz/corpus/<target>/, seeded from the committed fuzz/seeds/<target>/.
set -euo pipefail

seconds=${1:-30}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_parse mode_parse mode_round_trip)

cd "$(dirname "$0")/../fuzz"

command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz

# cargo-fuzz passes -Z flags (sanitizer, coverage); a stable toolchain accepts them only with
# RUSTC_BOOTSTRAP. A nightly toolchain needs nothing.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

cargo fuzz build

summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  dirs=("corpus/$t")
  [ -d "seeds/$t" ] && dirs+=("seeds/$t")
  log=$(mktemp)
  echo "== $t: ${seconds}s" >&2
  if ! cargo fuzz run "$t" "${dirs[@]}" -- \
      -dict=toml.dict -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
      2>&1 | tee "$log" >&2; then
    rm -f "$log"
    echo "FAILED: $t (input saved under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  # libFuzzer's last line: "Done <runs> runs in <seconds> second(s)".
  summary+=("$t: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1)")
  rm -f "$log"
done
printf '%s\n' "${summary[@]}"
