#!/usr/bin/env bash
# make boot-test: boot a Debian rootfs with systemd as PID 1 in systemd-nspawn, the built .deb
# installed, stale Calico state planted before the guard, a kubelet stand-in, and check.sh after
# kubelet. The container's exit status (check.sh's `systemctl exit`) is the result.
#
# SUITE=bookworm (Debian 12, systemd 252, glibc 2.36; the default) or SUITE=bullseye (Debian 11,
# systemd 247, glibc 2.31): make boot-test runs both, one after the other.
#
# Before the boot, on the host: the .deb enabled the unit when installed into the rootfs, and the
# .rpm's scriptlets enable it through the preset (and disable it on erase) in a copy of the
# rootfs set up like an RPM distribution, where units are disabled unless a preset says otherwise.
#
# Needs root, mmdebstrap, systemd-nspawn and rpm (scripts/install-deps.sh package), the .deb and
# .rpm in target/packages/ and the test kit built for glibc 2.17 like the package, so it runs on
# either suite: target/zig/<arch>-unknown-linux-gnu/release/calico-bpf-testkit (make boot-test
# builds them all; TESTKIT=PATH uses another build of the test kit).
#
# Each suite's base rootfs is cached in target/boot-cache/, keyed by everything that goes into
# it; a cached run takes seconds. Every mount, cgroup and temporary directory is removed on exit.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

suite=${SUITE:-bookworm}
case $suite in
  bookworm | bullseye) ;;
  *) echo "boot test: SUITE=$suite: bookworm or bullseye" >&2; exit 2 ;;
esac
mirrors=("deb http://deb.debian.org/debian $suite main"
         "deb http://deb.debian.org/debian-security $suite-security main")
# systemd to boot; iproute2 because the test kit plants its interface with ip(8); perl-base (in
# minbase) runs bpf-holder.pl. The guard and the test kit need no library but the C runtime.
packages=systemd,iproute2
boot_timeout=${BOOT_TIMEOUT:-300}

[ "$(id -u)" = 0 ] || { echo "boot test: needs root" >&2; exit 1; }
for tool in mmdebstrap systemd-nspawn rpm; do
  command -v "$tool" >/dev/null || { echo "boot test: $tool missing (scripts/install-deps.sh package)" >&2; exit 1; }
done
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
# This host's architecture: target/packages/ may hold arm64 packages too (make deb ARCH=arm64).
deb_arch=$(dpkg --print-architecture) rpm_arch=$(uname -m)
deb=$(ls target/packages/calico-bpf-guard_"$version"_"$deb_arch".deb 2>/dev/null | head -n1)
rpm=$(ls target/packages/calico-bpf-guard-"$version"-*."$rpm_arch".rpm 2>/dev/null | head -n1)
testkit=${TESTKIT:-target/zig/$(uname -m)-unknown-linux-gnu/release/calico-bpf-testkit}
dbgsym=$(ls target/packages/calico-bpf-guard-dbgsym_"$version"_"$deb_arch".deb 2>/dev/null | head -n1)
debuginfo=$(ls target/packages/calico-bpf-guard-debuginfo-"$version"-*."$rpm_arch".rpm 2>/dev/null | head -n1)
[ -n "$deb" ] || { echo "boot test: no target/packages/calico-bpf-guard_${version}_*.deb (make deb)" >&2; exit 1; }
[ -n "$rpm" ] || { echo "boot test: no target/packages/calico-bpf-guard-${version}-*.rpm (make rpm)" >&2; exit 1; }
[ -n "$dbgsym" ] || { echo "boot test: no target/packages/calico-bpf-guard-dbgsym_${version}_*.deb (make deb)" >&2; exit 1; }
[ -n "$debuginfo" ] || { echo "boot test: no target/packages/calico-bpf-guard-debuginfo-${version}-*.rpm (make rpm)" >&2; exit 1; }
[ -x "$testkit" ] || { echo "boot test: no $testkit (make boot-test builds it)" >&2; exit 1; }

start=$(date +%s)
pass=0
fail=0
fails() { ! "$@"; }
quiet() { "$@" >/dev/null; }
# has_debug_file ROOT: ROOT holds the debug file the installed binary names by its build-id
# (where gdb and perf look), and it matches.
has_debug_file() { quiet packaging/check-debug.sh "$1/usr/sbin/calico-bpf-guard" "$1"; }
# hcheck DESCRIPTION COMMAND...: a check on the host side, counted with the container's.
hcheck() {
  local what=$1
  shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $what"; else fail=$((fail + 1)); echo "not ok - $what"; fi
}

