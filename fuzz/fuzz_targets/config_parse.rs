//! The config parser takes root-owned text it did not write: any UTF-8 must give settings or an
//! error naming the file, never a panic, and accepted settings hold only absolute paths.
#![no_main]

use std::path::Path;

use calico_bpf_guard::config;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/etc/calico-bpf-guard/config.toml";

fuzz_target!(|data: &[u8]| {
    // read_trusted refuses non-UTF-8 before the parser sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match config::parse(Path::new(FILE), text) {
        Ok(s) => {
            let mut paths = vec![&s.mode_file, &s.lock_file];
            paths.extend(&s.bpffs_roots);
            paths.extend(&s.cgroup2_roots);
            for p in paths {
                assert!(
                    p.is_absolute(),
                    "accepted a relative path {p:?} from {text:?}"
                );
            }
        }
        Err(e) => assert!(e.to_string().starts_with(FILE), "{e}"),
    }
});
