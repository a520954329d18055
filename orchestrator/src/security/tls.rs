//! TLS settings from PEM files, for the API server (optionally requiring client certificates)
//! and for clients: the CLI towards the API, the invoker towards participants. The files are
//! read and parsed here, at start, so a wrong path or a key in the certificate's place is a
//! startup error naming the file rather than a failed handshake later. rustls does the TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// How long a TLS handshake may take before the server drops the connection, so a client that
/// opens connections and never finishes them cannot hold the server's resources.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PEM file that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {what} {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("the {what} {path} is not valid PEM: {reason}")]
    BadPem { what: &'static str, path: PathBuf, reason: String },
    #[error(
        "the private key {path} holds no PEM private key (-----BEGIN PRIVATE KEY-----, or an RSA or EC key): {reason}"
    )]
    NoKey { path: PathBuf, reason: String },
    #[error("{0}")]
    Incomplete(String),
    #[error("the TLS configuration was refused: {0}")]
    Refused(String),
}

/// Server-side TLS files: the server's certificate chain and key, and optionally the CA that
/// client certificates must be signed by (mutual TLS: clients without one are refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// From optional settings: none → no TLS; a certificate without its key (or the reverse),
    /// or a client CA without a certificate, is an error naming the settings to add.
    pub fn from_settings(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
        names: [&str; 3],
    ) -> Result<Option<ServerTlsFiles>, TlsError> {
        let [cert_name, key_name, ca_name] = names;
        match (cert, key) {
            (None, None) if client_ca.is_some() => Err(TlsError::Incomplete(format!(
                "{ca_name} requires TLS: set {cert_name} and {key_name} too (the server's certificate and key)"
            ))),
            (None, None) => Ok(None),
            (Some(_), None) => {
                Err(TlsError::Incomplete(format!("{cert_name} is set: set {key_name} (its private key) too")))
            }
            (None, Some(_)) => {
                Err(TlsError::Incomplete(format!("{key_name} is set: set {cert_name} (its certificate) too")))
            }
            (Some(cert), Some(key)) => Ok(Some(ServerTlsFiles {
                cert: cert.to_owned(),
                key: key.to_owned(),
                client_ca: client_ca.map(Path::to_owned),
            })),
        }
    }

    /// Read and check the files into a tonic server configuration.
    pub fn load(&self) -> Result<ServerTlsConfig, TlsError> {
        let mut config = ServerTlsConfig::new().identity(identity(&self.cert, &self.key)?).timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(certificates(ca, "client CA certificate")?);
        }
        Ok(config)
    }
}

/// Client-side TLS files: the CA that signed the server's certificate, and optionally this
/// client's certificate and key for servers that require one (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// From optional settings: none → no TLS files; a client certificate without its key, or
    /// either without a CA, is an error naming the settings to add.
    pub fn from_settings(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        names: [&str; 3],
    ) -> Result<Option<ClientTlsFiles>, TlsError> {
        let [ca_name, cert_name, key_name] = names;
        let identity = match (cert, key) {
            (None, None) => None,
            (Some(_), None) => return Err(TlsError::Incomplete(format!("{cert_name} is set: set {key_name} too"))),
            (None, Some(_)) => return Err(TlsError::Incomplete(format!("{key_name} is set: set {cert_name} too"))),
            (Some(c), Some(k)) => Some((c.to_owned(), k.to_owned())),
        };
        match ca {
            Some(ca) => Ok(Some(ClientTlsFiles { ca: ca.to_owned(), identity })),
            None if identity.is_some() => Err(TlsError::Incomplete(format!(
                "{cert_name} is only used over TLS: set {ca_name} (the CA that signed the server's certificate)"
            ))),
            None => Ok(None),
        }
    }

    /// Read and check the files into a tonic client configuration.
    pub fn load(&self) -> Result<ClientTlsConfig, TlsError> {
        let mut config = ClientTlsConfig::new().ca_certificate(certificates(&self.ca, "CA certificate")?);
        if let Some((cert, key)) = &self.identity {
            config = config.identity(identity(cert, key)?);
        }
        Ok(config)
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_owned(), source })
}

