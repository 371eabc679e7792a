//! The commands, each one pass through the pipeline (config + mode → decide → inventory →
//! plan → apply → report), and the exit codes where the process ends. It holds no rule of its
//! own: what to remove, how, and what to say are the lower modules'.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::apply::{self, Outcome};
use crate::config::Settings;
use crate::decide::{check_verdict, decide, ebpf, Decision, Ebpf, Verdict};
use crate::expedite;
use crate::interlock::{self, Holder};
use crate::inventory::{self, Inventory, Roots};
use crate::kernel::fs::{is_journal_stream, lock_exclusive, Lock};
use crate::logging::{self, Level};
use crate::metrics::{Ended, Seen};
use crate::notes;
use crate::plan::{self, Step, StepKey, StepKind};
use crate::report::{Format, Report, Row, Summary};
use modefile::{self as mode, Dataplane, InvalidInput, Mode};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CANNOT_TELL: u8 = 2;
pub const EXIT_CONFIG: u8 = 78;

/// A command's exit code: what `main` returns, and what the metrics record.
pub fn exit_code(result: &Result<u8>) -> u8 {
    match result {
        Ok(code) => *code,
        Err(e) if e.downcast_ref::<InvalidInput>().is_some() => EXIT_CONFIG,
        Err(_) => EXIT_FAILED,
    }
}

/// A run's metrics, written once its exit code is known.
fn write_metrics(seen: Seen, path: &Path, result: &Result<u8>) {
    let code = exit_code(result);
    let ended = match code {
        EXIT_OK => Ended::Ok,
        EXIT_CANNOT_TELL => Ended::CannotTell,
        EXIT_CONFIG => Ended::InvalidInput,
        _ => Ended::Failed,
    };
    seen.write(path, code, ended);
}

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
    let steps = plan::build(&inv, &BTreeMap::new());
    if steps.is_empty() {
        return Ok((inv, steps, BTreeMap::new()));
    }
    // A program without BTF function info has no full name to find: not asked for one.
    let ids: BTreeSet<u32> = plan::program_ids(&steps)
        .into_iter()
        .filter(|id| inv.with_btf.contains(id))
        .collect();
    // The named plan replaces this one: with thousands of steps, two at once cost megabytes.
    drop(steps);
    let names = inventory::btf_names(ids);
    let steps = plan::build(&inv, &names);
    Ok((inv, steps, names))
}

fn new_report(command: &'static str, s: &Settings, mode: Option<Mode>, dry_run: bool) -> Report {
    Report {
        command,
        mode_file: s.mode_file.clone(),
        ebpf: ebpf(mode.as_ref(), s.on_missing_mode),
        mode,
        dry_run,
        kernel: None,
        holders: Vec::new(),
        warnings: Vec::new(),
        notes: Vec::new(),
    }
}

fn format(report: &Report, json: bool) -> Format {
    if json {
        Format::Json
    } else if report.command == "sweep" && !report.dry_run && is_journal_stream(std::io::stdout()) {
        // Under the unit, stdout is the journal, where the log lines already name every object:
        // the table would say it all twice.
        Format::Silent
    } else {
        Format::Table
    }
}

/// A report of what the plan would do (dry run, check, a refused sweep), or of no plan at all.
fn emit_planned(report: &Report, json: bool, steps: &[Step], decision: &str) -> (Summary, String) {
    let mut w = report.start(format(report, json), false, steps);
    for st in steps {
        w.row(&Row::new(st, None));
    }
    w.finish(decision)
}

fn take_lock(s: &Settings) -> Result<Lock> {
    match lock_exclusive(&s.lock_file, LOCK_WAIT)
        .with_context(|| format!("taking the lock {}", s.lock_file.display()))?
    {
        Some(l) => Ok(l),
        None => bail!(
            "another calico-bpf-guard held {} for {}s; not sweeping",
            s.lock_file.display(),
            LOCK_WAIT.as_secs()
        ),
    }
}

/// Why a sweep stopped before its end: holders that showed up mid-sweep, or a failed look.
struct Stopped {
    holders: Vec<Holder>,
    why: String,
}

