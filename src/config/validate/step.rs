//! One step of a probe and one cleanup step: the HTTP request (method, URL, headers,
//! body), captures, polling, sync measurement, what it creates and how cleanup finds and
//! deletes it. Expectations are `expect.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::expect::check_expect;
use super::primitives::{check_template, check_templates_in_value, is_identifier, is_name};
use super::runbook::check_runbook;
use super::{Checker, Defaults, MAX_CLEANUP_RETRIES, Scope};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::{CleanupConfig, OneOrMany, RequestConfig, StepConfig};
use crate::config::yaml::FieldPath;
use crate::model::{
    Body, Capture, CaptureSource, CleanupStep, Expect, Find, Poll, Request, Step, SyncSpec,
};
use crate::template::RESERVED;

/// One step: request, expectations, captures, poll/until, sync and its SLO, the records it
/// creates and its runbook. `earlier_steps` are the names `sync.since` may refer to.
#[allow(clippy::too_many_arguments)]
pub(super) fn check_step(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &StepConfig,
    earlier_steps: &[&str],
    scope: &Scope<'_>,
    cleanup_names: &[&str],
    defaults: &Defaults,
    probe_timeout: Option<Duration>,
    runbooks: &BTreeMap<String, String>,
) -> Option<Step> {
    let request = check_request(c, &path.key("request"), &raw.request, scope, defaults);
    let expect = match &raw.expect {
        Some(e) => check_expect(c, &path.key("expect"), e, scope),
        None => Some(Expect::default()),
    };
    let until = raw
        .until
        .as_ref()
        .map(|u| check_expect(c, &path.key("until"), u, scope));
    let mut captures = Vec::new();
    for (name, spec) in &raw.capture {
        let cpath = path.key("capture").key(name);
        if !is_identifier(name) {
            c.err_key(
                &cpath,
                format!("capture name `{name}` must be letters, digits and underscores"),
                Some("e.g. `appointment_id`".into()),
            );
            continue;
        }
        if let Some(source) = check_capture(c, &cpath, spec) {
            captures.push(Capture {
                name: name.clone(),
                source,
            });
        }
    }
    let poll = match (&raw.poll, &raw.until) {
        (Some(p), Some(_)) => {
            let pp = path.key("poll");
            let interval = match &p.interval {
                Some(s) => c.duration(&pp.key("interval"), s),
                None => Some(Duration::from_secs(2)),
            };
            let max_interval = match &p.max_interval {
                Some(s) => c.duration(&pp.key("max_interval"), s),
                // Never below the first interval when only `interval` is written.
                None => interval.map(|i| i.max(Duration::from_secs(30))),
            };
            let within = c.duration(&pp.key("within"), &p.within);
            let backoff = p.backoff.unwrap_or(1.5);
            if !(1.0..=10.0).contains(&backoff) {
                c.err(
                    &pp.key("backoff"),
                    format!("backoff {backoff} must be between 1 and 10"),
                    Some("`1` keeps the interval fixed; `1.5` grows it by half each miss".into()),
                );
            }
            if let (Some(i), Some(m)) = (interval, max_interval)
                && m < i
            {
                c.err(
                    &pp.key("max_interval"),
                    "max_interval is shorter than interval",
                    Some("max_interval caps the growing wait; make it at least `interval`".into()),
                );
            }
            if let (Some(i), Some(w)) = (interval, within)
                && i >= w
            {
                c.err(
                    &pp.key("interval"),
                    format!(
                        "poll `interval` ({}) is not shorter than `within` ({}): the step could only ever poll once",
                        humantime::format_duration(i),
                        humantime::format_duration(w)
                    ),
                    Some("poll several times within the window, e.g. `interval: 2s, within: 10m`".into()),
                );
            }
            if let (Some(w), Some(t)) = (within, probe_timeout)
                && w > t
            {
                c.err(
                    &pp.key("within"),
                    format!(
                        "poll `within` ({}) is longer than the probe `timeout` ({})",
                        humantime::format_duration(w),
                        humantime::format_duration(t)
                    ),
                    Some("raise the probe timeout or shorten `within`".into()),
                );
            }
            Some(Poll {
                interval: interval?,
                backoff,
                max_interval: max_interval?,
                within: within?,
            })
        }
        (Some(_), None) => {
            c.err_key(
                &path.key("poll"),
                "`poll` needs an `until` condition to poll for",
                Some("add `until: {json: {\"$.items[0].id\": {exists: true}}}`".into()),
            );
            None
        }
        (None, Some(_)) => {
            c.err_key(
                &path.key("until"),
                "`until` needs `poll` settings",
                Some("add `poll: {interval: 2s, within: 10m}`".into()),
            );
            None
        }
        (None, None) => None,
    };
    let sync = raw.sync.as_ref().and_then(|s| {
        let sp = path.key("sync");
        if raw.until.is_none() {
            c.err_key(
                &sp,
                "`sync` measures how long `until` takes to hold; add `until` and `poll`",
                Some("e.g. `until: {json: {\"$.items[0].id\": {exists: true}}}` and `poll: {within: 15m}`".into()),
            );
        }
        let since_index = earlier_steps.iter().position(|n| *n == s.since);
        if since_index.is_none() {
            let msg = if s.since == raw.name {
                format!("`sync.since` cannot name the step itself (`{}`)", s.since)
            } else {
                format!(
                    "`sync.since` refers to `{}`, which is not an earlier step",
                    s.since
                )
            };
            c.err(
                &sp.key("since"),
                msg,
                did_you_mean(&s.since, earlier_steps.iter().copied()),
            );
        }
        if let Some(ts) = &s.timestamp
            && !raw.capture.contains_key(ts)
        {
            c.err(
                &sp.key("timestamp"),
                format!("`sync.timestamp` names `{ts}`, which this step does not capture"),
                did_you_mean(ts, raw.capture.keys().map(String::as_str)),
            );
        }
        Some(SyncSpec {
            since: s.since.clone(),
            since_index: since_index?,
            timestamp: s.timestamp.clone(),
        })
    });
    let slo_sync_latency = match raw.slo.as_ref().and_then(|s| s.sync_latency.as_ref()) {
        Some(text) => {
            let sp = path.key("slo").key("sync_latency");
            if raw.sync.is_none() {
                c.err_key(
                    &sp,
                    "`slo.sync_latency` needs `sync: {since: STEP}` on this step",
                    Some("add `sync: {since: <earlier step>}`, or remove the SLO".into()),
                );
            }
            c.duration(&sp, text)
        }
        None => None,
    };
    let mut creates = Vec::new();
    if let Some(cr) = &raw.creates {
        let names = cr.cleanup.names();
        if names.is_empty() {
            c.err(
                &path.key("creates").key("cleanup"),
                "name at least one cleanup step",
                Some("e.g. `creates: {cleanup: delete-appointment}`".into()),
            );
        }
        for (i, name) in names.into_iter().enumerate() {
            let p = match &cr.cleanup {
                OneOrMany::One(_) => path.key("creates").key("cleanup"),
                OneOrMany::Many(_) => path.key("creates").key("cleanup").index(i),
            };
            if cleanup_names.contains(&name) {
                creates.push(name.to_string());
            } else {
                let hint = did_you_mean(name, cleanup_names.iter().copied())
                    .or_else(|| Some("add a step under `cleanup:` with this name".into()));
                c.err(&p, format!("no cleanup step named `{name}`"), hint);
            }
        }
    }
    let runbook = raw
        .runbook
        .as_deref()
        .and_then(|r| check_runbook(c, &path.key("runbook"), r, runbooks));
    Some(Step {
        name: raw.name.clone(),
        request: request?,
        expect: expect?,
        captures,
        until: match until {
            Some(u) => Some(u?),
            None => None,
        },
        poll,
        sync,
        slo_sync_latency,
        creates,
        runbook,
    })
}

