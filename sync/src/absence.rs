//! When a resource type's 404 may count as "not installed": a type never seen served since
//! this process started is absent at once (a CRD that is not there), but a type that was served
//! earlier and now answers 404 is far more often passing through (Calico's API server
//! re-registered during an upgrade, the v1 to v3 CRD migration, a CRD replaced by a deploy tool)
//! than removed, so it counts as a failure (`not_found`, the cache kept) until it has stayed 404
//! for the hold time. It remembers and judges; it never reads the API.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Seen {
    Served,
    GoneSince(Instant),
}

/// What a 404 on a type means now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The type is not installed: that source does not exist.
    Absent,
    /// The type was served before: not absent yet; it has answered 404 for `for_`.
    Holding { for_: Duration },
}

/// Each resource type's history in this process, keyed by `group/version resource`.
pub struct Absence {
    hold: Duration,
    types: Mutex<HashMap<String, Seen>>,
}

impl Absence {
    pub fn new(hold: Duration) -> Self {
        Absence {
            hold,
            types: Mutex::new(HashMap::new()),
        }
    }

    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// The type answered (200, with or without the object).
    pub fn served(&self, key: &str) {
        if let Ok(mut t) = self.types.lock() {
            t.insert(key.to_string(), Seen::Served);
        }
    }

    /// The type answered 404 at `now`.
    pub fn not_served(&self, key: &str, now: Instant) -> Verdict {
        let Ok(mut t) = self.types.lock() else {
            // A poisoned lock cannot say the type was never served: hold, the safe side.
            return Verdict::Holding {
                for_: Duration::ZERO,
            };
        };
        let since = match t.get(key) {
            None => return Verdict::Absent,
            Some(Seen::Served) => {
                t.insert(key.to_string(), Seen::GoneSince(now));
                now
            }
            Some(Seen::GoneSince(since)) => *since,
        };
        let for_ = now.saturating_duration_since(since);
        if for_ >= self.hold {
            Verdict::Absent
        } else {
            Verdict::Holding { for_ }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_served_is_absent_at_once_served_then_gone_waits_the_hold() {
        let a = Absence::new(Duration::from_secs(120));
        let t0 = Instant::now();
        assert_eq!(a.not_served("x/v1 things", t0), Verdict::Absent);
        a.served("x/v1 things");
        assert_eq!(
            a.not_served("x/v1 things", t0),
            Verdict::Holding {
                for_: Duration::ZERO
            }
        );
        assert_eq!(
            a.not_served("x/v1 things", t0 + Duration::from_secs(119)),
            Verdict::Holding {
                for_: Duration::from_secs(119)
            }
        );
        assert_eq!(
            a.not_served("x/v1 things", t0 + Duration::from_secs(120)),
            Verdict::Absent
        );
        assert_eq!(
            a.not_served("x/v1 things", t0 + Duration::from_secs(900)),
            Verdict::Absent
        );
        // Served again, then gone again: a new hold.
        a.served("x/v1 things");
        assert!(matches!(
            a.not_served("x/v1 things", t0 + Duration::from_secs(901)),
            Verdict::Holding { .. }
        ));
        // Other types are their own.
        assert_eq!(
            a.not_served("y/v1 others", t0 + Duration::from_secs(901)),
            Verdict::Absent
        );
    }
}
