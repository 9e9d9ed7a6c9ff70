//! Which jobs an event feeds, and why not: one decision per concerned job, or one for none.
//!
//! Pure: the store calls this inside the transaction that marks the event matched, so every
//! event is decided exactly once and its decisions are stored with it.

use crate::domain::{EventId, Status, Subject};
use crate::scheduler::Job;

/// What the matcher needs of an event.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub source: String,
    pub subject: Subject,
    pub status: Status,
    pub test: bool,
    pub repeat_of: Option<EventId>,
}

/// One decision: `job` is `None` when the event concerns no job; `upstream` is set when it fed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub job: Option<String>,
    pub upstream: Option<String>,
    pub reason: String,
}

pub fn decide<'a>(jobs: impl IntoIterator<Item = &'a Job>, event: &Candidate) -> Vec<Draft> {
    let none = |reason: String| vec![Draft { job: None, upstream: None, reason }];
    if event.test {
        return none("test delivery: recorded, never feeds a job".into());
    }
    if let Some(first) = &event.repeat_of {
        return none(format!("same news as event {first}, which was matched already"));
    }
    let mut drafts = Vec::new();
    for job in jobs {
        let Some(upstream) = job.upstream_for(&event.source, &event.subject) else { continue };
        if job.on_status.contains(&event.status) {
            drafts.push(Draft {
                job: Some(job.name.clone()),
                upstream: Some(upstream.to_string()),
                reason: format!("fed job {} as upstream {upstream}", job.name),
            });
        } else {
            let wanted: Vec<&str> = job.on_status.iter().map(|s| s.as_str()).collect();
            drafts.push(Draft {
                job: Some(job.name.clone()),
                upstream: None,
                reason: format!(
                    "ignored by job {}: status {} is not in on_status [{}]",
                    job.name,
                    event.status,
                    wanted.join(", ")
                ),
            });
        }
    }
    if drafts.is_empty() {
        return none(format!("no job listens to {}:{}", event.source, event.subject.label()));
    }
    drafts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::scheduler::Job;
    use std::path::Path;

    fn jobs(text: &str) -> Vec<Job> {
        let sources = "[sources.fivetran]\nkind = \"fivetran\"\nsecret = { env = \"PATH\" }\n[sources.dbt]\nkind = \"dbt_cloud\"\nsecret = { env = \"PATH\" }\n";
        let config = Config::parse(Path::new("/tmp/handoff.toml"), &format!("{sources}{text}")).unwrap();
        config.jobs.into_values().collect()
    }

    fn event(source: &str, subject: &str, status: Status) -> Candidate {
        Candidate {
            source: source.into(),
            subject: Subject::new(Some(subject.into()), Some(format!("{subject}_name"))),
            status,
            test: false,
            repeat_of: None,
        }
    }

    #[test]
    fn a_matching_success_feeds_the_job_by_subject_id_or_name() {
        let jobs = jobs("[jobs.t]\nafter = [\"fivetran:pg_name\"]\n");
        let d = decide(&jobs, &event("fivetran", "pg", Status::Success));
        assert_eq!(d[0].job.as_deref(), Some("t"));
        assert_eq!(d[0].upstream.as_deref(), Some("fivetran:pg_name"));
    }

    #[test]
    fn a_failure_does_not_feed_a_success_only_job_and_says_why() {
        let jobs = jobs("[jobs.t]\nafter = [\"fivetran\"]\n");
        let d = decide(&jobs, &event("fivetran", "pg", Status::Failure));
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].upstream, None);
        assert!(d[0].reason.contains("status failure is not in on_status [success]"), "{}", d[0].reason);
    }

    #[test]
    fn an_event_no_job_listens_to_gets_one_decision_without_a_job() {
        let jobs = jobs("[jobs.t]\nafter = [\"fivetran:other\"]\n");
        let d = decide(&jobs, &event("fivetran", "pg", Status::Success));
        assert_eq!(
            d,
            vec![Draft { job: None, upstream: None, reason: "no job listens to fivetran:pg (pg_name)".into() }]
        );
    }

    #[test]
    fn test_deliveries_and_repeated_news_feed_nothing() {
        let jobs = jobs("[jobs.t]\nafter = [\"dbt\"]\non_status = [\"success\", \"failure\"]\n");
        let mut e = event("dbt", "1", Status::Failure);
        e.repeat_of = Some(EventId("first".into()));
        assert_eq!(decide(&jobs, &e)[0].upstream, None);
        let mut t = event("dbt", "1", Status::Success);
        t.test = true;
        assert_eq!(decide(&jobs, &t)[0].job, None);
    }
}
