//! Console sessions: held in this process's memory, so a restart logs everyone out.
//!
//! A session is made by logging in with an admin token; the browser keeps only a random id in
//! an HttpOnly, SameSite=Strict cookie. The map is keyed by the id's SHA-256, so a lookup's
//! timing says nothing about a near-miss id, and a session never holds the token itself.

use crate::http::admin::Role;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie that carries the session id.
pub const COOKIE: &str = "handoff_session";

/// How long a session lasts from login.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// At most this many live sessions; a login beyond it drops the oldest.
const MAX_SESSIONS: usize = 10_000;

/// One logged-in browser: the token's name and role, and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    expires: Instant,
}

impl Session {
    pub fn can_operate(&self) -> bool {
        self.role == Role::Operate
    }

    /// Whether `presented` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, presented: &str) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.csrf.as_bytes().ct_eq(presented.as_bytes()))
    }
}

/// Every live session of this process.
#[derive(Debug, Default)]
pub struct Sessions {
    by_digest: Mutex<HashMap<[u8; 32], Session>>,
}

fn digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 random bytes from the operating system, hex-encoded.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    hex::encode(bytes)
}

impl Sessions {
    /// Starts a session for token `name`; returns the id for the cookie.
    pub fn create(&self, name: &str, role: Role, now: Instant) -> String {
        let id = random_token();
        let session = Session { name: name.to_string(), role, csrf: random_token(), expires: now + LIFETIME };
        let mut map = self.by_digest.lock().expect("the sessions lock is never poisoned");
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(digest(&id), session);
        id
    }

    /// The live session with this id.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut map = self.by_digest.lock().expect("the sessions lock is never poisoned");
        let key = digest(id);
        match map.get(&key) {
            Some(s) if s.expires > now => Some(s.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn remove(&self, id: &str) {
        self.by_digest.lock().expect("the sessions lock is never poisoned").remove(&digest(id));
    }
}

/// The session id in a `Cookie` header, if any.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_at_its_expiry_and_on_logout() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let id = sessions.create("ops", Role::Operate, start);
        assert_eq!(sessions.get(&id, start).unwrap().name, "ops");
        assert!(sessions.get("not-an-id", start).is_none());
        assert!(sessions.get(&id, start + LIFETIME).is_none());
        let id = sessions.create("ops", Role::Read, start);
        sessions.remove(&id);
        assert!(sessions.get(&id, start).is_none());
    }

    #[test]
    fn two_sessions_have_different_ids_and_csrf_tokens() {
        let sessions = Sessions::default();
        let now = Instant::now();
        let (a, b) = (sessions.create("a", Role::Read, now), sessions.create("b", Role::Read, now));
        assert_ne!(a, b);
        let (sa, sb) = (sessions.get(&a, now).unwrap(), sessions.get(&b, now).unwrap());
        assert_ne!(sa.csrf, sb.csrf);
        assert!(sa.csrf_matches(&sa.csrf) && !sa.csrf_matches(&sb.csrf) && !sa.csrf_matches(""));
    }
}
