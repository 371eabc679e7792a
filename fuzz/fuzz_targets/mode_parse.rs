//! The mode parser decides whether the guard removes anything: any UTF-8 must give a mode or an
//! error naming the file, never a panic. A mode it accepts must survive `render` unchanged,
//! because `mode set` writes what `mode show` and `sweep` read back.
#![no_main]

use std::path::Path;

use modefile as mode;
use libfuzzer_sys::fuzz_target;

const FILE: &str = "/var/lib/calico-bpf-guard/mode.toml";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match mode::parse(Path::new(FILE), text) {
        Ok(m) => {
            let again = mode::parse(Path::new(FILE), &mode::render(&m));
            assert_eq!(again.as_ref().ok(), Some(&m), "from {text:?}: {again:?}");
        }
        Err(e) => assert!(e.to_string().starts_with(FILE), "{e}"),
    }
});
