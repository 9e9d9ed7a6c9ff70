//! `handoff check`: validate the config; print each source's URL and how it authenticates,
//! whether the admin API is on and where. `--no-secrets` checks everything but the secrets.
//! `--connect` then tries, one line each, what can be tried without side effects: the store
//! opens, each dbt Cloud token reads its account, each Slack and HTTP URL answers, each program
//! exists. It never posts, triggers or writes anything.

use super::Failure;
use crate::actions::{Action, ActionKind, Text};
use crate::config::{Config, Secrets, StoreLocation};
use crate::sources::describe_auth;
use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Check everything but the secrets: references are checked for their form, not read (for
    /// a laptop or CI where the production secrets are not set).
    #[arg(long, conflicts_with = "connect")]
    pub no_secrets: bool,
    /// Also try what can be tried without side effects, like `dbt debug`: the store opens, each
    /// dbt Cloud token can read its account, each Slack/HTTP URL answers, each program exists.
    /// Exit 1 if any fails.
    #[arg(long)]
    pub connect: bool,
}

pub async fn run(config: &Config, args: &CheckArgs) -> Result<(), Failure> {
    print!("{}", summary(config));
    if !args.connect {
        return Ok(());
    }
    println!("connect:");
    let mut failed = 0;
    for probe in connect(config).await {
        let (word, why) = match &probe.outcome {
            Ok(why) => ("ok", why),
            Err(why) => {
                failed += 1;
                ("FAILED", why)
            }
        };
        println!("  {word:<6}  {}: {why}", probe.what);
    }
    if failed > 0 {
        return Err(Failure::runtime(format!("{failed} of the connection checks failed (listed above)")));
    }
    Ok(())
}

/// One thing `--connect` tried: what, and why it is fine or not (never a secret).
pub struct Probe {
    pub what: String,
    pub outcome: Result<String, String>,
}

/// Tries the store, then every action of every job, in the order `check` lists them.
pub async fn connect(config: &Config) -> Vec<Probe> {
    let mut probes = vec![Probe { what: format!("store {}", config.store_url), outcome: store_opens(config).await }];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a default TLS client builds");
    for job in config.jobs.values() {
        for action in job.actions.iter().chain(&job.on_failure).chain(&job.on_success) {
            let what = format!("job `{}`, action `{}` ({})", job.name, action.name, action.kind_name());
            if let Some(outcome) = try_action(&client, action).await {
                probes.push(Probe { what, outcome });
            }
        }
    }
    probes
}

/// The store opens; a SQLite file not created yet is fine when its folder exists (`serve`
/// creates it). Opened read-only: nothing is created or migrated.
async fn store_opens(config: &Config) -> Result<String, String> {
    let location = config.store_to_open()?;
    if let StoreLocation::Sqlite(path) = location
        && !path.exists()
    {
        let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return if folder.is_dir() {
            Ok(format!("not created yet; `handoff serve` creates it in {}", folder.display()))
        } else {
            Err(format!("its folder {} does not exist", folder.display()))
        };
    }
    match crate::store::Store::open_existing(location).await {
        Ok(store) => {
            store.close().await;
            Ok("opens".into())
        }
        // PostgreSQL answered and let us in; its tables are made by the first `serve`.
        Err(crate::store::StoreError::Missing(_)) => Ok("connects; no tables yet, `handoff serve` creates them".into()),
        Err(err) => Err(err.to_string()),
    }
}

/// Tries one action without running it; `None` when there is nothing to try.
async fn try_action(client: &reqwest::Client, action: &Action) -> Option<Result<String, String>> {
    Some(match &action.kind {
        ActionKind::Command(command) => match locate_program(&command.program) {
            Some(found) => Ok(format!("program {} exists", found.display())),
            None => Err(program_missing(&command.program)),
        },
        ActionKind::Http(http) => answers(client, &http.url).await?,
        ActionKind::Slack(slack) => answers(client, &slack.url).await?,
        ActionKind::Teams(teams) => answers(client, &teams.url).await?,
        ActionKind::PagerDuty(pagerduty) => answers(client, &pagerduty.url).await?,
        ActionKind::Email(email) => crate::actions::email::probe(email).await,
        ActionKind::DbtCloud(dbt) => {
            // Reading the account is what a token that may trigger its jobs can always do.
            let url = format!("{}/api/v2/accounts/{}/", dbt.base_url, dbt.account_id);
            let answer = client
                .get(&url)
                .header("authorization", format!("Token {}", dbt.token.expose_secret()))
                .header("accept", "application/json")
                .send()
                .await;
            match answer {
                Ok(a) if a.status().is_success() => Ok(format!("the token reads account {}", dbt.account_id)),
                Ok(a) if matches!(a.status().as_u16(), 401 | 403) => Err(format!(
                    "{} answered {}: the token cannot read account {} (wrong token, or one without access to it)",
                    dbt.base_url,
                    a.status(),
                    dbt.account_id
                )),
                Ok(a) => Err(format!("{url} answered {}", a.status())),
                Err(err) => Err(format!("cannot reach {}: {}", dbt.base_url, reason(&err))),
            }
        }
    })
}

