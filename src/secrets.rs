//! Secrets: where they are read from, and the `Masker` that keeps their values out of every
//! output (terminal, JSON, errors, the cleanup ledger).
//!
//! Lookup for `secret.NAME`: the source declared in `rooftop.yaml`, else the environment
//! variable `ROOFTOP_SECRET_<NAME>` (upper-cased), else `$CREDENTIALS_DIRECTORY/NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::model::{SecretSource, encode_uri_component};

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error(
        "secret `{name}` is not configured: declare it under `secrets:` in rooftop.yaml, set ROOFTOP_SECRET_{upper}, or provide systemd credential `{name}`"
    )]
    NotFound { name: String, upper: String },
    #[error("secret `{name}`: environment variable {var} is not set")]
    EnvMissing { name: String, var: String },
    #[error("secret `{name}`: cannot read {path}: {reason}")]
    Unreadable {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("secret `{name}` is empty")]
    Empty { name: String },
}

/// Resolves secret names to values, caching what it read.
#[derive(Debug, Default)]
pub struct SecretStore {
    sources: BTreeMap<String, SecretSource>,
    env: BTreeMap<String, String>,
    credentials_dir: Option<PathBuf>,
    cache: Mutex<BTreeMap<String, String>>,
}

impl SecretStore {
    /// `env` is a snapshot of the process environment (injected so tests stay hermetic).
    pub fn new(sources: BTreeMap<String, SecretSource>, env: BTreeMap<String, String>) -> Self {
        let credentials_dir = env.get("CREDENTIALS_DIRECTORY").map(PathBuf::from);
        SecretStore {
            sources,
            env,
            credentials_dir,
            cache: Mutex::new(BTreeMap::new()),
        }
    }

    /// A store with fixed values (tests, the demo).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let store = SecretStore::default();
        if let Ok(mut c) = store.cache.lock() {
            for (k, v) in pairs {
                c.insert(k.to_string(), v.to_string());
            }
        }
        store
    }

    pub fn get(&self, name: &str) -> Result<String, SecretError> {
        if let Some(v) = self.cache.lock().ok().and_then(|c| c.get(name).cloned()) {
            return Ok(v);
        }
        let value = self.resolve(name)?;
        if value.is_empty() {
            return Err(SecretError::Empty { name: name.into() });
        }
        if let Ok(mut c) = self.cache.lock() {
            c.insert(name.to_string(), value.clone());
        }
        Ok(value)
    }

    fn resolve(&self, name: &str) -> Result<String, SecretError> {
        match self.sources.get(name) {
            Some(SecretSource::Env(var)) => {
                self.env
                    .get(var)
                    .cloned()
                    .ok_or_else(|| SecretError::EnvMissing {
                        name: name.into(),
                        var: var.clone(),
                    })
            }
            Some(SecretSource::File(path)) => read_secret_file(name, path),
            Some(SecretSource::Credential(cred)) => {
                let dir = self
                    .credentials_dir
                    .clone()
                    .ok_or_else(|| SecretError::Unreadable {
                        name: name.into(),
                        path: PathBuf::from(format!("$CREDENTIALS_DIRECTORY/{cred}")),
                        reason:
                            "CREDENTIALS_DIRECTORY is not set (is LoadCredential= in the unit?)"
                                .into(),
                    })?;
                read_secret_file(name, &dir.join(cred))
            }
            None => {
                let upper = name.to_ascii_uppercase();
                if let Some(v) = self.env.get(&format!("ROOFTOP_SECRET_{upper}")) {
                    return Ok(v.clone());
                }
                if let Some(dir) = &self.credentials_dir {
                    let p = dir.join(name);
                    if p.is_file() {
                        return read_secret_file(name, &p);
                    }
                }
                Err(SecretError::NotFound {
                    name: name.into(),
                    upper,
                })
            }
        }
    }
}

fn read_secret_file(name: &str, path: &Path) -> Result<String, SecretError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
        .map_err(|e| SecretError::Unreadable {
            name: name.into(),
            path: path.to_path_buf(),
            reason: e.kind().to_string(),
        })
}

/// Replaces every known secret value with `***`. Shared by everything a run outputs.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Arc<Mutex<Vec<String>>>,
}

impl Masker {
    /// Registers a secret, with the forms it takes on the way out: percent-encoded (in a
    /// URL) and JSON-escaped (in a body or a stored value).
    pub fn add(&self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let json = serde_json::to_string(secret).unwrap_or_default();
        let forms = [
            secret.to_string(),
            encode_uri_component(secret),
            json.trim_matches('"').to_string(),
        ];
        if let Ok(mut v) = self.values.lock() {
            for f in forms {
                if !f.is_empty() && !v.contains(&f) {
                    v.push(f);
                }
            }
            // Longest first so a secret containing another is masked whole.
            v.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn mask(&self, text: &str) -> String {
        let Ok(values) = self.values.lock() else {
            return "*** (masking unavailable)".to_string();
        };
        let mut out = text.to_string();
        for s in values.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    /// True when `text` contains a secret value.
    pub fn reveals(&self, text: &str) -> bool {
        self.values
            .lock()
            .map(|v| v.iter().any(|s| text.contains(s.as_str())))
            .unwrap_or(true)
    }

    /// Masks every string in a JSON value.
    pub fn mask_value(&self, v: &serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match v {
            Value::String(s) => Value::String(self.mask(s)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.mask_value(x)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.mask_value(x)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_order_and_errors() {
        let mut env = BTreeMap::new();
        env.insert("ROOFTOP_SECRET_CRM_TOKEN".into(), "from-env".into());
        env.insert("DMS".into(), "dms-value".into());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("survey.token"), "file-value\n").unwrap();
        let mut sources = BTreeMap::new();
        sources.insert("dms".into(), SecretSource::Env("DMS".into()));
        sources.insert(
            "survey".into(),
            SecretSource::File(dir.path().join("survey.token")),
        );
        sources.insert("gone".into(), SecretSource::Env("NOT_SET".into()));
        let store = SecretStore::new(sources, env);
        assert_eq!(store.get("crm_token").unwrap(), "from-env");
        assert_eq!(store.get("dms").unwrap(), "dms-value");
        assert_eq!(store.get("survey").unwrap(), "file-value");
        assert!(matches!(
            store.get("gone"),
            Err(SecretError::EnvMissing { .. })
        ));
        assert!(matches!(
            store.get("other"),
            Err(SecretError::NotFound { .. })
        ));
    }

    #[test]
    fn systemd_credentials_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("crm_token"), "cred-value").unwrap();
        let mut env = BTreeMap::new();
        env.insert(
            "CREDENTIALS_DIRECTORY".into(),
            dir.path().display().to_string(),
        );
        let store = SecretStore::new(BTreeMap::new(), env);
        assert_eq!(store.get("crm_token").unwrap(), "cred-value");
    }

    #[test]
    fn masker_masks_encoded_forms() {
        let m = Masker::default();
        m.add("ab+c/d=\"q");
        assert_eq!(m.mask("?k=ab%2Bc%2Fd%3D%22q"), "?k=***");
        assert_eq!(m.mask(r#"{"k":"ab+c/d=\"q"}"#), r#"{"k":"***"}"#);
    }

    #[test]
    fn masker_masks_longest_first() {
        let m = Masker::default();
        m.add("abc");
        m.add("abcdef");
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
        assert!(m.reveals("..abc.."));
        assert!(!m.reveals("..ab.."));
    }
}
