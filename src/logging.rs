//! Log lines. Under systemd, stderr goes to the journal, which keeps each line's severity when
//! it carries an sd-daemon `<N>` prefix; without systemd, the syslog socket. Every removed
//! object is one line.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use crate::config::LogTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

enum Sink {
    Stderr { prefix: bool },
    Syslog(UnixDatagram),
}

static SINK: Mutex<Option<Sink>> = Mutex::new(None);

/// Choose the sink. Until this is called (or when syslog cannot be reached) lines go to stderr.
pub fn init(target: LogTarget) {
    let prefix = std::env::var_os("JOURNAL_STREAM").is_some();
    let sink = match target {
        LogTarget::Stderr => Sink::Stderr { prefix },
        LogTarget::Syslog => {
            match UnixDatagram::unbound().and_then(|s| s.connect("/dev/log").map(|()| s)) {
                Ok(s) => Sink::Syslog(s),
                Err(e) => {
                    log(
                        Level::Warning,
                        &format!("syslog socket /dev/log unavailable ({e}); logging to stderr"),
                    );
                    Sink::Stderr { prefix }
                }
            }
        }
    };
    if let Ok(mut g) = SINK.lock() {
        *g = Some(sink);
    }
}

pub fn log(level: Level, msg: &str) {
    let guard = SINK.lock();
    let sink = guard.as_ref().ok().and_then(|g| g.as_ref());
    match sink {
        Some(Sink::Syslog(s)) => {
            // RFC 3164 without a timestamp: the daemon facility (3) and the level.
            let line = format!(
                "<{}>calico-bpf-guard[{}]: {msg}",
                3 * 8 + level as u8,
                std::process::id()
            );
            if s.send(line.as_bytes()).is_ok() {
                return;
            }
            eprintln!("{msg}");
        }
        Some(Sink::Stderr { prefix: true }) => {
            let _ = writeln!(std::io::stderr(), "<{}>{msg}", level as u8);
        }
        _ => {
            let tag = match level {
                Level::Err => "error: ",
                Level::Warning => "warning: ",
                _ => "",
            };
            let _ = writeln!(std::io::stderr(), "{tag}{msg}");
        }
    }
}

/// libbpf's own messages (0 warn, 1 info, 2 debug); debug is dropped.
pub fn libbpf(level: u32, msg: &str) {
    match level {
        0 => log(Level::Warning, &format!("libbpf: {msg}")),
        1 => log(Level::Info, &format!("libbpf: {msg}")),
        _ => {}
    }
}

/// The unit's STATUS= line. Outside systemd (no NOTIFY_SOCKET) this does nothing; a failure to
/// notify is logged, never fatal.
pub fn notify_status(status: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Status(status)]) {
        log(Level::Debug, &format!("sd_notify failed: {e}"));
    }
}
