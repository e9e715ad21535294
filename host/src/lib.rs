//! httpsd: a Prometheus HTTP service-discovery server whose target generators are
//! WebAssembly components running in a sandbox.
//!
//! The module tree is the architecture:
//!
//! - [`runtime`]: the wasmtime sandbox. One engine per process, compiled components
//!   cached by content hash (in memory and precompiled on disk), and per-run limits on
//!   fuel, wall clock, memory and output. A failed run becomes a typed
//!   [`runtime::GenError`] with a traceback.
//! - [`targets`]: the target directory. Turns a request path into the generators under
//!   it (no escape from the root), runs them concurrently, validates what they return
//!   against what Prometheus accepts, and merges it in a deterministic order.
//! - [`model`]: the target-group type shared by all of the above.
//! - [`query`]: query strings as ordered pairs, for requests and manifests alike.
//! - [`check`]: `httpsd check`, which runs every generator once and reports.
//! - [`cli`]: the command line.
//! - [`validate`]: what Prometheus accepts, checked before anything is cached.
//! - [`units`]: parsing of durations and byte sizes in flags and manifests.
#![warn(missing_docs)]

pub mod check;
pub mod cli;
pub mod clock;
pub mod metrics;
pub mod model;
pub mod query;
pub mod runtime;
pub mod server;
pub mod store;
pub mod sync;
pub mod targets;
pub mod units;
pub mod validate;
pub mod wire;
pub mod worker;
