//! The order a plan is applied in: every detach first (a pinned link before its pin), then
//! the pins, then the emptied directories (deepest first, as the builder lists them), then the
//! devices. It only sorts steps the builders made; it never adds or drops one.

use super::step::{Action, Step};

/// The phase a step runs in; steps of one phase keep the order they were planned in.
fn phase(step: &Step) -> u8 {
    match step.action {
        Action::DetachCgroup { .. }
        | Action::DetachLink { .. }
        | Action::DetachHookLink { .. }
        | Action::DetachHook { .. }
        | Action::DetachXdp { .. }
        | Action::DeleteFilter { .. } => 0,
        Action::Unpin { .. } => 1,
        Action::RemoveDir { .. } => 2,
        Action::DeleteDevice { .. } => 3,
    }
}

/// Sort steps into apply order (stable within a phase).
pub fn in_apply_order(steps: &mut [Step]) {
    steps.sort_by_key(phase);
}
