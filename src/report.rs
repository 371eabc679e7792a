//! What the guard tells people and machines: a table, one JSON document, log lines, and the
//! unit's status line. The same `Report` and rows feed all of them, written as they come, and
//! counted by family for the metrics. It never keeps the rows themselves, and a closed stdout
//! never stops a sweep.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use serde::Serialize;

use crate::apply::Outcome;
use crate::decide::Ebpf;
use crate::interlock::Holder;
use crate::kernel::bpf::Features;
use crate::logging::{self, one_line, Level};
use crate::plan::{Family, Step, StepKind};
use modefile::Mode;

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub kind: StepKind,
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
    /// The same rows by family, for the metrics file.
    #[serde(skip)]
    pub families: Families,
}

/// Rows counted by family, as the report streams them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Families {
    /// Still there: planned but not acted on (check, a refused sweep), or failed to go.
    pub stale: [usize; Family::ALL.len()],
    pub removed: [usize; Family::ALL.len()],
}

impl Families {
    pub fn count(&mut self, kind: StepKind, location: &str, outcome: Option<&Outcome>) {
        let Some(f) = Family::of(kind, location) else {
            return;
        };
        match outcome {
            None | Some(Outcome::Failed(_)) => self.stale[f.index()] += 1,
            Some(Outcome::Removed) => self.removed[f.index()] += 1,
            // Gone before the guard came, or no longer Calico's: neither removed nor stale.
            Some(Outcome::AlreadyGone | Outcome::Kept(_)) => {}
        }
    }
}

/// What is known before the first row: the header of every form of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub mode_file: PathBuf,
    pub mode: Option<Mode>,
    pub ebpf: Ebpf,
    pub dry_run: bool,
    /// What this kernel can have; a family it cannot have (tcx before 6.6) was not looked for.
    /// None when nothing was scanned.
    pub kernel: Option<Features>,
    pub holders: Vec<Holder>,
    pub warnings: Vec<String>,
    /// What eBPF mode changed that the guard reports but does not change.
    pub notes: Vec<String>,
}

/// Where rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    /// Nothing on stdout: under the unit, stdout is the journal, where the log lines already
    /// name every object.
    Silent,
}

/// The report being written: header first, then one row at a time as the sweep produces them,
/// then the decision and summary. Nothing is kept per row but the counts: on a node with
/// thousands of Calico objects the whole report as text would cost megabytes.
pub struct Writer<'a> {
    report: &'a Report,
    format: Format,
    out: BufWriter<Box<dyn Write + 'a>>,
    /// Column widths of KIND, ID, NAME and WHERE, from the plan.
    widths: [usize; 4],
    rows: usize,
    log_rows: bool,
    summary: Summary,
}

const HEADERS: [&str; 5] = ["KIND", "ID", "NAME", "WHERE", "RESULT"];

fn id_text(id: Option<u32>) -> String {
    id.map(|i| i.to_string()).unwrap_or_else(|| "-".into())
}

impl Report {
    /// Write the header on stdout. `planned` sizes the table's columns; `log_rows` logs every
    /// object acted on, as it is.
    pub fn start(&self, format: Format, log_rows: bool, planned: &[Step]) -> Writer<'_> {
        self.start_to(
            Box::new(std::io::stdout().lock()),
            format,
            log_rows,
            planned,
        )
    }

    /// As `start`, to any writer (the golden tests render into memory).
    pub fn start_to<'a>(
        &'a self,
        out: Box<dyn Write + 'a>,
        format: Format,
        log_rows: bool,
        planned: &[Step],
    ) -> Writer<'a> {
        let mut widths = [0; 4];
        for (w, h) in widths.iter_mut().zip(HEADERS) {
            *w = h.len();
        }
        if format == Format::Table {
            for st in planned {
                let cells = [
                    st.kind.as_str().chars().count(),
                    id_text(st.id).len(),
                    one_line(&st.name).chars().count(),
                    one_line(&st.location).chars().count(),
                ];
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(c);
                }
            }
        }
        let mut w = Writer {
            report: self,
            format,
            out: BufWriter::new(out),
            widths,
            rows: 0,
            log_rows,
            summary: Summary::default(),
        };
        // A closed stdout must not stop a sweep: write errors are dropped here and below.
        let _ = w.header(!planned.is_empty());
        w
    }
}

