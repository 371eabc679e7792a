//! Log lines. Under systemd, stderr is the journal's stream, which keeps each line's severity
//! when it carries an sd-daemon `<N>` prefix; with `log = "syslog"` (inits without a journal),
//! the syslog socket through the `syslog` crate; otherwise plain stderr. The guard's own lines
//! and other crates' `log` records (the netlink crates' warnings) take the same way. Every
//! removed object is one line, and no line carries a raw control character: names and paths
//! are bytes anyone may choose, and a newline or terminal escape in one must not forge a line.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use syslog::{Facility, Formatter3164, LoggerBackend};

use crate::config::LogTarget;
use crate::kernel::fs::is_journal_stream;
use crate::names;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

type Syslog = syslog::Logger<LoggerBackend, Formatter3164>;

enum Sink {
    /// stderr is the journal's stream: `<N>` prefixes carry the level.
    Journal,
    Syslog(Mutex<Syslog>),
    /// stderr read by a person or a script: errors and warnings say so in words.
    Stderr,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn stderr_sink() -> Sink {
    if is_journal_stream(std::io::stderr()) {
        Sink::Journal
    } else {
        Sink::Stderr
    }
}

/// RFC 3164, daemon facility. The crate stamps each line in UTC; journald and rsyslog's
/// imuxsock (by default) put their own time of receipt instead.
fn syslog_formatter() -> Formatter3164 {
    Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "calico-bpf-guard".into(),
        pid: std::process::id(),
    }
}

/// Choose the sink, once, and route other crates' `log` records to it. Until then (a config
/// that could not be read) lines go to stderr, prefixed when that is the journal.
pub fn init(target: LogTarget) {
    let sink = match target {
        LogTarget::Stderr => stderr_sink(),
        // /dev/log first; a stream socket there works as well as a datagram one.
        LogTarget::Syslog => match syslog::unix(syslog_formatter()) {
            Ok(l) => Sink::Syslog(Mutex::new(l)),
            Err(e) => {
                log(
                    Level::Warning,
                    &format!("syslog socket unavailable ({e}); logging to stderr"),
                );
                stderr_sink()
            }
        },
    };
    let _ = SINK.set(sink);
    // Debug and trace records are for those crates' developers (netlink-sys traces every
    // message); their warnings (netlink-packet-route's "unknown attribute") are the guard's.
    if log::set_logger(&Facade).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

/// The `log` facade's logger: other crates' records, written as the guard's own lines.
struct Facade;

impl log::Log for Facade {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            let (level, msg) = from_record(record);
            log(level, &msg);
        }
    }

    fn flush(&self) {}
}

/// A record's level and line. The target (`netlink_packet_route::link::…`) says whose it is.
fn from_record(record: &log::Record<'_>) -> (Level, String) {
    let level = match record.level() {
        log::Level::Error => Level::Err,
        log::Level::Warn => Level::Warning,
        log::Level::Info => Level::Info,
        log::Level::Debug | log::Level::Trace => Level::Debug,
    };
    (level, format!("{}: {}", record.target(), record.args()))
}

/// Text as one line without control characters. Names and paths are already in their shown
/// form (`names::escape`) where messages are built; this catches whatever reached a message
/// another way (an error's text, a process name, the mode file's `source`) and writes each
/// control character as `names::escape` would.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            let mut buf = [0; 4];
            out.push_str(&names::escape(c.encode_utf8(&mut buf).as_bytes()));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// One line at `level`. The guard's own lines come here directly, not through the `log`
/// facade, which has no notice level: a removed object is a notice.
pub fn log(level: Level, msg: &str) {
    let early;
    let sink = match SINK.get() {
        Some(sink) => sink,
        None => {
            early = stderr_sink();
            &early
        }
    };
    write(sink, level, &one_line(msg));
}

