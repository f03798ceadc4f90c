//! Templating (minijinja) for probe values: `env.*`, `secret.*`, `synthetic.*()`, `run.*`,
//! vars and captures, plus the static analysis `validate` uses to find unknown names.
//!
//! Rendering is strict: an undefined name is an error, never an empty string. Every secret
//! value read during a render is registered with the run's `Masker`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use minijinja::value::{Object, Value as JValue};
use minijinja::{Environment, Error as JError, ErrorKind, State, UndefinedBehavior};
use serde_json::Value;

use crate::secrets::{Masker, SecretStore};
use crate::synthetic::Synthetic;

/// Names every template may use besides vars and captures.
pub const RESERVED: [&str; 4] = ["env", "secret", "synthetic", "run"];

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Values go into URLs, headers and JSON, never HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

/// Checks template syntax and returns the dotted names it reads (`env.CRM_URL`, `ro`).
pub fn analyze(source: &str) -> Result<BTreeSet<String>, String> {
    if !source.contains("{{") && !source.contains("{%") {
        return Ok(BTreeSet::new());
    }
    let env = environment();
    let tmpl = env.template_from_str(source).map_err(|e| {
        let detail = e.detail().unwrap_or("invalid template");
        format!("template syntax error: {detail}")
    })?;
    // Filters and tests are looked up when rendering: render once with every name
    // undefined (chainable) so a misspelt filter is a config error, not a failing run.
    let mut lenient = environment();
    lenient.set_undefined_behavior(UndefinedBehavior::Chainable);
    if let Err(e) = lenient.render_str(source, ())
        && matches!(
            e.kind(),
            ErrorKind::UnknownFilter | ErrorKind::UnknownTest | ErrorKind::UnknownFunction
        )
    {
        let detail = e.detail().unwrap_or("unknown name");
        return Err(format!("template error: {} ({detail})", e.kind()));
    }
    Ok(tmpl.undeclared_variables(true).into_iter().collect())
}

pub use crate::model::string_leaves;

/// Why a render failed; the message never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RenderError(pub String);

/// The per-run template context: reserved objects plus vars and captures.
#[derive(Clone)]
pub struct Context {
    env: Arc<BTreeMap<String, String>>,
    secrets: Arc<SecretStore>,
    synthetic: Arc<Synthetic>,
    run: JValue,
    values: BTreeMap<String, Value>,
    masker: Masker,
}

impl Context {
    pub fn new(
        env: Arc<BTreeMap<String, String>>,
        secrets: Arc<SecretStore>,
        synthetic: Arc<Synthetic>,
        run_id: &str,
        probe: &str,
        masker: Masker,
    ) -> Self {
        let mut run = BTreeMap::new();
        run.insert("id".to_string(), JValue::from(run_id));
        run.insert("probe".to_string(), JValue::from(probe));
        Context {
            env,
            secrets,
            synthetic,
            run: JValue::from(run),
            values: BTreeMap::new(),
            masker,
        }
    }

    /// Adds a var or capture.
    pub fn set(&mut self, name: &str, value: Value) {
        self.values.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }

