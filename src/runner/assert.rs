//! Evaluating `expect` / `until` conditions and captures against a response.
//!
//! JSONPath queries follow RFC 9535 (serde_json_path). A query selecting one node compares
//! that node; several nodes compare as an array; none means "absent".

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::http::Response;
use crate::model::{AssertionResult, ErrorClass};
use crate::model::{Capture, CaptureSource, Expect, Op};
use crate::secrets::Masker;
use crate::template::{Context, RenderError};

/// Why a condition or capture could not be evaluated.
pub type Problem = (ErrorClass, String);

/// Result of checking a condition.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub results: Vec<AssertionResult>,
    /// Set when the condition could not be evaluated (e.g. the body is not JSON).
    pub problem: Option<Problem>,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.problem.is_none() && self.results.iter().all(|r| r.passed)
    }

    pub fn status_passed(&self) -> bool {
        self.results
            .first()
            .is_none_or(|r| r.subject != "status" || r.passed)
    }

    /// First failing assertion, described for a human. A wrong status comes first (it is
    /// what classes the failure): a 302 or a 503 is not explained by its body not being
    /// JSON.
    pub fn first_failure(&self) -> Option<String> {
        let describe = |r: &AssertionResult| {
            let actual = match &r.actual {
                Some(v) => truncate(&v.to_string(), 200),
                None => "nothing".to_string(),
            };
            format!("{} {} {} failed: got {actual}", r.subject, r.op, r.expected)
        };
        if !self.status_passed() {
            return self.results.first().map(describe);
        }
        if let Some((_, m)) = &self.problem {
            return Some(m.clone());
        }
        self.results.iter().find(|r| !r.passed).map(describe)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// Checks `expect` against a response. Operands that are templates are rendered first.
pub fn check(expect: &Expect, resp: &Response, ctx: &Context) -> Verdict {
    let mut results = vec![AssertionResult {
        subject: "status".into(),
        op: "==".into(),
        expected: Value::String(expect.status.to_string()),
        actual: Some(Value::from(resp.status)),
        passed: expect.status.matches(resp.status),
    }];
    let mut problem = None;
    if !expect.json.is_empty() {
        match resp.json() {
            Some(doc) => {
                for a in &expect.json {
                    let nodes = a.path.query(&doc).all();
                    // One node is compared where it lies: `$.items` of a large body is
                    // not copied to be measured.
                    let actual = match nodes.len() {
                        0 => None,
                        1 => Some(Cow::Borrowed(nodes[0])),
                        _ => Some(Cow::Owned(Value::Array(
                            nodes.into_iter().cloned().collect(),
                        ))),
                    };
                    for op in &a.ops {
                        results.push(apply(&a.path_text, op, actual.as_deref(), ctx));
                    }
                }
            }
            None => {
                problem = Some((
                    ErrorClass::InvalidJson,
                    format!(
                        "response body is not valid JSON ({} bytes, starts {:?})",
                        resp.body.len(),
                        truncate(&ctx.masker().mask(&resp.text()), 60)
                    ),
                ));
            }
        }
    }
    for (name, ops) in &expect.headers {
        let actual = resp.header(name).map(Value::String);
        for op in ops {
            results.push(apply(&format!("header {name}"), op, actual.as_ref(), ctx));
        }
    }
    if !expect.body.is_empty() {
        let text = Value::String(resp.text());
        for op in &expect.body {
            results.push(apply("body", op, Some(&text), ctx));
        }
    }
    let masker = ctx.masker();
    for r in &mut results {
        r.expected = masker.mask_value(&r.expected);
        r.actual = r.actual.as_ref().map(|v| masker.mask_value(v));
    }
    Verdict { results, problem }
}

fn apply(subject: &str, op: &Op, actual: Option<&Value>, ctx: &Context) -> AssertionResult {
    let rendered = |v: &Value| ctx.render_value(v);
    let (expected, passed): (Value, Result<bool, RenderError>) = match op {
        Op::Exists(want) => (Value::Bool(*want), Ok(actual.is_some() == *want)),
        Op::Length(n) => (Value::from(*n), Ok(actual.and_then(length) == Some(*n))),
        Op::Matches(re) => (
            Value::String(re.as_str().to_string()),
            Ok(actual.is_some_and(|a| re.is_match(&as_text(a)))),
        ),
        Op::Eq(v) | Op::Ne(v) | Op::Contains(v) | Op::Lt(v) | Op::Le(v) | Op::Gt(v) | Op::Ge(v) => {
            match rendered(v) {
                Err(e) => (v.clone(), Err(e)),
                Ok(exp) => {
                    let ok = match (op, actual) {
                        (Op::Ne(_), None) => true,
                        (_, None) => false,
                        (Op::Eq(_), Some(a)) => loose_eq(a, &exp),
                        (Op::Ne(_), Some(a)) => !loose_eq(a, &exp),
                        (Op::Contains(_), Some(a)) => contains(a, &exp),
                        (Op::Lt(_), Some(a)) => compare(a, &exp) == Some(Ordering::Less),
                        (Op::Le(_), Some(a)) => {
                            matches!(compare(a, &exp), Some(Ordering::Less | Ordering::Equal))
                        }
                        (Op::Gt(_), Some(a)) => compare(a, &exp) == Some(Ordering::Greater),
                        (Op::Ge(_), Some(a)) => {
                            matches!(compare(a, &exp), Some(Ordering::Greater | Ordering::Equal))
                        }
                        _ => false,
                    };
                    (exp, Ok(ok))
                }
            }
        }
    };
    let actual = actual.map(|v| reported_actual(v, ctx.masker()));
    match passed {
        Ok(p) => AssertionResult {
            subject: subject.to_string(),
            op: op.symbol().to_string(),
            expected,
            actual,
            passed: p,
        },
        Err(e) => AssertionResult {
            subject: subject.to_string(),
            op: op.symbol().to_string(),
            expected: Value::String(format!("(cannot render: {e})")),
            actual,
            passed: false,
        },
    }
}

/// The most JSON of an `actual` value a run's report keeps. A JSONPath that selects a
/// whole 100,000-element array must not copy it into every stored and exported run.
const MAX_REPORTED_ACTUAL: usize = 1024;

/// `actual` as a run's report keeps it: the value itself when its JSON is small, else a
/// string with the start of its (masked) JSON and what was cut.
fn reported_actual(v: &Value, masker: &Masker) -> Value {
    let mut probe = CappedWriter {
        left: MAX_REPORTED_ACTUAL,
    };
    if serde_json::to_writer(&mut probe, v).is_ok() {
        return v.clone();
    }
    // Masked before it is cut, so no prefix of a secret survives the cut.
    let text = masker.mask(&v.to_string());
    let what = match v {
        Value::Array(a) => format!("an array of {} items", a.len()),
        Value::Object(m) => format!("an object of {} members", m.len()),
        Value::String(s) => format!("a string of {} characters", s.chars().count()),
        _ => "a value".to_string(),
    };
    Value::String(format!(
        "{} ({what}, {} bytes of JSON: cut)",
        truncate(&text, 200),
        text.len()
    ))
}

/// A writer that fails once more than `left` bytes were written: measures "is this
/// value's JSON short?" without building the whole text.
struct CappedWriter {
    left: usize,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.left = self
            .left
            .checked_sub(buf.len())
            .ok_or_else(|| std::io::Error::other("over the cap"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn length(v: &Value) -> Option<usize> {
    match v {
        Value::Array(a) => Some(a.len()),
        Value::Object(m) => Some(m.len()),
        Value::String(s) => Some(s.chars().count()),
        _ => None,
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Equality that treats `129.5` and `"129.5"` as equal (templates render to strings).
fn loose_eq(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    match (a, b) {
        (Value::Number(_), Value::String(_)) | (Value::String(_), Value::Number(_)) => {
            matches!((as_number(a), as_number(b)), (Some(x), Some(y)) if x == y)
        }
        (Value::Bool(x), Value::String(s)) | (Value::String(s), Value::Bool(x)) => {
            s == &x.to_string()
        }
        _ => false,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    if let (Some(x), Some(y)) = (as_number(a), as_number(b))
        && (a.is_number() || b.is_number())
    {
        return x.partial_cmp(&y);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    match haystack {
        Value::String(s) => s.contains(&as_text(needle)),
        Value::Array(items) => items.iter().any(|i| loose_eq(i, needle)),
        Value::Object(m) => needle.as_str().is_some_and(|k| m.contains_key(k)),
        _ => false,
    }
}

/// Takes captures from a response. Each capture stands alone: one that finds nothing does
/// not lose the others (cleanup may need them). Returns the values found and the first
/// problem, if any.
pub fn capture(captures: &[Capture], resp: &Response) -> (Vec<(String, Value)>, Option<Problem>) {
    let mut out = Vec::new();
    let mut first_problem = None;
    // Parsed only for a JSON capture: a large body with none is never turned into a tree.
    let wants_json = captures
        .iter()
        .any(|c| matches!(c.source, CaptureSource::Json(..)));
    let doc = if wants_json { resp.json() } else { None };
    for c in captures {
        match capture_one(c, resp, doc.as_ref()) {
            Ok(v) => out.push((c.name.clone(), v)),
            Err(p) => {
                first_problem.get_or_insert(p);
            }
        }
    }
    (out, first_problem)
}

fn capture_one(
    c: &Capture,
    resp: &Response,
    doc: Option<&Value>,
) -> Result<Value, (ErrorClass, String)> {
    match &c.source {
        CaptureSource::Json(path, text) => {
            let Some(d) = doc else {
                return Err((
                    ErrorClass::InvalidJson,
                    format!("cannot capture `{}`: response body is not JSON", c.name),
                ));
            };
            let nodes = path.query(d).all();
            match nodes.len() {
                0 => Err((
                    ErrorClass::Capture,
                    format!("capture `{}`: `{text}` selected nothing", c.name),
                )),
                1 => Ok(nodes[0].clone()),
                _ => Ok(Value::Array(nodes.into_iter().cloned().collect())),
            }
        }
        CaptureSource::Header(name) => resp.header(name).map(Value::String).ok_or_else(|| {
            (
                ErrorClass::Capture,
                format!("capture `{}`: no `{name}` header", c.name),
            )
        }),
        CaptureSource::Regex(re) => {
            let text = resp.text();
            let caps = re.captures(&text).ok_or_else(|| {
                (
                    ErrorClass::Capture,
                    format!(
                        "capture `{}`: `{}` did not match the body",
                        c.name,
                        re.as_str()
                    ),
                )
            })?;
            let m = caps
                .get(1)
                .or_else(|| caps.get(0))
                .map(|m| m.as_str().to_string())
                .unwrap_or_default();
            Ok(Value::String(m))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JsonAssertion, StatusMatch};
    use serde_json::json;
    use serde_json_path::JsonPath;
    use std::time::Duration;

    fn resp(status: u16, body: &str) -> Response {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("location", "/x/42".parse().unwrap());
        Response {
            status,
            headers,
            body: body.as_bytes().to_vec(),
            ttfb: Duration::ZERO,
            total: Duration::ZERO,
        }
    }

    fn ctx() -> Context {
        let mut c = crate::runner::test_support::context();
        c.set("vin", json!("0RTSYNTH1TZ123456"));
        c
    }

    fn assertion(path: &str, ops: Vec<Op>) -> JsonAssertion {
        JsonAssertion {
            path_text: path.into(),
            path: JsonPath::parse(path).unwrap(),
            ops,
        }
    }

    const BODY: &str = r#"{"items":[{"number":"RO-1","vin":"0RTSYNTH1TZ123456","price":129.5,"status":"open","created_at":"2026-11-22T10:00:00Z"},{"number":"RO-2","price":10}]}"#;

    #[test]
    fn every_operator() {
        let e = Expect {
            status: StatusMatch::Codes(vec![200]),
            json: vec![
                assertion(
                    "$.items[0].number",
                    vec![
                        Op::Exists(true),
                        Op::Eq(json!("RO-1")),
                        Op::Ne(json!("RO-2")),
                    ],
                ),
                assertion("$.items[0].vin", vec![Op::Eq(json!("{{ vin }}"))]),
                assertion(
                    "$.items[0].price",
                    vec![
                        Op::Gt(json!(100)),
                        Op::Ge(json!("129.5")),
                        Op::Lt(json!(130)),
                        Op::Le(json!(129.5)),
                    ],
                ),
                assertion("$.items", vec![Op::Length(2)]),
                assertion("$.items[*].number", vec![Op::Contains(json!("RO-2"))]),
                assertion(
                    "$.items[0].status",
                    vec![Op::Matches(regex::Regex::new("^op").unwrap())],
                ),
                assertion(
                    "$.items[0].created_at",
                    vec![Op::Gt(json!("2026-01-01T00:00:00Z"))],
                ),
                assertion("$.missing", vec![Op::Exists(false), Op::Ne(json!(1))]),
                assertion("$.items[?@.price < 50].number", vec![Op::Eq(json!("RO-2"))]),
            ],
            headers: vec![("location".into(), vec![Op::Contains(json!("/x/"))])],
            body: vec![Op::Contains(json!("RO-1"))],
        };
        let v = check(&e, &resp(200, BODY), &ctx());
        let failing: Vec<_> = v.results.iter().filter(|r| !r.passed).collect();
        assert!(v.passed(), "{failing:#?}");
    }

    #[test]
    fn failures_are_reported_with_actual_values() {
        let e = Expect {
            status: StatusMatch::Success,
            json: vec![assertion("$.items[0].number", vec![Op::Eq(json!("RO-9"))])],
            ..Default::default()
        };
        let v = check(&e, &resp(200, BODY), &ctx());
        assert!(!v.passed());
        assert_eq!(
            v.first_failure().unwrap(),
            "$.items[0].number == \"RO-9\" failed: got \"RO-1\""
        );
        let v = check(&e, &resp(503, BODY), &ctx());
        assert!(!v.status_passed());
    }

    #[test]
    fn a_wrong_status_is_the_first_failure_even_with_a_body_that_is_not_json() {
        let e = Expect {
            status: StatusMatch::Success,
            json: vec![assertion("$.id", vec![Op::Exists(true)])],
            ..Default::default()
        };
        let v = check(&e, &resp(302, ""), &ctx());
        assert_eq!(v.problem.as_ref().unwrap().0, ErrorClass::InvalidJson);
        assert_eq!(
            v.first_failure().unwrap(),
            "status == \"2xx\" failed: got 302"
        );
    }

    #[test]
    fn malformed_json_is_a_problem_not_a_failure() {
        let e = Expect {
            json: vec![assertion("$.id", vec![Op::Exists(true)])],
            ..Default::default()
        };
        let v = check(&e, &resp(200, "{\"id\": 1"), &ctx());
        assert_eq!(v.problem.as_ref().unwrap().0, ErrorClass::InvalidJson);
    }

    #[test]
    fn captures_from_json_header_and_regex() {
        let caps = vec![
            Capture {
                name: "ro".into(),
                source: CaptureSource::Json(
                    JsonPath::parse("$.items[0].number").unwrap(),
                    "$.items[0].number".into(),
                ),
            },
            Capture {
                name: "loc".into(),
                source: CaptureSource::Header("location".into()),
            },
            Capture {
                name: "n".into(),
                source: CaptureSource::Regex(regex::Regex::new(r"RO-(\d+)").unwrap()),
            },
        ];
        let (got, problem) = capture(&caps, &resp(200, BODY));
        assert!(problem.is_none());
        assert_eq!(
            got,
            vec![
                ("ro".into(), json!("RO-1")),
                ("loc".into(), json!("/x/42")),
                ("n".into(), json!("1"))
            ]
        );
    }

    #[test]
    fn a_huge_actual_is_judged_whole_but_cut_in_the_report() {
        let items: Vec<_> = (0..100_000)
            .map(|i| json!({"id": format!("R{i}")}))
            .collect();
        let body = json!({ "items": items }).to_string();
        let e = Expect {
            json: vec![
                assertion("$.items", vec![Op::Length(100_000)]),
                assertion("$.items[*].id", vec![Op::Contains(json!("R99999"))]),
                assertion("$.items[0].id", vec![Op::Eq(json!("R0"))]),
            ],
            ..Default::default()
        };
        let v = check(&e, &resp(200, &body), &ctx());
        assert!(v.passed(), "{:?}", v.first_failure());
        let reported = serde_json::to_string(&v.results).unwrap();
        assert!(reported.len() < 4096, "{} bytes of report", reported.len());
        let cut = v.results[1]
            .actual
            .as_ref()
            .and_then(Value::as_str)
            .unwrap();
        assert!(cut.starts_with("[{\"id\":\"R0\"}"), "{cut}");
        assert!(
            cut.ends_with("… (an array of 100000 items, 1588891 bytes of JSON: cut)"),
            "{cut}"
        );
        assert_eq!(v.results[3].actual, Some(json!("R0")));
    }

    #[test]
    fn a_cut_actual_is_masked_before_it_is_cut() {
        let c = ctx();
        c.masker().add("hunter2-long-secret");
        // The secret straddles the 200th character of the JSON text.
        let mut items = vec![json!("a".repeat(190)), json!("hunter2-long-secret")];
        items.extend((0..100).map(|i| json!(format!("filler-{i}"))));
        let body = json!({ "items": items }).to_string();
        let e = Expect {
            json: vec![assertion("$.items", vec![Op::Length(1)])],
            ..Default::default()
        };
        let v = check(&e, &resp(200, &body), &c);
        let cut = v.results[1]
            .actual
            .as_ref()
            .and_then(Value::as_str)
            .unwrap();
        assert!(!cut.contains("hunte"), "{cut}");
        assert!(cut.contains("***"), "{cut}");
    }

    #[test]
    fn a_capture_that_finds_nothing_does_not_lose_the_others() {
        let caps = vec![
            Capture {
                name: "x".into(),
                source: CaptureSource::Json(JsonPath::parse("$.nope").unwrap(), "$.nope".into()),
            },
            Capture {
                name: "ro".into(),
                source: CaptureSource::Json(
                    JsonPath::parse("$.items[0].number").unwrap(),
                    "$.items[0].number".into(),
                ),
            },
        ];
        let (got, problem) = capture(&caps, &resp(200, BODY));
        assert_eq!(problem.unwrap().0, ErrorClass::Capture);
        assert_eq!(got, vec![("ro".into(), json!("RO-1"))]);
    }
}
