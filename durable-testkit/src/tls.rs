//! Throwaway certificate authorities for TLS tests, made with `openssl`: a CA and a server
//! certificate it signed for `localhost` and `127.0.0.1` (webpki refuses a CA certificate
//! as the server's own).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use durable_core::conformance::require_service;

/// A CA and the server certificate it signed, as PEM files in a directory of their own.
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes a CA named `name` and a server certificate it signed. `None` (or a panic under
    /// `DURABLE_REQUIRE_SERVICES=1`) when `openssl` cannot be run.
    pub async fn make(name: &str) -> Option<Self> {
        let dir = tempfile::Builder::new().prefix("durable-ca-").tempdir().expect("a temporary directory");
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext.cnf");
        let subject = format!("/CN={name}");
        let steps: [&[&str]; 3] = [
            &["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject, "-keyout", "ca.key"],
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "server.csr",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
            ],
        ];
        let outputs = [&["-out", "ca.pem"][..], &[][..], &["-out", "cert.pem", "-extfile", "ext.cnf"][..]];
        for (step, output) in steps.into_iter().zip(outputs) {
            let made = tokio::process::Command::new("openssl")
                .args(step)
                .args(output)
                .current_dir(dir.path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if !require_service("openssl", matches!(made, Ok(status) if status.success())) {
                return None;
            }
        }
        Some(Self { dir })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA's certificate: what a client trusts.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// The server's certificate, signed by the CA.
    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// The server's private key.
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }
}
