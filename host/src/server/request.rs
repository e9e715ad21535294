//! Reading a `/targets` request: the path and the query, decoded and checked before
//! anything touches the filesystem or the store.
//!
//! Decoding is done here rather than by axum's extractors so that every malformed
//! request (bad percent-escapes, invalid UTF-8, `..` in any encoding, oversized or
//! too many parameters) gets the same clear JSON 400, and nothing else.

use crate::targets::{PathError, TargetPath};

/// Longest query string accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;
/// Most query parameters accepted.
pub const MAX_PARAMS: usize = 64;

/// A decoded `/targets` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetQuery {
    /// The path under `/targets`.
    pub path: TargetPath,
    /// All parameters except `debug` and `reload`, in order.
    pub params: Vec<(String, String)>,
    /// `?debug=true`.
    pub debug: bool,
    /// `?reload=true`.
    pub reload: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Malformed: answered 400.
    #[error("{0}")]
    Invalid(String),
    /// A hidden path: answered 404, as if it did not exist.
    #[error("path not found")]
    NotFound,
}

/// Parses the part of the URL path after `/targets` (still percent-encoded) and the raw
/// query string.
pub fn parse(raw_path: &str, raw_query: Option<&str>) -> Result<TargetQuery, RequestError> {
    let decoded = percent_decode(raw_path, false)
        .map_err(|e| RequestError::Invalid(format!("invalid path: {e}")))?;
    let path = TargetPath::parse(&decoded).map_err(|e| match e {
        PathError::Invalid(msg) => RequestError::Invalid(format!("invalid path: {msg}")),
        PathError::Hidden => RequestError::NotFound,
    })?;
    let mut params = Vec::new();
    let (mut debug, mut reload) = (false, false);
    if let Some(query) = raw_query {
        if query.len() > MAX_QUERY_BYTES {
            return Err(RequestError::Invalid(format!(
                "query string is longer than {MAX_QUERY_BYTES} bytes"
            )));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, true)
                .map_err(|e| RequestError::Invalid(format!("invalid query: {e}")))?;
            let v = percent_decode(v, true)
                .map_err(|e| RequestError::Invalid(format!("invalid query: {e}")))?;
            // NUL, CR, LF and the other control characters have no business in an
            // inventory parameter, and would end up in job keys, logs and guests.
            if k.chars().any(char::is_control) || v.chars().any(char::is_control) {
                return Err(RequestError::Invalid(
                    "invalid query: contains a control character (NUL, CR, LF, ...)".into(),
                ));
            }
            match k.as_str() {
                "debug" => debug = is_true(&v),
                "reload" => reload = is_true(&v),
                _ => params.push((k, v)),
            }
            if params.len() > MAX_PARAMS {
                return Err(RequestError::Invalid(format!(
                    "more than {MAX_PARAMS} query parameters"
                )));
            }
        }
    }
    Ok(TargetQuery {
        path,
        params,
        debug,
        reload,
    })
}

/// `true`, `1`, `yes` and `on`, in any case, turn a flag on.
fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on")
}

/// Decodes `%XX` escapes (and `+` as a space in queries); the result must be UTF-8.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("malformed percent-escape at byte {i}"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus_as_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| "not valid UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_splits_control_params() {
        let q = parse(
            "/a/b",
            Some("env=prod&debug=true&zone=eu+west&reload=0&x=%C3%A9"),
        )
        .unwrap();
        assert_eq!(q.path.as_slash_path(), "a/b");
        assert!(q.debug);
        assert!(!q.reload);
        assert_eq!(
            q.params,
            vec![
                ("env".into(), "prod".into()),
                ("zone".into(), "eu west".into()),
                ("x".into(), "é".into())
            ]
        );
        assert!(parse("", None).unwrap().path.is_root());
        assert!(parse("/", Some("reload=TRUE")).unwrap().reload);
    }

    #[test]
    fn refuses_every_encoding_of_escape_and_garbage() {
        for bad in [
            "/..",
            "/%2e%2e",
            "/%2E%2E/etc",
            "/a/%2e%2e%2fb",
            "/a%2f..%2f..",
            "/a%00b",
            "/a%5cb",
            "/%ff",
            "/%zz",
            "/a%",
        ] {
            assert!(
                matches!(parse(bad, None), Err(RequestError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(parse("/_lib", None), Err(RequestError::NotFound));
        assert_eq!(parse("/%2egit", None), Err(RequestError::NotFound));
        assert!(parse("/a", Some("k=%ff")).is_err());
        assert!(parse("/a", Some("k=%00")).is_err());
        assert!(parse("/a", Some("k=a%0d%0aSet-Cookie:%20x")).is_err());
        assert!(parse("/a", Some("%09=1")).is_err());
        assert!(parse("/a", Some(&"k=v&".repeat(70))).is_err());
        assert!(parse("/a", Some(&"k".repeat(5000))).is_err());
    }
}
