//! The loop: evaluate (override, sources, decision, mode file), then wait for whichever comes
//! first: a watch event, an edit of the override, the periodic re-evaluation, the retry after
//! a failure, or SIGTERM (also seen while the cluster is read, never during the write). Under
//! an override the cluster is still read, to say when the two disagree. Also `--once`. It owns the API client and drops it after a 401, so the
//! next attempt reads the service-account token again at once (kube-rs itself re-reads a token
//! file only about once a minute). The rules themselves live in `decide`.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};

use crate::absence::Absence;
use crate::cli::Args;
use crate::cluster::Cluster;
use crate::decide::{decide, Decision, Override};
use crate::logline;
use crate::metrics::Metrics;
use crate::modecache::{self, Applied};
use crate::override_file;
use crate::reason::Reason;
use crate::sources::{Observation, Reading};
use crate::watch;

/// Turns true on SIGTERM or SIGINT.
pub type StopReceiver = tokio::sync::watch::Receiver<bool>;

/// How one evaluation ended; `--once` turns it into the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Unchanged,
    Kept(Reason),
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Written => 0,
            Outcome::Unchanged => 3,
            Outcome::Kept(_) => 1,
        }
    }
}

pub struct Sync {
    args: Args,
    metrics: Arc<Metrics>,
    client: Option<Client>,
    last_override: Override,
    last_present: Vec<(String, bool)>,
    /// What the override contradicts in the cluster, when it does.
    last_conflict: Option<String>,
    absence: Arc<Absence>,
}

async fn connect(args: &Args) -> Result<Client, String> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => Config::infer().await.map_err(|e| e.to_string())?,
    };
    Client::try_from(config).map_err(|e| e.to_string())
}

/// `d` plus up to a fifth more, so that a fleet restarted together does not ask together.
fn jitter(d: Duration) -> Duration {
    let r = RandomState::new().hash_one(Instant::now()) % 1000;
    d + d.mul_f64(r as f64 / 5000.0)
}

impl Sync {
    pub fn new(args: Args, metrics: Arc<Metrics>) -> Self {
        let sync = Sync {
            metrics,
            client: None,
            last_override: Override::Auto,
            last_present: Vec::new(),
            last_conflict: None,
            absence: Arc::new(Absence::new(args.absent_hold)),
            args,
        };
        sync.show_mode();
        sync
    }

