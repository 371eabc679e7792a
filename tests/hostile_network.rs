//! Hostile network state: a Calico tc filter swapped for a foreign one between scan and apply,
//! interface names that are not UTF-8 or hold control characters, and an interface whose
//! filters cannot be read. Each test asserts the exact objects left, the exit code and how the
//! odd name is shown.

mod common;

use calico_bpf_guard::kernel::netlink::Rtnl;
use common::*;
use netlink_packet_core::NLM_F_ACK;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use plant::{EGRESS, ETH_P_ALL, ETH_P_IP, INGRESS};
use serde_json::Value;

fn rows(report: &Value) -> &Vec<Value> {
    report["objects"].as_array().expect("objects in the report")
}

/// `(where, result)` of every row of a report.
fn results(report: &Value) -> Vec<(String, String)> {
    let mut v: Vec<_> = rows(report)
        .iter()
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            (s("where"), s("result"))
        })
        .collect();
    v.sort();
    v
}

fn pair(at: &str, result: &str) -> (String, String) {
    (at.to_string(), result.to_string())
}

/// A tc filter is deleted by its place, whatever program runs there. A foreign program put in
/// the Calico filter's exact place (interface, direction, priority, protocol, handle) between
/// scan and apply is read back before the delete, kept, and reported as kept.
#[cfg(feature = "failpoints")]
#[test]
fn filter_swapped_between_scan_and_apply_is_kept() {
    let Some(sb) = sandbox("hostile-swap") else {
        return;
    };
    sb.netns()
        .enter(|| {
            plant::veth("cali5", "wl5")?;
            plant::clsact("cali5")?;
            plant::tc_filter("cali5", INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
            plant::tc_filter("cali5", EGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
            Ok(())
        })
        .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let paused = paused_sweep(&sb);
    sb.netns()
        .enter(|| {
            calico_bpf_testkit::sandbox::run(
                "tc",
                &["filter", "del", "dev", "cali5", "ingress", "pref", "1"],
            )?;
            plant::tc_filter("cali5", INGRESS, 1, 1, ETH_P_ALL, "cil_from_contai")
        })
        .expect("swapping the ingress filter");
    let out = paused.resume();
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    assert_eq!(
        results(&report),
        [
            pair("cali5 egress pref 1 handle 0x1 protocol 0x0003", "removed"),
            pair("cali5 ingress pref 1 handle 0x1 protocol 0x0003", "kept"),
        ],
        "{report}"
    );
    let kept = rows(&report)
        .iter()
        .find(|r| r["result"] == "kept")
        .expect("a kept row");
    let detail = kept["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("the filter in its place now runs program "),
        "{kept}"
    );
    let mut want = before.clone();
    want.remove("tc cali5 ingress pref 1 proto all cali_tc_preambl");
    want.remove("tc cali5 egress pref 1 proto all cali_tc_preambl");
    want.insert("tc cali5 ingress pref 1 proto all cil_from_contai".to_string());
    assert_eq!(sb.snapshot(), want);
}

/// Interface names are bytes. Names that are not UTF-8 anywhere in the namespace do not stop
/// the scan; Calico's filters on such an interface are found and removed, foreign ones stay;
/// the report shows the name with `\xNN` escapes; and the device rule matches exact bytes, so
/// `bpfin.cali\xff` is not `bpfin.cali`.
#[test]
fn interface_names_that_are_not_utf8() {
    let Some(sb) = sandbox("hostile-bytes") else {
        return;
    };
    sb.netns()
        .enter(|| {
            plant::veth(b"cali\xff1", b"wl\xfe1")?;
            plant::veth(b"bpfin.cali\xff", b"bpfout\xff")?;
            plant::veth("cali2", "wl2")?;
            for dev in [&b"cali\xff1"[..], b"cali2"] {
                plant::clsact(dev)?;
                plant::tc_filter(dev, INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
            }
            plant::tc_filter(b"cali\xff1", EGRESS, 2, 1, ETH_P_IP, "calico_to_workl")?;
            plant::tc_filter(b"cali\xff1", INGRESS, 3, 1, ETH_P_ALL, "cil_from_contai")?;
            Ok(())
        })
        .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    for l in [
        r"dev cali\xff1 veth",
        r"dev wl\xfe1 veth",
        r"dev bpfin.cali\xff veth",
        r"dev bpfout\xff veth",
        r"tc cali\xff1 ingress pref 3 proto all cil_from_contai",
    ] {
        assert!(before.contains(l), "fixture missing {l}: {before:#?}");
    }
    let check = json(&guard_ok(&sb, &["check", "--json"], 1));
    assert_eq!(
        results(&check),
        // Planned only: no result yet.
        [
            pair(r"cali2 ingress pref 1 handle 0x1 protocol 0x0003", ""),
            pair(r"cali\xff1 egress pref 2 handle 0x1 protocol 0x0800", ""),
            pair(r"cali\xff1 ingress pref 1 handle 0x1 protocol 0x0003", ""),
        ],
        "{check}"
    );
    let out = guard_ok(&sb, &["sweep", "--json"], 0);
    let report = json(&out);
    assert_eq!(report["summary"]["removed"], 3, "{report}");
    assert!(
        results(&report).contains(&pair(
            r"cali\xff1 ingress pref 1 handle 0x1 protocol 0x0003",
            "removed"
        )),
        "{report}"
    );
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &[
            r"tc cali\xff1 ingress pref 1 proto all cali_tc_preambl",
            r"tc cali\xff1 egress pref 2 proto ip calico_to_workl",
            "tc cali2 ingress pref 1 proto all cali_tc_preambl",
        ],
    );
    guard_ok(&sb, &["check"], 0);
}

/// The kernel refuses a newline (or any white space, `/` or `:`) in an interface name, but takes
/// other control characters: a terminal escape in a name reaches neither the text report nor
/// the log raw, only in its escaped form.
#[test]
fn control_characters_in_interface_names_are_escaped() {
    let Some(sb) = sandbox("hostile-ctl") else {
        return;
    };
    let esc = b"cali\x1b[2K";
    let newline = sb
        .netns()
        .enter(|| {
            plant::veth(esc, b"wl\x07\x01")?;
            let refused = rename(esc, "cali\nforged")?;
            plant::clsact(esc)?;
            plant::tc_filter(esc, INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
            plant::tc_filter(esc, EGRESS, 1, 1, ETH_P_ALL, "cil_to_containe")?;
            Ok(refused)
        })
        .unwrap();
    assert_eq!(
        newline,
        Some(libc::EINVAL),
        "the kernel must refuse a newline in an interface name"
    );
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    for l in [r"dev cali\x1b[2K veth", r"dev wl\x07\x01 veth"] {
        assert!(before.contains(l), "fixture missing {l}: {before:#?}");
    }
    let out = guard_ok(&sb, &["sweep"], 0);
    for (what, text) in [("report", &out.stdout), ("log", &out.stderr)] {
        let raw: Vec<u8> = text
            .iter()
            .copied()
            .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
            .collect();
        assert!(
            raw.is_empty(),
            "raw control bytes {raw:?} in the {what}:\n{}",
            String::from_utf8_lossy(text)
        );
    }
    let at = r"cali\x1b[2K ingress pref 1 handle 0x1 protocol 0x0003";
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l.contains(at) && l.ends_with("removed")),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out)
            .lines()
            .any(|l| l.starts_with("removed: tc filter") && l.ends_with(at)),
        "{}",
        stderr(&out)
    );
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &[r"tc cali\x1b[2K ingress pref 1 proto all cali_tc_preambl"],
    );
}

