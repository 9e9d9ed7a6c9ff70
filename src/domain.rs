//! The words of DESIGN.md as types: an event's status, subject and identity.
//!
//! Pure data: no I/O, no sqlx, no axum. The store and the HTTP layer convert at their
//! edges (times to integer milliseconds, ids to text).

use jiff::Timestamp;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// A source's kind: how its deliveries are authenticated and read (research/providers.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    DbtCloud,
    Fivetran,
    Airbyte,
    Hmac,
    StandardWebhooks,
    Github,
}

impl SourceKind {
    pub const ALL: [SourceKind; 6] = [
        SourceKind::DbtCloud,
        SourceKind::Fivetran,
        SourceKind::Airbyte,
        SourceKind::Hmac,
        SourceKind::StandardWebhooks,
        SourceKind::Github,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::DbtCloud => "dbt_cloud",
            SourceKind::Fivetran => "fivetran",
            SourceKind::Airbyte => "airbyte",
            SourceKind::Hmac => "hmac",
            SourceKind::StandardWebhooks => "standard_webhooks",
            SourceKind::Github => "github",
        }
    }

    pub fn parse(s: &str) -> Option<SourceKind> {
        SourceKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a delivery says about the work it reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failure,
    Cancelled,
    Started,
    Other,
}

impl Status {
    pub const ALL: [Status; 5] = [Status::Success, Status::Failure, Status::Cancelled, Status::Started, Status::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Cancelled => "cancelled",
            Status::Started => "started",
            Status::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The connector, connection, dbt job or repository an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub id: Option<String>,
    pub name: Option<String>,
}

impl Subject {
    pub fn new(id: Option<String>, name: Option<String>) -> Self {
        Self { id, name }
    }

