//! Log lines. Under systemd, stderr goes to the journal, which keeps each line's severity when
//! it carries an sd-daemon `<N>` prefix; without systemd, the syslog socket. Every removed
//! object is one line, and no line carries a raw control character: names and paths are bytes
//! anyone may choose, and a newline or terminal escape in one must not forge a line.

use std::borrow::Cow;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

use crate::config::LogTarget;
use crate::names;

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

pub fn log(level: Level, msg: &str) {
    let msg = one_line(msg);
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
