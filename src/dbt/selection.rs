//! From a run's events to the dbt selection that covers them: each event is mapped by the
//! job's rules to the project's sources, and each source becomes `source:<src>.<table>+` (the
//! table and everything downstream of it). Pure: the manifest and the events come in, the
//! selection and why each source was chosen come out.

use super::manifest::{DbtSource, Manifest};
use crate::scheduler::Upstream;
use serde_json::{Value, json};
use std::collections::BTreeSet;

/// The selector used when everything is to run: every node of the project.
pub const ALL: &str = "fqn:*";

/// What templates see as `dbt` when `handoff check` renders them.
pub fn sample() -> Value {
    Selection { selectors: vec!["source:s.t+".into()], ..Selection::default() }.to_json(WhenUnmapped::Skip)
}

/// One `[[jobs.NAME.dbt.rules]]`: which events it maps, and which dbt sources they load.
/// Every condition set must hold; a pattern may use `*` and `{subject}` (the event's
/// subject id or name) and is compared without regard to case.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// The handoff source (and optionally subject) whose events this rule maps.
    pub events: Upstream,
    /// A `meta` key of the dbt source whose value is the event's subject (id or name).
    pub meta: Option<String>,
    /// The dbt source's `loader`.
    pub loader: Option<String>,
    /// The dbt source's schema.
    pub schema: Option<String>,
    /// The dbt source's database.
    pub database: Option<String>,
    /// The dbt source's name (`source_name`).
    pub source: Option<String>,
}

impl Rule {
    /// The rule in a few words, for the run record, `explain` and `check`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(key) = &self.meta {
            parts.push(format!("meta.{key} = subject"));
        }
        for (name, pattern) in
            [("loader", &self.loader), ("schema", &self.schema), ("database", &self.database), ("source", &self.source)]
        {
            if let Some(p) = pattern {
                parts.push(format!("{name} ~ {p}"));
            }
        }
        format!("events of {}: {}", self.events, parts.join(", "))
    }

    /// Whether `source` is loaded by the subject (`None` when checking with any subject).
    fn selects(&self, source: &DbtSource, subjects: &[&str]) -> bool {
        let pattern_holds = |pattern: &Option<String>, value: Option<&str>| match pattern {
            None => true,
            Some(p) if p.contains("{subject}") => {
                value.is_some_and(|v| subjects.iter().any(|s| glob(&p.replace("{subject}", s), v)))
            }
            Some(p) => value.is_some_and(|v| glob(p, v)),
        };
        let meta_holds = match &self.meta {
            None => true,
            Some(key) => {
                let values = source.meta_text(key);
                values.iter().any(|v| subjects.iter().any(|s| *s == "*" || v.eq_ignore_ascii_case(s)))
            }
        };
        meta_holds
            && pattern_holds(&self.loader, source.loader.as_deref())
            && pattern_holds(&self.schema, source.schema.as_deref())
            && pattern_holds(&self.database, source.database.as_deref())
            && pattern_holds(&self.source, Some(&source.source_name))
    }

    /// Whether any source of the project could ever be selected by this rule, for `check`.
    pub fn matches_any(&self, manifest: &Manifest) -> bool {
        manifest.sources.iter().any(|s| self.selects(s, &["*"]))
    }
}

/// `*` matches any run of characters; everything else itself, regardless of case.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_ascii_lowercase(), text.to_ascii_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// What to do when the run's events map to no dbt source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnmapped {
    /// End the run at once, succeeded, with the reason recorded.
    Skip,
    /// Run everything (`dbt.select` is [`ALL`]).
    All,
}

impl WhenUnmapped {
    pub fn as_str(self) -> &'static str {
        match self {
            WhenUnmapped::Skip => "skip",
            WhenUnmapped::All => "all",
        }
    }
}

/// A job's `[jobs.NAME.dbt]`: the manifest, the rules, and the empty-selection decision.
#[derive(Debug)]
pub struct Selector {
    pub manifest: super::ManifestFile,
    pub rules: Vec<Rule>,
    pub when_unmapped: WhenUnmapped,
}

