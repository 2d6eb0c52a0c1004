//! Certificates for TLS tests. The crate's `LocalTls` makes a throwaway CA and a server
//! certificate only; these tests also need a client certificate (mutual TLS), a second CA
//! that signed nothing, and a server name other than the address (`redis.test`).

use std::process::Command;

use cachefill::__private::TlsFiles;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

/// A test CA (`ca.crt`), a server certificate for localhost / 127.0.0.1 / redis.test
/// (`server.crt`, `server.key`), a client certificate (`client.crt`, `client.key`), and a
/// second CA that signed nothing (`other-ca.crt`), as PEM files.
pub struct TestCerts {
    dir: tempfile::TempDir,
}

impl TestCerts {
    /// Generates the files into a new temporary directory.
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
        };
        let authority = ca("cachefill test CA");
        write("ca.crt", authority.pem());
        write("other-ca.crt", ca("another CA").pem());
        for (name, sans) in [
            ("server", vec!["localhost", "127.0.0.1", "redis.test"]),
            ("client", vec!["cachefill-client"]),
        ] {
            let key = KeyPair::generate().unwrap();
            let params =
                CertificateParams::new(sans.into_iter().map(String::from).collect::<Vec<_>>())
                    .unwrap();
            let cert = params.signed_by(&key, &authority).unwrap();
            write(&format!("{name}.crt"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        TestCerts { dir }
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// The server's files for the crate's launcher; `plain_port_too` for cluster nodes.
    pub fn files(&self, plain_port_too: bool) -> TlsFiles {
        TlsFiles {
            plain_port_too,
            ca_file: self.path("ca.crt").into(),
            cert_file: self.path("server.crt").into(),
            key_file: self.path("server.key").into(),
        }
    }

    /// redis-cli arguments for TLS with the test CA and the client certificate.
    pub fn cli_args(&self) -> Vec<String> {
        vec![
            "--tls".into(),
            "--cacert".into(),
            self.path("ca.crt"),
            "--cert".into(),
            self.path("client.crt"),
            "--key".into(),
            self.path("client.key"),
        ]
    }

    /// Runs redis-cli over TLS against `port` and returns its trimmed output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        tls_cli(&self.cli_args(), port, args)
    }
}

/// Runs `redis-cli` with `tls` arguments against `port` and returns its trimmed output.
pub fn tls_cli(tls: &[String], port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(tls)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli (Debian: apt-get install redis-tools)");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}
