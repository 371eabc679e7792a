#!/usr/bin/env bash
# Benchmark the guard at node scale (issue 5): sandbox nodes with 100 and 1,000 Calico
# interfaces, each measured with the guard's sweep, the manual bpftool/tc procedure and the
# kernel floor, plus a no-op sweep against /bin/true. Prints a Markdown table and writes it to
# bench/results.md. Needs root. About 10 minutes on 2 cores: the manual procedure starts one
# process per object, and every tcx attach and detach waits for an RCU grace period.
# Options go to calico-bpf-bench (see `target/release/calico-bpf-bench --help`).
# `scripts/bench.sh --compare REF [options]` (make bench-compare REF=...) also builds the guard
# at commit REF, in a git worktree under target/bench-ref/ with a target dir of its own, and
# measures both guards in the same runs, taking turns, for figures that survive a noisy machine.
# The table says the machine's load, the commit measured and whether the tree was clean.
set -euo pipefail
cd "$(dirname "$0")/.."
baseline=()
if [ "${1:-}" = --compare ]; then
  [ -n "${2:-}" ] || { echo "bench: --compare needs a commit (make bench-compare REF=<commit>)" >&2; exit 2; }
  ref=$(git rev-parse --short "$2^{commit}")
  shift 2
fi
[ "$(id -u)" = 0 ] || { echo "bench: needs root (it mounts bpffs and creates cgroups and network namespaces)" >&2; exit 1; }
scripts/install-deps.sh bench
# Peak RSS comes from GNU time (Debian's `time` package), which a minimal image lacks.
[ -x /usr/bin/time ] || { echo "bench: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
# Both guards are built as shipped (make deb, make rpm): `--features static`, libelf and zlib
# linked in. The everyday build loads them as shared libraries, which a no-op sweep pays for at
# every start, and a node never runs that build.
built="with the packages' --features static (libelf and zlib linked in, as shipped)"
cargo build --release --workspace --quiet --features calico-bpf-guard/static
if [ -n "${ref:-}" ]; then
  wt=target/bench-ref/$ref
  [ -d "$wt/tree" ] || git worktree add --detach "$wt/tree" "$ref" >/dev/null
  # A target dir of its own: the other tree's crate must never stand in for this one's.
  cargo build --release --quiet --manifest-path "$wt/tree/Cargo.toml" --target-dir "$wt/target" \
    -p calico-bpf-guard --bin calico-bpf-guard --features static
  baseline=(--baseline "$wt/target/release/calico-bpf-guard" --baseline-label "$ref")
fi

# Sandboxes are named cbg-<tag>-<pid>-<n> after the process that made them. The bench removes
# its own on every path it can see; this catches the ones it cannot (SIGKILL, an abort), from
# this run or an earlier one, and only those whose process is gone.
gone() { local pid=${1#cbg-*-}; pid=${pid%%-*}; ! kill -0 "$pid" 2>/dev/null; }
cleanup() {
  local ns m d cg
  for ns in $(ip netns list | awk '$1 ~ /^cbg-(bench|bpods)-[0-9]+-[0-9]+$/ { print $1 }'); do
    gone "$ns" && ip netns del "$ns"
  done
  for cg in $(awk '$3 == "cgroup2" { print $2 }' /proc/mounts); do
    for d in "$cg"/cbg-bench-*; do
      [ -d "$d" ] && gone "$(basename "$d")" && rmdir "$d"
    done
  done
  for m in $(awk '$3 == "bpf" && $2 ~ /\/cbg-bench-[0-9]+-[0-9]+\/bpffs$/ { print $2 }' /proc/mounts); do
    gone "$(basename "$(dirname "$m")")" && umount -l "$m"
  done
  for d in "${TMPDIR:-/tmp}"/cbg-bench-*; do
    [ -d "$d" ] && gone "$(basename "$d")" && ! grep -q " $d/" /proc/mounts && rm -rf "$d"
  done
  return 0
}
trap cleanup EXIT
cleanup

target/release/calico-bpf-bench --guard target/release/calico-bpf-guard "${baseline[@]}" \
  --built "$built" --out bench/results.md "$@"