/// Apply the plan, looking for holders again at each checkpoint (`interlock::checkpoints`)
/// unless forced. A holder found there, or a look that fails, stops the sweep: every step left
/// is reported not done. `looked`: when the look before the sweep began (it ends as this is
/// called). The log says how long before the sweep's last removal of a BPF object the last look
/// began, and how long it took: the window in which a process that starts holding an object
/// goes unseen.
fn apply_guarded(
    s: &Settings,
    steps: &[Step],
    force: bool,
    looked: Instant,
    done: &mut dyn FnMut(&Step, Outcome),
) -> Option<Stopped> {
    // When the last look began and ended.
    let mut last_look = (looked, Instant::now());
    let mut last_removal = None;
    let mut track = |st: &Step, o: Outcome| {
        if o == Outcome::Removed && !st.objects.is_empty() {
            last_removal = Some(Instant::now());
        }
        done(st, o);
    };
    let mut from = 0;
    let mut stopped = None;
    for cut in interlock::checkpoints(steps).into_iter().filter(|_| !force) {
        apply_plan(s, &steps[from..cut], &mut track);
        from = cut;
        crate::failpoint::at_checkpoint();
        let began = Instant::now();
        let look = interlock::scan_settled(&steps[cut..]);
        last_look = (began, Instant::now());
        stopped = match look {
            Ok(lock) => lock.refusal().map(|why| {
                let who: Vec<String> = lock.holders.iter().map(Holder::to_string).collect();
                Stopped {
                    why: match who.is_empty() {
                        true => why,
                        false => format!("{why}: {}", who.join("; ")),
                    },
                    holders: lock.holders,
                }
            }),
            Err(e) => Some(Stopped {
                holders: Vec::new(),
                why: format!("cannot look for holders again: {e:#}"),
            }),
        };
        if stopped.is_some() {
            break;
        }
    }
    match &stopped {
        Some(stop) => {
            for st in &steps[from..] {
                track(
                    st,
                    Outcome::Failed(format!("not done, the sweep stopped: {}", stop.why)),
                );
            }
        }
        None => apply_plan(s, &steps[from..], &mut track),
    }
    if let (Some(end), false) = (last_removal, force) {
        let (began, ended) = last_look;
        logging::log(
            Level::Info,
            &format!(
                "interlock: the last look for holders began {} us before the last removal \
                 (it took {} us)",
                end.saturating_duration_since(began).as_micros(),
                ended.saturating_duration_since(began).as_micros()
            ),
        );
    }
    stopped
}

/// Apply the plan. With `expedite_grace_periods`, RCU grace periods are expedited from the
/// first tcx/netkit detach to the last, when there are enough of them.
fn apply_plan(s: &Settings, steps: &[Step], done: &mut dyn FnMut(&Step, Outcome)) {
    let span = match s.expedite_grace_periods {
        true => expedite::span(steps),
        false => None,
    };
    let Some((span, detaches)) = span else {
        return apply::apply(steps, done);
    };
    apply::apply(&steps[..span.start], done);
    {
        let _expedited = expedite::begin(s, detaches);
        apply::apply(&steps[span.clone()], done);
    }
    apply::apply(&steps[span.end..], done);
}

/// With `metrics_file` configured, a sweep (not a dry run, which changes nothing) ends by
/// writing its metrics.
pub fn sweep(s: &Settings, opts: SweepOpts) -> Result<u8> {
    let mut seen = Seen::start("sweep");
    let result = sweep_seen(s, opts, &mut seen);
    if let (Some(path), false) = (&s.metrics_file, opts.dry_run) {
        // Looked at once the sweep let go of the lock: what it could not put back.
        seen.rcu_left_set(matches!(expedite::look(s), expedite::Found::LeftSet(_)));
        write_metrics(seen, path, &result);
    }
    result
}

