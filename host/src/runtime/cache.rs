//! Compiled generators, cached so a job pays only for instantiation.
//!
//! Three levels, checked in order:
//! 1. by path, while the file's size, mtime and inode (and its manifest's) are
//!    unchanged: no read at all;
//! 2. by content hash in memory: a file touched but not changed is not recompiled;
//! 3. by content hash on disk (`<cache-dir>/<blake3>-<engine>.cwasm`): a restarted
//!    process loads the precompiled artifact instead of compiling.
//!
//! A changed `.wasm` or manifest is picked up on the next run, without a restart.
//!
//! A `.py` generator is a run of the Python runner component (found by the CLI, see
//! `cli::python_runner`) with the `.py` file's text: the runner is compiled once for
//! every `.py`, and the text is read again when the file changes.

use super::capability::http::HttpGrant;
use super::capability::{GeneratorPre, RunState};
use super::compile::{self, CompileLimits, Compiler};
use super::error::{ErrorKind, GenError};
use super::files;
use super::limits::Limits;
use super::manifest::Manifest;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The largest manifest httpsd reads.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The largest `.py` generator httpsd reads (the runner compiles it at every run).
pub const MAX_SCRIPT_BYTES: u64 = 4 << 20;
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, Linker};

/// Where a run's compiled component came from: the figure behind "a restart does not
/// recompile".
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Compiled from the `.wasm` now.
    Compiled,
    /// Loaded from the precompiled artifact on disk.
    Artifact,
    /// Already in this process's memory.
    Memory,
}

/// A generator ready to instantiate, with its manifest applied.
pub struct Loaded {
    /// BLAKE3 of the `.wasm` bytes (hex); also the key of the in-memory and on-disk
    /// compiled caches.
    pub hash: String,
    /// The component linked against the host's imports, instantiated once per run.
    pub pre: GeneratorPre<RunState>,
    /// The optional `check-params` export of the `generator-with-check` world.
    pub check_export: Option<ComponentExportIndex>,
    /// The runtime's default limits with the manifest's `[limits]` applied.
    pub limits: Limits,
    /// The manifest's `[config]` values as the guest reads them, sorted by key.
    pub config: Arc<[(String, String)]>,
    /// The hosts it may reach over HTTP (none without an `[http]` table).
    pub http: Arc<HttpGrant>,
    /// The parsed manifest (the default one when the generator has no `.toml`).
    pub manifest: Manifest,
    /// The `.py` file's text (and bytecode, once a run compiled it) when this is a run
    /// of the Python runner.
    pub script: Option<Arc<super::capability::script::Source>>,
    /// Instances of the Python runner that ended a run of this `.py` cleanly, for its
    /// next runs ([`super::warm`]); always empty for a component.
    pub warm: super::warm::WarmPool,
    /// How this entry was produced, and how long that took.
    pub origin: Origin,
    /// Reading the manifest and the `.wasm` plus compiling or loading it, when this
    /// entry was made; a later cache hit does not add to it.
    pub load_time: Duration,
}

