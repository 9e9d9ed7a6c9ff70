//! The `email` action: one plain-text message through an SMTP relay, with STARTTLS (or TLS
//! from the start on port 465) and AUTH from a secret reference.
//!
//! The password is handed to the SMTP client and nowhere else: errors name the relay and the
//! relay's answer, never the credentials. Temporary failures (a 4xx answer, a refused or
//! dropped connection) are retried with backoff; a permanent one (5xx: an unknown recipient,
//! failed authentication) fails the step at once.

use super::template::render;
use super::{EmailAction, StepOutcome, render_settings};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

/// The port on which SMTP speaks TLS from the first byte (RFC 8314), not STARTTLS.
const IMPLICIT_TLS_PORT: u16 = 465;

/// Checks a PEM file of extra trusted roots, at load.
pub fn check_ca_cert(pem: &[u8]) -> Result<(), String> {
    Certificate::from_pem(pem).map(drop).map_err(|e| format!("not a PEM certificate: {e}"))
}

fn transport(action: &EmailAction) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(action.host.as_str())
        .port(action.port)
        .timeout(Some(action.timeout));
    if action.starttls || action.port == IMPLICIT_TLS_PORT {
        let mut parameters = TlsParameters::builder(action.host.clone());
        if let Some(pem) = &action.ca_cert {
            let cert = Certificate::from_pem(pem).map_err(|e| format!("smtp.ca_cert: {e}"))?;
            parameters = parameters.add_root_certificate(cert);
        }
        let parameters = parameters.build_rustls().map_err(|e| format!("cannot set up TLS: {e}"))?;
        builder = builder.tls(if action.port == IMPLICIT_TLS_PORT {
            Tls::Wrapper(parameters)
        } else {
            Tls::Required(parameters)
        });
    } else {
        builder = builder.tls(Tls::None);
    }
    if let (Some(user), Some(password)) = (&action.user, &action.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.expose_secret().to_string()));
    }
    Ok(builder.build())
}

/// For `handoff check --connect`: connects to the relay, says STARTTLS and AUTH as a send
/// would, and quits without sending anything.
pub async fn probe(action: &EmailAction) -> Result<String, String> {
    let relay = format!("{}:{}", action.host, action.port);
    match transport(action)?.test_connection().await {
        Ok(true) => Ok(format!(
            "the relay {relay} accepts the connection{}",
            if action.user.is_some() { " and the login" } else { "" }
        )),
        Ok(false) => Err(format!("the relay {relay} did not answer as an SMTP server")),
        Err(err) => Err(format!("{relay}: {}", crate::outbound::error_chain(&err))),
    }
}

fn message(action: &EmailAction, context: &Value) -> Result<Message, String> {
    let subject = render(&action.subject, context)?;
    let text = render(&action.text, context)?;
    let mut builder = Message::builder().from(action.from.clone()).subject(subject).header(ContentType::TEXT_PLAIN);
    for to in &action.to {
        builder = builder.to(to.clone());
    }
    builder.body(text).map_err(|e| format!("cannot build the message: {e}"))
}

pub async fn run(action: &EmailAction, context: &Value) -> StepOutcome {
    let rendered = render_settings(|| Ok((message(action, context)?, transport(action)?)));
    let (message, transport) = match rendered {
        Ok(parts) => parts,
        Err(failed) => return *failed,
    };
    let relay = format!("{}:{}", action.host, action.port);
    let to: Vec<String> = action.to.iter().map(|m| m.email.to_string()).collect();
    let mut attempt = 0;
    loop {
        let err = match transport.send(message.clone()).await {
            Ok(response) => {
                let answer = response.message().collect::<Vec<_>>().join(" ");
                return StepOutcome {
                    ok: true,
                    output: format!("sent to {} through {relay}: {answer}", to.join(", ")),
                    error: None,
                    outputs: json!({ "to": to }),
                };
            }
            Err(err) => err,
        };
        let problem = format!("{relay}: {}", crate::outbound::error_chain(&err));
        if err.is_permanent() || attempt >= action.retry.retries {
            return StepOutcome {
                ok: false,
                output: String::new(),
                error: Some(format!("email not sent: {problem}")),
                outputs: json!({ "to": to }),
            };
        }
        attempt += 1;
        let wait = crate::scheduler::timing::backoff(
            action.retry.backoff,
            attempt,
            crate::domain::random_fraction(),
            crate::outbound::MAX_BACKOFF,
        );
        tracing::warn!(problem, ?wait, "email action retrying");
        tokio::time::sleep(wait).await;
    }
}
