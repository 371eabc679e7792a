//! The Prometheus textfile from a real check and a real sweep of a stale node, read back with a
//! Prometheus text-format parser, and its figures checked against the fixture.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_parse::{LineInfo, Scrape, Value};

/// The node of tests/modes.rs: every kind of stale Calico object beside foreign ones.
fn stale_node(test: &str) -> Option<Sandbox> {
    let sb = sandbox(test)?;
    plant::calico_host(&sb.bpffs.path, &sb.cgroup.path).unwrap();
    sb.netns().enter(plant::calico_network).unwrap();
    Some(sb)
}

/// What the fixture plants, by family: the six connect-time programs (three attached
/// exclusively, three through links), three filters, one XDP program, bpfin.cali, the three
/// CTLB link pins, five maps (three globals, a repinned and a per-interface jump map) and four
/// Calico directories (ctlb/, old_jumps/ and the one in it, eth0_igr/).
const FIXTURE: [(&str, f64); 10] = [
    ("cgroup", 6.0),
    ("tc", 3.0),
    ("tcx", 0.0),
    ("netkit", 0.0),
    ("xdp", 1.0),
    ("link", 0.0),
    ("pin", 3.0),
    ("map", 5.0),
    ("directory", 4.0),
    ("device", 1.0),
];

type Metrics = BTreeMap<String, Vec<(BTreeMap<String, String>, f64)>>;

/// Samples by metric name, each as (labels without `command`, value). Every line must be one
/// the format knows, and every sample a documented gauge of the given command.
fn parse(path: &Path, command: &str) -> Metrics {
    let text = fs::read_to_string(path).unwrap();
    for line in text.lines() {
        assert!(
            !matches!(LineInfo::parse(line), LineInfo::Ignored),
            "not Prometheus text format: {line:?}\n{text}"
        );
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for s in scrape.samples {
        assert!(s.metric.starts_with("calico_bpf_guard_"), "{}", s.metric);
        assert!(
            scrape.docs.contains_key(&s.metric),
            "no HELP for {}",
            s.metric
        );
        let Value::Gauge(v) = s.value else {
            panic!("{} is not a gauge: {:?}", s.metric, s.value);
        };
        let mut labels: BTreeMap<String, String> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            labels.remove("command").as_deref(),
            Some(command),
            "{}",
            s.metric
        );
        out.entry(s.metric).or_default().push((labels, v));
    }
    out
}

/// The single sample of an unlabelled (but for `command`) metric.
fn value(m: &Metrics, name: &str) -> f64 {
    let samples = &m[&format!("calico_bpf_guard_{name}")];
    assert_eq!(samples.len(), 1, "{name}: {samples:?}");
    samples[0].1
}

/// The one label value of a one-hot metric.
fn label(m: &Metrics, name: &str, key: &str) -> String {
    let samples = &m[&format!("calico_bpf_guard_{name}")];
    assert_eq!(samples.len(), 1, "{name}: {samples:?}");
    assert_eq!(samples[0].1, 1.0);
    samples[0].0[key].clone()
}

fn by_family(m: &Metrics, name: &str) -> Vec<(String, f64)> {
    m[&format!("calico_bpf_guard_{name}")]
        .iter()
        .map(|(l, v)| (l["family"].clone(), *v))
        .collect()
}

fn fixture(scale: f64) -> Vec<(String, f64)> {
    FIXTURE
        .iter()
        .map(|(f, n)| (f.to_string(), n * scale))
        .collect()
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn check_and_sweep_write_what_they_saw() {
    let Some(sb) = stale_node("metrics") else {
        return;
    };
    let textfile = sb.dir.path.join("textfile");
    fs::create_dir(&textfile).unwrap();
    let swept = textfile.join("calico_bpf_guard.prom");
    let checked = textfile.join("calico_bpf_guard_check.prom");
    sb.write_config(&format!("metrics_file = \"{}\"\n", swept.display()))
        .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let check = |code| {
        let args = ["check", "--metrics", checked.to_str().unwrap()];
        (now(), guard_ok(&sb, &args, code), now())
    };

    // The check sees everything the fixture planted, and a dry run writes no sweep metrics.
    let (from, out, to) = check(1);
    let report = json(&guard_ok(&sb, &["check", "--json"], 1));
    let m = parse(&checked, "check");
    assert_eq!(
        by_family(&m, "stale_objects"),
        fixture(1.0),
        "{}",
        stdout(&out)
    );
    let total: f64 = FIXTURE.iter().map(|(_, n)| n).sum();
    assert_eq!(report["summary"]["planned"].as_f64(), Some(total));
    assert!(!m.contains_key("calico_bpf_guard_removed_objects"));
    assert_eq!(value(&m, "last_run_exit_code"), 1.0);
    assert_eq!(label(&m, "last_run_result", "result"), "stale");
    assert_eq!(label(&m, "mode", "dataplane"), "iptables");
    assert_eq!(label(&m, "mode", "ebpf"), "off");
    assert_eq!(value(&m, "scan_complete"), 1.0);
    let started = value(&m, "last_run_timestamp_seconds");
    assert!(
        from - 1.0 <= started && started <= to,
        "{from} {started} {to}"
    );
    assert!(value(&m, "last_run_duration_seconds") >= 0.0);
    guard_ok(&sb, &["sweep", "--dry-run"], 0);
    assert!(!swept.exists());

    // The sweep removes all of it, and says so.
    let before = sb.snapshot();
    guard_ok(&sb, &["sweep"], 0);
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &plant::CALICO_HOST
            .iter()
            .chain(&plant::CALICO_NETWORK)
            .copied()
            .collect::<Vec<_>>(),
    );
    let m = parse(&swept, "sweep");
    assert_eq!(by_family(&m, "removed_objects"), fixture(1.0));
    assert_eq!(by_family(&m, "stale_objects"), fixture(0.0));
    assert_eq!(value(&m, "last_run_exit_code"), 0.0);
    assert_eq!(label(&m, "last_run_result", "result"), "swept");
    assert_eq!(label(&m, "mode", "dataplane"), "iptables");
    assert_eq!(value(&m, "scan_complete"), 1.0);
    // Readable by node_exporter's own user, written whole: no temporary file is left.
    let mode = fs::metadata(&swept).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o644);
    let mut names: Vec<_> = fs::read_dir(&textfile)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["calico_bpf_guard.prom", "calico_bpf_guard_check.prom"]
    );

    // Clean now: the check's file is replaced, the sweep's stays as the last sweep left it.
    check(0);
    let m = parse(&checked, "check");
    assert_eq!(by_family(&m, "stale_objects"), fixture(0.0));
    assert_eq!(label(&m, "last_run_result", "result"), "ok");
    guard_ok(&sb, &["sweep"], 0);
    let m = parse(&swept, "sweep");
    assert_eq!(by_family(&m, "removed_objects"), fixture(0.0));
    assert_eq!(label(&m, "last_run_result", "result"), "clean");
}