# --- base rootfs, cached -----------------------------------------------------------------------
mmdebstrap_args=(--variant=minbase --include="$packages" "$suite")
key=$(printf '%s\n' "${mmdebstrap_args[@]}" "${mirrors[@]}" | sha256sum | cut -c1-16)
cache=target/boot-cache/rootfs-$suite-$key.tar
if [ ! -f "$cache" ]; then
  echo "boot test: building the Debian $suite rootfs ($packages) into $cache"
  mkdir -p target/boot-cache
  rm -rf "$cache.part"
  mmdebstrap --quiet --format=tar "${mmdebstrap_args[@]}" "$cache.part" "${mirrors[@]}"
  # Only one base rootfs per suite is worth keeping (and none in the old unsuffixed naming).
  find target/boot-cache \( -name "rootfs-$suite-*.tar" -o -regex '.*/rootfs-[0-9a-f]*\.tar' \) \
    ! -name "rootfs-$suite-$key.tar" -delete
  mv "$cache.part" "$cache"
fi

# --- cleanup -------------------------------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/calico-bpf-guard-boot.XXXXXX")
machine=cbg-boot-$suite-$$
cg2=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
cg=${cg2:+$cg2/calico-bpf-guard-boot-$$}
# The guard in the container expedites RCU grace periods through the host kernel's switch and
# keeps its record of that in the container's /run: if the container is killed meanwhile, only
# this script can put the host's value back.
rcu=/sys/kernel/rcu_expedited
rcu_host=$(cat "$rcu")
cleanup() {
  set +e
  [ "$(cat "$rcu")" = "$rcu_host" ] || echo "$rcu_host" >"$rcu"
  if [ -n "$cg" ] && [ -d "$cg" ]; then
    [ -e "$cg/cgroup.kill" ] && echo 1 >"$cg/cgroup.kill"
    for _ in $(seq 50); do grep -q '^populated 0$' "$cg/cgroup.events" && break; sleep 0.1; done
    find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null
  fi
  mountpoint -q "$tmp/bpffs" && umount "$tmp/bpffs"
  # nspawn leaves its mount-propagation directory behind when /run is not a tmpfs.
  rm -rf "/run/systemd/nspawn/propagate/$machine"
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

# --- the node: rootfs, package, test units --------------------------------------------------------
root=$tmp/root
mkdir -p "$root"
tar --numeric-owner -xpf "$cache" -C "$root"

install -D -m 0644 "$deb" "$root/var/cache/boot-test/calico-bpf-guard.deb"
# Installed the way a node image installs it; no systemd runs in the chroot, so the postinst
# enables the unit and starts nothing.
echo "# packages"
hcheck "deb: installs into the rootfs" quiet chroot "$root" dpkg -i /var/cache/boot-test/calico-bpf-guard.deb
mapfile -t wanted_by < <(grep -v '^#' "$here/wanted-by")
for wants in "${wanted_by[@]}"; do
  hcheck "deb: enabled the unit ($wants.wants)" test -L "$root/etc/systemd/system/$wants.wants/calico-bpf-guard.service"
done
install -D -m 0644 "$dbgsym" "$root/var/cache/boot-test/calico-bpf-guard-dbgsym.deb"
hcheck "deb: the -dbgsym package installs beside it" quiet chroot "$root" dpkg -i /var/cache/boot-test/calico-bpf-guard-dbgsym.deb
hcheck "deb: it holds the debug file the binary names" has_debug_file "$root"
hcheck "deb: the -dbgsym package removes" quiet chroot "$root" dpkg --purge calico-bpf-guard-dbgsym

# The .rpm in a copy of the rootfs made to look like an RPM distribution: a last preset that
# disables everything, as Fedora's 99-default-disable.preset does, so only the package's own
# preset can enable the unit. --nodeps: the copy's rpm database knows none of Debian's packages.
rpmroot=$tmp/rpmroot
mkdir -p "$rpmroot"
tar --numeric-owner -xpf "$cache" -C "$rpmroot"
# (bullseye's systemd keeps its own presets in /lib, so /usr/lib's directory may not exist yet.)
mkdir -p "$rpmroot/usr/lib/systemd/system-preset"
echo 'disable *' >"$rpmroot/usr/lib/systemd/system-preset/99-default-disable.preset"
# rpm_links all|none: every WantedBy= link is there, or none is, nor a .wants directory of a
# Kubernetes unit (multi-user.target's holds other units' links).
rpm_links() {
  local wants dir
  for wants in "${wanted_by[@]}"; do
    dir=$rpmroot/etc/systemd/system/$wants.wants
    case $1 in
      all) test -L "$dir/calico-bpf-guard.service" || return 1 ;;
      none) test ! -L "$dir/calico-bpf-guard.service" || return 1
            [ "$wants" = multi-user.target ] || test ! -e "$dir" || return 1 ;;
    esac
  done
}
hcheck "rpm: installs" rpm --root="$rpmroot" --nodeps --quiet -i "$rpm"
hcheck "rpm: %post enabled the unit through the preset, for all ${#wanted_by[@]} WantedBy= units" rpm_links all
hcheck "rpm: the -debuginfo package installs beside it" rpm --root="$rpmroot" --nodeps --quiet -i "$debuginfo"
hcheck "rpm: it holds the debug file the binary names" has_debug_file "$rpmroot"
hcheck "rpm: erases" rpm --root="$rpmroot" --nodeps --quiet -e calico-bpf-guard-debuginfo calico-bpf-guard
hcheck "rpm: %preun disabled the unit and left no .wants directory behind" rpm_links none
rm -rf --one-file-system "$rpmroot"

