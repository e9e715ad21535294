//! A small `application/x-www-form-urlencoded` decoder for check parameters, so the
//! SDK pulls in no dependency for it.

/// Splits `a=1&b=x%20y` into ordered pairs; `+` is a space, bad escapes stay as typed.
pub(crate) fn parse(query: &str) -> Vec<(String, String)> {
    query
        .trim_start_matches('?')
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| match part.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(part), String::new()),
        })
        .collect()
}

fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn keeps_order_repeats_and_decodes() {
        let pairs = parse("?zone=a&env=prod%2Deu&zone=b+c&flag&bad=%zz");
        let want = [
            ("zone", "a"),
            ("env", "prod-eu"),
            ("zone", "b c"),
            ("flag", ""),
            ("bad", "%zz"),
        ];
        assert_eq!(pairs.len(), want.len());
        for ((k, v), (wk, wv)) in pairs.iter().zip(want) {
            assert_eq!((k.as_str(), v.as_str()), (wk, wv));
        }
    }

    #[test]
    fn empty_query_is_no_params() {
        assert!(parse("").is_empty());
        assert!(parse("?").is_empty());
    }
}
