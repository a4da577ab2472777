//! The TLS identity devcluster also serves HTTPS with, made fresh at every start.
//!
//! client-go (kubectl, helm) sends credentials only over TLS (`isConfigTransportTLS`), so the
//! kubeconfig points at `https://` with this CA; kube-rs clients from [`crate::DevCluster`]
//! keep using plain HTTP on the same port.

use std::net::IpAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// The certificate authority could not be made or the server configured.
#[derive(Debug, thiserror::Error)]
#[error("making devcluster's TLS certificate: {0}")]
pub struct TlsError(String);

fn tls_error(err: impl std::fmt::Display) -> TlsError {
    TlsError(err.to_string())
}

/// A CA (for kubeconfigs) and a server certificate it signed for `localhost` and the listen IP.
pub(crate) struct TlsIdentity {
    /// PEM of the CA certificate, for `certificate-authority-data`.
    pub ca_pem: String,
    pub acceptor: TlsAcceptor,
}

impl TlsIdentity {
    /// A new CA and a server certificate for `localhost`, `127.0.0.1` and `ip`.
    pub(crate) fn generate(ip: IpAddr) -> Result<Self, TlsError> {
        let ca_key = KeyPair::generate().map_err(tls_error)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(tls_error)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "devcluster-ca");
        let ca = ca_params.self_signed(&ca_key).map_err(tls_error)?;

        let server_key = KeyPair::generate().map_err(tls_error)?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string()]).map_err(tls_error)?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "devcluster");
        let loopback = IpAddr::from([127, 0, 0, 1]);
        for address in [loopback, ip] {
            let san = SanType::IpAddress(address);
            if !server_params.subject_alt_names.contains(&san) {
                server_params.subject_alt_names.push(san);
            }
        }
        let server = server_params
            .signed_by(&server_key, &ca, &ca_key)
            .map_err(tls_error)?;

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error)?
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    CertificateDer::from(server.der().to_vec()),
                    CertificateDer::from(ca.der().to_vec()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
            )
            .map_err(tls_error)?;
        // why: the server speaks HTTP/1.1 only; without this client-go might try h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            ca_pem: ca.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Whether the first byte a client sent opens a TLS handshake (a handshake record).
pub(crate) fn is_tls_handshake(first_byte: u8) -> bool {
    first_byte == 0x16
}
