//! A generator's manifest: `foo.toml` next to `foo.wasm`.
//!
//! ```toml
//! [limits]            # each one optional; the server-wide defaults fill the rest
//! fuel = 5000000000
//! timeout = "2s"
//! memory = "64MiB"
//! max_output_bytes = "4MiB"
//! max_targets = 20000
//!
//! [config]            # values the generator reads through the `config` import
//! site = "dc1"
//! racks = 40          # numbers and booleans are handed over as strings
//!
//! [check]             # what `httpsd check` calls generate with, one run per entry
//! params = ["env=prod&region=eu-west-1", ""]
//! ```
//!
//! Unknown keys are errors: a typo in a limit must not silently fall back to the default.

use super::limits::LimitOverrides;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    #[serde(default)]
    pub limits: LimitOverrides,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    #[serde(default)]
    pub check: CheckSection,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// Query strings, one `httpsd check` run each.
    pub params: Option<Vec<String>>,
}

/// A config value: authors write numbers and booleans unquoted; the guest sees strings.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

impl ConfigValue {
    pub fn as_text(&self) -> String {
        match self {
            ConfigValue::Text(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
        }
    }
}

impl Manifest {
    /// Where the manifest of `generator` lives: same directory, same stem, `.toml`.
    pub fn path_for(generator: &Path) -> PathBuf {
        generator.with_extension("toml")
    }

    /// Parses manifest text; the error names the file and the offending key.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| format!("manifest {}: {}", path.display(), e.message()))
    }

    /// The config values as the guest sees them, sorted by key.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.as_text()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_sections() {
        let m = Manifest::parse(
            "[limits]\ntimeout = \"2s\"\n[config]\nsite = \"dc1\"\nracks = 40\n[check]\nparams = [\"a=1\", \"\"]\n",
            Path::new("x.toml"),
        )
        .unwrap();
        assert_eq!(
            m.config_pairs(),
            vec![("racks".into(), "40".into()), ("site".into(), "dc1".into())]
        );
        assert_eq!(m.check.params.unwrap().len(), 2);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        let err = Manifest::parse("[limitz]\nfuel = 1\n", Path::new("gen.toml")).unwrap_err();
        assert!(err.contains("gen.toml"), "{err}");
        assert!(err.contains("limitz"), "{err}");
    }
}