/// Whether the server at `url` answers: its host resolves, it accepts a connection and, for
/// https, a TLS handshake. Asked with HEAD, which has no side effects by HTTP's rules: any
/// answer, even 404 or 405, proves the way there works. A templated URL is not tried; a URL
/// from a secret is shown by its host only (Slack's carry their credential in the path).
async fn answers(client: &reqwest::Client, url: &Text) -> Option<Result<String, String>> {
    let (text, secret) = match url {
        Text::Template(t) if t.contains("{{") || t.contains("{%") => return None,
        Text::Template(t) => (t.clone(), false),
        Text::Secret(s) => (s.expose_secret().to_string(), true),
    };
    let parsed = match reqwest::Url::parse(text.trim()) {
        Ok(u) => u,
        Err(err) => return Some(Err(format!("the url is not a URL: {err}"))),
    };
    let shown = match (secret, parsed.host_str()) {
        (true, Some(host)) => match parsed.port() {
            Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
            None => format!("{}://{host}", parsed.scheme()),
        },
        (false, _) => text.clone(),
        (true, None) => "the url".into(),
    };
    Some(match client.head(parsed).send().await {
        Ok(answer) => Ok(format!("{shown} answers (HTTP {} to HEAD)", answer.status().as_u16())),
        Err(err) => Err(format!("cannot reach {shown}: {}", reason(&err))),
    })
}

/// The innermost cause of a failed request (DNS, refused, TLS), which is what a user acts on.
fn reason(err: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = err;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "failed"
    };
    format!("{kind}: {source}")
}

/// Where `program` would be run from: a path (it contains a `/`) as it is, a bare name from
/// the directories of this process's PATH, as the server looks it up. `None` unless it is an
/// executable file.
pub fn locate_program(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let path = PathBuf::from(program);
        return executable(&path).then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| executable(p))
}

fn program_missing(program: &str) -> String {
    if program.contains('/') {
        format!("program {program} is not an executable file")
    } else {
        format!("program `{program}` is not on this machine's PATH")
    }
}

