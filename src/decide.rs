//! Whether to sweep: from the mode file, the configuration and --force. Pure: it never reads a
//! file or the kernel.

use crate::config::OnMissingMode;
use modefile::{Dataplane, Mode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Sweep(String),
    Skip(String),
}

/// What the node's mode says about eBPF: on, off, or unknown (no mode file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ebpf {
    On,
    Off,
    Unknown,
}

pub fn ebpf(mode: Option<&Mode>, on_missing: OnMissingMode) -> Ebpf {
    match (mode, on_missing) {
        (Some(m), _) if m.dataplane.ebpf_on() => Ebpf::On,
        (Some(_), _) | (None, OnMissingMode::Sweep) => Ebpf::Off,
        (None, OnMissingMode::Skip) => Ebpf::Unknown,
    }
}

/// `--force` sweeps without a mode file, never against one that says `bpf`: a mode file that
/// says eBPF is on is the node's statement that the dataplane is live.
pub fn decide(mode: Option<&Mode>, on_missing: OnMissingMode, force: bool) -> Decision {
    match (mode, on_missing, force) {
        (Some(m), _, _) if m.dataplane.ebpf_on() => {
            Decision::Skip("the mode file says the eBPF dataplane is on".into())
        }
        (Some(m), _, _) if m.dataplane == Dataplane::None => Decision::Sweep(
            "the mode file says none: Calico is not this node's dataplane any more".into(),
        ),
        (Some(m), _, _) => Decision::Sweep(format!(
            "the mode file says {}: the eBPF dataplane is off",
            m.dataplane
        )),
        (None, OnMissingMode::Sweep, _) => {
            Decision::Sweep("no mode file, and on_missing_mode = \"sweep\"".into())
        }
        (None, OnMissingMode::Skip, true) => Decision::Sweep("no mode file; --force".into()),
        (None, OnMissingMode::Skip, false) => {
            Decision::Skip("no mode file (on_missing_mode = \"skip\")".into())
        }
    }
}

/// `check`'s answer once eBPF is known not to be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    Stale,
    CannotTell,
}

/// `check`'s verdict on a scan, and the decision line saying it: `stale` when the plan is not
/// empty, `blind` places that could not be inspected, `live` when a process holds what the
/// plan names.
pub fn check_verdict(stale: bool, blind: usize, ebpf: Ebpf, live: bool) -> (Verdict, String) {
    match (stale, ebpf) {
        // Found nothing, but did not see everything: never "clean".
        (false, _) if blind > 0 => (
            Verdict::CannotTell,
            format!(
                "cannot tell: {blind} place(s) could not be inspected (see warnings), nothing stale elsewhere"
            ),
        ),
        (false, _) => (
            Verdict::Clean,
            "clean: no stale Calico eBPF objects".into(),
        ),
        (true, Ebpf::Off) if live => (
            Verdict::Stale,
            "stale: a live eBPF dataplane runs although the mode file says eBPF is off".into(),
        ),
        (true, Ebpf::Off) => (
            Verdict::Stale,
            "stale: Calico eBPF objects present while eBPF is off".into(),
        ),
        (true, _) => (
            Verdict::CannotTell,
            "cannot tell: Calico eBPF objects present, but there is no mode file".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let m = |d| {
            Some(Mode {
                dataplane: d,
                source: None,
                updated: None,
            })
        };
        use OnMissingMode::*;
        let cases = [
            (m(Dataplane::Bpf), Skip, false, false, Ebpf::On),
            (m(Dataplane::Bpf), Sweep, true, false, Ebpf::On),
            (m(Dataplane::Iptables), Skip, false, true, Ebpf::Off),
            (m(Dataplane::Nftables), Skip, false, true, Ebpf::Off),
            (m(Dataplane::Vpp), Skip, false, true, Ebpf::Off),
            (m(Dataplane::None), Skip, false, true, Ebpf::Off),
            (None, Skip, false, false, Ebpf::Unknown),
            (None, Skip, true, true, Ebpf::Unknown),
            (None, Sweep, false, true, Ebpf::Off),
        ];
        for (mode, on_missing, force, sweep, state) in cases {
            let d = decide(mode.as_ref(), on_missing, force);
            assert_eq!(
                matches!(d, Decision::Sweep(_)),
                sweep,
                "{mode:?} {on_missing:?} {force}"
            );
            assert_eq!(ebpf(mode.as_ref(), on_missing), state);
        }
    }

    #[test]
    fn check_verdicts() {
        use Verdict::*;
        let cases = [
            (false, 0, Ebpf::Off, false, Clean),
            (false, 0, Ebpf::Unknown, false, Clean),
            (false, 2, Ebpf::Off, false, CannotTell),
            (true, 0, Ebpf::Off, false, Stale),
            (true, 1, Ebpf::Off, true, Stale),
            (true, 0, Ebpf::Unknown, false, CannotTell),
        ];
        for (stale, blind, ebpf, live, want) in cases {
            let (got, line) = check_verdict(stale, blind, ebpf, live);
            assert_eq!(got, want, "{stale} {blind} {ebpf:?} {live}: {line}");
        }
    }
}
