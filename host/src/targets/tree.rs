//! Finding the generators under a request path, without ever leaving the root.
//!
//! Every candidate is canonicalised and must stay under the canonical root, so `..` in
//! a symlink, a symlink to `/etc` or a loop of symlinks never leads outside or hangs.
//! The result is sorted by relative path: Prometheus keys target groups by their index,
//! so the merged answer must not reorder between runs.

use super::path::TargetPath;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What kind of generator a file is, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GeneratorKind {
    /// `.wasm`: a component run in the sandbox.
    Wasm,
    /// `.py`: a prometheus-http-sd style generator, run in the sandbox by the Python
    /// runner component.
    Python,
    /// `.json`: a static list of target groups, served as written.
    Json,
    /// `.yaml` or `.yml`: the same as `.json`, in YAML.
    Yaml,
}

/// The file extensions of generators, as the error for a directory without one lists
/// them.
pub const GENERATOR_EXTENSIONS: [&str; 5] = ["wasm", "py", "json", "yaml", "yml"];

impl GeneratorKind {
    /// Whether it runs in the sandbox (and so takes the query parameters).
    pub fn runs_in_sandbox(self) -> bool {
        matches!(self, GeneratorKind::Wasm | GeneratorKind::Python)
    }

    fn from_path(path: &Path) -> Option<GeneratorKind> {
        match path.extension()?.to_str()? {
            "wasm" => Some(GeneratorKind::Wasm),
            "py" => Some(GeneratorKind::Python),
            "json" => Some(GeneratorKind::Json),
            "yaml" | "yml" => Some(GeneratorKind::Yaml),
            _ => None,
        }
    }
}

/// One generator file under the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorFile {
    /// Path relative to the root with `/` separators: the stable sort key and the name
    /// shown to operators.
    pub rel: String,
    /// Canonical absolute path.
    pub abs: PathBuf,
    /// How it is turned into target groups, from its extension.
    pub kind: GeneratorKind,
}

/// Why no generators could be listed for a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Neither a directory nor a `path.<ext>` file answers the path (a 404).
    #[error("path not found")]
    NotFound,
    /// A directory could not be read; the message names it.
    #[error("cannot read the target directory: {0}")]
    Io(String),
    /// The path holds files, but none httpsd can run (a tree of prometheus-http-sd
    /// files with a typo, a generator not yet built): an error naming them, never an
    /// empty answer, which would make Prometheus drop every target of the job.
    #[error("{}", nothing_runnable(.0))]
    NothingRunnable(Vec<String>),
}

/// How many of the files a [`TreeError::NothingRunnable`] names.
const NAMED_FILES: usize = 10;

fn nothing_runnable(files: &[String]) -> String {
    let mut named = files
        .iter()
        .take(NAMED_FILES)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if files.len() > NAMED_FILES {
        named.push_str(&format!(" and {} more", files.len() - NAMED_FILES));
    }
    format!(
        "no generator httpsd can run here, only {named} (generators are .wasm, .py, .json, .yaml and .yml files; names starting with _ or . are skipped)"
    )
}

/// The root directory of generators.
#[derive(Debug, Clone)]
pub struct TargetTree {
    root: PathBuf,
}

impl TargetTree {
    /// Opens `root`, which must be a directory.
    pub fn open(root: &Path) -> std::io::Result<TargetTree> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        Ok(TargetTree { root })
    }

    /// The root, canonicalised (symlinks resolved).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The generators that answer `path`: everything under the directory `path`, and
    /// the files `path.<ext>`; sorted by relative path. `NotFound` when neither exists,
    /// `NothingRunnable` when the directory holds files but no generator.
    pub fn generators(&self, path: &TargetPath) -> Result<Vec<GeneratorFile>, TreeError> {
        let mut found = Found::default();
        let mut exists = false;
        let mut visited = HashSet::new();

        let dir = path
            .segments()
            .iter()
            .fold(self.root.clone(), |p, s| p.join(s));
        if let Some(dir) = self.inside(&dir).filter(|d| d.is_dir()) {
            exists = true;
            self.walk(&dir, &mut visited, &mut found)?;
        }
        if let Some((last, parent)) = path.segments().split_last() {
            let parent = parent.iter().fold(self.root.clone(), |p, s| p.join(s));
            for ext in GENERATOR_EXTENSIONS {
                let candidate = parent.join(format!("{last}.{ext}"));
                if let Some(file) = self.inside(&candidate).filter(|f| f.is_file()) {
                    exists = true;
                    self.push_file(&candidate, file, &mut found);
                }
            }
        }
        if !exists {
            return Err(TreeError::NotFound);
        }
        let Found {
            mut generators,
            mut others,
        } = found;
        if generators.is_empty() && !others.is_empty() {
            others.sort();
            return Err(TreeError::NothingRunnable(others));
        }
        generators.sort_by(|a, b| a.rel.cmp(&b.rel));
        generators.dedup_by(|a, b| a.abs == b.abs);
        Ok(generators)
    }

    /// The canonical form of `path` if it exists and stays under the root.
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        let canonical = path.canonicalize().ok()?;
        if canonical.starts_with(&self.root) {
            Some(canonical)
        } else {
            tracing::warn!(path = %path.display(), target = %canonical.display(), "ignoring a path that leads outside the target root");
            None
        }
    }

    fn walk(
        &self,
        dir: &Path,
        visited: &mut HashSet<PathBuf>,
        found: &mut Found,
    ) -> Result<(), TreeError> {
        if !visited.insert(dir.to_path_buf()) {
            return Ok(()); // a symlink loop, or two links to one directory
        }
        let entries =
            std::fs::read_dir(dir).map_err(|e| TreeError::Io(format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = entry.map_err(|e| TreeError::Io(format!("{}: {e}", dir.display())))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                continue; // not UTF-8: no request path could name it
            };
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let path = entry.path();
            let Some(canonical) = self.inside(&path) else {
                continue;
            };
            if canonical.is_dir() {
                self.walk(&canonical, visited, found)?;
            } else if canonical.is_file() {
                self.push_file(&path, canonical, found);
            }
        }
        Ok(())
    }

    fn push_file(&self, path: &Path, canonical: PathBuf, found: &mut Found) {
        // The name the operator sees is where the file sits in the tree, even when it
        // is a symlink to elsewhere under the root.
        let rel = path
            .strip_prefix(&self.root)
            .unwrap_or(&canonical)
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let Some(kind) = GeneratorKind::from_path(&canonical) else {
            found.others.push(rel);
            return;
        };
        found.generators.push(GeneratorFile {
            rel,
            abs: canonical,
            kind,
        });
    }
}

