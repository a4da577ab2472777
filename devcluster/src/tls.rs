//! HTTPS for the API: a certificate authority made at start and a serving certificate for the
//! loopback addresses, as kubeadm makes them for a real cluster.
//!
//! kubectl and helm (client-go) send credentials only over TLS, so an API server reached over
//! plain HTTP would see every one of their requests as `system:anonymous`. A connection whose
//! first byte is not a TLS handshake is still served as plain HTTP (the `/_devcluster/` fault
//! endpoints, simple probes); it carries whatever credentials its client sends.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The first byte of a TLS record carrying a handshake.
pub const TLS_HANDSHAKE: u8 = 0x16;

/// Why the serving certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("configuring TLS: {0}")]
    Configure(#[from] tokio_rustls::rustls::Error),
}

/// The cluster's certificate authority and the acceptor serving with a certificate it signed.
#[derive(Clone)]
pub struct Tls {
    /// The CA certificate, PEM (a kubeconfig's `certificate-authority-data`).
    pub ca_pem: String,
    /// The CA certificate, DER (a kube-rs `Config::root_cert`).
    pub ca_der: Vec<u8>,
    pub acceptor: TlsAcceptor,
}

impl Tls {
    /// A new CA and a serving certificate for `localhost`, `127.0.0.1`, `::1`, `listen` and the
    /// `kubernetes.default.svc` names.
    pub fn generate(listen: IpAddr) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = name("devcluster-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key)?;

        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec![
            "localhost".to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ])?;
        serving.distinguished_name = name("kube-apiserver");
        let mut addresses = vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        ];
        if !listen.is_unspecified() && !addresses.contains(&listen) {
            addresses.push(listen);
        }
        serving
            .subject_alt_names
            .extend(addresses.into_iter().map(SanType::IpAddress));
        let serving_cert = serving.signed_by(&serving_key, &ca, &ca_key)?;

        let chain = vec![
            CertificateDer::from(serving_cert.der().to_vec()),
            CertificateDer::from(ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(serving_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
