//! Secret references: `{ env = "NAME" }` or `{ file = "/run/secrets/x" }`.
//!
//! The config text names where a secret lives, never the secret itself. References are
//! resolved once, at load; the resolved value is kept in a `SecretString`, which
//! redacts itself in `Debug` and is zeroed on drop. Nothing here prints a value.
//! A config loaded for its shape only ([`Secrets::Skip`]) reads no secret: each reference is
//! checked for its form and stands for a random value that nothing accepts.

use secrecy::SecretString;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

thread_local! {
    /// The environment variables secrets were read from while a config is being parsed.
    static READ_FROM: RefCell<Option<BTreeSet<String>>> = const { RefCell::new(None) };
}

/// Runs `parse` and returns, besides its result, every environment variable a secret was
/// read from meanwhile (on this thread: parsing is synchronous). Commands never inherit those
/// unless an action names them one by one, so a program that prints its environment cannot
/// put a secret into a run's output; collecting them here covers every secret reference of
/// the config, whichever part of it holds one.
pub(super) fn recording_env_names<T>(parse: impl FnOnce() -> T) -> (T, BTreeSet<String>) {
    let outer = READ_FROM.with(|r| r.replace(Some(BTreeSet::new())));
    let result = parse();
    let names = READ_FROM.with(|r| r.replace(outer)).unwrap_or_default();
    (result, names)
}

/// What loading a config does with its secret references.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Secrets {
    /// Read every secret and check its value (`serve`, `check`, the verbs).
    #[default]
    Resolve,
    /// Check each reference's form, read none (the read commands, `check --no-secrets`): a
    /// missing variable or file is no error. Such a config must never serve.
    Skip,
}

/// What an unread secret stands for: random, so nothing it guards can be passed with it.
/// Long enough, and shaped like a Standard Webhooks secret, to pass the checks on values.
pub(super) fn stand_in() -> SecretString {
    use base64::Engine;
    let bytes: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..)).take(32).collect();
    SecretString::from(format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes)))
}

/// Where a secret is read from, as written in the config file.
#[derive(Debug, Clone)]
pub struct SecretRef {
    /// Name of an environment variable that holds the secret.
    pub env: Option<String>,
    /// Path of a file that holds the secret (trailing newlines are stripped); relative
    /// paths are relative to the config file's folder.
    pub file: Option<PathBuf>,
}

/// The reference table as written: `{ env = "NAME" }` or `{ file = "PATH" }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSecretRef {
    /// Name of an environment variable that holds the secret.
    env: Option<String>,
    /// Path of a file that holds the secret.
    file: Option<PathBuf>,
}

/// What a reference error says when something other than a table was written. It never
/// repeats the value: a secret pasted into the file must not reach a terminal or a CI log.
pub const NOT_A_REFERENCE: &str =
    "a secret must be a reference, not a value written in the config (the value is not shown)";

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SecretRefVisitor)
    }
}

struct SecretRefVisitor;

impl SecretRefVisitor {
    fn refuse<E: serde::de::Error>(self) -> Result<SecretRef, E> {
        Err(E::custom(NOT_A_REFERENCE))
    }
}

