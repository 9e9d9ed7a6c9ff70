//! Built-in TLS (`[server] tls`): turns a PEM certificate chain and private key into the
//! rustls configuration the accept loop hands each connection to.
//!
//! It owns parsing and checking the pair (the chain parses, the key parses, the key belongs to
//! the first certificate), so `handoff check` and a reload refuse exactly what `serve` would.
//! Errors name the file, never the key's bytes. The crypto provider is aws-lc-rs, the one
//! reqwest and sqlx already build, named explicitly so that no process-wide default is needed.

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// Why a certificate or key cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate from {from} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate { from: String },
    #[error("the certificate from {from} is not valid PEM: {reason}")]
    BadCertificate { from: String, reason: String },
    /// The reason is rustls's, which never repeats key material.
    #[error("the key from {from} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {reason}")]
    BadKey { from: String, reason: String },
    #[error("the key from {key} does not go with the certificate from {cert}: {reason}")]
    Mismatch { cert: String, key: String, reason: String },
}

/// A server configuration for this certificate chain and key, offering HTTP/2 and HTTP/1.1.
/// `cert_from` and `key_from` say where each came from (`file PATH`), for the errors.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    cert_from: &str,
    key_from: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::BadCertificate { from: cert_from.to_string(), reason: err.to_string() })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { from: cert_from.to_string() });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|err| TlsError::BadKey { from: key_from.to_string(), reason: err.to_string() })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mismatch = |err: rustls::Error| TlsError::Mismatch {
        cert: cert_from.to_string(),
        key: key_from.to_string(),
        reason: err.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(mismatch)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(mismatch)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
