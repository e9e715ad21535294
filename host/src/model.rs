//! The target group: the unit Prometheus HTTP SD speaks in.

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::BTreeMap;

/// One `{"targets": [...], "labels": {...}}` entry of an HTTP SD answer.
///
/// Labels are kept as an ordered list because that is what generators hand over; the
/// validator guarantees names are unique and Prometheus-valid before a group is cached,
/// so serialising them as a JSON object loses nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Addresses as Prometheus will scrape them (usually `host:port`); the validator
    /// rejects blank ones.
    pub targets: Vec<String>,
    /// `(name, value)` pairs in the generator's order; served as a JSON object.
    pub labels: Vec<(String, String)>,
}

impl TargetGroup {
    /// The exact size of this group in the compact JSON answer (what serde_json writes
    /// and Prometheus receives), escapes included, computed without serialising: the
    /// output limit is about the bytes served, and a string of control characters is
    /// six times longer in JSON than in memory.
    pub fn json_bytes(&self) -> usize {
        // {"targets":[...],"labels":{...}}
        let targets: usize = self.targets.iter().map(|t| json_str_bytes(t)).sum();
        let labels: usize = self
            .labels
            .iter()
            .map(|(k, v)| json_str_bytes(k) + 1 + json_str_bytes(v))
            .sum();
        26 + targets
            + self.targets.len().saturating_sub(1)
            + labels
            + self.labels.len().saturating_sub(1)
    }
}

/// The size of `s` as a JSON string literal, quotes included, escaped as serde_json
/// escapes it: `"` and `\\` and the short control escapes take two bytes, the other
/// control characters six (`\u0001`), everything else (UTF-8 included) as it is.
pub fn json_str_bytes(s: &str) -> usize {
    2 + s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum::<usize>()
}

/// The exact size of `groups` as the JSON array served to Prometheus.
pub fn json_array_bytes(groups: &[TargetGroup]) -> usize {
    2 + groups.iter().map(TargetGroup::json_bytes).sum::<usize>() + groups.len().saturating_sub(1)
}

struct Labels<'a>(&'a [(String, String)]);

impl Serialize for Labels<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for TargetGroup {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("TargetGroup", 2)?;
        s.serialize_field("targets", &self.targets)?;
        s.serialize_field("labels", &Labels(&self.labels))?;
        s.end()
    }
}

impl<'de> Deserialize<'de> for TargetGroup {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            targets: Vec<String>,
            #[serde(default)]
            labels: BTreeMap<String, String>,
        }
        let raw = Raw::deserialize(deserializer)?;
        Ok(TargetGroup {
            targets: raw.targets,
            labels: raw.labels.into_iter().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_as_prometheus_json_and_back() {
        let g = TargetGroup {
            targets: vec!["a:1".into()],
            labels: vec![("job".into(), "x".into()), ("env".into(), "prod".into())],
        };
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(
            json,
            r#"{"targets":["a:1"],"labels":{"job":"x","env":"prod"}}"#
        );
        assert_eq!(g.json_bytes(), json.len());
        let back: TargetGroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back.targets, g.targets);
        assert_eq!(back.labels.len(), 2);
    }

    #[test]
    fn json_sizes_are_exact_escapes_included() {
        let groups = vec![
            TargetGroup {
                targets: vec!["a\"b\\c\n\u{1}\u{7f}é".into(), String::new()],
                labels: vec![("k".into(), "\u{1f}\t\u{8}\u{c}\r".into())],
            },
            TargetGroup::default(),
            TargetGroup {
                targets: vec![],
                labels: vec![("a".into(), "1".into()), ("b".into(), "".into())],
            },
        ];
        let json = serde_json::to_string(&groups).unwrap();
        assert_eq!(json_array_bytes(&groups), json.len(), "{json}");
        assert_eq!(json_array_bytes(&[]), 2);
        assert_eq!(json_str_bytes("\u{1}"), 8);
    }
}
