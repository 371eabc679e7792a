//! Fault injection into the real binary, for tests (cargo feature `failpoints`). Set with the
//! `FAILPOINTS` environment variable, e.g. `FAILPOINTS='apply-step=return(tc filter)'` fails
//! every step of that kind, `after-plan=sleep(500)` pauses between scan and apply so a test can
//! make objects vanish. Without the feature both are no-ops the compiler removes.

use crate::plan::Step;

#[cfg(feature = "failpoints")]
pub fn setup() -> fail::FailScenario<'static> {
    fail::FailScenario::setup()
}

/// An injected failure for this step, if the `apply-step` failpoint names its kind (or no kind).
#[cfg(feature = "failpoints")]
pub fn inject(step: &Step) -> Option<String> {
    fail::fail_point!("apply-step", |kind: Option<String>| match kind {
        Some(k) if !k.is_empty() && k != step.kind => None,
        _ => Some(format!("injected failure ({})", step.kind)),
    });
    None
}

#[cfg(not(feature = "failpoints"))]
pub fn inject(_step: &Step) -> Option<String> {
    None
}

/// The pause (or any other action) configured between planning and applying.
pub fn after_plan() {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("after-plan");
}
