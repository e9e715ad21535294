//! Optional HTTP authentication: basic and bearer, separately for what Prometheus
//! polls and for what operators use.
//!
//! The credentials live in one TOML file (`--auth-file`), readable only by httpsd:
//!
//! ```toml
//! [targets]                          # GET /targets/... : what Prometheus polls
//! bearer = ["9f86d081884c7d65"]      # Prometheus: authorization: { credentials: ... }
//! basic = { prometheus = "s3cret" }  # Prometheus: basic_auth: { username, password }
//!
//! [admin]                            # the admin page, ?debug=true (and ?reload=true)
//! basic = { ops = "another-secret" }
//!
//! [reload]                           # ?reload=true; without it, [admin] applies
//! bearer = ["reload-token"]
//!
//! [metrics]                          # /metrics
//! bearer = ["scrape-token"]
//! ```
//!
//! A missing table leaves that area open, except that `[admin]` falls back to
//! `[targets]` and `[reload]` to `[admin]`: debug and reload show and do more than a
//! plain answer, so they are never more open than it. `/healthz` and `/readyz` stay
//! open for load balancers. Without `--auth-file`, everything is open, as before.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use std::collections::BTreeMap;
use std::path::Path;

/// Who may do one kind of request.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    bearer: Vec<String>,
    /// User name to password.
    #[serde(default)]
    basic: BTreeMap<String, String>,
}

/// The areas a request can fall in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    /// `GET /targets/...`: what Prometheus polls.
    Targets,
    /// The admin page and `?debug=true`.
    Admin,
    /// `?reload=true`.
    Reload,
    /// `/metrics`.
    Metrics,
}

/// Who may use what: the `--auth-file`, one [`Rule`] per area (a missing one falls
/// back as the module documentation says). The default leaves everything open.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    targets: Option<Rule>,
    admin: Option<Rule>,
    reload: Option<Rule>,
    metrics: Option<Rule>,
}

/// Never prints a credential.
impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let areas: Vec<&str> = self
            .rules()
            .iter()
            .filter(|(_, r)| r.is_some())
            .map(|(n, _)| *n)
            .collect();
        write!(f, "Auth {{ protected: {areas:?} }}")
    }
}

impl Auth {
    /// Reads and checks an auth file; the error names the file and the problem, never
    /// a credential.
    pub fn load(path: &Path) -> Result<Auth, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path)
                && meta.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    file = %path.display(),
                    "the auth file can be read by other users; chmod 600 it"
                );
            }
        }
        let auth: Auth = toml::from_str(&text)
            .map_err(|e| format!("auth file {}: {}", path.display(), e.message()))?;
        for (name, rule) in auth.rules() {
            if let Some(rule) = rule {
                if rule.bearer.is_empty() && rule.basic.is_empty() {
                    return Err(format!(
                        "auth file {}: [{name}] grants nobody (give it bearer tokens or basic users)",
                        path.display()
                    ));
                }
                if rule.bearer.iter().any(|t| t.trim().is_empty())
                    || rule.basic.iter().any(|(u, p)| u.is_empty() || p.is_empty())
                {
                    return Err(format!(
                        "auth file {}: [{name}] has an empty token, user or password",
                        path.display()
                    ));
                }
            }
        }
        Ok(auth)
    }

    fn rules(&self) -> [(&'static str, &Option<Rule>); 4] {
        [
            ("targets", &self.targets),
            ("admin", &self.admin),
            ("reload", &self.reload),
            ("metrics", &self.metrics),
        ]
    }

    fn rule(&self, area: Area) -> Option<&Rule> {
        match area {
            Area::Targets => self.targets.as_ref(),
            Area::Admin => self.admin.as_ref().or(self.targets.as_ref()),
            Area::Reload => self
                .reload
                .as_ref()
                .or(self.admin.as_ref())
                .or(self.targets.as_ref()),
            Area::Metrics => self.metrics.as_ref(),
        }
    }

    /// `Ok` when a request with `headers` may use `area`, else the 401 to answer.
    pub fn check(&self, area: Area, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let Some(rule) = self.rule(area) else {
            return Ok(());
        };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given.is_some_and(|g| rule.admits(g)) {
            return Ok(());
        }
        Err(Box::new(unauthorized(rule, area, given.is_some())))
    }
}

