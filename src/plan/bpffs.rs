//! The plan for bpffs: Calico's pins (a pinned link detached before its pin is unlinked) and
//! then Calico's own directories, once every entry in them goes, deepest first. Never a pin
//! `ownership` does not name, and never a directory that would still hold anything.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::inventory::PinnedObject;
use crate::names;
use crate::ownership::{self, PinnedFacts, Place, ProgFacts};

use super::builder::Builder;
use super::step::{pinned_id, Action, ObjId, Step, StepKind};

/// A Calico pin's step, but for where it is.
struct Pinned {
    kind: StepKind,
    name: String,
    objects: Vec<ObjId>,
}

impl Builder<'_> {
    /// What unlinking a Calico pin takes, by what it holds; None for a pin that is no BPF
    /// object (ownership names none). A pinned link is detached first: unlinking its last pin
    /// does not always detach it at once.
    fn pinned(
        &mut self,
        object: &PinnedObject,
        path: &Path,
        reason: &'static str,
    ) -> Option<Pinned> {
        Some(match object {
            PinnedObject::Prog(p) => Pinned {
                kind: StepKind::ProgramPin,
                name: self.prog_name(p.id),
                objects: vec![ObjId::Prog(p.id)],
            },
            PinnedObject::Map(m) => Pinned {
                kind: StepKind::MapPin,
                name: m.name.clone(),
                objects: vec![ObjId::Map(m.id)],
            },
            PinnedObject::Link(l) => {
                self.detach_link(
                    l.id,
                    l.prog_id,
                    &l.target,
                    format!("pinned at {}", names::path(path)),
                    reason,
                );
                Pinned {
                    kind: StepKind::LinkPin,
                    name: self.prog_name(l.prog_id),
                    objects: vec![ObjId::Link(l.id), ObjId::Prog(l.prog_id)],
                }
            }
            PinnedObject::Unknown(_) => return None,
        })
    }

    pub fn pins(&mut self) -> BTreeSet<PathBuf> {
        // A per-interface directory is Calico's when it holds one of Calico's jump or counter maps.
        let marked: BTreeSet<PathBuf> = self
            .inv
            .pins
            .iter()
            .filter(|p| p.place == Place::IfaceDir)
            .filter(|p| matches!(&p.object, PinnedObject::Map(m) if ownership::iface_dir_marker(&m.name)))
            .filter_map(|p| p.at.path().parent().map(Path::to_path_buf))
            .collect();
        let mut unpinned = BTreeSet::new();
        for pin in &self.inv.pins {
            let facts = match &pin.object {
                PinnedObject::Prog(p) => PinnedFacts::Prog(ProgFacts {
                    prog_type: p.prog_type,
                    name: &p.name,
                }),
                PinnedObject::Map(m) => PinnedFacts::Map { name: &m.name },
                PinnedObject::Link(l) => PinnedFacts::Link(self.inv.facts(l.prog_id)),
                PinnedObject::Unknown(_) => PinnedFacts::Unknown,
            };
            let path = pin.at.path();
            let in_marked = path.parent().is_some_and(|d| marked.contains(d));
            let Some(reason) = ownership::pin(pin.place, facts, in_marked) else {
                continue;
            };
            let Some(expect) = pinned_id(&pin.object) else {
                continue;
            };
            let Some(p) = self.pinned(&pin.object, &path, reason) else {
                continue;
            };
            unpinned.insert(path.clone());
            self.steps.push(Step {
                action: Action::Unpin {
                    at: pin.at.clone(),
                    expect,
                },
                kind: p.kind,
                id: Some(expect.id()),
                name: p.name,
                location: names::path(&path),
                reason,
                objects: p.objects,
            });
        }
        unpinned
    }

    /// Calico's own directories, once every entry in them goes: deepest first.
    pub fn dirs(&mut self, unpinned: &BTreeSet<PathBuf>) {
        let mut dirs: Vec<_> = self.inv.dirs.iter().map(|d| (d, d.at.path())).collect();
        dirs.sort_by_key(|(_, path)| std::cmp::Reverse(path.components().count()));
        let mut removed: BTreeSet<PathBuf> = BTreeSet::new();
        for (d, path) in dirs {
            let going = unpinned
                .iter()
                .chain(&removed)
                .filter(|p| p.parent() == Some(path.as_path()))
                .count();
            if going == d.entries {
                self.steps.push(Step {
                    action: Action::RemoveDir { at: d.at.clone() },
                    kind: StepKind::Directory,
                    id: None,
                    name: names::path(&d.at.rel),
                    location: names::path(&path),
                    reason: "Calico's own bpffs directory, empty once its pins are gone",
                    objects: Vec::new(),
                });
                removed.insert(path);
            }
        }
    }
}
