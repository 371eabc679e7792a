//! Watches on every source, so that a change in the cluster reaches the node in seconds without
//! polling: one `kube::runtime::watcher` per object, narrowed by `metadata.name` (this node's
//! calico-node pods by label and `spec.nodeName`), which resumes
//! from its resourceVersion after a break and lists again after a 410. A watch only wakes the
//! evaluation, and only when what matters changed (a DaemonSet's status changes with every pod
//! in the cluster; its calico-node env does not); it never decides. Its failures are counted
//! (`watch_broken`) and retried with a doubling delay; a resource type that is not served is
//! looked at again only after the re-evaluation interval, to spare the API server, unless this
//! watch saw it served: then it is likely coming back and is retried with the doubling delay.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::DynamicObject;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::cluster::{self, DAEMONSET};
use crate::logline;
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::sources;

/// Delays between retries of a broken watch.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
    /// For a resource type that is not served.
    pub absent: Duration,
}

struct Follow<K> {
    api: Api<K>,
    /// The field selector (`metadata.name=<name>`, or the node for pods).
    fields: String,
    /// A label selector, if any.
    labels: Option<&'static str>,
    label: String,
    fingerprint: fn(&K) -> String,
}

fn daemonset_env(ds: &DaemonSet) -> String {
    format!("{:?}", sources::env_origin(ds))
}

fn pod_env(pod: &Pod) -> String {
    format!("{:?}", sources::pod_env_origin(pod))
}

fn felix_bpf(o: &DynamicObject) -> String {
    format!("{:?}", sources::bpf_enabled(&o.data))
}

fn installation_dataplane(o: &DynamicObject) -> String {
    format!("{:?}", sources::linux_dataplane(&o.data))
}

/// Starts a watch on every source; each wakes `trigger` when its object changes.
pub fn start(
    client: &Client,
    node: &str,
    namespaces: &[String],
    backoff: Backoff,
    trigger: Arc<Notify>,
    metrics: Arc<Metrics>,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    for ns in namespaces {
        let f = Follow {
            api: Api::<DaemonSet>::namespaced(client.clone(), ns),
            fields: format!("metadata.name={DAEMONSET}"),
            labels: None,
            label: format!("DaemonSet {ns}/{DAEMONSET}"),
            fingerprint: daemonset_env,
        };
        set.spawn(follow(f, backoff, trigger.clone(), metrics.clone()));
        let f = Follow {
            api: Api::<Pod>::namespaced(client.clone(), ns),
            fields: format!("spec.nodeName={node}"),
            labels: Some(cluster::CALICO_NODE_LABEL),
            label: format!("Pod {ns}/calico-node on {node}"),
            fingerprint: pod_env,
        };
        set.spawn(follow(f, backoff, trigger.clone(), metrics.clone()));
    }
    for (group, version) in cluster::FELIX_GROUPS {
        let ar = cluster::felix_resource(group, version);
        for name in [format!("node.{node}"), "default".to_string()] {
            let f = Follow {
                api: Api::<DynamicObject>::all_with(client.clone(), &ar),
                label: format!("FelixConfiguration {name} ({})", ar.api_version),
                fields: format!("metadata.name={name}"),
                labels: None,
                fingerprint: felix_bpf,
            };
            set.spawn(follow(f, backoff, trigger.clone(), metrics.clone()));
        }
    }
    let ar = cluster::installation_resource();
    let f = Follow {
        api: Api::<DynamicObject>::all_with(client.clone(), &ar),
        fields: "metadata.name=default".to_string(),
        labels: None,
        label: "Installation default".to_string(),
        fingerprint: installation_dataplane,
    };
    set.spawn(follow(f, backoff, trigger, metrics));
    set
}

async fn follow<K>(f: Follow<K>, backoff: Backoff, trigger: Arc<Notify>, metrics: Arc<Metrics>)
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let mut config = watcher::Config::default().fields(&f.fields).any_semantic();
    if let Some(labels) = f.labels {
        config = config.labels(labels);
    }
    let mut stream = watcher::watcher(f.api, config).boxed();
    // What the object said when last seen: None before the first list, Some(None) if absent.
    let mut last: Option<Option<String>> = None;
    let mut listing: Option<String> = None;
    let mut delay = backoff.min;
    let mut told_absent = false;
    let mut served = false;
    while let Some(item) = stream.next().await {
        let seen = match item {
            Ok(event) => {
                delay = backoff.min;
                told_absent = false;
                served = true;
                match event {
                    Event::Init => {
                        listing = None;
                        continue;
                    }
                    Event::InitApply(o) => {
                        listing = Some((f.fingerprint)(&o));
                        continue;
                    }
                    Event::InitDone => listing.take(),
                    Event::Apply(o) => Some((f.fingerprint)(&o)),
                    Event::Delete(_) => None,
                }
            }
            Err(e) => {
                let (reason, detail) = match &e {
                    watcher::Error::InitialListFailed(k)
                    | watcher::Error::WatchStartFailed(k)
                    | watcher::Error::WatchFailed(k) => cluster::classify(k),
                    watcher::Error::WatchError(s) => (
                        Reason::ServerError,
                        format!("{} {}: {}", s.code, s.reason, s.message),
                    ),
                    watcher::Error::NoResourceVersion => (
                        Reason::Unparseable,
                        "no resourceVersion in the list".to_string(),
                    ),
                };
                let wait = if reason == Reason::NotFound {
                    // The type went away (a CRD removed): that changes what exists.
                    if last != Some(None) {
                        last = Some(None);
                        trigger.notify_one();
                    }
                    let again = if served {
                        let d = delay;
                        delay = (delay * 2).min(backoff.max);
                        d
                    } else {
                        backoff.absent
                    };
                    if !told_absent {
                        logline::info(&format!(
                            "watch {}: resource type not served; looking again in {again:?}",
                            f.label
                        ));
                        told_absent = true;
                    }
                    again
                } else {
                    metrics.failed(Reason::WatchBroken);
                    logline::warn(&format!(
                        "watch {}: {reason}: {detail}; retrying in {delay:?}",
                        f.label
                    ));
                    let d = delay;
                    delay = (delay * 2).min(backoff.max);
                    d
                };
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        if last.as_ref() != Some(&seen) {
            last = Some(seen);
            trigger.notify_one();
        }
    }
}
