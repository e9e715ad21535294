//! A short-lived memo of "which generators answer this path, and what is their
//! fingerprint", so a cache hit does not walk the directory tree.
//!
//! Entries are re-checked after `refresh` (a second by default): a new, changed or
//! deleted generator is seen within that time, without a restart and without inotify.
//! Only paths that exist are remembered, so random 404s cannot grow the memo.

use super::fingerprint::Fingerprinter;
use super::path::TargetPath;
use super::tree::{GeneratorFile, TargetTree, TreeError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The generators of one path, as of `checked`.
#[derive(Debug)]
pub struct Indexed {
    /// The generators that answer the path, sorted by relative path.
    pub generators: Vec<GeneratorFile>,
    /// Their [`Fingerprinter::fingerprint`]: changes when any of them or their
    /// manifests changes.
    pub fingerprint: String,
    checked: Instant,
}

/// The memo over one target tree, shared by every request of the process.
pub struct PathIndex {
    tree: TargetTree,
    fingerprints: Fingerprinter,
    refresh: Duration,
    memo: Mutex<HashMap<TargetPath, Arc<Indexed>>>,
}

/// Most paths remembered; past that the memo starts over.
const MAX_PATHS: usize = 50_000;

impl PathIndex {
    /// An empty memo over `tree` whose entries are trusted for `refresh` (`--tree-refresh`).
    pub fn new(tree: TargetTree, refresh: Duration) -> Arc<PathIndex> {
        Arc::new(PathIndex {
            tree,
            fingerprints: Fingerprinter::new(),
            refresh,
            memo: Mutex::new(HashMap::new()),
        })
    }

    /// The tree this index reads.
    pub fn tree(&self) -> &TargetTree {
        &self.tree
    }

    /// Whether `indexed` is still within its refresh time (what [`lookup`](Self::lookup)
    /// would return from the memo).
    pub fn is_current(&self, indexed: &Indexed) -> bool {
        indexed.checked.elapsed() < self.refresh
    }

    /// The generators under `path` and their fingerprint; `NotFound` for a path with
    /// no directory and no file.
    pub async fn lookup(self: &Arc<Self>, path: &TargetPath) -> Result<Arc<Indexed>, TreeError> {
        let hit = crate::sync::lock(&self.memo)
            .get(path)
            .filter(|e| self.is_current(e))
            .cloned();
        if let Some(hit) = hit {
            return Ok(hit);
        }
        let this = self.clone();
        let key = path.clone();
        tokio::task::spawn_blocking(move || this.scan(key))
            .await
            .map_err(|e| TreeError::Io(format!("tree scan task failed: {e}")))?
    }

    /// The same as [`lookup`](Self::lookup), always reading the tree now.
    pub async fn fresh(self: &Arc<Self>, path: &TargetPath) -> Result<Arc<Indexed>, TreeError> {
        let this = self.clone();
        let key = path.clone();
        tokio::task::spawn_blocking(move || this.scan(key))
            .await
            .map_err(|e| TreeError::Io(format!("tree scan task failed: {e}")))?
    }

    fn scan(&self, path: TargetPath) -> Result<Arc<Indexed>, TreeError> {
        let generators = match self.tree.generators(&path) {
            Ok(g) => g,
            Err(e) => {
                {
                    let mut m = crate::sync::lock(&self.memo);
                    m.remove(&path);
                }
                return Err(e);
            }
        };
        let fingerprint = self.fingerprints.fingerprint(&generators);
        let indexed = Arc::new(Indexed {
            generators,
            fingerprint,
            checked: Instant::now(),
        });
        {
            let mut m = crate::sync::lock(&self.memo);
            if m.len() >= MAX_PATHS {
                m.clear();
            }
            m.insert(path, indexed.clone());
        }
        Ok(indexed)
    }

    /// Every path a client can ask for: the root, each directory, and each generator
    /// file without its extension; sorted. For the admin page.
    pub async fn all_paths(self: &Arc<Self>) -> Result<Vec<TargetPath>, TreeError> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let generators = this.tree.generators(&TargetPath::root())?;
            let mut paths = std::collections::BTreeSet::new();
            paths.insert(String::new());
            for g in &generators {
                let stem = g.rel.rsplit_once('.').map_or(g.rel.as_str(), |(s, _)| s);
                let mut prefix = String::new();
                for segment in stem.split('/') {
                    if !prefix.is_empty() {
                        prefix.push('/');
                    }
                    prefix.push_str(segment);
                    paths.insert(prefix.clone());
                }
            }
            Ok(paths
                .into_iter()
                .filter_map(|p| TargetPath::parse(&p).ok())
                .collect())
        })
        .await
        .map_err(|e| TreeError::Io(format!("tree scan task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_found_paths_and_sees_changes_after_refresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.json"), "[]").unwrap();
        let index = PathIndex::new(
            TargetTree::open(dir.path()).unwrap(),
            Duration::from_millis(50),
        );
        let a = TargetPath::parse("a").unwrap();
        let first = index.lookup(&a).await.unwrap();
        assert_eq!(first.generators.len(), 1);
        std::fs::write(dir.path().join("a/y.json"), "[]").unwrap();
        // Within the refresh time the memo answers; after it, the new file is seen.
        assert_eq!(index.lookup(&a).await.unwrap().generators.len(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let later = index.lookup(&a).await.unwrap();
        assert_eq!(later.generators.len(), 2);
        assert_ne!(later.fingerprint, first.fingerprint);
        assert!(matches!(
            index.lookup(&TargetPath::parse("nope").unwrap()).await,
            Err(TreeError::NotFound)
        ));
        let all: Vec<String> = index
            .all_paths()
            .await
            .unwrap()
            .iter()
            .map(|p| p.as_slash_path())
            .collect();
        assert_eq!(all, ["", "a", "a/b", "a/b/x", "a/y"]);
    }
}
