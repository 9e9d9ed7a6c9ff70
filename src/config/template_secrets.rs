//! `[secrets]`: secret references named once and used in templates as `{{ secrets.NAME }}`.
//!
//! Each is read like every other secret reference (or stands in for one under `--no-secrets`);
//! a template that names an undeclared secret fails `handoff check` because the sample context
//! holds exactly the declared names.

use super::{Problems, SecretRef};
use crate::actions::secrets::TemplateSecrets;
use std::collections::BTreeMap;
use std::path::Path;
use toml::Spanned;

/// Builds the `[secrets]` table; a reference that cannot be read is reported at its line.
pub(super) fn build(
    problems: &mut Problems<'_>,
    base: &Path,
    table: &BTreeMap<String, Spanned<SecretRef>>,
) -> TemplateSecrets {
    let mut values = BTreeMap::new();
    for (name, reference) in table {
        let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !identifier {
            problems.add(
                Some(reference.span()),
                format!("secret name `{name}` cannot be written in a template"),
                Some("use letters, digits and _, e.g. tableau_pat = { env = \"TABLEAU_PAT\" }".into()),
            );
            continue;
        }
        match reference.get_ref().read(base, problems.secrets) {
            Ok(value) => {
                values.insert(name.clone(), value);
            }
            Err(e) => problems.add(Some(reference.span()), format!("secrets.{name}: {}", e.message), Some(e.hint)),
        }
    }
    TemplateSecrets::new(values)
}
