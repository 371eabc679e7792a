//! The override: one word in a file that a ConfigMap key, mounted as a volume, provides
//! (`auto`, the default, or `bpf | iptables | nftables | vpp | none`). Read afresh on every
//! cycle by path, never held open: kubelet updates a mounted ConfigMap by writing a new
//! timestamped directory and swapping the `..data` symlink, so each `open` sees one whole
//! version, old or new. (A `subPath` mount never updates; the README says not to use one.)
//! It only reads; what the word means is `decide`'s.

use std::io::{ErrorKind, Read};
use std::path::Path;

use modefile::Dataplane;

use crate::decide::Override;

/// More than any word it may hold; a larger file is a mistake, not an override.
const LIMIT: u64 = 4096;

/// The override in force: `Auto` without a file (no ConfigMap, or no `dataplane` key in it).
pub fn read(path: Option<&Path>) -> Override {
    let Some(path) = path else {
        return Override::Auto;
    };
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(LIMIT + 1).read_to_string(&mut text).map(|_| ()));
    match read {
        Err(e) if e.kind() == ErrorKind::NotFound => Override::Auto,
        Err(e) => Override::Invalid(format!("override {}: {e}", path.display())),
        Ok(()) if text.len() as u64 > LIMIT => Override::Invalid(format!(
            "override {}: longer than {LIMIT} bytes",
            path.display()
        )),
        Ok(()) => parse(text.trim()).unwrap_or_else(|| {
            Override::Invalid(format!(
                "override {}: {:?} is not auto, bpf, iptables, nftables, vpp or none",
                path.display(),
                text.trim()
            ))
        }),
    }
}

fn parse(word: &str) -> Option<Override> {
    if word.eq_ignore_ascii_case("auto") {
        return Some(Override::Auto);
    }
    Dataplane::parse(word).map(Override::Fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let dir = std::env::temp_dir().join(format!("sync-override-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("dataplane");
        assert_eq!(read(None), Override::Auto);
        assert_eq!(read(Some(&f)), Override::Auto);
        for (text, want) in [
            ("auto", Override::Auto),
            ("AUTO\n", Override::Auto),
            ("none\n", Override::Fixed(Dataplane::None)),
            (" BPF ", Override::Fixed(Dataplane::Bpf)),
            ("nftables", Override::Fixed(Dataplane::Nftables)),
        ] {
            std::fs::write(&f, text).unwrap();
            assert_eq!(read(Some(&f)), want, "{text:?}");
        }
        for bad in ["", "ebpf", "iptables nftables", &"x".repeat(5000)] {
            std::fs::write(&f, bad).unwrap();
            assert!(matches!(read(Some(&f)), Override::Invalid(_)), "{bad:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
