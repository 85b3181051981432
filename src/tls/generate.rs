//! Development certificates: a CA, a server certificate for `localhost`, `127.0.0.1` and
//! `::1`, and client certificates whose subject CN is a user name (for AMQP EXTERNAL and
//! MQTT certificate login). File names follow RabbitMQ's tls-gen: `ca_certificate.pem`,
//! `server_certificate.pem`, `server_key.pem`, `client_<name>_certificate.pem`,
//! `client_<name>_key.pem`. Not for production: the keys are written unencrypted.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// rcgen refused the parameters.
    #[error("generating a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// The paths of what [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate (trust it in clients; `--tls-ca` for client verification).
    pub ca_certificate: PathBuf,
    /// The server's certificate (`--tls-cert`).
    pub server_certificate: PathBuf,
    /// The server's key (`--tls-key`).
    pub server_key: PathBuf,
    /// One (certificate, key) pair per client name, in the order asked.
    pub clients: Vec<(PathBuf, PathBuf)>,
}

/// Writes a new CA, a server certificate and one client certificate per name into `dir`
/// (created if missing), all signed by the new CA.
pub fn generate(dir: &Path, client_names: &[&str]) -> Result<Generated, GenerateError> {
    std::fs::create_dir_all(dir).map_err(|source| GenerateError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "warren development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut server_params = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ])?;
    server_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate()?;
    let server = server_params.signed_by(&server_key, &ca, &ca_key)?;

    let write = |name: &str, contents: &str| -> Result<PathBuf, GenerateError> {
        let path = dir.join(name);
        write_file(&path, contents, name.ends_with("_key.pem")).map_err(|source| {
            GenerateError::Write {
                path: path.clone(),
                source,
            }
        })?;
        Ok(path)
    };
    let generated = Generated {
        ca_certificate: write("ca_certificate.pem", &ca.pem())?,
        server_certificate: write("server_certificate.pem", &server.pem())?,
        server_key: write("server_key.pem", &server_key.serialize_pem())?,
        clients: Vec::new(),
    };
    let mut clients = Vec::new();
    for name in client_names {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, *name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &ca, &ca_key)?;
        let file = sanitize(name);
        clients.push((
            write(
                &format!("client_{file}_certificate.pem"),
                &certificate.pem(),
            )?,
            write(&format!("client_{file}_key.pem"), &key.serialize_pem())?,
        ));
    }
    Ok(Generated {
        clients,
        ..generated
    })
}

/// Writes `contents` to `path`; a private key is readable by its owner only.
fn write_file(path: &Path, contents: &str, private: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    options.open(path)?.write_all(contents.as_bytes())
}

/// A user name made safe for a file name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