    /// `id name`, `id`, `name` or `-`, for tables.
    pub fn label(&self) -> String {
        match (&self.id, &self.name) {
            (Some(id), Some(name)) if id != name => format!("{id} ({name})"),
            (Some(id), _) => id.clone(),
            (None, Some(name)) => name.clone(),
            (None, None) => "-".to_string(),
        }
    }
}

/// An event's id: a UUIDv7, so ids sort by creation time and are unique across replicas.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EventId(pub String);

impl EventId {
    pub fn generate() -> Self {
        EventId(uuid::Uuid::now_v7().to_string())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which configured secret authenticated a delivery (for rotation audits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSlot {
    Current,
    Previous,
}

impl SecretSlot {
    pub fn as_str(self) -> &'static str {
        match self {
            SecretSlot::Current => "current",
            SecretSlot::Previous => "previous",
        }
    }

    pub fn parse(s: &str) -> Option<SecretSlot> {
        match s {
            "current" => Some(SecretSlot::Current),
            "previous" => Some(SecretSlot::Previous),
            _ => None,
        }
    }
}

/// What a source kind reads out of an authenticated body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalised {
    /// The provider's own id for the event (dbt `eventId`, Fivetran `sync_id`, ...).
    pub provider_event_id: Option<String>,
    /// The delivery identity a provider keeps across retries; repeats are duplicates.
    pub dedupe_key: Option<String>,
    /// Two events with the same news key report the same fact (dbt Cloud's `errored`
    /// and `completed` for one failed run); only the first may feed a job.
    pub news_key: Option<String>,
    /// The provider's event type (`job.run.completed`, `sync_end`, `workflow_run`, ...).
    pub event_type: Option<String>,
    pub subject: Subject,
    pub status: Status,
    pub occurred_at: Option<Timestamp>,
    /// A provider's "is this URL alive?" delivery (Airbyte's test button, Fivetran's
    /// `test_event`, GitHub's `ping`): recorded, but never feeds a job.
    pub test: bool,
}

impl Normalised {
    pub fn new(status: Status) -> Self {
        Self {
            provider_event_id: None,
            dedupe_key: None,
            news_key: None,
            event_type: None,
            subject: Subject::default(),
            status,
            occurred_at: None,
            test: false,
        }
    }
}

/// The longest provider identifier kept (provider event id, event type, subject id), in
/// characters. Longer ones are cut and end with `…` (docs/receiving.md).
pub const MAX_PROVIDER_ID: usize = 256;
/// The longest subject name kept, in characters.
pub const MAX_SUBJECT_NAME: usize = 1024;

impl Normalised {
    /// The provider's strings capped to what the store keeps, so no sender can make an event
    /// huge everywhere it is shown or passed on; the raw body stays whole. Delivery and news
    /// keys are compared, never shown: a long one becomes its SHA-256, so repeats still match.
    pub fn capped(self) -> Normalised {
        Normalised {
            provider_event_id: self.provider_event_id.map(|t| cap(t, MAX_PROVIDER_ID)),
            dedupe_key: self.dedupe_key.map(fingerprint),
            news_key: self.news_key.map(fingerprint),
            event_type: self.event_type.map(|t| cap(t, MAX_PROVIDER_ID)),
            subject: Subject {
                id: self.subject.id.map(|t| cap(t, MAX_PROVIDER_ID)),
                name: self.subject.name.map(|t| cap(t, MAX_SUBJECT_NAME)),
            },
            ..self
        }
    }
}

/// `text` cut to at most `max` characters on a character boundary, ending with `…` if cut.
pub fn cap(mut text: String, max: usize) -> String {
    if let Some((_, _)) = text.char_indices().nth(max) {
        let end = text.char_indices().nth(max.saturating_sub(1)).map_or(0, |(i, _)| i);
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A key kept as it is when short, else as `sha256:<hex>` of it: equal keys stay equal.
fn fingerprint(key: String) -> String {
    use sha2::Digest;
    if key.len() <= MAX_PROVIDER_ID {
        key
    } else {
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(key.as_bytes())))
    }
}

/// An authenticated, normalised delivery, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub kind: SourceKind,
    pub normalised: Normalised,
    pub received_at: Timestamp,
    pub secret: Option<SecretSlot>,
    pub peer: Option<String>,
    /// The request headers that matter, as a JSON object (see [`kept_headers`]); never an
    /// auth header, a signature, a token or a cookie.
    pub headers: Option<String>,
    pub body: Vec<u8>,
    /// How long the dedupe key holds after the event that carries it was received; `None`:
    /// forever (a provider's delivery id). Past the window the key passes to the new event.
    pub dedupe_window: Option<Duration>,
}

/// A recorded event, as read back from the store.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: EventId,
    pub source: String,
    pub kind: SourceKind,
    pub provider_event_id: Option<String>,
    pub event_type: Option<String>,
    pub subject: Subject,
    pub status: Status,
    pub test: bool,
    /// The earlier event that reported the same news, if any.
    pub repeat_of: Option<EventId>,
    pub secret: Option<SecretSlot>,
    pub occurred_at: Timestamp,
    pub received_at: Timestamp,
    /// The client address the delivery came from; read only with the whole event.
    pub peer: Option<String>,
    /// The headers kept at ingest (name, value), in name order; read only with the whole event.
    pub headers: Vec<(String, String)>,
    /// The raw body, byte for byte; `None` when the event was read by a listing, which
    /// leaves bodies in the store.
    pub body: Option<Vec<u8>>,
}

/// A run's id: a UUIDv7, like event ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(pub String);