/// What identifies a file's version without reading it: size, mtime and inode. Also
/// used by [`crate::targets::fingerprint`] to avoid rehashing unchanged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    /// `None` when the file does not exist.
    pub(crate) fn of(path: &Path) -> std::io::Result<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => Ok(Some(Stamp {
                len: m.len(),
                modified: m.modified().ok(),
                inode: m.ino(),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The versions of the files a loaded generator was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamps {
    /// The component (the Python runner for a `.py`).
    wasm: Stamp,
    manifest: Option<Stamp>,
    /// The `.py` file.
    script: Option<Stamp>,
}

struct ByPath {
    stamps: Stamps,
    loaded: Arc<Loaded>,
}

struct Compiled {
    pre: GeneratorPre<RunState>,
    check_export: Option<ComponentExportIndex>,
}

/// The least compile time the Python runner gets. It is httpsd's own component, which
/// the operator installs, not a generator's: the compile limits bound what authors drop
/// into the tree. Several processes compiling its 24 MB at once on a small machine (a
/// fleet starting with empty artifact caches) can take longer than `--compile-timeout`.
const RUNNER_COMPILE_TIMEOUT: Duration = Duration::from_secs(600);

/// The load error of a `.py` generator when httpsd has no Python runner.
const NO_RUNNER: &str = "no Python runner to run .py generators: httpsd looks for httpsd-python-runner.wasm next to its binary (scripts/python-runner builds it; ./scripts/demo and ./scripts/test do so), or takes --python-runner PATH (HTTPSD_PYTHON_RUNNER)";

/// How compiling is done and bounded (see [`super::compile`]).
#[derive(Debug, Clone)]
pub struct CompileSettings {
    /// In a child process (the normal case) or in this one.
    pub compiler: Compiler,
    /// Size, time and memory bounds of one compile.
    pub limits: CompileLimits,
    /// The engine meters fuel (the child must compile for the same engine).
    pub consume_fuel: bool,
}

/// Compiles running at once, each in its own process: a component that takes its
/// whole budget holds one of them, not every new generator's first run.
const COMPILE_SLOTS: usize = 2;

/// How long a component that failed to compile (or to load) is not tried again: every
/// poll of its path answers the cached `LoadError` meanwhile. A changed file is a new
/// hash and is tried at once.
pub const FAILED_COMPILE_HOLD: Duration = Duration::from_secs(600);

/// Failures remembered at most (the oldest are forgotten first).
const MAX_FAILURES: usize = 1024;

/// The process's compiled generators, by path and by content hash, with their
/// manifests; see the module documentation for the lookup order.
pub struct ComponentCache {
    engine: Engine,
    linker: Linker<RunState>,
    defaults: Limits,
    dir: Option<PathBuf>,
    /// The Python runner component, which every `.py` generator runs in.
    python_runner: Option<PathBuf>,
    compile: CompileSettings,
    /// Distinguishes artifacts of different wasmtime versions and engine settings.
    engine_tag: String,
    by_path: Mutex<HashMap<PathBuf, ByPath>>,
    by_hash: Mutex<HashMap<String, Arc<Compiled>>>,
    /// Content hashes that failed to compile or load, with the error and when.
    failed: Mutex<HashMap<String, (String, Instant)>>,
    /// One compile per content hash: a burst of jobs for a new generator compiles it
    /// once, and the others wait for that one.
    compiling: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    slots: tokio::sync::Semaphore,
    /// The process's warm instances of the Python runner, over every `.py`.
    warm: Arc<super::warm::WarmCount>,
}

impl ComponentCache {
    /// An empty cache; `dir` is the artifact directory (created if missing), `None` to
    /// keep compiled code in memory only; `python_runner` runs `.py` generators (none:
    /// each fails to load, saying how to get it). Errors only when `dir` cannot be
    /// created.
    pub fn new(
        engine: Engine,
        linker: Linker<RunState>,
        defaults: Limits,
        dir: Option<PathBuf>,
        python_runner: Option<PathBuf>,
        compile: CompileSettings,
    ) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ComponentCache {
            engine_tag: format!("{:016x}", hasher.finish()),
            engine,
            linker,
            defaults,
            dir,
            python_runner,
            compile,
            by_path: Mutex::new(HashMap::new()),
            by_hash: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashMap::new()),
            compiling: Mutex::new(HashMap::new()),
            slots: tokio::sync::Semaphore::new(COMPILE_SLOTS),
            warm: Arc::default(),
        })
    }

    /// The generator at `path`, compiled and with its manifest applied.
    pub async fn load(&self, path: &Path) -> Result<Arc<Loaded>, GenError> {
        self.load_with_origin(path).await.map(|(loaded, _)| loaded)
    }

    /// Like [`load`](Self::load), and where the compiled code came from this time
    /// ([`Origin::Memory`] when this process already had it).
    pub async fn load_with_origin(&self, path: &Path) -> Result<(Arc<Loaded>, Origin), GenError> {
        let load_err = |msg: String| GenError::host(ErrorKind::LoadError, path, msg);
        let is_script = path.extension().is_some_and(|e| e == "py");
        let component = if is_script {
            self.python_runner
                .as_deref()
                .ok_or_else(|| load_err(NO_RUNNER.to_string()))?
        } else {
            path
        };
        let stamp = |p: &Path| {
            Stamp::of(p).map_err(|e| load_err(format!("cannot stat {}: {e}", p.display())))
        };
        // One stat per name, the plain name first (Manifest::path_for's order): this
        // runs before every run, cache hit or not.
        let [plain, hidden] = Manifest::candidates(path);
        let (manifest_path, manifest_stamp) = match stamp(&plain)? {
            Some(found) => (plain, Some(found)),
            None => {
                let found = stamp(&hidden)?;
                (hidden, found)
            }
        };
        let stamps = Stamps {
            wasm: stamp(component)?
                .ok_or_else(|| load_err(format!("{} does not exist", component.display())))?,
            manifest: manifest_stamp,
            script: if is_script { stamp(path)? } else { None },
        };
        if is_script && stamps.script.is_none() {
            return Err(load_err(format!("{} does not exist", path.display())));
        }

        if let Some(hit) = self.lookup(path, stamps) {
            return Ok((hit, Origin::Memory));
        }

        let started = Instant::now();
        if let Some(both) = Manifest::ambiguity(path) {
            return Err(load_err(both));
        }
        let manifest = match stamps.manifest {
            None => Manifest::default(),
            Some(_) => {
                let text = files::read_text(&manifest_path, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| load_err(e.to_string()))?;
                Manifest::parse(&text, &manifest_path).map_err(load_err)?
            }
        };
        let limits = self
            .defaults
            .with_overrides(&manifest.limits)
            .map_err(|e| load_err(format!("manifest {}: {e}", manifest_path.display())))?;
        let http = HttpGrant::from_section(&manifest.http)
            .map_err(|e| load_err(format!("manifest {}: {e}", manifest_path.display())))?;
        let script = if is_script {
            let text = files::read_text(path, MAX_SCRIPT_BYTES)
                .await
                .map_err(|e| load_err(e.to_string()))?;
            Some(Arc::new(super::capability::script::Source::new(
                Arc::<str>::from(text),
            )))
        } else {
            None
        };

        let bytes = files::read(component, self.compile.limits.max_component_bytes)
            .await
            .map_err(|e| load_err(e.to_string()))?;
        let hash = blake3::hash(&bytes).to_hex().to_string();
        let compile_limits = self.compile_limits(is_script);
        let (compiled, origin) = self.compiled(&hash, bytes, path, compile_limits).await?;

        let loaded = Arc::new(Loaded {
            hash,
            pre: compiled.pre.clone(),
            check_export: compiled.check_export,
            limits,
            config: manifest.config_pairs().into(),
            http: Arc::new(http),
            manifest,
            script,
            warm: super::warm::WarmPool::new(self.warm.clone()),
            origin,
            load_time: started.elapsed(),
        });
        self.remember(path, stamps, loaded.clone());
        Ok((loaded, origin))
    }

    /// The bounds of one compile: the Python runner (`runner`) gets at least
    /// [`RUNNER_COMPILE_TIMEOUT`].
    fn compile_limits(&self, runner: bool) -> CompileLimits {
        let mut limits = self.compile.limits;
        if runner {
            limits.timeout = limits.timeout.max(RUNNER_COMPILE_TIMEOUT);
        }
        limits
    }

    fn lookup(&self, path: &Path, stamps: Stamps) -> Option<Arc<Loaded>> {
        let map = crate::sync::lock(&self.by_path);
        let entry = map.get(path)?;
        (entry.stamps == stamps).then(|| entry.loaded.clone())
    }

    fn remember(&self, path: &Path, stamps: Stamps, loaded: Arc<Loaded>) {
        let mut map = crate::sync::lock(&self.by_path);
        map.insert(path.to_path_buf(), ByPath { stamps, loaded });
        // Drop compiled versions no path refers to any more (old builds of a file).
        let live: std::collections::HashSet<&str> =
            map.values().map(|e| e.loaded.hash.as_str()).collect();
        {
            let mut by_hash = crate::sync::lock(&self.by_hash);
            by_hash.retain(|h, _| live.contains(h.as_str()));
        }
    }

    /// The compiled component of `bytes` (content hash `hash`): from memory, from the
    /// artifact on disk, or compiled now as a limited job. A failure is remembered for
    /// [`FAILED_COMPILE_HOLD`], so a component that is too costly to compile costs that
    /// once, not on every poll.
    async fn compiled(
        &self,
        hash: &str,
        bytes: Vec<u8>,
        path: &Path,
        limits: CompileLimits,
    ) -> Result<(Arc<Compiled>, Origin), GenError> {
        let load_err = |msg: String| GenError::host(ErrorKind::LoadError, path, msg);
        let once = {
            let mut map = crate::sync::lock(&self.compiling);
            map.entry(hash.to_string()).or_default().clone()
        };
        let result = {
            let _guard = once.lock().await;
            if let Some(found) = crate::sync::lock(&self.by_hash).get(hash).cloned() {
                return Ok((found, Origin::Memory));
            }
            if let Some(message) = self.failed_before(hash) {
                return Err(load_err(message));
            }
            let result = self.compile_and_link(hash, bytes, limits).await;
            match &result {
                Ok((compiled, _)) => {
                    let mut m = crate::sync::lock(&self.by_hash);
                    m.insert(hash.to_string(), compiled.clone());
                }
                Err(message) => self.remember_failure(hash, message),
            }
            result
        };
        {
            let mut map = crate::sync::lock(&self.compiling);
            // The last one out removes the entry (this Arc and the map's are the two).
            if Arc::strong_count(&once) <= 2 {
                map.remove(hash);
            }
        }
        result.map_err(load_err)
    }

    fn failed_before(&self, hash: &str) -> Option<String> {
        let map = crate::sync::lock(&self.failed);
        let (message, at) = map.get(hash)?;
        (at.elapsed() < FAILED_COMPILE_HOLD).then(|| {
            format!(
                "{message} (not retried for {} unless the file changes)",
                crate::units::format_duration(FAILED_COMPILE_HOLD)
            )
        })
    }

    fn remember_failure(&self, hash: &str, message: &str) {
        let mut map = crate::sync::lock(&self.failed);
        map.retain(|_, (_, at)| at.elapsed() < FAILED_COMPILE_HOLD);
        if map.len() >= MAX_FAILURES
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(h, _)| h.clone())
        {
            map.remove(&oldest);
        }
        map.insert(hash.to_string(), (message.to_string(), Instant::now()));
    }

    /// Loads the artifact if there is a usable one, else compiles; then links.
    async fn compile_and_link(
        &self,
        hash: &str,
        bytes: Vec<u8>,
        limits: CompileLimits,
    ) -> Result<(Arc<Compiled>, Origin), String> {
        let artifact = self
            .dir
            .as_ref()
            .map(|d| d.join(format!("{hash}-{}.cwasm", self.engine_tag)));
        let mut component = None;
        let mut origin = Origin::Compiled;
        if let Some(artifact) = artifact.as_ref().filter(|a| a.exists()) {
            match compile::load_artifact(&self.engine, artifact, limits) {
                Ok(c) => {
                    component = Some(c);
                    origin = Origin::Artifact;
                }
                Err(e) => {
                    tracing::warn!(artifact = %artifact.display(), "discarding unusable precompiled artifact: {e}")
                }
            }
        }
        let component = match component {
            Some(c) => c,
            None => {
                let _slot = self
                    .slots
                    .acquire()
                    .await
                    .map_err(|_| "the compiler is shutting down".to_string())?;
                let settings = &self.compile;
                let (c, written) = compile::compile(
                    &self.engine,
                    &settings.compiler,
                    settings.consume_fuel,
                    limits,
                    bytes,
                    artifact.as_deref(),
                )
                .await?;
                if !written
                    && let Some(artifact) = &artifact
                    && let Err(e) = write_artifact(&c, artifact)
                {
                    tracing::warn!(artifact = %artifact.display(), "cannot write precompiled artifact: {e:#}");
                }
                c
            }
        };

        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| format!("component needs an import httpsd does not grant: {e:#}"))?;
        let pre = GeneratorPre::new(instance_pre).map_err(|e| {
            format!(
                "component does not implement the httpsd:generator world (wit/generator.wit): {e:#}"
            )
        })?;
        let check_export = component.get_export_index(None, "check-params");
        Ok((Arc::new(Compiled { pre, check_export }), origin))
    }
}

/// Writes atomically: a crash mid-write leaves no half artifact under the final name.
fn write_artifact(component: &Component, path: &Path) -> wasmtime::Result<()> {
    let bytes = component.serialize()?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
