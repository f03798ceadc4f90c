//! One request on the wire: rendering a probe's `Request` template into an
//! `OutgoingRequest`, sending it with a fresh span in the run's trace (never past the
//! probe's deadline), and recording its timings as a `RequestRecord` (URL masked).
//! Judging the answer is `step.rs`'s job.

use std::time::Duration;

use tokio::time::Instant;

use super::http::{self, Failure, OutgoingRequest, Response};
use super::{ErrorClass, RequestRecord, RunState, Runner, ms};
use crate::model::{Body, Request};
use crate::secrets::Masker;
use crate::template::{Context, RenderError};

impl Runner {
    /// Renders a request template with the run's context.
    pub(super) fn render_request(
        ctx: &Context,
        req: &Request,
    ) -> Result<OutgoingRequest, (ErrorClass, String)> {
        let fail = |what: &str, e: RenderError, source: &str| match ctx.secret_problem(source) {
            Some(m) => (ErrorClass::Secret, m),
            None => (ErrorClass::Template, format!("{what}: {e}")),
        };
        let url = ctx.render(&req.url).map_err(|e| fail("url", e, &req.url))?;
        let mut out = OutgoingRequest {
            method: req.method.clone(),
            url,
            headers: Default::default(),
            body: None,
            timeout: req.timeout,
        };
        match &req.body {
            Body::None => {}
            Body::Json(v) => {
                let rendered = ctx.render_value(v).map_err(|e| {
                    let src = serde_json::to_string(v).unwrap_or_default();
                    fail("json body", e, &src)
                })?;
                out.body = Some(serde_json::to_vec(&rendered).unwrap_or_default());
                out.header("content-type", "application/json")
                    .map_err(|m| (ErrorClass::Template, m))?;
            }
            Body::Text(t) => {
                out.body = Some(ctx.render(t).map_err(|e| fail("body", e, t))?.into_bytes())
            }
        }
        for (name, value) in &req.headers {
            let v = ctx
                .render(value)
                .map_err(|e| fail(&format!("header {name}"), e, value))?;
            out.header(name, &v)
                .map_err(|m| (ErrorClass::Template, m))?;
        }
        Ok(out)
    }

    /// Sends a step's request `out` with its timeout cut to what is left of the probe's
    /// time: no request outlasts the probe, and one that the cut ends says it ran into the
    /// probe's deadline (with the same class the run's own deadline would give).
    pub(super) async fn send_within_probe(
        &self,
        st: &RunState,
        out: &OutgoingRequest,
    ) -> (Result<Response, Failure>, RequestRecord) {
        let mut out = out.clone();
        let left = st.deadline.saturating_duration_since(Instant::now());
        let cut = left < out.timeout;
        out.timeout = out.timeout.min(left);
        let (mut res, record) = self.send(st.t0, &out, &st.trace_id, st.ctx.masker()).await;
        if cut {
            blame_probe_deadline(&mut res, st.deadline.saturating_duration_since(st.t0));
        }
        (res, record)
    }

    /// Sends one request and records its timings (offsets from the run's start `t0`).
    pub(super) async fn send(
        &self,
        t0: Instant,
        out: &OutgoingRequest,
        trace_id: &str,
        masker: &Masker,
    ) -> (Result<Response, Failure>, RequestRecord) {
        let span_id = http::new_span_id();
        let tp = http::traceparent(trace_id, &span_id);
        let sent = t0.elapsed();
        let res = self.http.send(out, &tp).await;
        let mut record = RequestRecord {
            method: out.method.to_string(),
            url: masker.mask(&out.url),
            status: None,
            span_id,
            sent_ms: ms(sent),
            ttfb_ms: None,
            total_ms: 0.0,
            response_bytes: None,
        };
        match &res {
            Ok(r) => {
                record.status = Some(r.status);
                record.ttfb_ms = Some(ms(r.ttfb));
                record.total_ms = ms(r.total);
                record.response_bytes = Some(r.body.len() as u64);
            }
            Err(f) => {
                record.status = f.status;
                record.total_ms = ms(f.elapsed);
            }
        }
        (res, record)
    }
}

/// A request whose timeout was cut to what was left of the probe, and that then ran out
/// of time, ran into the probe's deadline: `probe_timeout` (the class the run's own
/// deadline gives), or still `dns` when the lookup was what never answered.
pub(super) fn blame_probe_deadline(res: &mut Result<Response, Failure>, probe_timeout: Duration) {
    let Err(f) = res else { return };
    if !f.timed_out {
        return;
    }
    let timeout = humantime::format_duration(probe_timeout);
    match (f.class, &f.unresolved) {
        (ErrorClass::Dns, Some(name)) => {
            f.message = format!(
                "`{name}` did not resolve before the probe timeout of {timeout} (no answer from DNS)"
            );
        }
        (ErrorClass::Timeout, _) => {
            f.class = ErrorClass::ProbeTimeout;
            f.message = format!("probe timeout of {timeout} reached during this request");
        }
        _ => {}
    }
}

