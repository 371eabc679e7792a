#!/usr/bin/env python3
"""Check deploy/kubernetes offline: render it with kubectl's own kustomize (what `kubectl apply -k`
applies), validate every object against Kubernetes' OpenAPI schemas of each release named on the
command line (strict: an unknown field is an error), then hold the rendering to the deployment's
promises (read-only RBAC on exactly the objects the sync reads, one hostPath, no capability,
read-only root, probes, NODE_NAME from the node, an optional override that defaults to `auto`).

--self-test breaks each promise in a copy of the rendering and fails unless the check notices.

Usage: check-manifests.py --kubectl PATH --validator PATH --version CRATE_VERSION K8S_VERSION...
"""

import argparse
import copy
import subprocess
import sys
import tempfile

import yaml

KUSTOMIZATION = "deploy/kubernetes"
STATE_DIR = "/var/lib/calico-bpf-guard"
READ_VERBS = {"get", "list", "watch"}
# What calico-bpf-guard-sync reads (/work/coord/sync-requests.md, README "Deployment on a
# cluster"): (api group, resource) -> (verbs, resourceNames or None for any name).
RBAC = {
    ("apps", "daemonsets"): (READ_VERBS, {"calico-node"}),
    ("", "configmaps"): ({"get"}, {"calico-config", "kubernetes-services-endpoint"}),
    ("", "pods"): (READ_VERBS, None),
    ("crd.projectcalico.org", "felixconfigurations"): (READ_VERBS, None),
    ("projectcalico.org", "felixconfigurations"): (READ_VERBS, None),
    ("operator.tigera.io", "installations"): (READ_VERBS, {"default"}),
}
KINDS = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"]


def render(kubectl):
    out = subprocess.run([kubectl, "kustomize", KUSTOMIZATION], check=True, capture_output=True, text=True)
    return out.stdout


def validate(validator, text, versions):
    """Kubernetes' own schemas, strict, one release at a time. Returns the failures."""
    failures = []
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(text)
        f.flush()
        for v in versions:
            r = subprocess.run([validator, "--strict", "--quiet", "-k", v, f.name], capture_output=True, text=True)
            if r.returncode != 0:
                failures.append(f"schema {v}: {(r.stdout + r.stderr).strip()}")
    return failures


def by_kind(objs):
    return {o["kind"]: o for o in objs}


def rbac_problems(role):
    problems = []
    seen = set()
    for rule in role.get("rules", []):
        verbs = set(rule.get("verbs", []))
        names = set(rule["resourceNames"]) if "resourceNames" in rule else None
        if rule.get("nonResourceURLs"):
            problems.append(f"ClusterRole grants non-resource URLs {rule['nonResourceURLs']}")
        for group in rule.get("apiGroups", []):
            for res in rule.get("resources", []):
                want = RBAC.get((group, res))
                if want is None:
                    problems.append(f"ClusterRole grants {group or 'core'}/{res}, which the sync does not read")
                    continue
                seen.add((group, res))
                if verbs != want[0]:
                    problems.append(f"{group or 'core'}/{res}: verbs {sorted(verbs)}, want {sorted(want[0])}")
                if names != want[1]:
                    problems.append(f"{group or 'core'}/{res}: resourceNames {names}, want {want[1]}")
    for missing in sorted(set(RBAC) - seen):
        problems.append(f"ClusterRole lacks {missing[0] or 'core'}/{missing[1]}, which the sync reads")
    return problems


