//! Expedited RCU grace periods for the span of a sweep's tcx and netkit detaches: each waits for
//! a grace period, one after another under rtnl (about 8 ms each, so 1,000 Calico interfaces
//! hold kubelet for 17 s), and with `rcu_expedited` set the kernel ends each at once, about 60×
//! shorter. It never changes the switch unless it reads 0 and the sweep has at least
//! `MIN_DETACHES` such detaches, never for longer than that span, and never overwrites a value
//! someone else wrote meanwhile.

use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::kernel::rcu::{SignalRestore, Switch};
use crate::logging::{self, Level};
use crate::plan::Step;
use modefile::{read_trusted, write_atomic, FileProblem};

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
/// detaches, and then the value read is put back, if the switch still holds the guard's 1.
/// A signal (SIGTERM from systemd, SIGINT at a terminal, SIGHUP) puts it back before the
/// process ends. What nothing in the process can survive (SIGKILL, a crash) is covered by a
/// record written before the switch is set and removed once it is back: the next sweep finds
/// it and puts the value back. The record lives under /run, like the switch it describes, so a
/// reboot clears both.
/// Grace periods are expedited while this lives; dropping it puts the switch back.
pub struct Expedited {
    switch: Switch,
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
                     ({} 0 -> 1 until they are done)",
                    path.display()
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
    // The record first: from the moment the switch is 1, a SIGKILL must leave a way back.
    write_atomic(&s.expedite_record_file, b"0\n", 0o644)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", s.expedite_record_file.display()))?;
    let signals = match SignalRestore::arm(&switch, b'0', b'1', &s.expedite_record_file) {
        Ok(g) => g,
        Err(e) => {
            remove_record(&s.expedite_record_file);
            return Err(e.into());
        }
    };
    if let Err(e) = switch.write(b'1') {
        drop(signals);
        remove_record(&s.expedite_record_file);
        return Err(e.into());
    }
    Ok(Some(Expedited {
        switch,
        path: s.rcu_expedited_file.clone(),
        record: s.expedite_record_file.clone(),
        signals: Some(signals),
    }))
}

impl Drop for Expedited {
    fn drop(&mut self) {
        match put_back(&self.switch, b'0') {
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

/// Write `original` if the switch still reads the guard's 1. Returns what it read instead
/// when that was someone else's value.
fn put_back(switch: &Switch, original: u8) -> io::Result<Option<String>> {
    let now = switch.read()?;
    if now != "1" {
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

/// Put back what an earlier guard left set (it was killed, or crashed, mid-sweep). Call with
/// the guard's lock held, so that a guard still running is never undone.
pub fn recover(s: &Settings) {
    let record = &s.expedite_record_file;
    let original = match read_trusted(record) {
        Ok(text) => match text.trim().as_bytes() {
            [d] if d.is_ascii_digit() => *d,
            _ => {
                logging::log(
                    Level::Warning,
                    &format!(
                        "{}: not a record the guard writes; removed",
                        record.display()
                    ),
                );
                remove_record(record);
                return;
            }
        },
        Err(FileProblem::NotFound) => return,
        Err(p) => {
            logging::log(
                Level::Warning,
                &format!("{}: {p}; not acting on it", record.display()),
            );
            return;
        }
    };
    let path = &s.rcu_expedited_file;
    let outcome = Switch::open(path).and_then(|sw| put_back(&sw, original));
    match outcome {
        Ok(None) => logging::log(
            Level::Notice,
            &format!(
                "{} put back to {}: a sweep that did not finish had left it at 1",
                path.display(),
                original as char
            ),
        ),
        Ok(Some(now)) => logging::log(
            Level::Info,
            &format!(
                "{} reads {now}, not the 1 a sweep that did not finish left: left so",
                path.display()
            ),
        ),
        Err(e) => {
            logging::log(
                Level::Err,
                &format!(
                    "cannot put {} back to {} after a sweep that did not finish: {e}",
                    path.display(),
                    original as char
                ),
            );
            return;
        }
    }
    remove_record(record);
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
