//! Actions: the steps of a run. One file per kind; each takes its checked settings and the
//! run context and reports a [`StepOutcome`]. They never decide whether a run happens.

pub mod auth;
pub mod command;
pub mod dbt_cloud;
pub mod email;
pub mod http;
pub mod pagerduty;
pub mod secrets;
mod spec;
pub mod teams;
pub mod template;
pub mod wait;

pub use spec::{Action, ActionKind, CommandAction, DbtCloudAction, HttpAction, SlackAction, Text};
pub use spec::{EmailAction, PagerDutyAction, TeamsAction};

use serde_json::Value;

/// How one action ended.
#[derive(Debug, Clone)]
pub struct StepOutcome {
    pub ok: bool,
    /// Kept with the run (command output, response body, dbt run).
    pub output: String,
    pub error: Option<String>,
    /// What later steps see as `steps.<name>`.
    pub outputs: Value,
}

impl StepOutcome {
    pub fn failed(error: String) -> StepOutcome {
        StepOutcome { ok: false, output: String::new(), error: Some(error), outputs: Value::Null }
    }

    /// Stopped by a shutdown, a lost lease or a cancel (the worker knows which and records
    /// it); `output` keeps what a resumed attempt needs.
    pub fn cancelled(output: String) -> StepOutcome {
        StepOutcome { ok: false, output, error: Some(CANCELLED.into()), outputs: Value::Null }
    }

    pub fn is_cancelled(&self) -> bool {
        self.error.as_deref() == Some(CANCELLED)
    }
}

const CANCELLED: &str = "cancelled by shutdown";

/// Renders an action's templated settings for this run. The one place a template error becomes
/// the step's failure, worded the same for every kind ("template: …"); `handoff check` renders
/// the same templates against a sample run first, so this is rare.
pub fn render_settings<T>(render: impl FnOnce() -> Result<T, String>) -> Result<T, Box<StepOutcome>> {
    render().map_err(|err| Box::new(StepOutcome::failed(format!("template: {err}"))))
}
