//! TLS for the AMQPS, MQTTS and secure WebSocket listeners (rustls through tokio-rustls,
//! TLS 1.2 and 1.3), client-certificate verification, certificate login, and reloading the
//! certificate and key without a restart (SIGHUP).
//!
//! `generate` makes a development CA, a server certificate and client certificates (the
//! `warren gen-certs` subcommand, and the tests' material).

pub mod generate;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Where the TLS material is and how clients are verified (RabbitMQ's `ssl_options.*`).
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM (`ssl_options.certfile`).
    pub certificate: PathBuf,
    /// The server's private key, PEM (`ssl_options.keyfile`).
    pub key: PathBuf,
    /// CA bundle that client certificates must chain to, PEM (`ssl_options.cacertfile`).
    pub ca: Option<PathBuf>,
    /// Ask clients for a certificate and verify it (`ssl_options.verify = verify_peer`).
    pub verify_peer: bool,
    /// Refuse clients that present no certificate (`ssl_options.fail_if_no_peer_cert`);
    /// implies `verify_peer`.
    pub fail_if_no_peer_certificate: bool,
}

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or held nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Client verification was asked for without a CA bundle.
    #[error("verifying client certificates needs a CA bundle (--tls-ca)")]
    NoCa,
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("{0}")]
    Rustls(String),
}

/// The TLS acceptor every TLS listener shares; [`TlsAcceptor::reload`] swaps in freshly
/// read material for new connections while open ones keep theirs.
pub struct TlsAcceptor {
    settings: TlsSettings,
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Reads the material and builds the acceptor.
    pub fn new(settings: TlsSettings) -> Result<TlsAcceptor, TlsError> {
        let config = server_config(&settings)?;
        Ok(TlsAcceptor {
            settings,
            config: RwLock::new(config),
        })
    }

    /// Re-reads certificate, key and CA; on error the current configuration stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.settings)?;
        *self.config.write() = config;
        Ok(())
    }

    /// Runs the server side of a TLS handshake.
    pub(crate) async fn accept(&self, socket: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        let config = self.config.read().clone();
        tokio_rustls::TlsAcceptor::from(config).accept(socket).await
    }
}

fn read_failure(path: &std::path::Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn certificates(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| read_failure(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| read_failure(path, error))?;
    if certificates.is_empty() {
        return Err(read_failure(path, "no certificate in the file"));
    }
    Ok(certificates)
}

fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&settings.certificate)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key)
        .map_err(|error| read_failure(&settings.key, error))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    let verify = settings.verify_peer || settings.fail_if_no_peer_certificate;
    let builder = if verify {
        let ca = settings.ca.as_ref().ok_or(TlsError::NoCa)?;
        let mut roots = RootCertStore::empty();
        for certificate in certificates(ca)? {
            roots
                .add(certificate)
                .map_err(|error| read_failure(ca, error))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if settings.fail_if_no_peer_certificate {
            verifier
        } else {
            verifier.allow_unauthenticated()
        };
        let verifier = verifier
            .build()
            .map_err(|error| TlsError::Rustls(error.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|error| TlsError::Rustls(error.to_string()))?;
    Ok(Arc::new(config))
}

/// The subject common name of the client's verified certificate, if it presented one.
/// (rustls only completes a handshake with a certificate its verifier accepted.)
pub(crate) fn certificate_name(connection: &ServerConnection) -> Option<String> {
    let certificate = connection.peer_certificates()?.first()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let name = parsed.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}
