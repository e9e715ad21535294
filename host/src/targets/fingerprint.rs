//! Generator fingerprints: what makes a cache entry stale when a generator changes.
//!
//! A worker records the fingerprint of the generators that made an entry; a server
//! compares it with the fingerprint of the files it sees now and refreshes on a
//! mismatch. It hashes content, not mtimes or inodes, so a server and a worker on
//! different machines with the same files agree. Hashes are remembered per file stamp,
//! so an unchanged file is never read twice.

use super::tree::GeneratorFile;
use crate::runtime::cache::Stamp;
use crate::runtime::manifest::Manifest;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Computes fingerprints, remembering each file's content hash by its stamp.
#[derive(Default)]
pub struct Fingerprinter {
    hashes: Mutex<HashMap<PathBuf, (Stamp, blake3::Hash)>>,
}

/// Most files remembered before the memo is cleared (a tree rebuilt many times over
/// would otherwise grow it forever).
const MAX_REMEMBERED: usize = 100_000;

impl Fingerprinter {
    /// An empty memo; share one per process so unchanged files are hashed once.
    pub fn new() -> Fingerprinter {
        Fingerprinter::default()
    }

    /// The fingerprint of `generators` (in their given order): 16 hex digits over each
    /// one's relative path, content and manifest content. Blocking file IO: call it off
    /// the async threads. An unreadable file contributes its error, so it still
    /// changes the fingerprint when it becomes readable.
    pub fn fingerprint(&self, generators: &[GeneratorFile]) -> String {
        let mut hasher = blake3::Hasher::new();
        for g in generators {
            hasher.update(g.rel.as_bytes());
            hasher.update(&[0]);
            self.hash_file(&g.abs, &mut hasher);
            if g.kind.runs_in_sandbox() {
                self.hash_file(&Manifest::path_for(&g.abs), &mut hasher);
            }
        }
        hasher.finalize().to_hex()[..16].to_string()
    }

    fn hash_file(&self, path: &Path, into: &mut blake3::Hasher) {
        let stamp = match Stamp::of(path) {
            Ok(Some(stamp)) => stamp,
            Ok(None) => {
                into.update(b"absent\0");
                return;
            }
            Err(e) => {
                into.update(format!("error {e}\0").as_bytes());
                return;
            }
        };
        let remembered = crate::sync::lock(&self.hashes)
            .get(path)
            .filter(|(s, _)| *s == stamp)
            .map(|(_, h)| *h);
        let hash = match remembered {
            Some(h) => h,
            None => match std::fs::read(path) {
                Ok(bytes) => {
                    let h = blake3::hash(&bytes);
                    {
                        let mut m = crate::sync::lock(&self.hashes);
                        if m.len() >= MAX_REMEMBERED {
                            m.clear();
                        }
                        m.insert(path.to_path_buf(), (stamp, h));
                    }
                    h
                }
                Err(e) => {
                    into.update(format!("error {e}\0").as_bytes());
                    return;
                }
            },
        };
        into.update(hash.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::{TargetPath, TargetTree};

    #[test]
    fn changes_with_content_and_manifest_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "[]").unwrap();
        std::fs::write(dir.path().join("g.wasm"), "x").unwrap();
        let tree = TargetTree::open(dir.path()).unwrap();
        let f = Fingerprinter::new();
        let gens = || tree.generators(&TargetPath::root()).unwrap();
        let first = f.fingerprint(&gens());
        assert_eq!(first.len(), 16);
        assert_eq!(f.fingerprint(&gens()), first);

        // Rewriting the same bytes (new mtime) keeps the fingerprint.
        std::fs::write(dir.path().join("a.json"), "[]").unwrap();
        assert_eq!(f.fingerprint(&gens()), first);

        std::fs::write(dir.path().join("g.toml"), "[limits]\n").unwrap();
        let with_manifest = f.fingerprint(&gens());
        assert_ne!(with_manifest, first);

        std::fs::write(dir.path().join("a.json"), "[ ]").unwrap();
        assert_ne!(f.fingerprint(&gens()), with_manifest);
    }
}
