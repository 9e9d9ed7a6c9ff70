//! `[server] tls = { cert = { file = … }, key = { file = … } }`: built-in HTTPS.
//!
//! Both are references like secrets (the key is one); reading them is checking them: the
//! chain and key must parse and belong together (`http::tls`), so `handoff check` and a reload
//! refuse a broken pair with the file's line, and the server never starts half-configured.
//! A config loaded without its secrets reads neither file and holds no server configuration.

use super::{Problems, SecretRef, Secrets};
use secrecy::ExposeSecret;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// The table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTls {
    /// The certificate chain, PEM, server certificate first: `{ file = "PATH" }`.
    cert: Spanned<SecretRef>,
    /// The certificate's private key, PEM: `{ file = "PATH" }` (a secret: never printed).
    key: Spanned<SecretRef>,
}

/// Built-in TLS, checked.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Where the chain is read from (`file PATH`), for messages.
    pub cert_from: String,
    /// Where the key is read from, for messages.
    pub key_from: String,
    /// What each connection is served with; `None` when the config was loaded without secrets.
    pub server: Option<Arc<rustls::ServerConfig>>,
}

pub(super) fn build_tls(problems: &mut Problems<'_>, base: &Path, file: Option<&Spanned<FileTls>>) -> Option<Tls> {
    let file = file?.get_ref();
    let (cert_from, key_from) = (file.cert.get_ref().describe(), file.key.get_ref().describe());
    let mut read = |r: &Spanned<SecretRef>| match r.get_ref().read(base, problems.secrets) {
        Ok(value) => Some(value),
        Err(err) => {
            problems.add(Some(r.span()), err.message, Some(err.hint));
            None
        }
    };
    let (cert, key) = (read(&file.cert), read(&file.key));
    let (Some(cert), Some(key)) = (cert, key) else {
        return Some(Tls { cert_from, key_from, server: None });
    };
    if problems.secrets == Secrets::Skip {
        return Some(Tls { cert_from, key_from, server: None });
    }
    match crate::http::tls::server_config(cert.expose_secret(), key.expose_secret(), &cert_from, &key_from) {
        Ok(server) => Some(Tls { cert_from, key_from, server: Some(server) }),
        Err(err) => {
            let span = match err {
                crate::http::tls::TlsError::BadKey { .. } | crate::http::tls::TlsError::Mismatch { .. } => {
                    file.key.span()
                }
                _ => file.cert.span(),
            };
            problems.add(
                Some(span),
                err.to_string(),
                Some("point cert at the PEM chain (server certificate first) and key at its private key, e.g. from `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem`".into()),
            );
            Some(Tls { cert_from, key_from, server: None })
        }
    }
}
