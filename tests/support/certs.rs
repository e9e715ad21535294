//! Certificates for the TLS tests, made with the `openssl` command: a private CA and a
//! server certificate it signed for 127.0.0.1 and localhost, valid for two days.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    /// The CA certificate clients are told to trust.
    pub ca: PathBuf,
    /// The server's certificate and key.
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = |name: &str| dir.path().join(name);
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=httpsd test CA",
            "-keyout",
            s(&p("ca.key")),
            "-out",
            s(&p("ca.pem")),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            s(&p("key.pem")),
            "-out",
            s(&p("cert.csr")),
        ]);
        std::fs::write(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
            .expect("write ext.cnf");
        openssl(&[
            "x509",
            "-req",
            "-in",
            s(&p("cert.csr")),
            "-CA",
            s(&p("ca.pem")),
            "-CAkey",
            s(&p("ca.key")),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            s(&p("ext.cnf")),
            "-out",
            s(&p("cert.pem")),
        ]);
        Certs {
            ca: p("ca.pem"),
            cert: p("cert.pem"),
            key: p("key.pem"),
            _dir: dir,
        }
    }
}

/// A path as a `&str` (temp dirs are UTF-8 here).
pub fn s(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
