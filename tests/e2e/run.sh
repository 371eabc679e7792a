#!/usr/bin/env bash
# make e2e: the DaemonSet's own pod, played by podman (Debian 12's 4.3 plays Pods, not
# DaemonSets) with the image `make image` built, against the test API server on 127.0.0.1.
# Proves, with no kubelet and no cluster:
#   1. the pod reads the cluster through the API, with the ClusterRole of deploy/kubernetes
#      enforced by the server, and writes the node's mode file (eBPF on: bpf);
#   2. `kube play --replace` with the override ConfigMap changed flips the file (iptables), and
#      back (auto: bpf);
#   3. a change of the served FelixConfiguration and Installation flips it with no step on the
#      node (iptables);
#   4. the override `none` is written (Calico removed);
#   and each time the guard's own `sweep`, reading that file, acts on it: planted stale Calico
#   state stays while the file says bpf, and is swept (foreign objects kept) for iptables and none.
# The pod plays with the host's network (the DaemonSet's hostNetwork) so it reaches the server on
# loopback; nothing listens or is sent anywhere else. Every pod, volume, image, netns, mount and
# cgroup it makes is removed on exit, also on failure. Needs root and scripts/install-deps.sh deploy.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "e2e: needs root (podman, bpffs, cgroups, netns)" >&2; exit 1; }
start=$EPOCHREALTIME
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

tools=${MANIFEST_TOOLS:-/opt/calico-bpf-guard-dev/manifest-tools}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' sync/Cargo.toml | head -n1)
image=localhost/calico-bpf-guard-sync:$version
node=e2e-node-$$
podman image exists "$image" || { echo "e2e: no $image: run make image first" >&2; exit 1; }

# The build `make test` makes (debug, failpoints compiled in and inert), so CI builds nothing new.
cargo build --locked --quiet --workspace --features failpoints
guard=target/debug/calico-bpf-guard
testkit=target/debug/calico-bpf-testkit
testapi=target/debug/calico-bpf-guard-testapi

# The guard trusts a mode file only when it and every directory above it are root-owned and
# not writable by others: the temp dir is root's, 0755, under the sticky /tmp.
W=$(mktemp -d /tmp/cbg-e2e.XXXXXX)
chmod 0755 "$W"
mkdir -m 0755 "$W/state" "$W/sa"
"$tools/bin/kubectl" kustomize deploy/kubernetes >"$W/rendered.yaml"
read -r pod cm < <("$tools/bin/python" tests/e2e/pod.py names --rendered "$W/rendered.yaml")
pause_before=$(podman images -q --filter reference=localhost/podman-pause)
if podman pod exists "$pod" || podman volume exists "$cm"; then
  echo "e2e: a pod or volume named $pod/$cm exists already; not touching it" >&2
  exit 1
fi

# This machine may lack CAP_SYS_RESOURCE (podman's default RLIMIT_NOFILE of 1048576 and its
# NPROC then fail) and run hybrid cgroups (crun refuses them; runc does not). Neither changes
# what the pod is.
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=4096:4096"]\n' \
  "$(ulimit -Hn)" "$(ulimit -Hn)" >"$W/containers.conf"
pm() { CONTAINERS_CONF=$W/containers.conf podman --runtime runc "$@"; }

api_pid=
sandboxes=()
cleanup() {
  set +e
  if podman pod exists "$pod"; then podman pod rm -f -t 2 "$pod" >/dev/null; fi
  if podman volume exists "$cm"; then podman volume rm -f "$cm" >/dev/null; fi
  for id in $(podman images -q --filter reference=localhost/podman-pause); do
    case " $pause_before " in *" $id "*) ;; *) podman rmi "$id" >/dev/null ;; esac
  done
  [ -n "$api_pid" ] && kill "$api_pid" 2>/dev/null && wait "$api_pid" 2>/dev/null
  for sb in "${sandboxes[@]}"; do sandbox_del "$sb"; done
  rm -rf "$W"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "e2e: FAILED: $*" >&2
  echo "--- pod log" >&2
  podman logs --tail 30 "$pod-sync" >&2 || true
  exit 1
}

