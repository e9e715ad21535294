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
    pub targets: Vec<String>,
    pub labels: Vec<(String, String)>,
}

impl TargetGroup {
    /// A rough size of this group in the JSON answer, used for the output limit
    /// without serialising first.
    pub fn approx_json_bytes(&self) -> usize {
        let targets: usize = self.targets.iter().map(|t| t.len() + 3).sum();
        let labels: usize = self.labels.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        30 + targets + labels
    }
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
        let back: TargetGroup = serde_json::from_str(&json).unwrap();
        assert_eq!(back.targets, g.targets);
        assert_eq!(back.labels.len(), 2);
    }
}
