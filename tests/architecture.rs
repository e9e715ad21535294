//! The shape of the host crate, checked from its source: the top-level modules depend
//! on each other one way only (no cycle through `crate::` paths outside comments and
//! test modules), so each layer can be read and changed with only the ones below it in
//! mind, and no function is longer than a screen (docs/ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` module (tests
/// may reach anywhere).
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module → the top-level modules its code names through `crate::`.
fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let top = |p: &Path| -> String {
        let rel = p.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| top(p)).collect();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = top(file);
        if from == "lib" || from == "main" {
            continue;
        }
        let text = code(&std::fs::read_to_string(file).unwrap());
        for (i, _) in text.match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if name != from && modules.contains(&name) {
                deps.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    deps
}

/// A cycle through `start`, if there is one.
fn cycle_from(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for next in deps.get(&at).into_iter().flatten() {
            if next == start {
                let mut cycle = path.clone();
                cycle.push(next.clone());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next.clone(), longer));
            }
        }
    }
    None
}

#[test]
fn top_level_modules_depend_one_way() {
    let deps = dependencies();
    assert!(
        deps.contains_key("server") && deps.contains_key("worker"),
        "{deps:?}"
    );
    let cycles: Vec<String> = deps
        .keys()
        .filter_map(|m| cycle_from(&deps, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        cycles.is_empty(),
        "import cycles: {cycles:#?}\nall: {deps:#?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut deps = BTreeMap::new();
    deps.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    deps.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    deps.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle_from(&deps, "a").unwrap().join(" "), "a b c a");
    deps.get_mut("c").unwrap().clear();
    assert!(cycle_from(&deps, "a").is_none());
}

/// Functions longer than this many lines (signature to closing brace) fail the check:
/// "about 80", with room for a long signature.
const MAX_FUNCTION_LINES: usize = 90;

/// `(lines, name)` of each function in `text`: from a line declaring `fn` to
/// the first closing brace at its indentation (rustfmt's layout).
fn function_lengths(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let declares = trimmed
            .split_whitespace()
            .take_while(|w| *w != "fn")
            .all(|w| {
                [
                    "pub",
                    "pub(crate)",
                    "pub(super)",
                    "async",
                    "const",
                    "unsafe",
                ]
                .contains(&w)
            })
            && trimmed.split_whitespace().any(|w| w == "fn");
        if !declares || trimmed.ends_with(';') || trimmed.starts_with("//") {
            continue;
        }
        let name: String = trimmed
            .split("fn ")
            .nth(1)
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        let end = lines[i + 1..]
            .iter()
            .position(|l| l.starts_with(&close) && l.len() - l.trim_start().len() == indent);
        if let Some(end) = end {
            out.push((end + 2, name));
        }
    }
    out
}

#[test]
fn no_function_is_longer_than_a_screen() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut long = Vec::new();
    let mut counted = 0;
    for file in &files {
        for (n, name) in function_lengths(&std::fs::read_to_string(file).unwrap()) {
            counted += 1;
            if n > MAX_FUNCTION_LINES {
                long.push(format!("{}: {name} ({n} lines)", file.display()));
            }
        }
    }
    assert!(
        counted > 500,
        "only {counted} functions found: the scan is broken"
    );
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:#?}"
    );
}

#[test]
fn function_lengths_are_measured_from_fn_to_its_brace() {
    let text = "pub async fn a(x: u8) -> u8 {\n    x\n}\n\nfn b() {\n    let c = || {\n    };\n}\n";
    assert_eq!(
        function_lengths(text),
        [(3, "a".to_string()), (4, "b".to_string())]
    );
}
