//! Secrets: where they are read from, and the `Masker` that keeps their values out of every
//! output (terminal, JSON, errors, the cleanup ledger).
//!
//! Lookup for `secret.NAME`: the source declared in `rooftop.yaml`, else the environment
//! variable `ROOFTOP_SECRET_<NAME>` (upper-cased), else `$CREDENTIALS_DIRECTORY/NAME`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::model::{SecretSource, encode_uri_component, escape_html};

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

/// What minijinja's `urlencode` filter leaves alone (it keeps `/`, encodes `~`).
const TEMPLATE_URLENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_');
/// What a URL parser (WHATWG, the `url` crate under reqwest) encodes in a query...
const URL_QUERY: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'<').add(b'>');
/// ...in an http(s) query...
const URL_SPECIAL_QUERY: &AsciiSet = &URL_QUERY.add(b'\'');
/// ...in a path...
const URL_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'#')
    .add(b'?')
    .add(b'{')
    .add(b'}');
/// ...and in the user-info part.
const URL_USERINFO: &AsciiSet = &URL_PATH
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// The shortest secret whose base64 forms are masked: shorter ones would match
/// unrelated text.
const MIN_BASE64_MASKED: usize = 6;

/// Every form `secret` can take on its way into an output: as is; percent-encoded as an
/// URI component (upper- and lower-case hex), by the template `urlencode` filter, by a
/// URL parser in a path, query or user-info, and as a form field; JSON-escaped (also
/// with `\/`); HTML-escaped; base64 (standard and URL-safe, unpadded). A server that
/// echoes a request quotes one of these, never just the raw value.
fn secret_forms(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let uri = encode_uri_component(secret);
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json.trim_matches('"').to_string();
    let mut forms = vec![
        secret.to_string(),
        lowercase_hex(&uri),
        uri,
        utf8_percent_encode(secret, TEMPLATE_URLENCODE).to_string(),
        utf8_percent_encode(secret, URL_QUERY).to_string(),
        utf8_percent_encode(secret, URL_SPECIAL_QUERY).to_string(),
        utf8_percent_encode(secret, URL_PATH).to_string(),
        utf8_percent_encode(secret, URL_USERINFO).to_string(),
        form_urlencoded::byte_serialize(secret.as_bytes()).collect(),
        json.replace('/', "\\/"),
        json,
        escape_html(secret),
        escape_html(secret).replace('\'', "&#39;"),
        escape_html(secret).replace('\'', "&#x27;"),
    ];
    if secret.len() >= MIN_BASE64_MASKED {
        forms.push(base64(secret.as_bytes(), BASE64_STANDARD));
        forms.push(base64(secret.as_bytes(), BASE64_URL_SAFE));
    }
    dedup(forms)
}

/// The forms of `user` and `secret` sent together: HTTP Basic `base64(user:secret)` and
/// SMTP `AUTH PLAIN` `base64(\0user\0secret)`, each standard and URL-safe, unpadded
/// (a padded one contains it). The secret's own forms are [`secret_forms`].
fn basic_auth_forms(user: &str, secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let pairs = [format!("{user}:{secret}"), format!("\0{user}\0{secret}")];
    dedup(
        pairs
            .iter()
            .flat_map(|p| {
                [
                    base64(p.as_bytes(), BASE64_STANDARD),
                    base64(p.as_bytes(), BASE64_URL_SAFE),
                ]
            })
            .collect(),
    )
}

fn dedup(forms: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(forms.len());
    for f in forms {
        if !f.is_empty() && !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// `%2F` → `%2f`: some encoders write lower-case hex.
fn lowercase_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex_left = 2;
            out.push(c);
        } else if hex_left > 0 {
            hex_left -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

const BASE64_STANDARD: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_URL_SAFE: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// RFC 4648 base64 without padding.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Replaces every known secret value with `***`. Shared by everything a run outputs.
#[derive(Clone, Default)]
pub struct Masker {
    values: Arc<Mutex<Vec<String>>>,
}

/// The count of forms, never the values: a `Masker` inside a debug-printed struct must
/// not print the secrets it hides.
impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.values.lock().map(|v| v.len()).unwrap_or(0);
        write!(f, "Masker({n} forms)")
    }
}

