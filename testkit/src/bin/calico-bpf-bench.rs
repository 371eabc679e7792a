//! `calico-bpf-bench`: the guard against the manual bpftool/tc procedure and against the kernel's
//! own cost, on sandbox nodes with hundreds to thousands of Calico interfaces (issue 5).
//!
//! Every measurement starts from the same planted state: the node (interfaces, qdiscs, foreign
//! objects) is built once per size, and Calico's objects are planted afresh before each run and
//! checked gone (and the foreign ones still there) after it.

use std::fmt::Write as _;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use calico_bpf_guard::kernel::bpf::{self, IdSpace, Target};
use calico_bpf_guard::kernel::netlink::{Filter, Rtnl};
use calico_bpf_testkit::sandbox::{self, unique, Netns};
use calico_bpf_testkit::{plant, progs, snapshot, Sandbox};
use serde_json::Value;

const USAGE: &str = "usage: calico-bpf-bench --guard PATH [--sizes 100,1000] [--variants tc,tcx]
                        [--runs N] [--manual-max N] [--out FILE]
       calico-bpf-bench --guard PATH --hold [--sizes N] [--variants tc|tcx]
  --hold        build one node, plant it, print its config and namespace, and plant it again
                for every line read on stdin (for profiling by hand); EOF removes it
  --runs        timed sweeps per node (median reported; default 3)
  --manual-max  largest node the manual procedure runs on (default: every size)
  --out         also write the Markdown table here";

/// Global maps pinned under tc/globals, and maps in old_jumps repin directories.
const GLOBAL_PINS: usize = 280;
const OLD_JUMP_DIRS: usize = 4;
const OLD_JUMP_PINS: usize = 5;

/// Set by SIGINT/SIGTERM: the bench stops at the next step and its sandboxes are removed by
/// their Drop (a killed child process makes the current step fail first).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// clsact with ingress and egress direct-action filters (Calico 3.27–3.30).
    Tc,
    /// tcx links pinned under <bpffs>/tcx (Calico 3.31+).
    Tcx,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Tc => "tc",
            Variant::Tcx => "tcx",
        }
    }
}

struct Opts {
    guard: PathBuf,
    sizes: Vec<usize>,
    variants: Vec<Variant>,
    runs: usize,
    manual_max: usize,
    out: Option<PathBuf>,
    manual_script: PathBuf,
    hold: bool,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let get = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| {
                args.get(i + 1)
                    .cloned()
                    .context(format!("{name} needs a value"))
            })
            .transpose()
    };
    let list = |v: String| -> Result<Vec<usize>> {
        v.split(',')
            .map(|s| s.trim().parse().with_context(|| format!("bad number {s}")))
            .collect()
    };
    let guard = PathBuf::from(get("--guard")?.context(USAGE)?);
    let sizes = get("--sizes")?.map_or(Ok(vec![100, 1000]), list)?;
    let variants = get("--variants")?
        .unwrap_or_else(|| "tc,tcx".into())
        .split(',')
        .map(|v| match v {
            "tc" => Ok(Variant::Tc),
            "tcx" => Ok(Variant::Tcx),
            o => bail!("unknown variant {o}: want tc or tcx"),
        })
        .collect::<Result<_>>()?;
    let runs = get("--runs")?.map_or(Ok(3), |v| v.parse())?;
    ensure!(runs >= 1, "--runs must be at least 1");
    let manual_max = get("--manual-max")?.map_or(Ok(usize::MAX), |v| v.parse())?;
    // The manual procedure lives beside this binary's sources, in bench/.
    let manual_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/manual-sweep.sh");
    Ok(Opts {
        guard,
        sizes,
        variants,
        runs,
        manual_max,
        out: get("--out")?.map(PathBuf::from),
        manual_script,
        hold: args.iter().any(|a| a == "--hold"),
    })
}

