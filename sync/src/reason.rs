//! Why an evaluation could not decide, as one closed set of reasons: the label of the failure
//! metric, the word in the log line and the line in the README are the same string. It never
//! decides anything itself.

use std::fmt;

/// A reason the sync kept the cached mode instead of writing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// The API server could not be reached (connection refused, TLS, DNS, reset).
    Unreachable,
    /// The API server did not answer in time.
    Timeout,
    /// 401: the token was refused (expired, rotated, revoked).
    Unauthorized,
    /// 403: the ServiceAccount lacks a permission (see the ClusterRole).
    Forbidden,
    /// A 404 for something that must exist (see the module docs of `cluster`).
    NotFound,
    /// Any other error status from the server (5xx, 429, ...).
    ServerError,
    /// An answer or a value that could not be understood (not JSON, wrong shape, a value Felix
    /// itself would not accept).
    Unparseable,
    /// No Calico source exists in the cluster at all: nothing to follow.
    NoCalico,
    /// The override file holds a value that is not one of the known words.
    OverrideInvalid,
    /// The mode file could not be written.
    WriteFailed,
    /// A watch broke (the watcher retries by itself; counted so it is visible).
    WatchBroken,
}

impl Reason {
    pub const ALL: [Reason; 11] = [
        Reason::Unreachable,
        Reason::Timeout,
        Reason::Unauthorized,
        Reason::Forbidden,
        Reason::NotFound,
        Reason::ServerError,
        Reason::Unparseable,
        Reason::NoCalico,
        Reason::OverrideInvalid,
        Reason::WriteFailed,
        Reason::WatchBroken,
    ];

    /// A reason in this pod (its token, its permissions, its override, its hostPath), as
    /// opposed to the cluster's (the API, Calico): only these make the pod not ready.
    pub fn pod_side(self) -> bool {
        matches!(
            self,
            Reason::Unauthorized
                | Reason::Forbidden
                | Reason::OverrideInvalid
                | Reason::WriteFailed
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unreachable => "unreachable",
            Reason::Timeout => "timeout",
            Reason::Unauthorized => "unauthorized",
            Reason::Forbidden => "forbidden",
            Reason::NotFound => "not_found",
            Reason::ServerError => "server_error",
            Reason::Unparseable => "unparseable",
            Reason::NoCalico => "no_calico",
            Reason::OverrideInvalid => "override_invalid",
            Reason::WriteFailed => "write_failed",
            Reason::WatchBroken => "watch_broken",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
