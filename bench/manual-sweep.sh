#!/usr/bin/env bash
# The manual cleanup as operators script it today with bpftool, tc, ip and rm: list each family,
# then remove each object with its own process. It runs in the network namespace it is started
# in and removes the same objects the guard does on a bench node (the bench checks that it did).
# Usage: manual-sweep.sh BPFFS CGROUP      Prints "processes: N" at the end.
set -euo pipefail
bpffs=$1 cgroup=$2
n=0
x() { n=$((n + 1)); "$@"; }
# A listing pipeline counts as the processes it starts.
count() { n=$((n + $1)); }

# 1. Connect-time load balancer links: detach each through its pin, then remove the pin.
if [ -d "$bpffs/ctlb" ]; then
  for pin in "$bpffs"/ctlb/*; do
    [ -e "$pin" ] || continue
    x bpftool link detach pinned "$pin"
    x rm "$pin"
  done
  x rmdir "$bpffs/ctlb"
fi

# 2. Old-style connect-time programs left on the cgroup: "ID AttachType [Flags] Name".
count 2
bpftool cgroup show "$cgroup" | awk 'NR > 1 && $NF ~ /^cali(co)?_/ { print $1, $2 }' |
  while read -r id type; do
    x bpftool cgroup detach "$cgroup" "$type" id "$id"
  done

# 3. tc filters on every interface whose program is Calico's, deleted one by one.
count 3
for dev in $(ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
  for dir in ingress egress; do
    count 2
    # "filter protocol all pref 1 bpf chain 0 handle 0x1 cali_tc_preambl direct-action ..."
    tc filter show dev "$dev" "$dir" 2>/dev/null |
      awk '$1 == "filter" && / bpf / && / handle / {
             for (i = 1; i <= NF; i++) {
               if ($i == "protocol") proto = $(i + 1)
               if ($i == "pref") pref = $(i + 1)
               if ($i == "handle") { handle = $(i + 1); name = $(i + 2) }
             }
             if (name ~ /^cali(co)?_/) print proto, pref, handle
           }' > /tmp/manual-sweep.$$ || true
    while read -r proto pref handle; do
      x tc filter del dev "$dev" "$dir" protocol "$proto" pref "$pref" handle "$handle" bpf
    done < /tmp/manual-sweep.$$
  done
done
rm -f /tmp/manual-sweep.$$

# 4. tcx links pinned by Calico 3.31+: detach through the pin, then remove it.
if [ -d "$bpffs/tcx" ]; then
  for pin in "$bpffs"/tcx/*; do
    [ -e "$pin" ] || continue
    x bpftool link detach pinned "$pin"
    x rm "$pin"
  done
fi

# 5. Global maps and jump-map repin directories.
for pin in "$bpffs"/tc/globals/cali_* "$bpffs"/tc/globals/xdp_cali_*; do
  [ -e "$pin" ] || continue
  x rm "$pin"
done
if [ -d "$bpffs/tc/globals/old_jumps" ]; then
  for dir in "$bpffs"/tc/globals/old_jumps/*/; do
    for pin in "$dir"*; do
      [ -e "$pin" ] || continue
      x rm "$pin"
    done
    x rmdir "$dir"
  done
  x rmdir "$bpffs/tc/globals/old_jumps"
fi

# 6. The eBPF-mode host device pair.
if ip link show dev bpfin.cali >/dev/null 2>&1; then
  x ip link del dev bpfin.cali
fi
count 1
echo "processes: $n"
