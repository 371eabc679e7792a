#!/usr/bin/env bash
# make rpm: build the .rpm with rpmbuild from a source tarball of the tree, lint it, check what it
# installs and how, and put it in target/packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/version.sh
# The shipped binary is built by cargo-zigbuild with zig (debian/rules, rpm/calico-bpf-guard.spec).
if ! command -v cargo-zigbuild >/dev/null ||
  ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
  echo "make rpm: cargo-zigbuild or zig is missing (scripts/install-deps.sh package)" >&2
  exit 1
fi

work=$PWD/target/rpm
out=$PWD/target/packages
top=$work/top
rm -rf "$top"
mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS} "$out"

packaging/copy-tree.sh "$work/stage/calico-bpf-guard-$VERSION"
tar -czf "$top/SOURCES/calico-bpf-guard-$VERSION.tar.gz" -C "$work/stage" "calico-bpf-guard-$VERSION"

# --nodeps: on Debian the rpm database knows none of the installed build tools.
# cargo_target_dir: the cargo tree lives outside the unpacked sources, so a second `make rpm`
# only rebuilds what changed.
# __brp_compress: Debian's brp-compress needs bash (`read -d`) but its #! says /bin/sh, which is
# dash there; without this the man page ships uncompressed. Harmless where /bin/sh is bash.
rpmbuild -bb --nodeps \
  --define "_topdir $top" \
  --define "__brp_compress /bin/bash /usr/lib/rpm/brp-compress %{_prefix}" \
  --define "cargo_target_dir $work/cargo" \
  rpm/calico-bpf-guard.spec

rpm=$(ls "$top"/RPMS/*/calico-bpf-guard-"$VERSION"-*.rpm)
debuginfo=$(ls "$top"/RPMS/*/calico-bpf-guard-debuginfo-"$VERSION"-*.rpm)
echo "== rpmlint $rpm $debuginfo"
if command -v rpmlint >/dev/null; then
  # Settings and exceptions, each with its reason: rpm/rpmlint.toml, rpm/rpmlintrc.
  rpmlint -c rpm/rpmlint.toml -r rpm/rpmlintrc rpm/calico-bpf-guard.spec "$rpm" "$debuginfo"
else
  echo "rpmlint not installed: skipped (scripts/install-deps.sh package installs it)"
fi

echo "== contents"
packaging/check-rpm.sh "$rpm"
echo "== debug symbols $(basename "$debuginfo")"
unpacked=$work/unpacked
rm -rf "$unpacked"
mkdir -p "$unpacked/rpm" "$unpacked/debuginfo"
rpm2cpio "$rpm" | (cd "$unpacked/rpm" && cpio -idm --quiet)
rpm2cpio "$debuginfo" | (cd "$unpacked/debuginfo" && cpio -idm --quiet)
packaging/check-debug.sh "$unpacked/rpm/usr/sbin/calico-bpf-guard" "$unpacked/debuginfo"
cp "$rpm" "$debuginfo" "$out/"
echo "wrote $out/$(basename "$rpm") and $out/$(basename "$debuginfo")"
