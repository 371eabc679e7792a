//! The kernel's RCU expediting switch, `/sys/kernel/rcu_expedited` (an integer; non-zero makes
//! every synchronize_rcu() an expedited grace period), and the one promise the guard makes
//! about it: a value it changed is put back even when SIGTERM, SIGINT or SIGHUP ends the process
//! mid-sweep. The policy (when to change it, for how long) lives in `crate::expedite`.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU8, Ordering};

/// The switch, opened once for reading and writing: the signal handler writes through the same
/// fd, so it needs no path lookup and no allocation.
pub struct Switch {
    file: File,
}

impl Switch {
    pub fn open(path: &Path) -> io::Result<Switch> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Switch { file })
    }

    /// The value as the kernel prints it, without the newline.
    pub fn read(&self) -> io::Result<String> {
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0)?;
        let text = std::str::from_utf8(&buf[..n])
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not a number"))?;
        Ok(text.trim().to_string())
    }

    /// Write one decimal digit, as `echo N >` does (sysfs takes a whole store per write).
    pub fn write(&self, digit: u8) -> io::Result<()> {
        let n = self.file.write_at(&[digit, b'\n'], 0)?;
        if n != 2 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        Ok(())
    }
}

/// What the signal handler puts back: the switch's fd (-1: nothing to do), the digit it held,
/// the digit the guard wrote, and the record to remove once it is back (a leaked C string).
static FD: AtomicI32 = AtomicI32::new(-1);
static ORIGINAL: AtomicU8 = AtomicU8::new(b'0');
static WRITTEN: AtomicU8 = AtomicU8::new(b'1');
static RECORD: AtomicPtr<libc::c_char> = AtomicPtr::new(ptr::null_mut());

const SIGNALS: [libc::c_int; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Put the original value back, if the switch still holds the one the guard wrote (someone
/// else's later change stays), then forget the record. Async-signal-safe: atomics, pread,
/// pwrite and unlink only.
fn put_back() {
    let fd = FD.swap(-1, Ordering::SeqCst);
    if fd < 0 {
        return;
    }
    let mut now = [0u8; 2];
    // SAFETY: fd is the switch's, open until `SignalRestore` is dropped (which disarms first);
    // the buffers are live locals.
    unsafe {
        let n = libc::pread(fd, now.as_mut_ptr().cast(), now.len(), 0);
        if n >= 1 && now[0] == WRITTEN.load(Ordering::SeqCst) && (n == 1 || now[1] == b'\n') {
            let back = [ORIGINAL.load(Ordering::SeqCst), b'\n'];
            libc::pwrite(fd, back.as_ptr().cast(), back.len(), 0);
        }
        let record = RECORD.load(Ordering::SeqCst);
        if !record.is_null() {
            libc::unlink(record);
        }
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    put_back();
    // SAFETY: signal() and raise() are async-signal-safe. The signal is blocked while this
    // handler runs, so it is delivered, with the default action (termination), on return: the
    // guard ends as it would have without the handler.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// While alive, SIGTERM, SIGINT and SIGHUP put the switch back (from `original` if it still
/// reads `written`) and remove `record` before the process ends. Dropping it disarms the
/// handler and restores the previous signal dispositions; it does not touch the switch.
pub struct SignalRestore {
    old: Vec<(libc::c_int, libc::sigaction)>,
}

impl SignalRestore {
    pub fn arm(
        switch: &Switch,
        original: u8,
        written: u8,
        record: &Path,
    ) -> io::Result<SignalRestore> {
        let record = CString::new(record.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in the record path"))?;
        ORIGINAL.store(original, Ordering::SeqCst);
        WRITTEN.store(written, Ordering::SeqCst);
        // One record per process run: an earlier one (a second sweep in the same process, as in
        // tests) is simply replaced and leaked, a few bytes.
        RECORD.store(record.into_raw(), Ordering::SeqCst);
        FD.store(switch.file.as_raw_fd(), Ordering::SeqCst);
        let mut old = Vec::with_capacity(SIGNALS.len());
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is valid; the handler is an extern "C" fn that only
            // calls async-signal-safe functions; sa_mask blocks the other signals meanwhile.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut act.sa_mask);
                for s in SIGNALS {
                    libc::sigaddset(&mut act.sa_mask, s);
                }
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, &act, &mut prev) != 0 {
                    let e = io::Error::last_os_error();
                    drop(SignalRestore { old });
                    return Err(e);
                }
                old.push((sig, prev));
            }
        }
        Ok(SignalRestore { old })
    }
}

impl Drop for SignalRestore {
    fn drop(&mut self) {
        FD.store(-1, Ordering::SeqCst);
        for (sig, prev) in &self.old {
            // SAFETY: `prev` is what sigaction returned for this signal.
            unsafe {
                libc::sigaction(*sig, prev, ptr::null_mut());
            }
        }
    }
}
