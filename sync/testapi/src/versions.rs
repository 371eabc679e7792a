//! The test API server's resourceVersions: a counter bumped whenever an object file's content
//! is seen to change, and each object's version and bytes before its latest change, which a
//! lagging watch cache would still serve (the `stale` fault). It never reads the world's files
//! itself; the server hands it what it read.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// resourceVersions: a counter bumped whenever a file's content is seen to change, and each
/// object's version before its latest change (what a lagging watch cache still serves).
#[derive(Default)]
pub struct Versions {
    counter: u64,
    seen: HashMap<PathBuf, (u64, u64, Vec<u8>)>,
    before: HashMap<PathBuf, (u64, Vec<u8>)>,
}

impl Versions {
    /// Versions that count on from `counter`, as a server that has been up for a while does.
    pub fn starting_at(counter: u64) -> Versions {
        Versions {
            counter,
            ..Versions::default()
        }
    }

    /// The latest resourceVersion handed out.
    pub fn current(&self) -> u64 {
        self.counter
    }

    pub fn observe(&mut self, path: &Path, bytes: Option<&[u8]>) -> Option<u64> {
        match bytes {
            Some(b) => {
                let mut h = DefaultHasher::new();
                b.hash(&mut h);
                let hash = h.finish();
                match self.seen.get(path) {
                    Some((old, rv, _)) if *old == hash => Some(*rv),
                    _ => {
                        self.counter += 1;
                        let old = self
                            .seen
                            .insert(path.to_path_buf(), (hash, self.counter, b.to_vec()));
                        if let Some((_, rv, bytes)) = old {
                            self.before.insert(path.to_path_buf(), (rv, bytes));
                        }
                        Some(self.counter)
                    }
                }
            }
            None => {
                if self.seen.remove(path).is_some() {
                    self.counter += 1;
                }
                self.before.remove(path);
                None
            }
        }
    }

    /// The object's version before its latest change, if it changed since first seen.
    pub fn stale(&self, path: &Path) -> Option<(u64, Vec<u8>)> {
        self.before.get(path).cloned()
    }
}
