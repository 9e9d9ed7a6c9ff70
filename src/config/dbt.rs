//! `[jobs.NAME.dbt]` (which dbt sources a run's events map to) and a command action's
//! `dbt = { ... }` (where its run_results.json is, and what failed tests do). Built into the
//! types of [`crate::dbt`]; the manifest itself is read when a run needs it, not here, since
//! it may be built after the config (by `dbt parse` in a deploy).

use super::Problems;
use crate::dbt::{DbtCommand, ManifestFile, OnTestFailure, Rule, Selector, WhenUnmapped};
use crate::scheduler::Upstream;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileJobDbt {
    /// The dbt project's manifest.json (relative to the config file's folder).
    manifest: Spanned<String>,
    /// When the run's events map to no dbt source: `skip` (default) or `all`.
    when_unmapped: Option<Spanned<String>>,
    /// How events map to dbt sources, tried in order; every rule that applies is used.
    #[serde(default)]
    rules: Vec<Spanned<FileRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    /// The handoff source (`fivetran`) or source and subject (`fivetran:stripe_conn`) whose events it maps.
    events: Spanned<String>,
    /// A key of the dbt source's `meta` whose value is the event's subject id or name.
    meta: Option<String>,
    /// Pattern for the dbt source's `loader` (`*` and `{subject}` allowed).
    loader: Option<String>,
    /// Pattern for the dbt source's schema.
    schema: Option<String>,
    /// Pattern for the dbt source's database.
    database: Option<String>,
    /// Pattern for the dbt source's name.
    source: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCommandDbt {
    /// The dbt project's folder (default: the action's working_dir, else the config's folder).
    project_dir: Option<String>,
    /// run_results.json, relative to project_dir (default "target/run_results.json").
    results: Option<String>,
    /// When dbt exits 0 but tests failed: `fail` (default) or `warn`.
    on_test_failure: Option<Spanned<String>>,
}

const RULE_HINT: &str =
    r#"[[jobs.NAME.dbt.rules]] events = "fivetran", meta = "fivetran_connector" (or loader, schema, database, source)"#;

pub(super) fn build_selector(
    problems: &mut Problems<'_>,
    base: &Path,
    file: &Spanned<FileJobDbt>,
    source_names: &[String],
) -> Option<Arc<Selector>> {
    let raw = file.get_ref();
    let when_unmapped = match raw.when_unmapped.as_ref().map(|w| (w, w.get_ref().as_str())) {
        None | Some((_, "skip")) => WhenUnmapped::Skip,
        Some((_, "all")) => WhenUnmapped::All,
        Some((w, other)) => {
            problems.add(
                Some(w.span()),
                format!("when_unmapped `{other}` is not `skip` or `all`"),
                Some(r#"when_unmapped = "skip" ends the run unrun; "all" runs every model"#.into()),
            );
            WhenUnmapped::Skip
        }
    };
    if raw.rules.is_empty() {
        problems.add(
            Some(file.span()),
            "[dbt] has no rules, so no event would select anything",
            Some(RULE_HINT.into()),
        );
    }
    let mut rules = Vec::new();
    for spanned in &raw.rules {
        let r = spanned.get_ref();
        let events = Upstream::parse(r.events.get_ref());
        if !source_names.contains(&events.source) {
            problems.add(
                Some(r.events.span()),
                format!("dbt rule maps events of unknown source `{}`", events.source),
                Some(format!("sources: {}", source_names.join(", "))),
            );
        }
        let rule = Rule {
            events,
            meta: r.meta.clone(),
            loader: r.loader.clone(),
            schema: r.schema.clone(),
            database: r.database.clone(),
            source: r.source.clone(),
        };
        if [&rule.meta, &rule.loader, &rule.schema, &rule.database, &rule.source].iter().all(|c| c.is_none()) {
            problems.add(Some(spanned.span()), "a dbt rule needs at least one condition", Some(RULE_HINT.into()));
        }
        rules.push(rule);
    }
    let manifest = base.join(raw.manifest.get_ref());
    Some(Arc::new(Selector { manifest: ManifestFile::new(manifest), rules, when_unmapped }))
}

pub(super) fn build_command_dbt(
    problems: &mut Problems<'_>,
    base: &Path,
    file: &FileCommandDbt,
    working_dir: Option<&str>,
) -> DbtCommand {
    let on_test_failure = match file.on_test_failure.as_ref().map(|w| (w, w.get_ref().as_str())) {
        None | Some((_, "fail")) => OnTestFailure::Fail,
        Some((_, "warn")) => OnTestFailure::Warn,
        Some((w, other)) => {
            problems.add(
                Some(w.span()),
                format!("on_test_failure `{other}` is not `fail` or `warn`"),
                Some(r#"on_test_failure = "warn" keeps the step succeeded when tests fail"#.into()),
            );
            OnTestFailure::Fail
        }
    };
    // A templated working_dir is only known per run; then the config's folder is the default.
    let project = match (&file.project_dir, working_dir.filter(|d| !d.contains("{{"))) {
        (Some(dir), _) => base.join(dir),
        (None, Some(dir)) => PathBuf::from(dir),
        (None, None) => base.to_path_buf(),
    };
    let results = project.join(file.results.as_deref().unwrap_or("target/run_results.json"));
    DbtCommand { results, on_test_failure }
}