# One throwaway node's kernel state per sweep: a fresh bpffs, a child cgroup of the first
# cgroup2 mount and a network namespace, with the test kit's stale Calico state and foreign
# objects beside it, and a guard config that points at them and at the pod's mode file.
sandbox_new() {
  local sb=$W/sb$1 name=cbg-e2e-$$-$1 base
  base=$(findmnt -n -o TARGET -t cgroup2 | head -n1)
  mkdir -m 0755 "$sb" "$sb/bpffs"
  sandboxes+=("$sb")
  mount -t bpf bpf "$sb/bpffs"
  mkdir "$base/$name"
  echo "$base/$name" >"$sb/cgroup"
  ip netns add "$name"
  echo "$name" >"$sb/netns"
  cat >"$sb/config.toml" <<EOF
mode_file = "$W/state/mode.toml"
bpffs_roots = ["$sb/bpffs"]
cgroup2_roots = ["$base/$name"]
lock_file = "$sb/guard.lock"
EOF
  in_ns "$sb" "$testkit" plant --bpffs "$sb/bpffs" --cgroup "$base/$name" >/dev/null
}
in_ns() { local sb=$1; shift; nsenter --net="/run/netns/$(cat "$sb/netns")" "$@"; }
sandbox_del() {
  local sb=$1
  [ -f "$sb/netns" ] && ip netns del "$(cat "$sb/netns")"
  # Programs attached to the cgroup go with it; deepest first, as the test kit makes children.
  [ -f "$sb/cgroup" ] && find "$(cat "$sb/cgroup")" -depth -type d -exec rmdir {} + 2>/dev/null
  mountpoint -q "$sb/bpffs" && umount "$sb/bpffs"
}
# The guard's sweep on a fresh sandbox; what is left must be `expect` (swept or planted).
sweep_expect() {
  local round=$1 expect=$2 sb=$W/sb$1
  sandbox_new "$round"
  local rc=0
  in_ns "$sb" "$guard" sweep --config "$sb/config.toml" >"$sb/sweep.log" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$sb/sweep.log" >&2; fail "sweep exited $rc with the mode file saying $(mode_now)"; }
  in_ns "$sb" "$testkit" verify --bpffs "$sb/bpffs" --cgroup "$(cat "$sb/cgroup")" --expect "$expect" ||
    { cat "$sb/sweep.log" >&2; fail "after the sweep, the sandbox is not $expect"; }
  echo "e2e: guard sweep with the mode file saying $(mode_now): $expect"
}

# The mode file as the guard reads it (its own trust checks included).
mode_now() {
  "$guard" mode show --config "$W/sb0/config.toml" 2>/dev/null | sed -n 's/^dataplane = "\(.*\)"$/\1/p'
}
wait_mode() {
  local want=$1 why=$2 t0=$EPOCHREALTIME
  for _ in $(seq 120); do
    if [ "$(mode_now)" = "$want" ]; then
      echo "e2e: $why: mode file says $want after $(since "$t0") s" \
        "($(sed -n 's/^source = //p' "$W/state/mode.toml"))"
      return 0
    fi
    sleep 0.5
  done
  fail "$why: mode file says '$(mode_now)' after 60 s, want $want"
}

# The DaemonSet's pod with the override ConfigMap set to $1, checked against the template.
play() {
  local args=(--rendered "$W/rendered.yaml" --node "$node" --state "$W/state"
    --api "127.0.0.1:$port" --sa "$W/sa")
  "$tools/bin/python" tests/e2e/pod.py make "${args[@]}" --out "$W/pod.yaml" --dataplane "$1"
  "$tools/bin/python" tests/e2e/pod.py check "${args[@]}" --pod "$W/pod.yaml" >"$W/check.log" ||
    { cat "$W/check.log" >&2; fail "the played pod is not the DaemonSet's"; }
  pm kube play --replace "$W/pod.yaml" >/dev/null || fail "podman kube play"
}
get() { curl -fsS --max-time 3 "http://$1:$2$3"; }

# The test API server, its ClusterRole the one `kubectl apply -k` would install; eBPF on in
# an operator install: the Installation says BPF, FelixConfiguration default bpfEnabled=true.
world=$W/world
"$testapi" --dir "$world" installation BPF
"$testapi" --dir "$world" felix crd.projectcalico.org/v1 default true
"$testapi" --dir "$world" daemonset calico-system unset
"$testapi" --dir "$world" serve --rbac "$W/rendered.yaml" 2>"$W/testapi.log" &
api_pid=$!
for _ in $(seq 100); do [ -s "$world/port" ] && break; sleep 0.1; done
port=$(cat "$world/port")
install -m 0644 "$world/ca.crt" "$W/sa/ca.crt"
install -m 0644 "$world/token" "$W/sa/token"
echo calico-bpf-guard >"$W/sa/namespace"
mkdir -m 0755 "$W/sb0"
printf 'mode_file = "%s/state/mode.toml"\n' "$W" >"$W/sb0/config.toml"

play auto
wait_mode bpf "the pod reads the cluster (eBPF on)"
while read -r host p path; do
  get "$host" "$p" "$path" >/dev/null || fail "GET $path on $host:$p"
done < <("$tools/bin/python" tests/e2e/pod.py probes --rendered "$W/rendered.yaml")
get 127.0.0.1 9743 /metrics | grep -q . || fail "GET /metrics"
echo "e2e: /healthz, /readyz and /metrics answer on the probes' address"
sweep_expect 1 planted

play iptables
wait_mode iptables "kube play --replace, override iptables"
sweep_expect 2 swept

play auto
wait_mode bpf "kube play --replace, override auto"

"$testapi" --dir "$world" felix crd.projectcalico.org/v1 default false
"$testapi" --dir "$world" installation Iptables
wait_mode iptables "FelixConfiguration and Installation changed in the cluster, no step on the node"
sweep_expect 3 swept

play none
wait_mode none "kube play --replace, override none"
sweep_expect 4 swept

grep -q -- '-> 403' "$world/requests.log" &&
  fail "the server refused what the ClusterRole should allow: $(grep -- '-> 403' "$world/requests.log" | head -3)"
echo "e2e: passed in $(since "$start") s"
