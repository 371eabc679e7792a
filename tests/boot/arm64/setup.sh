#!/bin/bash
# The arm64 boot test's node setup, run by stage 1 (tests/boot/arm64/init) chrooted in the
# guest's root before systemd starts: what tests/boot/run.sh does on the host for an x86 node,
# which an x86 host cannot do for arm64 (dpkg runs the package's arm64 maintainer scripts).
# Installs the .deb the way a node image installs it (no systemd running, so the postinst
# enables the unit and starts nothing), checks the links it made and the -dbgsym package, and
# installs the test kit and the test units. Every check prints "ok - ..." or "not ok - ..." to
# /var/lib/boot-test/setup-results, which run-arm64.sh reads back and counts with check.sh's.
# Usage: setup.sh INPUTS (the directory run-arm64.sh filled: the packages, the test kit, and
# tests/boot's scripts and units)
set -uo pipefail
in=${1:?usage: $0 INPUTS}
results=/var/lib/boot-test/setup-results
mkdir -p "${results%/*}"
: >"$results"
pass=0
fail=0
quiet() { "$@" >/dev/null; }
hcheck() {
  local what=$1
  shift
  if "$@"; then pass=$((pass + 1)); echo "ok - $what"; else fail=$((fail + 1)); echo "not ok - $what"; fi >>"$results"
}

echo "# packages (arm64, installed in the guest before systemd starts)" >>"$results"
install -D -m 0644 "$in/calico-bpf-guard.deb" /var/cache/boot-test/calico-bpf-guard.deb
hcheck "deb: installs into the rootfs" quiet dpkg -i /var/cache/boot-test/calico-bpf-guard.deb
mapfile -t wanted_by < <(grep -v '^#' "$in/wanted-by")
for wants in "${wanted_by[@]}"; do
  hcheck "deb: enabled the unit ($wants.wants)" test -L "/etc/systemd/system/$wants.wants/calico-bpf-guard.service"
done
install -D -m 0644 "$in/calico-bpf-guard-dbgsym.deb" /var/cache/boot-test/calico-bpf-guard-dbgsym.deb
hcheck "deb: the -dbgsym package installs beside it" quiet dpkg -i /var/cache/boot-test/calico-bpf-guard-dbgsym.deb
id=$(dpkg -L calico-bpf-guard-dbgsym | sed -n 's|^/usr/lib/debug/.build-id/\(..\)/\(.*\)\.debug$|\1\2|p')
hcheck "deb: it holds a debug file named by a build-id" [ -n "$id" ]
hcheck "deb: the -dbgsym package removes" quiet dpkg --purge calico-bpf-guard-dbgsym
hcheck "the packaged binary runs here: mode set iptables" \
  quiet calico-bpf-guard mode set iptables --source "boot test"

install -D -m 0755 "$in/calico-bpf-testkit" /usr/local/bin/calico-bpf-testkit
for f in check.sh bpf-holder.pl kubelet-standin.sh; do
  install -D -m 0755 "$in/$f" "/usr/local/lib/boot-test/$f"
done
install -D -m 0644 "$in/distribution-standin.service" /usr/local/lib/boot-test/distribution-standin.service
install -m 0644 "$in"/units/*.service /etc/systemd/system/
hcheck "the test units are enabled" \
  systemctl --quiet enable calico-bpf-testkit-plant.service kubelet.service boot-test-check.service
# check.sh makes /sys read-write only where it is not the host's: under nspawn it compares
# network namespaces with the host's, recorded here. This guest's kernel is its own, so no
# namespace of the guest is the host's.
echo "none: a virtual machine with a kernel of its own" >/var/lib/boot-test/host-netns
# check.sh ends a container with `systemctl exit N`, which systemd refuses outside containers
# and user managers: this machine powers off once the checks ended, whatever their result (it
# is in the results file, read from the disk), after writing down the journal of the units a
# failure is read from (run-arm64.sh prints it then).
mkdir -p /etc/systemd/system/boot-test-check.service.d
cat >/etc/systemd/system/boot-test-check.service.d/50-arm64-poweroff.conf <<'EOT'
[Service]
ExecStopPost=/bin/sh -c 'for u in calico-bpf-testkit-plant:20 calico-bpf-guard:60 kubelet:10; do \
  echo "--- journal of $${u%%:*}.service (last $${u#*:} lines)"; \
  journalctl -b --no-pager -o short-monotonic -u $${u%%:*}.service | tail -n $${u#*:}; \
  done >/var/lib/boot-test/journal 2>&1'
ExecStopPost=/bin/systemctl --no-block poweroff
EOT
echo "$pass passed, $fail failed" >>"$results"
[ "$fail" = 0 ]