#[test]
fn a_sweep_that_does_not_scan_says_so() {
    let Some(sb) = stale_node("metrics-skip") else {
        return;
    };
    let textfile = sb.dir.path.join("textfile");
    fs::create_dir(&textfile).unwrap();
    let swept = textfile.join("g.prom");
    sb.write_config(&format!("metrics_file = \"{}\"\n", swept.display()))
        .unwrap();
    sb.set_mode(Some("bpf")).unwrap();
    let before = sb.snapshot();
    guard_ok(&sb, &["sweep"], 0);
    assert_eq!(sb.snapshot(), before);
    let m = parse(&swept, "sweep");
    assert_eq!(label(&m, "last_run_result", "result"), "skipped");
    assert_eq!(label(&m, "mode", "dataplane"), "bpf");
    assert_eq!(label(&m, "mode", "ebpf"), "on");
    // Nothing was looked at: no counts, rather than zeros that would read as "clean".
    for absent in ["scan_complete", "stale_objects", "removed_objects"] {
        assert!(
            !m.contains_key(&format!("calico_bpf_guard_{absent}")),
            "{absent}"
        );
    }

    // A textfile directory that does not exist is reported, not made (under the unit's umask
    // node_exporter could not read it), and the sweep's exit code does not change.
    fs::remove_file(&swept).unwrap();
    fs::remove_dir(&textfile).unwrap();
    let out = guard_ok(&sb, &["sweep"], 0);
    assert!(
        stderr(&out).contains("cannot write metrics to") && !textfile.exists(),
        "{}",
        stderr(&out)
    );
}

/// The textfile directory belongs to node_exporter's user, who can put a symlink in its place,
/// or in place of a directory above it, or at the file's name: root's write never follows one. The directory behind stays empty, the warning names the place,
/// and the sweep's exit code does not change.
#[test]
fn symlinks_on_the_way_to_the_metrics_file_are_not_followed() {
    let Some(sb) = sandbox("metrics-links") else {
        return;
    };
    sb.set_mode(Some("bpf")).unwrap();
    let root_only = sb.dir.path.join("etc-x");
    fs::create_dir(&root_only).unwrap();
    let real = sb.dir.path.join("real/textfile");
    fs::create_dir_all(&real).unwrap();
    let write_to = |path: &Path| {
        sb.write_config(&format!("metrics_file = \"{}\"\n", path.display()))
            .unwrap();
        stderr(&guard_ok(&sb, &["sweep"], 0))
    };

    // The directory itself, and one above it.
    let textfile = sb.dir.path.join("textfile");
    std::os::unix::fs::symlink(&root_only, &textfile).unwrap();
    let err = write_to(&textfile.join("calico_bpf_guard.prom"));
    assert!(err.contains("not followed"), "{err}");
    let above = sb.dir.path.join("node_exporter");
    std::os::unix::fs::symlink(sb.dir.path.join("real"), &above).unwrap();
    let err = write_to(&above.join("textfile/calico_bpf_guard.prom"));
    assert!(err.contains("not followed"), "{err}");
    assert_eq!(fs::read_dir(&root_only).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&real).unwrap().count(), 0);

    // At the file's name: the link is replaced, its target untouched, and no temporary file
    // is left.
    let file = real.join("calico_bpf_guard.prom");
    let target = root_only.join("shadow");
    fs::write(&target, "root only\n").unwrap();
    std::os::unix::fs::symlink(&target, &file).unwrap();
    let err = write_to(&file);
    assert!(!err.contains("cannot write metrics"), "{err}");
    assert!(fs::symlink_metadata(&file).unwrap().is_file());
    assert_eq!(fs::read_to_string(&target).unwrap(), "root only\n");
    parse(&file, "sweep");
    assert_eq!(fs::read_dir(&real).unwrap().count(), 1);
}
