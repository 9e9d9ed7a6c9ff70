//! dbt, as handoff understands it: the sources of a project's `manifest.json` (to select only
//! what a load changed) and the nodes of a `run_results.json` (to tell what dbt did). Reading
//! files and parsing live here; the worker decides when to read, and `config` builds the rules.
//! Nothing here starts dbt.

pub mod manifest;
pub mod results;
pub mod selection;

pub use manifest::{DbtSource, Manifest, ManifestFile};
pub use results::{DbtResults, NodeResult, OnTestFailure};
pub use selection::{Rule, Selection, SelectionEvent, Selector, WhenUnmapped};

/// What went wrong reading a dbt artifact.
#[derive(Debug, thiserror::Error)]
pub enum DbtError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a dbt {artifact}: {source}")]
    Parse { path: String, artifact: &'static str, source: serde_json::Error },
}

/// A command action's `dbt = { ... }`: after the command, its run_results.json is read (when
/// the command wrote it) and kept with the step.
#[derive(Debug, Clone, PartialEq)]
pub struct DbtCommand {
    pub results: std::path::PathBuf,
    pub on_test_failure: OnTestFailure,
}
