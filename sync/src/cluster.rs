//! Reading Calico's sources through the Kubernetes API, once per evaluation, into
//! `Observation`s in Felix's precedence order, each with whether it was absent, present or
//! unreadable (the rules are on `Cluster::observe`). This module never decides and never
//! writes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::absence::{Absence, Verdict};
use crate::reason::Reason;
use crate::sources::{self, EnvEntry, EnvFrom, EnvOrigin, EnvSource, Kind, Observation, Reading};

/// FelixConfiguration's two API groups: the CRDs, and Calico's API server (or, from 3.30, the
/// v3 CRDs). Both are read; in most clusters one of them is absent.
pub const FELIX_GROUPS: [(&str, &str); 2] =
    [("crd.projectcalico.org", "v1"), ("projectcalico.org", "v3")];

pub fn felix_resource(group: &str, version: &str) -> ApiResource {
    ApiResource {
        group: group.to_string(),
        version: version.to_string(),
        api_version: format!("{group}/{version}"),
        kind: "FelixConfiguration".to_string(),
        plural: "felixconfigurations".to_string(),
    }
}

pub fn installation_resource() -> ApiResource {
    ApiResource {
        group: "operator.tigera.io".to_string(),
        version: "v1".to_string(),
        api_version: "operator.tigera.io/v1".to_string(),
        kind: "Installation".to_string(),
        plural: "installations".to_string(),
    }
}

/// The DaemonSet Felix runs from, in the operator's and the manifests' installs.
pub const DAEMONSET: &str = "calico-node";

/// The label both put on calico-node's pods.
pub const CALICO_NODE_LABEL: &str = "k8s-app=calico-node";

/// A ConfigMap's `data`.
type ConfigMapData = BTreeMap<String, String>;

/// One request's failure, as `reason` and words for the log.
pub type Failure = (Reason, String);

