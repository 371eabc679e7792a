//! The cached node mode file: which dataplane Calico runs on this node (or that Calico is no
//! longer its dataplane), read by `calico-bpf-guard` before kubelet starts and written by its
//! `mode set`, by `calico-bpf-guard-sync` from the cluster's Calico settings, or by image builds,
//! cloud-init and configuration management. One implementation of the format and of the trusted
//! read and atomic write, shared by both binaries so that they can never disagree about what the
//! file says. It holds no policy: what a dataplane means for a sweep is the guard's to decide.

pub mod files;
mod invalid;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use files::{read_trusted, write_atomic, FileProblem, MAX_FILE};
pub use invalid::InvalidInput;

/// Calico's `linuxDataplane` values, and `none`: Calico is not this node's dataplane any more
/// (uninstalled, or the cluster moved to another CNI). Their names, in the mode file, in reports
/// and on command lines, are the lowercase variant names; serde uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dataplane {
    Bpf,
    Iptables,
    Nftables,
    Vpp,
    None,
}

impl Dataplane {
    pub const ALL: [Dataplane; 5] = [
        Dataplane::Bpf,
        Dataplane::Iptables,
        Dataplane::Nftables,
        Dataplane::Vpp,
        Dataplane::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dataplane::Bpf => "bpf",
            Dataplane::Iptables => "iptables",
            Dataplane::Nftables => "nftables",
            Dataplane::Vpp => "vpp",
            Dataplane::None => "none",
        }
    }

    /// Case-insensitive, as Calico reads `linuxDataplane` (`BPF`, `Iptables`).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
    }

    /// Only `bpf` is eBPF on; `none` is off like the others: Calico runs nothing here.
    pub fn ebpf_on(self) -> bool {
        self == Dataplane::Bpf
    }

    /// The names, for messages and command-line help.
    pub fn names() -> String {
        Self::ALL.map(Dataplane::as_str).join(", ")
    }
}

impl std::fmt::Display for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mode {
    pub dataplane: Dataplane,
    pub source: Option<String>,
    pub updated: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    dataplane: String,
    source: Option<String>,
    updated: Option<toml::value::Datetime>,
}

/// Read the mode file; `Ok(None)` when it does not exist.
pub fn read(path: &Path) -> Result<Option<Mode>, InvalidInput> {
    match read_trusted(path) {
        Ok(text) => parse(path, &text).map(Some),
        Err(FileProblem::NotFound) => Ok(None),
        Err(problem) => Err(InvalidInput::new(path, problem.to_string())),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Mode, InvalidInput> {
    let raw: Raw = toml::from_str(text).map_err(|e| InvalidInput::from_toml(path, text, &e))?;
    let dataplane = Dataplane::parse(raw.dataplane.trim()).ok_or_else(|| {
        InvalidInput::at_key(
            path,
            text,
            "dataplane",
            format!("`{}` is not one of {}", raw.dataplane, Dataplane::names()),
        )
    })?;
    if let Some(d) = &raw.updated {
        if d.date.is_none() {
            return Err(InvalidInput::at_key(
                path,
                text,
                "updated",
                format!("`{d}` has no date"),
            ));
        }
    }
    Ok(Mode {
        dataplane,
        source: raw.source,
        updated: raw.updated.map(|d| d.to_string()),
    })
}

/// The file's text for a mode; `updated` is the caller's clock, in RFC 3339.
pub fn render(mode: &Mode) -> String {
    let mut out = String::from(
        "# The node's Calico dataplane, read by calico-bpf-guard before kubelet starts.\n",
    );
    out += &format!("dataplane = {}\n", toml_string(&mode.dataplane.to_string()));
    if let Some(s) = &mode.source {
        out += &format!("source = {}\n", toml_string(s));
    }
    if let Some(u) = &mode.updated {
        out += &format!("updated = {u}\n");
    }
    out
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out += "\\\"",
            '\\' => out += "\\\\",
            c if (c as u32) < 0x20 || c == '\u{7f}' => out += &format!("\\u{:04X}", c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Write the mode file atomically, 0644.
pub fn write(path: &Path, mode: &Mode) -> std::io::Result<()> {
    write_atomic(path, render(mode).as_bytes(), 0o644)
}

/// Now, as a TOML/RFC 3339 UTC datetime, from the system clock alone.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Mode, String> {
        parse(Path::new("/m.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn dataplanes_case_insensitive() {
        let cases = [
            ("bpf", Dataplane::Bpf, true),
            ("BPF", Dataplane::Bpf, true),
            ("Iptables", Dataplane::Iptables, false),
            ("nftables", Dataplane::Nftables, false),
            ("VPP", Dataplane::Vpp, false),
            ("none", Dataplane::None, false),
            ("None", Dataplane::None, false),
        ];
        for (text, want, on) in cases {
            let m = p(&format!("dataplane = \"{text}\"\n")).unwrap();
            assert_eq!(m.dataplane, want);
            assert_eq!(m.dataplane.ebpf_on(), on);
        }
    }

    /// One list of names: what the file takes is what `mode set` takes and what is shown.
    #[test]
    fn one_list_of_names() {
        let shown: Vec<String> = Dataplane::ALL.iter().map(Dataplane::to_string).collect();
        assert_eq!(shown, ["bpf", "iptables", "nftables", "vpp", "none"]);
        for d in &Dataplane::ALL {
            assert_eq!(Dataplane::parse(&d.to_string()), Some(*d));
            assert_eq!(
                serde_json::to_value(d).unwrap(),
                serde_json::Value::String(d.to_string())
            );
        }
    }

    #[test]
    fn full_file() {
        let m = p(
            "dataplane = \"iptables\"\nsource = \"image build\"\nupdated = 2026-11-25T10:00:00Z\n",
        )
        .unwrap();
        assert_eq!(
            m,
            Mode {
                dataplane: Dataplane::Iptables,
                source: Some("image build".into()),
                updated: Some("2026-11-25T10:00:00Z".into()),
            }
        );
    }

    #[test]
    fn bad_files() {
        let cases: &[(&str, &str)] = &[
            ("", "missing field `dataplane`"),
            (
                "dataplane = \"ebpf\"\n",
                "line 1, key `dataplane`: `ebpf` is not one of bpf, iptables, nftables, vpp, none",
            ),
            ("dataplane = 1\n", "line 1, key `dataplane`: invalid type"),
            (
                "dataplane = \"bpf\"\nextra = 1\n",
                "line 2, key `extra`: unknown field `extra`",
            ),
            (
                "dataplane = \"bpf\"\nupdated = \"yesterday\"\n",
                "line 2, key `updated`",
            ),
            (
                "dataplane = \"bpf\"\nupdated = 10:00:00\n",
                "key `updated`: `10:00:00` has no date",
            ),
            ("dataplane = \"bpf\"\ndataplane = \"iptables\"\n", "line 2"),
            ("dataplane = \"bpf", "line 1"),
        ];
        for (text, want) in cases {
            let err = p(text).expect_err(text);
            assert!(err.starts_with("/m.toml: "), "{err}");
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
        }
    }

    #[test]
    fn render_round_trips_hostile_source() {
        let m = Mode {
            dataplane: Dataplane::Nftables,
            source: Some("cloud-init \"x\" \\ \n\u{1}".into()),
            updated: Some("2026-11-25T10:00:00Z".into()),
        };
        assert_eq!(p(&render(&m)).unwrap(), m);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
