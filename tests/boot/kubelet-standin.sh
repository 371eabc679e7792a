#!/bin/sh
# Boot test: a stand-in for kubelet, or for the unit that runs it inside (k3s, RKE2, MicroK8s'
# kubelite), named by its first argument. While /run/boot-test/NAME.crashes holds a count above
# 0 it counts down and exits 1 at once, as a crash-looping kubelet does; then it stays up.
# The checker reads the starts and the guard's runs from systemd's own journal messages.
name=$1
crashes=/run/boot-test/$name.crashes
if [ -f "$crashes" ]; then
  left=$(cat "$crashes")
  if [ "$left" -gt 0 ]; then
    echo $((left - 1)) >"$crashes"
    echo "$name stand-in: crashing ($left to go)" >&2
    exit 1
  fi
fi
exec sleep infinity
