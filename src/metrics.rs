//! Prometheus metrics for node_exporter's textfile collector: what the last `check` or `sweep`
//! saw and did, produced from the report once a run ends (its header's mode and its summary's
//! counts by family), every series labelled with its `command` so a sweep's file and a check's
//! can share a textfile directory. Written atomically, since node_exporter reads the directory
//! at every scrape: it never leaves half a file, and a failure to write never costs the run its
//! exit code.

use std::fmt::Write as _;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::decide::Ebpf;
use crate::kernel::tree::{is_refused, Dir};
use crate::logging::{self, Level};
use crate::plan::Family;
use crate::report::{Families, Report, Summary};
use modefile::Dataplane;

/// How a run ended, as its exit code says (the codes themselves are `run`'s, where the process
/// ends): what the `result` label is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Exit 0.
    Ok,
    /// Sweep: something failed or was refused; check: stale objects.
    Failed,
    /// Check only: it could not tell.
    CannotTell,
    /// An invalid config or mode file: nothing was touched.
    InvalidInput,
}

/// What a run saw, filled in as it goes; rendered once at its end.
#[derive(Debug)]
pub struct Seen {
    command: &'static str,
    started: SystemTime,
    clock: Instant,
    /// The mode file's dataplane (None: no mode file) and what it means; None when the mode
    /// file could not be read.
    mode: Option<(Option<Dataplane>, Ebpf)>,
    /// Whether the scan saw everything it was configured to look at; None: no scan.
    complete: Option<bool>,
    /// The report's rows by family; None when no report of objects was made.
    families: Option<Families>,
    refused: bool,
    /// Whether a sweep that did not finish left the RCU expediting switch set; None: not looked.
    rcu_left_set: Option<bool>,
}

impl Seen {
    pub fn start(command: &'static str) -> Seen {
        Seen {
            command,
            started: SystemTime::now(),
            clock: Instant::now(),
            mode: None,
            complete: None,
            families: None,
            refused: false,
            rcu_left_set: None,
        }
    }

    /// Whether the RCU expediting switch is left set by a sweep that did not finish.
    pub fn rcu_left_set(&mut self, left: bool) {
        self.rcu_left_set = Some(left);
    }

    pub fn report(&mut self, r: &Report) {
        self.mode = Some((r.mode.as_ref().map(|m| m.dataplane), r.ebpf));
    }

    /// A scan that failed as a whole: nothing is known about the objects.
    pub fn scan_failed(&mut self) {
        self.complete = Some(false);
    }

    /// The report's summary after a scan; `complete`: nothing was left uninspected.
    pub fn scanned(&mut self, complete: bool, summary: &Summary) {
        self.complete = Some(complete);
        self.families = Some(summary.families.clone());
    }

    /// The sweep found a live eBPF dataplane and did nothing.
    pub fn refused(&mut self) {
        self.refused = true;
    }

    /// Write the file; a failure is logged and costs no exit code: metrics must never be the
    /// reason a sweep, and so kubelet, fails.
    pub fn write(self, path: &Path, exit_code: u8, ended: Ended) {
        let text = render(&self, self.clock.elapsed(), exit_code, ended);
        if let Err(e) = write_file(path, &text) {
            logging::log(
                Level::Warning,
                &format!("cannot write metrics to {}: {e}", crate::names::path(path)),
            );
        }
    }
}

/// Write through a directory fd reached without symlinks (see `Dir::open_path`): the textfile
/// directory usually belongs to node_exporter's user, who could otherwise put a symlink in its
/// place and have root write a 0644 file wherever it points.
fn write_file(path: &Path, text: &str) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A missing directory is not made: under the unit's umask 0077 node_exporter could not
    // read it. It is a setup error to report.
    let dir = Dir::open_path(dir).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => {
            io::Error::new(io::ErrorKind::NotFound, "its directory does not exist")
        }
        _ if is_refused(&e) => io::Error::other(format!(
            "{}: a symlink or another mount on the way to its directory, not followed",
            crate::names::path(dir)
        )),
        _ => e,
    })?;
    // 0644: node_exporter runs as its own user.
    dir.replace_file(name, text.as_bytes(), 0o644)
}

/// What the run came to, as the `result` label.
fn result(seen: &Seen, ended: Ended) -> &'static str {
    let removed = seen
        .families
        .as_ref()
        .is_some_and(|f| f.removed.iter().sum::<usize>() > 0);
    match (seen.command, ended) {
        (_, Ended::InvalidInput) => "invalid_input",
        ("check", Ended::Ok) => "ok",
        ("check", Ended::CannotTell) => "cannot_tell",
        ("check", _) => "stale",
        (_, _) if seen.refused => "refused",
        (_, Ended::Ok) if seen.complete.is_none() => "skipped",
        (_, Ended::Ok) if removed => "swept",
        (_, Ended::Ok) => "clean",
        _ => "failed",
    }
}

const PREFIX: &str = "calico_bpf_guard_";