fn write(sink: &Sink, level: Level, msg: &str) {
    let stderr = &mut std::io::stderr();
    match sink {
        Sink::Syslog(s) => {
            let sent = s.lock().map(|mut s| match level {
                Level::Err => s.err(msg),
                Level::Warning => s.warning(msg),
                Level::Notice => s.notice(msg),
                Level::Info => s.info(msg),
                Level::Debug => s.debug(msg),
            });
            // The syslog daemon gone (restarted, stopped): the line still goes somewhere.
            if !matches!(sent, Ok(Ok(()))) {
                write(&Sink::Stderr, level, msg);
            }
        }
        // Each line is formatted first and written whole: stderr is unbuffered, and `writeln!`
        // on it writes the message and its newline apart, two writes per line on a sweep that
        // logs thousands of them.
        Sink::Journal => {
            let _ = stderr.write_all(format!("<{}>{msg}\n", level as u8).as_bytes());
        }
        Sink::Stderr => {
            let tag = match level {
                Level::Err => "error: ",
                Level::Warning => "warning: ",
                _ => "",
            };
            let _ = stderr.write_all(format!("{tag}{msg}\n").as_bytes());
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
    // A newline would end the STATUS= assignment and start another of the guard's choosing.
    let status = one_line(status);
    if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]) {
        log(Level::Debug, &format!("sd_notify failed: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_crates_records_keep_their_level_and_say_whose() {
        let cases = [
            (log::Level::Error, Level::Err),
            (log::Level::Warn, Level::Warning),
            (log::Level::Info, Level::Info),
            (log::Level::Debug, Level::Debug),
            (log::Level::Trace, Level::Debug),
        ];
        for (theirs, ours) in cases {
            let (level, line) = from_record(
                &log::Record::builder()
                    .level(theirs)
                    .target("netlink_packet_route::link")
                    .args(format_args!("Unknown MAC VLAN mode {}", 9))
                    .build(),
            );
            assert_eq!(level, ours);
            assert_eq!(line, "netlink_packet_route::link: Unknown MAC VLAN mode 9");
        }
    }

    #[test]
    fn syslog_lines_are_rfc3164_from_the_daemon_facility() {
        let dir = std::env::temp_dir().join(format!("guard-syslog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("log");
        let daemon = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let sink = Sink::Syslog(Mutex::new(
            syslog::unix_custom(syslog_formatter(), &path).unwrap(),
        ));
        write(
            &sink,
            Level::Notice,
            "removed: tc filter 7 cali_tc_preambl at cali1",
        );
        write(&sink, Level::Err, "x");
        let mut buf = [0; 512];
        let mut got = Vec::new();
        for _ in 0..2 {
            let n = daemon.recv(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        std::fs::remove_dir_all(&dir).unwrap();
        // <facility 3 * 8 + severity>, a timestamp, then the tag, the pid and the message.
        let tag = format!(" calico-bpf-guard[{}]: ", std::process::id());
        let want = [
            ("<29>", "removed: tc filter 7 cali_tc_preambl at cali1"),
            ("<27>", "x"),
        ];
        for (line, (pri, msg)) in got.iter().zip(want) {
            assert!(line.starts_with(pri), "{line}");
            assert!(line.ends_with(&format!("{tag}{msg}")), "{line}");
        }
    }

    #[test]
    fn one_line_leaves_no_control_character() {
        let cases = [
            (
                "removed: tc filter 7 cali_tc_preambl at cali1 ingress",
                None,
            ),
            ("cali\\xff1 stays as it was shown", None),
            ("pin\nwarning: forged", Some("pin\\nwarning: forged")),
            ("\u{1b}[2Kclear", Some("\\x1b[2Kclear")),
            ("x\u{85}y", Some("x\\xc2\\x85y")),
        ];
        for (text, want) in cases {
            let got = one_line(text);
            assert_eq!(got, want.unwrap_or(text), "{text:?}");
            assert!(!got.chars().any(char::is_control), "{got:?}");
        }
    }
}
