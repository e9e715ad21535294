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
//!
//! [http]              # outbound HTTP; without this table nothing is reachable
//! allow = ["inventory.internal:8080", "*.consul.local:*", "api.example.com"]
//! max_response_bytes = "16MiB"
//!
//! [secrets]           # read through `config.secret`, kept out of logs and errors
//! token = { env = "INVENTORY_TOKEN" }
//! password = { file = "/run/secrets/inventory" }
//! ```
//!
//! Unknown keys are errors: a typo in a limit must not silently fall back to the default.

use super::capability::config::{self, ConfigValue};
use super::capability::http::HttpSection;
use super::capability::secrets::{self, SecretSource};
use super::limits::LimitOverrides;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest, a section per concern; each capability owns the type of its own
/// section ([`super::capability`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[limits]`: overrides of the command line's default limits for this generator.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// `[config]`: values the guest reads through `config.get` and `config.all`.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// `[check]`: what `httpsd check` runs the generator with.
    #[serde(default)]
    pub check: CheckSection,
    /// `[http]`: the hosts the generator may reach; empty, nothing is reachable.
    #[serde(default)]
    pub http: HttpSection,
    /// `[secrets]`: where each secret's value is read from, at every run.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
}

/// The `[check]` table of a manifest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSection {
    /// Query strings, one `httpsd check` run each.
    pub params: Option<Vec<String>>,
}

impl Manifest {
    /// Where the manifest of `generator` lives: same directory, same stem, `.toml`
    /// (`foo.toml` next to `foo.wasm` or `foo.py`), or the same with a leading `_`
    /// (`_foo.toml`): prometheus-http-sd 3.x skips `_` names, so a tree it shares with
    /// httpsd during a migration keeps manifests there (any other file stops its
    /// workers with "Unknown File Type"). Without either, the plain name (absent).
    pub fn path_for(generator: &Path) -> PathBuf {
        let [plain, hidden] = Manifest::candidates(generator);
        if !plain.exists() && hidden.exists() {
            hidden
        } else {
            plain
        }
    }

    /// The two names a manifest of `generator` may have, in the order they are
    /// looked for: `foo.toml`, then `_foo.toml`.
    pub fn candidates(generator: &Path) -> [PathBuf; 2] {
        let plain = generator.with_extension("toml");
        let name = plain
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let hidden = plain.with_file_name(format!("_{name}"));
        [plain, hidden]
    }

    /// Both manifest names exist for `generator`: which one is meant cannot be told,
    /// so its load fails with this message naming them.
    pub fn ambiguity(generator: &Path) -> Option<String> {
        let [plain, hidden] = Manifest::candidates(generator);
        (plain.exists() && hidden.exists()).then(|| {
            format!(
                "{} and {} are both manifests of {}: keep one",
                plain.display(),
                hidden.display(),
                generator.display()
            )
        })
    }

    /// Parses manifest text; the error names the file and the offending key.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, String> {
        toml::from_str(text).map_err(|e| format!("manifest {}: {}", path.display(), e.message()))
    }

    /// The secrets' values, read now, sorted by key.
    pub async fn secret_pairs(&self) -> Result<Vec<(String, String)>, String> {
        secrets::read(&self.secrets).await
    }

    /// The config values as the guest sees them, sorted by key.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        config::pairs(&self.config)
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

    #[tokio::test]
    async fn secrets_come_from_env_files_or_inline() {
        let dir = std::env::temp_dir().join(format!("httpsd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            "[secrets]\na = \"inline\"\nb = {{ env = \"PATH\" }}\nc = {{ file = {:?} }}\n",
            file.display().to_string()
        );
        let m = Manifest::parse(&text, Path::new("x.toml")).unwrap();
        let pairs = m.secret_pairs().await.unwrap();
        assert_eq!(pairs[0], ("a".into(), "inline".into()));
        assert_eq!(pairs[1].1, std::env::var("PATH").unwrap());
        assert_eq!(pairs[2], ("c".into(), "from-file".into()));
        let missing = Manifest::parse(
            "[secrets]\nt = { env = \"HTTPSD_TEST_UNSET_VARIABLE\" }\n",
            Path::new("x.toml"),
        )
        .unwrap();
        let err = missing.secret_pairs().await.unwrap_err();
        assert!(err.contains("HTTPSD_TEST_UNSET_VARIABLE"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_manifest_may_hide_from_prometheus_http_sd_behind_an_underscore() {
        let dir = tempfile::tempdir().unwrap();
        let generator = dir.path().join("svc.py");
        assert_eq!(Manifest::path_for(&generator), dir.path().join("svc.toml"));
        std::fs::write(dir.path().join("_svc.toml"), "").unwrap();
        assert_eq!(Manifest::path_for(&generator), dir.path().join("_svc.toml"));
        assert!(Manifest::ambiguity(&generator).is_none());
        std::fs::write(dir.path().join("svc.toml"), "").unwrap();
        assert_eq!(Manifest::path_for(&generator), dir.path().join("svc.toml"));
        let both = Manifest::ambiguity(&generator).unwrap();
        assert!(
            both.contains("_svc.toml") && both.contains("keep one"),
            "{both}"
        );
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_file() {
        let err = Manifest::parse("[limitz]\nfuel = 1\n", Path::new("gen.toml")).unwrap_err();
        assert!(err.contains("gen.toml"), "{err}");
        assert!(err.contains("limitz"), "{err}");
    }
}
