//! `render` then `parse` gives back the same Mode, for every Mode the parser can return:
//! any dataplane, any source text (quotes, backslashes, control characters, any Unicode) and
//! any TOML datetime that has a date.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use modefile::{self as mode, Dataplane, Mode};

fuzz_target!(|input: (u8, Option<String>, Option<&str>)| {
    let (which, source, updated) = input;
    let dataplane = Dataplane::ALL[usize::from(which) % Dataplane::ALL.len()];
    // The parser keeps `updated` as the canonical text of a dated TOML datetime; anything else
    // is not a Mode it can return.
    let updated = match updated.map(str::parse::<toml::value::Datetime>) {
        None => None,
        Some(Ok(d)) if d.date.is_some() => Some(d.to_string()),
        Some(_) => return,
    };
    let m = Mode {
        dataplane,
        source,
        updated,
    };
    let text = mode::render(&m);
    match mode::parse(Path::new("/m.toml"), &text) {
        Ok(back) => assert_eq!(back, m, "rendered as {text:?}"),
        Err(e) => panic!("render wrote a file parse refuses: {e}\n{text}"),
    }
});
