//! The HTTP side of the runner: one shared reqwest client (connection reuse, TLS
//! verification on by default, redirects only within the probe's origin and never with a
//! `Referer`), a body-size cap, `traceparent` on every request, and the mapping of
//! transport failures to a bounded `ErrorClass` (a deadline that passed during a DNS
//! lookup is `dns`, with `dns.rs` telling which phase the deadline cut).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

use super::dns;
use crate::model::ErrorClass;

/// Client settings from `rooftop.yaml`.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub max_body_bytes: u64,
    pub verify_tls: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: 1 << 20,
            verify_tls: true,
        }
    }
}

/// A shared client; cheap to clone.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    max_body_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

impl HttpClient {
    pub fn new(settings: &HttpSettings) -> Result<Self, ClientError> {
        Self::with_resolver(settings, None)
    }

    /// With a custom DNS resolver (tests use this to exercise DNS failures on loopback);
    /// `None` is the system's.
    pub fn with_resolver(
        settings: &HttpSettings,
        resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    ) -> Result<Self, ClientError> {
        let b = reqwest::Client::builder()
            .user_agent(concat!("rooftop/", env!("CARGO_PKG_VERSION")))
            .redirect(redirect_policy())
            // Off: it would carry the previous URL, query and all (`?key={{ secret.x }}`),
            // to the origin a redirect points at.
            .referer(false)
            .pool_idle_timeout(Duration::from_secs(60))
            .tls_danger_accept_invalid_certs(!settings.verify_tls);
        let b = b.dns_resolver(Arc::new(dns::Watched::new(resolver)));
        let client = b.build().map_err(|e| ClientError(e.to_string()))?;
        Ok(HttpClient {
            client,
            max_body_bytes: settings.max_body_bytes,
        })
    }

    /// Sends one request and reads the body up to the cap.
    pub async fn send(
        &self,
        req: &OutgoingRequest,
        traceparent: &str,
    ) -> Result<Response, Failure> {
        let started = Instant::now();
        let mut builder = self
            .client
            .request(req.method.clone(), &req.url)
            .timeout(req.timeout)
            .headers(req.headers.clone())
            .header("traceparent", traceparent);
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        let fail = |class: ErrorClass, message: String| Failure {
            class,
            message,
            elapsed: started.elapsed(),
            stale_connection: false,
            status: None,
            timed_out: class == ErrorClass::Timeout,
            unresolved: None,
        };
        let lookups = Arc::new(dns::Lookups::default());
        let sent = dns::watched(lookups.clone(), builder.send()).await;
        let mut resp = sent.map_err(|e| match lookups.unanswered() {
            // The deadline passed while the name was still being looked up.
            Some(name) if e.is_timeout() => Failure {
                timed_out: true,
                ..fail(
                    ErrorClass::Dns,
                    format!(
                        "`{name}` did not resolve within {} (no answer from DNS)",
                        whole_ms(req.timeout)
                    ),
                )
                .with_unresolved(name)
            },
            _ => Failure {
                stale_connection: is_connection_lost(&e),
                ..fail(classify(&e), describe(&e))
            },
        })?;
        let ttfb = started.elapsed();
        let status = resp.status().as_u16();
        // From here on the server has answered: a body problem keeps the status, since a
        // 201 with an unreadable body still created the record.
        let fail = |class: ErrorClass, message: String| Failure {
            status: Some(status),
            ..fail(class, message)
        };
        let headers = resp.headers().clone();
        if let Some(len) = resp.content_length()
            && len > self.max_body_bytes
        {
            return Err(fail(
                ErrorClass::BodyTooLarge,
                format!(
                    "response body of {len} bytes exceeds the {} byte limit",
                    self.max_body_bytes
                ),
            ));
        }
        let mut body = Vec::new();
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() as u64 + chunk.len() as u64 > self.max_body_bytes {
                        return Err(fail(
                            ErrorClass::BodyTooLarge,
                            format!(
                                "response body exceeds the {} byte limit",
                                self.max_body_bytes
                            ),
                        ));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(fail(classify(&e), describe(&e))),
            }
        }
        Ok(Response {
            status,
            headers,
            body,
            ttfb,
            total: started.elapsed(),
        })
    }
}

