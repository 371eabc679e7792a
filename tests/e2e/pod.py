#!/usr/bin/env python3
"""The DaemonSet's own pod, for `podman kube play` (which plays Pods, not DaemonSets).

  pod.py make  --rendered R --out POD.yaml --node N --state DIR --api HOST:PORT --sa DIR --dataplane V
  pod.py check --rendered R --pod POD.yaml --node N --state DIR --api HOST:PORT --sa DIR
  pod.py probes --rendered R      the probes' host port path, one a line
  pod.py names --rendered R       the pod's and the override ConfigMap's names

`make` takes the pod template out of the rendered kustomization (R, from `kubectl kustomize
deploy/kubernetes`), applies the test substitutions below and writes a Pod plus the override
ConfigMap with `dataplane: V`. `check` compares a written Pod with the template field by field
and fails on any difference that is not one of the substitutions, and on a substitution that is
missing: what podman plays is the DaemonSet's pod, short of exactly these.

The substitutions, each because podman 4.3 on one machine is not a kubelet on a node:
  1. NODE_NAME is a plain value: podman 4.3 has no fieldRef.
  2. The hostPath of /var/lib/calico-bpf-guard points at a root-owned 0755 temp dir.
  3. The service-account token, CA and namespace the kubelet would project are a hostPath of
     files issued by the test API server, at the same in-cluster path, and
     KUBERNETES_SERVICE_HOST/PORT (which the kubelet sets) point at that server on 127.0.0.1.
  4. No liveness or readiness probe: podman 4.3 runs an httpGet probe as `curl` inside the
     container, which a FROM-scratch image does not have; the test GETs the same endpoints
     (`probes` prints them) from the host instead.
"""

import argparse
import copy
import sys

import yaml

SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
STATE_DIR = "/var/lib/calico-bpf-guard"
SA_VOLUME = "e2e-serviceaccount"


def load(path):
    with open(path) as f:
        return [o for o in yaml.safe_load_all(f) if o]


def kind(objs, k):
    found = [o for o in objs if o["kind"] == k]
    if len(found) != 1:
        sys.exit(f"pod.py: want one {k}, found {len(found)}")
    return found[0]


def template_pod(rendered):
    """The DaemonSet's pod template as a Pod, untouched."""
    ds = kind(rendered, "DaemonSet")
    tmpl = ds["spec"]["template"]
    meta = copy.deepcopy(tmpl.get("metadata", {}))
    meta["name"] = ds["metadata"]["name"]
    meta["namespace"] = ds["metadata"]["namespace"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(tmpl["spec"])}


def state_volume(spec):
    vols = [v for v in spec["volumes"] if v.get("hostPath", {}).get("path") == STATE_DIR]
    if len(vols) != 1:
        sys.exit(f"pod.py: want one hostPath volume of {STATE_DIR}")
    return vols[0]


