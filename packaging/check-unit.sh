#!/usr/bin/env bash
# Check the unit as shipped: `systemd-analyze verify` must print nothing (it exits 0 on
# warnings), and the sandbox must not get weaker than measured.
# Usage: packaging/check-unit.sh BINARY   (the built calico-bpf-guard: verify checks ExecStart=)
set -euo pipefail
bin=${1:?usage: $0 BINARY}
unit=$(dirname "$0")/../systemd/calico-bpf-guard.service
# The bar: 2.0 or better.
max=${UNIT_MAX_EXPOSURE:-2.0}

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -D -m 0755 "$bin" "$root/usr/sbin/calico-bpf-guard"
install -D -m 0644 "$unit" "$root/etc/systemd/system/calico-bpf-guard.service"

out=$(systemd-analyze verify --man=no --root="$root" calico-bpf-guard.service 2>&1) || true
if [ -n "$out" ]; then
  echo "systemd-analyze verify complained:" >&2
  echo "$out" >&2
  exit 1
fi
echo "systemd-analyze verify: clean"

# The guard writes /sys/kernel/rcu_expedited while it detaches tcx/netkit programs: nothing in
# the sandbox may make /sys read-only (ProtectSystem=strict leaves the API file systems alone).
if grep -Eq '^(ProtectKernelTunables=(yes|true|on|1)|(ReadOnlyPaths|InaccessiblePaths|TemporaryFileSystem)=.*/sys(/kernel)?(/rcu_expedited)?( |$))' "$unit"; then
  echo "the unit makes /sys/kernel/rcu_expedited read-only; the guard sets it while detaching tcx" >&2
  exit 1
fi
echo "/sys/kernel/rcu_expedited: writable under the unit's sandbox"

exposure=$(systemd-analyze security --offline=true --root="$root" --no-pager calico-bpf-guard.service |
  sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || { echo "no exposure level in systemd-analyze security output" >&2; exit 1; }
echo "systemd-analyze security: exposure $exposure (limit $max)"
awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e <= m) }' || {
  echo "exposure $exposure is above $max" >&2
  exit 1
}
