//! Names on a node are bytes: paths and interface names may hold any byte but NUL and `/`, and
//! need not be UTF-8. They stay bytes (`OsStr`, `[u8]`) through inventory, ownership and plan,
//! and become text only to be shown, here, in one reversible form: valid UTF-8 is kept, a
//! backslash is doubled, and control characters and bytes that are not UTF-8 are written as
//! `\n`, `\t` or `\xNN`. A newline in a pin name therefore cannot forge a line in the report or
//! the log, and two different names never print alike.

use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The shown form of a name or path.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{b:02x}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

pub fn path(p: &Path) -> String {
    escape(p.as_os_str().as_bytes())
}

pub fn os(s: &OsStr) -> String {
    escape(s.as_bytes())
}

/// A shown form back to its bytes; None for text `escape` never writes.
pub fn unescape(shown: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(shown.len());
    let mut rest = shown.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let (&e, tail) = rest.split_first()?;
        rest = tail;
        match e {
            b'\\' => out.push(b'\\'),
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'x' => {
                let hex = std::str::from_utf8(rest.get(..2)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                rest = &rest[2..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Serde in the shown form, for names and paths that are bytes (`#[serde(with = ...)]`): JSON
/// holds text, and a recorded inventory stays readable whatever bytes its names hold.
pub mod shown {
    use std::ffi::{OsStr, OsString};
    use std::os::unix::ffi::OsStringExt;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: AsRef<OsStr>>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::os(v.as_ref()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: From<OsString>>(d: D) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        super::unescape(&text)
            .map(|b| OsString::from_vec(b).into())
            .ok_or_else(|| D::Error::custom(format!("not a shown name: {text:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_forms() {
        let cases: [(&[u8], &str); 8] = [
            (b"tc/globals/cali_v4_ct3", "tc/globals/cali_v4_ct3"),
            (b"eth\xff0_igr", "eth\\xff0_igr"),
            (b"pin\nwarning: forged", "pin\\nwarning: forged"),
            (b"a\\xff", "a\\\\xff"),
            (b"tab\there", "tab\\there"),
            (b"\x1b[31mred", "\\x1b[31mred"),
            ("caf\u{e9}".as_bytes(), "caf\u{e9}"),
            // C1 controls are two bytes in UTF-8; both are shown.
            ("x\u{85}".as_bytes(), "x\\xc2\\x85"),
        ];
        for (raw, shown) in cases {
            assert_eq!(escape(raw), shown, "{raw:?}");
            assert_eq!(unescape(shown).as_deref(), Some(raw), "{shown:?}");
        }
        for bad in ["a\\", "\\q", "\\x4", "\\xzz"] {
            assert_eq!(unescape(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn different_names_never_print_alike() {
        let names: [&[u8]; 5] = [b"a\\xff", b"a\xff", b"a\\\xff", b"a\n", b"a\\n"];
        let shown: std::collections::BTreeSet<String> = names.iter().map(|n| escape(n)).collect();
        assert_eq!(shown.len(), names.len(), "{shown:?}");
    }
}
