#!/usr/bin/env bash
# What the .rpm installs and what its scriptlets do: the files both packages promise, the
# configuration as %config(noreplace), and a unit that is preset (enabled) on first install but
# never started or restarted.
# Usage: packaging/check-rpm.sh RPM
set -euo pipefail
rpm=${1:?usage: $0 RPM}
root=$(cd "$(dirname "$0")/.." && pwd)
fail=0
bad() { echo "not ok: $*" >&2; fail=1; }

files=$(rpm -qlp "$rpm")
for f in /usr/sbin/calico-bpf-guard \
         /usr/lib/systemd/system/calico-bpf-guard.service \
         /usr/lib/systemd/system-preset/50-calico-bpf-guard.preset \
         /etc/calico-bpf-guard/config.toml \
         /usr/share/doc/calico-bpf-guard/examples/fail-closed.conf \
         /usr/share/doc/calico-bpf-guard/kubernetes.md; do
  grep -qx "$f" <<<"$files" || bad "missing $f"
done
grep -qx '/usr/share/man/man8/calico-bpf-guard.8.gz' <<<"$files" || bad "missing the gzipped man page"
rpm -qp --configfiles "$rpm" | grep -qx /etc/calico-bpf-guard/config.toml || bad "config.toml is not %config"
# rpm -qp cannot tell %config from %config(noreplace); the spec line can.
grep -q '^%config(noreplace) %{_sysconfdir}/calico-bpf-guard/config.toml$' "$root/rpm/calico-bpf-guard.spec" ||
  bad "config.toml is not %config(noreplace)"

scripts=$(rpm -qp --scripts "$rpm")
post=$(sed -n '/^postinstall scriptlet/,/^[a-z]* *scriptlet/p' <<<"$scripts")
grep -q 'systemctl --no-reload preset calico-bpf-guard.service' <<<"$post" || bad "%post does not preset the unit"
if grep -Eq 'systemctl[^|;]* (start|restart|try-restart|reload-or-restart)( |$)' <<<"$scripts"; then
  bad "a scriptlet starts or restarts the unit"
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && rpm2cpio "$rpm" | cpio -id --quiet ./usr/lib/systemd/system/calico-bpf-guard.service)
cmp -s "$tmp/usr/lib/systemd/system/calico-bpf-guard.service" "$root/systemd/calico-bpf-guard.service" ||
  bad "the packaged unit differs from systemd/calico-bpf-guard.service"

[ "$fail" = 0 ] && echo "ok: files, %config, preset on install and never started, unit as in the tree"
exit "$fail"