/// The start of a response body for a message, masked before it is cut (so no prefix
/// of a secret survives the cut).
pub(super) fn body_snippet(resp: &Response, masker: &Masker) -> String {
    let text = masker.mask(&resp.text());
    let t = text.trim();
    if t.is_empty() {
        return String::new();
    }
    let short: String = t.chars().take(160).collect();
    format!(
        "; body: {short}{}",
        if t.chars().count() > 160 { "…" } else { "" }
    )
}

/// For a 3xx that reached a step (a redirect the client would not follow: another
/// scheme, or no usable `Location`), where it pointed, masked and cut like a body snippet.
pub(super) fn redirect_note(resp: &Response, masker: &Masker) -> String {
    if !(300..400).contains(&resp.status) {
        return String::new();
    }
    match resp.header("location") {
        Some(to) => {
            let to = masker.mask(&to);
            let short: String = to.chars().take(160).collect();
            let more = if to.chars().count() > 160 { "…" } else { "" };
            format!("; redirect to {short}{more} not followed")
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runner::test_support::{context, response};

    fn resp(body: &str) -> Response {
        response(500, body)
    }

    #[test]
    fn a_body_snippet_is_trimmed_and_cut_at_160_characters() {
        let masker = Masker::default();
        assert_eq!(body_snippet(&resp("  \n"), &masker), "");
        assert_eq!(body_snippet(&resp(" oops \n"), &masker), "; body: oops");
        let long = "é".repeat(200);
        let snippet = body_snippet(&resp(&long), &masker);
        assert_eq!(snippet, format!("; body: {}…", "é".repeat(160)));
    }

    #[test]
    fn a_body_snippet_masks_secrets_before_cutting() {
        let masker = Masker::default();
        masker.add("hunter2");
        let snippet = body_snippet(&resp("token=hunter2"), &masker);
        assert!(!snippet.contains("hunter2"), "{snippet}");
    }

    #[test]
    fn a_redirect_that_was_not_followed_says_where_it_pointed() {
        let masker = Masker::default();
        masker.add("hunter2");
        let mut r = response(302, "");
        r.headers.insert(
            "location",
            "ftp://dms.test/x?k=hunter2".parse().expect("a header"),
        );
        let note = redirect_note(&r, &masker);
        assert_eq!(note, "; redirect to ftp://dms.test/x?k=*** not followed");
        r.status = 200;
        assert_eq!(redirect_note(&r, &masker), "");
        assert_eq!(redirect_note(&response(304, ""), &masker), "");
    }

    fn failure(class: ErrorClass, timed_out: bool, unresolved: Option<&str>) -> Failure {
        Failure {
            class,
            message: "operation timed out".into(),
            elapsed: Duration::from_secs(4),
            stale_connection: false,
            status: None,
            timed_out,
            unresolved: unresolved.map(str::to_string),
        }
    }

    #[test]
    fn a_request_cut_to_the_probe_deadline_that_times_out_is_a_probe_timeout() {
        let mut res = Err(failure(ErrorClass::Timeout, true, None));
        blame_probe_deadline(&mut res, Duration::from_secs(4));
        let f = res.expect_err("still a failure");
        assert_eq!(f.class, ErrorClass::ProbeTimeout);
        assert_eq!(f.message, "probe timeout of 4s reached during this request");
        // Any other failure, or an answer, is what it was.
        let mut res = Err(failure(ErrorClass::Connect, false, None));
        blame_probe_deadline(&mut res, Duration::from_secs(4));
        assert_eq!(res.expect_err("a failure").class, ErrorClass::Connect);
        let mut res = Ok(response(200, ""));
        blame_probe_deadline(&mut res, Duration::from_secs(4));
        assert!(res.is_ok());
    }

    #[test]
    fn a_lookup_cut_by_the_probe_deadline_stays_dns_and_names_the_probe_timeout() {
        let mut res = Err(failure(ErrorClass::Dns, true, Some("crm.dealer.test")));
        blame_probe_deadline(&mut res, Duration::from_secs(3));
        let f = res.expect_err("still a failure");
        assert_eq!(f.class, ErrorClass::Dns);
        assert_eq!(
            f.message,
            "`crm.dealer.test` did not resolve before the probe timeout of 3s (no answer from DNS)"
        );
        // NXDOMAIN is no deadline's doing.
        let mut res = Err(failure(ErrorClass::Dns, false, None));
        blame_probe_deadline(&mut res, Duration::from_secs(3));
        assert_eq!(res.expect_err("a failure").message, "operation timed out");
    }

    #[test]
    fn a_template_error_names_the_part_of_the_request() {
        let ctx = context();
        let req = Request {
            method: reqwest::Method::GET,
            url: "http://dms.test/{{ nope.id }}".into(),
            headers: Vec::new(),
            body: Body::None,
            timeout: Duration::from_secs(5),
        };
        let (class, message) = Runner::render_request(&ctx, &req).expect_err("undefined var");
        assert_eq!(class, ErrorClass::Template);
        assert!(message.starts_with("url: "), "{message}");
    }
}
