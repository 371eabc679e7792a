#!/bin/sh
# Boot test: a stand-in for kubelet, or for the unit that runs it inside (k3s, RKE2, MicroK8s'
# kubelite), named by its first argument. Each start appends the guard's invocation id and
# state, as this start sees them, to /run/boot-test/NAME.starts: a fresh, finished guard run
# before every start shows as a new id each time. While /run/boot-test/NAME.crashes holds a
# count above 0 it counts down and exits 1 at once, as a crash-looping kubelet does; then it
# stays up.
name=$1
dir=/run/boot-test
mkdir -p "$dir"
echo "$(systemctl show -P InvocationID calico-bpf-guard.service)" \
  "$(systemctl show -P ActiveState calico-bpf-guard.service)" >>"$dir/$name.starts"
crashes=$dir/$name.crashes
if [ -f "$crashes" ]; then
  left=$(cat "$crashes")
  if [ "$left" -gt 0 ]; then
    echo $((left - 1)) >"$crashes"
    echo "$name stand-in: crashing ($left to go)" >&2
    exit 1
  fi
fi
exec sleep infinity