fn main() -> ExitCode {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match parse_opts(&args).and_then(|o| run(&o)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A sandbox node with `n` Calico workload interfaces. The pods' ends of the veth pairs live in
/// a second namespace, as on a real node, so the host namespace holds `n` interfaces, not 2n.
struct Node {
    sb: Sandbox,
    _pods: Netns,
    variant: Variant,
    ifaces: Vec<(String, u32)>,
}

/// Calico's interface names: `cali` and 11 hex digits of a hash of the workload.
fn iface_name(i: usize) -> String {
    let h = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 20;
    format!("cali{:011x}", h & 0xfff_ffff_ffff)
}

impl Node {
    fn new(variant: Variant, n: usize, guard: &Path) -> Result<Node> {
        let sb = Sandbox::new("bench", guard)?;
        let pods = Netns::new(&unique("bpods"))?;
        let names: Vec<String> = (0..n).map(iface_name).collect();
        let mut batch = String::new();
        for (i, name) in names.iter().enumerate() {
            writeln!(
                batch,
                "link add {name} type veth peer name eth{i} netns {}",
                pods.name
            )?;
            writeln!(batch, "link set {name} up")?;
        }
        sb.netns().ip_batch(&batch)?;
        if variant == Variant::Tc {
            let qdiscs: String = names
                .iter()
                .map(|d| format!("qdisc add dev {d} clsact\n"))
                .collect();
            sandbox::run_stdin("tc", &["-n", &sb.netns().name, "-batch", "-"], &qdiscs)?;
        }
        let links = sb.netns().enter(|| Ok(Rtnl::open()?.links()?))?;
        let ifaces = names
            .into_iter()
            .map(|name| {
                let idx = links
                    .iter()
                    .find(|l| l.name == name.as_str())
                    .map(|l| l.ifindex)
                    .with_context(|| format!("no interface {name}"))?;
                Ok((name, idx))
            })
            .collect::<Result<_>>()?;
        // Each pod's cgroup and its container's, as kubelet makes them: the guard walks every
        // cgroup under its roots, and a real node has them by the hundred.
        for i in 0..n {
            sb.cgroup.child(&format!("kubepods/pod{i:04}/c{i:04}"))?;
        }
        let node = Node {
            sb,
            _pods: pods,
            variant,
            ifaces,
        };
        node.plant_foreign()?;
        node.sb.set_mode(Some("iptables"))?;
        Ok(node)
    }

    fn bpffs(&self) -> &Path {
        &self.sb.bpffs.path
    }

    fn cgroup(&self) -> &Path {
        &self.sb.cgroup.path
    }

    /// Other tools' objects on the same hooks and in the same directories: they must survive
    /// every run, so they are planted once.
    fn plant_foreign(&self) -> Result<()> {
        let cg = self.cgroup();
        plant::attach(
            cg,
            progs::SOCK_ADDR,
            "cil_sock6_connect",
            plant::CONNECT6,
            plant::MULTI,
            false,
        )?;
        plant::attach(
            cg,
            progs::CGROUP_SKB,
            "sd_fw_ingress",
            progs::ATTACH_INGRESS,
            plant::MULTI,
            false,
        )?;
        plant::pin_map(
            &self.bpffs().join("tc/globals/cilium_calls"),
            "cilium_calls",
        )?;
        let first = self.ifaces[0].0.clone();
        let variant = self.variant;
        // Outside Calico's places, so the guard must leave it.
        let foreign_pin = self.bpffs().join("cilium/tcx").join(&first);
        self.sb.netns().enter(move || match variant {
            Variant::Tc => plant::tc_filter(
                &first,
                plant::INGRESS,
                3,
                1,
                plant::ETH_P_ALL,
                "cil_from_contai",
            ),
            Variant::Tcx => plant::tcx_link(
                &first,
                plant::TCX_INGRESS,
                "cil_from_contai",
                Some(&foreign_pin),
            )
            .map(drop),
        })
    }

    /// Calico's objects: the six CTLB attachments (IPv4 exclusive as 3.22–3.28.4 left them,
    /// IPv6 as pinned links as 3.28.5+ does), the global and old_jumps map pins, two programs
    /// per interface, and the bpfin.cali pair.
    fn plant_calico(&self) -> Result<()> {
        let (bpffs, cg) = (self.bpffs(), self.cgroup());
        for (name, hook) in &plant::CTLB[..3] {
            plant::attach(cg, progs::SOCK_ADDR, name, *hook, 0, true)?;
        }
        for (name, hook) in &plant::CTLB[3..] {
            let pin = bpffs.join("ctlb").join(name);
            plant::link(cg, progs::SOCK_ADDR, name, *hook, Some(&pin), true)?;
        }
        for i in 0..GLOBAL_PINS {
            let name = format!("cali_v4_b{i:03}");
            plant::pin_map(&bpffs.join("tc/globals").join(&name), &name)?;
        }
        for d in 0..OLD_JUMP_DIRS {
            for j in 0..OLD_JUMP_PINS {
                let rel = format!("tc/globals/old_jumps/{:06x}/cali_jump{j}", d * 7919);
                plant::pin_map(&bpffs.join(rel), &format!("cali_jump{j}"))?;
            }
        }
        let ifaces = self.ifaces.clone();
        let variant = self.variant;
        let bpffs = bpffs.to_path_buf();
        self.sb.netns().enter(move || {
            sandbox::run(
                "ip",
                &[
                    "link",
                    "add",
                    "bpfin.cali",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "bpfout.cali",
                ],
            )?;
            for (name, _) in &ifaces {
                check_stop()?;
                match variant {
                    Variant::Tc => {
                        for parent in [plant::INGRESS, plant::EGRESS] {
                            plant::tc_filter(
                                name,
                                parent,
                                1,
                                1,
                                plant::ETH_P_ALL,
                                "cali_tc_preambl",
                            )?;
                        }
                    }
                    Variant::Tcx => {
                        for (hook, dir) in [
                            (plant::TCX_INGRESS, "ingress"),
                            (plant::TCX_EGRESS, "egress"),
                        ] {
                            let pin = bpffs.join("tcx").join(format!("{name}_{dir}"));
                            plant::tcx_link(name, hook, "cali_tc_preambl", Some(&pin))?;
                        }
                    }
                }
            }
            Ok(())
        })
    }

    /// How many Calico objects a sweep removes on this node.
    fn calico_objects(&self) -> usize {
        // 6 CTLB attachments + 3 CTLB pins + ctlb/, global pins, old_jumps pins and directories,
        // two per interface (plus a pin each for tcx), bpfin.cali.
        let per_iface = match self.variant {
            Variant::Tc => 2,
            Variant::Tcx => 4,
        };
        10 + GLOBAL_PINS
            + OLD_JUMP_DIRS * (OLD_JUMP_PINS + 1)
            + 1
            + per_iface * self.ifaces.len()
            + 1
    }

    /// What is there now, read without the guard's own scanning code: Calico programs on the
    /// cgroup, on tc and on tcx, Calico pins, the bpfin.cali device, and the foreign objects.
    fn census(&self) -> Result<Census> {
        let cg = snapshot::cgroups(self.cgroup())?;
        let pins = snapshot::pins(self.bpffs())?;
        let mut c = Census {
            ctlb: cg.iter().filter(|l| l.contains(" calico_")).count(),
            foreign_cgroup: cg.len() - cg.iter().filter(|l| l.contains(" calico_")).count(),
            calico_pins: pins
                .iter()
                .filter(|l| {
                    l.starts_with("pin ctlb/")
                        || l.starts_with("pin tcx/")
                        || l.starts_with("pin tc/globals/cali_")
                        || l.starts_with("pin tc/globals/old_jumps/")
                })
                .count(),
            foreign_pins: pins
                .iter()
                .filter(|l| *l == "pin tc/globals/cilium_calls" || l.starts_with("pin cilium/"))
                .count(),
            ..Default::default()
        };
        let ifaces = self.ifaces.clone();
        let net = self.sb.netns().enter(move || {
            let mut c = Census::default();
            let out = Command::new("bpftool")
                .args(["-j", "net", "show"])
                .output()?;
            ensure!(out.status.success(), "bpftool net show failed");
            let v: Value = serde_json::from_slice(&out.stdout)?;
            for tc in v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("tc").and_then(Value::as_array))
                .flatten()
            {
                match tc.get("name").and_then(Value::as_str) {
                    Some("cali_tc_preambl") => c.calico_hooks += 1,
                    Some(_) => c.foreign_hooks += 1,
                    None => {}
                }
            }
            // This bpftool predates tcx, so tcx hooks are queried directly.
            for (_, idx) in &ifaces {
                for hook in [plant::TCX_INGRESS, plant::TCX_EGRESS] {
                    match bpf::query(Target::Ifindex(*idx), hook) {
                        Ok(q) => {
                            for p in q.progs {
                                let name = bpf::fd_by_id(IdSpace::Prog, p.prog_id)
                                    .and_then(|fd| bpf::prog_info(fd.as_fd()))
                                    .map(|i| i.name)
                                    .unwrap_or_default();
                                if name.starts_with("cali_") {
                                    c.calico_hooks += 1;
                                } else {
                                    c.foreign_hooks += 1;
                                }
                            }
                        }
                        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            c.bpfin = Command::new("ip")
                .args(["link", "show", "dev", "bpfin.cali"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            Ok(c)
        })?;
        c.calico_hooks = net.calico_hooks;
        c.foreign_hooks = net.foreign_hooks;
        c.bpfin = net.bpfin;
        Ok(c)
    }

    /// After a run: every Calico object gone, every foreign one still there.
    fn expect_clean(&self, what: &str) -> Result<()> {
        let c = self.census()?;
        ensure!(
            c.ctlb == 0 && c.calico_pins == 0 && c.calico_hooks == 0 && !c.bpfin,
            "{what} left Calico objects behind: {c:?}"
        );
        ensure!(
            c.foreign_cgroup == 2 && c.foreign_pins == self.foreign_pins() && c.foreign_hooks == 1,
            "{what} removed foreign objects: {c:?}"
        );
        Ok(())
    }

    fn expect_planted(&self) -> Result<()> {
        let c = self.census()?;
        let per_iface = 2 * self.ifaces.len();
        let pins = 3
            + GLOBAL_PINS
            + OLD_JUMP_DIRS * OLD_JUMP_PINS
            + if self.variant == Variant::Tcx {
                per_iface
            } else {
                0
            };
        ensure!(
            c.ctlb == 6 && c.calico_hooks == per_iface && c.calico_pins == pins && c.bpfin,
            "planting is incomplete: {c:?}"
        );
        Ok(())
    }

    fn foreign_pins(&self) -> usize {
        match self.variant {
            Variant::Tc => 1,
            Variant::Tcx => 2,
        }
    }

    fn replant(&self) -> Result<()> {
        check_stop()?;
        self.plant_calico()?;
        self.expect_planted()
    }
}

#[derive(Debug, Default)]
struct Census {
    ctlb: usize,
    foreign_cgroup: usize,
    calico_pins: usize,
    foreign_pins: usize,
    calico_hooks: usize,
    foreign_hooks: usize,
    bpfin: bool,
}

/// The kernel's switch the guard sets while it detaches tcx programs.
const RCU_EXPEDITED: &str = "/sys/kernel/rcu_expedited";

fn rcu_expedited() -> Result<String> {
    Ok(fs::read_to_string(RCU_EXPEDITED)
        .with_context(|| format!("reading {RCU_EXPEDITED}"))?
        .trim()
        .to_string())
}

/// One timed `sweep` with this config: wall time seen from here (including the `time`
/// wrapper's fork, well under a millisecond) and the guard's peak RSS. /usr/bin/time forks a
/// fresh process for the guard; a child spawned straight from this (large) process would
/// inherit its RSS high-water mark through vfork and exec. The guard must leave
/// rcu_expedited as it found it.
fn guard_sweep(node: &Node, guard: &Path, config: &Path) -> Result<(Duration, u64)> {
    let rss_file = node.sb.dir.path.join("time.out");
    let was = rcu_expedited()?;
    let r = guard_sweep_once(node, guard, config, &rss_file)?;
    let now = rcu_expedited()?;
    ensure!(
        now == was,
        "{RCU_EXPEDITED} was {was} before the sweep and is {now} after it"
    );
    Ok(r)
}

fn guard_sweep_once(
    node: &Node,
    guard: &Path,
    config: &Path,
    rss_file: &Path,
) -> Result<(Duration, u64)> {
    node.sb.netns().enter(|| loop {
        let t0 = Instant::now();
        let out = Command::new("/usr/bin/time")
            .args(["-f", "%M", "-o"])
            .arg(rss_file)
            .arg(guard)
            .arg("--config")
            .arg(config)
            .arg("sweep")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .output()?;
        let wall = t0.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if refused_by_a_scanner(&out) {
            eprintln!("   (refused while another process held our programs; again: {stderr})");
            continue;
        }
        ensure!(
            out.status.success(),
            "sweep exited {:?}: {stderr}",
            out.status.code(),
        );
        let text = fs::read_to_string(rss_file)?;
        let kib = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("/usr/bin/time wrote {text:?}"))?;
        return Ok((wall, kib));
    })
}

/// Program ids are machine-wide, so anything that walks every program (bpftool prog show,
/// another guard's scan in a test) holds each one open for a moment, and the guard's
/// live-dataplane interlock refuses the sweep, changing nothing. On a shared machine that
/// happens; the run is repeated on the same, untouched state.
fn refused_by_a_scanner(out: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    out.status.code() == Some(1)
        && stderr.contains("refused: a running process holds")
        && stderr
            .lines()
            .filter(|l| l.contains("live eBPF dataplane: pid"))
            .all(|l| l.contains("(calico-bpf-guar)") || l.contains("(bpftool)"))
}

/// System calls one `sweep` makes, from `strace -c -f`'s total line.
fn guard_syscalls(node: &Node, guard: &Path) -> Result<u64> {
    let trace = node.sb.dir.path.join("strace.out");
    let config = node.sb.config.clone();
    node.sb.netns().enter(|| {
        let out = loop {
            let out = Command::new("strace")
                .args(["-f", "-c", "-o"])
                .arg(&trace)
                .arg(guard)
                .arg("--config")
                .arg(&config)
                .arg("sweep")
                .stdin(Stdio::null())
                .output()?;
            if !refused_by_a_scanner(&out) {
                break out;
            }
        };
        ensure!(
            out.status.success(),
            "sweep under strace failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = fs::read_to_string(&trace)?;
        // "100.00    0.012345           5      2345        12 total": calls is the 4th column.
        text.lines()
            .find(|l| l.trim_end().ends_with(" total"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|c| c.parse().ok())
            .with_context(|| format!("no total line in strace -c output:\n{text}"))
    })
}

/// The manual procedure (bench/manual-sweep.sh): list with bpftool and tc, then one process per
/// object. Returns the wall time and how many processes the script started.
fn manual_sweep(node: &Node, script: &Path) -> Result<(Duration, u64)> {
    let (bpffs, cg) = (node.bpffs().to_path_buf(), node.cgroup().to_path_buf());
    node.sb.netns().enter(|| {
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(script)
            .arg(&bpffs)
            .arg(&cg)
            .stdin(Stdio::null())
            .output()?;
        let wall = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "manual procedure failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        let procs = stdout
            .lines()
            .find_map(|l| l.strip_prefix("processes: "))
            .and_then(|n| n.trim().parse().ok())
            .context("the manual procedure did not say how many processes it ran")?;
        Ok((wall, procs))
    })
}

/// The kernel's own cost of the changes a sweep makes, timed one operation at a time in this
/// process: every handle (fds, filter keys, paths) is prepared first, untimed, so each timed
/// interval is exactly one detach, one RTM_DELTFILTER/RTM_DELLINK round trip, one unlink or one
/// rmdir. Discovery (dumps, queries) is not part of the floor.
#[derive(Debug, Default, Clone)]
struct Floor {
    cgroup: Duration,
    hooks: Duration,
    pins: Duration,
    device: Duration,
}

impl Floor {
    fn total(&self) -> Duration {
        self.cgroup + self.hooks + self.pins + self.device
    }
}

fn timed<T>(sum: &mut Duration, f: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    let t0 = Instant::now();
    let r = f();
    *sum += t0.elapsed();
    Ok(r?)
}

fn kernel_floor(node: &Node) -> Result<Floor> {
    let bpffs = node.bpffs().to_path_buf();
    let cgdir = fs::File::open(node.cgroup())?;
    let ifaces = node.ifaces.clone();
    let variant = node.variant;
    node.sb.netns().enter(move || {
        let mut fl = Floor::default();
        // CTLB: the IPv4 programs by their own fds (old-style), the IPv6 ones by their links.
        let mut exclusive = Vec::new();
        for (_, hook) in &plant::CTLB[..3] {
            for p in bpf::query(Target::Fd(cgdir.as_fd()), *hook)?.progs {
                exclusive.push((*hook, bpf::fd_by_id(IdSpace::Prog, p.prog_id)?));
            }
        }
        let ctlb_pins: Vec<PathBuf> = plant::CTLB[3..]
            .iter()
            .map(|(n, _)| bpffs.join("ctlb").join(n))
            .collect();
        let ctlb_links = ctlb_pins
            .iter()
            .map(|p| bpf::obj_get(p))
            .collect::<std::io::Result<Vec<_>>>()?;
        for (hook, prog) in &exclusive {
            timed(&mut fl.cgroup, || {
                bpf::prog_detach(Target::Fd(cgdir.as_fd()), prog.as_fd(), *hook)
            })?;
        }
        for l in &ctlb_links {
            timed(&mut fl.cgroup, || bpf::link_detach(l.as_fd()))?;
        }

        let mut unpin: Vec<PathBuf> = ctlb_pins;
        match variant {
            Variant::Tc => {
                let mut rtnl = Rtnl::open()?;
                for (_, idx) in &ifaces {
                    for parent in [plant::INGRESS, plant::EGRESS] {
                        let f = Filter {
                            ifindex: *idx,
                            parent,
                            handle: 1,
                            info: (1 << 16) | u32::from(plant::ETH_P_ALL.to_be()),
                            chain: 0,
                            kind: "bpf".into(),
                            prog_id: None,
                        };
                        timed(&mut fl.hooks, || rtnl.del_filter(&f))?;
                    }
                }
            }
            Variant::Tcx => {
                let pins: Vec<PathBuf> = ifaces
                    .iter()
                    .flat_map(|(n, _)| {
                        ["ingress", "egress"].map(|d| bpffs.join("tcx").join(format!("{n}_{d}")))
                    })
                    .collect();
                let links = pins
                    .iter()
                    .map(|p| bpf::obj_get(p))
                    .collect::<std::io::Result<Vec<_>>>()?;
                for l in &links {
                    timed(&mut fl.hooks, || bpf::link_detach(l.as_fd()))?;
                }
                unpin.extend(pins);
            }
        }

        let globals = bpffs.join("tc/globals");
        for e in fs::read_dir(&globals)? {
            let e = e?;
            if e.file_name().to_string_lossy().starts_with("cali_") {
                unpin.push(e.path());
            }
        }
        let mut rmdirs = Vec::new();
        for e in fs::read_dir(globals.join("old_jumps"))? {
            let dir = e?.path();
            for p in fs::read_dir(&dir)? {
                unpin.push(p?.path());
            }
            rmdirs.push(dir);
        }
        rmdirs.push(globals.join("old_jumps"));
        rmdirs.push(bpffs.join("ctlb"));
        for p in &unpin {
            timed(&mut fl.pins, || fs::remove_file(p))?;
        }
        for d in &rmdirs {
            timed(&mut fl.pins, || fs::remove_dir(d))?;
        }

        let mut rtnl = Rtnl::open()?;
        let dev = rtnl.link_by_name("bpfin.cali")?.context("no bpfin.cali")?;
        timed(&mut fl.device, || rtnl.del_link(dev.ifindex))?;
        Ok(fl)
    })
}

/// What one read-only scan of this node costs the kernel, timed in-process: every program's
/// info (ownership is by program name and type, and program ids are machine-wide) and every
/// link's; then only what those programs call for, as any careful scanner would: the six hooks
/// of every cgroup when a Calico connect-time program is loaded, and the link and qdisc dumps
/// with two filter dumps (tc) or two tcx queries per interface when a Calico tc program is;
/// and each pin in Calico's bpffs places, opened and identified. A sweep reads, writes, and
/// reads again to verify, when little is left.
#[derive(Debug, Default, Clone, Copy)]
struct Reads {
    programs: Duration,
    cgroups: Duration,
    pins: Duration,
    network: Duration,
}

impl Reads {
    fn total(&self) -> Duration {
        self.programs + self.cgroups + self.pins + self.network
    }
}

fn read_floor(node: &Node) -> Result<Reads> {
    let bpffs = node.bpffs().to_path_buf();
    let cgroot = node.cgroup().to_path_buf();
    let variant = node.variant;
    node.sb.netns().enter(move || {
        let mut r = Reads::default();
        let gone = |e: &std::io::Error| e.raw_os_error() == Some(libc::ENOENT);
        let calico = |n: &str| n.starts_with("cali_") || n.starts_with("calico_");
        let (mut ctlb, mut tc) = (false, false);
        let t = Instant::now();
        for id in bpf::ids(IdSpace::Prog)? {
            match bpf::fd_by_id(IdSpace::Prog, id).and_then(|fd| bpf::prog_info(fd.as_fd())) {
                Ok(p) => {
                    ctlb |= p.prog_type == progs::SOCK_ADDR && calico(&p.name);
                    tc |= p.prog_type == progs::SCHED_CLS && calico(&p.name);
                }
                Err(e) if !gone(&e) => return Err(e.into()),
                Err(_) => {}
            }
        }
        for id in bpf::ids(IdSpace::Link)? {
            match bpf::fd_by_id(IdSpace::Link, id).and_then(|fd| bpf::link_info(fd.as_fd())) {
                Err(e) if !gone(&e) => return Err(e.into()),
                _ => {}
            }
        }
        r.programs = t.elapsed();

        let t = Instant::now();
        let mut cgroups = if ctlb { vec![cgroot] } else { Vec::new() };
        while let Some(dir) = cgroups.pop() {
            let f = fs::File::open(&dir)?;
            for (_, hook) in plant::CTLB {
                bpf::query(Target::Fd(f.as_fd()), hook)?;
            }
            // cgroup2 directories link 2 plus one per child: leaves need no directory read.
            if f.metadata()?.nlink() == 2 {
                continue;
            }
            for e in fs::read_dir(&dir)? {
                let e = e?;
                if e.file_type()?.is_dir() {
                    cgroups.push(e.path());
                }
            }
        }
        r.cgroups = t.elapsed();

        let t = Instant::now();
        let mut stack = vec![
            bpffs.join("ctlb"),
            bpffs.join("tc/globals"),
            bpffs.join("tcx"),
        ];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries {
                let e = e?;
                if e.file_type()?.is_dir() {
                    stack.push(e.path());
                } else {
                    let fd = bpf::obj_get(&e.path())?;
                    match bpf::fd_kind(fd.as_fd())? {
                        bpf::ObjKind::Map => drop(bpf::map_info(fd.as_fd())?),
                        bpf::ObjKind::Link => drop(bpf::link_info(fd.as_fd())?),
                        _ => drop(bpf::prog_info(fd.as_fd())?),
                    }
                }
            }
        }
        r.pins = t.elapsed();

        let t = Instant::now();
        let mut rtnl = Rtnl::open()?;
        if tc {
            let links = rtnl.links()?;
            match variant {
                Variant::Tc => {
                    for q in rtnl.qdiscs()?.into_iter().filter(|q| q.kind == "clsact") {
                        for parent in [plant::INGRESS, plant::EGRESS] {
                            rtnl.filters(q.ifindex, parent)?;
                        }
                    }
                }
                Variant::Tcx => {
                    for l in &links {
                        for hook in [plant::TCX_INGRESS, plant::TCX_EGRESS] {
                            bpf::query(Target::Ifindex(l.ifindex), hook)?;
                        }
                    }
                }
            }
        } else {
            rtnl.link_by_name("bpfin.cali")?;
        }
        r.network = t.elapsed();
        Ok(r)
    })
}

/// Medians of a no-op `sweep` (clean node, eBPF off) and of /bin/true, from hyperfine.
/// hyperfine runs one command's runs and then the other's, so a change in the machine's load
/// (it is shared) lands on one of them: three rounds, in alternating order, and the median of
/// each command's medians.
fn noop(guard: &Path, runs: usize) -> Result<Noop> {
    let sb = Sandbox::new("bench", guard)?;
    let programs = bpf::ids(IdSpace::Prog)?.len();
    sb.set_mode(Some("iptables"))?;
    let json = sb.dir.path.join("hyperfine.json");
    let sweep = format!("{} --config {} sweep", guard.display(), sb.config.display());
    let runs = runs.to_string();
    let (mut sweeps, mut trues) = (Vec::new(), Vec::new());
    for round in 0..3 {
        check_stop()?;
        let order = if round % 2 == 0 {
            [sweep.as_str(), "/bin/true"]
        } else {
            ["/bin/true", sweep.as_str()]
        };
        sb.netns().enter(|| {
            let out = Command::new("hyperfine")
                .args(["-N", "--warmup", "20", "--runs", &runs, "--export-json"])
                .arg(&json)
                .args(order)
                .stdin(Stdio::null())
                .output()?;
            ensure!(
                out.status.success(),
                "hyperfine failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(())
        })?;
        let v: Value = serde_json::from_slice(&fs::read(&json)?)?;
        for (i, cmd) in order.iter().enumerate() {
            let m = v["results"][i]["median"]
                .as_f64()
                .context("no median in hyperfine's JSON")?
                * 1e3;
            if *cmd == "/bin/true" {
                trues.push(m);
            } else {
                sweeps.push(m);
            }
        }
    }
    Ok(Noop {
        sweep_ms: median(sweeps),
        true_ms: median(trues),
        programs,
    })
}

/// The no-op comparison, and how many programs the machine had loaded: a guard lists every
/// program on the machine, and a Calico-named one anywhere (another test's) makes it walk
/// cgroups and interfaces too.
struct Noop {
    sweep_ms: f64,
    true_ms: f64,
    programs: usize,
}

/// Everything measured on one node size.
struct Row {
    variant: Variant,
    n: usize,
    objects: usize,
    sweep_ms: Vec<f64>,
    /// tcx only: the same sweep with `expedite_grace_periods = false`.
    unexpedited_ms: Vec<f64>,
    rss_kib: u64,
    syscalls: u64,
    manual: Option<(Duration, u64)>,
    floors: Vec<FloorRun>,
}

/// One kernel-floor run: the reads of the planted node, the writes, the reads of the result.
#[derive(Debug, Clone)]
struct FloorRun {
    before: Reads,
    writes: Floor,
    after: Reads,
}

impl FloorRun {
    fn total(&self) -> Duration {
        self.before.total() + self.writes.total() + self.after.total()
    }
}

impl Row {
    /// The floor run with the median total.
    fn floor(&self) -> &FloorRun {
        let mut by_total: Vec<&FloorRun> = self.floors.iter().collect();
        by_total.sort_by_key(|f| f.total());
        by_total[by_total.len() / 2]
    }
}

fn measure(opts: &Opts, node: &Node) -> Result<Row> {
    let t0 = Instant::now();
    let (variant, n) = (node.variant, node.ifaces.len());
    let mut row = Row {
        variant,
        n,
        objects: node.calico_objects(),
        sweep_ms: Vec::new(),
        unexpedited_ms: Vec::new(),
        rss_kib: 0,
        syscalls: 0,
        manual: None,
        floors: Vec::new(),
    };
    // tcx detaches wait for RCU grace periods, which the guard expedites by default: the same
    // sweep without that, from a config of its own.
    let unexpedited = match variant {
        Variant::Tcx => {
            let path = node.sb.dir.path.join("config-no-expedite.toml");
            let text = fs::read_to_string(&node.sb.config)?;
            sandbox::write_file(&path, &format!("{text}expedite_grace_periods = false\n"))?;
            Some(path)
        }
        Variant::Tc => None,
    };
    // Guard and floor runs alternate, so both see the same machine: grace periods (every tcx
    // detach waits for one) vary with load from run to run.
    for i in 0..opts.runs {
        node.replant()?;
        let (wall, kib) = guard_sweep(node, &opts.guard, &node.sb.config)?;
        node.expect_clean("the guard's sweep")?;
        row.sweep_ms.push(ms(wall));
        row.rss_kib = row.rss_kib.max(kib);
        if let Some(config) = &unexpedited {
            node.replant()?;
            let (wall, _) = guard_sweep(node, &opts.guard, config)?;
            node.expect_clean("the guard's sweep without expediting")?;
            eprintln!(
                "   run {}: sweep without expediting {:.1} ms",
                i + 1,
                ms(wall)
            );
            row.unexpedited_ms.push(ms(wall));
        }

        node.replant()?;
        let f = FloorRun {
            before: read_floor(node)?,
            writes: kernel_floor(node)?,
            after: read_floor(node)?,
        };
        node.expect_clean("the kernel-floor run")?;
        eprintln!(
            "   run {}: sweep {:.1} ms, {kib} KiB; kernel: writes {:.1} ms, reads {:.1} ms before \
             ({:.1} programs and links, {:.1} cgroups, {:.1} pins, {:.1} network), {:.1} ms after",
            i + 1,
            ms(wall),
            ms(f.writes.total()),
            ms(f.before.total()),
            ms(f.before.programs),
            ms(f.before.cgroups),
            ms(f.before.pins),
            ms(f.before.network),
            ms(f.after.total()),
        );
        row.floors.push(f);
    }
    node.replant()?;
    row.syscalls = guard_syscalls(node, &opts.guard)?;
    node.expect_clean("the guard's sweep under strace")?;
    eprintln!("   syscalls: {}", row.syscalls);

    if n <= opts.manual_max {
        node.replant()?;
        eprintln!("   manual procedure (one process per object; minutes at 1,000)...");
        let m = manual_sweep(node, &opts.manual_script)?;
        node.expect_clean("the manual procedure")?;
        eprintln!("   manual: {:.1} s, {} processes", m.0.as_secs_f64(), m.1);
        row.manual = Some(m);
    }
    eprintln!("   ({:.0} s for this node)", t0.elapsed().as_secs_f64());
    Ok(row)
}

fn run(opts: &Opts) -> Result<()> {
    ensure!(
        nix::unistd::Uid::effective().is_root(),
        "needs root: it mounts a bpffs and creates cgroups and network namespaces"
    );
    if opts.hold {
        return hold(opts);
    }
    // The no-op comparison goes first, on a quiet machine. Nodes are kept until the end: the
    // kernel tears a namespace with a thousand interfaces down in the background, for seconds,
    // and that would land in the next node's timings.
    eprintln!("== no-op sweep on a clean node against /bin/true (hyperfine)");
    let noop = noop(&opts.guard, 100)?;
    let mut rows = Vec::new();
    let mut nodes = Vec::new();
    for &variant in &opts.variants {
        if variant == Variant::Tcx && !kernel_has_tcx()? {
            eprintln!("== tcx: this kernel has no tcx, skipped");
            continue;
        }
        for &n in &opts.sizes {
            check_stop()?;
            eprintln!("== {} node, {n} interfaces: building", variant.name());
            let node = Node::new(variant, n, &opts.guard)?;
            rows.push(measure(opts, &node)?);
            nodes.push(node);
        }
    }
    let table = render(&rows, &noop);
    print!("{table}");
    if let Some(out) = &opts.out {
        fs::write(out, &table).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("written to {}", out.display());
    }
    Ok(())
}

fn hold(opts: &Opts) -> Result<()> {
    let (variant, n) = (opts.variants[0], opts.sizes[0]);
    let node = Node::new(variant, n, &opts.guard)?;
    let mut line = String::new();
    loop {
        node.replant()?;
        println!(
            "planted {n} × {}: nsenter --net={} -- {} --config {} sweep",
            variant.name(),
            node.sb.netns().path().display(),
            opts.guard.display(),
            node.sb.config.display()
        );
        line.clear();
        if std::io::stdin().read_line(&mut line)? == 0 {
            return Ok(());
        }
        node.expect_clean("the sweep")?;
    }
}

/// A tcx query on loopback answers EINVAL on kernels without tcx (before 6.6).
fn kernel_has_tcx() -> Result<bool> {
    match bpf::query(Target::Ifindex(1), plant::TCX_INGRESS) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn cmd_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn render(rows: &[Row], noop: &Noop) -> String {
    let mut s = String::new();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let dirty = !cmd_line("git", &["-C", repo, "status", "--porcelain", "--", "src"]).is_empty();
    let _ = writeln!(
        s,
        "Measured by `make bench` on kernel {}, {} cores, guard commit {}{}.\n",
        cmd_line("uname", &["-r"]),
        cmd_line("nproc", &[]),
        cmd_line("git", &["-C", repo, "rev-parse", "--short", "HEAD"]),
        if dirty {
            " with uncommitted changes"
        } else {
            ""
        }
    );
    s += "| node | Calico objects | guard `sweep` (median) | per interface | peak RSS | syscalls | manual bpftool + tc | guard vs manual | kernel floor (writes) | guard / floor |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let sweep = median(r.sweep_ms.clone());
        let floor = ms(r.floor().writes.total());
        let manual = match r.manual {
            Some((d, procs)) => (
                format!("{:.1} s ({procs} processes)", d.as_secs_f64()),
                format!("{:.0}× faster", ms(d) / sweep),
            ),
            None => ("not run".into(), "–".into()),
        };
        let _ = writeln!(
            s,
            "| {} × {} | {} | {:.1} ms | {:.1} µs | {:.1} MiB | {} | {} | {} | {:.1} ms | {:.2}× |",
            r.n,
            r.variant.name(),
            r.objects,
            sweep,
            sweep * 1e3 / r.n as f64,
            r.rss_kib as f64 / 1024.0,
            r.syscalls,
            manual.0,
            manual.1,
            floor,
            sweep / floor
        );
    }
    let tcx: Vec<&Row> = rows
        .iter()
        .filter(|r| !r.unexpedited_ms.is_empty())
        .collect();
    if !tcx.is_empty() {
        let _ = writeln!(
            s,
            "\ntcx with and without expedited RCU grace periods (`expedite_grace_periods`, \
             default true; {RCU_EXPEDITED} read {} before the runs and was back to it after \
             every sweep), medians:\n",
            rcu_expedited().unwrap_or_else(|_| "?".into())
        );
        s += "| node | guard `sweep`, expedited (default) | guard `sweep`, `expedite_grace_periods = false` | expedited is |\n";
        s += "|---|---:|---:|---:|\n";
        for r in tcx {
            let (on, off) = (median(r.sweep_ms.clone()), median(r.unexpedited_ms.clone()));
            let _ = writeln!(
                s,
                "| {} × {} | {on:.1} ms | {off:.1} ms | {:.0}× faster |",
                r.n,
                r.variant.name(),
                off / on
            );
        }
    }
    s += "\nKernel floor by family (writes: each operation timed alone, in-process, and summed), \
          and what reading the node costs the kernel (timed in-process): a sweep reads, writes, \
          and reads again to verify, so reads before + writes + reads after is what a sweep \
          without any overhead of its own would take. Of the floor runs (one after each timed \
          sweep), the one with the median total. The floor detaches at the machine's own \
          rcu_expedited (not expedited), so for tcx the guard's default sweep is below it:\n\n";
    s += "| node | cgroup detaches (6) | tc/tcx detaches | unlink + rmdir | bpfin.cali delete | writes | reads before | reads after | reads + writes | guard / that |\n";
    s += "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for r in rows {
        let f = r.floor();
        let ideal = ms(f.total());
        let _ = writeln!(
            s,
            "| {} × {} | {:.2} ms | {:.1} ms | {:.2} ms | {:.2} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.2}× |",
            r.n,
            r.variant.name(),
            ms(f.writes.cgroup),
            ms(f.writes.hooks),
            ms(f.writes.pins),
            ms(f.writes.device),
            ms(f.writes.total()),
            ms(f.before.total()),
            ms(f.after.total()),
            ideal,
            median(r.sweep_ms.clone()) / ideal
        );
    }
    let sweep = |r: &Row| median(r.sweep_ms.clone());
    let mut growth = Vec::new();
    for v in [Variant::Tc, Variant::Tcx] {
        let of: Vec<&Row> = rows.iter().filter(|r| r.variant == v).collect();
        if let (Some(small), Some(big)) =
            (of.iter().min_by_key(|r| r.n), of.iter().max_by_key(|r| r.n))
        {
            if big.n > small.n {
                // Sweep time over interfaces also spreads the fixed costs (process start, the
                // device delete); the marginal cost per added interface does not.
                let per = |r: &Row| sweep(r) * 1e3 / r.n as f64;
                let marginal = (sweep(big) - sweep(small)) * 1e3 / (big.n - small.n) as f64;
                growth.push(format!(
                    "{}: sweep time per interface {:.0} µs at {} and {:.0} µs at {} ({:.2}×); \
                     each interface added between them cost {:.0} µs",
                    v.name(),
                    per(small),
                    small.n,
                    per(big),
                    big.n,
                    per(big) / per(small),
                    marginal
                ));
            }
        }
    }
    if !growth.is_empty() {
        let _ = writeln!(s, "\nGrowth: {}.", growth.join("; "));
    }
    let _ = writeln!(
        s,
        "\nNo-op `sweep` on a clean node (eBPF off, nothing to remove; {} BPF programs loaded on \
         the machine), hyperfine, median of three rounds' medians of 100 runs: {:.2} ms; \
         `/bin/true`: {:.2} ms; difference {:.2} ms.",
        noop.programs,
        noop.sweep_ms,
        noop.true_ms,
        noop.sweep_ms - noop.true_ms
    );
    s
}