fn sweep_seen(s: &Settings, opts: SweepOpts, seen: &mut Seen) -> Result<u8> {
    // A guard killed mid-sweep may have left grace periods expedited: put that back first,
    // whatever this run then decides. Never in a dry run, which changes nothing.
    if !opts.dry_run && expedite::left_behind(s) {
        let _lock = take_lock(s)?;
        expedite::recover(s);
    }
    let mode = mode::read(&s.mode_file)?;
    let decision = decide(mode.as_ref(), s.on_missing_mode, opts.force);
    let mut report = new_report("sweep", s, mode, opts.dry_run);
    seen.report(&report);
    if let (Decision::Skip(why), false) = (&decision, opts.dry_run) {
        let decision = format!("nothing to do: {why}");
        logging::log(Level::Info, &decision);
        let (_, line) = emit_planned(&report, opts.json, &[], &decision);
        logging::notify_status(&line);
        return Ok(EXIT_OK);
    }

    // A dry run changes nothing, so it needs no lock.
    let _lock = if opts.dry_run {
        None
    } else {
        Some(take_lock(s)?)
    };

    let (mut inv, steps, names) = scan_and_plan(s)?;
    report.kernel = Some(inv.features);
    report.warnings = std::mem::take(&mut inv.warnings);
    // What could not be inspected is warned about like the rest, and costs the exit code.
    let blind = inv.incomplete.len();
    report.warnings.append(&mut inv.incomplete);
    // The plan holds everything apply needs; the inventory's memory goes before the re-scan's.
    let accept_local = inv.accept_local.take();
    drop(inv);
    for w in &report.warnings {
        logging::log(Level::Warning, w);
    }
    let mut refusal = None;
    let looked = Instant::now();
    if !steps.is_empty() {
        let lock = interlock::scan_settled(&steps)?;
        refusal = lock.refusal();
        for u in &lock.unreadable {
            let w = format!("interlock cannot inspect {u}");
            logging::log(Level::Warning, &w);
            report.warnings.push(w);
        }
        report.holders = lock.holders;
        report.notes = notes::for_plan(&steps, accept_local);
        // Under the unit the report itself is silent: the log is where a note is read.
        for n in &report.notes {
            logging::log(Level::Notice, &format!("note: {n}"));
        }
    }

    let refused = refusal.is_some() && !opts.force;
    if opts.dry_run || refused {
        let decision = match (&decision, refused) {
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
            logging::log(Level::Err, &decision);
        }
        let (summary, line) = emit_planned(&report, opts.json, &steps, &decision);
        if !opts.dry_run {
            logging::notify_status(&line);
        }
        seen.scanned(blind == 0, &summary);
        if refused {
            seen.refused();
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
    let mut out = report.start(format(&report, opts.json), true, &steps);
    // The objects kept or failed: the re-scan finds those again, and they are reported.
    let mut left: BTreeSet<StepKey> = BTreeSet::new();
    let stopped = apply_guarded(s, &steps, opts.force, looked, &mut |st, o| {
        if matches!(o, Outcome::Failed(_) | Outcome::Kept(_)) {
            left.insert(st.key());
        }
        out.row(&Row::new(st, Some(o)));
    });
    if let Some(stop) = &stopped {
        for h in &stop.holders {
            logging::log(Level::Err, &format!("live eBPF dataplane, mid-sweep: {h}"));
        }
        seen.refused();
    }
    let planned = steps.len();
    drop(steps);

    // Re-query: what the kernel still shows after the sweep is a failure, not a success.
    if planned > 0 {
        let rescan = match crate::failpoint::rescan_fails() {
            Some(injected) => Err(anyhow::anyhow!(injected)),
            None => inventory::scan(&roots(s)),
        };
        let after = match rescan {
            Ok(after) => after,
            Err(e) => {
                // Every outcome is already logged; the missing proof is a row of its own.
                out.row(&Row {
                    kind: StepKind::ReScan,
                    id: None,
                    name: String::new(),
                    location: "every configured root".into(),
                    why: "the re-scan proves what the sweep left",
                    outcome: Some(Outcome::Failed(format!("could not verify: {e:#}"))),
                });
                let decision = format!("swept ({why}), but re-scanning failed: {e:#}");
                let (summary, line) = out.finish(&decision);
                seen.scanned(false, &summary);
                logging::log(Level::Err, &line);
                logging::notify_status(&line);
                return Ok(EXIT_FAILED);
            }
        };
        for st in plan::build(&after, &names) {
            if !left.contains(&st.key()) {
                out.row(&Row::new(
                    &st,
                    Some(Outcome::Failed("still present after the sweep".into())),
                ));
            }
        }
    }
    let mut decision = match (planned, blind, &stopped) {
        (_, _, Some(stop)) => format!(
            "stopped mid-sweep: {}; what is left stays ({why}); --force overrides",
            stop.why
        ),
        (0, 0, _) => format!("clean, nothing to remove ({why})"),
        (0, _, _) => format!("nothing to remove where the guard could look ({why})"),
        _ => format!("swept ({why})"),
    };
    if blind > 0 {
        decision += &format!(", but {blind} place(s) could not be inspected (see warnings)");
    }
    let (summary, line) = out.finish(&decision);
    logging::log(Level::Notice, &line);
    logging::notify_status(&line);
    seen.scanned(blind == 0, &summary);
    Ok(if summary.failed > 0 || blind > 0 {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// `metrics`: where to write the check's metrics, if anywhere.
pub fn check(s: &Settings, json: bool, metrics: Option<&Path>) -> Result<u8> {
    let mut seen = Seen::start("check");
    let result = check_seen(s, json, &mut seen);
    if let Some(path) = metrics {
        write_metrics(seen, path, &result);
    }
    result
}

fn check_seen(s: &Settings, json: bool, seen: &mut Seen) -> Result<u8> {
    let mode = mode::read(&s.mode_file)?;
    let mut report = new_report("check", s, mode, false);
    seen.report(&report);
    // A switch left set is a problem of its own, whatever the mode and the objects.
    let rcu = expedite::look(s);
    seen.rcu_left_set(matches!(rcu, expedite::Found::LeftSet(_)));
    let rcu_problem = rcu.problem(s);
    report.warnings.extend(rcu.warning(s));
    if report.ebpf == Ebpf::On {
        let ok = "ok: the mode file says eBPF is on, so Calico's eBPF objects belong here";
        let (code, decision) = with_rcu_problem(EXIT_OK, ok.into(), rcu_problem);
        emit_planned(&report, json, &[], &decision);
        return Ok(code);
    }
    let (mut inv, steps, _) = match scan_and_plan(s) {
        Ok(r) => r,
        Err(e) => {
            let (code, decision) =
                with_rcu_problem(EXIT_CANNOT_TELL, format!("cannot tell: {e:#}"), rcu_problem);
            emit_planned(&report, json, &[], &decision);
            seen.scan_failed();
            return Ok(code);
        }
    };
    report.kernel = Some(inv.features);
    report.warnings.append(&mut inv.warnings);
    let blind = inv.incomplete.len();
    report.warnings.append(&mut inv.incomplete);
    let accept_local = inv.accept_local.take();
    drop(inv);
    if !steps.is_empty() {
        report.notes = notes::for_plan(&steps, accept_local);
        match interlock::scan_settled(&steps) {
            Ok(lock) => {
                report.warnings.extend(
                    lock.unreadable
                        .iter()
                        .map(|u| format!("interlock cannot inspect {u}")),
                );
                // No holder seen is no proof when the guard could not see every process.
                if let Some(why) = &lock.blind {
                    report.warnings.push(format!(
                        "cannot tell whether an eBPF dataplane is live: {why}"
                    ));
                }
                report.holders = lock.holders;
            }
            Err(e) => {
                let (code, decision) =
                    with_rcu_problem(EXIT_CANNOT_TELL, format!("cannot tell: {e:#}"), rcu_problem);
                let (summary, _) = emit_planned(&report, json, &steps, &decision);
                seen.scanned(blind == 0, &summary);
                return Ok(code);
            }
        }
    }
    let (verdict, decision) = check_verdict(
        !steps.is_empty(),
        blind,
        report.ebpf,
        !report.holders.is_empty(),
    );
    let code = match verdict {
        Verdict::Clean => EXIT_OK,
        Verdict::Stale => EXIT_FAILED,
        Verdict::CannotTell => EXIT_CANNOT_TELL,
    };
    let (code, decision) = with_rcu_problem(code, decision, rcu_problem);
    let (summary, _) = emit_planned(&report, json, &steps, &decision);
    seen.scanned(blind == 0, &summary);
    Ok(code)
}

/// `check`'s exit code and decision with a switch left set: a known problem (1), named, over
/// "clean" and over "cannot tell".
fn with_rcu_problem(code: u8, decision: String, problem: Option<String>) -> (u8, String) {
    match problem {
        None => (code, decision),
        Some(p) if code == EXIT_OK => (EXIT_FAILED, format!("problem: {p}")),
        Some(p) => (EXIT_FAILED, format!("{decision}; and {p}")),
    }
}

/// `debug-inventory`: the scan and the BTF names the plan would show, as JSON, changing nothing.
pub fn debug_inventory(s: &Settings) -> Result<u8> {
    let (inventory, _, btf_names) = scan_and_plan(s)?;
    let input = plan::Input {
        inventory,
        btf_names,
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &input)?;
    writeln!(out)?;
    Ok(EXIT_OK)
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
    println!("{}: dataplane = {}", s.mode_file.display(), dataplane);
    Ok(EXIT_OK)
}