impl RunId {
    pub fn generate() -> Self {
        RunId(uuid::Uuid::now_v7().to_string())
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! word_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $word),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($word => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

word_enum!(
    /// Where a run is in its life. Exactly these five words, everywhere.
    RunState { Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled" }
);

word_enum!(
    /// Why a run exists. A retry is the same run with its attempt counted up, so it keeps its
    /// reason; there is no "retry" reason. `rerun`: `handoff rerun RUN`.
    ReasonKind { Events => "events", Schedule => "schedule", Manual => "manual", Rerun => "rerun" }
);

word_enum!(
    /// What became of one delivery to `/hooks/{source}` (`handoff deliveries --outcome`).
    DeliveryOutcome { Accepted => "accepted", Duplicate => "duplicate", Rejected => "rejected" }
);

word_enum!(
    /// Where one action of a run is.
    ActionState { Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled" }
);

/// A started command's process group, identified well enough to find it again after a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessGroup {
    pub pgid: u32,
    /// The leader's start time in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start: u64,
}

/// One action of one attempt of a run: what the worker records as it starts and ends, and
/// what the store reads back. One type for both.
#[derive(Debug, Clone)]
pub struct ActionResult {
    pub run: RunId,
    pub attempt: u32,
    /// Its place in the job's actions (`on_failure`/`on_success` come after the last).
    pub position: u32,
    pub name: String,
    pub kind: String,
    pub state: ActionState,
    pub output: Option<String>,
    /// The output was removed by `[store.retention] outputs` (never set when recording).
    pub output_pruned: bool,
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// A command's process group, recorded as soon as it exists.
    pub process_group: Option<ProcessGroup>,
    /// What dbt did in this step (its run_results.json, summarised), or for the `dbt_select`
    /// step the run's selection (docs/dbt.md).
    pub dbt: Option<serde_json::Value>,
}

/// One run of a job, as stored.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: RunId,
    pub job: String,
    pub state: RunState,
    pub reason: ReasonKind,
    /// The schedule tick a `schedule` run was started for.
    pub scheduled_for: Option<Timestamp>,
    /// The events this run consumed (for `events` runs, and events folded into other runs).
    pub events: Vec<EventId>,
    pub attempt: u32,
    pub queued_at: Timestamp,
    pub run_after: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub error: Option<String>,
    /// When `handoff cancel` asked a running run to stop, and who asked (kept after it ended).
    pub cancel_requested_at: Option<Timestamp>,
    pub cancel_requested_by: Option<String>,
    /// Who cancelled it, for a run that ended `cancelled` on request.
    pub cancelled_by: Option<String>,
    pub actions: Vec<ActionResult>,
    /// Who asked for a `manual` run or a `rerun` (`cli:<user>@<host>`, `token:<name>`).
    pub requested_by: Option<String>,
    /// The run a `rerun` repeats.
    pub rerun_of: Option<RunId>,
    /// May start while its job is paused (`handoff run JOB --force`).
    pub forced: bool,
}

/// What the matcher decided about an event for one job (or for none).
#[derive(Debug, Clone)]
pub struct Decision {
    pub event_id: EventId,
    pub job: Option<String>,
    pub fed: bool,
    pub reason: String,
    pub decided_at: Timestamp,
    /// Set on the decisions of a replay (`handoff replay`): who replayed the event.
    pub replayed_by: Option<String>,
}

/// An event as a run sees it: enough to tell a command what it is about.
#[derive(Debug, Clone)]
pub struct RunEvent {
    pub id: EventId,
    pub source: String,
    pub subject: Subject,
    pub status: Status,
    /// The provider's event type, when it names one (dbt Cloud `eventType`, GitHub's header).
    pub event_type: Option<String>,
    /// The raw body as delivered; templates see it parsed as `payload`.
    pub body: Vec<u8>,
}

/// A random number in [0, 1), for jitter. From a real generator: a UUIDv7's low bits are a
/// per-millisecond counter, so draws taken together (a burst of retries) would barely differ.
pub fn random_fraction() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod random_fraction_tests {
    use super::random_fraction;

    #[test]
    fn draws_taken_back_to_back_spread_over_the_whole_range() {
        let draws: Vec<f64> = (0..1000).map(|_| random_fraction()).collect();
        assert!(draws.iter().all(|d| (0.0..1.0).contains(d)), "a draw fell outside [0, 1)");
        let min = draws.iter().copied().fold(f64::INFINITY, f64::min);
        let max = draws.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        assert!(min < 0.05 && max > 0.95, "1,000 draws spanned only {min}..{max}");
        assert!(draws.windows(2).all(|w| w[0] != w[1]), "two consecutive draws were equal");
    }
}

/// A point in time as the read commands and the admin API take it (`--since`, `--until`,
/// `?since=`): an RFC 3339 time (`2026-11-27T03:00:00Z`), or a duration before `now` (`90s`,
/// `2h`, `1h 30m`, `7d`; a day is 24 hours).
pub fn time_bound(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<Timestamp>() {
        return Ok(at);
    }
    let ago = match text.strip_suffix('d').and_then(|days| days.trim().parse::<i64>().ok()) {
        Some(days) => jiff::SignedDuration::from_hours(days.saturating_mul(24)),
        None => text.parse::<jiff::SignedDuration>().map_err(|_| {
            format!("`{text}` is neither a duration like 2h, 30m or 7d nor an RFC 3339 time like 2026-11-27T03:00:00Z")
        })?,
    };
    if ago.is_negative() {
        return Err(format!("`{text}` is a negative duration; give how long ago, like 2h"));
    }
    now.checked_sub(ago).map_err(|_| format!("`{text}` reaches before the earliest time handoff can show"))
}

#[cfg(test)]
mod time_bound_tests {
    use super::*;

    #[test]
    fn a_time_bound_is_a_duration_ago_or_an_rfc_3339_time() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().unwrap();
        let at = |text: &str| time_bound(text, now).map(|t| t.to_string());
        assert_eq!(at("2h").unwrap(), "2026-11-27T10:00:00Z");
        assert_eq!(at("1h 30m").unwrap(), "2026-11-27T10:30:00Z");
        assert_eq!(at("7d").unwrap(), "2026-11-20T12:00:00Z");
        assert_eq!(at("2026-11-01T00:00:00Z").unwrap(), "2026-11-01T00:00:00Z");
        assert_eq!(at("2026-11-01T01:00:00+01:00").unwrap(), "2026-11-01T00:00:00Z");
        assert!(at("yesterday").unwrap_err().contains("`yesterday`"));
        assert!(at("-2h").is_err());
    }
}

/// `2m`, `1h 30m`, `45s`.
pub fn words(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut parts = Vec::new();
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 {
        parts.push(format!("{m}m"));
    }
    if s > 0 || parts.is_empty() {
        parts.push(format!("{s}s"));
    }
    parts.join(" ")
}

/// How one attempt of a run ended, as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    /// `retry_at` is when to try again, or `None` when the attempts are used up.
    Failed {
        error: String,
        retry_at: Option<Timestamp>,
    },
    /// A shutdown, a crash or an expired lease: not a failed attempt.
    Interrupted,
    /// Stopped on request (`handoff cancel`) by `by`: the run ends `cancelled`, no retry follows
    /// and its events are not handed to another run.
    Cancelled {
        by: String,
    },
}

