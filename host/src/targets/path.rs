//! Request paths, validated before they touch the filesystem.
//!
//! `/targets/a/b` names the generators under `a/b` (a directory, or files named
//! `a/b.<ext>`). A segment that starts with `_` or `.` is hidden: it does not exist as
//! far as a client can tell. `..`, NUL, backslashes and oversized paths are refused
//! outright, whatever their encoding (the server decodes percent-escapes before this).

use std::fmt;

/// Longest request path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 1024;
/// Deepest request path accepted, in segments.
pub const MAX_SEGMENTS: usize = 32;

/// A checked, normalised request path: segments without empties, all visible.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct TargetPath {
    segments: Vec<String>,
}

/// Why a request path was refused; [`PathError::Hidden`] is meant to look like a 404.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path tries to leave the root or contains bytes no file name should have.
    #[error("invalid path: {0}")]
    Invalid(String),
    /// The path names a hidden (`_`/`.`) segment: answered as not found.
    #[error("path not found")]
    Hidden,
}

impl TargetPath {
    /// The whole tree (`/targets`).
    pub fn root() -> Self {
        TargetPath::default()
    }

    /// Parses the part after `/targets`, already percent-decoded.
    pub fn parse(raw: &str) -> Result<TargetPath, PathError> {
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::Invalid(format!(
                "path is longer than {MAX_PATH_BYTES} bytes"
            )));
        }
        if raw.contains('\0') {
            return Err(PathError::Invalid("path contains a NUL byte".into()));
        }
        if raw.contains('\\') {
            return Err(PathError::Invalid("path contains a backslash".into()));
        }
        // A `?` (decoded from %3F) would make the cache key `/targets/<path>?<query>`
        // ambiguous: a worker would split it at the wrong `?` and run another request.
        if raw.contains('?') {
            return Err(PathError::Invalid("path contains a '?'".into()));
        }
        let mut segments = Vec::new();
        for segment in raw.split('/').filter(|s| !s.is_empty()) {
            if segment == "." || segment == ".." {
                return Err(PathError::Invalid(format!(
                    "path segment {segment:?} is not allowed"
                )));
            }
            if segment.chars().any(char::is_control) {
                return Err(PathError::Invalid(
                    "path contains a control character".into(),
                ));
            }
            if segment.starts_with('.') || segment.starts_with('_') {
                return Err(PathError::Hidden);
            }
            segments.push(segment.to_string());
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(PathError::Invalid(format!(
                "path is deeper than {MAX_SEGMENTS} segments"
            )));
        }
        Ok(TargetPath { segments })
    }

    /// The path's segments, none empty, `.`, `..` or hidden; empty for the root.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether this is the whole tree (`/targets`).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// `a/b` (empty for the root): the form used in `/targets/<path>`.
    pub fn as_slash_path(&self) -> String {
        self.segments.join("/")
    }
}

impl fmt::Display for TargetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.as_slash_path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_refuses() {
        assert_eq!(TargetPath::parse("a//b/").unwrap().as_slash_path(), "a/b");
        assert!(TargetPath::parse("").unwrap().is_root());
        assert!(TargetPath::parse("/").unwrap().is_root());
        for bad in ["..", "a/../b", "a/./b", "a\\b", "a\0b", "a/\u{7}", "svc?x"] {
            assert!(
                matches!(TargetPath::parse(bad), Err(PathError::Invalid(_))),
                "{bad:?}"
            );
        }
        for hidden in ["_lib", "a/.git", "a/_helpers/x"] {
            assert_eq!(
                TargetPath::parse(hidden),
                Err(PathError::Hidden),
                "{hidden:?}"
            );
        }
        assert!(TargetPath::parse(&"a/".repeat(40)).is_err());
        assert!(TargetPath::parse(&"x".repeat(2000)).is_err());
    }
}
