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
echo "== unit"
packaging/check-unit.sh "$(ls "$work"/cargo/*-unknown-linux-gnu/release/calico-bpf-guard)"
echo "== lintian $deb"
# --fail-on error: warnings are printed for a human, errors fail the build.
lintian --fail-on error --display-info --tag-display-limit 0 "$deb"

echo "== contents"
packaging/check-deb.sh "$deb"
cp "$deb" "$out/"
echo "wrote $out/$(basename "$deb")"
