//! Calico's own rules for reading a value, as Felix and the operator apply them: which
//! environment variable names Felix takes as `BPFEnabled`, which strings are booleans, and the
//! Installation's `linuxDataplane` words. Pure; it never looks anything up.

use modefile::Dataplane;

/// Felix matches its environment case-insensitively on the `FELIX_` prefix and the parameter
/// name (felix/config/env_var_loader.go), so `felix_bpfenabled` counts too.
pub fn is_bpf_enabled_var(name: &str) -> bool {
    name.eq_ignore_ascii_case("FELIX_BPFENABLED")
}

/// Felix's BoolParam (felix/config/param_types.go): these words, case-insensitively, and
/// nothing else; no trimming. Felix ignores an empty value (the next source decides), which
/// the caller handles before asking here.
pub fn parse_bool(raw: &str) -> Option<bool> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "t" => Some(true),
        "false" | "0" | "no" | "n" | "f" => Some(false),
        _ => None,
    }
}

/// The operator's `Installation.spec.calicoNetwork.linuxDataplane` enum (Iptables, BPF,
/// Nftables, VPP). `none` is this project's word, never the operator's.
pub fn linux_dataplane(raw: &str) -> Option<Dataplane> {
    Dataplane::parse(raw).filter(|d| *d != Dataplane::None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools_are_felixs() {
        for t in ["true", "TRUE", "True", "1", "yes", "Y", "y", "t", "T"] {
            assert_eq!(parse_bool(t), Some(true), "{t}");
        }
        for f in ["false", "FALSE", "0", "no", "N", "n", "f", "F"] {
            assert_eq!(parse_bool(f), Some(false), "{f}");
        }
        for bad in [
            "", " true", "true ", "on", "off", "enabled", "2", "nope", "truee",
        ] {
            assert_eq!(parse_bool(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn env_names_match_case_insensitively_and_exactly() {
        assert!(is_bpf_enabled_var("FELIX_BPFENABLED"));
        assert!(is_bpf_enabled_var("felix_bpfEnabled"));
        assert!(!is_bpf_enabled_var("FELIX_BPFENABLED_X"));
        assert!(!is_bpf_enabled_var("BPFENABLED"));
        assert!(!is_bpf_enabled_var(
            "FELIX_BPFKUBEPROXYIPTABLESCLEANUPENABLED"
        ));
    }

    #[test]
    fn linux_dataplane_words() {
        assert_eq!(linux_dataplane("BPF"), Some(Dataplane::Bpf));
        assert_eq!(linux_dataplane("Iptables"), Some(Dataplane::Iptables));
        assert_eq!(linux_dataplane("Nftables"), Some(Dataplane::Nftables));
        assert_eq!(linux_dataplane("VPP"), Some(Dataplane::Vpp));
        assert_eq!(linux_dataplane("none"), None);
        assert_eq!(linux_dataplane("eBPF"), None);
    }
}
