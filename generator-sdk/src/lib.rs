//! Write an [httpsd](https://github.com/) target generator in Rust as one plain function.
//!
//! A generator turns the query parameters of a Prometheus `GET /targets/<path>?...`
//! request into target groups. With this crate that is an ordinary function:
//!
//! ```
//! use generator_sdk::{Params, Result, TargetGroup};
//!
//! fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
//!     let env = params.get_or("env", "dev");
//!     Ok(vec![
//!         TargetGroup::new()
//!             .targets(["10.0.0.1:9100", "10.0.0.2:9100"])
//!             .job("node")
//!             .label("env", env),
//!     ])
//! }
//!
//! generator_sdk::export_generator!(generate);
//! # fn main() {
//! #     let groups = generate(&Params::from_pairs([("env", "prod")])).unwrap();
//! #     assert_eq!(groups[0].labels(), &[("job".to_string(), "node".to_string()),
//! #                                       ("env".to_string(), "prod".to_string())]);
//! # }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (the crate is a
//! `cdylib`) and drop the `.wasm` into the targets directory. The README of this crate
//! walks the whole path.
//!
//! The host runs every call in a fresh sandbox with fuel, wall-clock and memory limits.
//! A panic becomes a `Trap` error with a traceback; returning `Err` becomes a
//! `GeneratorError` with your message. Both keep Prometheus on its previous targets.

// The wit-bindgen macro and the export macro refer to this crate by its public name,
// also from inside the crate itself.
extern crate self as generator_sdk;

use std::fmt;
use std::str::FromStr;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

/// Raw bindings for the `httpsd:generator` WIT world. Prefer the typed wrappers of this
/// crate; the bindings are public so the export macro can reach them.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "generator-with-check",
        pub_export_macro: true,
        export_macro_name: "__export_generator_world",
        default_bindings_module: "::generator_sdk::bindings",
        runtime_path: "::generator_sdk::__wit_bindgen::rt",
    });
}

mod query;

pub mod config;
pub mod http;
pub mod log;

/// The request's query parameters, in order, repeated keys kept.
///
/// `debug` and `reload` never show up here: they are httpsd's own switches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Builds parameters from pairs, mostly for tests of a generator function.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Params {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// Parses a query string such as `env=prod&zone=a&zone=b` (percent-decoding applied).
    pub fn from_query(query: &str) -> Self {
        Params {
            pairs: query::parse(query),
        }
    }

    /// The first value given for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The first value given for `key`, or `default`.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// Every value given for `key`, in request order (`?zone=a&zone=b`).
    pub fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value for `key`, or an error naming the missing parameter.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::msg(format!("missing required parameter `{key}`")))
    }

    /// Parses the value for `key`; `Ok(None)` when absent, an error naming the
    /// parameter when it does not parse.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => raw
                .parse()
                .map(Some)
                .map_err(|e| Error::msg(format!("parameter `{key}`: cannot parse {raw:?}: {e}"))),
        }
    }

    /// All pairs in request order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when the request had no parameters.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// One Prometheus target group, built fluently.
///
/// ```
/// use generator_sdk::TargetGroup;
///
/// let group = TargetGroup::new()
///     .target("db-1.example.net:9187")
///     .job("postgres")
///     .metrics_path("/probe")
///     .label("team", "storage");
/// assert_eq!(group.target_list(), ["db-1.example.net:9187"]);
/// ```
///
/// Label names must match `[a-zA-Z_][a-zA-Z0-9_]*` (Prometheus 2.x); the host rejects
/// the whole answer otherwise, naming the group. Setting a label twice keeps the last
/// value, as a JSON object would.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetGroup {
    targets: Vec<String>,
    labels: Vec<(String, String)>,
}