impl Outcome {
    /// The outcome once a pending cancel request (by `requested_by`) is taken into account: a
    /// success stands (the work was done before the request took effect); a failure or an
    /// interruption of a run someone asked to stop is that cancel, so no retry and no resume
    /// follow, whichever came first.
    pub fn unless_cancelled(self, requested_by: Option<&str>) -> Outcome {
        match (self, requested_by) {
            (Outcome::Failed { .. } | Outcome::Interrupted, Some(by)) => Outcome::Cancelled { by: by.to_string() },
            (outcome, _) => outcome,
        }
    }
}

/// What the store writes for a run when an attempt ends: the run-state rules, once for
/// every backend. `after_attempt` computes it; the backends only apply it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The run is over.
    End { state: RunState, error: Option<String> },
    /// Back to the queue, to start again at `run_after` with `attempt` tries counted so far.
    Requeue { run_after: Timestamp, attempt: u32, error: String },
    /// The run is over, cancelled on request by `by`; its events stay with it.
    Cancel { by: String },
    /// The run is over and the job's queued run `into` does its work; with `release_events`,
    /// the events this run consumed wait again and that run consumes them.
    Fold { state: RunState, error: String, into: RunId, release_events: bool },
}

/// The run-state rules. `attempt` counts the tries including the one that just ended;
/// `queued` is the job's queued run, if it has one (at most one, by a unique index).
///
/// - A failure with a retry left goes back to the queue at `retry_at`, unless a run is queued
///   already: that one does the same work, so the retry folds into it.
/// - An interruption is not a failed attempt: the run is queued again at once with its count
///   restored, or, if a run is queued already, it ends `cancelled` and hands its events over.
/// - A cancel ends the run whatever is queued; its events are not handed over.
pub fn after_attempt(outcome: &Outcome, attempt: u32, queued: Option<&RunId>, now: Timestamp) -> Transition {
    match (outcome, queued) {
        (Outcome::Succeeded, _) => Transition::End { state: RunState::Succeeded, error: None },
        (Outcome::Cancelled { by }, _) => Transition::Cancel { by: by.clone() },
        (Outcome::Failed { error, retry_at: None }, _) => {
            Transition::End { state: RunState::Failed, error: Some(error.clone()) }
        }
        (Outcome::Failed { error, retry_at: Some(_) }, Some(other)) => Transition::Fold {
            state: RunState::Failed,
            error: format!("{error} (its retry is folded into the queued run {other})"),
            into: other.clone(),
            release_events: false,
        },
        (Outcome::Failed { error, retry_at: Some(at) }, None) => {
            Transition::Requeue { run_after: *at, attempt, error: error.clone() }
        }
        (Outcome::Interrupted, Some(other)) => Transition::Fold {
            state: RunState::Cancelled,
            error: format!("interrupted; its work is done by the queued run {other}"),
            into: other.clone(),
            release_events: true,
        },
        (Outcome::Interrupted, None) => Transition::Requeue {
            run_after: now,
            attempt: attempt.saturating_sub(1),
            error: "interrupted by a shutdown, a crash or an expired lease; resumed".into(),
        },
    }
}

