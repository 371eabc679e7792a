#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build and test calico-bpf-guard.
# Usage: scripts/install-deps.sh [build|test|package|bench|deploy|all]   (default: test)
set -euo pipefail
what=${1:-test}

# python3: make lint's house check (scripts/house.py).
build=(libelf-dev zlib1g-dev pkg-config gcc make python3)
test=(iproute2 util-linux procps bpftool)
# The shipped binary is built with cargo-zigbuild for glibc 2.17, with libelf and zlib built from
# libbpf-sys's vendored sources: autotools, flex, bison and gawk build elfutils' libelf. rpmbuild
# splits off the -debuginfo package with debugedit's find-debuginfo, which runs eu-strip
# (elfutils) and file. The arm64 packages are built in a trixie chroot that mmdebstrap makes
# (scripts/arm64-chroot.sh); make boot-test-arm64 boots them with debootstrap (checked against
# debian-archive-keyring), mkfs.ext4 and debugfs (e2fsprogs) and qemu-system-aarch64, its
# initramfs made with kmod and cpio.
package=(build-essential debhelper dpkg-dev lintian rpm rpmlint cpio mmdebstrap systemd-container go-md2man
         debugedit elfutils file
         autoconf automake autopoint flex bison gawk libtool
         debootstrap debian-archive-keyring e2fsprogs qemu-system-arm kmod)
# Pinned: the package build's compiler and linker (make deb, make rpm, make boot-test).
zigbuild_version=0.24.1
ziglang_version=0.17.1
bench=(hyperfine strace iproute2 bpftool time)
# make kernel-matrix: Debian's kernels booted under QEMU from a busybox initramfs.
# The arm64 rows: qemu-system-aarch64, mmdebstrap for the guests' arm64 userland and the
# trixie cross chroot that builds for them (scripts/arm64-chroot.sh), and qemu-user, under
# which nextest lists the aarch64 archive's tests on this host (the filterset is nextest's).
matrix=(qemu-system-x86 qemu-system-arm qemu-user busybox-static kmod cpio zstd xz-utils debian-archive-keyring mmdebstrap)
# make image, make e2e (podman kube play; runc, since crun refuses hybrid cgroup hosts; catatonit
# for podman's locally built pause image; curl GETs the pod's probes), make validate-manifests
# (a venv, see below).
deploy=(podman runc catatonit binutils python3-venv curl)

case "$what" in
  build) pkgs=("${build[@]}") ;;
  test) pkgs=("${build[@]}" "${test[@]}") ;;
  package) pkgs=("${build[@]}" "${package[@]}") ;;
  bench) pkgs=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
  matrix) pkgs=("${build[@]}" "${test[@]}" "${matrix[@]}") ;;
  deploy) pkgs=("${build[@]}" "${test[@]}" "${deploy[@]}") ;;
  all) pkgs=("${build[@]}" "${test[@]}" "${package[@]}" "${bench[@]}" "${deploy[@]}") ;;
  *) echo "usage: $0 [build|test|package|bench|deploy|all]" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "cargo is not installed: install a Rust toolchain (rustup) first" >&2
  exit 1
fi
if [ "$what" = test ] || [ "$what" = all ]; then
  command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
fi
if [ "$what" = package ] || [ "$what" = all ]; then
  if [ "$(cargo-zigbuild --version 2>/dev/null)" != "cargo-zigbuild $zigbuild_version" ]; then
    cargo install --locked --force cargo-zigbuild --version "$zigbuild_version"
  fi
  # cargo-zigbuild runs `python3 -m ziglang` when no zig is on PATH. Debian's own python3 marks
  # itself externally managed; PIP_BREAK_SYSTEM_PACKAGES lets pip install there too.
  if [ "$(python3 -m ziglang version 2>/dev/null)" != "$ziglang_version" ]; then
    python3 -m pip --version >/dev/null 2>&1 ||
      { apt-get update -qq; apt-get install -y -qq --no-install-recommends python3-pip >/dev/null; }
    PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --root-user-action=ignore "ziglang==$ziglang_version"
  fi
fi
if [ "$what" = deploy ] || [ "$what" = all ]; then
  # kubectl (its kustomize) and Kubernetes' schemas for make validate-manifests, pinned in
  # deploy/manifest-tools.txt, in a venv of their own so that no kubectl lands on PATH.
  tools=${MANIFEST_TOOLS:-/opt/calico-bpf-guard-dev/manifest-tools}
  pins=$(dirname "$0")/../deploy/manifest-tools.txt
  if ! cmp -s "$pins" "$tools/pins.txt"; then
    python3 -m venv --clear "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check -r "$pins"
    cp "$pins" "$tools/pins.txt"
  fi
fi
