//! `[admin]`: the admin API's bearer tokens, each with a name and a role, and where it listens.
//!
//! The API is off unless at least one token is configured. Tokens are secret references like
//! every other secret; only their SHA-256 is kept ([`AdminToken`]), and nothing prints them.

use super::{Problems, SecretRef, Secrets, weak_secret};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use subtle::ConstantTimeEq;
use toml::Spanned;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Every `GET`.
    Read,
    /// Every `GET` and the verbs (`POST`).
    Operate,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Operate => "operate",
        })
    }
}

/// One configured token: its name (recorded as who acted), its role, where it comes from, and
/// the SHA-256 of its value: comparing digests takes the same time whatever the lengths.
#[derive(Clone)]
pub struct AdminToken {
    pub name: String,
    pub role: Role,
    /// `env NAME` or `file PATH`: printable, no value.
    pub from: String,
    digest: [u8; 32],
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminToken").field("name", &self.name).field("role", &self.role).finish_non_exhaustive()
    }
}

impl AdminToken {
    pub fn new(name: &str, role: Role, from: String, value: &[u8]) -> AdminToken {
        AdminToken { name: name.to_string(), role, from, digest: Sha256::digest(value).into() }
    }

    /// Whether two tokens have the same value (config validation).
    pub fn same_value(&self, other: &AdminToken) -> bool {
        bool::from(self.digest.ct_eq(&other.digest))
    }
}

/// `[admin]`, when the API is on.
#[derive(Debug, Clone)]
pub struct Admin {
    pub tokens: Vec<AdminToken>,
    /// A separate address; `None` serves `/api/` on `[server] listen`.
    pub listen: Option<SocketAddr>,
}

