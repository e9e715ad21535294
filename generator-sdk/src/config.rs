//! Configuration values and secrets from the generator's manifest.
//!
//! A generator `fleet.wasm` may have a `fleet.toml` next to it; its `[config]` table is
//! what this module reads. Values are strings; [`parse`] converts them.
//!
//! ```toml
//! [config]
//! racks = "40"
//! domain = "dc1.example.net"
//! ```
//!
//! ```no_run
//! use generator_sdk::{config, Result};
//!
//! fn racks() -> Result<u32> {
//!     Ok(config::parse("racks")?.unwrap_or(1))
//! }
//! ```

use crate::bindings::httpsd::generator::config as wit;
use crate::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The value of `key`, if the manifest sets it.
pub fn get(key: &str) -> Option<String> {
    wit::get(key)
}

/// The value of `key`, or an error naming the missing key.
pub fn require(key: &str) -> Result<String> {
    get(key).ok_or_else(|| Error::msg(format!("missing config value `{key}` in the manifest")))
}

/// Parses the value of `key`; `Ok(None)` when absent, an error naming the key when it
/// does not parse.
pub fn parse<T>(key: &str) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match get(key) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|e| Error::msg(format!("config `{key}`: cannot parse {raw:?}: {e}"))),
    }
}

/// Every key and value, sorted by key. Secrets are not among them.
pub fn all() -> Vec<(String, String)> {
    wit::all()
}

/// The secret `key` from the manifest's `[secrets]` table, or an error naming it.
///
/// ```toml
/// [secrets]
/// token = { env = "INVENTORY_TOKEN" }      # or { file = "/run/secrets/token" }, or "inline"
/// ```
///
/// httpsd replaces the value with `[secret]` wherever the run's words leave the
/// sandbox (its logs, its error message, `?debug=true`), so logging it is harmless,
/// but putting it in a target or label is not: those are served as they are.
pub fn secret(key: &str) -> Result<String> {
    wit::secret(key).ok_or_else(|| Error::msg(format!("missing secret `{key}` in the manifest")))
}
