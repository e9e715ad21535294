//! The target directory (DESIGN §5): which generators answer a request path, and how
//! their outputs become one answer.
//!
//! - [`path`]: a request path, checked before it touches the filesystem.
//! - [`tree`]: the directory walk: generators under a path, in a stable order, never
//!   outside the root.
//! - [`static_file`]: `.json` and `.yaml` generators.
//! - [`run`]: runs every generator under a path concurrently and merges all or nothing.
//! - [`fingerprint`]: what identifies the generators that made a cache entry.
//! - [`index`]: a short-lived memo of path → generators, so a cache hit stays off the
//!   filesystem.

pub mod fingerprint;
pub mod index;
pub mod path;
pub mod run;
pub mod static_file;
pub mod tree;

pub use fingerprint::Fingerprinter;
pub use index::{Indexed, PathIndex};
pub use path::{PathError, TargetPath};
pub use run::{GeneratorReport, PathOutcome, run_path};
pub use tree::{GeneratorFile, GeneratorKind, TargetTree, TreeError};
