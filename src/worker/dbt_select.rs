//! The `dbt_select` step: before a job with `[jobs.NAME.dbt]` runs its actions, its events
//! are mapped to the dbt project's sources; templates get the result as `dbt`, and the run
//! keeps it (which sources, by which rule) as a step of its own, first in the run's record.

use super::Worker;
use crate::dbt::selection::{self, Selection, SelectionEvent, WhenUnmapped};
use crate::dbt::{Manifest, Selector};
use crate::domain::{ActionResult, ActionState};
use crate::scheduler::Job;
use crate::store::{Claimed, StoreError};
use futures_util::StreamExt;
use jiff::Timestamp;
use serde_json::Value;

/// The step's name and kind in the run's record.
pub const STEP: &str = "dbt_select";

/// What the run does after the selection.
pub(super) enum Selected {
    /// Go on; templates see this as `dbt`.
    Go(Value),
    /// Nothing to run (`when_unmapped = "skip"`): the run ends, succeeded.
    Skip,
    /// The selection could not be made (no manifest): the attempt fails.
    Failed(String),
}

impl Worker {
    pub(super) async fn select_dbt(
        &self,
        job: &Job,
        selector: &Selector,
        claimed: &Claimed,
    ) -> Result<Selected, StoreError> {
        let started_at = Timestamp::now();
        let (selected, output, dbt) = match self.selection_for(selector, claimed).await {
            Err(error) => (Selected::Failed(format!("dbt selection: {error}")), error, None),
            Ok((selection, when_unmapped, note)) => {
                let json = selection.to_json(when_unmapped);
                let mut text = selection.describe(when_unmapped);
                if let Some(note) = note {
                    text = format!("{note}\n{text}");
                }
                let next = match selection.decision(when_unmapped) {
                    "skip" => Selected::Skip,
                    _ => Selected::Go(json.clone()),
                };
                (next, text, Some(json))
            }
        };
        let run = &claimed.run;
        let failed = matches!(selected, Selected::Failed(_));
        let record = ActionResult {
            run: run.id.clone(),
            attempt: run.attempt,
            // After the job's actions and its on_failure/on_success (at `len`): a place no
            // action of the job takes; the record lists steps in the order they were written.
            position: job.actions.len() as u32 + 1,
            name: STEP.into(),
            kind: STEP.into(),
            state: if failed { ActionState::Failed } else { ActionState::Succeeded },
            output: Some(output.clone()),
            output_pruned: false,
            error: if let Selected::Failed(e) = &selected { Some(e.clone()) } else { None },
            started_at,
            finished_at: Some(Timestamp::now()),
            process_group: None,
            dbt,
        };
        self.persist(|| self.store.record_action(record.clone())).await?;
        tracing::info!(job = %job.name, run_id = %run.id, selection = %output.lines().next().unwrap_or_default(), "dbt selection");
        Ok(selected)
    }

    /// The selection for the run's events (all of them, read from the store), and a note when
    /// the run has none (a schedule or a manual run: everything is selected).
    async fn selection_for(
        &self,
        selector: &Selector,
        claimed: &Claimed,
    ) -> Result<(Selection, WhenUnmapped, Option<String>), String> {
        let manifest: std::sync::Arc<Manifest> = selector.manifest.load().map_err(|e| e.to_string())?;
        let mut events = Vec::new();
        let mut stream = self.store.run_events(&claimed.run.id);
        while let Some(event) = stream.next().await {
            let e = event.map_err(|e| format!("cannot read the run's events: {e}"))?;
            events.push(SelectionEvent { id: e.id.0, source: e.source, subject: e.subject });
        }
        if events.is_empty() {
            let note = format!("run started by {} with no events: everything runs", claimed.run.reason);
            return Ok((Selection::default(), WhenUnmapped::All, Some(note)));
        }
        Ok((selection::select(&manifest, &selector.rules, &events), selector.when_unmapped, None))
    }
}
