//! The config capability: the manifest's `[config]` table, read by the guest through
//! `config.get` and `config.all`. Values are the operator's, not secret; authors write
//! numbers and booleans unquoted and the guest sees strings.
//!
//! The WIT interface `config` also carries `secret`: that function is the secrets
//! capability's ([`super::secrets`]), and the impl below hands it over.

use super::RunState;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use wasmtime::component::Linker;

/// A `[config]` value as written in the manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A TOML string, handed over as it is.
    Text(String),
    /// A TOML integer, handed over in decimal.
    Integer(i64),
    /// A TOML float, handed over in Rust's shortest form (`1.0` becomes `"1"`).
    Float(f64),
    /// A TOML boolean, handed over as `"true"` or `"false"`.
    Bool(bool),
}

impl ConfigValue {
    /// The string the guest sees: the guest's interface has strings only.
    pub fn as_text(&self) -> String {
        match self {
            ConfigValue::Text(s) => s.clone(),
            ConfigValue::Integer(i) => i.to_string(),
            ConfigValue::Float(f) => f.to_string(),
            ConfigValue::Bool(b) => b.to_string(),
        }
    }
}

/// The `[config]` table as the guest sees it, sorted by key.
pub fn pairs(section: &BTreeMap<String, ConfigValue>) -> Vec<(String, String)> {
    section
        .iter()
        .map(|(k, v)| (k.clone(), v.as_text()))
        .collect()
}

/// One run's config values (shared with every run of the same loaded generator).
pub struct Config {
    values: Arc<[(String, String)]>,
}

impl Config {
    /// `values` as [`pairs`] made them: sorted by key, no secrets.
    pub fn new(values: Arc<[(String, String)]>) -> Self {
        Config { values }
    }

    fn get(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

impl super::httpsd::generator::config::Host for RunState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key)
    }

    fn all(&mut self) -> Vec<(String, String)> {
        self.config.values.to_vec()
    }

    fn secret(&mut self, key: String) -> Option<String> {
        self.secrets.get(&key)
    }
}

/// Nothing beyond the world's own import, which [`super::linker`] links.
pub fn add_to_linker(_linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_strings_sorted_by_key() {
        let section: BTreeMap<String, ConfigValue> =
            toml::from_str("site = \"dc1\"\nracks = 40\nratio = 0.5\nlive = true\n").unwrap();
        assert_eq!(
            pairs(&section),
            [
                ("live".to_string(), "true".to_string()),
                ("racks".to_string(), "40".to_string()),
                ("ratio".to_string(), "0.5".to_string()),
                ("site".to_string(), "dc1".to_string()),
            ]
        );
        let config = Config::new(pairs(&section).into());
        assert_eq!(config.get("site").as_deref(), Some("dc1"));
        assert_eq!(config.get("missing"), None);
    }
}
