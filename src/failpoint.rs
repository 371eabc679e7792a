//! Fault injection into the real binary, for tests (cargo feature `failpoints`), set with the
//! `FAILPOINTS` environment variable: `apply-step=return(tc filter)` fails every step of that
//! kind, `after-plan=return(<gate>)` pauses between scan and apply until a test opens the gate
//! (so it can make objects vanish), `checkpoint=return(<gate>)` does the same at the sweep's
//! interlock checkpoints (so it can start holding an object), `task-files=return` sends the interlock to its /proc
//! fallback. A leaf: it knows failpoints by name and hands callers plain strings and errors,
//! never the plan's or the inventory's types, and without the feature every function here is a
//! no-op the compiler removes.

#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// An injected failure for a step of kind `kind` (its report word), if the `apply-step`
/// failpoint names that kind (or no kind). `is_kind` tells the kinds there are: a name that is
/// none of them is a mistake in the test that set it, which would otherwise pass without
/// injecting anything, so it panics.
#[cfg(feature = "failpoints")]
pub fn apply_step(kind: &str, is_kind: impl Fn(&str) -> bool) -> Option<String> {
    fail::fail_point!("apply-step", |named: Option<String>| {
        match named.filter(|k| !k.is_empty()) {
            Some(k) if !is_kind(&k) => {
                panic!("FAILPOINTS apply-step: `{k}` is not a step kind")
            }
            Some(k) if k != kind => None,
            _ => Some(format!("injected failure ({kind})")),
        }
    });
    None
}

#[cfg(not(feature = "failpoints"))]
pub fn apply_step(_kind: &str, _is_kind: impl Fn(&str) -> bool) -> Option<String> {
    None
}

/// An injected reason why the task_file iterator cannot be used (`task-files=return(why)`), so
/// tests can reach the interlock's /proc fallback on a kernel that has the iterator.
#[cfg(feature = "failpoints")]
pub fn task_files_unavailable() -> Option<String> {
    fail::fail_point!("task-files", |why: Option<String>| Some(
        why.unwrap_or_else(|| "injected".into())
    ));
    None
}

#[cfg(not(feature = "failpoints"))]
pub fn task_files_unavailable() -> Option<String> {
    None
}

/// An injected error for the tc filter dump of the interface the `filter-dump` failpoint names
/// (shown form): `filter-dump=return(cali1)` answers EINVAL, as a kernel may for a dump it
/// refuses.
#[cfg(feature = "failpoints")]
pub fn filter_dump(ifname: &str) -> Option<std::io::Error> {
    fail::fail_point!("filter-dump", |name: Option<String>| match name {
        Some(n) if n != ifname => None,
        _ => Some(std::io::Error::from_raw_os_error(libc::EINVAL)),
    });
    None
}

#[cfg(not(feature = "failpoints"))]
pub fn filter_dump(_ifname: &str) -> Option<std::io::Error> {
    None
}

/// An injected failure of the re-scan after a sweep (`rescan=return(why)`).
#[cfg(feature = "failpoints")]
pub fn rescan_fails() -> Option<String> {
    fail::fail_point!("rescan", |why: Option<String>| Some(
        why.unwrap_or_else(|| "injected".into())
    ));
    None
}

#[cfg(not(feature = "failpoints"))]
pub fn rescan_fails() -> Option<String> {
    None
}

/// The pause (or any other action) configured between planning and applying. With
/// `after-plan=return(<gate>)` the guard creates `<gate>.paused` once it has planned and waits
/// until `<gate>` exists: a test changes the kernel's state in between and then opens the gate,
/// however slow the machine (a timed pause lost that race under an emulator).
pub fn after_plan() {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("after-plan", |gate: Option<String>| {
        if let Some(gate) = gate {
            wait_at(std::path::Path::new(&gate));
        }
    });
}

/// The pause configured at each of the sweep's interlock checkpoints, before it looks for
/// holders again: `checkpoint=return(<gate>)` works as `after-plan` does, so a test can start
/// holding an object mid-sweep.
pub fn at_checkpoint() {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("checkpoint", |gate: Option<String>| {
        if let Some(gate) = gate {
            wait_at(std::path::Path::new(&gate));
        }
    });
}

#[cfg(feature = "failpoints")]
fn wait_at(gate: &std::path::Path) {
    let mut paused = gate.as_os_str().to_owned();
    paused.push(".paused");
    if let Err(e) = std::fs::write(&paused, "") {
        eprintln!("after-plan: cannot write {}: {e}", gate.display());
        return;
    }
    // A test that died never opens the gate: give up after a while rather than hang.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !gate.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
