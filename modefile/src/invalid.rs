//! `InvalidInput`: a file that decides (the config or the mode file) that was refused, located
//! by file, line and key so that an operator can fix it. It only describes; it never reads or
//! decides anything itself.

use std::path::{Path, PathBuf};

/// A file the guard refused to act on: exit 78, nothing touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidInput {
    pub file: PathBuf,
    pub detail: String,
}

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.detail)
    }
}

impl std::error::Error for InvalidInput {}

impl InvalidInput {
    pub fn new(file: &Path, detail: impl Into<String>) -> Self {
        InvalidInput {
            file: file.to_path_buf(),
            detail: detail.into(),
        }
    }

    /// A TOML or serde error, located by line and key.
    pub fn from_toml(file: &Path, text: &str, err: &toml::de::Error) -> Self {
        let message = err.message().trim_end().to_string();
        let detail = match err.span() {
            Some(span) => {
                let line_no = text[..span.start.min(text.len())].matches('\n').count() + 1;
                let line = text.lines().nth(line_no - 1).unwrap_or("");
                match key_on_line(line) {
                    Some(key) => format!("line {line_no}, key `{key}`: {message}"),
                    None => format!("line {line_no}: {message}"),
                }
            }
            None => message,
        };
        InvalidInput::new(file, detail)
    }

    /// A value that parsed but is not allowed, located by its key's line.
    pub fn at_key(file: &Path, text: &str, key: &str, message: impl std::fmt::Display) -> Self {
        let line = text
            .lines()
            .position(|l| key_on_line(l) == Some(key))
            .map(|i| format!("line {}, ", i + 1))
            .unwrap_or_default();
        InvalidInput::new(file, format!("{line}key `{key}`: {message}"))
    }
}

fn key_on_line(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim().trim_matches('"');
    (!key.is_empty() && !key.starts_with('#') && !key.starts_with('[')).then_some(key)
}
