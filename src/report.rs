//! What the guard tells people and machines: a table, one JSON document, log lines, and the
//! unit's status line. The same `Report` feeds all of them.

use std::path::PathBuf;

use serde::Serialize;

use crate::apply::Outcome;
use crate::decide::Ebpf;
use crate::interlock::Holder;
use crate::logging::{self, Level};
use crate::mode::Mode;
use crate::plan::Step;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kind: &'static str,
    pub id: Option<u32>,
    pub name: String,
    #[serde(rename = "where")]
    pub location: String,
    pub why: &'static str,
    /// None: planned only (dry run, check, or a refused sweep).
    #[serde(flatten)]
    pub outcome: Option<Outcome>,
}

impl Row {
    pub fn new(step: &Step, outcome: Option<Outcome>) -> Row {
        Row {
            kind: step.kind,
            id: step.id,
            name: step.name.clone(),
            location: step.location.clone(),
            why: step.reason,
            outcome,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Summary {
    pub planned: usize,
    pub removed: usize,
    pub already_gone: usize,
    pub kept: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub mode_file: PathBuf,
    pub mode: Option<Mode>,
    pub ebpf: Ebpf,
    /// What the guard decided and why, in one sentence.
    pub decision: String,
    pub dry_run: bool,
    pub objects: Vec<Row>,
    pub holders: Vec<Holder>,
    pub warnings: Vec<String>,
    /// What eBPF mode changed that the guard reports but does not change.
    pub notes: Vec<String>,
    pub summary: Summary,
}

impl Report {
    pub fn summarize(&mut self) {
        let mut s = Summary::default();
        for r in &self.objects {
            match &r.outcome {
                None => s.planned += 1,
                Some(Outcome::Removed) => s.removed += 1,
                Some(Outcome::AlreadyGone) => s.already_gone += 1,
                Some(Outcome::Kept(_)) => s.kept += 1,
                Some(Outcome::Failed(_)) => s.failed += 1,
            }
        }
        self.summary = s;
    }

    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        // Nothing listed: the decision says it all ("clean", "cannot tell: …", "nothing to do").
        if self.objects.is_empty() {
            return self.decision.clone();
        }
        if self.command == "check" || self.dry_run || s.planned > 0 {
            return format!("{}: {} Calico object(s) found", self.decision, s.planned);
        }
        format!(
            "{}: {} removed, {} already gone, {} kept, {} failed",
            self.decision, s.removed, s.already_gone, s.kept, s.failed
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let mode = match &self.mode {
            Some(m) => {
                let mut s = format!(
                    "{} (eBPF {})",
                    m.dataplane.name(),
                    if m.dataplane.ebpf_on() { "on" } else { "off" }
                );
                if let Some(src) = &m.source {
                    s += &format!(", source: {src}");
                }
                s
            }
            None => "no mode file".into(),
        };
        out += &format!("mode: {mode} [{}]\n", self.mode_file.display());
        for w in &self.warnings {
            out += &format!("warning: {w}\n");
        }
        for h in &self.holders {
            out += &format!("live: {h}\n");
        }
        if !self.objects.is_empty() {
            let headers = ["KIND", "ID", "NAME", "WHERE", "RESULT"];
            let rows: Vec<[String; 5]> = self
                .objects
                .iter()
                .map(|r| {
                    [
                        r.kind.to_string(),
                        r.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
                        r.name.clone(),
                        r.location.clone(),
                        result_text(&r.outcome),
                    ]
                })
                .collect();
            let mut widths = headers.map(str::len);
            for r in &rows {
                for (w, c) in widths.iter_mut().zip(r) {
                    *w = (*w).max(c.chars().count());
                }
            }
            let line = |cells: [&str; 5]| {
                let mut l = String::new();
                for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
                    if i == 4 {
                        l += c;
                    } else {
                        l += &format!("{c:<w$}  ");
                    }
                }
                l.trim_end().to_string() + "\n"
            };
            out += &line(headers);
            for (r, row) in rows.iter().zip(&self.objects) {
                out += &line([&r[0], &r[1], &r[2], &r[3], &r[4]]);
                out += &format!("    why: {}\n", row.why);
            }
        }
        for n in &self.notes {
            out += &format!("note: {n}\n");
        }
        out += &self.summary_line();
        out.push('\n');
        out
    }

    /// One log line per object acted on, then the summary as the unit's status.
    pub fn log(&self) {
        for r in &self.objects {
            let (level, verb) = match &r.outcome {
                Some(Outcome::Removed) => (Level::Notice, "removed".to_string()),
                Some(Outcome::AlreadyGone) => (Level::Info, "already gone".to_string()),
                Some(Outcome::Kept(why)) => (Level::Info, format!("kept ({why})")),
                Some(Outcome::Failed(e)) => (Level::Err, format!("FAILED to remove ({e})")),
                None => continue,
            };
            let id = r.id.map(|i| format!(" {i}")).unwrap_or_default();
            logging::log(
                level,
                &format!("{verb}: {}{id} {} at {}", r.kind, r.name, r.location),
            );
        }
        logging::log(Level::Notice, &self.summary_line());
        logging::notify_status(&self.summary_line());
    }
}

fn result_text(o: &Option<Outcome>) -> String {
    match o {
        None => "planned".into(),
        Some(Outcome::Removed) => "removed".into(),
        Some(Outcome::AlreadyGone) => "already gone".into(),
        Some(Outcome::Kept(why)) => format!("kept: {why}"),
        Some(Outcome::Failed(e)) => format!("FAILED: {e}"),
    }
}
