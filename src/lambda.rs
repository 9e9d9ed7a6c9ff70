//! The receiving half as an AWS Lambda function (feature `lambda`): API Gateway HTTP APIs
//! (payload 2.0) and function URLs hand each delivery to [`Receiver::handle`], which runs it
//! through the same handlers as `handoff serve` (`http::receiving_router`): the signature is
//! checked on the raw bytes, the event is committed to PostgreSQL before the answer, and the
//! answer (202, 200 for a duplicate, 401, 413, ...) is the one `serve` gives.
//!
//! It never schedules nor runs actions: a function is frozen between invocations and ends after
//! its timeout, so runs belong to `handoff serve --role worker` replicas on the same database.
//! SQLite is refused: a file inside a function's sandbox is lost with the sandbox.

use crate::app::{AppError, receiving_state};
use crate::config::{Config, StoreLocation};
use crate::store::StoreOptions;
use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tower_service::Service;

#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    #[error(
        "the Lambda receiver records into PostgreSQL only: [store] url is a SQLite file, which would be lost with the function's sandbox; point [store] url at the PostgreSQL database your `handoff serve --role worker` replicas use"
    )]
    Sqlite,
    #[error(transparent)]
    App(#[from] AppError),
}

/// The receiving router around an opened store, built once per function instance (a cold
/// start) and reused by every invocation that instance serves.
#[derive(Clone)]
pub struct Receiver {
    router: Router,
}

impl Receiver {
    /// Opens (and migrates) the PostgreSQL store. SQLite is refused.
    pub async fn build(config: Config) -> Result<Receiver, LambdaError> {
        if matches!(config.store, StoreLocation::Sqlite(_)) {
            return Err(LambdaError::Sqlite);
        }
        // One delivery at a time per instance: a batch of one commits at once instead of
        // waiting for others that will not come.
        let options = StoreOptions { max_batch: 1, ..StoreOptions::default() };
        let state = receiving_state(config, options).await?;
        Ok(Receiver { router: crate::http::receiving_router(state) })
    }

    /// Answers one invocation's HTTP request as `serve` would answer it.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        let (mut parts, body) = request.into_parts();
        // The sender's address as API Gateway saw it: `allow_ips`, the rejection budget and
        // the logs use it where `serve` uses the peer's.
        let peer = source_ip(parts.extensions.request_context_ref()).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        parts.extensions.insert(ConnectInfo(SocketAddr::new(peer, 0)));
        let body = match body {
            Body::Empty => axum::body::Body::empty(),
            Body::Text(text) => axum::body::Body::from(text),
            Body::Binary(bytes) => axum::body::Body::from(bytes),
            // A future body kind of lambda_http: refused rather than guessed at.
            _ => return plain(500, "unsupported request body"),
        };
        let mut router = self.router.clone();
        let response = match router.call(axum::http::Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        match body.collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                let body = if bytes.is_empty() {
                    Body::Empty
                } else {
                    match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => Body::Text(text),
                        Err(err) => Body::Binary(err.into_bytes()),
                    }
                };
                Response::from_parts(parts, body)
            }
            Err(_) => plain(500, "the answer could not be read"),
        }
    }
}

fn source_ip(context: Option<&RequestContext>) -> Option<IpAddr> {
    match context? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}

fn plain(status: u16, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::Text(text.to_string()));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    response
}