/// A cleanup step: its `find` (a request, a JSONPath and the name bound to each match),
/// request, expectations and retries.
pub(super) fn check_cleanup(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &CleanupConfig,
    scope: &Scope<'_>,
    defaults: &Defaults,
) -> Option<CleanupStep> {
    if !is_name(&raw.name) {
        c.err(
            &path.key("name"),
            format!(
                "cleanup name `{}` must be lowercase letters, digits and dashes",
                raw.name
            ),
            Some("e.g. `delete-appointment`".into()),
        );
    }
    let find = match &raw.find {
        None => None,
        Some(f) => {
            let fp = path.key("find");
            let req = check_request(c, &fp.key("request"), &f.request, scope, defaults);
            let each = match JsonPath::parse(&f.each) {
                Ok(p) => Some(p),
                Err(e) => {
                    c.err(
                        &fp.key("each"),
                        format!("invalid JSONPath `{}`: {e}", f.each),
                        Some("e.g. `$.items[*].number`".into()),
                    );
                    None
                }
            };
            let why = if !is_identifier(&f.bind) {
                Some("names are letters, digits and underscores")
            } else if RESERVED.contains(&f.bind.as_str()) {
                Some("that name is built in")
            } else if scope.vars.contains(&f.bind.as_str())
                || scope.captures.contains(f.bind.as_str())
            {
                Some("a var or capture already has that name")
            } else {
                None
            };
            if let Some(why) = why {
                c.err(
                    &fp.key("as"),
                    format!("`{}` cannot name the found value: {why}", f.bind),
                    Some("pick a new name, e.g. `ro` or `customer_id`".into()),
                );
            }
            match (req, each) {
                (Some(request), Some(each)) => Some(Find {
                    request,
                    each,
                    each_text: f.each.clone(),
                    bind: f.bind.clone(),
                }),
                _ => return None,
            }
        }
    };
    let mut inner_captures = scope.captures.clone();
    if let Some(f) = &raw.find {
        inner_captures.insert(f.bind.as_str());
    }
    let inner = Scope {
        vars: scope.vars.clone(),
        captures: inner_captures,
        later: scope.later,
    };
    let request = check_request(c, &path.key("request"), &raw.request, &inner, defaults);
    let expect = match &raw.expect {
        Some(e) => Some(check_expect(c, &path.key("expect"), e, &inner)?),
        None => None,
    };
    let retries = raw.retries.unwrap_or(defaults.cleanup_retries);
    if raw.retries.is_some_and(|r| r > MAX_CLEANUP_RETRIES) {
        c.err(
            &path.key("retries"),
            format!("at most {MAX_CLEANUP_RETRIES} retries"),
            Some(
                "retries back off from 1s doubling to 30s; the ledger retries later anyway".into(),
            ),
        );
    }
    Some(CleanupStep {
        name: raw.name.clone(),
        find,
        request: request?,
        expect,
        retries,
    })
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// A request: method, URL, headers, body and timeout, templates checked against `scope`.
fn check_request(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &RequestConfig,
    scope: &Scope<'_>,
    defaults: &Defaults,
) -> Option<Request> {
    let method_text = raw.method.as_deref().unwrap_or("GET");
    let method = if METHODS.contains(&method_text.to_ascii_uppercase().as_str()) {
        reqwest::Method::from_bytes(method_text.to_ascii_uppercase().as_bytes()).ok()
    } else {
        c.err(
            &path.key("method"),
            format!("unknown HTTP method `{method_text}`"),
            did_you_mean(&method_text.to_ascii_uppercase(), METHODS.iter().copied()),
        );
        None
    };
    check_template(c, &path.key("url"), &raw.url, scope);
    let starts_static = !raw.url.trim_start().starts_with("{{");
    if starts_static && !raw.url.starts_with("http://") && !raw.url.starts_with("https://") {
        c.err(
            &path.key("url"),
            format!("`{}` is not an absolute http(s) URL", raw.url),
            Some("e.g. `\"{{ env.CRM_URL }}/api/appointments\"`".into()),
        );
    }
    for (name, value) in &raw.headers {
        let hp = path.key("headers").key(name);
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            c.err_key(
                &hp,
                format!("`{name}` is not a valid header name"),
                Some("header names are letters, digits and `-`, e.g. `X-Dealer-Id`".into()),
            );
        }
        check_template(c, &hp, value, scope);
    }
    let body = match (&raw.json, &raw.body) {
        (Some(_), Some(_)) => {
            c.err_key(
                &path.key("body"),
                "a request has `json` or `body`, not both",
                Some("`json` sends a JSON document; `body` sends text as written".into()),
            );
            Body::None
        }
        (Some(j), None) => {
            check_templates_in_value(c, &path.key("json"), j, scope);
            Body::Json(j.clone())
        }
        (None, Some(b)) => {
            check_template(c, &path.key("body"), b, scope);
            Body::Text(b.clone())
        }
        (None, None) => Body::None,
    };
    let timeout = match &raw.timeout {
        Some(t) => c.duration(&path.key("timeout"), t)?,
        None => defaults.request_timeout,
    };
    Some(Request {
        method: method?,
        url: raw.url.clone(),
        headers: raw
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        body,
        timeout,
    })
}