impl Rule {
    fn admits(&self, authorization: &str) -> bool {
        let authorization = authorization.trim();
        let (scheme, value) = authorization.split_once(' ').unwrap_or(("", authorization));
        let value = value.trim();
        // Every token is compared (in constant time each), so the time taken does not
        // say which one came close.
        let token_matches = |v: &str| {
            self.bearer
                .iter()
                .fold(false, |ok, t| ok | same(t.as_bytes(), v.as_bytes()))
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            return token_matches(value);
        }
        if scheme.is_empty() {
            // Prometheus 2.42 (Debian 12's) sends `authorization: {credentials: ...}`
            // of an http_sd_config as the bare token, without the `Bearer` its docs
            // promise; a token alone is taken as a bearer token.
            return token_matches(value);
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(value) else {
                return false;
            };
            let Some((user, password)) = std::str::from_utf8(&decoded)
                .ok()
                .and_then(|s| s.split_once(':'))
            else {
                return false;
            };
            return self.basic.iter().fold(false, |ok, (u, p)| {
                ok | (same(u.as_bytes(), user.as_bytes()) & same(p.as_bytes(), password.as_bytes()))
            });
        }
        false
    }
}

/// Constant-time equality for equal lengths (the length itself is not hidden).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn unauthorized(rule: &Rule, area: Area, had_credentials: bool) -> Response {
    let message = if had_credentials {
        "the credentials given are not accepted here"
    } else {
        "this endpoint needs credentials (an Authorization header)"
    };
    let mut response = super::json(
        StatusCode::UNAUTHORIZED,
        &serde_json::json!({
            "error": "unauthorized",
            "message": message,
            "area": format!("{area:?}").to_lowercase(),
        }),
    );
    // A browser asks for a user and password only when told basic auth is an option.
    let challenge = if rule.basic.is_empty() {
        "Bearer realm=\"httpsd\""
    } else {
        "Basic realm=\"httpsd\", charset=\"UTF-8\""
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(text: &str) -> Auth {
        toml::from_str(text).unwrap()
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn areas_fall_back_as_documented() {
        let a = auth("[targets]\nbearer = [\"t\"]\n[metrics]\nbasic = { m = \"p\" }\n");
        assert!(a.check(Area::Targets, &headers("Bearer t")).is_ok());
        assert!(a.check(Area::Targets, &headers("Bearer x")).is_err());
        assert!(
            a.check(Area::Targets, &headers("t")).is_ok(),
            "a bare token"
        );
        assert!(a.check(Area::Targets, &headers("Token t")).is_err());
        assert!(a.check(Area::Targets, &HeaderMap::new()).is_err());
        // No [admin]: debug and reload take the targets credentials.
        assert!(a.check(Area::Admin, &headers("Bearer t")).is_ok());
        assert!(a.check(Area::Reload, &headers("bearer t")).is_ok());
        assert!(a.check(Area::Metrics, &headers(&basic("m", "p"))).is_ok());
        assert!(a.check(Area::Metrics, &headers(&basic("m", "q"))).is_err());

        let b = auth("[admin]\nbasic = { ops = \"pw\" }\n[reload]\nbearer = [\"r\"]\n");
        assert!(
            b.check(Area::Targets, &HeaderMap::new()).is_ok(),
            "targets open"
        );
        assert!(b.check(Area::Admin, &headers(&basic("ops", "pw"))).is_ok());
        assert!(
            b.check(Area::Reload, &headers(&basic("ops", "pw")))
                .is_err()
        );
        assert!(b.check(Area::Reload, &headers("Bearer r")).is_ok());
        assert!(
            Auth::default()
                .check(Area::Admin, &HeaderMap::new())
                .is_ok()
        );
    }

    #[test]
    fn a_refusal_is_json_with_a_challenge_and_no_secret_in_debug() {
        let a = auth("[targets]\nbasic = { u = \"hunter2\" }\n");
        let r = a.check(Area::Targets, &headers("Basic !!!")).unwrap_err();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
        assert!(!format!("{a:?}").contains("hunter2"));
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("auth.toml");
        for (text, want) in [
            ("[targets]\n", "grants nobody"),
            ("[targets]\nbearer = [\"\"]\n", "empty token"),
            ("[target]\nbearer = [\"x\"]\n", "target"),
        ] {
            std::fs::write(&p, text).unwrap();
            let err = Auth::load(&p).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
