# shellcheck shell=bash
# Sourced by the package builds: the architecture to build for, ARCH (amd64 or x86_64, arm64 or
# aarch64; default this host's), as Debian (deb_arch) and RPM and Rust (cpu) name it, and whether
# it is a cross build. An x86_64 host builds arm64 packages in the trixie cross chroot
# (scripts/arm64-chroot.sh); in_chroot says the build already runs there.
host_cpu=$(uname -m)
case ${ARCH:-$host_cpu} in
  amd64 | x86_64) deb_arch=amd64 cpu=x86_64 ;;
  arm64 | aarch64) deb_arch=arm64 cpu=aarch64 ;;
  *) echo "ARCH=$ARCH: amd64 (x86_64) or arm64 (aarch64)" >&2; exit 2 ;;
esac
cross=
[ "$cpu" = "$host_cpu" ] || cross=1
in_chroot=${ARM64_CHROOT:-}
if [ -n "$cross" ] && [ -z "$in_chroot" ] && [ "$host_cpu/$cpu" != x86_64/aarch64 ]; then
  echo "an $host_cpu host builds $host_cpu packages, and arm64 ones if it is x86_64; not $cpu" >&2
  exit 2
fi
