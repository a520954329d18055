//! Throwaway certificate authorities for TLS tests, made at test time: a CA, and server and
//! client certificates it signs, written as PEM files into a folder (ECDSA P-256 keys).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A certificate authority whose files live in `dir`.
#[derive(Debug)]
pub struct TestCa {
    name: String,
    dir: PathBuf,
    /// The CA's certificate (PEM): what clients trust, what servers check client certificates against.
    pub cert: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    /// A new CA named `name`, its certificate written to `dir/{name}-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> anyhow::Result<TestCa> {
        std::fs::create_dir_all(dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let certificate = params.self_signed(&key)?;
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, certificate.pem()).with_context(|| format!("writing {}", cert.display()))?;
        Ok(TestCa { name: name.to_owned(), dir: dir.to_owned(), cert, issuer: Issuer::new(params, key) })
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.leaf(name, vec!["localhost".into(), "127.0.0.1".into()], ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `name`.
    pub fn client(&self, name: &str) -> anyhow::Result<CertFiles> {
        self.leaf(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, name: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose) -> anyhow::Result<CertFiles> {
        let mut params = CertificateParams::new(sans)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let certificate = params.signed_by(&key, &self.issuer)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{}-{name}.pem", self.name)),
            key: self.dir.join(format!("{}-{name}.key", self.name)),
        };
        std::fs::write(&files.cert, certificate.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
