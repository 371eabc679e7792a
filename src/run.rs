//! The commands, each one pass through the pipeline:
//! config + mode → decide → inventory → ownership → plan → apply → report.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::apply::{self, Outcome};
use crate::config::Settings;
use crate::decide::{decide, ebpf, Decision, Ebpf};
use crate::interlock;
use crate::inventory::{self, Inventory, Roots};
use crate::kernel::fs::{lock_exclusive, stdout_is_journal};
use crate::logging::{self, Level};
use crate::mode::{self, Dataplane, Mode};
use crate::notes;
use crate::plan::{self, Step};
use crate::report::{Report, Row};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANNOT_TELL: u8 = 2;
pub const EXIT_CONFIG: u8 = 78;

/// How long a second guard waits for the first one before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
pub struct SweepOpts {
    pub dry_run: bool,
    pub force: bool,
    pub json: bool,
}

fn roots(s: &Settings) -> Roots {
    Roots {
        bpffs: s.bpffs_roots.clone(),
        cgroup2: s.cgroup2_roots.clone(),
    }
}

/// Scan and plan; BTF names are looked up only for the programs the plan names.
fn scan_and_plan(s: &Settings) -> Result<(Inventory, Vec<Step>, BTreeMap<u32, String>)> {
    let inv = inventory::scan(&roots(s))?;
    let mut steps = plan::build(&inv, &BTreeMap::new());
    let mut names = BTreeMap::new();
    if !steps.is_empty() {
        names = inventory::btf_names(plan::program_ids(&steps));
        steps = plan::build(&inv, &names);
    }
    Ok((inv, steps, names))
}

fn new_report(command: &'static str, s: &Settings, mode: Option<Mode>) -> Report {
    Report {
        command,
        mode_file: s.mode_file.clone(),
        ebpf: ebpf(mode.as_ref(), s.on_missing_mode),
        mode,
        decision: String::new(),
        dry_run: false,
        objects: Vec::new(),
        holders: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
        summary: Default::default(),
    }
}

fn emit(report: &mut Report, json: bool) {
    report.summarize();
    if json {
        println!("{}", report.json());
    } else if !(report.command == "sweep" && !report.dry_run && stdout_is_journal()) {
        // Under the unit, stdout is the journal, where the log lines already name every object:
        // the table would say it all twice.
        print!("{}", report.text());
    }
}

