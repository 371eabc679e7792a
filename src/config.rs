//! The configuration file: a strict fragment (every key optional, unknown keys refused) merged
//! over built-in defaults, then validated into `Settings`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use modefile::{read_trusted, FileProblem, InvalidInput};

pub const DEFAULT_CONFIG: &str = "/etc/calico-bpf-guard/config.toml";
pub const DEFAULT_MODE_FILE: &str = "/var/lib/calico-bpf-guard/mode.toml";
pub const DEFAULT_LOCK_FILE: &str = "/run/calico-bpf-guard.lock";
pub const DEFAULT_BPFFS_ROOTS: [&str; 2] = ["/sys/fs/bpf", "/var/run/calico/bpffs"];
pub const DEFAULT_RCU_EXPEDITED_FILE: &str = "/sys/kernel/rcu_expedited";
pub const DEFAULT_EXPEDITE_RECORD_FILE: &str = "/run/calico-bpf-guard.rcu_expedited";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissingMode {
    /// No mode file: do nothing (a node that was never told its mode is left alone).
    Skip,
    /// No mode file: treat eBPF as off.
    Sweep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// stderr; with `<N>` level prefixes when journald reads it (JOURNAL_STREAM set).
    Stderr,
    /// The local syslog socket, for non-systemd inits.
    Syslog,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fragment {
    mode_file: Option<PathBuf>,
    on_missing_mode: Option<OnMissingMode>,
    bpffs_roots: Option<Vec<PathBuf>>,
    cgroup2_roots: Option<Vec<PathBuf>>,
    lock_file: Option<PathBuf>,
    log: Option<LogTarget>,
    expedite_grace_periods: Option<bool>,
    rcu_expedited_file: Option<PathBuf>,
    expedite_record_file: Option<PathBuf>,
    metrics_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode_file: PathBuf,
    pub on_missing_mode: OnMissingMode,
    pub bpffs_roots: Vec<PathBuf>,
    /// Empty: every cgroup2 mount in /proc/self/mountinfo.
    pub cgroup2_roots: Vec<PathBuf>,
    pub lock_file: PathBuf,
    pub log: LogTarget,
    /// Expedite RCU grace periods while detaching tcx and netkit programs (see `expedite`).
    pub expedite_grace_periods: bool,
    /// The kernel's switch; a test points it at a file of its own.
    pub rcu_expedited_file: PathBuf,
    /// What the guard changed in `rcu_expedited_file`, kept until it is put back, so that the
    /// next run can put it back after a crash or SIGKILL. Under /run: a reboot resets both.
    pub expedite_record_file: PathBuf,
    /// Where a sweep writes its Prometheus metrics (node_exporter's textfile collector); None:
    /// nowhere. `check` writes only where `--metrics` says, so the two never share a file.
    pub metrics_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            mode_file: DEFAULT_MODE_FILE.into(),
            on_missing_mode: OnMissingMode::Skip,
            bpffs_roots: DEFAULT_BPFFS_ROOTS.iter().map(PathBuf::from).collect(),
            cgroup2_roots: Vec::new(),
            lock_file: DEFAULT_LOCK_FILE.into(),
            log: LogTarget::Stderr,
            expedite_grace_periods: true,
            rcu_expedited_file: DEFAULT_RCU_EXPEDITED_FILE.into(),
            expedite_record_file: DEFAULT_EXPEDITE_RECORD_FILE.into(),
            metrics_file: None,
        }
    }
}

/// Load the configuration. `explicit` is false for the default path, where a missing file
/// means built-in defaults; a file named on the command line must exist.
pub fn load(path: &Path, explicit: bool) -> Result<Settings, InvalidInput> {
    match read_trusted(path) {
        Ok(text) => parse(path, &text),
        Err(FileProblem::NotFound) if !explicit => Ok(Settings::default()),
        Err(problem) => Err(InvalidInput::new(path, problem.to_string())),
    }
}

