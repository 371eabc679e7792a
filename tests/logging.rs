//! Where log lines go: sd-daemon `<N>` prefixes only when stderr really is the journal's stream
//! that JOURNAL_STREAM names, not whenever the variable is inherited.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

const GUARD: &str = env!("CARGO_BIN_EXE_calico-bpf-guard");

/// Run the guard with stderr to a file; JOURNAL_STREAM is `journal(stderr file)` (None:
/// unset). Returns stderr.
fn stderr_with(dir: &Path, args: &[&str], journal: impl Fn(&File) -> Option<String>) -> String {
    let path = dir.join("stderr");
    let file = File::create(&path).unwrap();
    let mut cmd = Command::new(GUARD);
    cmd.args(args)
        .stdout(Stdio::null())
        .stderr(file.try_clone().unwrap())
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET");
    if let Some(v) = journal(&file) {
        cmd.env("JOURNAL_STREAM", v);
    }
    cmd.status().unwrap();
    fs::read_to_string(&path).unwrap()
}

fn dev_ino(f: &File) -> String {
    let m = f.metadata().unwrap();
    format!("{}:{}", m.dev(), m.ino())
}

/// Both before the config is read (its error) and after (a sweep's own line).
#[test]
fn prefixes_only_on_the_journal_stream() {
    let dir = std::env::temp_dir().join(format!("cbg-logging-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir(&dir).unwrap();
    let other = File::create(dir.join("other")).unwrap();
    let missing = dir.join("missing.toml");
    let mut cases = vec![(
        vec!["--config", missing.to_str().unwrap(), "check"],
        "<3>",
        "error: ",
    )];
    // A config the guard trusts must be root's: only root can write one.
    let config = dir.join("config.toml");
    if nix::unistd::Uid::effective().is_root() {
        fs::write(
            &config,
            format!("mode_file = \"{}\"\n", dir.join("mode.toml").display()),
        )
        .unwrap();
        cases.push((
            vec!["--config", config.to_str().unwrap(), "sweep"],
            "<6>nothing to do",
            "nothing to do",
        ));
    }
    for (args, journal, plain) in cases {
        let got = stderr_with(&dir, &args, |f| Some(dev_ino(f)));
        assert!(got.starts_with(journal), "{args:?}: {got}");
        for (why, got) in [
            ("unset", stderr_with(&dir, &args, |_| None)),
            // Inherited from a unit whose output went elsewhere (here: another file).
            (
                "another stream",
                stderr_with(&dir, &args, |_| Some(dev_ino(&other))),
            ),
            ("garbage", stderr_with(&dir, &args, |_| Some("x".into()))),
        ] {
            assert!(got.starts_with(plain), "{args:?} {why}: {got}");
        }
    }
    fs::remove_dir_all(&dir).unwrap();
}
