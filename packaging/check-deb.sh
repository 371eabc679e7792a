#!/usr/bin/env bash
# What the .deb installs and what its maintainer scripts do: the files both packages promise,
# the configuration as a conffile, and a unit that is enabled but never started, stopped or
# restarted by dpkg; and that it installs wherever glibc is 2.17 or later: a binary that needs
# nothing newer and no shared library but the C runtime, and a Depends: that says so.
# Usage: packaging/check-deb.sh DEB
set -euo pipefail
deb=${1:?usage: $0 DEB}
root=$(cd "$(dirname "$0")/.." && pwd)
ctl=$(mktemp -d)
trap 'rm -rf "$ctl"' EXIT
dpkg-deb -e "$deb" "$ctl/DEBIAN"
dpkg-deb -x "$deb" "$ctl/root"

fail=0
bad() { echo "not ok: $*" >&2; fail=1; }

# systemd's directories as the build system's systemd.pc names them: /lib/systemd (Debian 12) or
# /usr/lib/systemd (Debian 13, which builds the arm64 packages); merged /usr makes them one.
sd=lib/systemd
[ -d "$ctl/root/$sd" ] || sd=usr/lib/systemd
for f in usr/sbin/calico-bpf-guard \
         $sd/system/calico-bpf-guard.service \
         $sd/system-preset/50-calico-bpf-guard.preset \
         etc/calico-bpf-guard/config.toml \
         usr/share/man/man8/calico-bpf-guard.8.gz \
         usr/share/doc/calico-bpf-guard/examples/fail-closed.conf \
         usr/share/doc/calico-bpf-guard/kubernetes.md.gz; do
  [ -f "$ctl/root/$f" ] || bad "missing /$f"
done
[ -x "$ctl/root/usr/sbin/calico-bpf-guard" ] || bad "/usr/sbin/calico-bpf-guard is not executable"
cmp -s "$ctl/root/$sd/system/calico-bpf-guard.service" "$root/systemd/calico-bpf-guard.service" ||
  bad "the packaged unit differs from systemd/calico-bpf-guard.service"
grep -qx /etc/calico-bpf-guard/config.toml "$ctl/DEBIAN/conffiles" || bad "config.toml is not a conffile"
grep -q "deb-systemd-helper enable 'calico-bpf-guard.service'" "$ctl/DEBIAN/postinst" ||
  bad "postinst does not enable the unit"
# deb-systemd-invoke is how maintainer scripts start, stop and restart units.
scripts=$(cat "$ctl"/DEBIAN/{preinst,postinst,prerm,postrm} 2>/dev/null || true)
if grep -q deb-systemd-invoke <<<"$scripts"; then
  bad "a maintainer script starts, stops or restarts the unit"
fi
# The binary: GLIBC_2.17 at most, only the C runtime. Then what dpkg-shlibdeps made of it: libc6
# alone, at a version no newer than 2.17.
"$root/packaging/check-binary.sh" "$ctl/root/usr/sbin/calico-bpf-guard" || bad "the binary is not portable"
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
libc_min=$(sed -n 's/.*\blibc6 (>= \([0-9.]*\)).*/\1/p' <<<"$depends")
[ -n "$libc_min" ] || bad "Depends: names no libc6 (>= version): $depends"
if [ -n "$libc_min" ] && [ "$(printf '%s\n2.17\n' "$libc_min" | sort -V | tail -n1)" != 2.17 ]; then
  bad "Depends: libc6 (>= $libc_min), newer than 2.17"
fi
others=$(tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/ .*//' | grep -vx 'libc6' || true)
[ -z "$others" ] || bad "Depends: more than libc6: $others"
# The man page renders without groff warnings.
out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$ctl/root/usr/share/man/man8/calico-bpf-guard.8.gz" 2>&1 >/dev/null) ||
  bad "man failed"
[ -z "$out" ] || bad "man page warnings: $out"

[ "$fail" = 0 ] && echo "ok: files, conffile, enabled and never started by dpkg, man page, Depends: libc6 (>= $libc_min) alone"
exit "$fail"
