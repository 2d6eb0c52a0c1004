//! The throwaway TLS files of a launched TLS server: a CA and a server certificate for
//! 127.0.0.1 and localhost, in a temp folder removed with the server (or kept with it).

use super::errors::SetupError;
use std::path::PathBuf;

use super::cleanup;

/// The certificate files a launched TLS server is started with.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Keep a plaintext port beside the TLS one (cluster nodes, formed through it).
    pub plain_port_too: bool,
    /// The CA certificate clients must trust.
    pub ca_file: PathBuf,
    /// The server's certificate.
    pub cert_file: PathBuf,
    /// The server's private key.
    pub key_file: PathBuf,
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost, for a launched TLS
/// server; the files live as long as this value (or as the server, with `--keep`).
#[derive(Debug)]
pub(crate) struct LocalTls {
    dir: PathBuf,
    /// The CA certificate clients must trust.
    pub ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
    keep: bool,
}

impl LocalTls {
    /// Generates the certificates into a new directory under the system's temp directory.
    pub(crate) fn generate(target: &str) -> Result<LocalTls, SetupError> {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let fail = |e: &dyn std::fmt::Display| {
            format!("target \"{target}\": cannot make a throwaway TLS certificate: {e}")
        };
        let dir =
            std::env::temp_dir().join(format!("cachefill-tls-{}-{target}", std::process::id()));
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| SetupError::Tls(fail(&e)))?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cachefill throwaway CA");
        let ca = CertifiedIssuer::self_signed(
            ca_params,
            KeyPair::generate().map_err(|e| SetupError::Tls(fail(&e)))?,
        )
        .map_err(|e| SetupError::Tls(fail(&e)))?;
        let key = KeyPair::generate().map_err(|e| SetupError::Tls(fail(&e)))?;
        let server = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(|e| SetupError::Tls(fail(&e)))?
            .signed_by(&key, &ca)
            .map_err(|e| SetupError::Tls(fail(&e)))?;
        // The folder is made once the certificates exist, so a failure leaves nothing behind.
        std::fs::create_dir_all(&dir).map_err(|e| SetupError::Tls(fail(&e)))?;
        cleanup::track(None, &dir).map_err(|e| SetupError::Tls(fail(&e)))?;
        let tls = LocalTls {
            ca_file: dir.join("ca.crt"),
            cert_file: dir.join("server.crt"),
            key_file: dir.join("server.key"),
            dir,
            keep: false,
        };
        for (path, text) in [
            (&tls.ca_file, ca.pem()),
            (&tls.cert_file, server.pem()),
            (&tls.key_file, key.serialize_pem()),
        ] {
            std::fs::write(path, text).map_err(|e| SetupError::Tls(fail(&e)))?;
        }
        Ok(tls)
    }

    /// The files, for starting the server.
    pub(crate) fn files(&self) -> TlsFiles {
        TlsFiles {
            plain_port_too: false,
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        }
    }

    /// Leaves the files in place (for servers kept with `--keep`).
    pub(crate) fn keep(mut self) -> PathBuf {
        self.keep = true;
        cleanup::untrack(&self.dir);
        self.ca_file.clone()
    }
}

impl Drop for LocalTls {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
            cleanup::untrack(&self.dir);
        }
    }
}
