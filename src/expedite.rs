//! Expedited RCU grace periods for the span of a sweep's tcx and netkit detaches: each waits for
//! a grace period, one after another under rtnl (about 8 ms each, so 1,000 Calico interfaces
//! hold kubelet for 17 s), and with `rcu_expedited` set the kernel ends each at once, about 60×
//! shorter. It never changes the switch unless it reads 0 and the sweep has at least
//! `MIN_DETACHES` such detaches, never for longer than that span, and never overwrites a value
//! someone else wrote meanwhile: it writes its own pid, not 1, and records what it wrote, so
//! that it can tell its value from anyone else's.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::kernel::fs::lock_is_held;
use crate::kernel::rcu::{SignalRestore, Switch};
use crate::logging::{self, Level};
use crate::plan::Step;
use modefile::{read_trusted, write_atomic, FileProblem};

/// What a guard changed: the switch's value before, the value the guard wrote, the guard's
/// pid, and when (RFC 3339, UTC).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub original: i32,
    pub written: i32,
    pub pid: u32,
    pub at: String,
}

impl Record {
    fn render(&self) -> String {
        format!(
            "# calico-bpf-guard set the RCU expediting switch; a sweep puts it back\n\
             original = {}\nwritten = {}\npid = {}\nat = {}\n",
            self.original, self.written, self.pid, self.at
        )
    }

    /// A record as `render` writes it; None for anything else.
    pub fn parse(text: &str) -> Option<Record> {
        let mut fields = std::collections::BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (key, value) = line.split_once(" = ")?;
            if fields.insert(key, value).is_some() {
                return None;
            }
        }
        let record = Record {
            original: fields.remove("original")?.parse().ok()?,
            written: fields.remove("written")?.parse().ok()?,
            pid: fields.remove("pid")?.parse().ok()?,
            at: fields.remove("at")?.to_string(),
        };
        (fields.is_empty() && record.written != 0).then_some(record)
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} by the sweep of pid {} at {}, from {}",
            self.written, self.pid, self.at, self.original
        )
    }
}

/// Fewer detaches than this wait well under 0.1 s in all: not worth changing a host-wide
/// setting for.
pub const MIN_DETACHES: usize = 8;

/// The steps from the first that waits for a grace period to the last, when there are at
/// least `MIN_DETACHES` of them; the count.
pub fn span(steps: &[Step]) -> Option<(Range<usize>, usize)> {
    let count = steps.iter().filter(|s| s.waits_for_grace_period()).count();
    if count < MIN_DETACHES {
        return None;
    }
    let first = steps.iter().position(Step::waits_for_grace_period)?;
    let last = steps.iter().rposition(Step::waits_for_grace_period)?;
    Some((first..last + 1, count))
}

/// The price of expediting is an inter-processor interrupt on every CPU, host-wide, for every
/// grace period anyone waits for while the switch is set: hence only for the span of the
/// detaches, and then the value read is put back, if the switch still holds the guard's value
/// (its pid: the kernel takes any integer and expedites for every one but 0).
/// A signal (SIGTERM from systemd, SIGINT at a terminal, SIGHUP) puts it back before the
/// process ends. What nothing in the process can survive (SIGKILL, a crash) is covered by a
/// `Record`, written before the switch is set and removed once it is back, of what the switch
/// held, what the guard wrote, which guard and when: the next sweep puts the value back, and
/// `check` reports a switch so left (a sweep that holds the lock is still running, not dead).
/// The record lives under /run, like the switch it describes, so a reboot clears both.
/// Grace periods are expedited while this lives; dropping it puts the switch back.
pub struct Expedited {
    switch: Switch,
    written: i32,
    path: PathBuf,
    record: PathBuf,
    signals: Option<SignalRestore>,
}

/// Set the switch for `detaches` detaches, if it reads 0. Anything in the way (a read-only
/// /sys in a container, a kernel without the switch) is a warning: the sweep goes on at the
/// normal pace.
pub fn begin(s: &Settings, detaches: usize) -> Option<Expedited> {
    let path = &s.rcu_expedited_file;
    match try_begin(s) {
        Ok(Some(e)) => {
            logging::log(
                Level::Info,
                &format!(
                    "expediting RCU grace periods for {detaches} tcx/netkit detaches \
                     ({} 0 -> {} until they are done)",
                    path.display(),
                    e.written
                ),
            );
            Some(e)
        }
        Ok(None) => None,
        Err(e) => {
            logging::log(
                Level::Warning,
                &format!(
                    "cannot expedite RCU grace periods through {}: {e:#}; detaching at the normal pace",
                    path.display()
                ),
            );
            None
        }
    }
}

