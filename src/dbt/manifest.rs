//! The part of dbt's `manifest.json` handoff needs: each source table with its schema,
//! database, `loader` and `meta`. Only these fields are read, every one optional, so the
//! manifests of other dbt versions (v10 to v12 and later) read the same.

use super::DbtError;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// One source table of the project (`source:<source_name>.<name>` in dbt's selector syntax).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DbtSource {
    pub unique_id: String,
    pub source_name: String,
    pub name: String,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub database: Option<String>,
    #[serde(default)]
    pub loader: Option<String>,
    /// The table's `meta`, which dbt merges with its source's.
    #[serde(default)]
    pub meta: Map<String, Value>,
    /// The source's own `meta` (older manifests keep it apart from the table's).
    #[serde(default)]
    pub source_meta: Map<String, Value>,
}

impl DbtSource {
    /// The dbt selector for this table and everything downstream of it.
    pub fn selector(&self) -> String {
        format!("source:{}.{}+", self.source_name, self.name)
    }

    /// `source_name.name`, as people say it.
    pub fn label(&self) -> String {
        format!("{}.{}", self.source_name, self.name)
    }

    /// The `meta` value under `key`, the table's first, as text.
    pub fn meta_text(&self, key: &str) -> Vec<String> {
        let value = self.meta.get(key).or_else(|| self.source_meta.get(key));
        match value {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(scalar_text).collect(),
            Some(other) => scalar_text(other).into_iter().collect(),
            None => Vec::new(),
        }
    }
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A project's sources, sorted by unique id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Manifest {
    pub sources: Vec<DbtSource>,
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(default)]
    sources: BTreeMap<String, Value>,
}

impl Manifest {
    pub fn parse(text: &str, path: &str) -> Result<Manifest, DbtError> {
        let parse_error = |source| DbtError::Parse { path: path.to_string(), artifact: "manifest", source };
        let raw: RawManifest = serde_json::from_str(text).map_err(parse_error)?;
        let mut sources = Vec::new();
        for value in raw.sources.into_values() {
            // A disabled or odd entry is left out rather than failing the whole project.
            if let Ok(source) = serde_json::from_value::<DbtSource>(value) {
                sources.push(source);
            }
        }
        sources.sort_by(|a, b| a.unique_id.cmp(&b.unique_id));
        Ok(Manifest { sources })
    }

    pub fn read(path: &Path) -> Result<Manifest, DbtError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| DbtError::Read { path: shown.clone(), source })?;
        Manifest::parse(&text, &shown)
    }
}

/// A manifest on disk, read again whenever its modification time changes (a deploy that runs
/// `dbt parse` updates it while the server runs).
#[derive(Debug)]
pub struct ManifestFile {
    pub path: PathBuf,
    cached: Mutex<Option<(SystemTime, Arc<Manifest>)>>,
}

impl ManifestFile {
    pub fn new(path: PathBuf) -> ManifestFile {
        ManifestFile { path, cached: Mutex::new(None) }
    }

    /// The manifest as it is on disk now.
    pub fn load(&self) -> Result<Arc<Manifest>, DbtError> {
        let shown = self.path.display().to_string();
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .map_err(|source| DbtError::Read { path: shown, source })?;
        let mut cached = self.cached.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((at, manifest)) = cached.as_ref()
            && *at == modified
        {
            return Ok(manifest.clone());
        }
        let manifest = Arc::new(Manifest::read(&self.path)?);
        *cached = Some((modified, manifest.clone()));
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn committed() -> Manifest {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dbt/project/target/manifest.json");
        Manifest::read(&path).unwrap()
    }

    #[test]
    fn the_committed_manifest_lists_both_connectors_sources_with_their_loader_and_meta() {
        let manifest = committed();
        let labels: Vec<String> = manifest.sources.iter().map(DbtSource::label).collect();
        assert_eq!(labels, ["hubspot.contacts", "stripe.charges"]);
        let stripe = &manifest.sources[1];
        assert_eq!(stripe.schema.as_deref(), Some("stripe"));
        assert_eq!(stripe.loader.as_deref(), Some("fivetran"));
        assert_eq!(stripe.meta_text("fivetran_connector"), ["stripe_conn"]);
        assert_eq!(stripe.selector(), "source:stripe.charges+");
    }

    #[test]
    fn a_manifest_with_only_the_fields_handoff_reads_is_enough() {
        let text = r#"{"metadata": {"dbt_schema_version": "v9"}, "sources": {
            "source.p.s.t": {"unique_id": "source.p.s.t", "source_name": "s", "name": "t"},
            "odd": 42}}"#;
        let manifest = Manifest::parse(text, "m.json").unwrap();
        assert_eq!(manifest.sources.len(), 1);
        assert_eq!(manifest.sources[0].selector(), "source:s.t+");
    }

    #[test]
    fn a_file_that_is_not_json_says_which_file_and_why() {
        let err = Manifest::parse("not json", "dbt/target/manifest.json").unwrap_err();
        assert!(err.to_string().starts_with("dbt/target/manifest.json is not a dbt manifest"), "{err}");
    }

    #[test]
    fn a_changed_manifest_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let one = r#"{"sources": {"a": {"unique_id": "a", "source_name": "s", "name": "one"}}}"#;
        std::fs::write(&path, one).unwrap();
        let file = ManifestFile::new(path.clone());
        assert_eq!(file.load().unwrap().sources[0].name, "one");
        let two = r#"{"sources": {"a": {"unique_id": "a", "source_name": "s", "name": "two"}}}"#;
        std::fs::write(&path, two).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        std::fs::File::options().write(true).open(&path).unwrap().set_modified(later).unwrap();
        assert_eq!(file.load().unwrap().sources[0].name, "two");
    }
}
