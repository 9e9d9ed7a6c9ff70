//! `handoff-lambda`: the receiving half on AWS Lambda (feature `lambda`; docs/deploy.md).
//! Reads the config named by `HANDOFF_CONFIG` (default `handoff.toml` beside the binary's
//! working directory, the function's `/var/task`), opens PostgreSQL once per instance and
//! answers every invocation with `handoff::lambda::Receiver`.

use handoff::config::Config;
use handoff::lambda::Receiver;
use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    handoff::telemetry::init(handoff::telemetry::LogFormat::Json);
    let path = std::env::var_os("HANDOFF_CONFIG").map_or_else(|| PathBuf::from("handoff.toml"), PathBuf::from);
    let config = Config::load(&path).inspect_err(|err| tracing::error!(error = %err, "the config cannot be used"))?;
    let receiver =
        Receiver::build(config).await.inspect_err(|err| tracing::error!(error = %err, "the receiver cannot start"))?;
    lambda_http::run(lambda_http::service_fn(move |request| {
        let receiver = receiver.clone();
        async move { Ok::<_, std::convert::Infallible>(receiver.handle(request).await) }
    }))
    .await
}