impl TargetGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one target (`host:port`).
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.targets.push(target.into());
        self
    }

    /// Adds several targets.
    pub fn targets<T: Into<String>>(mut self, targets: impl IntoIterator<Item = T>) -> Self {
        self.targets.extend(targets.into_iter().map(Into::into));
        self
    }

    /// Sets a label, replacing an earlier value of the same name.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let (name, value) = (name.into(), value.into());
        match self.labels.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.labels.push((name, value)),
        }
        self
    }

    /// Sets the `job` label, which Prometheus uses as the job name of these targets.
    pub fn job(self, job: impl Into<String>) -> Self {
        self.label("job", job)
    }

    /// Sets `__metrics_path__` (default `/metrics`).
    pub fn metrics_path(self, path: impl Into<String>) -> Self {
        self.label("__metrics_path__", path)
    }

    /// Sets `__scheme__` (`http` or `https`).
    pub fn scheme(self, scheme: impl Into<String>) -> Self {
        self.label("__scheme__", scheme)
    }

    /// The targets added so far.
    pub fn target_list(&self) -> &[String] {
        &self.targets
    }

    /// The labels set so far, in the order they were first set.
    pub fn labels(&self) -> &[(String, String)] {
        &self.labels
    }
}

/// A generator's own failure. httpsd caches it as `GeneratorError` with this message,
/// and Prometheus keeps its previous targets.
///
/// Any `std::error::Error` converts with `?`; for a message use [`Error::msg`] or
/// [`bail!`].
pub struct Error {
    message: String,
}

impl Error {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Error {
            message: message.to_string(),
        }
    }

    /// The message httpsd will show.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(error: E) -> Self {
        // Keep the whole cause chain: "reading inventory: connection refused".
        let mut message = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error { message }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.message, f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `Result` with the SDK's [`Error`] as default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns early with an [`Error`] built from a format string.
///
/// ```
/// use generator_sdk::{bail, Result};
///
/// fn pick(zone: &str) -> Result<u16> {
///     match zone {
///         "a" => Ok(1),
///         other => bail!("unknown zone {other:?}"),
///     }
/// }
/// assert_eq!(pick("b").unwrap_err().message(), "unknown zone \"b\"");
/// ```
#[macro_export]
macro_rules! bail {
    ($($arg:tt)*) => {
        return ::core::result::Result::Err($crate::Error::msg(::std::format!($($arg)*)))
    };
}

/// Exports a function `fn(&Params) -> Result<Vec<TargetGroup>>` as the component's
/// `generate`.
///
/// Optionally give the parameter sets `httpsd check` should call it with, as query
/// strings; without them `check` runs it once with no parameters:
///
/// ```
/// # use generator_sdk::{Params, Result, TargetGroup};
/// fn generate(params: &Params) -> Result<Vec<TargetGroup>> {
///     let region = params.require("region")?;
///     Ok(vec![TargetGroup::new().target(format!("api.{region}.example.net:443"))])
/// }
///
/// generator_sdk::export_generator!(generate, check = ["region=eu-west-1", "region=us-east-1"]);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_generator {
    ($generate:path $(, check = [$($query:expr),* $(,)?])? $(,)?) => {
        #[doc(hidden)]
        struct __HttpsdGenerator;

        impl $crate::bindings::Guest for __HttpsdGenerator {
            fn generate(
                params: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
            ) -> ::core::result::Result<
                ::std::vec::Vec<$crate::bindings::httpsd::generator::types::TargetGroup>,
                $crate::bindings::httpsd::generator::types::Error,
            > {
                $crate::__private::call(params, $generate)
            }

            fn check_params()
                -> ::std::vec::Vec<::std::vec::Vec<(::std::string::String, ::std::string::String)>>
            {
                $crate::__private::check_params(&[$($($query),*)?])
            }
        }

        $crate::bindings::__export_generator_world!(__HttpsdGenerator);
    };
}

/// Glue the export macro expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use crate::bindings::httpsd::generator::types as wit;

    pub fn call(
        params: Vec<(String, String)>,
        generate: impl FnOnce(&Params) -> Result<Vec<TargetGroup>>,
    ) -> std::result::Result<Vec<wit::TargetGroup>, wit::Error> {
        match generate(&Params { pairs: params }) {
            Ok(groups) => Ok(groups
                .into_iter()
                .map(|g| wit::TargetGroup {
                    targets: g.targets,
                    labels: g.labels,
                })
                .collect()),
            Err(e) => Err(wit::Error { message: e.message }),
        }
    }

    pub fn check_params(queries: &[&str]) -> Vec<Vec<(String, String)>> {
        queries.iter().map(|q| query::parse(q)).collect()
    }
}
