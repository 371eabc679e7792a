//! The sync's metrics and probe state, in the Prometheus/OpenMetrics text format (the
//! `prometheus-client` crate): the last successful sync as a timestamp, failures by reason,
//! the value in the mode file and what decided it, and which Calico sources exist. It records
//! and renders; it never decides.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::reason::Reason;
use crate::sources::{Observation, Reading};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabels {
    dataplane: String,
    /// The mode file's own `source` (a Calico source is another thing: `source_present`).
    written_by: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: String,
    place: String,
}

pub struct Metrics {
    registry: Registry,
    last_success: Gauge<f64, AtomicU64>,
    failures: Family<ReasonLabel, Counter>,
    writes: Counter,
    mode: Family<ModeLabels, Gauge>,
    present: Family<SourceLabels, Gauge>,
    conflict: Gauge,
    /// `/readyz`: an evaluation finished and the last one was not kept for a reason of this
    /// pod's own (see `Reason::pod_side`).
    ready: AtomicBool,
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("calico_bpf_guard_sync");
        let last_success = Gauge::<f64, AtomicU64>::default();
        let failures = Family::<ReasonLabel, Counter>::default();
        let writes = Counter::default();
        let mode = Family::<ModeLabels, Gauge>::default();
        let present = Family::<SourceLabels, Gauge>::default();
        let conflict = Gauge::default();
        registry.register(
            "last_success_timestamp_seconds",
            "When an evaluation last decided (wrote the mode file or found it right), Unix time",
            last_success.clone(),
        );
        registry.register(
            "failures",
            "Evaluations that kept the cached mode, and broken watches, by reason",
            failures.clone(),
        );
        registry.register("writes", "Writes of the mode file", writes.clone());
        registry.register(
            "mode_info",
            "1 for the value in the mode file and its source (what wrote it)",
            mode.clone(),
        );
        registry.register(
            "override_conflict",
            "1 while the override says eBPF off and a readable cluster source says on, or the \
             override says bpf and the cluster says off",
            conflict.clone(),
        );
        registry.register(
            "source_present",
            "1 if a Calico source exists in the cluster, 0 if its resource type or object is absent",
            present.clone(),
        );
        // Every reason is there from the start, at 0, so that an alert's rate() has a series.
        for r in Reason::ALL {
            drop(failures.get_or_create(&ReasonLabel {
                reason: r.to_string(),
            }));
        }
        Metrics {
            registry,
            last_success,
            failures,
            writes,
            mode,
            present,
            conflict,
            ready: AtomicBool::new(false),
        }
    }

    pub fn failed(&self, reason: Reason) {
        self.failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn decided(&self) {
        self.last_success.set(now());
        self.ready.store(true, Ordering::Relaxed);
    }

    /// A kept evaluation. Not ready only for a reason of the pod's own: a cluster-side one
    /// (the API or Calico down, no Calico at all) would turn every pod of the DaemonSet
    /// NotReady at once and say nothing about this pod; the failures metric and the last
    /// success timestamp are for those.
    pub fn kept(&self, reason: Reason) {
        self.failed(reason);
        self.ready.store(!reason.pod_side(), Ordering::Relaxed);
    }

    pub fn override_conflict(&self, on: bool) {
        self.conflict.set(i64::from(on));
    }

    pub fn wrote(&self) {
        self.writes.inc();
    }

    /// The mode file says `dataplane` with this `source`, or there is none.
    pub fn mode(&self, now: Option<(&str, &str)>) {
        self.mode.clear();
        if let Some((dataplane, written_by)) = now {
            self.mode
                .get_or_create(&ModeLabels {
                    dataplane: dataplane.to_string(),
                    written_by: written_by.to_string(),
                })
                .set(1);
        }
    }

    pub fn sources(&self, observations: &[Observation]) {
        for o in observations {
            let there = !matches!(o.reading, Reading::Absent);
            self.present
                .get_or_create(&SourceLabels {
                    source: o.name.clone(),
                    place: o.place.clone(),
                })
                .set(i64::from(there));
        }
    }

    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
