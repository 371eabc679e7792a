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
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

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

    /// Write a value, as `echo N >` does (sysfs takes a whole store per write). The kernel
    /// reads any integer; every one but 0 expedites.
    pub fn write(&self, value: i32) -> io::Result<()> {
        let mut buf = [0u8; DECIMAL];
        let len = decimal(value, &mut buf);
        let n = self.file.write_at(&buf[..len], 0)?;
        if n != len {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short write"));
        }
        // As `echo N >` truncates: sysfs ignores it, and a regular file standing in for the
        // switch (`rcu_expedited_file`, as tests use) keeps no tail of a longer value.
        self.file.set_len(len as u64)
    }
}

/// An i32 in decimal and a newline: at most 12 bytes.
const DECIMAL: usize = 12;

/// `value` in decimal followed by a newline, as the kernel prints it, into `buf`; the length.
/// No allocation: the signal handler calls it.
fn decimal(value: i32, buf: &mut [u8; DECIMAL]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = value.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        n /= 10;
        len += 1;
        if n == 0 {
            break;
        }
    }
    let sign = usize::from(value < 0);
    if sign == 1 {
        buf[0] = b'-';
    }
    for i in 0..len {
        buf[sign + i] = digits[len - 1 - i];
    }
    buf[sign + len] = b'\n';
    sign + len + 1
}

/// What the signal handler puts back: the switch's fd (-1: nothing to do), the value it held,
/// the value the guard wrote, and the record to remove once it is back (a leaked C string).
static FD: AtomicI32 = AtomicI32::new(-1);
static ORIGINAL: AtomicI32 = AtomicI32::new(0);
static WRITTEN: AtomicI32 = AtomicI32::new(1);
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
    let mut now = [0u8; DECIMAL + 1];
    let mut written = [0u8; DECIMAL];
    let written_len = decimal(WRITTEN.load(Ordering::SeqCst), &mut written);
    let mut back = [0u8; DECIMAL];
    let back_len = decimal(ORIGINAL.load(Ordering::SeqCst), &mut back);
    // SAFETY: fd is the switch's, open until `SignalRestore` is dropped (which disarms first);
    // the buffers are live locals.
    unsafe {
        let n = libc::pread(fd, now.as_mut_ptr().cast(), now.len(), 0);
        if n == written_len as isize && now[..written_len] == written[..written_len] {
            libc::pwrite(fd, back.as_ptr().cast(), back_len, 0);
            libc::ftruncate(fd, back_len as libc::off_t);
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
        original: i32,
        written: i32,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_as_the_kernel_prints_it() {
        for (value, want) in [
            (0, "0\n"),
            (1, "1\n"),
            (4242, "4242\n"),
            (-7, "-7\n"),
            (i32::MAX, "2147483647\n"),
            (i32::MIN, "-2147483648\n"),
        ] {
            let mut buf = [0u8; DECIMAL];
            let len = decimal(value, &mut buf);
            assert_eq!(std::str::from_utf8(&buf[..len]), Ok(want));
        }
    }
}