impl Masker {
    /// Registers a secret, with the forms it takes on the way out ([`secret_forms`]):
    /// percent-encoded the ways URLs, templates and forms encode it, JSON- and
    /// HTML-escaped, base64.
    pub fn add(&self, secret: &str) {
        self.add_forms(secret_forms(secret));
    }

    /// Registers a secret sent as `Basic base64(user:secret)` (or SMTP `AUTH PLAIN`):
    /// those encodings of the pair too ([`basic_auth_forms`]).
    pub fn add_basic(&self, user: &str, secret: &str) {
        self.add_forms(secret_forms(secret));
        self.add_forms(basic_auth_forms(user, secret));
    }

    fn add_forms(&self, forms: Vec<String>) {
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
        self.mask_with(text, "***")
    }

    /// `text` with every known secret form replaced by `mark`.
    pub fn mask_with(&self, text: &str, mark: &str) -> String {
        let Ok(values) = self.values.lock() else {
            return format!("{mark} (masking unavailable)");
        };
        let mut out = text.to_string();
        for s in values.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), mark);
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
    fn base64_matches_the_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes(), BASE64_STANDARD), encoded);
        }
        assert_eq!(base64(b"\xfb\xff", BASE64_URL_SAFE), "-_8");
    }

    /// Found by the secret canaries (tests/secret_canary.rs): a server echoing a request
    /// quotes the secret as the URL parser, the `urlencode` filter or a form encoded it,
    /// and those forms went out unmasked.
    #[test]
    fn masker_masks_what_urls_templates_and_forms_make_of_a_secret() {
        let m = Masker::default();
        let secret = "tok=a b+c/~'";
        m.add(secret);
        for (what, text) in [
            ("a URL path", "GET /x/tok=a%20b+c/~'/y"),
            ("an http query", "?k=tok=a%20b+c/~%27&z"),
            ("an URI component", "tok%3Da%20b%2Bc%2F~%27"),
            ("lower-case hex", "tok%3da%20b%2bc%2f~%27"),
            ("the urlencode filter", "tok%3Da%20b%2Bc/%7E%27"),
            ("a form field", "k=tok%3Da+b%2Bc%2F%7E%27&"),
            ("JSON with \\/", r#"{"k":"tok=a b+c\/~'"}"#),
            ("HTML", "<p>tok=a b+c/~&#39;</p>"),
            ("base64", "Y=dG9rPWEgYitjL34n"),
        ] {
            let masked = m.mask(text);
            assert!(!masked.contains("tok"), "{what}: {masked}");
            assert!(masked.contains("***"), "{what}: {masked}");
        }
    }

    #[test]
    fn masker_masks_basic_and_smtp_plain_credentials() {
        let m = Masker::default();
        m.add_basic("AC123", "s3cr3t-token");
        // base64("AC123:s3cr3t-token"), base64("\0AC123\0s3cr3t-token")
        let basic = "Authorization: Basic QUMxMjM6czNjcjN0LXRva2Vu";
        assert_eq!(m.mask(basic), "Authorization: Basic ***");
        let plain = "535 for `AUTH PLAIN AEFDMTIzAHMzY3IzdC10b2tlbg==`";
        assert_eq!(m.mask(plain), "535 for `AUTH PLAIN ***==`");
        assert!(!m.reveals("AC123"), "the user is no secret");
    }

    #[test]
    fn short_secrets_mask_no_base64_lookalikes() {
        let forms = secret_forms("abc");
        assert!(
            !forms.contains(&base64(b"abc", BASE64_STANDARD)),
            "{forms:?}"
        );
        assert!(secret_forms("").is_empty());
        assert!(basic_auth_forms("u", "").is_empty());
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
