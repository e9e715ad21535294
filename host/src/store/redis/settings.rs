//! How to reach Redis: the URL, timeouts, pool size and TLS files an operator gives, and
//! the [`Client`] built from them. Kept apart from the pool so that everything about a
//! wrong setting (an unreadable certificate, a plain URL with TLS files) is found here,
//! at start-up, instead of as a stream of connection failures later.

use crate::store::DEFAULT_MAX_VALUE_BYTES;
use std::path::PathBuf;
use std::time::Duration;

/// How to reach Redis, and how long to wait for it.
#[derive(Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS), with an optional `user:password@` for Redis
    /// AUTH or an ACL user.
    pub url: String,
    /// Connect and response timeout of ordinary commands, and how long a caller waits
    /// for a pooled connection.
    pub timeout: Duration,
    /// Connections shared by all commands (each multiplexes many concurrent commands;
    /// fewer connections mean more pipelining).
    pub pool_size: u32,
    /// Certificates for `rediss://`; without them the system's trusted roots are used.
    pub tls: RedisTls,
    /// The largest value written (a cache entry, an error entry, a run report): a
    /// larger one is refused here, before it is sent. Past Redis's own
    /// `proto-max-bulk-len` Redis would drop the connection, and with it every command
    /// multiplexed on it.
    pub max_value_bytes: u64,
}

/// PEM files for a `rediss://` connection.
#[derive(Debug, Clone, Default)]
pub struct RedisTls {
    /// CA certificates to trust instead of the system's roots (a private CA).
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for a Redis that asks for them (`tls-auth-clients`).
    pub client_cert: Option<PathBuf>,
    /// The private key of `client_cert`; the two are given together or not at all.
    pub client_key: Option<PathBuf>,
}

/// The URL with its password replaced, for logs and errors: a URL is printed in many
/// places (start-up, `/readyz`, errors), and the password must be in none of them.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let redacted = match rest[..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:[secret]{}", &rest[at..])
        }
        None => url.to_string(),
    };
    // The sentinels' own password (redis+sentinel://...?sentinel_password=...).
    match redacted.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if k.contains("password") => format!("{k}=[secret]"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => redacted,
    }
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .field("tls", &self.tls)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish()
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        RedisSettings {
            url: "redis://localhost:6379/0".into(),
            timeout: Duration::from_secs(2),
            pool_size: 1,
            tls: RedisTls::default(),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{RedisSettings, redact_url};

    #[test]
    fn passwords_stay_out_of_printed_urls() {
        assert_eq!(
            redact_url("rediss://httpsd:s3cret@redis:6380/0"),
            "rediss://httpsd:[secret]@redis:6380/0"
        );
        assert_eq!(
            redact_url("redis://:s3cret@localhost/0"),
            "redis://:[secret]@localhost/0"
        );
        assert_eq!(
            redact_url("redis://localhost:6379/0"),
            "redis://localhost:6379/0"
        );
        assert_eq!(redact_url("redis://a:b@c@h/0"), "redis://a:[secret]@h/0");
        assert_eq!(
            redact_url("redis+sentinel://u:pw@s1,s2:26380/m/0?sentinel_password=sp"),
            "redis+sentinel://u:[secret]@s1,s2:26380/m/0?sentinel_password=[secret]"
        );
        let settings = RedisSettings {
            url: "redis://u:pw-77@h/0".into(),
            ..Default::default()
        };
        assert!(!format!("{settings:?}").contains("pw-77"));
    }
}