/// Redirects followed in one request before it fails as `protocol` ("too many
/// redirects"): a loop ends after this many hops.
pub const MAX_REDIRECTS: usize = 5;

/// Redirects are followed within the probe's origin (or from http to https on the same
/// host), at most `MAX_REDIRECTS` of them. A redirect to another origin or another scheme
/// (`file:`, `ftp:`, `javascript:`) is never followed: the 3xx is the step's answer. The
/// probe's own headers (`X-Api-Key: {{ secret.k }}`: reqwest strips only `Authorization`
/// and cookies on a hop) must not reach a host the probe did not name.
fn redirect_policy() -> reqwest::redirect::Policy {
    let limited = reqwest::redirect::Policy::limited(MAX_REDIRECTS);
    reqwest::redirect::Policy::custom(move |attempt| {
        let from = attempt.previous().last();
        if from.is_some_and(|from| may_follow(from, attempt.url())) {
            limited.redirect(attempt)
        } else {
            attempt.stop()
        }
    })
}

/// Whether a redirect from `from` to `to` stays where the probe's headers may go.
fn may_follow(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    let same_origin = from.scheme() == to.scheme()
        && from.host_str() == to.host_str()
        && from.port_or_known_default() == to.port_or_known_default();
    let upgrade =
        from.scheme() == "http" && to.scheme() == "https" && from.host_str() == to.host_str();
    same_origin || upgrade
}

/// A fully rendered request.
#[derive(Debug, Clone)]
pub struct OutgoingRequest {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl OutgoingRequest {
    pub fn header(&mut self, name: &str, value: &str) -> Result<(), String> {
        let n = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("invalid header name `{name}`"))?;
        let v = HeaderValue::from_str(value)
            .map_err(|_| format!("header `{name}` has a value that is not valid in HTTP"))?;
        self.headers.insert(n, v);
        Ok(())
    }
}

/// A response that was fully read.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub ttfb: Duration,
    pub total: Duration,
}

impl Response {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// A request that produced no response.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
    pub elapsed: Duration,
    /// The connection was closed or reset under the request.
    pub stale_connection: bool,
    /// The status line, when the failure came after it (body too large or cut off).
    pub status: Option<u16>,
    /// The request's timeout ended it (in whichever phase `class` names).
    pub timed_out: bool,
    /// The name whose lookup was still unanswered when the timeout ended the request.
    pub unresolved: Option<String>,
}

impl Failure {
    fn with_unresolved(self, name: String) -> Failure {
        Failure {
            unresolved: Some(name),
            ..self
        }
    }
}

/// `d` to the millisecond, for a message (`1s 999ms`, not `1s 999ms 873us 12ns`).
pub fn whole_ms(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

/// The peer closed or reset the connection before answering.
fn is_connection_lost(e: &reqwest::Error) -> bool {
    let chain = chain_text(e);
    chain.contains("connection closed before message completed")
        || chain.contains("connection reset")
        || chain.contains("broken pipe")
}

/// Maps a reqwest error to a bounded class by inspecting its cause chain.
pub fn classify(e: &reqwest::Error) -> ErrorClass {
    if e.is_timeout() {
        return ErrorClass::Timeout;
    }
    let chain = chain_text(e);
    if chain.contains("dns error")
        || chain.contains("failed to lookup address")
        || chain.contains("resolve")
    {
        return ErrorClass::Dns;
    }
    if chain.contains("certificate")
        || chain.contains("tls")
        || chain.contains("handshake")
        || chain.contains("invalidcontenttype")
    {
        return ErrorClass::Tls;
    }
    // A connection that is refused, reset or closed under us is the connector going
    // away: the same class whether or not the socket was fresh.
    if e.is_connect() || is_connection_lost(e) {
        return ErrorClass::Connect;
    }
    if chain.contains("timed out") {
        return ErrorClass::Timeout;
    }
    ErrorClass::Protocol
}

/// The error's cause chain as lower-case text, without the request URL (a path such as
/// `/certificates` must not make a refused connection look like a TLS failure, and a
/// percent-encoded secret in a query must not reach a message).
fn chain_text(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        out.push_str(&strip_url(e, &err.to_string()).to_ascii_lowercase());
        out.push_str(" | ");
        cur = err.source();
    }
    out
}

