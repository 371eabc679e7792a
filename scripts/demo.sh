#!/usr/bin/env bash
# Show the guard at work without a cluster: a throwaway sandbox (fresh bpffs, child cgroup,
# network namespace) holding stale Calico state beside other tools' objects; dry run, sweep,
# check, and what is left. The sandbox is removed afterwards. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo: needs root (it mounts a bpffs and creates a cgroup and a netns)" >&2; exit 1; }
cargo build --release --workspace --quiet
exec target/release/calico-bpf-testkit demo --guard target/release/calico-bpf-guard
