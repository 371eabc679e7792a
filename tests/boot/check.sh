#!/bin/bash
# The boot test's checks, run by boot-test-check.service inside the booted container once kubelet
# has started. Every check prints "ok - ..." or "not ok - ..." to the console and to
# /var/lib/boot-test/results, which run.sh reads from the host; the script ends the container
# with `systemctl exit 0` when all passed and `systemctl exit 1` otherwise.
set -uo pipefail

GUARD=calico-bpf-guard.service
BPFFS=/sys/fs/bpf
CGROUP=/sys/fs/cgroup
TESTKIT=/usr/local/bin/calico-bpf-testkit
MODE=/var/lib/calico-bpf-guard/mode.toml
DEB=/var/cache/boot-test/calico-bpf-guard.deb
FAIL_CLOSED=/etc/systemd/system/kubelet.service.d/50-calico-bpf-guard-fail-closed.conf
ARGS_DROPIN=/etc/systemd/system/calico-bpf-guard.service.d/50-boot-test-args.conf

results=/var/lib/boot-test/results
mkdir -p "${results%/*}"
: >"$results"
pass=0
fail=0

say() { echo "$*" | tee -a "$results"; }
ok() { pass=$((pass + 1)); say "ok - $*"; }
not_ok() { fail=$((fail + 1)); say "not ok - $*"; }
# check DESCRIPTION COMMAND...: one check; it passes when COMMAND succeeds.
check() {
  local what=$1
  shift
  if "$@"; then ok "$what"; else not_ok "$what"; fi
}

finish() {
  say "$pass passed, $fail failed"
  if [ "$fail" -eq 0 ] && [ "$pass" -gt 0 ]; then systemctl exit 0; else systemctl exit 1; fi
}
trap finish EXIT

prop() { systemctl show -P "$2" "$1"; }
fails() { ! "$@"; }
quiet() { "$@" >/dev/null; }
# journal_has UNIT REGEX: the unit's journal of this boot has a matching line.
journal_has() { journalctl -b -u "$1" -o cat | grep -Eq "$2"; }

# The unit's last run ended with exit status 0 and the unit is active (exited).
guard_succeeded() {
  [ "$(prop $GUARD Result)" = success ] && [ "$(prop $GUARD ExecMainStatus)" = 0 ] &&
    [ "$(prop $GUARD ActiveState)" = active ]
}

# The guard's last run exited before kubelet's main process started, by systemd's monotonic
# clock.
guard_before_kubelet() {
  local exited started
  exited=$(prop $GUARD ExecMainExitTimestampMonotonic)
  started=$(prop kubelet.service ExecMainStartTimestampMonotonic)
  say "    guard exited at ${exited} us, kubelet started at ${started} us (monotonic)"
  [ "$exited" -gt 0 ] && [ "$started" -gt "$exited" ]
}

