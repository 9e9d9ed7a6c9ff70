//! `[store.retention]`: how long each kind of history is kept (the store's pruner applies it).

use std::time::Duration;

/// How long each kind of history is kept; `None` is forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Events (with their decisions and inputs) by the time they were received.
    pub events: Option<Duration>,
    /// Finished runs (with their actions) by the time they finished.
    pub runs: Option<Duration>,
    /// Action outputs by the time the action finished.
    pub outputs: Option<Duration>,
}

const DAY: Duration = Duration::from_secs(86_400);

impl Default for Retention {
    fn default() -> Self {
        Retention { events: Some(90 * DAY), runs: Some(180 * DAY), outputs: Some(30 * DAY) }
    }
}

/// A horizon in words: `90d`, `36h`, `forever`.
pub fn horizon_words(horizon: Option<Duration>) -> String {
    match horizon {
        None => "forever".into(),
        Some(d) if d.as_secs() % DAY.as_secs() == 0 => format!("{}d", d.as_secs() / DAY.as_secs()),
        Some(d) => crate::domain::words(d),
    }
}

impl Retention {
    /// The plan in words, one line per horizon, for `handoff check`.
    pub fn plan(&self) -> Vec<String> {
        let line = |horizon: Option<Duration>, what: &str, kept: &str| match horizon {
            None => format!("{what}: kept forever"),
            Some(_) => format!("{what}: deleted after {}{kept}", horizon_words(horizon)),
        };
        vec![
            line(
                self.events,
                "events (with their decisions)",
                ", except those still waiting for a run or consumed by a run that is kept",
            ),
            line(self.runs, "finished runs (with their actions)", ""),
            line(self.outputs, "action outputs", " (the action is kept; `runs` says \"output pruned\")"),
        ]
    }
}
