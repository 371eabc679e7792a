//! The node's mode file, as the sync sees it: read what is cached, and write a new value only
//! when it differs, through the guard's own trust-checked atomic writer (the `modefile` crate,
//! one implementation for both binaries). It writes nothing but what `decide` chose.

use std::path::Path;

use modefile::{Dataplane, Mode};

/// What happened to the mode file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It said something else (or nothing, or something unreadable) and now says the value.
    Written { before: String },
    /// It already said the value; it was left untouched (its `source` and `updated` too).
    Unchanged,
}

/// The cached value, for the log and the metric: `None` when there is no file.
pub fn cached(path: &Path) -> Result<Option<Mode>, String> {
    modefile::read(path).map_err(|e| e.to_string())
}

/// Make the file say `dataplane`, with `source = "sync: <because>"`, unless it already does.
/// An existing file that cannot be read is replaced: the value is the cluster's, not a guess,
/// and the writer refuses a directory chain it does not trust.
pub fn apply(path: &Path, dataplane: Dataplane, because: &str) -> Result<Applied, String> {
    let before = match cached(path) {
        Ok(Some(m)) if m.dataplane == dataplane => return Ok(Applied::Unchanged),
        Ok(Some(m)) => m.dataplane.to_string(),
        Ok(None) => "no file".to_string(),
        Err(e) => format!("unreadable ({e})"),
    };
    let mode = Mode {
        dataplane,
        source: Some(format!("sync: {because}")),
        updated: Some(modefile::now_rfc3339()),
    };
    modefile::write(path, &mode).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(Applied::Written { before })
}