/// One gauge: its HELP and TYPE lines, then one sample per (labels, value).
fn gauge(out: &mut String, name: &str, help: &str, samples: &[(String, String)]) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {PREFIX}{name} {help}");
    let _ = writeln!(out, "# TYPE {PREFIX}{name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{PREFIX}{name}{{{labels}}} {value}");
    }
}

/// The file's text (Prometheus text format 0.0.4). Label values come from fixed sets of
/// names, so none needs escaping.
pub fn render(seen: &Seen, duration: Duration, exit_code: u8, ended: Ended) -> String {
    let cmd = format!("command=\"{}\"", seen.command);
    let one = |labels: String, value: String| vec![(labels, value)];
    let by_family = |counts: &[usize; Family::ALL.len()]| -> Vec<(String, String)> {
        Family::ALL
            .iter()
            .map(|f| {
                (
                    format!("{cmd},family=\"{}\"", f.name()),
                    counts[f.index()].to_string(),
                )
            })
            .collect()
    };
    let mut out = String::new();
    let started = seen
        .started
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    gauge(
        &mut out,
        "last_run_timestamp_seconds",
        "When the last run of the command started, in seconds since the Unix epoch.",
        &one(cmd.clone(), format!("{started:.3}")),
    );
    gauge(
        &mut out,
        "last_run_duration_seconds",
        "How long the last run of the command took.",
        &one(cmd.clone(), format!("{:.6}", duration.as_secs_f64())),
    );
    gauge(
        &mut out,
        "last_run_exit_code",
        "The last run's exit code (sweep: 0 done, 1 failed or refused; check: 0 ok, 1 stale, 2 cannot tell; 78 an invalid mode file).",
        &one(cmd.clone(), exit_code.to_string()),
    );
    gauge(
        &mut out,
        "last_run_result",
        "What the last run came to, as its result label (sweep: clean, swept, skipped, refused, failed; check: ok, stale, cannot_tell; both: invalid_input).",
        &one(
            format!("{cmd},result=\"{}\"", result(seen, ended)),
            "1".into(),
        ),
    );
    if let Some((dataplane, ebpf)) = seen.mode {
        let ebpf = match ebpf {
            Ebpf::On => "on",
            Ebpf::Off => "off",
            Ebpf::Unknown => "unknown",
        };
        let dataplane = dataplane.map_or_else(|| "missing".to_string(), |d| d.to_string());
        gauge(
            &mut out,
            "mode",
            "The node's mode as the guard read it: the mode file's dataplane (`missing`: no mode file; `none`: Calico is not this node's dataplane) and whether that means eBPF is on, off or unknown.",
            &one(
                format!("{cmd},dataplane=\"{dataplane}\",ebpf=\"{ebpf}\""),
                "1".into(),
            ),
        );
    }
    if let Some(complete) = seen.complete {
        gauge(
            &mut out,
            "scan_complete",
            "1 if the last run inspected every place it was configured to look at; 0 if some could not be read (its stale counts are then a lower bound) or the scan failed.",
            &one(cmd.clone(), u8::from(complete).to_string()),
        );
    }
    if let Some(left) = seen.rcu_left_set {
        gauge(
            &mut out,
            "rcu_expedited_left_set",
            "1 if a sweep that did not finish left /sys/kernel/rcu_expedited at the value it wrote (grace periods stay expedited, machine-wide, until the next sweep), else 0.",
            &one(cmd.clone(), u8::from(left).to_string()),
        );
    }
    if let Some(f) = &seen.families {
        gauge(
            &mut out,
            "stale_objects",
            "Calico eBPF objects the last run found while eBPF was not on: for check, those present; for sweep, those still present after it.",
            &by_family(&f.stale),
        );
        if seen.command == "sweep" {
            gauge(
                &mut out,
                "removed_objects",
                "Calico eBPF objects the last sweep removed.",
                &by_family(&f.removed),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::Outcome;
    use crate::plan::StepKind::*;

    fn seen(command: &'static str) -> Seen {
        let mut s = Seen::start(command);
        s.started = UNIX_EPOCH + Duration::from_millis(1_764_510_000_250);
        s
    }

    #[test]
    fn a_sweep_renders_every_family() {
        let mut s = seen("sweep");
        s.mode = Some((Some(Dataplane::Iptables), Ebpf::Off));
        let mut summary = Summary::default();
        let f = &mut summary.families;
        f.count(TcFilter, "cali1 ingress", Some(&Outcome::Removed));
        f.count(TcFilter, "cali1 egress", Some(&Outcome::Removed));
        f.count(
            Link,
            "cali1 tcx ingress (link 2)",
            Some(&Outcome::Failed("x".into())),
        );
        f.count(MapPin, "/b/tc/globals/m", Some(&Outcome::AlreadyGone));
        f.count(
            Device,
            "here",
            Some(&Outcome::Kept("no longer a veth".into())),
        );
        f.count(
            ReScan,
            "every configured root",
            Some(&Outcome::Failed("x".into())),
        );
        s.scanned(true, &summary);
        let text = render(&s, Duration::from_micros(1500), 1, Ended::Failed);
        for want in [
            "# HELP calico_bpf_guard_last_run_timestamp_seconds ",
            "# TYPE calico_bpf_guard_last_run_timestamp_seconds gauge\n",
            "calico_bpf_guard_last_run_timestamp_seconds{command=\"sweep\"} 1764510000.250\n",
            "calico_bpf_guard_last_run_duration_seconds{command=\"sweep\"} 0.001500\n",
            "calico_bpf_guard_last_run_exit_code{command=\"sweep\"} 1\n",
            "calico_bpf_guard_last_run_result{command=\"sweep\",result=\"failed\"} 1\n",
            "calico_bpf_guard_mode{command=\"sweep\",dataplane=\"iptables\",ebpf=\"off\"} 1\n",
            "calico_bpf_guard_scan_complete{command=\"sweep\"} 1\n",
            "calico_bpf_guard_stale_objects{command=\"sweep\",family=\"tcx\"} 1\n",
            "calico_bpf_guard_stale_objects{command=\"sweep\",family=\"tc\"} 0\n",
            "calico_bpf_guard_removed_objects{command=\"sweep\",family=\"tc\"} 2\n",
            "calico_bpf_guard_removed_objects{command=\"sweep\",family=\"map\"} 0\n",
            "calico_bpf_guard_removed_objects{command=\"sweep\",family=\"device\"} 0\n",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        // Every family once per gauge, and a HELP and TYPE line per gauge.
        let samples = |name: &str| text.lines().filter(|l| l.starts_with(name)).count();
        assert_eq!(
            samples("calico_bpf_guard_stale_objects{"),
            Family::ALL.len()
        );
        assert_eq!(
            samples("calico_bpf_guard_removed_objects{"),
            Family::ALL.len()
        );
        assert_eq!(samples("# HELP "), samples("# TYPE "));
        assert_eq!(samples("# TYPE "), 8);
    }

    #[test]
    fn what_was_not_seen_is_not_rendered() {
        // A check on a node whose mode file says bpf: no scan, so no counts and no
        // completeness, and a check never reports removals.
        let mut s = seen("check");
        s.mode = Some((Some(Dataplane::Bpf), Ebpf::On));
        let text = render(&s, Duration::ZERO, 0, Ended::Ok);
        assert!(text.contains("result=\"ok\"} 1\n"), "{text}");
        assert!(
            text.contains("dataplane=\"bpf\",ebpf=\"on\"} 1\n"),
            "{text}"
        );
        for absent in ["scan_complete", "stale_objects", "removed_objects"] {
            assert!(!text.contains(absent), "{absent} in\n{text}");
        }
        // An invalid mode file: no mode either.
        let text = render(&seen("sweep"), Duration::ZERO, 78, Ended::InvalidInput);
        assert!(text.contains("result=\"invalid_input\"} 1\n"), "{text}");
        assert!(!text.contains("_mode{"), "{text}");
        // No mode file: dataplane none.
        let mut s = seen("check");
        s.mode = Some((None, Ebpf::Unknown));
        s.scan_failed();
        let text = render(&s, Duration::ZERO, 2, Ended::CannotTell);
        assert!(
            text.contains("dataplane=\"missing\",ebpf=\"unknown\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("scan_complete{command=\"check\"} 0\n"),
            "{text}"
        );
        assert!(!text.contains("stale_objects"), "{text}");
    }

    #[test]
    fn results() {
        let with = |command, refused, scanned: Option<bool>, removed: bool| {
            let mut s = seen(command);
            s.refused = refused;
            if let Some(complete) = scanned {
                let mut summary = Summary::default();
                if removed {
                    summary.families.count(Device, "", Some(&Outcome::Removed));
                }
                s.scanned(complete, &summary);
            }
            s
        };
        let cases = [
            (with("sweep", false, None, false), Ended::Ok, "skipped"),
            (with("sweep", false, Some(true), false), Ended::Ok, "clean"),
            (with("sweep", false, Some(true), true), Ended::Ok, "swept"),
            (
                with("sweep", true, Some(true), false),
                Ended::Failed,
                "refused",
            ),
            (
                with("sweep", false, Some(false), true),
                Ended::Failed,
                "failed",
            ),
            (with("sweep", false, None, false), Ended::Failed, "failed"),
            (
                with("sweep", false, None, false),
                Ended::InvalidInput,
                "invalid_input",
            ),
            (with("check", false, Some(true), false), Ended::Ok, "ok"),
            (
                with("check", false, Some(true), false),
                Ended::Failed,
                "stale",
            ),
            (
                with("check", false, Some(false), false),
                Ended::CannotTell,
                "cannot_tell",
            ),
            (
                with("check", false, None, false),
                Ended::InvalidInput,
                "invalid_input",
            ),
        ];
        for (s, ended, want) in cases {
            assert_eq!(result(&s, ended), want, "{s:?} {ended:?}");
        }
    }
}
