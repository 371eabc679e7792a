#!/usr/bin/env bash
# What the .rpm installs and what its scriptlets do: the files both packages promise, the
# configuration as %config(noreplace), and a unit that is preset (enabled) on first install but
# never started or restarted; and that it installs wherever glibc is 2.17 or later: a binary that
# needs nothing newer and no shared library but the C runtime, requirements that say so, and a
# payload that Amazon Linux 2's rpm 4.11 can read.
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
grep -qx /etc/calico-bpf-guard/config.toml <<<"$(rpm -qp --configfiles "$rpm")" || bad "config.toml is not %config"
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
# Through a file, not a pipe: cpio stops reading at its trailer, and rpm2cpio, still writing the
# padding after it, dies of SIGPIPE now and then, which pipefail turns into a failed build (CI,
# 2026-12-03: make rpm ARCH=arm64, Error 141). Likewise no `| grep -q` on a command's output.
rpm2cpio "$rpm" >"$tmp/payload.cpio"
(cd "$tmp" && cpio -id --quiet ./usr/lib/systemd/system/calico-bpf-guard.service ./usr/sbin/calico-bpf-guard <payload.cpio)
cmp -s "$tmp/usr/lib/systemd/system/calico-bpf-guard.service" "$root/systemd/calico-bpf-guard.service" ||
  bad "the packaged unit differs from systemd/calico-bpf-guard.service"

# The binary: GLIBC_2.17 at most, only the C runtime. Then what rpm's dependency generator made of
# it: shared-library requirements on the C runtime only, no GLIBC_ version above 2.17.
"$root/packaging/check-binary.sh" "$tmp/usr/sbin/calico-bpf-guard" || bad "the binary is not portable"
requires=$(rpm -qp --requires "$rpm")
while read -r req; do
  case $req in
    libc.so.6* | libpthread.so.0* | libdl.so.2* | ld-linux*.so.*) ;;
    *.so*) bad "requires a shared library other than the C runtime: $req" ;;
  esac
  if [[ $req =~ \(GLIBC_([0-9.]+)\) ]] &&
    [ "$(printf '%s\n2.17\n' "${BASH_REMATCH[1]}" | sort -V | tail -n1)" != 2.17 ]; then
    bad "requires $req, newer than GLIBC_2.17"
  fi
done <<<"$requires"
glibc_max=$(grep -o '(GLIBC_[0-9.]*)' <<<"$requires" | tr -d '()' | sort -V | tail -n1)
[ -n "$glibc_max" ] || bad "no libc.so.6(GLIBC_...) requirement: did rpm's dependency generator run?"
# rpm 4.11 (Amazon Linux 2) reads gzip, bzip2 and xz payloads, not zstd.
if grep -q '^rpmlib(PayloadIsZstd)' <<<"$requires"; then
  bad "zstd payload: rpm before 4.14 (Amazon Linux 2) cannot read it"
fi

[ "$fail" = 0 ] &&
  echo "ok: files, %config, preset on install and never started, unit as in the tree, requires $glibc_max at most"
exit "$fail"
