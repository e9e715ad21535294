//! The secrets capability: the manifest's `[secrets]` table, read by the guest through
//! `config.secret`. Values come from an environment variable or a file (so they stay
//! out of the manifest, which sits in the target tree), are read again at every run (a
//! rotated file is picked up), and are redacted from everything a run leaves behind
//! (its log, its error, its traceback: see [`super::log::redaction_list`]).

use super::RunState;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use wasmtime::component::Linker;

/// Where a secret's value comes from. An environment variable or a file keeps the value
/// out of the manifest; an inline value is accepted for tests and demos.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SecretSource {
    /// `key = "value"`: the value itself, written in the manifest.
    Inline(String),
    /// `key = { env = "NAME" }`: the worker's environment variable; unset is an error.
    Env {
        /// The variable's name.
        env: String,
    },
    /// `key = { file = "/run/secrets/x" }`: the file's text, trailing newlines removed.
    File {
        /// The file's path, as the worker process opens it.
        file: PathBuf,
    },
}

/// The largest secret file httpsd reads (a token, a password, a small key file).
pub const MAX_SECRET_BYTES: u64 = 64 << 10;

impl SecretSource {
    /// Reads the value now. The error says where the value was looked for, never what
    /// it is. A file is read off the async runtime and only if it is a regular file of
    /// at most [`MAX_SECRET_BYTES`] ([`crate::runtime::files`]): a FIFO here must not
    /// hang the worker.
    async fn resolve(&self, key: &str) -> Result<String, String> {
        match self {
            SecretSource::Inline(v) => Ok(v.clone()),
            SecretSource::Env { env } => std::env::var(env).map_err(|_| {
                format!("secret {key:?}: environment variable {env} is not set (or not UTF-8)")
            }),
            SecretSource::File { file } => crate::runtime::files::read_text(file, MAX_SECRET_BYTES)
                .await
                .map(|v| v.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("secret {key:?}: {e}")),
        }
    }
}

/// The `[secrets]` table's values, read now, sorted by key.
pub async fn read(
    section: &BTreeMap<String, SecretSource>,
) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::with_capacity(section.len());
    for (k, source) in section {
        pairs.push((k.clone(), source.resolve(k).await?));
    }
    Ok(pairs)
}

/// One run's secret values.
pub struct Secrets {
    values: Vec<(String, String)>,
}

impl Secrets {
    /// `values` as [`read`] returned them for this run.
    pub fn new(values: Vec<(String, String)>) -> Self {
        Secrets { values }
    }

    /// The value of `key` (the `config.secret` import, see [`super::config`]).
    pub fn get(&self, key: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

/// Nothing beyond the world's own import, which [`super::linker`] links.
pub fn add_to_linker(_linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_come_from_inline_values_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\n").unwrap();
        let section: BTreeMap<String, SecretSource> = toml::from_str(&format!(
            "a = \"inline\"\nb = {{ file = {:?} }}\nc = {{ env = \"HTTPSD_TEST_SECRETS_UNSET\" }}\n",
            file.to_str().unwrap()
        ))
        .unwrap();
        let err = read(&section).await.unwrap_err();
        assert!(err.contains("HTTPSD_TEST_SECRETS_UNSET"), "{err}");
        let mut section = section;
        section.remove("c");
        let secrets = Secrets::new(read(&section).await.unwrap());
        assert_eq!(secrets.get("a").as_deref(), Some("inline"));
        assert_eq!(
            secrets.get("b").as_deref(),
            Some("from-file"),
            "newline trimmed"
        );
        assert_eq!(secrets.get("c"), None);
    }

    #[tokio::test]
    async fn a_secret_file_that_is_not_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let section: BTreeMap<String, SecretSource> = toml::from_str(&format!(
            "d = {{ file = {:?} }}\n",
            dir.path().to_str().unwrap()
        ))
        .unwrap();
        let err = read(&section).await.unwrap_err();
        assert!(err.starts_with("secret \"d\""), "{err}");
    }
}