/// What a kube error means for the rule "failure means keep".
pub fn classify(e: &kube::Error) -> Failure {
    match e {
        kube::Error::Api(s) => {
            let reason = match s.code {
                401 => Reason::Unauthorized,
                403 => Reason::Forbidden,
                404 => Reason::NotFound,
                408 | 504 => Reason::Timeout,
                _ => Reason::ServerError,
            };
            (reason, format!("{} {}: {}", s.code, s.reason, s.message))
        }
        kube::Error::SerdeError(e) => (Reason::Unparseable, format!("answer does not parse: {e}")),
        other => (Reason::Unreachable, chain(other)),
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The reader: a client, the node, where calico-node may live, how long one request may take,
/// and which resource types this process has seen served.
pub struct Cluster {
    pub client: Client,
    pub node: String,
    pub namespaces: Vec<String>,
    pub timeout: Duration,
    pub absence: Arc<Absence>,
}

fn type_key(ar: &ApiResource) -> String {
    format!("{} {}", ar.api_version, ar.plural)
}

impl Cluster {
    /// Every source, read concurrently, in Felix's precedence order.
    ///
    /// Every object is read by a `list` with the field
    /// selector `metadata.name=<name>`, a consistent read (no `resourceVersion`; since Kubernetes
    /// 1.31 served from the watch cache once it is provably current), never `resourceVersion=0`: in
    /// an HA control plane that may be answered by an API server whose cache is behind the one whose
    /// watch woke the evaluation, and a stale "off" would then stand until the next resync. A list,
    /// because it tells the two 404s apart that a `get` mixes up:
    ///
    /// - **Absent, fine.** A list that answers 404 means the resource type is not served: a CRD that
    ///   is not installed (FelixConfiguration in one of its two API groups, Installation without the
    ///   operator). That source does not exist; the metric `source_present` says so. A type that
    ///   was served earlier in this process counts as absent only once its 404 has lasted the
    ///   hold time (`absence`); until then it is a failure (`not_found`).
    ///   A list that answers 200 with no item means the object does not exist: no calico-node
    ///   DaemonSet in that namespace, no FelixConfiguration `node.<name>` or `default` (Felix then
    ///   uses the next source, as it does), no Installation `default`.
    /// - **Must exist (404 is a failure, the cache is kept).** `apps/v1` daemonsets (served by every
    ///   API server), and a ConfigMap (or its key) that the calico-node container references for
    ///   `FELIX_BPFENABLED` without `optional: true`: Kubernetes cannot start that container
    ///   without it, so its value cannot be known.
    ///
    /// Every other failure (unreachable, timeout, 401, 403, 5xx, an answer that does not parse)
    /// makes that one source unreadable.
    pub async fn observe(&self) -> Vec<Observation> {
        let daemonsets = join_all(self.namespaces.iter().map(|ns| self.daemonset(ns)));
        let node = format!("node.{}", self.node);
        let felix = |name: String, kind: Kind| {
            join_all(FELIX_GROUPS.map(|(g, v)| self.felix(g, v, name.clone(), kind)))
        };
        let pods = join_all(self.namespaces.iter().map(|ns| self.pods(ns)));
        let (mut out, pods, nodes, defaults, installation) = futures_util::join!(
            daemonsets,
            pods,
            felix(node, Kind::FelixNode),
            felix("default".to_string(), Kind::FelixDefault),
            self.installation()
        );
        out.extend(pods);
        out.extend(nodes);
        out.extend(defaults);
        out.push(installation);
        out
    }

    /// The one object called `name`: `Ok(None)` when it does not exist, `Err` with `NotFound`
    /// when the type is not served (the caller says whether that is fine).
    async fn one<K>(&self, api: Api<K>, name: &str) -> Result<Option<K>, Failure>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        // A consistent read: a list from the watch cache (resourceVersion=0) may come from
        // another API server than the watch event that woke us, one whose cache is behind.
        let lp = ListParams::default().fields(&format!("metadata.name={name}"));
        match tokio::time::timeout(self.timeout, api.list(&lp)).await {
            Err(_) => Err((
                Reason::Timeout,
                format!("no answer within {:?}", self.timeout),
            )),
            Ok(Err(e)) => Err(classify(&e)),
            Ok(Ok(list)) => Ok(list.items.into_iter().find(|o| o.name_any() == name)),
        }
    }

    async fn daemonset(&self, ns: &str) -> Observation {
        let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
        let reading = match self.one(api, DAEMONSET).await {
            Err((Reason::NotFound, d)) => Reading::Unreadable(
                Reason::NotFound,
                format!("apps/v1 daemonsets must be served: {d}"),
            ),
            Err((r, d)) => Reading::Unreadable(r, d),
            Ok(None) => Reading::Absent,
            Ok(Some(ds)) => match sources::env_origin(&ds) {
                Err(e) => Reading::Unreadable(Reason::Unparseable, e),
                Ok(origin) => self.resolve(ns, origin).await,
            },
        };
        Observation {
            kind: Kind::DaemonSetEnv,
            name: format!("DaemonSet {ns}/{DAEMONSET}"),
            place: ns.to_string(),
            reading,
        }
    }

    /// This node's calico-node pods in `ns` (one; two for a moment in a rolling update): the
    /// env their Felix runs with, which under `updateStrategy: OnDelete` or mid-rollout is not
    /// the template's, and which kubelet restarts the pod with after a reboot.
    async fn pods(&self, ns: &str) -> Observation {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let lp = ListParams::default()
            .labels(CALICO_NODE_LABEL)
            .fields(&format!("spec.nodeName={}", self.node));
        let reading = match tokio::time::timeout(self.timeout, api.list(&lp)).await {
            Err(_) => Reading::Unreadable(
                Reason::Timeout,
                format!("no answer within {:?}", self.timeout),
            ),
            Ok(Err(e)) => {
                let (r, d) = classify(&e);
                Reading::Unreadable(r, format!("v1 pods must be served: {d}"))
            }
            Ok(Ok(list)) if list.items.is_empty() => Reading::Absent,
            Ok(Ok(list)) => {
                let mut readings = Vec::new();
                for pod in &list.items {
                    readings.push(match sources::pod_env_origin(pod) {
                        Err(e) => Reading::Unreadable(Reason::Unparseable, e),
                        Ok(origin) => self.resolve(ns, origin).await,
                    });
                }
                sources::combine(readings)
            }
        };
        Observation {
            kind: Kind::PodEnv,
            name: format!("Pod {ns}/calico-node on {}", self.node),
            place: ns.to_string(),
            reading,
        }
    }

    /// What the calico-node container's environment says, following ConfigMaps: each exact
    /// name gets its value as kubelet builds it (envFrom in order, then env in order, a later
    /// one replacing an earlier one of the same exact name), and `sources::combine` reads the
    /// distinct names together, since Felix may go by any of them.
    async fn resolve(&self, ns: &str, origin: EnvOrigin) -> Reading {
        let mut maps: BTreeMap<String, Result<Option<ConfigMapData>, Failure>> = BTreeMap::new();
        let mut vars: BTreeMap<String, Reading> = BTreeMap::new();
        let mut unknown: Vec<Reading> = Vec::new();
        for f in origin.from {
            match f {
                EnvFrom::Secret { name } => unknown.push(Reading::Unreadable(
                    Reason::Unparseable,
                    format!("envFrom Secret {ns}/{name} may set FELIX_BPFENABLED and the sync reads no Secrets"),
                )),
                EnvFrom::ConfigMap {
                    name,
                    prefix,
                    optional,
                } => match self.config_map_once(&mut maps, ns, &name).await {
                    Err((r, d)) => unknown.push(Reading::Unreadable(r, d)),
                    Ok(None) if optional => {}
                    Ok(None) => unknown.push(Reading::Unreadable(
                        Reason::NotFound,
                        format!("envFrom needs ConfigMap {ns}/{name}, which is missing"),
                    )),
                    Ok(Some(data)) => {
                        for (k, v) in data {
                            let var = format!("{prefix}{k}");
                            if crate::felix::is_bpf_enabled_var(&var) {
                                let reading = sources::env_value(&var, &v);
                                vars.insert(var, reading);
                            }
                        }
                    }
                },
            }
        }
        for EnvEntry { var, source } in origin.env {
            let reading = match source {
                EnvSource::Literal(value) => Some(sources::env_value(&var, &value)),
                EnvSource::Unfollowable(what) => Some(Reading::Unreadable(
                    Reason::Unparseable,
                    format!("{var} comes from a {what}"),
                )),
                EnvSource::ConfigMapKey {
                    name,
                    key,
                    optional,
                } => match self.config_map_once(&mut maps, ns, &name).await {
                    Err((r, d)) => Some(Reading::Unreadable(r, d)),
                    Ok(data) => match (data.and_then(|d| d.get(&key).cloned()), optional) {
                        (Some(value), _) => Some(sources::env_value(&var, &value)),
                        // kubelet skips it: an earlier value of that name stays.
                        (None, true) => None,
                        (None, false) => Some(Reading::Unreadable(
                            Reason::NotFound,
                            format!(
                                "{var} needs ConfigMap {ns}/{name} key {key}, which is missing"
                            ),
                        )),
                    },
                },
            };
            if let Some(r) = reading {
                vars.insert(var, r);
            }
        }
        sources::combine(vars.into_values().chain(unknown))
    }

    /// A ConfigMap read at most once per evaluation.
    async fn config_map_once(
        &self,
        maps: &mut BTreeMap<String, Result<Option<ConfigMapData>, Failure>>,
        ns: &str,
        name: &str,
    ) -> Result<Option<ConfigMapData>, Failure> {
        if let Some(known) = maps.get(name) {
            return known.clone();
        }
        let got = self.config_map(ns, name).await;
        maps.insert(name.to_string(), got.clone());
        got
    }

    /// A ConfigMap's data, `None` when it does not exist.
    async fn config_map(&self, ns: &str, name: &str) -> Result<Option<ConfigMapData>, Failure> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), ns);
        match tokio::time::timeout(self.timeout, api.get_opt(name)).await {
            Err(_) => Err((
                Reason::Timeout,
                format!("ConfigMap {ns}/{name}: no answer within {:?}", self.timeout),
            )),
            Ok(Err(e)) => {
                let (r, d) = classify(&e);
                Err((r, format!("ConfigMap {ns}/{name}: {d}")))
            }
            Ok(Ok(cm)) => Ok(cm.map(|c| c.data.unwrap_or_default())),
        }
    }

    /// A 404 on a collection: the source is absent, unless the type was served earlier in
    /// this process and the hold is not over (see `absence`).
    fn not_served(&self, ar: &ApiResource, detail: &str) -> Reading {
        match self.absence.not_served(&type_key(ar), Instant::now()) {
            Verdict::Absent => Reading::Absent,
            Verdict::Holding { for_ } => Reading::Unreadable(
                Reason::NotFound,
                format!(
                    "{} was served earlier and has answered 404 for {:.1?}; it counts as \
                     absent after {:?}: {detail}",
                    type_key(ar),
                    for_,
                    self.absence.hold()
                ),
            ),
        }
    }

    /// `one`, remembering that the type answered.
    async fn one_of<K>(
        &self,
        ar: &ApiResource,
        api: Api<K>,
        name: &str,
    ) -> Result<Option<K>, Failure>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let got = self.one(api, name).await;
        if got.is_ok() {
            self.absence.served(&type_key(ar));
        }
        got
    }

    async fn felix(&self, group: &str, version: &str, name: String, kind: Kind) -> Observation {
        let ar = felix_resource(group, version);
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let reading = match self.one_of(&ar, api, &name).await {
            Err((Reason::NotFound, d)) => self.not_served(&ar, &d),
            Err((r, d)) => Reading::Unreadable(r, d),
            Ok(None) => Reading::NoValue,
            Ok(Some(obj)) => sources::bpf_enabled(&obj.data),
        };
        Observation {
            kind,
            name: format!("FelixConfiguration {name}"),
            place: ar.api_version,
            reading,
        }
    }

    async fn installation(&self) -> Observation {
        let ar = installation_resource();
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let reading = match self.one_of(&ar, api, "default").await {
            Err((Reason::NotFound, d)) => self.not_served(&ar, &d),
            Ok(None) => Reading::Absent,
            Err((r, d)) => Reading::Unreadable(r, d),
            Ok(Some(obj)) => sources::linux_dataplane(&obj.data),
        };
        Observation {
            kind: Kind::Installation,
            name: "Installation default".to_string(),
            place: ar.api_version,
            reading,
        }
    }
}