fn try_begin(s: &Settings) -> anyhow::Result<Option<Expedited>> {
    let switch = Switch::open(&s.rcu_expedited_file)?;
    let now = switch.read()?;
    if now != "0" {
        logging::log(
            Level::Info,
            &format!(
                "{} is already {now}: grace periods are expedited, nothing to change",
                s.rcu_expedited_file.display()
            ),
        );
        return Ok(None);
    }
    let pid = std::process::id();
    let record = Record {
        original: 0,
        // A pid is never 0 and fits: the kernel caps pids at 2^22.
        written: i32::try_from(pid).unwrap_or(i32::MAX),
        pid,
        at: modefile::now_rfc3339(),
    };
    // The record first: from the moment the switch is set, a SIGKILL must leave a way back.
    write_atomic(&s.expedite_record_file, record.render().as_bytes(), 0o644)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", s.expedite_record_file.display()))?;
    let signals = match SignalRestore::arm(
        &switch,
        record.original,
        record.written,
        &s.expedite_record_file,
    ) {
        Ok(g) => g,
        Err(e) => {
            remove_record(&s.expedite_record_file);
            return Err(e.into());
        }
    };
    if let Err(e) = switch.write(record.written) {
        drop(signals);
        remove_record(&s.expedite_record_file);
        return Err(e.into());
    }
    Ok(Some(Expedited {
        switch,
        written: record.written,
        path: s.rcu_expedited_file.clone(),
        record: s.expedite_record_file.clone(),
        signals: Some(signals),
    }))
}

impl Drop for Expedited {
    fn drop(&mut self) {
        match put_back(&self.switch, self.written, 0) {
            Ok(Some(other)) => logging::log(
                Level::Notice,
                &format!(
                    "{} now reads {other}, set by someone else while the guard detached: left so",
                    self.path.display()
                ),
            ),
            Ok(None) => logging::log(
                Level::Info,
                &format!("{} put back to 0", self.path.display()),
            ),
            Err(e) => {
                // The record stays: the next sweep tries again.
                logging::log(
                    Level::Err,
                    &format!(
                        "cannot put {} back to 0: {e}; the next sweep will retry",
                        self.path.display()
                    ),
                );
                self.signals.take();
                return;
            }
        }
        // Disarm before the record goes: a signal in between finds nothing left to do.
        self.signals.take();
        remove_record(&self.record);
    }
}

/// Write `original` if the switch still reads `written`, the guard's value. Returns what it
/// read instead when that was someone else's value.
fn put_back(switch: &Switch, written: i32, original: i32) -> io::Result<Option<String>> {
    let now = switch.read()?;
    if now != written.to_string() {
        return Ok(Some(now));
    }
    switch.write(original)?;
    Ok(None)
}

fn remove_record(record: &Path) {
    match fs::remove_file(record) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => logging::log(
            Level::Warning,
            &format!("removing {}: {e}", record.display()),
        ),
        _ => {}
    }
}

/// Is there a record of a switch an earlier guard set and did not put back?
pub fn left_behind(s: &Settings) -> bool {
    fs::symlink_metadata(&s.expedite_record_file).is_ok()
}

/// Why a file at the record's path is not acted on.
enum Unusable {
    /// Trusted, but not in the shape the guard writes: no record of a guard's, so removed.
    Foreign(String),
    /// Not trusted (see `read_trusted`), or unreadable: left as it is.
    Untrusted(String),
}

/// The record, if there is one.
fn read_record(record: &Path) -> Result<Option<Record>, Unusable> {
    match read_trusted(record) {
        Ok(text) => Record::parse(&text).map(Some).ok_or_else(|| {
            Unusable::Foreign(format!(
                "{}: not a record the guard writes",
                record.display()
            ))
        }),
        Err(FileProblem::NotFound) => Ok(None),
        Err(p) => Err(Unusable::Untrusted(format!(
            "{}: {p}; not acting on it",
            record.display()
        ))),
    }
}

/// Put back what an earlier guard left set (it was killed, or crashed, mid-sweep). Call with
/// the guard's lock held, so that a guard still running is never undone.
pub fn recover(s: &Settings) {
    let record = &s.expedite_record_file;
    let rec = match read_record(record) {
        Ok(Some(rec)) => rec,
        Ok(None) => return,
        Err(Unusable::Foreign(why)) => {
            logging::log(Level::Warning, &format!("{why}; removed"));
            remove_record(record);
            return;
        }
        Err(Unusable::Untrusted(why)) => {
            logging::log(Level::Warning, &why);
            return;
        }
    };
    let path = &s.rcu_expedited_file;
    let outcome = Switch::open(path).and_then(|sw| put_back(&sw, rec.written, rec.original));
    match outcome {
        Ok(None) => logging::log(
            Level::Notice,
            &format!(
                "{} put back to {}: a sweep that did not finish had left it at {rec}",
                path.display(),
                rec.original
            ),
        ),
        Ok(Some(now)) => logging::log(
            Level::Info,
            &format!(
                "{} reads {now}, not the {} a sweep that did not finish wrote: someone else's \
                 value, left so",
                path.display(),
                rec.written
            ),
        ),
        Err(e) => {
            logging::log(
                Level::Err,
                &format!(
                    "cannot put {} back to {} after a sweep that did not finish: {e}",
                    path.display(),
                    rec.original
                ),
            );
            return;
        }
    }
    remove_record(record);
}

