//! What Prometheus accepts (DESIGN §6), checked before anything is cached.
//!
//! Prometheus rejects a whole HTTP SD answer for one bad group, so a generator's output
//! that would be rejected becomes an `InvalidOutput` error naming the group; it never
//! reaches Prometheus as a 200.

use crate::model::TargetGroup;
use serde_json::Value;

/// Why an output is not acceptable. The message names the offending group by index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOutput(pub String);

/// `[a-zA-Z_][a-zA-Z0-9_]*`: the label names Prometheus 2.x accepts.
pub fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The two limits an answer is checked against: a generator's `max_output_bytes` and
/// `max_targets`. The sandbox's [`crate::runtime::Limits`] hands them over
/// ([`crate::runtime::Limits::answer`]), so these rules do not depend on the sandbox.
#[derive(Debug, Clone, Copy)]
pub struct AnswerLimits {
    /// Bytes of the compact JSON array served, escapes included.
    pub max_output_bytes: u64,
    /// Targets summed over all groups of the answer.
    pub max_targets: u64,
}

/// Checks label names, duplicate labels, empty targets and the output limits, in one
/// pass that is linear in the size of the output (a group with 100,000 labels must not
/// cost the host 10^10 comparisons). The byte limit is on the JSON served, escapes
/// included ([`TargetGroup::json_bytes`]). Stops at the first problem found.
pub fn check_groups(groups: &[TargetGroup], limits: AnswerLimits) -> Result<(), InvalidOutput> {
    let mut targets = 0u64;
    // The array's brackets, then each group and its separating comma.
    let mut bytes = 1u64;
    let mut seen = std::collections::HashSet::new();
    for (i, group) in groups.iter().enumerate() {
        targets += group.targets.len() as u64;
        if targets > limits.max_targets {
            return Err(InvalidOutput(format!(
                "output exceeds max_targets limit of {} (reached at target group {i})",
                limits.max_targets
            )));
        }
        bytes += group.json_bytes() as u64 + 1;
        if bytes > limits.max_output_bytes {
            return Err(InvalidOutput(format!(
                "output exceeds max_output_bytes limit of {} as JSON (reached at target group {i})",
                crate::units::format_size(limits.max_output_bytes)
            )));
        }
        if let Some(name) = first_invalid_label(&group.labels) {
            return Err(InvalidOutput(format!(
                "target group {i} ({}): invalid label name {}: Prometheus accepts [a-zA-Z_][a-zA-Z0-9_]*",
                describe(group),
                shown(name)
            )));
        }
        if let Some(name) = first_duplicate_label(&group.labels, &mut seen) {
            return Err(InvalidOutput(format!(
                "target group {i} ({}): label {} appears twice",
                describe(group),
                shown(name)
            )));
        }
        if let Some(pos) = group.targets.iter().position(|t| t.trim().is_empty()) {
            return Err(InvalidOutput(format!(
                "target group {i} ({}): target {pos} is empty",
                describe(group)
            )));
        }
    }
    Ok(())
}

fn first_invalid_label(labels: &[(String, String)]) -> Option<&str> {
    labels
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !is_valid_label_name(name))
}

/// The first label name that appears twice: a pairwise scan for the usual handful of
/// labels, a set (reused across groups) beyond that.
fn first_duplicate_label<'a>(
    labels: &'a [(String, String)],
    seen: &mut std::collections::HashSet<&'a str>,
) -> Option<&'a str> {
    const PAIRWISE: usize = 16;
    if labels.len() <= PAIRWISE {
        return labels.iter().enumerate().find_map(|(n, (name, _))| {
            labels[..n]
                .iter()
                .any(|(other, _)| other == name)
                .then_some(name.as_str())
        });
    }
    seen.clear();
    labels
        .iter()
        .map(|(name, _)| name.as_str())
        .find(|name| !seen.insert(name))
}

