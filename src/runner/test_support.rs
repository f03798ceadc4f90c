//! Fixtures shared by the runner's unit tests: a bare template context, a response read
//! in no time and an assertion result, so each test states only the status, body or subject it is about.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::AssertionResult;
use super::http::Response;
use crate::secrets::{Masker, SecretStore};
use crate::synthetic::Synthetic;
use crate::template::Context;

/// A template context of run `r` of probe `p`, with no env, secrets or values.
pub fn context() -> Context {
    Context::new(
        Arc::default(),
        Arc::new(SecretStore::default()),
        Arc::new(Synthetic::new("r")),
        "r",
        "p",
        Masker::default(),
    )
}

/// A fully read response with no headers.
pub fn response(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: Default::default(),
        body: body.as_bytes().to_vec(),
        ttfb: Duration::ZERO,
        total: Duration::ZERO,
    }
}

/// An `equals 1` assertion on `subject` that passed or failed.
pub fn assertion_result(subject: &str, passed: bool) -> AssertionResult {
    AssertionResult {
        subject: subject.into(),
        op: "equals".into(),
        expected: json!(1),
        actual: None,
        passed,
    }
}
