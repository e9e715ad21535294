//! `httpsd new NAME`: writes a Rust generator crate that builds to a component and
//! passes `httpsd check` as it is, so a generator author starts from something that
//! works and changes it step by step.
//!
//! The SDK is not on crates.io, so by default the crate gets a copy of the SDK and the
//! WIT world this binary was built with (under `vendor/`): it builds anywhere with the
//! `wasm32-wasip2` target and crates.io, and its component matches this host's world.
//! `--sdk PATH` depends on an SDK checkout instead (for SDK development).
//!
//! `--lang python` writes a drop-in `NAME.py` (prometheus-http-sd style) and its
//! manifest instead ([`create_python`]): no build step, it runs as it is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The SDK and WIT sources this binary carries, by path inside `vendor/`.
const VENDORED: &[(&str, &str)] = &[
    (
        "generator-sdk/src/lib.rs",
        include_str!("../../../generator-sdk/src/lib.rs"),
    ),
    (
        "generator-sdk/src/config.rs",
        include_str!("../../../generator-sdk/src/config.rs"),
    ),
    (
        "generator-sdk/src/http.rs",
        include_str!("../../../generator-sdk/src/http.rs"),
    ),
    (
        "generator-sdk/src/log.rs",
        include_str!("../../../generator-sdk/src/log.rs"),
    ),
    (
        "generator-sdk/src/query.rs",
        include_str!("../../../generator-sdk/src/query.rs"),
    ),
    (
        "generator-sdk/README.md",
        include_str!("../../../generator-sdk/README.md"),
    ),
    (
        "wit/generator.wit",
        include_str!("../../../wit/generator.wit"),
    ),
];

/// The SDK's own dependency line, copied from its manifest at build time so the
/// vendored copy asks for what the SDK was tested with.
const SDK_MANIFEST: &str = include_str!("../../../generator-sdk/Cargo.toml");

/// Why `httpsd new` wrote nothing, or stopped part-way ([`NewError::Io`]).
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name is empty, longer than 64 bytes, or not a letter followed by letters,
    /// digits, '-' and '_'.
    #[error(
        "{0:?} is not a usable crate name: use letters, digits, '-' and '_', starting with a letter"
    )]
    BadName(String),
    /// The crate's directory is already there; nothing is overwritten.
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    /// `--sdk` cannot be resolved, or its `Cargo.toml` does not name `generator-sdk`.
    #[error("{0} does not look like the generator-sdk crate (no Cargo.toml naming it)")]
    NotAnSdk(PathBuf),
    /// Writing a file (or creating its directory) failed; the files before it are left
    /// in place.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file being written, inside the new crate's directory.
        path: PathBuf,
        /// What the filesystem said.
        source: std::io::Error,
    },
}

/// What to create.
pub struct NewCrate<'a> {
    /// The crate's name; the generator's httpsd manifest is written as `NAME.toml`.
    pub name: &'a str,
    /// The crate's directory (created; must not exist).
    pub dir: &'a Path,
    /// An SDK checkout to depend on instead of the vendored copy.
    pub sdk: Option<&'a Path>,
}

/// Writes the crate and returns the files written, relative to its directory.
pub fn create(spec: &NewCrate) -> Result<Vec<String>, NewError> {
    validate_name(spec.name)?;
    if spec.dir.exists() {
        return Err(NewError::Exists(spec.dir.to_path_buf()));
    }
    let sdk_dependency = match spec.sdk {
        Some(path) => {
            let path =
                std::fs::canonicalize(path).map_err(|_| NewError::NotAnSdk(path.to_path_buf()))?;
            let manifest = std::fs::read_to_string(path.join("Cargo.toml")).unwrap_or_default();
            if !manifest.contains("name = \"generator-sdk\"") {
                return Err(NewError::NotAnSdk(path));
            }
            let quoted = toml::Value::String(path.display().to_string()).to_string();
            format!("{{ path = {quoted} }}")
        }
        None => "{ path = \"vendor/generator-sdk\" }".to_string(),
    };

    let mut files: Vec<(String, String)> = vec![
        ("Cargo.toml".into(), cargo_toml(spec.name, &sdk_dependency)),
        ("src/lib.rs".into(), LIB_RS.to_string()),
        (format!("{}.toml", spec.name), MANIFEST.to_string()),
        ("README.md".into(), readme(spec.name)),
        (".gitignore".into(), "/target\n".into()),
    ];
    if spec.sdk.is_none() {
        files.push((
            "vendor/generator-sdk/Cargo.toml".into(),
            vendored_sdk_toml(),
        ));
        files.extend(
            VENDORED
                .iter()
                .map(|(rel, text)| (format!("vendor/{rel}"), text.to_string())),
        );
    }
    for (rel, text) in &files {
        let path = spec.dir.join(rel);
        let io = |source| NewError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
    }
    Ok(files.into_iter().map(|(rel, _)| rel).collect())
}

/// The drop-in Python generator and its manifest.
const PYTHON_GENERATOR: &str = include_str!("new_templates/generator.py");
const PYTHON_MANIFEST: &str = include_str!("new_templates/generator-py.toml");