/// The report `check` prints; names where secrets come from, never their values.
pub fn summary(config: &Config) -> String {
    let mut out = match config.secrets {
        Secrets::Resolve => format!("{}: ok\n", config.path.display()),
        Secrets::Skip => {
            format!(
                "{}: ok, except secrets: not read (--no-secrets); `handoff check` reads them\n",
                config.path.display()
            )
        }
    };
    let scheme = if config.tls.is_some() { "https" } else { "http" };
    out += &format!("listen: {scheme}://{}\n", config.listen);
    if let Some(tls) = &config.tls {
        out += &format!("tls:    certificate from {}, key from {}\n", tls.cert_from, tls.key_from);
    }
    out += &format!("store:  {}\n", config.store_url);
    out += &match &config.admin {
        None => "admin API: off (no [admin] tokens)\n".to_string(),
        Some(admin) => {
            let addr = admin.listen.unwrap_or(config.listen);
            let tokens: Vec<String> =
                admin.tokens.iter().map(|t| format!("{} ({}, from {})", t.name, t.role, t.from)).collect();
            format!(
                "admin API: on at {scheme}://{addr}/api/, tokens: {}\nconsole: on at {scheme}://{addr}/ui/\n",
                tokens.join(", ")
            )
        }
    };
    out += "retention ([store.retention]; `handoff prune --dry-run` shows what goes now):\n";
    for line in config.retention.plan() {
        out += &format!("  {line}\n");
    }
    if !config.trusted_proxies.is_empty() {
        let proxies: Vec<String> = config.trusted_proxies.iter().map(ToString::to_string).collect();
        out += &format!("trusted proxies: {}\n", proxies.join(", "));
    }
    out += &match config.reject_budget {
        Some(budget) => {
            format!("rejections: {} per client address, refilled at {}; past it 429\n", budget.burst, budget.rate)
        }
        None => "rejections: no budget per client address (reject_rate = \"off\")\n".to_string(),
    };
    if config.sources.is_empty() {
        out += "sources: none (add a [sources.NAME] table)\n";
    } else {
        out += "sources:\n";
    }
    for source in config.sources.values() {
        out += &format!("  {}  POST /hooks/{}\n", source.name, source.name);
        out += &format!("    kind:   {}\n", source.kind);
        out += &format!("    auth:   {}\n", describe_auth(source.kind));
        let label = if source.kind == crate::domain::SourceKind::Airbyte { "token: " } else { "secret:" };
        out += &format!("    {label} {}\n", source.credentials_from.join(", "));
        if !source.allow_ips.is_empty() {
            let nets: Vec<String> = source.allow_ips.iter().map(ToString::to_string).collect();
            out += &format!("    allow:  {}\n", nets.join(", "));
        }
        out += &format!("    limit:  {} bytes\n", source.max_body);
        if source.kind == crate::domain::SourceKind::StandardWebhooks {
            out += &format!("    tolerance: {}s\n", source.tolerance.as_secs());
        }
        if let Some(rate) = source.rate_limit {
            out += &format!("    rate limit: {rate} (all requests; past it 429)\n");
        }
        if let Some(window) = source.replay_window {
            out += &format!(
                "    replay window: {} (an identical body within it is a duplicate)\n",
                crate::domain::words(window)
            );
        }
    }
    if config.jobs.is_empty() {
        out += "jobs: none (add a [jobs.NAME] table)\n";
    } else {
        out += "jobs:\n";
    }
    for job in config.jobs.values() {
        out += &format!("  {}\n    plan:    {}\n", job.name, job.plan());
        if job.actions.is_empty() {
            out += "    actions: none\n";
        }
        for (i, action) in job.actions.iter().enumerate() {
            let label = if i == 0 { "actions:" } else { "        " };
            out += &format!("    {label} {}. {} ({}): {}\n", i + 1, action.name, action.kind_name(), action.summary());
        }
        for (label, action) in [("on_failure:", &job.on_failure), ("on_success:", &job.on_success)] {
            if let Some(a) = action {
                out += &format!("    {label} {} ({}): {}\n", a.name, a.kind_name(), a.summary());
            }
        }
        out += &format!(
            "    retry:   {} attempts, backoff {}\n",
            job.retry.attempts,
            crate::domain::words(job.retry.backoff)
        );
    }
    for warning in &config.warnings {
        out += &format!("warning: {warning}\n");
    }
    for job in config.jobs.values() {
        for action in job.actions.iter().chain(&job.on_failure).chain(&job.on_success) {
            if let ActionKind::Command(command) = &action.kind
                && locate_program(&command.program).is_none()
            {
                // A warning, not an error: the program may exist only where the server runs.
                out += &format!(
                    "warning: job `{}`, action `{}`: {}; a run fails unless it exists where `handoff serve` runs\n",
                    job.name,
                    action.name,
                    program_missing(&command.program)
                );
            }
            if let ActionKind::Command(command) = &action.kind {
                for warning in command.warnings(&format!("job `{}`, action `{}`", job.name, action.name)) {
                    out += &format!("warning: {warning}\n");
                }
            }
        }
        for warning in job.dbt.iter().flat_map(|d| d.warnings(&job.name, &job.after)) {
            out += &format!("warning: {warning}\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::summary;
    use crate::config::Config;

    #[test]
    fn check_shows_a_replay_window_and_warns_about_an_hmac_source_without_one() {
        let text = "[sources.e]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nreplay_window = \"10m\"\n\
                    [sources.p]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\n";
        let config = Config::parse(std::path::Path::new("/etc/handoff/handoff.toml"), text).unwrap();
        let out = summary(&config);
        assert!(out.contains("replay window: 10m (an identical body within it is a duplicate)"), "{out}");
        assert!(out.contains("warning: source `p` (hmac) signs the body only"), "{out}");
        assert!(!out.contains("source `e` (hmac)"), "{out}");
    }

    #[test]
    fn check_shows_the_rejection_budget_and_a_sources_rate_limit() {
        let text = "[server]\nreject_rate = \"5/s\"\nreject_burst = 20\n\
                    [sources.e]\nkind = \"hmac\"\nsecret = { env = \"PATH\" }\nrate_limit = \"50/s\"\n";
        let config = Config::parse(std::path::Path::new("/etc/handoff/handoff.toml"), text).unwrap();
        let out = summary(&config);
        assert!(out.contains("rejections: 20 per client address, refilled at 5/s; past it 429"), "{out}");
        assert!(out.contains("rate limit: 50/s (all requests; past it 429)"), "{out}");
        let off = Config::parse(std::path::Path::new("/h.toml"), "[server]\nreject_rate = \"off\"\n").unwrap();
        assert!(summary(&off).contains("rejections: no budget per client address"), "{}", summary(&off));
    }
}