impl Selector {
    /// What `handoff check` warns about for job `job`: a manifest it cannot read, a rule that
    /// matches no source of the project, a subject the job waits for (`after =
    /// ["fivetran:stripe_conn"]`) that maps to no source.
    pub fn warnings(&self, job: &str, after: &[Upstream]) -> Vec<String> {
        let manifest = match self.manifest.load() {
            Ok(m) => m,
            Err(err) => {
                return vec![format!(
                    "job `{job}`: dbt manifest: {err}; its runs fail until `dbt parse` (or any dbt command) writes it"
                )];
            }
        };
        let mut warnings = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.matches_any(&manifest) {
                warnings.push(format!(
                    "job `{job}`: dbt rule {} ({}) matches no source of {}",
                    i + 1,
                    rule.describe(),
                    self.manifest.path.display()
                ));
            }
        }
        for upstream in after {
            let Some(subject) = &upstream.subject else { continue };
            let event = SelectionEvent {
                id: "-".into(),
                source: upstream.source.clone(),
                subject: crate::domain::Subject { id: Some(subject.clone()), name: Some(subject.clone()) },
            };
            if select(&manifest, &self.rules, &[event]).selectors.is_empty() {
                warnings.push(format!(
                    "job `{job}`: `{upstream}` maps to no dbt source; its runs are decided by when_unmapped = \"{}\"",
                    self.when_unmapped.as_str()
                ));
            }
        }
        warnings
    }

    /// For `handoff explain`: the sources one event maps to and why.
    pub fn explain(&self, event: SelectionEvent) -> String {
        match self.manifest.load() {
            Ok(manifest) => select(&manifest, &self.rules, &[event]).describe(self.when_unmapped),
            Err(err) => format!("dbt selection: {err}"),
        }
    }
}

/// An event as the mapping sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SelectionEvent {
    pub id: String,
    pub source: String,
    pub subject: crate::domain::Subject,
}

/// One dbt source an event mapped to, and by which rule (1-based, in config order).
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub event: String,
    pub subject: String,
    pub source: String,
    pub selector: String,
    pub rule: usize,
    pub why: String,
}

/// The selection for one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// `source:<src>.<table>+`, deduplicated and sorted.
    pub selectors: Vec<String>,
    pub mapped: Vec<Mapped>,
    /// Events no rule mapped to any source.
    pub unmapped: Vec<SelectionEvent>,
}

/// Maps `events` to the sources of `manifest` by `rules`. Every rule that applies to an event
/// is tried (a connector may load several schemas, each found by its own rule).
pub fn select(manifest: &Manifest, rules: &[Rule], events: &[SelectionEvent]) -> Selection {
    let mut selection = Selection::default();
    let mut selectors = BTreeSet::new();
    for event in events {
        let subjects: Vec<&str> =
            [event.subject.id.as_deref(), event.subject.name.as_deref()].into_iter().flatten().collect();
        let mut found = false;
        for (index, rule) in rules.iter().enumerate() {
            if subjects.is_empty() && (rule.meta.is_some() || rule.uses_subject()) {
                continue;
            }
            if !rule.events.matches(&event.source, &event.subject) {
                continue;
            }
            for source in manifest.sources.iter().filter(|s| rule.selects(s, &subjects)) {
                found = true;
                selectors.insert(source.selector());
                selection.mapped.push(Mapped {
                    event: event.id.clone(),
                    subject: event.subject.label(),
                    source: source.label(),
                    selector: source.selector(),
                    rule: index + 1,
                    why: rule.describe(),
                });
            }
        }
        if !found {
            selection.unmapped.push(event.clone());
        }
    }
    selection.selectors = selectors.into_iter().collect();
    selection
}

impl Rule {
    fn uses_subject(&self) -> bool {
        [&self.loader, &self.schema, &self.database, &self.source]
            .into_iter()
            .flatten()
            .any(|p| p.contains("{subject}"))
    }
}