/// Writes `NAME.py` and `NAME.toml` into `dir` (created if missing) and returns their
/// paths; refuses if either exists.
pub fn create_python(name: &str, dir: &Path) -> Result<Vec<PathBuf>, NewError> {
    validate_name(name)?;
    let files = [
        (dir.join(format!("{name}.py")), PYTHON_GENERATOR),
        (dir.join(format!("{name}.toml")), PYTHON_MANIFEST),
    ];
    if let Some((existing, _)) = files.iter().find(|(p, _)| p.exists()) {
        return Err(NewError::Exists(existing.clone()));
    }
    std::fs::create_dir_all(dir).map_err(|source| NewError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (path, text) in &files {
        std::fs::write(path, text).map_err(|source| NewError::Io {
            path: path.clone(),
            source,
        })?;
    }
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

fn validate_name(name: &str) -> Result<(), NewError> {
    let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(NewError::BadName(name.to_string()))
    }
}

/// The file name cargo gives the component: dashes become underscores.
pub fn component_file(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

fn cargo_toml(name: &str, sdk_dependency: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A generator is a library that builds to a WebAssembly component.
[lib]
crate-type = ["cdylib"]

[dependencies]
generator-sdk = {sdk_dependency}

# Its own workspace: building it never pulls in a surrounding one.
[workspace]

[profile.release]
# file:line in tracebacks (httpsd reads them only when it renders one).
debug = "line-tables-only"
opt-level = "s"
"#
    )
}

/// The SDK's manifest with the workspace-inherited fields made concrete.
fn vendored_sdk_toml() -> String {
    let dependencies = SDK_MANIFEST
        .split_once("[dependencies]")
        .map(|(_, deps)| deps.trim())
        .unwrap_or("wit-bindgen = { version = \"0.61\", default-features = false, features = [\"macros\", \"realloc\"] }");
    let mut out = String::new();
    let _ = write!(
        out,
        "# A copy of httpsd's generator SDK, written by `httpsd new` (httpsd {}).\n\
         [package]\nname = \"generator-sdk\"\nversion = \"{}\"\nedition = \"2024\"\npublish = false\n\n\
         [dependencies]\n{dependencies}\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION"),
    );
    out
}

const LIB_RS: &str = r#"//! A target generator: turns the query parameters of a Prometheus
//! `GET /targets/<path>?...` into target groups.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Check: `httpsd check <dir holding the .wasm>` (see README.md)

use generator_sdk::{Params, Result, TargetGroup, bail, config};

fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
    // `?env=prod` in the http_sd_configs URL; "staging" without it.
    let env = params.get_or("env", "staging");
    if !matches!(env, "prod" | "staging") {
        bail!("unknown env {env:?}: expected prod or staging");
    }
    // From the manifest next to the .wasm (`[config] port = 8080`); 9100 without it.
    let port: u16 = config::parse("port")?.unwrap_or(9100);
    let replicas = if env == "prod" { 3 } else { 1 };
    generator_sdk::info!("{replicas} targets for {env}");
    Ok(vec![
        TargetGroup::new()
            .targets((1..=replicas).map(|i| format!("app-{i}.{env}.internal:{port}")))
            .job("app")
            .label("env", env),
    ])
}

// `check` lists the parameter sets `httpsd check` runs this generator with.
generator_sdk::export_generator!(generate, check = ["env=prod", "env=staging"]);
"#;

const MANIFEST: &str = r#"# The generator's manifest: keep it next to the .wasm, with the same name.
# Every key is optional; unknown keys are errors.

[limits]
timeout = "5s"
memory = "64MiB"

[config]
port = 8080
"#;

fn readme(name: &str) -> String {
    let wasm = component_file(name);
    format!(
        r#"# {name}

An httpsd target generator, written by `httpsd new {name}`.

```sh
rustup target add wasm32-wasip2                       # once
cargo build --release --target wasm32-wasip2
mkdir -p /srv/targets/{name}
cp target/wasm32-wasip2/release/{wasm} /srv/targets/{name}/{name}.wasm
cp {name}.toml /srv/targets/{name}/{name}.toml        # limits and config
httpsd check /srv/targets --path {name}               # runs it once in the sandbox
```

Prometheus then asks `http://<httpsd>/targets/{name}?env=prod`. Edit `src/lib.rs`;
`vendor/generator-sdk/README.md` documents the SDK (parameters, labels, config, logs,
errors).
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names() {
        for bad in ["", "1abc", "a b", "../x", "a/b", "ä"] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        for good in ["inventory", "my-targets", "cmdb_v2"] {
            assert!(validate_name(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn the_vendored_sdk_keeps_its_dependencies() {
        let toml = vendored_sdk_toml();
        assert!(toml.contains("wit-bindgen"), "{toml}");
        assert!(!toml.contains(".workspace"), "{toml}");
    }

    #[test]
    fn a_python_generator_is_two_files_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = create_python("svc", dir.path()).unwrap();
        assert_eq!(
            files,
            [dir.path().join("svc.py"), dir.path().join("svc.toml")]
        );
        let py = std::fs::read_to_string(&files[0]).unwrap();
        assert!(py.contains("def generate_targets(**params)"), "{py}");
        assert!(py.contains("def test_generate_targets()"), "{py}");
        let manifest = std::fs::read_to_string(&files[1]).unwrap();
        assert!(crate::runtime::manifest::Manifest::parse(&manifest, &files[1]).is_ok());
        let err = create_python("svc", dir.path()).unwrap_err();
        assert!(matches!(err, NewError::Exists(_)), "{err}");
        assert!(create_python("../x", dir.path()).is_err());
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let err = create(&NewCrate {
            name: "x",
            dir: dir.path(),
            sdk: None,
        })
        .unwrap_err();
        assert!(matches!(err, NewError::Exists(_)), "{err}");
    }
}