def promises(objs, crate_version):
    """Every promise of the deployment that a schema cannot see. Returns what is broken."""
    p = []
    kinds = sorted(o["kind"] for o in objs)
    if kinds != sorted(KINDS):
        return [f"objects {kinds}, want one each of {sorted(KINDS)}"]
    k = by_kind(objs)
    ns = k["Namespace"]["metadata"]["name"]
    sa, role, crb, cm, ds = (k[x] for x in ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet"])
    for o in (sa, cm, ds):
        if o["metadata"].get("namespace") != ns:
            p.append(f"{o['kind']} is not in namespace {ns}")
    p += rbac_problems(role)
    if crb["roleRef"] != {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}:
        p.append("ClusterRoleBinding does not bind the ClusterRole")
    if crb.get("subjects") != [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}]:
        p.append("ClusterRoleBinding's subject is not (only) the ServiceAccount")
    if cm.get("data") != {"dataplane": "auto"}:
        p.append(f"override ConfigMap data {cm.get('data')}, want dataplane: auto")

    spec = ds["spec"]
    pod = spec["template"]["spec"]
    if spec.get("updateStrategy", {}).get("type") != "RollingUpdate":
        p.append("DaemonSet updateStrategy is not RollingUpdate")
    if pod.get("serviceAccountName") != sa["metadata"]["name"]:
        p.append("pod does not run as the ServiceAccount")
    if pod.get("automountServiceAccountToken") is not True:
        p.append("pod does not mount its token (the sync reads the API)")
    if pod.get("tolerations") != [{"operator": "Exists"}]:
        p.append(f"tolerations {pod.get('tolerations')}, want every taint tolerated")
    if pod.get("priorityClassName") != "system-node-critical":
        p.append("priorityClassName is not system-node-critical")
    if pod.get("nodeSelector") != {"kubernetes.io/os": "linux"}:
        p.append("nodeSelector is not kubernetes.io/os: linux")
    for forbidden in ("hostPID", "hostIPC"):
        if pod.get(forbidden):
            p.append(f"pod sets {forbidden}")
    if pod.get("securityContext", {}).get("seccompProfile") != {"type": "RuntimeDefault"}:
        p.append("pod seccompProfile is not RuntimeDefault")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    host = [v for v in vols.values() if "hostPath" in v]
    if [v["hostPath"]["path"] for v in host] != [STATE_DIR]:
        p.append(f"hostPaths {[v['hostPath']['path'] for v in host]}, want only {STATE_DIR}")
    cmv = [v for v in vols.values() if "configMap" in v]
    if [(v["configMap"].get("name"), v["configMap"].get("optional")) for v in cmv] != [(cm["metadata"]["name"], True)]:
        p.append("the override ConfigMap is not mounted as one optional volume")
    if set(vols) - {v["name"] for v in host + cmv}:
        p.append(f"other volumes: {sorted(set(vols) - {v['name'] for v in host + cmv})}")
    if pod.get("initContainers") or len(pod["containers"]) != 1:
        p.append("pod is not one container")
        return p
    c = pod["containers"][0]
    image = c["image"]
    if not image.endswith(":" + crate_version):
        p.append(f"image {image} is not the sync crate's version {crate_version}")
    sc = c.get("securityContext", {})
    want_sc = {
        "runAsUser": 0,
        "runAsGroup": 0,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    if sc != want_sc:
        p.append(f"container securityContext {sc}, want exactly {want_sc}")
    res = c.get("resources", {})
    for part in ("requests", "limits"):
        if set(res.get(part, {})) != {"cpu", "memory"}:
            p.append(f"resources.{part} lacks cpu or memory")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        if c.get(probe, {}).get("httpGet", {}).get("path") != path:
            p.append(f"{probe} is not an httpGet of {path}")
    env = {e["name"]: e for e in c.get("env", [])}
    if env.get("NODE_NAME", {}).get("valueFrom") != {"fieldRef": {"fieldPath": "spec.nodeName"}}:
        p.append("NODE_NAME does not come from spec.nodeName")
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    if [mounts.get(v["name"], {}).get("mountPath") for v in host] != [STATE_DIR]:
        p.append(f"the hostPath is not mounted at {STATE_DIR}")
    if any(not mounts.get(v["name"], {}).get("readOnly") for v in cmv):
        p.append("the override is not mounted read-only")
    return p


def mutations():
    """(what, how) pairs for --self-test: each breaks one promise."""

    def pod(objs):
        return by_kind(objs)["DaemonSet"]["spec"]["template"]["spec"]

    def ctr(objs):
        return pod(objs)["containers"][0]

    def override_required(objs):
        for v in pod(objs)["volumes"]:
            if "configMap" in v:
                v["configMap"]["optional"] = False

    def node_name_plain(objs):
        for e in ctr(objs)["env"]:
            if e["name"] == "NODE_NAME":
                del e["valueFrom"]
                e["value"] = "node-1"

    return [
        ("a capability added", lambda o: ctr(o)["securityContext"]["capabilities"].update(add=["NET_ADMIN"])),
        ("a writable root", lambda o: ctr(o)["securityContext"].update(readOnlyRootFilesystem=False)),
        ("a second hostPath", lambda o: pod(o)["volumes"].append({"name": "x", "hostPath": {"path": "/"}})),
        ("the override required", override_required),
        ("a write verb", lambda o: by_kind(o)["ClusterRole"]["rules"][0]["verbs"].append("update")),
        ("secrets readable", lambda o: by_kind(o)["ClusterRole"]["rules"].append({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})),
        ("one taint not tolerated", lambda o: pod(o).update(tolerations=[{"key": "x", "operator": "Exists"}])),
        ("the override left set", lambda o: by_kind(o)["ConfigMap"].update(data={"dataplane": "iptables"})),
        ("no memory limit", lambda o: ctr(o)["resources"]["limits"].pop("memory")),
        ("NODE_NAME as a value", node_name_plain),
        ("the host's PID namespace", lambda o: pod(o).update(hostPID=True)),
    ]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--validator", required=True)
    ap.add_argument("--version", required=True, help="the sync crate's version: the image tag")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("k8s_versions", nargs="+")
    a = ap.parse_args()

    text = render(a.kubectl)
    objs = [o for o in yaml.safe_load_all(text) if o]
    failures = validate(a.validator, text, a.k8s_versions) + promises(objs, a.version)
    if a.self_test:
        for what, how in mutations():
            broken = copy.deepcopy(objs)
            how(broken)
            if not promises(broken, a.version):
                failures.append(f"self-test: the check misses {what}")
        bad = text.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem")
        if not validate(a.validator, bad, a.k8s_versions[:1]):
            failures.append("self-test: the schema check misses an unknown field")
    for f in failures:
        print(f"FAIL {f}")
    names = ", ".join(f"{o['kind']}/{o['metadata']['name']}" for o in objs)
    print(f"{KUSTOMIZATION}: {len(objs)} objects ({names}); Kubernetes {' '.join(a.k8s_versions)}: "
          f"{'FAILED' if failures else 'ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