impl Writer<'_> {
    fn header(&mut self, table: bool) -> std::io::Result<()> {
        let r = self.report;
        match self.format {
            Format::Silent => {}
            Format::Json => {
                let out = &mut self.out;
                write!(out, "{{\n  \"command\": ")?;
                serde_json::to_writer(&mut *out, r.command)?;
                write!(out, ",\n  \"mode_file\": ")?;
                serde_json::to_writer(&mut *out, &crate::names::path(&r.mode_file))?;
                write!(out, ",\n  \"mode\": ")?;
                serde_json::to_writer(&mut *out, &r.mode)?;
                write!(out, ",\n  \"ebpf\": ")?;
                serde_json::to_writer(&mut *out, &r.ebpf)?;
                write!(out, ",\n  \"dry_run\": {}", r.dry_run)?;
                write!(out, ",\n  \"kernel\": ")?;
                serde_json::to_writer(&mut *out, &r.kernel)?;
                write!(out, ",\n  \"holders\": ")?;
                serde_json::to_writer(&mut *out, &r.holders)?;
                write!(out, ",\n  \"warnings\": ")?;
                serde_json::to_writer(&mut *out, &r.warnings)?;
                write!(out, ",\n  \"notes\": ")?;
                serde_json::to_writer(&mut *out, &r.notes)?;
                write!(out, ",\n  \"objects\": [")?;
            }
            Format::Table => {
                let mode = match &r.mode {
                    Some(m) => {
                        let mut s = format!(
                            "{} (eBPF {})",
                            m.dataplane,
                            if m.dataplane.ebpf_on() { "on" } else { "off" }
                        );
                        if let Some(src) = &m.source {
                            s += &format!(", source: {}", one_line(src));
                        }
                        s
                    }
                    None => "no mode file".into(),
                };
                let mode_file = crate::names::path(&r.mode_file);
                writeln!(self.out, "mode: {mode} [{mode_file}]")?;
                for w in &r.warnings {
                    writeln!(self.out, "warning: {}", one_line(w))?;
                }
                for h in &r.holders {
                    writeln!(self.out, "live: {}", one_line(&h.to_string()))?;
                }
                if table {
                    self.line(HEADERS)?;
                }
            }
        }
        Ok(())
    }

    /// One table line; a control character in any cell is escaped (see `logging::one_line`).
    fn line(&mut self, cells: [&str; 5]) -> std::io::Result<()> {
        let mut l = String::new();
        for (c, w) in cells.iter().zip(self.widths) {
            l += &format!("{:<w$}  ", one_line(c));
        }
        l += &one_line(cells[4]);
        writeln!(self.out, "{}", l.trim_end())
    }

    /// One object: logged (when it was acted on), written, counted.
    pub fn row(&mut self, row: &Row) {
        let s = &mut self.summary;
        s.families
            .count(row.kind, &row.location, row.outcome.as_ref());
        let acted = match &row.outcome {
            None => {
                s.planned += 1;
                None
            }
            Some(Outcome::Removed) => {
                s.removed += 1;
                Some((Level::Notice, "removed".to_string()))
            }
            Some(Outcome::AlreadyGone) => {
                s.already_gone += 1;
                Some((Level::Info, "already gone".to_string()))
            }
            Some(Outcome::Kept(why)) => {
                s.kept += 1;
                Some((Level::Info, format!("kept ({why})")))
            }
            Some(Outcome::Failed(e)) => {
                s.failed += 1;
                Some((Level::Err, format!("FAILED to remove ({e})")))
            }
        };
        if let (Some((level, verb)), true) = (acted, self.log_rows) {
            let id = row.id.map(|i| format!(" {i}")).unwrap_or_default();
            logging::log(
                level,
                &format!("{verb}: {}{id} {} at {}", row.kind, row.name, row.location),
            );
        }
        let _ = self.write_row(row);
        self.rows += 1;
    }

    fn write_row(&mut self, row: &Row) -> std::io::Result<()> {
        match self.format {
            Format::Silent => Ok(()),
            Format::Json => {
                let sep = if self.rows == 0 { "" } else { "," };
                write!(self.out, "{sep}\n    ")?;
                serde_json::to_writer(&mut self.out, row)?;
                Ok(())
            }
            Format::Table => {
                let id = id_text(row.id);
                let result = result_text(&row.outcome);
                self.line([row.kind.as_str(), &id, &row.name, &row.location, &result])?;
                writeln!(self.out, "    why: {}", row.why)
            }
        }
    }

    /// The decision and the counts; returns the summary line (for the log and the unit's status).
    pub fn finish(mut self, decision: &str) -> (Summary, String) {
        let line = summary_line(
            self.report.command,
            self.report.dry_run,
            decision,
            self.rows,
            &self.summary,
        );
        let _ = self.trailer(decision, &line);
        (self.summary, line)
    }

    fn trailer(&mut self, decision: &str, line: &str) -> std::io::Result<()> {
        match self.format {
            Format::Silent => {}
            Format::Json => {
                let close = if self.rows == 0 { "]" } else { "\n  ]" };
                write!(self.out, "{close},\n  \"decision\": ")?;
                serde_json::to_writer(&mut self.out, decision)?;
                write!(self.out, ",\n  \"summary\": ")?;
                serde_json::to_writer(&mut self.out, &self.summary)?;
                writeln!(self.out, "\n}}")?;
            }
            Format::Table => {
                for n in &self.report.notes {
                    writeln!(self.out, "note: {}", one_line(n))?;
                }
                writeln!(self.out, "{}", one_line(line))?;
            }
        }
        self.out.flush()
    }
}

fn summary_line(command: &str, dry_run: bool, decision: &str, rows: usize, s: &Summary) -> String {
    // Nothing listed: the decision says it all ("clean", "cannot tell: …", "nothing to do").
    if rows == 0 {
        return decision.to_string();
    }
    if command == "check" || dry_run || s.planned > 0 {
        return format!("{decision}: {} Calico object(s) found", s.planned);
    }
    format!(
        "{decision}: {} removed, {} already gone, {} kept, {} failed",
        s.removed, s.already_gone, s.kept, s.failed
    )
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
