//! Throw-away TLS material for tests: a CA and a certificate it signed for
//! `localhost`, `127.0.0.1` and `::1`. Clients trust the CA's PEM, exactly as
//! a production deployment trusts its own CA file.

use std::io;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Names the generated certificate is valid for.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A CA and a server certificate signed by it.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
    server_pem: String,
    key_pem: String,
}

/// A certificate and its private key, PEM-encoded.
pub struct Identity {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

impl TestPki {
    /// Generates fresh keys and certificates.
    pub fn generate() -> Result<Self, rcgen::Error> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "siem-agent test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let server_key = KeyPair::generate()?;
        let names: Vec<String> = SERVER_NAMES.iter().map(|n| (*n).to_owned()).collect();
        let mut server_params = CertificateParams::new(names)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_cert = server_params.signed_by(&server_key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            chain: vec![server_cert.der().clone(), ca.der().clone()],
            key_der: server_key.serialize_der(),
            server_pem: server_cert.pem(),
            key_pem: server_key.serialize_pem(),
            ca,
        })
    }

    /// The server certificate and key, for a server that reads PEM files
    /// (a syslog daemon in the tests).
    pub fn server_identity(&self) -> Identity {
        Identity {
            cert_pem: self.server_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// A client certificate for mutual TLS, signed by the same CA.
    pub fn client_identity(&self, name: &str) -> Result<Identity, rcgen::Error> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![name.to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.ca)?;
        Ok(Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate clients should trust, PEM-encoded.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A rustls server configuration (TLS 1.2 and 1.3) presenting the
    /// certificate.
    pub fn server_config(&self) -> io::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), key)
            .map_err(io::Error::other)?;
        Ok(Arc::new(config))
    }
}
