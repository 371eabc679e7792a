#!/usr/bin/env bash
# make deb: build the .deb with dpkg-buildpackage from a copy of the tree (so the build writes
# nothing outside target/), lint it, check what it installs and how, and put it in target/packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/version.sh
# The shipped binary is built by cargo-zigbuild with zig (debian/rules, rpm/calico-bpf-guard.spec).
if ! command -v cargo-zigbuild >/dev/null ||
  ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
  echo "make deb: cargo-zigbuild or zig is missing (scripts/install-deps.sh package)" >&2
  exit 1
fi

work=$PWD/target/deb
out=$PWD/target/packages
packaging/copy-tree.sh "$work/src"
rm -f "$work"/calico-bpf-guard*_*
mkdir -p "$out"

# The cargo tree lives outside the copy, so a second `make deb` only rebuilds what changed.
(cd "$work/src" && CARGO_TARGET_DIR="$work/cargo" dpkg-buildpackage -b --no-sign)

deb=$(ls "$work"/calico-bpf-guard_"$VERSION"_*.deb)
# (Ubuntu's debhelper names it .ddeb.)
dbgsym=$(ls "$work"/calico-bpf-guard-dbgsym_"$VERSION"_*.*deb)
changes=$(ls "$work"/calico-bpf-guard_"$VERSION"_*.changes)
echo "== unit"
packaging/check-unit.sh "$(ls "$work"/cargo/*-unknown-linux-gnu/release-debuginfo/calico-bpf-guard)"
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