impl Admin {
    /// The token whose value was presented. Every token is compared, none skipped, so the
    /// time taken says nothing about which one (nearly) matched.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&AdminToken> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(&digest)) {
                found = Some(token);
            }
        }
        found
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAdmin {
    /// Bearer tokens of the admin API, e.g.
    /// `[{ name = "ops", role = "operate", token = { env = "HANDOFF_ADMIN_TOKEN" } }]`; off without one.
    #[serde(default)]
    tokens: Vec<Spanned<FileAdminToken>>,
    /// A separate address for the admin API; without it, `/api/` is served on `[server] listen`.
    listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAdminToken {
    /// Recorded as who did what (`token:NAME`).
    name: Spanned<String>,
    /// `read` (GET only) or `operate` (the verbs too).
    role: Spanned<Role>,
    /// The token, as a secret reference.
    token: Spanned<SecretRef>,
}

/// Checks `[admin]`; `None` when the API is off. `listen` is the server's own address.
pub(super) fn build_admin(
    problems: &mut Problems<'_>,
    base: &Path,
    file: Option<&Spanned<FileAdmin>>,
    listen: SocketAddr,
    warnings: &mut Vec<String>,
) -> Option<Admin> {
    let file = file?;
    let raw = file.get_ref();
    let before = problems.found.len();
    let mut tokens: Vec<AdminToken> = Vec::new();
    for entry in &raw.tokens {
        let entry = entry.get_ref();
        let name = entry.name.get_ref();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
            problems.add(
                Some(entry.name.span()),
                format!("admin token name `{name}` is not a name"),
                Some(r#"use letters, digits, `_`, `-` and `.`, e.g. name = "ops""#.into()),
            );
        } else if tokens.iter().any(|t| t.name == *name) {
            problems.add(
                Some(entry.name.span()),
                format!("admin token name `{name}` is used twice"),
                Some("give each token its own name: it is recorded as who acted (token:NAME)".into()),
            );
        }
        let from = entry.token.get_ref().describe();
        let value = match entry.token.get_ref().read(base, problems.secrets) {
            Ok(value) => value,
            Err(err) => {
                problems.add(Some(entry.token.span()), err.message, Some(err.hint));
                continue;
            }
        };
        if let Some(reason) = weak_secret(value.expose_secret().as_bytes(), false) {
            problems.add(
                Some(entry.token.span()),
                format!("the admin token `{name}` from {from} {reason}"),
                Some("make a long random one: openssl rand -hex 32".into()),
            );
            continue;
        }
        let token = AdminToken::new(name, *entry.role.get_ref(), from, value.expose_secret().as_bytes());
        if problems.secrets == Secrets::Resolve
            && let Some(twin) = tokens.iter().find(|t| t.same_value(&token))
        {
            problems.add(
                Some(entry.token.span()),
                format!("admin tokens `{}` and `{name}` have the same value", twin.name),
                Some("give each name its own token, so that who acted is known".into()),
            );
        }
        tokens.push(token);
    }
    let separate = raw.listen.as_ref().and_then(|l| match l.get_ref().parse::<SocketAddr>() {
        Ok(addr) if addr == listen && addr.port() != 0 => {
            problems.add(
                Some(l.span()),
                format!("[admin] listen is the server's own address {addr}"),
                Some("remove it to serve /api/ on [server] listen, or give the admin API another port".into()),
            );
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                Some(l.span()),
                format!("`{}` is not an address and port", l.get_ref()),
                Some(r#"write listen = "127.0.0.1:9090""#.into()),
            );
            None
        }
    });
    if problems.found.len() > before {
        return None;
    }
    if tokens.is_empty() {
        warnings.push("[admin] names no token: the admin API is off".into());
        return None;
    }
    let serving = separate.unwrap_or(listen);
    if !serving.ip().is_loopback() {
        warnings.push(format!(
            "the admin API listens on {serving} over plain HTTP: its tokens cross the network in clear text; \
             bind it to 127.0.0.1 ([admin] listen) or put a TLS proxy in front"
        ));
    }
    Some(Admin { tokens, listen: separate })
}

#[cfg(test)]
mod tests {
    use super::Role;
    use crate::config::{Config, ConfigError, Secrets};

    /// Config text in a temp folder holding the token files `files`.
    fn parse(files: &[(&str, &str)], text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in files {
            std::fs::write(dir.path().join(name), value).unwrap();
        }
        Config::parse(&dir.path().join("handoff.toml"), text)
    }

    const GOOD: &str = "0123456789abcdef-ops";

    #[test]
    fn tokens_with_names_and_roles_turn_the_api_on_and_a_listen_address_is_its_own() {
        let text = "[admin]\nlisten = \"127.0.0.1:9090\"\ntokens = [\n\
                    { name = \"ops\", role = \"operate\", token = { file = \"a\" } },\n\
                    { name = \"dash\", role = \"read\", token = { file = \"b\" } },\n]\n";
        let config = parse(&[("a", GOOD), ("b", "another-long-token-value")], text).unwrap();
        let admin = config.admin.unwrap();
        assert_eq!(admin.listen, Some("127.0.0.1:9090".parse().unwrap()));
        let names: Vec<(&str, Role)> = admin.tokens.iter().map(|t| (t.name.as_str(), t.role)).collect();
        assert_eq!(names, [("ops", Role::Operate), ("dash", Role::Read)]);
        assert_eq!(admin.authenticate(GOOD.as_bytes()).map(|t| t.name.as_str()), Some("ops"));
        assert!(admin.authenticate(b"0123456789abcdef-op").is_none());
        assert!(!format!("{admin:?}").contains("0123456789"), "tokens never in Debug");

        assert!(parse(&[], "").unwrap().admin.is_none(), "off without [admin]");
        let config = parse(&[], "[admin]\nlisten = \"127.0.0.1:9090\"\n").unwrap();
        assert!(config.admin.is_none(), "off without a token");
        assert!(config.warnings.iter().any(|w| w.contains("the admin API is off")), "{:?}", config.warnings);
    }

    #[test]
    fn a_duplicate_name_a_weak_or_missing_token_and_a_bad_listen_are_reported_at_their_lines() {
        let text = "[admin]\nlisten = \"localhost\"\ntokens = [\n\
                    { name = \"ops\", role = \"operate\", token = { file = \"a\" } },\n\
                    { name = \"ops\", role = \"read\", token = { file = \"short\" } },\n\
                    { name = \"\", role = \"read\", token = { file = \"empty\" } },\n\
                    { name = \"ci\", role = \"read\", token = { env = \"HANDOFF_TEST_UNSET_ADMIN\" } },\n]\n";
        let err = parse(&[("a", GOOD), ("short", "abc"), ("empty", "\n")], text).unwrap_err();
        let found: Vec<(usize, &str)> = err.problems.iter().map(|p| (p.line, p.message.as_str())).collect();
        assert_eq!(found.len(), 6, "{err}");
        assert_eq!(found[0], (2, "`localhost` is not an address and port"));
        assert_eq!(found[1], (5, "admin token name `ops` is used twice"));
        assert!(found[2].0 == 5 && found[2].1.contains("the admin token `ops` from file short is 3 bytes"), "{err}");
        assert_eq!(found[3], (6, "admin token name `` is not a name"));
        assert!(found[4].0 == 6 && found[4].1.starts_with("the secret is empty"), "{err}");
        assert_eq!(found[5], (7, "environment variable HANDOFF_TEST_UNSET_ADMIN is not set"));
        assert!(err.to_string().contains("hint: give each token its own name"), "{err}");
        assert!(err.to_string().contains("hint: make a long random one: openssl rand -hex 32"), "{err}");

        let with_skip = Config::parse_with(std::path::Path::new("/h/handoff.toml"), text, Secrets::Skip).unwrap_err();
        assert_eq!(with_skip.problems.len(), 3, "without secrets, only the shape: {with_skip}");
    }

    #[test]
    fn an_unknown_role_or_key_gets_a_hint_and_two_names_for_one_token_are_refused() {
        let text = "[admin]\ntokens = [{ name = \"ops\", role = \"operator\", token = { file = \"a\" } }]\n";
        let err = parse(&[("a", GOOD)], text).unwrap_err().to_string();
        assert!(err.contains(":2:") && err.contains("unknown variant `operator`"), "{err}");
        assert!(err.contains("hint: did you mean `operate`?"), "{err}");
        let err = parse(&[], "[admin]\ntoken = []\n").unwrap_err().to_string();
        assert!(err.contains("hint: did you mean `tokens`?"), "{err}");

        let text = "[admin]\ntokens = [\n{ name = \"a\", role = \"read\", token = { file = \"a\" } },\n\
                    { name = \"b\", role = \"operate\", token = { file = \"b\" } },\n]\n";
        let err = parse(&[("a", GOOD), ("b", &format!("{GOOD}\n"))], text).unwrap_err();
        assert_eq!(err.problems[0].line, 4, "{err}");
        assert!(err.problems[0].message.contains("admin tokens `a` and `b` have the same value"), "{err}");
        assert!(!err.to_string().contains(GOOD), "{err}");
    }

    #[test]
    fn the_admin_api_on_the_servers_own_address_or_off_loopback_is_reported() {
        let token = "tokens = [{ name = \"ops\", role = \"read\", token = { file = \"a\" } }]\n";
        let text = format!("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8080\"\n{token}");
        let err = parse(&[("a", GOOD)], &text).unwrap_err();
        assert_eq!(err.problems[0].line, 4, "{err}");
        assert!(err.problems[0].message.contains("is the server's own address"), "{err}");

        let text = format!("[server]\nlisten = \"0.0.0.0:8080\"\n[admin]\n{token}");
        let config = parse(&[("a", GOOD)], &text).unwrap();
        assert!(config.warnings.iter().any(|w| w.contains("over plain HTTP")), "{:?}", config.warnings);
        let text = format!("[server]\nlisten = \"0.0.0.0:8080\"\n[admin]\nlisten = \"127.0.0.1:9090\"\n{token}");
        assert!(parse(&[("a", GOOD)], &text).unwrap().warnings.is_empty());
    }
}