    fn say_sources(&mut self, observations: &[Observation]) {
        let present: Vec<(String, bool)> = observations
            .iter()
            .map(|o| {
                (
                    format!("{} ({})", o.name, o.place),
                    o.reading != Reading::Absent,
                )
            })
            .collect();
        if present != self.last_present {
            let list = |want: bool| {
                let v: Vec<&str> = present
                    .iter()
                    .filter(|(_, p)| *p == want)
                    .map(|(n, _)| n.as_str())
                    .collect();
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            logline::info(&format!(
                "sources present: {}; absent: {}",
                list(true),
                list(false)
            ));
            self.last_present = present;
        }
    }

    fn keep(&self, reason: Reason, detail: &str) -> Outcome {
        let cached = match modecache::cached(&self.args.mode_file) {
            Ok(Some(m)) => m.dataplane.to_string(),
            Ok(None) => "no mode file".to_string(),
            Err(e) => format!("an unreadable mode file ({e})"),
        };
        logline::warn(&format!("keeping {cached}: {reason}: {detail}"));
        self.metrics.kept(reason);
        Outcome::Kept(reason)
    }

    /// What the mode file says now, for the metric: also what an admin's `mode set` wrote.
    fn show_mode(&self) {
        match modecache::cached(&self.args.mode_file) {
            Ok(Some(m)) => self.metrics.mode(Some((
                &m.dataplane.to_string(),
                m.source.as_deref().unwrap_or(""),
            ))),
            Ok(None) => self.metrics.mode(None),
            Err(e) => logline::warn(&format!("mode file: {e}")),
        }
    }

    /// One evaluation, start to end; `None` when `stop` turned true while the cluster was
    /// read (never while the mode file is written).
    pub async fn evaluate(&mut self, stop: Option<&mut StopReceiver>) -> Option<Outcome> {
        let over = override_file::read(Some(&self.args.override_file));
        self.last_override = over.clone();
        let outcome = match over {
            Override::Auto => {
                self.conflict(None);
                match self.observe(stop).await? {
                    Err(e) => self.keep(Reason::Unreachable, &format!("no API client: {e}")),
                    Ok(observations) => self.conclude(&over, &observations),
                }
            }
            Override::Fixed(fixed) => {
                // The override is written first, never held up by the API; the cluster is
                // still read, only to say when the two disagree (an override left on).
                let outcome = self.conclude(&over, &[]);
                if let Ok(observations) = self.observe(stop).await? {
                    match decide(&Override::Auto, &observations) {
                        Decision::Write { dataplane, because }
                            if dataplane.ebpf_on() != fixed.ebpf_on() =>
                        {
                            self.conflict(Some(format!(
                                "the override dataplane={fixed} overrules the cluster, which \
                                 says {dataplane} ({because}); set it to auto once it is no \
                                 longer needed"
                            )))
                        }
                        Decision::Write { .. } => self.conflict(None),
                        // The cluster's word is not known: the last judgement stands.
                        Decision::Keep { .. } => {}
                    }
                }
                outcome
            }
            Override::Invalid(_) => self.conclude(&over, &[]),
        };
        self.show_mode();
        Some(outcome)
    }

    /// Says so (and sets the gauge) when the override starts or stops contradicting the cluster.
    fn conflict(&mut self, now: Option<String>) {
        if now != self.last_conflict {
            match &now {
                Some(what) => logline::warn(what),
                None if self.last_conflict.is_some() => {
                    logline::info("the override no longer contradicts the cluster")
                }
                None => {}
            }
        }
        self.metrics.override_conflict(now.is_some());
        self.last_conflict = now;
    }

    /// Every source, read through the API; `None` when `stop` turned true meanwhile, `Err` when
    /// there is no client.
    async fn observe(
        &mut self,
        stop: Option<&mut StopReceiver>,
    ) -> Option<Result<Vec<Observation>, String>> {
        if self.client.is_none() {
            match connect(&self.args).await {
                Ok(c) => self.client = Some(c),
                Err(e) => return Some(Err(e)),
            }
        }
        let client = self.client.clone()?;
        let cluster = Cluster {
            client,
            node: self.args.node().to_string(),
            namespaces: self.args.namespaces.clone(),
            timeout: self.args.request_timeout,
            absence: self.absence.clone(),
        };
        let observations = match stop {
            Some(stop) => tokio::select! {
                o = cluster.observe() => o,
                _ = stop.changed() => return None,
            },
            None => cluster.observe().await,
        };
        self.metrics.sources(&observations);
        self.say_sources(&observations);
        if observations
            .iter()
            .any(|o| matches!(o.reading, Reading::Unreadable(Reason::Unauthorized, _)))
        {
            // A rotated token: the next client reads the file again.
            self.client = None;
        }
        Some(Ok(observations))
    }

    /// The decision, and the write it calls for. No await: nothing can stop it halfway.
    fn conclude(&mut self, over: &Override, observations: &[Observation]) -> Outcome {
        match decide(over, observations) {
            Decision::Keep { reason, detail } => self.keep(reason, &detail),
            Decision::Write { dataplane, because } => {
                match modecache::apply(&self.args.mode_file, dataplane, &because) {
                    Err(e) => self.keep(Reason::WriteFailed, &e),
                    Ok(Applied::Written { before }) => {
                        logline::info(&format!("wrote {dataplane} (was {before}): {because}"));
                        self.metrics.wrote();
                        self.metrics.decided();
                        Outcome::Written
                    }
                    Ok(Applied::Unchanged) => {
                        logline::info(&format!("unchanged {dataplane}: {because}"));
                        self.metrics.decided();
                        Outcome::Unchanged
                    }
                }
            }
        }
    }

    /// Evaluate, wait, again, until `stop` turns true.
    pub async fn run(mut self, mut stop: StopReceiver) {
        let trigger = Arc::new(Notify::new());
        let mut watches: Option<JoinSet<()>> = None;
        let mut failures: u32 = 0;
        let backoff = watch::Backoff {
            min: self.args.retry_min,
            max: self.args.retry_max,
            absent: self.args.resync,
        };
        loop {
            let Some(outcome) = self.evaluate(Some(&mut stop)).await else {
                return;
            };
            // Watches follow the client: none without one (a 401 dropped it), new with a new
            // one. They run under an override too, which still reads the cluster.
            match &self.client {
                Some(client) => {
                    if watches.is_none() {
                        watches = Some(watch::start(
                            client,
                            self.args.node(),
                            &self.args.namespaces,
                            backoff,
                            trigger.clone(),
                            self.metrics.clone(),
                        ));
                    }
                }
                _ => watches = None,
            }
            let wait = match outcome {
                Outcome::Kept(_) => {
                    failures = failures.saturating_add(1);
                    let exp = self
                        .args
                        .retry_min
                        .saturating_mul(1 << failures.min(20).saturating_sub(1));
                    jitter(exp.min(self.args.retry_max))
                }
                _ => {
                    failures = 0;
                    jitter(self.args.resync)
                }
            };
            let deadline = Instant::now() + wait;
            loop {
                tokio::select! {
                    _ = sleep_until(deadline) => break,
                    _ = trigger.notified() => {
                        tokio::select! {
                            _ = sleep(self.args.settle) => {}
                            _ = stop.changed() => return,
                        }
                        break;
                    }
                    _ = sleep(self.args.override_poll) => {
                        if override_file::read(Some(&self.args.override_file)) != self.last_override {
                            break;
                        }
                    }
                    _ = stop.changed() => return,
                }
            }
        }
    }
}
