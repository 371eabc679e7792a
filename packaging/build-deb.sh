#!/usr/bin/env bash
# make deb: build the .deb with dpkg-buildpackage from a copy of the tree (so the build writes
# nothing outside target/), lint it, check what it installs and how, and put it in target/packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/version.sh
. packaging/arch.sh
# The shipped binary is built by cargo-zigbuild with zig (debian/rules, rpm/calico-bpf-guard.spec).
if ! command -v cargo-zigbuild >/dev/null ||
  ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
  echo "make deb: cargo-zigbuild or zig is missing (scripts/install-deps.sh package)" >&2
  exit 1
fi
# arm64 on x86_64: the same script, run again inside the cross chroot.
if [ -n "$cross" ] && [ -z "$in_chroot" ]; then
  exec scripts/arm64-chroot.sh run packaging/build-deb.sh
fi

work=$PWD/target/deb
[ -z "$cross" ] || work=$PWD/target/deb-$deb_arch
out=$PWD/target/packages
packaging/copy-tree.sh "$work/src"
rm -f "$work"/calico-bpf-guard*_*
# An override of a tag this lintian no longer has is an error (alien-tag): Debian 13's lintian,
# which checks the arm64 packages, dropped the init.d one (systemd-only packages are fine now).
overrides=$work/src/debian/calico-bpf-guard.lintian-overrides
tags=$(sed -n 's/^calico-bpf-guard: \([a-z0-9.-]*\) .*/\1/p' "$overrides")
for tag in $tags; do
  lintian-explain-tags "$tag" >/dev/null 2>&1 ||
    sed -i "/^calico-bpf-guard: $tag /d" "$overrides"
done
mkdir -p "$out"

# The cargo tree lives outside the copy, so a second `make deb` only rebuilds what changed.
# A cross build: nocheck, as for any cross build (the tests need the target's kernel; `make
# kernel-matrix` runs them on arm64 kernels).
if [ -n "$cross" ]; then
  (cd "$work/src" && CARGO_TARGET_DIR="$work/cargo" DEB_BUILD_OPTIONS=nocheck \
    dpkg-buildpackage -b --no-sign --host-arch "$deb_arch" -Pcross,nocheck)
else
  (cd "$work/src" && CARGO_TARGET_DIR="$work/cargo" dpkg-buildpackage -b --no-sign)
fi

deb=$(ls "$work"/calico-bpf-guard_"$VERSION"_"$deb_arch".deb)
# (Ubuntu's debhelper names it .ddeb.)
dbgsym=$(ls "$work"/calico-bpf-guard-dbgsym_"$VERSION"_"$deb_arch".*deb)
changes=$(ls "$work"/calico-bpf-guard_"$VERSION"_"$deb_arch".changes)
echo "== unit"
packaging/check-unit.sh "$work/cargo/$cpu-unknown-linux-gnu/release-debuginfo/calico-bpf-guard"
# The .changes names both packages, so lintian checks them together, as the archive would (the
# -dbgsym package's /usr/share/doc link points into the guard's package).
echo "== lintian $changes"
# --fail-on error: warnings are printed for a human, errors fail the build.
lintian --fail-on error --display-info --pedantic --tag-display-limit 0 "$changes"

echo "== contents"
packaging/check-deb.sh "$deb"
echo "== debug symbols $(basename "$dbgsym")"
unpacked=$work/unpacked
rm -rf "$unpacked" && mkdir -p "$unpacked"
dpkg-deb -x "$deb" "$unpacked/deb"
dpkg-deb -x "$dbgsym" "$unpacked/dbgsym"
packaging/check-debug.sh "$unpacked/deb/usr/sbin/calico-bpf-guard" "$unpacked/dbgsym"
cp "$deb" "$dbgsym" "$out/"
echo "wrote $out/$(basename "$deb") and $out/$(basename "$dbgsym")"
