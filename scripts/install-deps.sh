#!/usr/bin/env bash
# Install what a fresh Debian 12 machine lacks to build and test calico-bpf-guard.
# Usage: scripts/install-deps.sh [build|test|package|bench|all]   (default: test)
set -euo pipefail
what=${1:-test}

build=(libelf-dev zlib1g-dev pkg-config gcc make)
test=(iproute2 util-linux procps bpftool)
package=(build-essential debhelper dpkg-dev lintian rpm rpmlint cpio mmdebstrap systemd-container go-md2man)
bench=(hyperfine strace iproute2 bpftool time)
# make kernel-matrix: Debian's kernels booted under QEMU from a busybox initramfs.
matrix=(qemu-system-x86 busybox-static kmod cpio zstd xz-utils debian-archive-keyring)

case "$what" in
  build) pkgs=("${build[@]}") ;;
  test) pkgs=("${build[@]}" "${test[@]}") ;;
  package) pkgs=("${build[@]}" "${package[@]}") ;;
  bench) pkgs=("${build[@]}" "${test[@]}" "${bench[@]}") ;;
  matrix) pkgs=("${build[@]}" "${test[@]}" "${matrix[@]}") ;;
  all) pkgs=("${build[@]}" "${test[@]}" "${package[@]}" "${bench[@]}") ;;
  *) echo "usage: $0 [build|test|package|bench|all]" >&2; exit 2 ;;
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