impl Selection {
    /// What to do with it: `selected`, or the configured decision when nothing was selected.
    pub fn decision(&self, when_unmapped: WhenUnmapped) -> &'static str {
        if self.selectors.is_empty() { when_unmapped.as_str() } else { "selected" }
    }

    /// The `--select` value: the selectors joined by spaces, or [`ALL`].
    pub fn select_text(&self) -> String {
        if self.selectors.is_empty() { ALL.to_string() } else { self.selectors.join(" ") }
    }

    /// What templates see as `dbt` and the run record keeps.
    pub fn to_json(&self, when_unmapped: WhenUnmapped) -> Value {
        json!({
            "select": self.select_text(),
            "selectors": self.selectors,
            "decision": self.decision(when_unmapped),
            "sources": self.mapped.iter().map(|m| json!({
                "event": m.event, "subject": m.subject, "source": m.source, "rule": m.rule, "why": m.why,
            })).collect::<Vec<_>>(),
            "unmapped": self.unmapped.iter().map(|e| json!({
                "event": e.id, "source": e.source, "subject": e.subject.label(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The selection in lines of text, for the run record.
    pub fn describe(&self, when_unmapped: WhenUnmapped) -> String {
        let mut lines = Vec::new();
        match self.decision(when_unmapped) {
            "selected" => lines.push(format!("dbt selection: {}", self.select_text())),
            "all" => lines.push(format!("no event mapped to a dbt source: running everything ({ALL})")),
            _ => lines.push("no event mapped to a dbt source: run skipped (when_unmapped = \"skip\")".into()),
        }
        for m in &self.mapped {
            lines.push(format!("  event {} ({}) → {} by rule {} ({})", m.event, m.subject, m.source, m.rule, m.why));
        }
        for e in &self.unmapped {
            lines.push(format!("  event {} ({} {}) maps to no dbt source", e.id, e.source, e.subject.label()));
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Subject;

    fn manifest() -> Manifest {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbt/project/target/manifest.json");
        Manifest::read(&path).unwrap()
    }

    fn rule(events: &str) -> Rule {
        Rule { events: Upstream::parse(events), meta: None, loader: None, schema: None, database: None, source: None }
    }

    /// The rules docs/dbt.md shows for the test project: Stripe by its meta key, HubSpot by
    /// a schema named like the connector.
    fn rules() -> Vec<Rule> {
        vec![
            Rule { meta: Some("fivetran_connector".into()), ..rule("fivetran") },
            Rule { schema: Some("{subject}".into()), loader: Some("fivetran".into()), ..rule("fivetran") },
        ]
    }

    fn event(id: &str, source: &str, subject: &str) -> SelectionEvent {
        SelectionEvent {
            id: id.into(),
            source: source.into(),
            subject: Subject { id: Some(subject.into()), name: Some(format!("{subject} name")) },
        }
    }

    #[test]
    fn a_connector_named_in_a_sources_meta_selects_that_source_and_downstream() {
        let selection = select(&manifest(), &rules(), &[event("e1", "fivetran", "stripe_conn")]);
        assert_eq!(selection.selectors, ["source:stripe.charges+"]);
        assert_eq!(selection.mapped[0].rule, 1);
        assert!(selection.unmapped.is_empty());
    }

    #[test]
    fn a_schema_pattern_with_the_subject_selects_the_schema_the_connector_loads() {
        let selection = select(&manifest(), &rules(), &[event("e1", "fivetran", "HUBSPOT")]);
        assert_eq!(selection.selectors, ["source:hubspot.contacts+"]);
        assert_eq!(selection.mapped[0].rule, 2);
        assert_eq!(selection.mapped[0].why, "events of fivetran: loader ~ fivetran, schema ~ {subject}");
    }

    #[test]
    fn events_of_two_connectors_give_one_sorted_selection_without_duplicates() {
        let events = [
            event("e1", "fivetran", "stripe_conn"),
            event("e2", "fivetran", "hubspot"),
            event("e3", "fivetran", "stripe_conn"),
        ];
        let selection = select(&manifest(), &rules(), &events);
        assert_eq!(selection.select_text(), "source:hubspot.contacts+ source:stripe.charges+");
        assert_eq!(selection.mapped.len(), 3);
    }

    #[test]
    fn an_unknown_connector_selects_nothing_and_the_configured_decision_follows() {
        let selection = select(&manifest(), &rules(), &[event("e9", "fivetran", "salesforce")]);
        assert!(selection.selectors.is_empty());
        assert_eq!(selection.unmapped.len(), 1);
        assert_eq!(selection.decision(WhenUnmapped::Skip), "skip");
        assert_eq!(selection.decision(WhenUnmapped::All), "all");
        assert_eq!(selection.select_text(), ALL);
        let text = selection.describe(WhenUnmapped::Skip);
        assert!(text.contains("event e9 (fivetran salesforce (salesforce name)) maps to no dbt source"), "{text}");
    }

    #[test]
    fn a_rule_only_maps_events_of_its_own_source() {
        let selection = select(&manifest(), &rules(), &[event("e1", "airbyte", "stripe_conn")]);
        assert!(selection.selectors.is_empty());
    }

    #[test]
    fn a_loader_pattern_alone_selects_every_source_that_loader_writes() {
        let by_loader = vec![Rule { loader: Some("FIVE*".into()), ..rule("orchestrator") }];
        let e = SelectionEvent { id: "e".into(), source: "orchestrator".into(), subject: Subject::default() };
        let selection = select(&manifest(), &by_loader, &[e]);
        assert_eq!(selection.selectors, ["source:hubspot.contacts+", "source:stripe.charges+"]);
    }

    #[test]
    fn check_can_tell_a_rule_that_matches_no_source_of_the_project() {
        assert!(rules().iter().all(|r| r.matches_any(&manifest())));
        let stale = Rule { meta: Some("airbyte_connection".into()), ..rule("airbyte") };
        assert!(!stale.matches_any(&manifest()));
    }

    #[test]
    fn globs_match_stars_anywhere_and_ignore_case() {
        assert!(glob("raw_*", "RAW_stripe"));
        assert!(glob("*_prod", "stripe_prod"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "aXXc"));
        assert!(!glob("stripe", "stripe_old"));
    }
}