# Directives of the unit that a systemd the boot test boots may predate, with the version that
# added each. Such a systemd warns "Unknown key name" and ignores the directive; the guard runs
# with the rest of its sandbox. Debian 11's systemd 247 lacks PrivateIPC= (248).
NEWER_DIRECTIVES="PrivateIPC:248"
# systemd-analyze verify prints nothing, or only "Unknown key name" for a directive above that is
# newer than the running systemd.
verify_clean() {
  local out line key added systemd_version rc=0
  systemd_version=$(systemctl --version | awk 'NR == 1 { print $2 }')
  out=$(systemd-analyze verify --man=no $GUARD 2>&1)
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    if [[ $line =~ Unknown\ key\ name\ \'([A-Za-z]+)\' ]]; then
      key=${BASH_REMATCH[1]}
      added=$(tr ' ' '\n' <<<"$NEWER_DIRECTIVES" | sed -n "s/^$key://p")
      if [ -n "$added" ] && [ "$systemd_version" -lt "$added" ]; then
        say "    systemd $systemd_version ignores $key= (added in $added)"
        continue
      fi
    fi
    say "    $line"
    rc=1
  done <<<"$out"
  return $rc
}

verify() {
  local out rc
  out=$("$TESTKIT" verify --bpffs $BPFFS --cgroup $CGROUP --expect "$1" 2>&1)
  rc=$?
  [ $rc -eq 0 ] || say "$(sed 's/^/    /' <<<"$out")"
  return $rc
}

# Plant the same stale state again. Other tools' objects stay through a sweep by design, so
# clear them first: the test kit plants the whole set, foreign objects included.
replant() {
  ip link del cali-boot0 2>/dev/null
  find $BPFFS -mindepth 1 -maxdepth 1 ! -name maps.debug ! -name progs.debug -exec rm -rf {} +
  quiet "$TESTKIT" plant --bpffs $BPFFS --cgroup $CGROUP && verify planted
}

restart() { systemctl restart "$@" 2>&1 | sed 's/^/    /'; return "${PIPESTATUS[0]}"; }
# run_log_has REGEX: the guard's last run logged a matching line.
run_log_has() { journalctl -o cat _SYSTEMD_INVOCATION_ID="$(prop $GUARD InvocationID)" | grep -Eq "$1"; }
start() { systemctl start "$@" 2>&1 | sed 's/^/    /'; return "${PIPESTATUS[0]}"; }

# The units that run kubelet inside them, as the guard's unit names them; check.sh installs a
# stand-in under one name at a time.
DISTRIBUTION_UNITS="k3s.service k3s-agent.service rke2-server.service rke2-agent.service
  snap.microk8s.daemon-kubelite.service"
STANDIN=/usr/local/lib/boot-test/distribution-standin.service
# every_start_guarded UNIT STARTS: UNIT started STARTS times since its record was cleared, and
# each start saw a guard run of its own, finished (active): a new invocation id every time.
every_start_guarded() {
  local record=/run/boot-test/${1%.service}.starts starts fresh finished i
  # The stand-in writes its line just after systemd started it, so after `systemctl restart`
  # returned: wait for it.
  for i in $(seq 50); do [ "$(wc -l <"$record")" -ge "$2" ] && break; sleep 0.2; done
  starts=$(wc -l <"$record")
  fresh=$(cut -d' ' -f1 "$record" | sort -u | wc -l)
  finished=$(grep -c ' active$' "$record")
  say "    $1: $starts starts, $fresh guard runs of their own, $finished finished before the start"
  [ "$starts" = "$2" ] && [ "$fresh" = "$2" ] && [ "$finished" = "$2" ]
}
# wait_running UNIT: UNIT's crash loop is over (its countdown at 0) and it has run for 3 s since.
wait_running() {
  local i
  for i in $(seq 150); do
    if [ "$(cat "/run/boot-test/${1%.service}.crashes" 2>/dev/null)" = 0 ] &&
      [ "$(prop "$1" SubState)" = running ]; then
      sleep 3
      [ "$(prop "$1" SubState)" = running ] && return 0
    fi
    sleep 0.4
  done
  say "    $1: $(prop "$1" ActiveState)/$(prop "$1" SubState) ($(prop "$1" Result)); guard: $(prop $GUARD ActiveState) ($(prop $GUARD Result))"
  return 1
}
# crash UNIT N: its next N starts crash; its record of starts begins afresh.
crash() {
  mkdir -p /run/boot-test && echo "$2" >"/run/boot-test/${1%.service}.crashes" &&
    : >"/run/boot-test/${1%.service}.starts"
}
absent() { [ "$(prop "$1" LoadState)" = not-found ] && [ "$(prop "$1" ActiveState)" = inactive ]; }

say "# at boot"
check "the plant unit ran" [ "$(prop calico-bpf-testkit-plant.service Result)" = success ]
check "the guard started after the plant finished" [ \
  "$(prop $GUARD ExecMainStartTimestampMonotonic)" -gt \
  "$(prop calico-bpf-testkit-plant.service ExecMainExitTimestampMonotonic)" ]
check "the guard ran at boot and succeeded" guard_succeeded
check "the guard finished before kubelet started" guard_before_kubelet
check "Calico state is gone, foreign state stays" verify swept
check "the guard sent its summary as STATUS=" grep -Eq ': [1-9][0-9]* removed, ' <<<"$(prop $GUARD StatusText)"
check "the guard logged removed objects" journal_has $GUARD '^removed: '
check "check exits 0 on the swept node" calico-bpf-guard check
check "the packaged unit is enabled" [ "$(systemctl is-enabled $GUARD)" = enabled ]
# A oneshot's start timeout is infinite unless set, and kubelet waits for this unit.
check "the unit's start timeout is finite (5 min)" [ "$(prop $GUARD TimeoutStartUSec)" = 5min ]
check "systemd-analyze verify prints nothing for the installed unit (but directives this systemd predates)" \
  verify_clean
say "    guard run time at boot: $(($(prop $GUARD ExecMainExitTimestampMonotonic) - \
  $(prop $GUARD ExecMainStartTimestampMonotonic))) us"
# The interlock's window: how long before the sweep's last removal its last look for holders
# began (README, Safety).
say "    $(journalctl -b -u $GUARD -o cat | grep -m1 'interlock: the last look for holders')"

say "# kubelet restart"
check "re-planted" replant
before=$(prop $GUARD InvocationID)
check "systemctl restart kubelet succeeds" restart kubelet.service
check "the guard ran again" [ "$(prop $GUARD InvocationID)" != "$before" ]
check "the guard succeeded" guard_succeeded
check "the guard finished before kubelet started again" guard_before_kubelet
check "Calico state is gone again, foreign state stays" verify swept

say "# live-dataplane interlock under the unit's sandbox"
check "re-planted" replant
pin=$(find $BPFFS/ctlb -type f | head -n1)
holder="bpf-holder@$(systemd-escape --path "$pin").service"
check "a full-capability process holds $pin open" systemctl start "$holder"
check "the guard refuses: restart fails" fails restart $GUARD
check "the guard exited 1" [ "$(prop $GUARD ExecMainStatus)" = 1 ]
# The pid is the kernel's (initial pid namespace), not this container's: match the name.
check "the guard named the holder" \
  journal_has $GUARD "live eBPF dataplane: pid [0-9]+ \(bpf-holder\.pl\) holds"
check "nothing was removed" verify planted
systemctl stop "$holder"
check "with the holder gone the guard sweeps" restart $GUARD
check "Calico state is gone, foreign state stays" verify swept

say "# options through CALICO_BPF_GUARD_ARGS"
check "re-planted" replant
mkdir -p "${ARGS_DROPIN%/*}"
printf '[Service]\nEnvironment=CALICO_BPF_GUARD_ARGS=--dry-run\n' >"$ARGS_DROPIN"
systemctl daemon-reload
check "a --dry-run drop-in: the guard succeeds" restart $GUARD
check "a --dry-run drop-in: nothing was removed" verify planted
rm -f "$ARGS_DROPIN"
systemctl daemon-reload
check "without the drop-in the guard sweeps" restart $GUARD
check "Calico state is gone" verify swept

say "# metrics under the unit, with the README's recipe"
TEXTFILE=/var/lib/node_exporter/textfile
PROM=$TEXTFILE/calico_bpf_guard.prom
METRICS_CONFIG=/etc/calico-bpf-guard/boot-test-metrics.toml
elsewhere=/etc/boot-test-elsewhere
# A file that only root can read, where a symlink in place of the textfile directory would
# send the guard's 0644 write.
mkdir -p "$elsewhere" && printf 'root only\n' >"$elsewhere/calico_bpf_guard.prom" &&
  chmod 0600 "$elsewhere/calico_bpf_guard.prom"
install -d -o root -g root -m 0755 "$TEXTFILE"
printf 'metrics_file = "%s"\n' "$PROM" >"$METRICS_CONFIG"
chmod 0644 "$METRICS_CONFIG"
printf '[Service]\nReadWritePaths=%s\nEnvironment="CALICO_BPF_GUARD_ARGS=--config %s"\n' \
  "$TEXTFILE" "$METRICS_CONFIG" >"$ARGS_DROPIN"
systemctl daemon-reload
check "re-planted" replant
check "the guard sweeps with metrics_file set" restart $GUARD
check "it wrote its metrics, root-owned, 0644" [ "$(stat -c %U:%a "$PROM" 2>/dev/null)" = root:644 ]
check "node_exporter's user (any user) reads them: the sweep removed objects" \
  grep -q 'calico_bpf_guard_last_run_result{command="sweep",result="swept"} 1' \
  <<<"$(setpriv --reuid=65534 --regid=65534 --clear-groups cat "$PROM")"
# The textfile directory's owner swaps it for a symlink to a directory of root's.
rm -rf "$TEXTFILE"
ln -s "$elsewhere" "$TEXTFILE"
check "with the directory swapped for a symlink, the guard still succeeds" restart $GUARD
check "it said it did not follow the symlink" run_log_has "cannot write metrics to .*not followed"
check "nothing was written behind the symlink" [ \
  "$(stat -c %a "$elsewhere/calico_bpf_guard.prom"):$(cat "$elsewhere/calico_bpf_guard.prom")" = "600:root only" ]
rm -rf "$TEXTFILE" "$elsewhere" "$METRICS_CONFIG" "$ARGS_DROPIN"
systemctl daemon-reload

say "# fail-open by default, fail-closed with the shipped drop-in"
printf 'dataplane = "ebpf-maybe"\n' >"$MODE"
check "a broken mode file: systemctl restart kubelet still succeeds" restart kubelet.service
check "kubelet runs" [ "$(prop kubelet.service ActiveState)" = active ]
check "the guard failed with exit status 78" [ \
  "$(prop $GUARD Result)/$(prop $GUARD ExecMainStatus)" = exit-code/78 ]
install -D -m 0644 /usr/share/doc/calico-bpf-guard/examples/fail-closed.conf "$FAIL_CLOSED"
systemctl daemon-reload
check "fail-closed: systemctl restart kubelet fails" fails restart kubelet.service
check "fail-closed: kubelet is not running" [ "$(prop kubelet.service ActiveState)" != active ]
calico-bpf-guard mode set iptables --source "boot test" >/dev/null
check "fail-closed, mode file fixed: kubelet starts" restart kubelet.service
check "the guard succeeded" guard_succeeded
check "the guard finished before kubelet started" guard_before_kubelet
rm -f "$FAIL_CLOSED"
systemctl daemon-reload

say "# a crash-looping kubelet (RestartSec=1, no start limit, as kubeadm's unit) is guarded at every start"
CRASH_DROPIN=/etc/systemd/system/kubelet.service.d/60-boot-test-crash-loop.conf
CRASHES=8
mkdir -p "${CRASH_DROPIN%/*}"
printf '[Unit]\nStartLimitIntervalSec=0\n[Service]\nRestart=always\nRestartSec=1\n' >"$CRASH_DROPIN"
for how in fail-open fail-closed; do
  [ $how = fail-closed ] &&
    install -D -m 0644 /usr/share/doc/calico-bpf-guard/examples/fail-closed.conf "$FAIL_CLOSED"
  systemctl daemon-reload
  crash kubelet.service $CRASHES
  check "$how: systemctl restart kubelet, which then crashes $CRASHES times" restart kubelet.service
  check "$how: kubelet recovered and runs" wait_running kubelet.service
  check "$how: the guard ran before each of kubelet's $((CRASHES + 1)) starts" \
    every_start_guarded kubelet.service $((CRASHES + 1))
  check "$how: the guard succeeded (no start limit hit)" guard_succeeded
done
rm -f "$FAIL_CLOSED" "$CRASH_DROPIN"
systemctl daemon-reload

say "# k3s, RKE2 and MicroK8s: the units that run kubelet inside them"
for unit in $DISTRIBUTION_UNITS; do
  check "$unit is absent: not found, not started (the guard names it and pulls nothing in)" absent "$unit"
done
# A node runs one of them and no kubelet.service: stopping kubelet stops the guard (PartOf=).
systemctl stop kubelet.service
for unit in $DISTRIBUTION_UNITS; do
  install -m 0644 "$STANDIN" "/etc/systemd/system/$unit"
  systemctl daemon-reload
  check "$unit: re-planted" replant
  crash "$unit" 2
  check "$unit: systemctl start, then 2 crashes and restarts (Restart=on-failure)" start "$unit"
  check "$unit: it recovered and runs" wait_running "$unit"
  check "$unit: Calico state is gone, foreign state stays" verify swept
  check "$unit: systemctl restart succeeds" restart "$unit"
  check "$unit: the guard ran before each of its 4 starts" every_start_guarded "$unit" 4
  check "$unit: the guard succeeded" guard_succeeded
  others=0
  for other in $DISTRIBUTION_UNITS; do [ "$other" = "$unit" ] || absent "$other" || others=1; done
  check "$unit: the other distributions' units stay absent" [ $others = 0 ]
  check "$unit: kubelet.service was not started" [ "$(prop kubelet.service ActiveState)" = inactive ]
  systemctl stop "$unit"
  rm -f "/etc/systemd/system/$unit" /run/boot-test/"${unit%.service}".*
  systemctl daemon-reload
done
# Fail-closed takes the same drop-in, under the distribution's unit.
unit=rke2-server.service
install -m 0644 "$STANDIN" "/etc/systemd/system/$unit"
install -D -m 0644 /usr/share/doc/calico-bpf-guard/examples/fail-closed.conf \
  "/etc/systemd/system/$unit.d/50-calico-bpf-guard-fail-closed.conf"
systemctl daemon-reload
printf 'dataplane = "ebpf-maybe"\n' >"$MODE"
check "$unit fail-closed, broken mode file: systemctl start fails" fails start "$unit"
check "$unit fail-closed: it is not running" [ "$(prop "$unit" ActiveState)" != active ]
calico-bpf-guard mode set iptables --source "boot test" >/dev/null
check "$unit fail-closed, mode file fixed: it starts" start "$unit"
check "$unit fail-closed: the guard succeeded" guard_succeeded
systemctl stop "$unit"
rm -rf "/etc/systemd/system/$unit" "/etc/systemd/system/$unit.d"
systemctl daemon-reload
check "kubelet starts again, the guard first" start kubelet.service
check "the guard succeeded" guard_succeeded
check "the guard finished before kubelet started" guard_before_kubelet

say "# package upgrade and installation on a running node"
before=$(prop $GUARD InvocationID)
check "dpkg -i over the installed package (upgrade path) succeeds" quiet dpkg -i "$DEB"
check "the upgrade did not restart the guard" [ "$(prop $GUARD InvocationID)" = "$before" ]
check "purge succeeds" quiet dpkg --purge calico-bpf-guard
# wants_left: the .wants links (and directories) purge left, for multi-user.target, kubelet and
# the units that run kubelet inside them.
wants_left() {
  local u
  for u in multi-user.target kubelet.service $DISTRIBUTION_UNITS; do
    [ -L "/etc/systemd/system/$u.wants/calico-bpf-guard.service" ] && echo "$u.wants/calico-bpf-guard.service"
    [ "$u" != multi-user.target ] && [ -d "/etc/systemd/system/$u.wants" ] && echo "$u.wants/"
  done
}
left=$(wants_left | tr '\n' ' ')
check "purge removed every .wants link and directory it made${left:+ (left: $left)}" [ -z "$left" ]
check "install succeeds" quiet dpkg -i "$DEB"
check "the installation did not start the guard" [ "$(prop $GUARD InvocationID)" = "$before" ]
check "the installation enabled the unit" [ "$(systemctl is-enabled $GUARD)" = enabled ]
check "re-planted" replant
check "systemctl restart kubelet runs the freshly installed guard" restart kubelet.service
check "the guard ran" [ "$(prop $GUARD InvocationID)" != "$before" ]
check "the guard succeeded" guard_succeeded
check "the guard finished before kubelet started" guard_before_kubelet
check "Calico state is gone, foreign state stays" verify swept

say "# expedited grace periods for tcx detaches under the unit's sandbox"
RCU=/sys/kernel/rcu_expedited
RECORD=/run/calico-bpf-guard.rcu_expedited
TCX_DEVICES=8
tcx_pins_gone() { [ -z "$(find $BPFFS/tcx -type f 2>/dev/null)" ]; }
plant_tcx() {
  local i
  for i in $(seq 0 $((TCX_DEVICES - 1))); do ip link del "cali-tcx$i" 2>/dev/null; done
  quiet "$TESTKIT" plant-tcx --bpffs $BPFFS --count $TCX_DEVICES
}
# The switch is the host kernel's: the guard changes it only from 0, so a host that keeps it set
# would make these checks prove nothing.
rcu_before=$(cat $RCU)
check "$RCU reads 0 before the sweep" [ "$rcu_before" = 0 ]
# A node's /sys is read-write; nspawn mounts the container's read-only. With --private-network
# that sysfs is the container's own (its network namespace's superblock), so remounting it
# read-write changes no mount of the host's; run.sh writes the host's network namespace down so
# that this is never done to the host's sysfs. Its files still reach host-wide settings, as
# rcu_expedited must; only the guard writes there, and run.sh puts the switch back regardless.
host_sysfs() { [ "$(readlink /proc/self/ns/net)" = "$(cat /var/lib/boot-test/host-netns)" ]; }
make_sys_writable() { ! host_sysfs && mount -o remount,rw /sys/kernel; }
if "$TESTKIT" has-tcx; then
  # Read-only, as under a container runtime: the guard says it cannot expedite and sweeps at
  # the normal pace.
  check "planted $TCX_DEVICES interfaces with pinned tcx links (read-only /sys)" plant_tcx
  check "the guard sweeps" restart $GUARD
  check "it said it cannot expedite, and why" \
    run_log_has "cannot expedite RCU grace periods through $RCU: .*Read-only file system"
  check "the tcx links are gone" tcx_pins_gone
  check "check exits 0" calico-bpf-guard check
  check "/sys made read-write, as on a node" make_sys_writable
  check "planted $TCX_DEVICES interfaces with pinned tcx links (read-write /sys)" plant_tcx
  check "the guard sweeps" restart $GUARD
  check "the sandboxed guard expedited grace periods for its $((2 * TCX_DEVICES)) tcx detaches" \
    run_log_has "expediting RCU grace periods for $((2 * TCX_DEVICES)) tcx/netkit detaches \($RCU 0 -> [1-9][0-9]*"
  check "it put the switch back" run_log_has "^$RCU put back to 0$"
  check "the tcx links are gone" tcx_pins_gone
else
  say "    this kernel has no tcx (6.6): nothing to expedite"
  check "/sys made read-write, as on a node" make_sys_writable
  check "re-planted" replant
  check "the guard sweeps" restart $GUARD
  check "it left the switch alone" fails run_log_has "expedit"
fi
check "$RCU reads 0 again" [ "$(cat $RCU)" = "$rcu_before" ]
check "no record of a change is left" [ ! -e $RECORD ]
check "check exits 0" calico-bpf-guard check