/// Every form but a table is refused with [`NOT_A_REFERENCE`]; serde's own message would
/// quote the value (`invalid type: string "hunter2…"`).
impl<'de> serde::de::Visitor<'de> for SecretRefVisitor {
    type Value = SecretRef;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"a secret reference: { env = "NAME" } or { file = "PATH" }"#)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
        let table = FileSecretRef::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(SecretRef { env: table.env, file: table.file })
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_bytes<E: serde::de::Error>(self, _: &[u8]) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretRef, E> {
        self.refuse()
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SecretRef, A::Error> {
        self.refuse()
    }
}

/// The most a secret file may hold. Real secrets are well under a kilobyte; the bound keeps a
/// reference to `/dev/zero` or a huge file from eating memory at start.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Reads a secret file: a regular file (a symlink to one is fine, as Kubernetes mounts them) of
/// at most [`MAX_SECRET_FILE`] bytes. A device or a pipe (`/dev/stdin`) would block or never end.
fn read_secret_file(full: &Path) -> Result<String, SecretError> {
    use std::io::Read;
    let cannot = |err: std::io::Error| SecretError {
        message: format!("cannot read secret file {}: {err}", full.display()),
        hint: "check the path and that handoff's user may read it (relative paths start at the config file's folder)"
            .into(),
    };
    let file = std::fs::File::open(full).map_err(cannot)?;
    if !file.metadata().map_err(cannot)?.is_file() {
        return Err(SecretError {
            message: format!("secret file {} is not a regular file", full.display()),
            hint: "point the reference at a file that holds the secret (a device or a pipe is not read)".into(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(SecretError {
            message: format!("secret file {} is larger than {} KiB", full.display(), MAX_SECRET_FILE / 1024),
            hint: "a secret file holds the secret alone; check the path".into(),
        });
    }
    String::from_utf8(bytes).map_err(|_| SecretError {
        message: format!("secret file {} is not UTF-8 text", full.display()),
        hint: "write the secret as text (hex or base64 if it is binary)".into(),
    })
}

/// Why a reference could not be resolved; `hint` tells the user what to do.
#[derive(Debug)]
pub struct SecretError {
    pub message: String,
    pub hint: String,
}

impl SecretRef {
    /// `env NAME` or `file PATH`: safe to print, it names no value.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(name), _) => format!("env {name}"),
            (None, Some(path)) => format!("file {}", path.display()),
            (None, None) => "nothing".to_string(),
        }
    }

    /// Checks that the reference names exactly one place, without reading it.
    pub fn check_form(&self) -> Result<(), SecretError> {
        match (&self.env, &self.file) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(SecretError {
                message: "a secret reference needs exactly one of `env` or `file`".into(),
                hint: r#"write secret = { env = "NAME" } or secret = { file = "/run/secrets/name" }"#.into(),
            }),
        }
    }

    /// Reads the secret (`Resolve`), or checks the reference's form and gives a [`stand_in`]
    /// (`Skip`). `base` is the config file's folder.
    pub fn read(&self, base: &Path, secrets: Secrets) -> Result<SecretString, SecretError> {
        match secrets {
            Secrets::Resolve => self.resolve(base),
            Secrets::Skip => {
                self.check_form()?;
                self.record_env_name();
                Ok(stand_in())
            }
        }
    }

    /// Notes the variable a secret comes from, for [`recording_env_names`].
    fn record_env_name(&self) {
        if let Some(name) = &self.env {
            READ_FROM.with(|r| r.borrow_mut().as_mut().map(|names| names.insert(name.clone())));
        }
    }

    /// Reads the secret. `base` is the config file's folder.
    pub fn resolve(&self, base: &Path) -> Result<SecretString, SecretError> {
        self.check_form()?;
        let value = match (&self.env, &self.file) {
            (Some(name), None) => {
                self.record_env_name();
                std::env::var(name).map_err(|err| SecretError {
                    message: match err {
                        std::env::VarError::NotPresent => format!("environment variable {name} is not set"),
                        std::env::VarError::NotUnicode(_) => format!("environment variable {name} is not valid UTF-8"),
                    },
                    hint: format!("export {name}=... before starting handoff, or point this secret at a file"),
                })?
            }
            (_, Some(path)) => {
                let full = base.join(path);
                read_secret_file(&full)?
            }
            (None, None) => unreachable!("check_form refused a reference to nothing"),
        };
        // Files written by `echo` or editors end with a newline; it is never part of a secret.
        let trimmed = value.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            return Err(SecretError {
                message: format!("the secret is empty (from {})", self.describe()),
                hint: "an empty secret would accept anyone; set a long random value".into(),
            });
        }
        crate::redact::remember(trimmed);
        Ok(SecretString::from(trimmed.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> SecretRef {
        SecretRef { env: None, file: Some(PathBuf::from(path)) }
    }

    #[test]
    fn a_device_or_a_huge_file_is_refused_rather_than_read() {
        let dir = tempfile::tempdir().unwrap();
        let err = file("/dev/zero").resolve(dir.path()).unwrap_err();
        assert!(err.message.contains("/dev/zero is not a regular file"), "{}", err.message);

        std::fs::write(dir.path().join("big"), vec![b'a'; 100 * 1024]).unwrap();
        let err = file("big").resolve(dir.path()).unwrap_err();
        assert!(err.message.contains("larger than 64 KiB"), "{}", err.message);

        std::fs::write(dir.path().join("ok"), "a-long-enough-secret-value\n").unwrap();
        let secret = file("ok").resolve(dir.path()).unwrap();
        assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), "a-long-enough-secret-value");
    }
}
