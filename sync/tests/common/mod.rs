//! Shared by the sync's tests: a world on the test API server, the sync binary run once or as a
//! daemon against it, and the node's mode file read the way the guard reads it.
#![allow(dead_code, unused_imports)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use calico_bpf_guard_testapi::{fixtures, Server, World};
pub use serde_json::json;

pub const SYNC: &str = env!("CARGO_BIN_EXE_calico-bpf-guard-sync");
pub const NODE: &str = "worker-1";

/// True when the test may run: the mode file's writer trusts only root-owned directories, so
/// writing it needs root. Without root it says why and skips; under CI=true that is a failure.
pub fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "{test}: the mode file writer needs root; CI=true, so this is a failure, not a skip"
        );
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: the mode file writer needs root"
    );
    false
}

/// Moves this test's thread (and so the server's threads and the sync it starts) into a network
/// namespace of its own with only `lo`, up: the servers listen on nobody's loopback but the
/// test's, and the tests run the same in a kernel-matrix guest whose own `lo` is down. The
/// namespace goes away with the thread's last user; nothing is left on the host.
fn own_network() {
    // SAFETY: unshare(CLONE_NEWNET) changes only the calling thread's network namespace.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(
        rc,
        0,
        "unshare(CLONE_NEWNET): {}",
        std::io::Error::last_os_error()
    );
    let up = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()
        .unwrap();
    assert!(up.success(), "ip link set lo up");
}

/// A test's own directory, world, server and mode file; all removed on drop.
/// The watches a started daemon keeps open with the default namespaces: the calico-node
/// DaemonSet and this node's calico-node pods in calico-system and kube-system (4), the
/// FelixConfigurations node.<node> and default in both API groups (4), and Installation default.
pub const WATCHES: usize = 9;

pub struct Harness {
    pub dir: PathBuf,
    pub world: World,
    pub server: Option<Server>,
    pub port: u16,
    pub mode_file: PathBuf,
    pub override_dir: PathBuf,
}

