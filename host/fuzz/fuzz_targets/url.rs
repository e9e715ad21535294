//! The request canonicalizer: any URL path and query a client can send. What it
//! accepts must be safe to turn into a file-system lookup and a cache key, and the
//! cache key must bring a worker back to the very same request.
#![no_main]

use httpsd::server::request::parse;
use httpsd::wire::TargetRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // hyper hands the router an ASCII URI; the part after /targets and the query.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let Ok(request) = parse(path, query) else {
        return;
    };
    for segment in request.path.segments() {
        assert!(!segment.is_empty());
        assert!(segment != "." && segment != "..", "{segment:?}");
        assert!(!segment.starts_with(['.', '_']), "{segment:?}");
        assert!(!segment.contains(['/', '\\', '\0']), "{segment:?}");
        assert!(!segment.chars().any(char::is_control), "{segment:?}");
    }
    for (k, v) in &request.params {
        assert!(k != "debug" && k != "reload");
        assert!(
            !k.chars().chain(v.chars()).any(char::is_control),
            "{k:?}={v:?}"
        );
    }
    let keyed = TargetRequest::new(request.path.clone(), request.params.clone());
    let again = TargetRequest::from_full_path(&keyed.full_path)
        .unwrap_or_else(|e| panic!("our own key {:?} does not parse: {e}", keyed.full_path));
    assert_eq!(again, keyed, "{:?}", keyed.full_path);
});