/// What `check` makes of the switch and the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No record: nothing left set.
    Nothing,
    /// A sweep holds the lock: it is running, and will put the switch back itself.
    Running(Record),
    /// A sweep that did not finish left the switch at its value: grace periods stay expedited,
    /// machine-wide, until the next sweep.
    LeftSet(Record),
    /// The record's sweep did not finish, but the switch reads another value now, set by
    /// someone else since: the next sweep only removes the record.
    Superseded(Record, String),
    /// A record that cannot be read or trusted, or a switch that cannot be read.
    Unknown(String),
}

impl Found {
    /// The problem `check` reports (and exits 1 for), if any.
    pub fn problem(&self, s: &Settings) -> Option<String> {
        match self {
            Found::LeftSet(rec) => Some(format!(
                "{} left at {rec}, a sweep that did not finish: grace periods stay expedited \
                 until the next sweep puts it back",
                s.rcu_expedited_file.display()
            )),
            _ => None,
        }
    }

    /// What `check` only says (a warning), if anything.
    pub fn warning(&self, s: &Settings) -> Option<String> {
        let (switch, record) = (
            s.rcu_expedited_file.display(),
            s.expedite_record_file.display(),
        );
        match self {
            Found::Nothing | Found::LeftSet(_) => None,
            Found::Running(rec) => Some(format!(
                "a sweep is running and expedites RCU grace periods ({switch} set to {rec})"
            )),
            Found::Superseded(rec, now) => Some(format!(
                "{record} records a sweep that did not finish ({rec}), but {switch} reads {now} \
                 now, someone else's value: the next sweep leaves it and removes the record"
            )),
            Found::Unknown(why) => {
                Some(format!("cannot tell whether {switch} was left set: {why}"))
            }
        }
    }
}

/// Look, changing nothing: is the switch left set by a sweep that did not finish? A sweep that
/// holds the lock is running, not dead.
pub fn look(s: &Settings) -> Found {
    let rec = match read_record(&s.expedite_record_file) {
        Ok(Some(rec)) => rec,
        Ok(None) => return Found::Nothing,
        Err(Unusable::Foreign(why) | Unusable::Untrusted(why)) => return Found::Unknown(why),
    };
    match lock_is_held(&s.lock_file) {
        Ok(true) => return Found::Running(rec),
        Ok(false) => {}
        Err(e) => return Found::Unknown(format!("trying the lock {}: {e}", s.lock_file.display())),
    }
    match Switch::open(&s.rcu_expedited_file).and_then(|sw| sw.read()) {
        Ok(now) if now == rec.written.to_string() => Found::LeftSet(rec),
        Ok(now) => Found::Superseded(rec, now),
        Err(e) => Found::Unknown(format!("{}: {e}", s.rcu_expedited_file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Action, ObjId, StepKind};

    fn step(action: Action) -> Step {
        Step {
            action,
            kind: StepKind::Link,
            id: None,
            name: String::new(),
            location: String::new(),
            reason: "",
            objects: Vec::<ObjId>::new(),
        }
    }

    fn hook(link_id: u32) -> Step {
        step(Action::DetachHookLink { link_id })
    }

    fn other() -> Step {
        step(Action::DeleteDevice {
            name: "bpfin.cali".into(),
        })
    }

    #[test]
    fn records_round_trip_and_nothing_else_is_one() {
        let rec = Record {
            original: 0,
            written: 4242,
            pid: 4242,
            at: "2026-12-02T06:40:00Z".into(),
        };
        assert_eq!(Record::parse(&rec.render()), Some(rec.clone()));
        for bad in [
            "0\n",
            "",
            "original = 0\nwritten = 4242\npid = 4242\n",
            "original = 0\nwritten = 0\npid = 1\nat = x\n",
            "original = 0\nwritten = 4242\npid = 4242\nat = x\nextra = 1\n",
            "original = 0\nwritten = 4242\nwritten = 1\npid = 4242\nat = x\n",
            "original = zero\nwritten = 4242\npid = 4242\nat = x\n",
        ] {
            assert_eq!(Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn span_covers_first_to_last_detach_and_needs_a_handful() {
        let few: Vec<Step> = (0..MIN_DETACHES as u32 - 1).map(hook).collect();
        assert_eq!(span(&few), None);
        let mut steps = vec![other(), other()];
        steps.extend((0..MIN_DETACHES as u32 - 1).map(hook));
        steps.push(other());
        steps.push(step(Action::DetachHook {
            ifindex: 1,
            attach_type: 0,
            prog_id: 1,
        }));
        steps.push(other());
        assert_eq!(span(&steps), Some((2..steps.len() - 1, MIN_DETACHES)));
        assert_eq!(span(&[]), None);
    }
}
