#!/usr/bin/env bash
# Stage 2 of a kernel matrix guest, PID 1 on the build host's / (read-only 9p). Makes the
# mounts a systemd host would have (tmpfs /tmp and /run, bpffs, cgroup2 at /sys/fs/cgroup,
# devpts), lets the kernel load its own modules from the extracted package, runs the suite and
# the demo (run-suite.sh) with results on the writable `results` share, then reboots, which
# ends QEMU (-no-reboot).
set -uo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8

reboot_now() {
    sync
    echo b >/proc/sysrq-trigger
    sleep 60
}
trap reboot_now EXIT

step() {
    "$@" || echo "kernel-matrix guest: failed: $*" >&2
}

step mount -t tmpfs -o mode=1777 tmpfs /tmp
step mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /dev/pts /dev/shm
step mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
step mount -t tmpfs -o mode=1777 tmpfs /dev/shm
step mount -t bpf -o mode=0700 bpf /sys/fs/bpf
step mount -t cgroup2 cgroup2 /sys/fs/cgroup
step mount -t debugfs debugfs /sys/kernel/debug
step mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /run/kernel-matrix
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /run/kernel-matrix || {
    echo "kernel-matrix guest: cannot mount the results share" >&2
    exit 1
}
out=/run/kernel-matrix
# KM_REPO KM_TESTS KM_BINDIR KM_MODROOT and KM_NEXTEST KM_FILTER (x86_64) or KM_RUNNER
# KM_GUARD_SRC KM_GUARD_DST (arm64), written by kernel-matrix.sh.
set -a
# shellcheck source=/dev/null
. "$out/guest.env"
set +a

echo "kernel-matrix guest: $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"

# The modules are in the extracted package, not in /lib/modules of the (host's) root: point
# the kernel's module autoloader at a wrapper that looks there, then load what the tests use
# up front (`ip link add … veth`, clsact qdiscs, tc bpf filters, the tests' vxlan devices).
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d %s "$@"\n' "$KM_MODROOT" >/run/modprobe
chmod 0755 /run/modprobe
echo /run/modprobe >/proc/sys/kernel/modprobe
for m in veth sch_ingress cls_bpf vxlan; do
    step modprobe -d "$KM_MODROOT" "$m"
done

step ip link set lo up
hostname kernel-matrix 2>/dev/null || true

"$KM_REPO/scripts/kernel-matrix/run-suite.sh" "$KM_REPO" "$KM_TESTS" "$KM_BINDIR" "$out" /tmp/kernel-matrix
echo "kernel-matrix guest: done"