/// A value for an error message: quoted, and cut short, since a guest decides how long
/// it is and the message is stored, logged and shown.
fn shown(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

/// A short description of a group for error messages: its first target.
fn describe(group: &TargetGroup) -> String {
    match group.targets.first() {
        Some(t) if group.targets.len() > 1 => format!("first target {}", shown(t)),
        Some(t) => format!("target {}", shown(t)),
        None => "no targets".to_string(),
    }
}

/// Turns a parsed static file (JSON or YAML) into target groups, enforcing the exact
/// shape Prometheus decodes: a top-level array of objects with only `targets` (array
/// of strings) and `labels` (object of strings); `null` groups are rejected.
pub fn groups_from_value(value: Value) -> Result<Vec<TargetGroup>, InvalidOutput> {
    let Value::Array(items) = value else {
        return Err(InvalidOutput(format!(
            "top level must be a list of target groups, found {}",
            kind(&value)
        )));
    };
    let mut groups = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(InvalidOutput(format!(
                "target group {i}: must be an object with \"targets\" and \"labels\", found {}",
                kind(&item)
            )));
        };
        let mut group = TargetGroup::default();
        for (key, value) in map {
            match (key.as_str(), value) {
                ("targets", Value::Array(targets)) => {
                    for (t, target) in targets.into_iter().enumerate() {
                        match target {
                            Value::String(s) => group.targets.push(s),
                            other => {
                                return Err(InvalidOutput(format!(
                                    "target group {i}: target {t} must be a string, found {}",
                                    kind(&other)
                                )));
                            }
                        }
                    }
                }
                ("targets", Value::Null) => {}
                ("labels", Value::Object(labels)) => {
                    for (name, value) in labels {
                        match value {
                            Value::String(s) => group.labels.push((name, s)),
                            other => {
                                return Err(InvalidOutput(format!(
                                    "target group {i}: label {name:?} must be a string, found {} (quote it)",
                                    kind(&other)
                                )));
                            }
                        }
                    }
                }
                ("labels", Value::Null) => {}
                ("targets" | "labels", other) => {
                    return Err(InvalidOutput(format!(
                        "target group {i}: \"{key}\" has the wrong type ({})",
                        kind(&other)
                    )));
                }
                (other, _) => {
                    return Err(InvalidOutput(format!(
                        "target group {i}: unknown key {other:?}: Prometheus accepts only \"targets\" and \"labels\""
                    )));
                }
            }
        }
        groups.push(group);
    }
    Ok(groups)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Limits;
    use serde_json::json;

    fn group(targets: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
        TargetGroup {
            targets: targets.iter().map(|s| s.to_string()).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn label_names() {
        for ok in ["job", "_x", "__metrics_path__", "a1_B2"] {
            assert!(is_valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "team-name", "a.b", "é"] {
            assert!(!is_valid_label_name(bad), "{bad}");
        }
    }

    #[test]
    fn names_the_bad_group() {
        let limits = Limits::default();
        let groups = vec![
            group(&["a:1"], &[("ok", "x")]),
            group(&["b:1"], &[("bad-name", "x")]),
        ];
        let err = check_groups(&groups, limits.answer()).unwrap_err().0;
        assert!(err.contains("target group 1"), "{err}");
        assert!(err.contains("bad-name"), "{err}");
        let dup = vec![group(&["a:1"], &[("x", "1"), ("x", "2")])];
        assert!(
            check_groups(&dup, limits.answer())
                .unwrap_err()
                .0
                .contains("twice")
        );
        let empty = vec![group(&["a:1", " "], &[])];
        assert!(
            check_groups(&empty, limits.answer())
                .unwrap_err()
                .0
                .contains("empty")
        );
    }

    #[test]
    fn output_limits() {
        let limits = Limits {
            max_targets: 3,
            ..Limits::default()
        };
        let groups = vec![group(&["a:1", "a:2"], &[]), group(&["a:3", "a:4"], &[])];
        let err = check_groups(&groups, limits.answer()).unwrap_err().0;
        assert!(err.contains("max_targets"), "{err}");
        let limits = Limits {
            max_output_bytes: 50,
            ..Limits::default()
        };
        let err = check_groups(&groups, limits.answer()).unwrap_err().0;
        assert!(err.contains("max_output_bytes"), "{err}");
    }

    #[test]
    fn byte_limit_is_on_the_escaped_json() {
        // 100 control characters: 102 bytes raw, 602 as JSON.
        let groups = vec![group(&["a:1"], &[("x", &"\u{1}".repeat(100))])];
        let json = serde_json::to_vec(&groups).unwrap().len() as u64;
        let at = |max_output_bytes| Limits {
            max_output_bytes,
            ..Limits::default()
        };
        assert!(check_groups(&groups, at(json).answer()).is_ok());
        let err = check_groups(&groups, at(json - 1).answer()).unwrap_err().0;
        assert!(err.contains("max_output_bytes"), "{err}");
    }

    #[test]
    fn many_labels_are_checked_in_linear_time() {
        let names: Vec<String> = (0..200_000).map(|i| format!("l{i}")).collect();
        let mut labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
        labels.push(("l0", "again"));
        let groups = vec![group(&["a:1"], &labels)];
        // Quadratic, this is 2*10^10 comparisons: minutes, not milliseconds.
        let err = check_groups(&groups, Limits::default().answer())
            .unwrap_err()
            .0;
        assert!(err.contains("\"l0\" appears twice"), "{err}");
        let long = "x".repeat(10_000);
        let err = check_groups(
            &[group(&[&long], &[("bad-name", "v")])],
            Limits::default().answer(),
        )
        .unwrap_err()
        .0;
        assert!(err.len() < 400, "messages stay short: {err}");
    }

    #[test]
    fn static_shapes() {
        let ok = groups_from_value(
            json!([{"targets": ["a:1"], "labels": {"job": "x"}}, {"targets": ["b:1"]}]),
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert!(
            groups_from_value(json!({"targets": []}))
                .unwrap_err()
                .0
                .contains("top level")
        );
        assert!(
            groups_from_value(json!([null]))
                .unwrap_err()
                .0
                .contains("target group 0")
        );
        assert!(
            groups_from_value(json!([{"targets": [], "extra": 1}]))
                .unwrap_err()
                .0
                .contains("unknown key")
        );
        assert!(
            groups_from_value(json!([{"targets": [], "labels": {"port": 9100}}]))
                .unwrap_err()
                .0
                .contains("quote")
        );
        assert!(
            groups_from_value(json!([{"targets": [1]}]))
                .unwrap_err()
                .0
                .contains("string")
        );
        assert_eq!(groups_from_value(json!([])).unwrap().len(), 0);
    }
}
