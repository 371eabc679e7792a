//! Stopping on SIGINT/SIGTERM: the handler only sets a flag, and every long step asks
//! `check_stop` between its parts, so the sandboxes are removed by their Drop. It never kills
//! or waits for anything itself.

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Result};

/// Set by SIGINT/SIGTERM: the bench stops at the next step and its sandboxes are removed by
/// their Drop (a killed child process makes the current step fail first).
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Route SIGINT and SIGTERM to the flag.
pub fn install() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}