pub fn parse(path: &Path, text: &str) -> Result<Settings, InvalidInput> {
    let frag: Fragment =
        toml::from_str(text).map_err(|e| InvalidInput::from_toml(path, text, &e))?;
    let defaults = Settings::default();
    let absolute = |key: &str, p: &Path| {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(InvalidInput::at_key(
                path,
                text,
                key,
                format!("`{}` is not an absolute path", p.display()),
            ))
        }
    };
    if let Some(p) = &frag.mode_file {
        absolute("mode_file", p)?;
    }
    if let Some(p) = &frag.lock_file {
        absolute("lock_file", p)?;
    }
    if let Some(p) = &frag.rcu_expedited_file {
        absolute("rcu_expedited_file", p)?;
    }
    if let Some(p) = &frag.expedite_record_file {
        absolute("expedite_record_file", p)?;
    }
    if let Some(p) = &frag.metrics_file {
        absolute("metrics_file", p)?;
        // node_exporter's textfile collector reads *.prom and silently skips anything else.
        if p.extension().is_none_or(|e| e != "prom") {
            return Err(InvalidInput::at_key(
                path,
                text,
                "metrics_file",
                format!(
                    "`{}` does not end in .prom, which node_exporter's textfile collector needs",
                    p.display()
                ),
            ));
        }
    }
    for p in frag.bpffs_roots.iter().flatten() {
        absolute("bpffs_roots", p)?;
    }
    for p in frag.cgroup2_roots.iter().flatten() {
        absolute("cgroup2_roots", p)?;
    }
    Ok(Settings {
        mode_file: frag.mode_file.unwrap_or(defaults.mode_file),
        on_missing_mode: frag.on_missing_mode.unwrap_or(defaults.on_missing_mode),
        bpffs_roots: frag.bpffs_roots.unwrap_or(defaults.bpffs_roots),
        cgroup2_roots: frag.cgroup2_roots.unwrap_or(defaults.cgroup2_roots),
        lock_file: frag.lock_file.unwrap_or(defaults.lock_file),
        log: frag.log.unwrap_or(defaults.log),
        expedite_grace_periods: frag
            .expedite_grace_periods
            .unwrap_or(defaults.expedite_grace_periods),
        rcu_expedited_file: frag
            .rcu_expedited_file
            .unwrap_or(defaults.rcu_expedited_file),
        expedite_record_file: frag
            .expedite_record_file
            .unwrap_or(defaults.expedite_record_file),
        metrics_file: frag.metrics_file,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Result<Settings, String> {
        parse(Path::new("/etc/g.toml"), text).map_err(|e| e.to_string())
    }

    #[test]
    fn empty_file_is_defaults() {
        assert_eq!(p(""), Ok(Settings::default()));
    }

    #[test]
    fn every_key() {
        let s = p(r#"
mode_file = "/m.toml"
on_missing_mode = "sweep"
bpffs_roots = ["/b"]
cgroup2_roots = ["/c1", "/c2"]
lock_file = "/run/l"
log = "syslog"
expedite_grace_periods = false
rcu_expedited_file = "/tmp/rcu"
expedite_record_file = "/run/r"
metrics_file = "/var/lib/node_exporter/textfile/g.prom"
"#)
        .unwrap();
        assert_eq!(
            s,
            Settings {
                mode_file: "/m.toml".into(),
                on_missing_mode: OnMissingMode::Sweep,
                bpffs_roots: vec!["/b".into()],
                cgroup2_roots: vec!["/c1".into(), "/c2".into()],
                lock_file: "/run/l".into(),
                log: LogTarget::Syslog,
                expedite_grace_periods: false,
                rcu_expedited_file: "/tmp/rcu".into(),
                expedite_record_file: "/run/r".into(),
                metrics_file: Some("/var/lib/node_exporter/textfile/g.prom".into()),
            }
        );
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let cases: &[(&str, &str)] = &[
            (
                "\nbogus = 1\n",
                "/etc/g.toml: line 2, key `bogus`: unknown field `bogus`",
            ),
            (
                "on_missing_mode = \"maybe\"\n",
                "line 1, key `on_missing_mode`: unknown variant `maybe`",
            ),
            (
                "# c\n\nbpffs_roots = \"/x\"\n",
                "line 3, key `bpffs_roots`: invalid type: string",
            ),
            (
                "mode_file = 3\n",
                "line 1, key `mode_file`: invalid type: integer",
            ),
            (
                "log = \"journal\"\n",
                "key `log`: unknown variant `journal`",
            ),
            (
                "mode_file = \"rel/m.toml\"\n",
                "line 1, key `mode_file`: `rel/m.toml` is not an absolute path",
            ),
            (
                "\ncgroup2_roots = [\"/ok\", \"x\"]\n",
                "line 2, key `cgroup2_roots`: `x` is not an absolute path",
            ),
            (
                "expedite_grace_periods = \"yes\"\n",
                "line 1, key `expedite_grace_periods`: invalid type: string",
            ),
            (
                "expedite_grace_periods = 1\n",
                "line 1, key `expedite_grace_periods`: invalid type: integer",
            ),
            (
                "expedite_record_file = \"run/r\"\n",
                "line 1, key `expedite_record_file`: `run/r` is not an absolute path",
            ),
            (
                "metrics_file = \"g.prom\"\n",
                "line 1, key `metrics_file`: `g.prom` is not an absolute path",
            ),
            (
                "\nmetrics_file = \"/var/lib/g.txt\"\n",
                "line 2, key `metrics_file`: `/var/lib/g.txt` does not end in .prom",
            ),
            (
                "metrics_file = true\n",
                "line 1, key `metrics_file`: invalid type: boolean",
            ),
            ("mode_file = \n", "line 1"),
            ("[section]\nx = 1\n", "unknown field `section`"),
        ];
        for (text, want) in cases {
            let err = p(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: got {err:?}, want {want:?}");
            assert!(err.starts_with("/etc/g.toml: "), "{err}");
        }
    }
}
