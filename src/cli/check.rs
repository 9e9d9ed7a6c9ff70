//! `handoff check`: validate the config; print each source's URL and how it authenticates,
//! whether the admin API is on and where. `--no-secrets` checks everything but the secrets.

use super::Failure;
use crate::actions::ActionKind;
use crate::config::{Config, Secrets};
use crate::sources::describe_auth;

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Check everything but the secrets: references are checked for their form, not read (for
    /// a laptop or CI where the production secrets are not set).
    #[arg(long)]
    pub no_secrets: bool,
}

pub fn run(config: &Config) -> Result<(), Failure> {
    print!("{}", summary(config));
    Ok(())
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
    out += &format!("listen: http://{}\n", config.listen);
    out += &format!("store:  {}\n", config.store_url);
    out += &match &config.admin {
        None => "admin API: off (no [admin] tokens)\n".to_string(),
        Some(admin) => {
            let addr = admin.listen.unwrap_or(config.listen);
            let tokens: Vec<String> =
                admin.tokens.iter().map(|t| format!("{} ({}, from {})", t.name, t.role, t.from)).collect();
            format!(
                "admin API: on at http://{addr}/api/, tokens: {}\nconsole: on at http://{addr}/ui/\n",
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
            if let ActionKind::Command(command) = &action.kind {
                for warning in command.warnings(&format!("job `{}`, action `{}`", job.name, action.name)) {
                    out += &format!("warning: {warning}\n");
                }
            }
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
