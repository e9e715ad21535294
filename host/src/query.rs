//! Query strings as generators see them: ordered `(key, value)` pairs, percent-decoded.
//! Shared by the request layer (a job's parameters) and the runtime (a manifest's
//! `[check] params`), so neither imports the other for it.

/// Parses `env=prod&zone=a` (a leading `?` allowed) into ordered pairs.
pub fn parse(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn pairs_keep_their_order_and_are_decoded() {
        assert_eq!(
            super::parse("?b=2&a=x%20y&b=3"),
            [
                ("b".to_string(), "2".to_string()),
                ("a".to_string(), "x y".to_string()),
                ("b".to_string(), "3".to_string()),
            ]
        );
        assert!(super::parse("").is_empty());
    }
}