/// A capture: `"$.path"` (JSONPath) or `{json: ..}`, `{header: ..}`, `{regex: ..}`.
fn check_capture(c: &mut Checker<'_>, path: &FieldPath, spec: &Value) -> Option<CaptureSource> {
    let json_path = |c: &mut Checker<'_>, p: &FieldPath, q: &str| match JsonPath::parse(q) {
        Ok(jp) => Some(CaptureSource::Json(jp, q.to_string())),
        Err(e) => {
            c.err(
                p,
                format!("invalid JSONPath `{q}`: {e}"),
                Some("RFC 9535 syntax, e.g. `$.items[0].number`".into()),
            );
            None
        }
    };
    match spec {
        Value::String(q) => json_path(c, path, q),
        Value::Object(m) if m.len() == 1 => {
            let (kind, v) = m.iter().next()?;
            let kp = path.key(kind);
            let Some(text) = v.as_str() else {
                c.err(
                    &kp,
                    format!("`{kind}` takes a string"),
                    Some(
                        "e.g. `{json: \"$.id\"}`, `{header: Location}`, `{regex: \"RO-(\\\\d+)\"}`"
                            .into(),
                    ),
                );
                return None;
            };
            match kind.as_str() {
                "json" => json_path(c, &kp, text),
                "header" => Some(CaptureSource::Header(text.to_ascii_lowercase())),
                "regex" => match Regex::new(text) {
                    Ok(r) => Some(CaptureSource::Regex(r)),
                    Err(e) => {
                        c.err(&kp, format!("invalid regular expression: {e}"), Some("Rust regex syntax; the first group is captured, e.g. `RO-(\\\\d+)`".into()));
                        None
                    }
                },
                other => {
                    c.err_key(
                        &kp,
                        format!("unknown capture source `{other}`"),
                        did_you_mean(other, ["json", "header", "regex"]),
                    );
                    None
                }
            }
        }
        _ => {
            c.err(
                path,
                "a capture is a JSONPath string or one of `{json: ...}`, `{header: ...}`, `{regex: ...}`",
                Some("e.g. `appointment_id: \"$.id\"` or `location: {header: Location}`".into()),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{paths_and_messages, probe, probe_errors};
    use crate::model::{Body, CaptureSource};

    fn errors(steps: &str) -> Vec<(String, String)> {
        paths_and_messages(&probe_errors(&format!("name: p\ntimeout: 10m\n{steps}")))
    }

    /// Each error, as `path: message`, starts with the expected text (library details such
    /// as a regex parser's explanation follow it).
    fn assert_leads(steps: &str, expected: &[&str]) {
        let got: Vec<String> = errors(steps)
            .into_iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect();
        assert_eq!(got.len(), expected.len(), "{got:#?}");
        for (g, e) in got.iter().zip(expected) {
            assert!(g.starts_with(e), "`{g}` does not start with `{e}`");
        }
    }

    #[test]
    fn a_request_with_method_headers_body_and_timeout() {
        let p = probe(
            "name: p\nsteps:\n  - name: one\n    request: {url: \"{{ env.CRM }}/a\", method: post, headers: {X-Dealer-Id: \"7\"}, json: {a: 1}, timeout: 5s}\n",
        );
        let r = &p.steps[0].request;
        assert_eq!(r.method, reqwest::Method::POST);
        assert_eq!(r.headers, [("X-Dealer-Id".to_string(), "7".to_string())]);
        assert!(matches!(&r.body, Body::Json(v) if v["a"] == 1));
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert_eq!(p.steps[0].request.url, "{{ env.CRM }}/a");
    }

    #[test]
    fn request_mistakes() {
        assert_eq!(
            errors(
                "steps:\n  - name: one\n    request: {url: \"crm.example/a\", method: GTE, headers: {\"X Bad\": x}, json: {}, body: x}\n"
            ),
            [
                (
                    "steps[0].request.url".into(),
                    "`crm.example/a` is not an absolute http(s) URL".into()
                ),
                (
                    "steps[0].request.method".into(),
                    "unknown HTTP method `GTE`".into()
                ),
                (
                    "steps[0].request.headers[\"X Bad\"]".into(),
                    "`X Bad` is not a valid header name".into()
                ),
                (
                    "steps[0].request.body".into(),
                    "a request has `json` or `body`, not both".into()
                ),
            ]
        );
    }

    #[test]
    fn captures_are_jsonpath_header_or_regex() {
        let p = probe(
            "name: p\nsteps:\n  - name: one\n    request: {url: \"https://x\"}\n    capture: {id: \"$.id\", loc: {header: Location}, ro: {regex: \"RO-(\\\\d+)\"}}\n",
        );
        let c = &p.steps[0].captures;
        assert!(matches!(&c[0].source, CaptureSource::Json(_, q) if q == "$.id"));
        assert!(matches!(&c[1].source, CaptureSource::Header(h) if h == "location"));
        assert!(matches!(&c[2].source, CaptureSource::Regex(_)));
        assert_leads(
            "steps:\n  - name: one\n    request: {url: \"https://x\"}\n    capture: {bad-name: \"$.a\", a: \"$[\", b: {xpath: x}, c: {regex: \"(\"}, d: 5}\n",
            &[
                "steps[0].capture.bad-name: capture name `bad-name` must be letters, digits and underscores",
                "steps[0].capture.a: invalid JSONPath `$[`",
                "steps[0].capture.b.xpath: unknown capture source `xpath`",
                "steps[0].capture.c.regex: invalid regular expression",
                "steps[0].capture.d: a capture is a JSONPath string or one of `{json: ...}`, `{header: ...}`, `{regex: ...}`",
            ],
        );
    }

    #[test]
    fn polls_need_until_and_fit_in_the_probe_timeout() {
        let p = probe(
            "name: p\nsteps:\n  - name: one\n    request: {url: \"https://x\"}\n    until: {status: 200}\n    poll: {interval: 5s, within: 2m}\n",
        );
        let poll = p.steps[0].poll.as_ref().expect("poll");
        assert_eq!(
            (poll.interval, poll.max_interval, poll.backoff),
            (Duration::from_secs(5), Duration::from_secs(30), 1.5)
        );
        assert_eq!(
            errors(
                "steps:\n  - name: one\n    request: {url: \"https://x\"}\n    until: {status: 200}\n    poll: {interval: 1m, max_interval: 10s, backoff: 20, within: 1h}\n  - name: two\n    request: {url: \"https://x\"}\n    poll: {within: 1m}\n  - name: three\n    request: {url: \"https://x\"}\n    until: {status: 200}\n"
            ),
            [
                (
                    "steps[0].poll.max_interval".into(),
                    "max_interval is shorter than interval".into()
                ),
                (
                    "steps[0].poll.backoff".into(),
                    "backoff 20 must be between 1 and 10".into()
                ),
                (
                    "steps[0].poll.within".into(),
                    "poll `within` (1h) is longer than the probe `timeout` (10m)".into()
                ),
                (
                    "steps[1].poll".into(),
                    "`poll` needs an `until` condition to poll for".into()
                ),
                (
                    "steps[2].until".into(),
                    "`until` needs `poll` settings".into()
                ),
            ]
        );
        assert_eq!(
            errors(
                "steps:\n  - name: one\n    request: {url: \"https://x\"}\n    until: {status: 200}\n    poll: {interval: 30s, within: 30s}\n"
            ),
            [(
                "steps[0].poll.interval".into(),
                "poll `interval` (30s) is not shorter than `within` (30s): the step could only ever poll once".into()
            )]
        );
    }

    #[test]
    fn sync_measures_since_an_earlier_step() {
        let p = probe(
            "name: p\nsteps:\n  - name: book\n    request: {url: \"https://x\"}\n  - name: wait\n    request: {url: \"https://x\"}\n    until: {status: 200}\n    poll: {within: 5m}\n    capture: {at: \"$.t\"}\n    sync: {since: book, timestamp: at}\n    slo: {sync_latency: 2m}\n",
        );
        let s = &p.steps[1];
        assert_eq!(s.sync.as_ref().map(|y| y.since_index), Some(0));
        assert_eq!(s.slo_sync_latency, Some(Duration::from_secs(120)));
        assert_eq!(
            errors(
                "steps:\n  - name: book\n    request: {url: \"https://x\"}\n    sync: {since: book, timestamp: at}\n    slo: {sync_latency: 1m}\n  - name: two\n    request: {url: \"https://x\"}\n    slo: {sync_latency: 1m}\n"
            ),
            [
                (
                    "steps[0].sync".into(),
                    "`sync` measures how long `until` takes to hold; add `until` and `poll`".into()
                ),
                (
                    "steps[0].sync.since".into(),
                    "`sync.since` cannot name the step itself (`book`)".into()
                ),
                (
                    "steps[0].sync.timestamp".into(),
                    "`sync.timestamp` names `at`, which this step does not capture".into()
                ),
                (
                    "steps[1].slo.sync_latency".into(),
                    "`slo.sync_latency` needs `sync: {since: STEP}` on this step".into()
                ),
            ]
        );
    }

    #[test]
    fn creates_names_cleanup_steps_and_cleanups_bind_new_names() {
        assert_leads(
            "steps:\n  - name: one\n    request: {url: \"https://x\"}\n    capture: {id: \"$.id\"}\n    creates: {cleanup: [delete, delte]}\ncleanup:\n  - name: Delete\n    request: {url: \"https://x\"}\n  - name: delete\n    find: {request: {url: \"https://x\"}, each: \"$.items[*]\", as: id}\n    request: {url: \"https://x/{{ id }}\"}\n    retries: 21\n",
            &[
                "steps[0].creates.cleanup[1]: no cleanup step named `delte`",
                "cleanup[0].name: cleanup `Delete` is never used",
                "cleanup[1].find.as: `id` cannot name the found value",
                "cleanup[1].retries: at most 20 retries",
            ],
        );
    }
}