    /// Vars and captures (for the cleanup ledger); secret values never reach here unmasked
    /// because captures are masked on the way in.
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }

    /// When a template reads a secret that cannot be resolved, the reason (never the value).
    pub fn secret_problem(&self, source: &str) -> Option<String> {
        let names = analyze(source).ok()?;
        names
            .iter()
            .filter_map(|n| n.strip_prefix("secret."))
            .find_map(|name| self.secrets.get(name).err().map(|e| e.to_string()))
    }

    pub fn masker(&self) -> &Masker {
        &self.masker
    }

    fn jinja_context(&self) -> JValue {
        let mut ctx: BTreeMap<String, JValue> = self
            .values
            .iter()
            .map(|(k, v)| (k.clone(), JValue::from(minijinja::value::Serde(v))))
            .collect();
        ctx.insert(
            "env".into(),
            JValue::from_object(EnvObject(self.env.clone())),
        );
        ctx.insert(
            "secret".into(),
            JValue::from_object(SecretObject {
                store: self.secrets.clone(),
                masker: self.masker.clone(),
            }),
        );
        ctx.insert(
            "synthetic".into(),
            JValue::from_object(SyntheticObject(self.synthetic.clone())),
        );
        ctx.insert("run".into(), self.run.clone());
        JValue::from(ctx)
    }

    /// Renders one template string.
    pub fn render(&self, source: &str) -> Result<String, RenderError> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_string());
        }
        let env = environment();
        env.render_str(source, self.jinja_context())
            .map_err(|e| RenderError(self.masker.mask(&describe(&e))))
    }

    /// Evaluates one expression to a typed JSON value.
    pub fn eval(&self, expr: &str) -> Result<Value, RenderError> {
        let env = environment();
        let compiled = env
            .compile_expression(expr)
            .map_err(|e| RenderError(self.masker.mask(&describe(&e))))?;
        let out = compiled
            .eval(self.jinja_context())
            .map_err(|e| RenderError(self.masker.mask(&describe(&e))))?;
        if out.is_undefined() {
            return Err(RenderError(format!("`{expr}` is undefined")));
        }
        serde_json::to_value(&out).map_err(|e| RenderError(format!("`{expr}`: {e}")))
    }

    /// Renders every string leaf of a JSON value. A leaf that is exactly one `{{ expr }}`
    /// keeps the type of the expression's value (number, bool, list), so
    /// `"{{ price | float }}"` sends a JSON number.
    pub fn render_value(&self, v: &Value) -> Result<Value, RenderError> {
        Ok(match v {
            Value::String(s) => match sole_expression(s) {
                Some(expr) => self.eval(expr)?,
                None => Value::String(self.render(s)?),
            },
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.render_value(x))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    out.insert(k.clone(), self.render_value(x)?);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// `{{ expr }}` with nothing else around it → `expr`.
fn sole_expression(s: &str) -> Option<&str> {
    let inner = s.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    // Whitespace-control markers (`{{- x -}}`) are not part of the expression.
    let inner = inner.strip_prefix(['-', '+']).unwrap_or(inner);
    let inner = inner.strip_suffix(['-', '+']).unwrap_or(inner);
    (!inner.contains("{{") && !inner.contains("}}") && !inner.trim().is_empty())
        .then_some(inner.trim())
}

fn describe(e: &JError) -> String {
    match e.kind() {
        ErrorKind::UndefinedError => {
            let detail = e.detail().unwrap_or("");
            if detail.is_empty() {
                "template uses an undefined value".to_string()
            } else {
                format!("template uses an undefined value: {detail}")
            }
        }
        _ => match e.detail() {
            Some(d) => format!("template error: {d}"),
            None => format!("template error: {}", e.kind()),
        },
    }
}

#[derive(Debug)]
struct EnvObject(Arc<BTreeMap<String, String>>);

impl Object for EnvObject {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let key = key.as_str()?;
        self.0.get(key).map(|v| JValue::from(v.as_str()))
    }
}

#[derive(Debug)]
struct SecretObject {
    store: Arc<SecretStore>,
    masker: Masker,
}

impl Object for SecretObject {
    fn get_value(self: &Arc<Self>, key: &JValue) -> Option<JValue> {
        let name = key.as_str()?;
        // A missing secret renders as undefined (a strict error); `secret_problem` explains.
        let v = self.store.get(name).ok()?;
        self.masker.add(&v);
        Some(JValue::from(v))
    }
}

#[derive(Debug)]
struct SyntheticObject(Arc<Synthetic>);

impl Object for SyntheticObject {
    fn call_method(
        self: &Arc<Self>,
        _state: &mut State<'_, '_>,
        method: &str,
        args: &[JValue],
    ) -> Result<JValue, JError> {
        if !args.is_empty() {
            return Err(JError::new(
                ErrorKind::TooManyArguments,
                format!("synthetic.{method}() takes no arguments"),
            ));
        }
        self.0.generate(method).map(JValue::from).ok_or_else(|| {
            JError::new(
                ErrorKind::UnknownMethod,
                format!(
                    "synthetic.{method}() does not exist; use one of {}",
                    crate::synthetic::HELPERS.join(", ")
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context {
        let mut env = BTreeMap::new();
        env.insert("CRM_URL".to_string(), "http://127.0.0.1:1/crm".to_string());
        let secrets = SecretStore::from_pairs([("crm_token", "s3cr3t-canary")]);
        Context::new(
            Arc::new(env),
            Arc::new(secrets),
            Arc::new(Synthetic::new("run-1")),
            "run-1",
            "p",
            Masker::default(),
        )
    }

    #[test]
    fn renders_env_secret_and_values() {
        let mut c = ctx();
        c.set("appointment_id", json!("APT-1"));
        let out = c
            .render("{{ env.CRM_URL }}/api/appointments/{{ appointment_id }}")
            .unwrap();
        assert_eq!(out, "http://127.0.0.1:1/crm/api/appointments/APT-1");
        let auth = c.render("Bearer {{ secret.crm_token }}").unwrap();
        assert_eq!(auth, "Bearer s3cr3t-canary");
        assert_eq!(c.masker().mask(&auth), "Bearer ***");
    }

    #[test]
    fn undefined_names_are_errors_not_empty() {
        let c = ctx();
        assert!(c.render("{{ env.NOPE }}").is_err());
        assert!(c.render("{{ nope }}").is_err());
        assert!(c.render("{{ secret.missing }}").is_err());
    }

    #[test]
    fn synthetic_helpers_are_callable() {
        let c = ctx();
        let vin = c.render("{{ synthetic.vin() }}").unwrap();
        assert_eq!(vin.len(), 17);
        assert!(c.render("{{ synthetic.bogus() }}").is_err());
        assert!(c.render("{{ run.id }}").unwrap() == "run-1");
    }

    #[test]
    fn sole_variable_keeps_type() {
        let mut c = ctx();
        c.set("price", json!(129.5));
        c.set("text_price", json!("12.25"));
        let v = c
            .render_value(
                &json!({"p": "{{ price }}", "s": "x{{ price }}", "f": "{{ text_price | float }}"}),
            )
            .unwrap();
        assert_eq!(v, json!({"p": 129.5, "s": "x129.5", "f": 12.25}));
        assert!(c.render_value(&json!("{{ missing }}")).is_err());
        assert_eq!(
            c.render_value(&json!("{{- price -}}")).unwrap(),
            json!(129.5)
        );
    }

    #[test]
    fn analysis_lists_dotted_names() {
        let names = analyze("{{ env.CRM_URL }}/{{ ro }}/{{ synthetic.vin() }}").unwrap();
        assert!(names.contains("env.CRM_URL"), "{names:?}");
        assert!(names.contains("ro"));
        assert!(names.iter().any(|n| n.starts_with("synthetic")));
        assert!(analyze("{{ unclosed").is_err());
        let typo = analyze("{{ price | flaot }}").unwrap_err();
        assert!(typo.contains("flaot"), "{typo}");
        assert!(analyze("{{ price | float }}").is_ok());
    }
}