impl Harness {
    pub fn new(test: &str) -> Harness {
        own_network();
        let dir = std::env::temp_dir().join(format!("sync-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        std::fs::create_dir_all(dir.join("override")).unwrap();
        let world = World::create(&dir.join("world")).unwrap();
        let server = Server::start(world.clone(), 0).unwrap();
        let port = server.port;
        Harness {
            mode_file: dir.join("state/mode.toml"),
            override_dir: dir.join("override"),
            dir,
            world,
            server: Some(server),
            port,
        }
    }

    /// A cluster whose every source says eBPF is off (operator install on iptables).
    pub fn calico_off(&self) {
        let w = &self.world;
        w.put("daemonsets", &fixtures::daemonset("calico-system", None))
            .unwrap();
        for g in ["crd.projectcalico.org/v1", "projectcalico.org/v3"] {
            w.put(
                "felixconfigurations",
                &fixtures::felix(g, "default", Some(false)),
            )
            .unwrap();
        }
        w.put("installations", &fixtures::installation(Some("Iptables")))
            .unwrap();
    }

    pub fn set_felix_default(&self, bpf: Option<bool>) {
        for g in ["crd.projectcalico.org/v1", "projectcalico.org/v3"] {
            self.world
                .put("felixconfigurations", &fixtures::felix(g, "default", bpf))
                .unwrap();
        }
    }

    /// API down: the port closes.
    pub fn stop_api(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
    }

    /// API back, on the same port.
    pub fn start_api(&mut self) {
        self.server = Some(Server::start(self.world.clone(), self.port).unwrap());
    }

    pub fn override_file(&self) -> PathBuf {
        self.override_dir.join("dataplane")
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--node-name".into(),
            NODE.into(),
            "--kubeconfig".into(),
            self.world.dir.join("kubeconfig").display().to_string(),
            "--mode-file".into(),
            self.mode_file.display().to_string(),
            "--override-file".into(),
            self.override_file().display().to_string(),
        ]
    }

    /// One evaluation: the exit code and stderr. The request timeout is the shipped default
    /// (10 s), which a TLS handshake on an emulated CPU (kernel-matrix guests) or a loaded
    /// host needs; only a test of the timeout itself passes a shorter one (`once_with`).
    pub fn once(&self) -> (i32, String) {
        self.once_with(&[])
    }

    /// `once`, with more arguments.
    pub fn once_with(&self, extra: &[&str]) -> (i32, String) {
        let out: Output = Command::new(SYNC)
            .args(self.args())
            .args(extra)
            .arg("--once")
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Requests the server has answered whose line (method, path, query, status) matches.
    pub fn requests_where(&self, pred: impl Fn(&str) -> bool) -> usize {
        self.world.requests().iter().filter(|r| pred(r)).count()
    }

    /// Waits until `d` has asked for every watch, so that a change made next reaches it by
    /// watch and not by its first lists.
    pub fn wait_watching(&self, d: &Daemon) {
        d.wait_for("watches established", || {
            self.requests_where(|r| r.contains("watch=true")) >= WATCHES
        });
    }

    /// A cluster with eBPF off and a daemon that has written `iptables` and watches it all:
    /// where most daemon tests start.
    pub fn daemon_watching_off(&self) -> Daemon {
        self.calico_off();
        let d = self.daemon();
        d.wait_for("iptables", || self.mode().as_deref() == Some("iptables"));
        self.wait_watching(&d);
        d
    }

    /// The sync as the DaemonSet runs it, with a test's short delays.
    pub fn daemon(&self) -> Daemon {
        self.daemon_with(&[])
    }

    /// `daemon`, with more arguments.
    pub fn daemon_with(&self, extra: &[&str]) -> Daemon {
        let port = free_port();
        let log = self.dir.join(format!("daemon-{port}.log"));
        let child = Command::new(SYNC)
            .args(self.args())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--retry-min",
                "50ms",
                "--retry-max",
                "200ms",
                "--settle",
                "20ms",
            ])
            .args(["--override-poll", "50ms", "--resync", "10m"])
            .args(extra)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, port, log };
        d.wait_for("the HTTP endpoint", || d.get("/healthz").is_some());
        d
    }

    /// The mode file's dataplane, read by the guard's own trusted reader.
    pub fn mode(&self) -> Option<String> {
        modefile::read(&self.mode_file)
            .expect("the mode file is valid and trusted")
            .map(|m| m.dataplane.to_string())
    }

    pub fn mode_text(&self) -> Option<String> {
        std::fs::read_to_string(&self.mode_file).ok()
    }

    /// Plant a cached value as `mode set` would.
    pub fn set_mode(&self, dataplane: &str) {
        let mode = modefile::Mode {
            dataplane: modefile::Dataplane::parse(dataplane).unwrap(),
            source: Some("planted by the test".into()),
            updated: None,
        };
        modefile::write(&self.mode_file, &mode).unwrap();
    }

    /// Write the override the way kubelet updates a mounted ConfigMap: a new timestamped
    /// directory, `..data` swapped to it by rename, `dataplane` a symlink through `..data`.
    pub fn set_override(&self, word: Option<&str>) {
        let d = &self.override_dir;
        let stamp = format!(
            "..{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        std::fs::create_dir(d.join(&stamp)).unwrap();
        if let Some(w) = word {
            std::fs::write(d.join(&stamp).join("dataplane"), w).unwrap();
        }
        let tmp = d.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&stamp, &tmp).unwrap();
        std::fs::rename(&tmp, d.join("..data")).unwrap();
        let link = d.join("dataplane");
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink("..data/dataplane", &link).unwrap();
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop_api();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    /// (status, body) of a GET on the sync's HTTP endpoint.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        Some((code, body))
    }

    /// The value of one metric line (`name{labels}` exactly as rendered), 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, body) = self.get("/metrics").unwrap_or_default();
        body.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn failures(&self, reason: &str) -> f64 {
        self.metric(&format!(
            "calico_bpf_guard_sync_failures_total{{reason=\"{reason}\"}}"
        ))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `cond` for up to 30 s (a kernel-matrix guest emulates its CPU); panics with the
    /// daemon's log when it never holds.
    pub fn wait_for(&self, what: &str, cond: impl Fn() -> bool) {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("waited 30 s for {what}; the sync said:\n{}", self.log());
    }

    /// SIGTERM, and the exit code.
    pub fn stop(mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code().unwrap_or(-1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!(
            "the sync did not stop within 5 s of SIGTERM:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}
