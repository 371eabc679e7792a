//! The command line's contract: the node's name from `--node-name` or `NODE_NAME` (as the
//! DaemonSet passes it), exit 2 without either.

mod common;
use common::*;

use std::process::Command;

#[test]
fn node_name_from_the_environment_or_usage_error() {
    let out = Command::new(SYNC)
        .arg("--once")
        .env_remove("NODE_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--node-name (or NODE_NAME) is required"));
    if !have_root("node_name_from_the_environment_or_usage_error") {
        return;
    }
    let h = Harness::new("nodename");
    h.calico_off();
    h.world
        .put(
            "felixconfigurations",
            &fixtures::felix("crd.projectcalico.org/v1", "node.from-env", Some(true)),
        )
        .unwrap();
    let out = Command::new(SYNC)
        .args(["--once", "--kubeconfig"])
        .arg(h.world.dir.join("kubeconfig"))
        .arg("--mode-file")
        .arg(&h.mode_file)
        .arg("--override-file")
        .arg(h.override_file())
        .env("NODE_NAME", "from-env")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), h.mode().as_deref()),
        (Some(0), Some("bpf")),
        "{err}"
    );
    assert!(
        err.contains("FelixConfiguration node.from-env bpfEnabled=true"),
        "{err}"
    );
}