chroot "$root" calico-bpf-guard mode set iptables --source "boot test" >/dev/null

install -D -m 0755 "$testkit" "$root/usr/local/bin/calico-bpf-testkit"
install -D -m 0755 "$here/check.sh" "$root/usr/local/lib/boot-test/check.sh"
install -D -m 0755 "$here/bpf-holder.pl" "$root/usr/local/lib/boot-test/bpf-holder.pl"
install -D -m 0755 "$here/kubelet-standin.sh" "$root/usr/local/lib/boot-test/kubelet-standin.sh"
# Installed by check.sh under each distribution's unit name in turn; absent until then.
install -D -m 0644 "$here/distribution-standin.service" "$root/usr/local/lib/boot-test/distribution-standin.service"
install -m 0644 "$here"/units/*.service "$root/etc/systemd/system/"
systemctl --root="$root" --quiet enable calico-bpf-testkit-plant.service kubelet.service boot-test-check.service
# check.sh makes /sys read-write only in a network namespace (and so a sysfs) of its own.
mkdir -p "$root/var/lib/boot-test"
readlink /proc/self/ns/net >"$root/var/lib/boot-test/host-netns"
# Keep the journal in the rootfs so a failure can be read from here.
mkdir -p "$root/var/log/journal"

# --- boot -----------------------------------------------------------------------------------------
# A fresh bpffs instance for the container, so nothing planted touches the host's /sys/fs/bpf.
mkdir "$tmp/bpffs"
mount -t bpf bpf "$tmp/bpffs"

# nspawn runs in a cgroup of our own: with --keep-unit and no systemd on the host it would
# otherwise create its payload/ and supervisor/ cgroups at the host's cgroup2 root and leave them.
# The container's cgroup namespace starts at payload/, so what the test kit attaches to "the
# root cgroup" lands there, never on the host's root cgroup.
[ -n "$cg" ] || { echo "boot test: no cgroup2 mount on the host" >&2; exit 1; }
mkdir "$cg"

console=$tmp/console.log
echo "boot test: booting Debian $suite with $(basename "$deb") in systemd-nspawn (timeout ${boot_timeout}s)"
set +e
(
  echo "$BASHPID" >"$cg/cgroup.procs"
  # SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1: the container gets a cgroup v2 /sys/fs/cgroup even on a
  # host with the hybrid layout (cgroup2 at /sys/fs/cgroup/unified), as nodes with Calico's eBPF
  # dataplane have. bpf and perf_event_open are outside nspawn's default seccomp filter;
  # CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN are outside its default capability set.
  # --register=no --keep-unit: the host has no systemd to register with.
  SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 TERM=dumb exec timeout --kill-after=15 "$boot_timeout" \
    systemd-nspawn --quiet --boot --directory="$root" --machine="$machine" \
      --register=no --keep-unit --link-journal=no --private-network \
      --bind="$tmp/bpffs:/sys/fs/bpf" \
      --system-call-filter='bpf perf_event_open' \
      --capability=CAP_BPF,CAP_PERFMON,CAP_NET_ADMIN \
      --console=read-only
) </dev/null >"$console" 2>&1
status=$?
set -e

results=$root/var/lib/boot-test/results
[ -f "$results" ] && cat "$results"
hcheck "the host's $rcu reads $rcu_host, as before the boot" [ "$(cat "$rcu")" = "$rcu_host" ]
summary=$(tail -n1 "$results" 2>/dev/null || true)
elapsed=$(($(date +%s) - start))
if [[ $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
  pass=$((pass + BASH_REMATCH[1]))
  fail=$((fail + BASH_REMATCH[2]))
else
  fail=$((fail + 1))
  echo "not ok - the checks in the container did not finish"
fi

if [ "$status" -ne 0 ] || [ "$fail" -ne 0 ]; then
  case $status in
    0) why="checks failed" ;;
    124|137) why="the boot timed out after ${boot_timeout}s" ;;
    *) why="the container exited $status" ;;
  esac
  echo "boot test ($suite): FAILED: $why (${elapsed}s)"
  echo "--- console (last 60 lines)"
  tail -n 60 "$console"
  for unit in calico-bpf-testkit-plant.service:20 calico-bpf-guard.service:40 kubelet.service:10; do
    echo "--- journal of ${unit%:*} (last ${unit#*:} lines)"
    journalctl --directory="$root/var/log/journal" --no-pager -o short-monotonic -u "${unit%:*}" \
      2>/dev/null | tail -n "${unit#*:}"
  done
  [ "$status" -eq 0 ] || fail=$((fail + 1))
  echo "$pass passed, $fail failed"
  exit 1
fi
echo "boot test ($suite): passed in ${elapsed}s"
echo "$pass passed, $fail failed"
