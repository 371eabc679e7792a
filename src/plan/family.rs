//! The families of objects an operator asks about (cgroup, tc, tcx, netkit, XDP, link, pin,
//! map, directory, device): the `family` label of the metrics and the split between this
//! network namespace's objects and the host's. Read from a step's kind and location; it never
//! decides what is Calico's and never counts anything.

use super::step::StepKind;

/// The kinds of object an operator asks about, as the `family` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Cgroup,
    Tc,
    Tcx,
    Netkit,
    Xdp,
    /// A link whose hook the guard did not see (found by its pin alone).
    Link,
    /// Program and link pins.
    Pin,
    Map,
    Directory,
    Device,
}

impl Family {
    pub const ALL: [Family; 10] = [
        Family::Cgroup,
        Family::Tc,
        Family::Tcx,
        Family::Netkit,
        Family::Xdp,
        Family::Link,
        Family::Pin,
        Family::Map,
        Family::Directory,
        Family::Device,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Family::Cgroup => "cgroup",
            Family::Tc => "tc",
            Family::Tcx => "tcx",
            Family::Netkit => "netkit",
            Family::Xdp => "xdp",
            Family::Link => "link",
            Family::Pin => "pin",
            Family::Map => "map",
            Family::Directory => "directory",
            Family::Device => "device",
        }
    }

    /// The family of a report row, from its kind and, for links and hook attachments (whose
    /// kind does not say which hook), its location as the plan writes it: `cgroup PATH HOOK
    /// …` or `IFNAME tcx|netkit|xdp …`. An interface name holds no space (the kernel refuses
    /// one), so the second word is the hook's. None: a row that is no object (the re-scan's).
    pub fn of(kind: StepKind, location: &str) -> Option<Family> {
        use StepKind::*;
        let mut words = location.split(' ');
        let hook = (words.next(), words.next());
        Some(match (kind, hook) {
            (CgroupAttachment, _) => Family::Cgroup,
            (TcFilter, _) => Family::Tc,
            (XdpAttachment, _) => Family::Xdp,
            (ProgramPin | LinkPin, _) => Family::Pin,
            (MapPin, _) => Family::Map,
            (Directory, _) => Family::Directory,
            (Device, _) => Family::Device,
            (Link, (Some("cgroup"), _)) => Family::Cgroup,
            (Link | TcxAttachment, (_, Some("netkit"))) => Family::Netkit,
            (Link | TcxAttachment, (_, Some("tcx"))) => Family::Tcx,
            (Link, (_, Some("xdp"))) => Family::Xdp,
            (Link | TcxAttachment, _) => Family::Link,
            (ReScan, _) => return None,
        })
    }

    /// Objects of the network namespace the guard runs in, rather than of the host (cgroups,
    /// bpffs).
    pub fn in_netns(self) -> bool {
        matches!(
            self,
            Family::Tc | Family::Tcx | Family::Netkit | Family::Xdp | Family::Device
        )
    }

    /// Its place in `ALL` (declaration order).
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use StepKind::*;

    #[test]
    fn families_from_kind_and_location() {
        use Family::{Cgroup, Map, Netkit, Pin, Tc, Tcx, Xdp};
        let cases = [
            (
                CgroupAttachment,
                "cgroup /x connect4 (exclusive)",
                Some(Cgroup),
            ),
            (Link, "cgroup /x y connect4 (link 4)", Some(Cgroup)),
            // A cgroup path may hold spaces and hook words: the first word decides.
            (Link, "cgroup /a tcx b connect4 (link 4)", Some(Cgroup)),
            (TcFilter, "cali1 ingress pref 1 handle 0x1", Some(Tc)),
            (TcxAttachment, "cali1 tcx ingress", Some(Tcx)),
            (Link, "cali1 tcx egress (link 9)", Some(Tcx)),
            (TcxAttachment, "nk0 netkit primary", Some(Netkit)),
            (Link, "nk0 netkit peer (link 9)", Some(Netkit)),
            (XdpAttachment, "eth0 xdp (generic)", Some(Xdp)),
            (Link, "eth0 xdp (driver) (link 3)", Some(Xdp)),
            (Link, "pinned at /sys/fs/bpf/ctlb/x", Some(Family::Link)),
            (ProgramPin, "/sys/fs/bpf/ctlb/calico_connect_v6", Some(Pin)),
            (LinkPin, "/sys/fs/bpf/tcx/x", Some(Pin)),
            (MapPin, "/sys/fs/bpf/tc/globals/cali_v4_ct3", Some(Map)),
            (Directory, "/sys/fs/bpf/ctlb", Some(Family::Directory)),
            (Device, "this network namespace", Some(Family::Device)),
            (ReScan, "every configured root", None),
        ];
        for (kind, location, want) in cases {
            assert_eq!(Family::of(kind, location), want, "{kind} at {location}");
        }
    }
}
