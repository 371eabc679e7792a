//! The test API server's world: a directory whose files are the cluster, re-read on every
//! request, so a test (or a shell script) changes the cluster by writing files, while the
//! server runs (the layout is on `World`). This module reads and writes those files; it never
//! serves.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::Value;

/// The resource types a Calico cluster serves, as `served` lists them.
pub const CALICO_TYPES: [&str; 6] = [
    "apps/v1 daemonsets",
    "v1 configmaps",
    "v1 pods",
    "crd.projectcalico.org/v1 felixconfigurations",
    "projectcalico.org/v3 felixconfigurations",
    "operator.tigera.io/v1 installations",
];

/// A handle on a world directory. Its layout:
///
/// - `token`: the one bearer token accepted (rotate it by writing a new one).
/// - `served`: the resource types served, one `group/version resource` a line (`v1` for core);
///   a type not listed answers 404 like a CRD that is not installed.
/// - `objects/<group or core>/<version>/<namespace or _>/<resource>/<name>.json`.
/// - `faults`: lines `<action> <substring>`: a request whose `METHOD path?query` contains the
///   substring gets the action (401 403 404 500 503 timeout garbage drop gone stale; `stale`
///   answers a `resourceVersion=0` list with each object as it was before its latest change).
/// - `rbac.yaml`: when present, only what its Roles/ClusterRoles grant is allowed (else 403).
/// - written by the server: `ca.crt`, `server.der`, `server.key.der` (kept across restarts),
///   `kubeconfig`, `port`, `requests.log`, `events.log` (every watch event sent).
#[derive(Clone, Debug)]
pub struct World {
    pub dir: PathBuf,
}

/// Where an object lives: group ("" for core), version, namespace (None: cluster-scoped),
/// resource (plural), name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub resource: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(api_version: &str, namespace: Option<&str>, resource: &str, name: &str) -> Self {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), api_version.to_string()),
        };
        ObjectRef {
            group,
            version,
            namespace: namespace.map(str::to_string),
            resource: resource.to_string(),
            name: name.to_string(),
        }
    }
}

pub fn collection_dir(
    root: &Path,
    group: &str,
    version: &str,
    ns: Option<&str>,
    resource: &str,
) -> PathBuf {
    let g = if group.is_empty() { "core" } else { group };
    root.join("objects")
        .join(g)
        .join(version)
        .join(ns.unwrap_or("_"))
        .join(resource)
}

pub fn type_line(group: &str, version: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("{version} {resource}")
    } else {
        format!("{group}/{version} {resource}")
    }
}

impl World {
    /// A world in `dir` (created) serving Calico's types, with no object.
    pub fn create(dir: &Path) -> Result<World> {
        fs::create_dir_all(dir.join("objects")).with_context(|| format!("{}", dir.display()))?;
        let w = World {
            dir: dir.to_path_buf(),
        };
        w.set_served(&CALICO_TYPES)?;
        w.rotate_token("token-0")?;
        Ok(w)
    }

    /// The world in `dir`, created as by `create` if it has no `served` file yet.
    pub fn create_or_open(dir: &Path) -> Result<World> {
        if dir.join("served").exists() {
            return Ok(World {
                dir: dir.to_path_buf(),
            });
        }
        World::create(dir)
    }

    fn write_atomic(&self, rel: &Path, data: &[u8]) -> Result<()> {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let tmp = path.with_extension("tmp~");
        fs::write(&tmp, data)?;
        fs::rename(&tmp, &path).with_context(|| format!("{}", path.display()))
    }

    pub fn path_of(&self, o: &ObjectRef) -> PathBuf {
        collection_dir(
            &self.dir,
            &o.group,
            &o.version,
            o.namespace.as_deref(),
            &o.resource,
        )
        .join(format!("{}.json", o.name))
    }

    /// Store `obj` (its apiVersion, kind, metadata.name/namespace say where) as `resource`.
    pub fn put(&self, resource: &str, obj: &Value) -> Result<()> {
        let api_version = obj["apiVersion"].as_str().context("apiVersion")?;
        let name = obj["metadata"]["name"].as_str().context("metadata.name")?;
        let ns = obj["metadata"]["namespace"].as_str();
        let path = self.path_of(&ObjectRef::new(api_version, ns, resource, name));
        let rel = path.strip_prefix(&self.dir)?.to_path_buf();
        self.write_atomic(&rel, &serde_json::to_vec_pretty(obj)?)
    }

    pub fn delete(&self, o: &ObjectRef) -> Result<()> {
        match fs::remove_file(self.path_of(o)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    pub fn set_served(&self, types: &[&str]) -> Result<()> {
        self.write_atomic(
            Path::new("served"),
            format!("{}\n", types.join("\n")).as_bytes(),
        )
    }

    pub fn served(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("served"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Stop serving one type (`group/version resource`), as when its CRD is deleted.
    pub fn unserve(&self, type_: &str) -> Result<()> {
        let keep: Vec<String> = self.served().into_iter().filter(|t| t != type_).collect();
        let refs: Vec<&str> = keep.iter().map(String::as_str).collect();
        self.set_served(&refs)
    }

    pub fn rotate_token(&self, token: &str) -> Result<()> {
        self.write_atomic(Path::new("token"), token.as_bytes())
    }

    pub fn token(&self) -> String {
        fs::read_to_string(self.dir.join("token"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Replace every fault with these lines (`<action> <substring>`); none clears them.
    pub fn set_faults(&self, lines: &[&str]) -> Result<()> {
        self.write_atomic(Path::new("faults"), lines.join("\n").as_bytes())
    }

    /// The action for a request line, if a fault matches it.
    pub fn fault_for(&self, request: &str) -> Option<String> {
        let text = fs::read_to_string(self.dir.join("faults")).ok()?;
        text.lines().find_map(|l| {
            let (action, needle) = l.trim().split_once(' ')?;
            request.contains(needle.trim()).then(|| action.to_string())
        })
    }

    pub fn set_rbac(&self, yaml: Option<&str>) -> Result<()> {
        match yaml {
            Some(y) => self.write_atomic(Path::new("rbac.yaml"), y.as_bytes()),
            None => match fs::remove_file(self.dir.join("rbac.yaml")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        }
    }

    pub fn log_request(&self, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("requests.log"))
        {
            // One write per line: threads append at once, and `writeln!` may split a line.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// Notes one watch event sent (`events.log`), so a test can tell what a watch carried.
    pub fn log_event(&self, line: &str) {
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("events.log"))
        {
            // One write per line: threads append at once, and `writeln!` may split a line.
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }

    /// Every watch event sent so far, one `METHOD path?query TYPE` a line.
    pub fn events(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("events.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every request answered so far, one `METHOD path?query -> status` a line.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