impl Transition {
    /// The run's state once the transition is applied.
    pub fn state(&self) -> RunState {
        match self {
            Transition::End { state, .. } | Transition::Fold { state, .. } => *state,
            Transition::Requeue { .. } => RunState::Queued,
            Transition::Cancel { .. } => RunState::Cancelled,
        }
    }
}

#[cfg(test)]
mod transition_tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    fn failed(retry_at: Option<Timestamp>) -> Outcome {
        Outcome::Failed { error: "exit 1".into(), retry_at }
    }

    #[test]
    fn a_success_ends_the_run_whatever_is_queued() {
        let other = RunId("q".into());
        for queued in [None, Some(&other)] {
            assert_eq!(
                after_attempt(&Outcome::Succeeded, 1, queued, t(10)),
                Transition::End { state: RunState::Succeeded, error: None }
            );
        }
    }

    #[test]
    fn a_failure_with_a_retry_left_is_queued_again_at_its_backoff_keeping_its_count() {
        let next = after_attempt(&failed(Some(t(40))), 2, None, t(10));
        assert_eq!(next, Transition::Requeue { run_after: t(40), attempt: 2, error: "exit 1".into() });
        assert_eq!(next.state(), RunState::Queued);
    }

    #[test]
    fn a_failure_with_a_queued_follow_up_folds_its_retry_into_it_and_keeps_its_events() {
        let other = RunId("q".into());
        match after_attempt(&failed(Some(t(40))), 1, Some(&other), t(10)) {
            Transition::Fold { state, error, into, release_events } => {
                assert_eq!((state, into, release_events), (RunState::Failed, other, false));
                assert!(error.contains("folded into the queued run q"), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_last_failure_ends_the_run_failed() {
        assert_eq!(
            after_attempt(&failed(None), 3, None, t(10)),
            Transition::End { state: RunState::Failed, error: Some("exit 1".into()) }
        );
    }

    #[test]
    fn an_interruption_is_not_an_attempt_and_resumes_at_once() {
        match after_attempt(&Outcome::Interrupted, 2, None, t(10)) {
            Transition::Requeue { run_after, attempt, .. } => assert_eq!((run_after, attempt), (t(10), 1)),
            other => panic!("{other:?}"),
        }
        match after_attempt(&Outcome::Interrupted, 0, None, t(10)) {
            Transition::Requeue { attempt, .. } => assert_eq!(attempt, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cancel_ends_the_run_cancelled_by_who_asked_even_with_a_follow_up_queued() {
        let other = RunId("q".into());
        let cancelled = Outcome::Cancelled { by: "cli:ana@h".into() };
        for queued in [None, Some(&other)] {
            let next = after_attempt(&cancelled, 1, queued, t(10));
            assert_eq!(next, Transition::Cancel { by: "cli:ana@h".into() });
            assert_eq!(next.state(), RunState::Cancelled);
        }
    }

    #[test]
    fn a_pending_cancel_turns_a_failure_or_an_interruption_into_that_cancel_but_a_success_stands() {
        let by = Some("token:ops");
        let cancelled = Outcome::Cancelled { by: "token:ops".into() };
        assert_eq!(failed(Some(t(40))).unless_cancelled(by), cancelled, "no retry after a cancel");
        assert_eq!(failed(None).unless_cancelled(by), cancelled);
        assert_eq!(Outcome::Interrupted.unless_cancelled(by), cancelled, "no resume after a cancel");
        assert_eq!(Outcome::Succeeded.unless_cancelled(by), Outcome::Succeeded);
        assert_eq!(Outcome::Interrupted.unless_cancelled(None), Outcome::Interrupted);
        assert_eq!(failed(None).unless_cancelled(None), failed(None));
    }

    #[test]
    fn an_interrupted_run_with_a_queued_follow_up_is_cancelled_and_hands_over_its_events() {
        let other = RunId("q".into());
        match after_attempt(&Outcome::Interrupted, 1, Some(&other), t(10)) {
            Transition::Fold { state, into, release_events, .. } => {
                assert_eq!((state, into, release_events), (RunState::Cancelled, other, true))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_cut_on_a_character_boundary_and_marked() {
        assert_eq!(cap("orders".into(), 6), "orders");
        assert_eq!(cap("orders!".into(), 6), "order…");
        let cut = cap("é".repeat(2000), MAX_SUBJECT_NAME);
        assert_eq!(cut.chars().count(), MAX_SUBJECT_NAME);
        assert!(cut.ends_with("é…"));
    }

    #[test]
    fn capping_keeps_short_strings_and_long_keys_stay_distinct() {
        let mut event = Normalised::new(Status::Success);
        event.subject = Subject::new(Some("i".repeat(300)), Some("n".repeat(5000)));
        event.event_type = Some("sync_end".into());
        event.dedupe_key = Some(format!("{}a", "k".repeat(1000)));
        let other = Normalised { dedupe_key: Some(format!("{}b", "k".repeat(1000))), ..event.clone() };
        let (event, other) = (event.capped(), other.capped());
        assert_eq!(event.subject.id.as_ref().unwrap().chars().count(), MAX_PROVIDER_ID);
        assert_eq!(event.subject.name.as_ref().unwrap().chars().count(), MAX_SUBJECT_NAME);
        assert_eq!(event.event_type.as_deref(), Some("sync_end"));
        let key = event.dedupe_key.unwrap();
        assert!(key.starts_with("sha256:") && key.len() == 71, "{key}");
        assert_ne!(Some(key), other.dedupe_key, "different long keys are still different events");
    }
}
