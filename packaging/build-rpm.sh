#!/usr/bin/env bash
# make rpm: build the .rpm with rpmbuild from a source tarball of the tree, lint it, check what it
# installs and how, and put it in target/packages/.
set -euo pipefail
cd "$(dirname "$0")/.."
. packaging/version.sh
. packaging/arch.sh
# The shipped binary is built by cargo-zigbuild with zig (debian/rules, rpm/calico-bpf-guard.spec).
if ! command -v cargo-zigbuild >/dev/null ||
  ! { command -v zig >/dev/null || python3 -m ziglang version >/dev/null 2>&1; }; then
  echo "make rpm: cargo-zigbuild or zig is missing (scripts/install-deps.sh package)" >&2
  exit 1
fi
# aarch64 on x86_64: the same script, run again inside the cross chroot.
if [ -n "$cross" ] && [ -z "$in_chroot" ]; then
  exec scripts/arm64-chroot.sh run packaging/build-rpm.sh
fi

work=$PWD/target/rpm
[ -z "$cross" ] || work=$PWD/target/rpm-$cpu
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
# A cross build names the target CPU and strips with that CPU's binutils (rpm's brp-strip runs
# %__strip on every binary before find-debuginfo).
cross_args=()
[ -z "$cross" ] || cross_args=(--target "$cpu" --define "__strip $cpu-linux-gnu-strip"
  --define "__objdump $cpu-linux-gnu-objdump")
rpmbuild -bb --nodeps "${cross_args[@]}" \
  --define "_topdir $top" \
  --define "__brp_compress /bin/bash /usr/lib/rpm/brp-compress %{_prefix}" \
  --define "cargo_target_dir $work/cargo" \
  rpm/calico-bpf-guard.spec

rpm=$(ls "$top"/RPMS/"$cpu"/calico-bpf-guard-"$VERSION"-*."$cpu".rpm)
debuginfo=$(ls "$top"/RPMS/"$cpu"/calico-bpf-guard-debuginfo-"$VERSION"-*."$cpu".rpm)
echo "== rpmlint $rpm $debuginfo"
if command -v rpmlint >/dev/null; then
  # Settings and exceptions, each with its reason: rpm/rpmlint.toml, rpm/rpmlintrc.
  # Two of the exceptions work around Debian 12's rpmlint 2.4; Debian 13's 2.7 (the arm64 build)
  # no longer reports those, and would fail on the exceptions left unused.
  unused=()
  [ "$(rpmlint --version 2>/dev/null | sed -n 's/^\([0-9]*\.[0-9]*\).*/\1/p')" = 2.4 ] ||
    unused=(--ignore-unused-rpmlintrc)
  rpmlint "${unused[@]}" -c rpm/rpmlint.toml -r rpm/rpmlintrc rpm/calico-bpf-guard.spec "$rpm" "$debuginfo"
else
  echo "rpmlint not installed: skipped (scripts/install-deps.sh package installs it)"
fi

echo "== contents"
packaging/check-rpm.sh "$rpm"
echo "== debug symbols $(basename "$debuginfo")"
unpacked=$work/unpacked
rm -rf "$unpacked"
mkdir -p "$unpacked/rpm" "$unpacked/debuginfo"
# Through a file: cpio stops reading at its trailer, and rpm2cpio writing the padding after it
# into a closed pipe would fail the build (SIGPIPE) now and then.
for p in rpm debuginfo; do
  rpm2cpio "${!p}" >"$unpacked/$p.cpio"
  (cd "$unpacked/$p" && cpio -idm --quiet <"../$p.cpio")
done
packaging/check-debug.sh "$unpacked/rpm/usr/sbin/calico-bpf-guard" "$unpacked/debuginfo"
cp "$rpm" "$debuginfo" "$out/"
echo "wrote $out/$(basename "$rpm") and $out/$(basename "$debuginfo")"
