//! TLS for both planes, built once per target from the plan's `[tls]` table, so the data
//! connections and the control connection can never disagree on what they trust.

use super::errors::SetupError;
use super::errors::TargetError;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::plan::TlsSpec;

/// A target's TLS client: the connector and the name to verify.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read_pem_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| SetupError::Tls(format!("cannot read {what} {}: {e}", path.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| SetupError::Tls(format!("{what} {} is not valid PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(SetupError::Tls(format!(
            "{what} {} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

impl Tls {
    /// Builds the TLS client of a target. Errors name the file and say what is wrong with it.
    pub(crate) fn new(spec: &TlsSpec) -> Result<Tls, SetupError> {
        // AES-128-GCM first: as safe as the other suites, and the cheapest for a server with
        // AES instructions to decrypt, which is what bounds a fill over TLS.
        // ring, deprecated by rustls 0.23.48 for lacking post-quantum key exchange: kept on
        // purpose (it builds without cmake or a C toolchain beyond cc, and a cache filled
        // with synthetic data needs no protection against later quantum decryption).
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|suite| {
            !matches!(
                suite.suite(),
                rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                    | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            )
        });
        let provider = Arc::new(provider);
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| SetupError::Tls(format!("TLS setup failed: {e}")))?;
        let builder = if spec.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        } else {
            let mut roots = RootCertStore::empty();
            match &spec.ca_file {
                Some(path) => {
                    for cert in read_pem_certs(path, "ca_file")? {
                        roots.add(cert).map_err(|e| {
                            SetupError::Tls(format!("ca_file {}: {e}", path.display()))
                        })?;
                    }
                }
                None => {
                    for cert in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(cert);
                    }
                    if roots.is_empty() {
                        return Err(SetupError::Tls(
                            "no system CA certificates were found: set ca_file".into(),
                        ));
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match &spec.client_auth {
            Some((cert, key)) => {
                let certs = read_pem_certs(cert, "cert_file")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    SetupError::Tls({
                        format!(
                            "key_file {} holds no usable private key: {e}",
                            key.display()
                        )
                    })
                })?;
                builder.with_client_auth_cert(certs, key).map_err(|e| {
                    SetupError::Tls(format!("cert_file and key_file do not go together: {e}"))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: spec.server_name.clone(),
        })
    }

    /// Runs the TLS handshake on a connected socket.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: TcpStream,
    ) -> Result<TlsStream<TcpStream>, TargetError> {
        let name = self.server_name.as_deref().unwrap_or(host);
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| TargetError(format!("`{name}` is not a valid TLS server name")))?;
        self.connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| TargetError(describe_handshake_error(&e, name)))
    }
}

fn describe_handshake_error(error: &io::Error, name: &str) -> String {
    let text = error.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("TLS: the server's certificate is not trusted ({text}); check ca_file")
    } else if text.contains("NotValidForName") || text.contains("not valid for name") {
        format!(
            "TLS: the server's certificate is not valid for the name `{name}` ({text}); set server_name to a name it holds"
        )
    } else if text.contains("CertificateRequired") || text.contains("certificate required") {
        format!(
            "TLS: the server requires a client certificate ({text}); set cert_file and key_file"
        )
    } else {
        format!("TLS handshake failed: {text}")
    }
}

/// Accepts any certificate: `insecure = true`.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connection to a server: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Stream {
    /// The socket under the stream (for socket options).
    pub(crate) fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}