pub fn sweep(s: &Settings, opts: SweepOpts) -> Result<u8> {
    let mode = mode::read(&s.mode_file)?;
    let decision = decide(mode.as_ref(), s.on_missing_mode, opts.force);
    let mut report = new_report("sweep", s, mode);
    report.dry_run = opts.dry_run;
    if let (Decision::Skip(why), false) = (&decision, opts.dry_run) {
        report.decision = format!("nothing to do: {why}");
        logging::log(Level::Info, &report.decision);
        emit(&mut report, opts.json);
        logging::notify_status(&report.summary_line());
        return Ok(EXIT_OK);
    }

    // A dry run changes nothing, so it needs no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        match lock_exclusive(&s.lock_file, LOCK_WAIT)
            .with_context(|| format!("taking the lock {}", s.lock_file.display()))?
        {
            Some(l) => Some(l),
            None => bail!(
                "another calico-bpf-guard held {} for {}s; not sweeping",
                s.lock_file.display(),
                LOCK_WAIT.as_secs()
            ),
        }
    };

    let (inv, steps, names) = scan_and_plan(s)?;
    report.warnings = inv.warnings.clone();
    for w in &inv.warnings {
        logging::log(Level::Warning, w);
    }
    let mut refusal = None;
    if !steps.is_empty() {
        let lock = interlock::scan_settled(&steps)?;
        refusal = lock.refusal();
        for u in &lock.unreadable {
            let w = format!("interlock cannot inspect {u}");
            logging::log(Level::Warning, &w);
            report.warnings.push(w);
        }
        report.holders = lock.holders;
        report.notes = notes::notes(&notes::gather());
    }

    let refused = refusal.is_some() && !opts.force;
    if opts.dry_run || refused {
        report.objects = steps.iter().map(|st| Row::new(st, None)).collect();
        report.decision = match (&decision, refused) {
            (Decision::Skip(why), _) => format!("dry run, would not sweep: {why}"),
            (Decision::Sweep(_), true) => format!(
                "{}refused: {}; --force overrides",
                if opts.dry_run {
                    "dry run, would be "
                } else {
                    ""
                },
                refusal.as_deref().unwrap_or_default()
            ),
            (Decision::Sweep(why), false) => format!("dry run, would sweep: {why}"),
        };
        if refused && !opts.dry_run {
            for h in &report.holders {
                logging::log(Level::Err, &format!("live eBPF dataplane: {h}"));
            }
            logging::log(Level::Err, &report.decision);
        }
        emit(&mut report, opts.json);
        if !opts.dry_run {
            logging::notify_status(&report.summary_line());
        }
        return Ok(if refused && !opts.dry_run {
            EXIT_FAILED
        } else {
            EXIT_OK
        });
    }

    let why = match &decision {
        Decision::Sweep(why) => why.clone(),
        Decision::Skip(why) => why.clone(),
    };
    crate::failpoint::after_plan();
    let outcomes = apply::apply(&steps);
    report.objects = steps
        .iter()
        .zip(outcomes)
        .map(|(st, o)| Row::new(st, Some(o)))
        .collect();

    // Re-query: what the kernel still shows after the sweep is a failure, not a success.
    if !steps.is_empty() {
        let after = inventory::scan(&roots(s)).context("re-scanning after the sweep")?;
        for st in plan::build(&after, &names) {
            let known = report.objects.iter().any(|r| {
                r.location == st.location
                    && matches!(r.outcome, Some(Outcome::Failed(_)) | Some(Outcome::Kept(_)))
            });
            if !known {
                report.objects.push(Row::new(
                    &st,
                    Some(Outcome::Failed("still present after the sweep".into())),
                ));
            }
        }
    }
    report.decision = if steps.is_empty() {
        format!("clean, nothing to remove ({why})")
    } else {
        format!("swept ({why})")
    };
    report.summarize();
    report.log();
    emit(&mut report, opts.json);
    Ok(if report.summary.failed > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

pub fn check(s: &Settings, json: bool) -> Result<u8> {
    let mode = mode::read(&s.mode_file)?;
    let mut report = new_report("check", s, mode);
    if report.ebpf == Ebpf::On {
        report.decision =
            "ok: the mode file says eBPF is on, so Calico's eBPF objects belong here".into();
        emit(&mut report, json);
        return Ok(EXIT_OK);
    }
    let (inv, steps, _) = match scan_and_plan(s) {
        Ok(r) => r,
        Err(e) => {
            report.decision = format!("cannot tell: {e:#}");
            emit(&mut report, json);
            return Ok(EXIT_CANNOT_TELL);
        }
    };
    report.warnings = inv.warnings;
    report.objects = steps.iter().map(|st| Row::new(st, None)).collect();
    if !steps.is_empty() {
        report.notes = notes::notes(&notes::gather());
        match interlock::scan_settled(&steps) {
            Ok(lock) => {
                report.warnings.extend(
                    lock.unreadable
                        .iter()
                        .map(|u| format!("interlock cannot inspect {u}")),
                );
                report.holders = lock.holders;
            }
            Err(e) => {
                report.decision = format!("cannot tell: {e:#}");
                emit(&mut report, json);
                return Ok(EXIT_CANNOT_TELL);
            }
        }
    }
    let (decision, code) = match (steps.is_empty(), report.ebpf) {
        (true, _) => ("clean: no stale Calico eBPF objects".to_string(), EXIT_OK),
        (false, Ebpf::Off) if !report.holders.is_empty() => (
            "stale: a live eBPF dataplane runs although the mode file says eBPF is off".into(),
            EXIT_FAILED,
        ),
        (false, Ebpf::Off) => (
            "stale: Calico eBPF objects present while eBPF is off".into(),
            EXIT_FAILED,
        ),
        (false, _) => (
            "cannot tell: Calico eBPF objects present, but there is no mode file".into(),
            EXIT_CANNOT_TELL,
        ),
    };
    report.decision = decision;
    emit(&mut report, json);
    Ok(code)
}

pub fn mode_show(s: &Settings) -> Result<u8> {
    match mode::read(&s.mode_file)? {
        Some(m) => print!("{}", mode::render(&m)),
        None => println!(
            "no mode file at {} (on_missing_mode = {})",
            s.mode_file.display(),
            match s.on_missing_mode {
                crate::config::OnMissingMode::Skip => "skip",
                crate::config::OnMissingMode::Sweep => "sweep",
            }
        ),
    }
    Ok(EXIT_OK)
}

pub fn mode_set(s: &Settings, dataplane: Dataplane, source: Option<String>) -> Result<u8> {
    let m = Mode {
        dataplane,
        source,
        updated: Some(mode::now_rfc3339()),
    };
    mode::write(&s.mode_file, &m).with_context(|| format!("writing {}", s.mode_file.display()))?;
    println!(
        "{}: dataplane = {}",
        s.mode_file.display(),
        dataplane.name()
    );
    Ok(EXIT_OK)
}
