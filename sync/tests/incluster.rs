//! The in-cluster path, as the DaemonSet's pod takes it: no kubeconfig anywhere,
//! `KUBERNETES_SERVICE_HOST` an IP (so no DNS or NSS is needed, which a static binary in a
//! FROM-scratch image lacks), the CA and the projected token at
//! /var/run/secrets/kubernetes.io/serviceaccount. That directory is made in a private mount
//! namespace on a tmpfs over /run, so the host's /run is never touched.

mod common;
use common::*;

use std::process::Command;

#[test]
fn in_cluster_config_from_the_standard_paths() {
    if !have_root("in_cluster_config_from_the_standard_paths") {
        return;
    }
    let h = Harness::new("incluster");
    h.calico_off();
    h.set_felix_default(Some(true));
    let home = h.dir.join("home");
    std::fs::create_dir(&home).unwrap();
    let script = format!(
        "set -e\n\
         mount -t tmpfs -o mode=0755 tmpfs /run\n\
         d=/run/secrets/kubernetes.io/serviceaccount\n\
         mkdir -p $d\n\
         cp {ca} $d/ca.crt\n\
         ln -s {token} $d/token\n\
         echo calico-bpf-guard > $d/namespace\n\
         exec \"$@\"",
        ca = h.world.dir.join("ca.crt").display(),
        token = h.world.dir.join("token").display(),
    );
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
            "sh",
            SYNC,
            "--once",
        ])
        .args(["--node-name", NODE])
        .arg("--mode-file")
        .arg(&h.mode_file)
        .arg("--override-file")
        .arg(h.override_file())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        .env("KUBERNETES_SERVICE_PORT", h.port.to_string())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        (out.status.code(), h.mode().as_deref()),
        (Some(0), Some("bpf")),
        "{err}"
    );
    assert!(
        h.world.requests().iter().all(|r| r.ends_with("-> 200")),
        "{:#?}",
        h.world.requests()
    );
}