/// What a walk found: generators, and the other files (manifests, notes, anything
/// httpsd does not run), which matter only when there is no generator at all.
#[derive(Default)]
struct Found {
    generators: Vec<GeneratorFile>,
    others: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tree() -> (tempfile::TempDir, TargetTree) {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("a/b")).unwrap();
        fs::create_dir_all(r.join("a/_helpers")).unwrap();
        fs::create_dir_all(r.join("empty")).unwrap();
        fs::write(r.join("a/b/z.json"), "[]").unwrap();
        fs::write(r.join("a/b/m.yaml"), "[]").unwrap();
        fs::write(r.join("a/b/gen.wasm"), "").unwrap();
        fs::write(r.join("a/b/gen.toml"), "").unwrap();
        fs::write(r.join("a/_helpers/h.json"), "[]").unwrap();
        fs::write(r.join("a/.hidden.json"), "[]").unwrap();
        fs::write(r.join("a/top.yml"), "[]").unwrap();
        fs::write(r.join("a/notes.txt"), "").unwrap();
        fs::write(r.join("a/b/legacy.py"), "").unwrap();
        fs::create_dir_all(r.join("unbuilt/_helpers")).unwrap();
        fs::write(r.join("unbuilt/gen.toml"), "").unwrap();
        fs::write(r.join("unbuilt/README.md"), "").unwrap();
        fs::write(r.join("unbuilt/_helpers/h.py"), "").unwrap();
        fs::create_dir_all(r.join("only-hidden")).unwrap();
        fs::write(r.join("only-hidden/_h.py"), "").unwrap();
        fs::write(r.join("solo.json"), "[]").unwrap();
        let t = TargetTree::open(r).unwrap();
        (dir, t)
    }

    fn rels(t: &TargetTree, p: &str) -> Vec<String> {
        t.generators(&TargetPath::parse(p).unwrap())
            .unwrap()
            .into_iter()
            .map(|g| g.rel)
            .collect()
    }

    #[test]
    fn recursive_sorted_and_hidden_skipped() {
        let (_d, t) = tree();
        assert_eq!(
            rels(&t, "a"),
            [
                "a/b/gen.wasm",
                "a/b/legacy.py",
                "a/b/m.yaml",
                "a/b/z.json",
                "a/top.yml"
            ]
        );
        assert_eq!(
            rels(&t, "a/b"),
            ["a/b/gen.wasm", "a/b/legacy.py", "a/b/m.yaml", "a/b/z.json"]
        );
        assert_eq!(rels(&t, "a/b/legacy"), ["a/b/legacy.py"]);
        assert_eq!(rels(&t, "solo"), ["solo.json"]);
        assert_eq!(rels(&t, "a/top"), ["a/top.yml"]);
        assert_eq!(rels(&t, "empty"), Vec::<String>::new());
        assert_eq!(rels(&t, "only-hidden"), Vec::<String>::new());
        assert_eq!(rels(&t, "").len(), 6);
        assert_eq!(
            t.generators(&TargetPath::parse("nope").unwrap()),
            Err(TreeError::NotFound)
        );
    }

    #[test]
    fn files_without_a_generator_are_an_error_naming_them() {
        let (_d, t) = tree();
        let err = t
            .generators(&TargetPath::parse("unbuilt").unwrap())
            .unwrap_err();
        assert_eq!(
            err,
            TreeError::NothingRunnable(vec![
                "unbuilt/README.md".to_string(),
                "unbuilt/gen.toml".to_string()
            ])
        );
        let text = err.to_string();
        assert!(
            text.contains("unbuilt/README.md, unbuilt/gen.toml") && text.contains(".py"),
            "{text}"
        );
        let many: Vec<String> = (0..25).map(|i| format!("f{i:02}.txt")).collect();
        let text = TreeError::NothingRunnable(many).to_string();
        assert!(text.contains("f09.txt and 15 more"), "{text}");
    }

    #[test]
    fn symlinks_cannot_escape() {
        let (d, t) = tree();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.json"), "[]").unwrap();
        std::os::unix::fs::symlink(outside.path(), d.path().join("escape")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.json"),
            d.path().join("a/leak.json"),
        )
        .unwrap();
        std::os::unix::fs::symlink(d.path().join("a"), d.path().join("a/b/loop")).unwrap();
        assert_eq!(
            t.generators(&TargetPath::parse("escape").unwrap()),
            Err(TreeError::NotFound)
        );
        let all = rels(&t, "");
        assert!(
            !all.iter()
                .any(|r| r.contains("secret") || r.contains("leak")),
            "{all:?}"
        );
        // The loop back to `a` is walked once, not forever.
        assert!(rels(&t, "a").len() >= 4);
    }
}
