//! The words of DESIGN.md as types: an event's status, subject and identity.
//!
//! Pure data: no I/O, no sqlx, no axum. The store and the HTTP layer convert at their
//! edges (times to integer milliseconds, ids to text).

use jiff::Timestamp;
use serde::Serialize;
use std::fmt;

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

/// An authenticated, normalised delivery, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub source: String,
    pub kind: String,
    pub normalised: Normalised,
    pub received_at: Timestamp,
    pub secret: Option<SecretSlot>,
    pub peer: Option<String>,
    pub body: Vec<u8>,
}

/// A recorded event, as read back from the store.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: EventId,
    pub source: String,
    pub kind: String,
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
    #[serde(skip)]
    pub body: Vec<u8>,
}