/// A file of one or more PEM certificates, checked.
fn certificates(path: &Path, what: &'static str) -> Result<Certificate, TlsError> {
    let pem = read(path, what)?;
    let parsed: Result<Vec<CertificateDer<'_>>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match parsed {
        Err(e) => Err(TlsError::BadPem { what, path: path.to_owned(), reason: e.to_string() }),
        Ok(certs) if certs.is_empty() => Err(TlsError::NoCertificate { what, path: path.to_owned() }),
        Ok(_) => Ok(Certificate::from_pem(pem)),
    }
}

/// A certificate chain and its private key, checked.
fn identity(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
    let cert_pem = certificates(cert, "certificate")?;
    let key_pem = read(key, "private key")?;
    PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| TlsError::NoKey { path: key.to_owned(), reason: e.to_string() })?;
    Ok(Identity::from_pem(cert_pem.into_inner(), key_pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sagaflow-tls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn settings_must_come_in_pairs() {
        let names = ["tls-cert", "tls-key", "tls-client-ca"];
        let p = Path::new("x.pem");
        assert_eq!(ServerTlsFiles::from_settings(None, None, None, names).expect("none"), None);
        let err = ServerTlsFiles::from_settings(Some(p), None, None, names).expect_err("no key");
        assert!(err.to_string().contains("set tls-key"), "{err}");
        let err = ServerTlsFiles::from_settings(None, None, Some(p), names).expect_err("no cert");
        assert!(err.to_string().contains("tls-client-ca requires TLS"), "{err}");
        let names = ["--ca-cert", "--client-cert", "--client-key"];
        assert_eq!(ClientTlsFiles::from_settings(None, None, None, names).expect("none"), None);
        let err = ClientTlsFiles::from_settings(None, Some(p), Some(p), names).expect_err("no ca");
        assert!(err.to_string().contains("set --ca-cert"), "{err}");
        let err = ClientTlsFiles::from_settings(Some(p), None, Some(p), names).expect_err("no cert");
        assert!(err.to_string().contains("set --client-cert"), "{err}");
    }

    /// A CA and a certificate it signed for localhost, as PEM files in `dir`.
    fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("signed");
        let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&paths.0, ca_cert.pem()).expect("write");
        std::fs::write(&paths.1, cert.pem()).expect("write");
        std::fs::write(&paths.2, key.serialize_pem()).expect("write");
        paths
    }

    #[test]
    fn good_files_load_and_a_swapped_key_is_named() {
        let dir = temp_dir();
        let (ca, cert, key) = pki(&dir);
        let server = ServerTlsFiles { cert: cert.clone(), key: key.clone(), client_ca: Some(ca.clone()) };
        server.load().expect("server TLS loads");
        let client = ClientTlsFiles { ca: ca.clone(), identity: Some((cert.clone(), key.clone())) };
        client.load().expect("client TLS loads");
        let swapped = ServerTlsFiles { cert: key.clone(), key: cert.clone(), client_ca: None };
        let err = swapped.load().expect_err("a key is not a certificate");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let no_key = ServerTlsFiles { cert: cert.clone(), key: ca, client_ca: None };
        let err = no_key.load().expect_err("a certificate is not a key");
        assert!(matches!(err, TlsError::NoKey { .. }) && err.to_string().contains("ca.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unusable_files_are_named() {
        let dir = temp_dir();
        let missing = dir.join("missing.pem");
        let files = ClientTlsFiles { ca: missing.clone(), identity: None };
        let err = files.load().expect_err("missing");
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        let err = ClientTlsFiles { ca: not_pem.clone(), identity: None }.load().expect_err("not pem");
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let server = ServerTlsFiles { cert: not_pem.clone(), key: not_pem, client_ca: None };
        assert!(server.load().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