/// Rename an interface through rtnetlink (iproute2 checks names itself first); the errno the
/// kernel answers, if any.
fn rename(from: &[u8], to: &str) -> anyhow::Result<Option<i32>> {
    let mut msg = LinkMessage::default();
    msg.header.index = plant::ifindex(from)?;
    msg.attributes.push(LinkAttribute::IfName(to.into()));
    match Rtnl::open()?.request(RouteNetlinkMessage::SetLink(msg), NLM_F_ACK) {
        Ok(_) => Ok(None),
        Err(e) => Ok(e.raw_os_error()),
    }
}

/// A filter dump that fails on one interface (EINVAL, injected) is never read as "no filters":
/// it is a warning naming the interface, every other interface is still swept, and the sweep
/// exits 1. `check` exits 1 while it sees stale objects elsewhere, and 2 (cannot tell) once
/// the interface it cannot read is all that is left.
#[cfg(feature = "failpoints")]
#[test]
fn one_interface_whose_filters_cannot_be_read() {
    let Some(sb) = sandbox("hostile-dump") else {
        return;
    };
    sb.netns()
        .enter(|| {
            for (dev, peer) in [("cali1", "wl1"), ("cali2", "wl2")] {
                plant::veth(dev, peer)?;
                plant::clsact(dev)?;
                plant::tc_filter(dev, INGRESS, 1, 1, ETH_P_ALL, "cali_tc_preambl")?;
            }
            Ok(())
        })
        .unwrap();
    sb.set_mode(Some("iptables")).unwrap();
    let before = sb.snapshot();
    let failing = [("FAILPOINTS", "filter-dump=return(cali1)")];
    let warned = |report: &Value| {
        let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
        for dir in ["ingress", "egress"] {
            let want = format!("tc filters of cali1 {dir}: Invalid argument (os error 22)");
            assert!(
                warnings.iter().any(|w| w.as_str() == Some(&want)),
                "no warning {want:?} in {report}"
            );
        }
    };
    let out = sb.guard_env(&["check", "--json"], &failing);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    warned(&json(&out));
    let out = sb.guard_env(&["sweep", "--json"], &failing);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let report = json(&out);
    warned(&report);
    assert_eq!(
        results(&report),
        [pair(
            "cali2 ingress pref 1 handle 0x1 protocol 0x0003",
            "removed"
        )],
        "{report}"
    );
    assert_removed_exactly(
        &before,
        &sb.snapshot(),
        &["tc cali2 ingress pref 1 proto all cali_tc_preambl"],
    );
    let out = sb.guard_env(&["check", "--json"], &failing);
    assert_eq!(code(&out), 2, "{}\n{}", stdout(&out), stderr(&out));
    warned(&json(&out));
}
