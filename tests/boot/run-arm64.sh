#!/usr/bin/env bash
# make boot-test-arm64: the x86 boot test's node (tests/boot/run.sh), as an arm64 machine: Debian
# booted with systemd as PID 1 under qemu-system-aarch64 (TCG) on Debian's own arm64 kernel of
# the same suite, the arm64 .deb installed, stale Calico state planted before the guard, a
# kubelet stand-in, and tests/boot/check.sh after kubelet, unchanged. An x86 host cannot run
# arm64 code, so what run.sh does in a chroot on the host happens in the guest, before systemd
# starts, from its initramfs (tests/boot/arm64/init, setup.sh). check.sh's `systemctl exit`
# powers the machine off; its results are read back from the guest's disk here.
#
# SUITE=bookworm (Debian 12, kernel 6.1; the default) or SUITE=bullseye (Debian 11, kernel 5.10).
#
# The node's disk is an ext4 image: debootstrap unpacks the suite's arm64 minbase with systemd
# here (--foreign: nothing runs), with the kernel's modules, and a first boot configures it
# (debootstrap --second-stage). That image is cached in target/boot-cache/, keyed by what goes
# into it, and every run boots a copy of it.
#
# Needs root, debootstrap, debian-archive-keyring, e2fsprogs, qemu-system-arm, kmod, cpio
# (scripts/install-deps.sh package), the arm64 .deb and -dbgsym in target/packages/ (make deb ARCH=arm64) and the test
# kit built for aarch64 and glibc 2.17 like the package (make boot-test-arm64 builds them all;
# TESTKIT=PATH uses another build). Nothing is mounted on the host; the guest's files are read
# with debugfs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

suite=${SUITE:-bookworm}
case $suite in
  bookworm | bullseye) ;;
  *) echo "boot test arm64: SUITE=$suite: bookworm or bullseye" >&2; exit 2 ;;
esac
mirror=http://deb.debian.org/debian
# systemd to boot, udev and kmod to load the modules the test kit's objects need (a container
# has its host's), iproute2 for the test kit's interfaces, busybox-static for stage 1 of the
# initramfs. perl-base (in minbase) runs bpf-holder.pl.
packages=systemd,systemd-sysv,udev,kmod,iproute2,busybox-static
# Under TCG the boot and the checks take minutes (README, Packaging); the first boot, which
# configures the userland, longer.
boot_timeout=${BOOT_TIMEOUT:-2400}
mem=${BOOT_MEM:-2G}

log() { echo "boot test arm64: $*" >&2; }
die() {
  log "$*"
  exit 2
}
[ "$(id -u)" = 0 ] || die "needs root"
for tool in debootstrap mkfs.ext4 debugfs qemu-system-aarch64 modprobe depmod cpio dpkg-deb apt-get; do
  command -v "$tool" >/dev/null || die "$tool missing (scripts/install-deps.sh package)"
done
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f "$keyring" ] || die "no $keyring (scripts/install-deps.sh package)"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
deb=target/packages/calico-bpf-guard_${version}_arm64.deb
dbgsym=target/packages/calico-bpf-guard-dbgsym_${version}_arm64.deb
testkit=${TESTKIT:-target/zig-arm64/aarch64-unknown-linux-gnu/release/calico-bpf-testkit}
for f in "$deb" "$dbgsym"; do [ -f "$f" ] || die "no $f (make deb ARCH=arm64)"; done
[ -x "$testkit" ] || die "no $testkit (make boot-test-arm64 builds it)"
file -b "$testkit" | grep -q 'ARM aarch64' || die "$testkit is not an aarch64 binary"

start=$(date +%s)
km=$repo/target/kernel-matrix
busybox=
# shellcheck source=scripts/kernel-matrix/kernels.sh
. scripts/kernel-matrix/kernels.sh
mkdir -p "$km/cache"
fetch_kernel "$suite" arm64 || die "cannot get $suite's arm64 kernel"
log "kernel $kver ($kpkg)"

tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/calico-bpf-guard-boot-arm64.XXXXXX")
cleanup() {
  # QEMU runs under timeout in the foreground; nothing else of ours outlives the script.
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT

# boot IMAGE BOOT_TEST INITRAMFS CONSOLE [QEMU ARG...]: the arm64 machine, its disk IMAGE,
# until it powers off; QEMU's exit status (124 or 137: timed out).
boot() {
  local image=$1 mode=$2 initrd=$3 console=$4
  shift 4
  # -cpu max with pauth-impdef: the cheap implementation-defined pointer authentication
  # instead of QARMA, which under TCG costs more than the rest of the CPU (as the kernel matrix).
  timeout --kill-after=30 "$boot_timeout" qemu-system-aarch64 \
    -M virt -cpu max,pauth-impdef=on -accel tcg,thread=multi -smp 2 -m "$mem" \
    -nodefaults -no-reboot -display none -monitor none -serial "file:$console" \
    -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$initrd" \
    -append "console=ttyAMA0 panic=-1 random.trust_cpu=on mitigations=off BOOT_TEST=$mode BOOT_TEST_KEY=$key" \
    -drive "file=$image,format=raw,if=virtio,cache=unsafe" \
    -device virtio-rng-pci "$@" </dev/null >"$console.qemu" 2>&1
}
# guest_cat IMAGE PATH: a file of the guest's disk (nothing if it is absent).
guest_cat() { debugfs -R "cat $2" "$1" 2>/dev/null; }
modules=(virtio_pci virtio_blk ext4 9pnet_virtio 9p virtio_rng)

# --- base image, cached ----------------------------------------------------------------------------
debootstrap_args=(--foreign --arch=arm64 --variant=minbase --include="$packages" "$suite")
key=$(printf '%s\n' "${debootstrap_args[@]}" "$mirror" "$kpkg" | sha256sum | cut -c1-16)
cache=target/boot-cache/arm64-$suite-$key
if [ ! -f "$cache.img" ]; then
  log "building the Debian $suite arm64 image ($packages, $kver) into $cache.img (once)"
  mkdir -p target/boot-cache
  rm -f "$cache".*
  root=$tmp/base
  debootstrap --keyring="$keyring" "${debootstrap_args[@]}" "$root" "$mirror" >"$tmp/debootstrap.log" 2>&1 ||
    { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap --foreign failed"; }
  # Stage 1's busybox, from the package debootstrap fetched for the second stage.
  dpkg-deb --fsys-tarfile "$(ls "$root"/var/cache/apt/archives/busybox-static_*_arm64.deb)" |
    tar -xO ./bin/busybox >"$cache.busybox.part"
  chmod 0755 "$cache.busybox.part"
  mkdir -p "$root/lib/modules"
  cp -a "$kroot/lib/modules/$kver" "$root/lib/modules/"
  mkfs.ext4 -q -F -L boot-test -d "$root" "$cache.img.part" 3G
  rm -rf --one-file-system "$root"
  make_initramfs "$kroot" "$kver" "$tmp/initramfs.cpio" "$cache.busybox.part" tests/boot/arm64/init "${modules[@]}"
  log "configuring it in a first boot (debootstrap --second-stage under TCG)"
  t0=$(date +%s)
  rc=0
  boot "$cache.img.part" second-stage "$tmp/initramfs.cpio" "$tmp/base-console.log" || rc=$?
  if [ "$(guest_cat "$cache.img.part" /etc/boot-test-base)" != "$key" ]; then
    tail -n 40 "$tmp/base-console.log" >&2
    die "the first boot did not configure the image (qemu exit $rc)"
  fi
  log "configured in $(($(date +%s) - t0)) s"
  mv "$cache.busybox.part" "$cache.busybox"
  mv "$cache.img.part" "$cache.img"
  # Only one image per suite is worth keeping.
  find target/boot-cache -name "arm64-$suite-*" ! -name "arm64-$suite-$key.*" -delete
fi

# --- the node: a copy of the image, the inputs, stage 1 -----------------------------------------
image=$tmp/node.img
cp --sparse=always "$cache.img" "$image"
in=$tmp/inputs
mkdir -p "$in/units"
install -m 0644 "$deb" "$in/calico-bpf-guard.deb"
install -m 0644 "$dbgsym" "$in/calico-bpf-guard-dbgsym.deb"
install -m 0755 "$testkit" "$in/calico-bpf-testkit"
install -m 0755 "$here/arm64/setup.sh" "$here/check.sh" "$here/bpf-holder.pl" "$here/kubelet-standin.sh" "$in/"
install -m 0644 "$here/distribution-standin.service" "$here/wanted-by" "$in/"
install -m 0644 "$here"/units/*.service "$in/units/"
make_initramfs "$kroot" "$kver" "$tmp/initramfs.cpio" "$cache.busybox" tests/boot/arm64/init "${modules[@]}"

# --- boot --------------------------------------------------------------------------------------------
console=$tmp/console.log
log "booting Debian $suite arm64 ($kver) with $(basename "$deb") under TCG (timeout ${boot_timeout}s)"
status=0
boot "$image" run "$tmp/initramfs.cpio" "$console" \
  -fsdev "local,id=inputs,path=$in,security_model=none,readonly=on" \
  -device virtio-9p-pci,fsdev=inputs,mount_tag=inputs || status=$?

# A machine that did not power off cleanly (a timeout) left its last writes in ext4's journal,
# which debugfs does not read: replay it first (the copy is ours).
e2fsck -y -E journal_only "$image" >/dev/null 2>&1 || true
pass=0
fail=0
setup=$(guest_cat "$image" /var/lib/boot-test/setup-results)
results=$(guest_cat "$image" /var/lib/boot-test/results)
for out in "$setup" "$results"; do
  [ -n "$out" ] || continue
  echo "$out"
  if [[ $(tail -n1 <<<"$out") =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    pass=$((pass + BASH_REMATCH[1]))
    fail=$((fail + BASH_REMATCH[2]))
  fi
done
elapsed=$(($(date +%s) - start))
[[ $(tail -n1 <<<"$setup") =~ ^[0-9]+\ passed ]] || { fail=$((fail + 1)); echo "not ok - the setup in the guest did not finish"; }
[[ $(tail -n1 <<<"$results") =~ ^[0-9]+\ passed ]] || { fail=$((fail + 1)); echo "not ok - the checks in the guest did not finish"; }

if [ "$status" -ne 0 ] || [ "$fail" -ne 0 ]; then
  case $status in
    0) why="checks failed" ;;
    124 | 137) why="the boot timed out after ${boot_timeout}s" ;;
    *) why="qemu exited $status" ;;
  esac
  echo "boot test arm64 ($suite): FAILED: $why (${elapsed}s)"
  echo "--- console (last 60 lines)"
  tail -n 60 "$console"
  [ -s "$console.qemu" ] && { echo "--- qemu"; tail -n 5 "$console.qemu"; }
  guest_cat "$image" /var/lib/boot-test/journal
  [ "$status" -eq 0 ] || fail=$((fail + 1))
  echo "$pass passed, $fail failed"
  exit 1
fi
echo "boot test arm64 ($suite): passed in ${elapsed}s"
echo "$pass passed, $fail failed"