fn strip_url(e: &reqwest::Error, text: &str) -> String {
    match e.url() {
        Some(u) => text
            .replace(&format!(" for url ({})", u.as_str()), "")
            .replace(u.as_str(), "<url>"),
        None => text.to_string(),
    }
}

/// One-line description: the outermost message plus the innermost cause.
fn describe(e: &reqwest::Error) -> String {
    let mut root: &dyn std::error::Error = e;
    while let Some(s) = root.source() {
        root = s;
    }
    let outer = strip_url(e, &e.to_string());
    let inner = strip_url(e, &root.to_string());
    if outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

/// Random W3C ids.
pub fn new_trace_id() -> String {
    hex_id(16)
}

pub fn new_span_id() -> String {
    hex_id(8)
}

fn hex_id(bytes: usize) -> String {
    let mut rng = rand::rng();
    loop {
        let s: String = (0..bytes)
            .map(|_| format!("{:02x}", rng.random::<u8>()))
            .collect();
        // All-zero ids are invalid in W3C trace context.
        if s.chars().any(|c| c != '0') {
            return s;
        }
    }
}

pub fn traceparent(trace_id: &str, span_id: &str) -> String {
    format!("00-{trace_id}-{span_id}-01")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Answers one connection with `response` and returns the request head it read.
    async fn answer_once(listener: TcpListener, response: String) -> String {
        let (mut s, _) = listener.accept().await.expect("a connection");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).await.unwrap_or(0) == 1 {
            head.push(byte[0]);
        }
        s.write_all(response.as_bytes()).await.expect("written");
        String::from_utf8_lossy(&head).to_ascii_lowercase()
    }

    #[tokio::test]
    async fn a_redirect_to_another_origin_is_the_answer_not_followed() {
        let first = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let start = format!(
            "http://{}/start?key=hunter2",
            first.local_addr().expect("addr")
        );
        let other = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let landing = format!("http://{}/landing", other.local_addr().expect("addr"));
        let to_other = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nlocation: {landing}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_string();
        let seen_first = tokio::spawn(answer_once(first, to_other));
        let seen_other = tokio::spawn(answer_once(other, ok));

        let client = HttpClient::new(&HttpSettings::default()).expect("a client");
        let mut req = OutgoingRequest {
            method: reqwest::Method::GET,
            url: start,
            headers: HeaderMap::new(),
            body: None,
            timeout: Duration::from_secs(10),
        };
        req.header("x-api-key", "hunter2").expect("valid");
        let resp = client.send(&req, "00-1-2-01").await.expect("an answer");
        assert_eq!(resp.status, 307, "not followed");
        assert!(seen_first.await.expect("served").contains("hunter2"));
        assert!(
            !seen_other.is_finished(),
            "nothing reached the other origin"
        );
    }

    /// Never answers: a DNS server gone silent.
    struct SilentResolver;

    impl reqwest::dns::Resolve for SilentResolver {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            Box::pin(std::future::pending())
        }
    }

    /// Resolves every name to 127.0.0.1 at once.
    struct LoopbackResolver;

    impl reqwest::dns::Resolve for LoopbackResolver {
        fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as reqwest::dns::Addrs) })
        }
    }

    fn get(url: String, timeout: Duration) -> OutgoingRequest {
        OutgoingRequest {
            method: reqwest::Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            timeout,
        }
    }

    /// A port on 127.0.0.1 that accepts and never says a word.
    async fn silent_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_timeout_during_the_lookup_is_dns_and_after_it_a_timeout() {
        let silent_dns = Some(Arc::new(SilentResolver) as Arc<dyn reqwest::dns::Resolve>);
        let client = HttpClient::with_resolver(&HttpSettings::default(), silent_dns).expect("ok");
        let req = get("http://crm.dealer.test/".into(), Duration::from_millis(300));
        let f = client.send(&req, "00-1-2-01").await.expect_err("no answer");
        assert_eq!(f.class, ErrorClass::Dns);
        assert!(f.timed_out);
        assert_eq!(f.unresolved.as_deref(), Some("crm.dealer.test"));
        assert_eq!(
            f.message,
            "`crm.dealer.test` did not resolve within 300ms (no answer from DNS)"
        );

        // Resolved at once, then a server that never answers: the server's timeout.
        let port = silent_server().await;
        let loopback = Some(Arc::new(LoopbackResolver) as Arc<dyn reqwest::dns::Resolve>);
        let client = HttpClient::with_resolver(&HttpSettings::default(), loopback).expect("ok");
        let req = get(
            format!("http://crm.dealer.test:{port}/"),
            Duration::from_millis(300),
        );
        let f = client.send(&req, "00-1-2-01").await.expect_err("no answer");
        assert_eq!((f.class, f.timed_out), (ErrorClass::Timeout, true));
        assert_eq!(f.unresolved, None);

        // The system resolver answers `localhost`: the same.
        let client = HttpClient::new(&HttpSettings::default()).expect("ok");
        let req = get(
            format!("http://localhost:{port}/"),
            Duration::from_millis(300),
        );
        let f = client.send(&req, "00-1-2-01").await.expect_err("no answer");
        assert_eq!(
            (f.class, &f.unresolved),
            (ErrorClass::Timeout, &None),
            "{f:?}"
        );
    }

    #[test]
    fn redirects_stay_on_the_origin_or_upgrade_to_https() {
        let url = |s: &str| reqwest::Url::parse(s).expect("a URL");
        let follows = |from: &str, to: &str| may_follow(&url(from), &url(to));
        assert!(follows("http://crm.test/a", "http://crm.test/b?x=1"));
        assert!(follows("http://crm.test/a", "https://crm.test/a"));
        assert!(follows("https://crm.test:443/a", "https://crm.test/b"));
        assert!(
            !follows("https://crm.test/a", "http://crm.test/a"),
            "downgrade"
        );
        assert!(!follows("http://crm.test/a", "http://evil.test/a"));
        assert!(!follows("http://crm.test:8080/a", "http://crm.test:9090/a"));
        assert!(!follows("http://crm.test/a", "ftp://crm.test/a"));
        assert!(!follows("http://crm.test/a", "file:///etc/passwd"));
    }

    #[tokio::test]
    async fn a_redirect_to_another_scheme_is_the_answer_not_followed() {
        let client = HttpClient::new(&HttpSettings::default()).expect("a client");
        for to in [
            "ftp://127.0.0.1/pub",
            "file:///etc/passwd",
            "javascript:alert(1)",
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
            let url = format!("http://{}/start", listener.local_addr().expect("addr"));
            let redirect = format!(
                "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            tokio::spawn(answer_once(listener, redirect));
            let req = OutgoingRequest {
                method: reqwest::Method::GET,
                url,
                headers: HeaderMap::new(),
                body: None,
                timeout: Duration::from_secs(10),
            };
            let resp = client.send(&req, "00-1-2-01").await.expect("an answer");
            assert_eq!(resp.status, 302, "{to}");
            assert_eq!(resp.header("location").as_deref(), Some(to));
        }
    }
}
