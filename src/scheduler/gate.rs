//! `wait_for`: whether the upstreams that delivered since the last run start make a job ready.

use crate::scheduler::{Job, WaitFor};

/// The `after` entries still missing, given those that delivered (as their `Display` text).
/// For `any`, nothing is missing once one delivered; for `all`, each must have delivered.
pub fn missing<'a>(job: &'a Job, delivered: &[String]) -> Vec<&'a crate::scheduler::Upstream> {
    let has = |u: &crate::scheduler::Upstream| delivered.iter().any(|d| *d == u.to_string());
    match job.wait_for {
        WaitFor::Any if job.after.iter().any(has) => Vec::new(),
        WaitFor::Any => job.after.iter().collect(),
        WaitFor::All => job.after.iter().filter(|u| !has(u)).collect(),
    }
}

pub fn is_ready(job: &Job, delivered: &[String]) -> bool {
    !delivered.is_empty() && missing(job, delivered).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn job(wait_for: &str) -> Job {
        let text = format!(
            "[sources.a]\nkind = \"hmac\"\nsecret = {{ env = \"PATH\" }}\n[sources.b]\nkind = \"hmac\"\nsecret = {{ env = \"PATH\" }}\n\
             [jobs.j]\nafter = [\"a\", \"b:x\"]\nwait_for = \"{wait_for}\"\n"
        );
        Config::parse(Path::new("/tmp/h.toml"), &text).unwrap().jobs.remove("j").unwrap()
    }

    #[test]
    fn all_waits_for_every_upstream() {
        let j = job("all");
        assert!(!is_ready(&j, &["a".into()]));
        assert_eq!(missing(&j, &["a".into()]).iter().map(|u| u.to_string()).collect::<Vec<_>>(), ["b:x"]);
        assert!(is_ready(&j, &["b:x".into(), "a".into()]));
    }

    #[test]
    fn any_is_ready_with_one_upstream_and_never_with_none() {
        let j = job("any");
        assert!(is_ready(&j, &["b:x".into()]));
        assert!(!is_ready(&j, &[]));
    }
}
