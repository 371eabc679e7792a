//! The decision: from the override and what every source said, the one value to write, or the
//! reason to keep the cached one. This is the safety rule, as a pure function with a table of
//! every precedence row beside it; it never reads, writes or logs.

use modefile::Dataplane;

use crate::reason::Reason;
use crate::sources::{Kind, Observation, Reading, Value};

/// The override file's word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Override {
    Auto,
    Fixed(Dataplane),
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write this value; `because` becomes the mode file's `source` (after `sync: `).
    Write {
        dataplane: Dataplane,
        because: String,
    },
    /// Keep whatever the mode file says.
    Keep { reason: Reason, detail: String },
}

fn says(o: &Observation) -> Option<&Value> {
    match &o.reading {
        Reading::Says(v) => Some(v),
        _ => None,
    }
}

fn named(o: &Observation, v: &Value) -> String {
    format!("{} {}", o.name, v.text())
}

/// The one value to write, or the reason to keep the cache.
///
/// In order:
/// 1. An override other than `auto` is written as it is; an invalid one keeps the cache.
/// 2. `bpf` as soon as any readable source says eBPF, whatever the others say (an Installation
///    that says BPF before the operator flipped the FelixConfiguration, a FelixConfiguration
///    that an environment variable overrides): leaving eBPF objects alone is the safe side.
/// 3. Any source that exists but could not be read keeps the cache: "off" needs every source.
/// 4. No calico-node DaemonSet in any namespace looked at keeps the cache (`no_calico`): the
///    sync follows a running Calico; a node whose Calico was removed gets the override `none`.
/// 5. Otherwise eBPF is off: `nftables` or `vpp` when the Installation says so, else `iptables`.
///    The `source` names what Felix itself would go by: the first source in Felix's precedence
///    (env, FelixConfiguration node.<name>, FelixConfiguration default) that sets the value.
///
/// `observations` must be in Felix's precedence order (the `cluster` module reads them so).
pub fn decide(over: &Override, observations: &[Observation]) -> Decision {
    match over {
        Override::Fixed(dataplane) => {
            return Decision::Write {
                dataplane: *dataplane,
                because: format!("override dataplane={dataplane}"),
            }
        }
        Override::Invalid(detail) => {
            return Decision::Keep {
                reason: Reason::OverrideInvalid,
                detail: detail.clone(),
            }
        }
        Override::Auto => {}
    }
    if let Some((o, v)) = observations
        .iter()
        .find_map(|o| says(o).filter(|v| v.ebpf_on()).map(|v| (o, v)))
    {
        return Decision::Write {
            dataplane: Dataplane::Bpf,
            because: named(o, v),
        };
    }
    if let Some((o, reason, detail)) = observations.iter().find_map(|o| match &o.reading {
        Reading::Unreadable(r, d) => Some((o, *r, d)),
        _ => None,
    }) {
        return Decision::Keep {
            reason,
            detail: format!("{} ({}): {detail}", o.name, o.place),
        };
    }
    let daemonset = observations
        .iter()
        .any(|o| o.kind == Kind::DaemonSetEnv && o.reading != Reading::Absent);
    if !daemonset {
        return Decision::Keep {
            reason: Reason::NoCalico,
            detail: "no calico-node DaemonSet in the namespaces looked at; if Calico was \
                     removed from this cluster, set the override to none"
                .to_string(),
        };
    }
    let felix = observations
        .iter()
        .filter(|o| o.kind != Kind::Installation)
        .find_map(|o| says(o).map(|v| named(o, v)))
        .unwrap_or_else(|| "no source sets BPFEnabled (Felix's default false)".to_string());
    let flavour = observations
        .iter()
        .filter(|o| o.kind == Kind::Installation)
        .find_map(|o| match says(o) {
            Some(v @ Value::LinuxDataplane { dataplane, .. }) => Some((*dataplane, named(o, v))),
            _ => None,
        });
    match flavour {
        Some((dataplane, why)) if dataplane != Dataplane::Iptables => Decision::Write {
            dataplane,
            because: format!("{felix}; {why}"),
        },
        _ => Decision::Write {
            dataplane: Dataplane::Iptables,
            because: felix,
        },
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