def make(a):
    rendered = load(a.rendered)
    pod = template_pod(rendered)
    spec = pod["spec"]
    (c,) = spec["containers"]
    host, port = a.api.rsplit(":", 1)
    for e in c["env"]:
        if e["name"] == "NODE_NAME":
            del e["valueFrom"]
            e["value"] = a.node
    c["env"] += [
        {"name": "KUBERNETES_SERVICE_HOST", "value": host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": port},
    ]
    state_volume(spec)["hostPath"]["path"] = a.state
    spec["volumes"].append({"name": SA_VOLUME, "hostPath": {"path": a.sa, "type": "Directory"}})
    c["volumeMounts"].append({"name": SA_VOLUME, "mountPath": SA_PATH, "readOnly": True})
    c.pop("livenessProbe")
    c.pop("readinessProbe")
    cm = copy.deepcopy(kind(rendered, "ConfigMap"))
    cm["data"]["dataplane"] = a.dataplane
    with open(a.out, "w") as f:
        yaml.safe_dump_all([pod, cm], f, sort_keys=False)


def flatten(x, at=""):
    """{path: leaf}; list items that have a name are keyed by it, so order is not a difference."""
    if isinstance(x, dict):
        out = {}
        for k, v in x.items():
            out.update(flatten(v, f"{at}.{k}" if at else k))
        return out or {at: {}}
    if isinstance(x, list):
        out = {}
        for i, v in enumerate(x):
            key = v["name"] if isinstance(v, dict) and "name" in v else str(i)
            out.update(flatten(v, f"{at}[{key}]"))
        return out or {at: []}
    return {at: x}


def allowed(state, api_host, api_port, node, sa):
    """Every field a substitution changes, and to what (None: removed)."""
    c = "spec.containers[sync]"
    return {
        f"{c}.env[NODE_NAME].valueFrom.fieldRef.fieldPath": None,
        f"{c}.env[NODE_NAME].value": node,
        "spec.volumes[state].hostPath.path": state,
        f"{c}.env[KUBERNETES_SERVICE_HOST].name": "KUBERNETES_SERVICE_HOST",
        f"{c}.env[KUBERNETES_SERVICE_HOST].value": api_host,
        f"{c}.env[KUBERNETES_SERVICE_PORT].name": "KUBERNETES_SERVICE_PORT",
        f"{c}.env[KUBERNETES_SERVICE_PORT].value": api_port,
        f"spec.volumes[{SA_VOLUME}].name": SA_VOLUME,
        f"spec.volumes[{SA_VOLUME}].hostPath.path": sa,
        f"spec.volumes[{SA_VOLUME}].hostPath.type": "Directory",
        f"{c}.volumeMounts[{SA_VOLUME}].name": SA_VOLUME,
        f"{c}.volumeMounts[{SA_VOLUME}].mountPath": SA_PATH,
        f"{c}.volumeMounts[{SA_VOLUME}].readOnly": True,
    }


def check(a):
    rendered = load(a.rendered)
    want = flatten(template_pod(rendered))
    played = load(a.pod)
    got = flatten(kind(played, "Pod"))
    c = "spec.containers[sync]"
    api_host, api_port = a.api.rsplit(":", 1)
    subst = allowed(a.state, api_host, api_port, a.node, a.sa)
    probes = {k for k in want if k.startswith((f"{c}.livenessProbe.", f"{c}.readinessProbe."))}
    problems = []
    for k in sorted(set(want) | set(got)):
        if k in probes:
            if k in got:
                problems.append(f"{k}: the probe is played (podman would curl inside a scratch image)")
            continue
        if k in subst:
            if got.get(k) != subst[k]:
                problems.append(f"{k}: {want.get(k)!r} -> {got.get(k)!r}, not the substitution")
            continue
        if want.get(k, "<absent>") != got.get(k, "<absent>"):
            problems.append(f"{k}: template {want.get(k, '<absent>')!r}, played {got.get(k, '<absent>')!r}")
    for k, v in subst.items():
        if v is None and k not in want:
            problems.append(f"{k}: not in the template, so the substitution is stale")
    if not a.state.startswith("/tmp/") or a.state == STATE_DIR:
        problems.append(f"the state hostPath {a.state!r} is not a temp dir")
    # The test API server listens on loopback only; the pod must never be sent anywhere else.
    if api_host not in ("127.0.0.1", "::1"):
        problems.append(f"the API address {api_host} is not loopback")
    cm = kind(played, "ConfigMap")
    tcm = kind(rendered, "ConfigMap")
    if {k: v for k, v in cm.items() if k != "data"} != {k: v for k, v in tcm.items() if k != "data"} or set(cm["data"]) != set(tcm["data"]):
        problems.append("the played ConfigMap is not the override ConfigMap (other than its value)")
    for p in problems:
        print(f"FAIL {p}")
    print(f"pod check: the played pod is the DaemonSet's pod template but for the 4 substitutions "
          f"(NODE_NAME value, state hostPath, API address and token, no probes; {len(subst) + len(probes)} "
          f"fields): {'FAILED' if problems else 'ok'}")
    return 1 if problems else 0


def names(a):
    """The pod's name (the DaemonSet's) and the override ConfigMap's, on one line."""
    rendered = load(a.rendered)
    print(kind(rendered, "DaemonSet")["metadata"]["name"], kind(rendered, "ConfigMap")["metadata"]["name"])
    return 0


def probes(a):
    """host port path of each probe of the template, one a line."""
    c = template_pod(load(a.rendered))["spec"]["containers"][0]
    for p in ("livenessProbe", "readinessProbe"):
        g = c[p]["httpGet"]
        print(g.get("host", "127.0.0.1"), g["port"], g["path"])
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    c = sub.add_parser("check")
    for f in ("--rendered", "--node", "--state", "--api", "--sa"):
        m.add_argument(f, required=True)
        c.add_argument(f, required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--dataplane", required=True)
    c.add_argument("--pod", required=True)
    for name in ("probes", "names"):
        sub.add_parser(name).add_argument("--rendered", required=True)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a)
        return 0
    return {"check": check, "probes": probes, "names": names}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
