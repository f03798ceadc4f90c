//! End-to-end tests of the sandbox dealership over HTTP on 127.0.0.1: every sync
//! flow, auth, each fault kind, ground-truth latency and leftovers cleanup.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use rooftop::sandbox::{DownMode, Fault, FaultKind, JobName, Sandbox, SandboxConfig, System};
use serde_json::{Value, json};

const LATENCY_MS: u64 = 100;
/// Upper slack for a record to show up / a latency to be measured on a busy machine.
const SLACK_MS: f64 = 200.0;
const PATIENCE: Duration = Duration::from_secs(15);

const VIN: &str = "0RTSYNTH7K2M9Q001";
const CUSTOMER: &str = "Rooftop-Synthetic Customer 7K2M9Q";
const EMAIL: &str = "rooftop-synthetic+7k2m9q@rooftop-synthetic.example";

struct Harness {
    sandbox: Sandbox,
    client: Client,
}

fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

async fn start() -> Harness {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = SandboxConfig {
        seed: Some(11),
        ..SandboxConfig::default()
    }
    .with_fixed_latency(Duration::from_millis(LATENCY_MS));
    let sandbox = Sandbox::start(listen, config)
        .await
        .expect("sandbox starts");
    Harness {
        sandbox,
        client: client(),
    }
}

/// Polls `probe` until it yields a value, failing after `PATIENCE`.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Harness {
    fn base(&self, system: System) -> &str {
        let urls = self.sandbox.urls();
        match system {
            System::Crm => &urls.crm,
            System::Dms => &urls.dms,
            System::Survey => &urls.survey,
        }
    }

    fn token(system: System) -> &'static str {
        match system {
            System::Crm => "crm-sandbox-token",
            System::Dms => "dms-sandbox-token",
            System::Survey => "survey-sandbox-token",
        }
    }

    async fn call(
        &self,
        system: System,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.base(system));
        let mut request = self
            .client
            .request(method, url)
            .bearer_auth(Self::token(system));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request reaches the sandbox");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).expect("JSON body")
        };
        (status, value)
    }

    async fn get(&self, system: System, path: &str) -> (StatusCode, Value) {
        self.call(system, Method::GET, path, None).await
    }

    async fn post(&self, system: System, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(system, Method::POST, path, Some(body)).await
    }

    async fn delete(&self, system: System, path: &str) -> StatusCode {
        self.call(system, Method::DELETE, path, None).await.0
    }

    async fn control(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let url = format!("{}/_sandbox/{path}", self.sandbox.urls().control);
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("control request");
        let status = response.status();
        (status, response.json().await.expect("control JSON"))
    }

    async fn book(&self, vin: &str) -> String {
        let (status, body) = self
            .post(
                System::Crm,
                "/api/appointments",
                json!({"customer": CUSTOMER, "phone": "555-0100", "email": EMAIL, "vin": vin, "service": "oil change"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().expect("appointment id").to_string()
    }

    async fn ro_for(&self, appointment: &str) -> Value {
        let path = format!("/api/repair-orders?appointment={appointment}");
        eventually("the RO", || async {
            let (_, body) = self.get(System::Dms, &path).await;
            body["items"]
                .as_array()
                .and_then(|items| items.first().cloned())
        })
        .await
    }

    async fn truth(&self, kind: &str, source_id: &str) -> Value {
        let (_, body) = self
            .control(
                Method::GET,
                &format!("truth?kind={kind}&source_id={source_id}"),
                None,
            )
            .await;
        body["records"][0].clone()
    }

    async fn leftovers(&self) -> Value {
        self.control(Method::GET, "leftovers", None).await.1
    }
}

fn assert_latency(record: &Value) {
    let latency = record["latency_ms"].as_f64().expect("latency_ms");
    let fixed = LATENCY_MS as f64;
    assert!(
        latency >= fixed && latency < fixed + SLACK_MS,
        "latency {latency} ms is not the configured {fixed} ms: {record}"
    );
}

#[tokio::test]
async fn appointment_to_ro_to_survey_with_truth_and_cleanup() {
    let h = start().await;
    assert_eq!(
        h.control(Method::GET, "health", None).await.0,
        StatusCode::OK
    );
    let apt = h.book(VIN).await;
    assert!(apt.starts_with("APT-"), "{apt}");
    let (status, body) = h
        .get(System::Crm, &format!("/api/appointments/{apt}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["vin"], VIN);

    let ro = h.ro_for(&apt).await;
    let number = ro["number"].as_str().unwrap().to_string();
    assert!(number.starts_with("RO-1"), "{number}");
    assert_eq!(ro["status"], "open");
    assert_eq!(ro["vin"], VIN);
    let (_, customers) = h
        .get(System::Dms, &format!("/api/customers?vin={VIN}"))
        .await;
    assert_eq!(customers["items"].as_array().unwrap().len(), 1);
    assert_eq!(customers["items"][0]["email"], EMAIL);

    let (status, closed) = h
        .post(
            System::Dms,
            &format!("/api/repair-orders/{number}/close"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(closed["status"], "closed");
    let survey = eventually("the survey", || async {
        let (_, body) = h
            .get(System::Survey, &format!("/api/surveys?ro={number}"))
            .await;
        body["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!(survey["status"], "sent");
    assert!(survey["id"].as_str().unwrap().starts_with("SRV-"));

    let ro_truth = h.truth("repair_order", &apt).await;
    assert_eq!(ro_truth["id"], number.as_str());
    assert_eq!(ro_truth["synthetic"], true);
    assert_latency(&ro_truth);
    let survey_truth = h.truth("survey", &number).await;
    assert_eq!(survey_truth["source_created_at"], closed["closed_at"]);
    assert_latency(&survey_truth);
    let stamp = ro_truth["propagated_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && stamp.ends_with('Z'));
    assert_eq!(
        stamp.split('.').nth(1).map(str::len),
        Some(7),
        "microseconds: {stamp}"
    );

    let left = h.leftovers().await;
    assert_eq!(left["count"], 4, "{left}");
    assert_eq!(
        h.delete(
            System::Survey,
            &format!("/api/surveys/{}", survey["id"].as_str().unwrap())
        )
        .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(System::Dms, &format!("/api/repair-orders/{number}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let customer = customers["items"][0]["id"].as_str().unwrap();
    assert_eq!(
        h.delete(System::Dms, &format!("/api/customers/{customer}"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(System::Crm, &format!("/api/appointments/{apt}"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(System::Crm, &format!("/api/appointments/{apt}"))
            .await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(h.leftovers().await["count"], 0);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn lead_price_file_and_note_flows_then_leftovers_reach_zero() {
    let h = start().await;
    // Lead -> BDC call list.
    let (status, lead) = h
        .post(
            System::Crm,
            "/api/leads",
            json!({"name": CUSTOMER, "email": EMAIL, "phone": "555-0101", "source": "web"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let lead_id = lead["id"].as_str().unwrap().to_string();
    let entry = eventually("the BDC entry", || async {
        let (_, body) = h
            .get(System::Crm, &format!("/api/bdc/call-list?lead={lead_id}"))
            .await;
        body["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!(entry["lead_id"], lead_id.as_str());
    assert_eq!(entry["name"], CUSTOMER);
    assert_latency(&h.truth("bdc_entry", &lead_id).await);

    // Price file -> DMS part now, CRM menu via the job.
    let (status, file) = h
        .post(
            System::Dms,
            "/api/price-files",
            json!({"items": [{"part": "RTSYN-OIL-7K2M", "price": 12.5}]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, part) = h.get(System::Dms, "/api/parts/RTSYN-OIL-7K2M").await;
    assert_eq!(
        (status, part["price"].as_f64()),
        (StatusCode::OK, Some(12.5))
    );
    let menu = eventually("the menu price", || async {
        let (status, body) = h.get(System::Crm, "/api/service-menu/RTSYN-OIL-7K2M").await;
        (status == StatusCode::OK).then_some(body)
    })
    .await;
    assert_eq!(menu["price"].as_f64(), Some(12.5));
    assert_latency(&h.truth("menu_price", file["id"].as_str().unwrap()).await);

    // Note -> RO.
    let apt = h.book(VIN).await;
    let ro = h.ro_for(&apt).await;
    let number = ro["number"].as_str().unwrap().to_string();
    let (status, note) = h
        .post(
            System::Crm,
            &format!("/api/appointments/{apt}/notes"),
            json!({"text": "rooftop-synthetic note"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let synced = eventually("the note on the RO", || async {
        let (_, body) = h
            .get(System::Dms, &format!("/api/repair-orders/{number}"))
            .await;
        body["notes"]
            .as_array()
            .and_then(|notes| notes.first().cloned())
    })
    .await;
    assert_eq!(synced["text"], "rooftop-synthetic note");
    assert_latency(&h.truth("ro_note", note["id"].as_str().unwrap()).await);

    // Cleanup, in the order a probe would.
    let kinds: Vec<String> = h.leftovers().await["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "lead",
        "bdc_entry",
        "part",
        "menu_item",
        "appointment",
        "repair_order",
        "customer",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_eq!(
        h.delete(System::Crm, &format!("/api/leads/{lead_id}"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(System::Dms, "/api/parts/RTSYN-OIL-7K2M").await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.get(System::Crm, "/api/service-menu/RTSYN-OIL-7K2M")
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        h.delete(System::Crm, &format!("/api/appointments/{apt}"))
            .await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        h.delete(System::Dms, &format!("/api/repair-orders/{number}"))
            .await,
        StatusCode::NO_CONTENT
    );
    let (_, customers) = h
        .get(System::Dms, &format!("/api/customers?vin={VIN}"))
        .await;
    for customer in customers["items"].as_array().unwrap() {
        let id = customer["id"].as_str().unwrap();
        assert_eq!(
            h.delete(System::Dms, &format!("/api/customers/{id}")).await,
            StatusCode::NO_CONTENT
        );
    }
    let left = h.leftovers().await;
    assert_eq!(left["count"], 0, "{left}");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn duplicate_customer_fault_creates_a_second_customer_for_the_vin() {
    let h = start().await;
    let first = h.book(VIN).await;
    h.ro_for(&first).await;
    let (status, _) = h
        .control(
            Method::POST,
            "faults",
            Some(json!([{"kind": "duplicate_customer"}])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = h.book(VIN).await;
    h.ro_for(&second).await;
    let (_, customers) = h
        .get(System::Dms, &format!("/api/customers?vin={VIN}"))
        .await;
    let items = customers["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{customers}");
    assert_ne!(items[0]["id"], items[1]["id"]);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn bad_tokens_and_auth_rejected_get_401() {
    let h = start().await;
    let url = format!("{}/api/bdc/call-list", h.sandbox.urls().crm);
    let missing = h.client.get(&url).send().await.unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(missing.json::<Value>().await.unwrap()["error"].is_string());
    let wrong = h
        .client
        .get(&url)
        .bearer_auth("dms-sandbox-token")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.get(System::Crm, "/api/bdc/call-list").await.0,
        StatusCode::OK
    );

    h.sandbox
        .set_faults(vec![Fault::new(FaultKind::AuthRejected {
            system: System::Crm,
        })]);
    assert_eq!(
        h.get(System::Crm, "/api/bdc/call-list").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.get(System::Dms, "/api/customers").await.0, StatusCode::OK);
    h.sandbox.set_faults(Vec::new());
    assert_eq!(
        h.get(System::Crm, "/api/bdc/call-list").await.0,
        StatusCode::OK
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn connector_down_refuse_closes_the_port_and_recovers() {
    let h = start().await;
    assert_eq!(
        h.get(System::Crm, "/api/bdc/call-list").await.0,
        StatusCode::OK
    );
    let port = reqwest::Url::parse(&h.sandbox.urls().crm)
        .unwrap()
        .port()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    h.sandbox
        .set_faults(vec![Fault::new(FaultKind::ConnectorDown {
            system: System::Crm,
            mode: DownMode::Refuse,
        })]);
    eventually("the CRM port to refuse", || async {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(()),
            _ => None,
        }
    })
    .await;
    let fresh = client();
    let err = fresh
        .get(format!("{}/api/bdc/call-list", h.sandbox.urls().crm))
        .bearer_auth("crm-sandbox-token")
        .send()
        .await
        .expect_err("a refused connection");
    assert!(err.is_connect(), "{err:?}");
    // The pooled connection of the old client is reset too.
    assert!(
        h.client
            .get(format!("{}/api/bdc/call-list", h.sandbox.urls().crm))
            .bearer_auth("crm-sandbox-token")
            .send()
            .await
            .is_err()
    );
    // Other systems and the control port keep working; the control port's /crm says 503.
    assert_eq!(h.get(System::Dms, "/api/customers").await.0, StatusCode::OK);
    let via_control = h
        .client
        .get(format!(
            "{}/crm/api/bdc/call-list",
            h.sandbox.urls().control
        ))
        .bearer_auth("crm-sandbox-token")
        .send()
        .await
        .unwrap();
    assert_eq!(via_control.status(), StatusCode::SERVICE_UNAVAILABLE);

    assert_eq!(
        h.control(Method::DELETE, "faults", None).await.0,
        StatusCode::OK
    );
    eventually("the CRM to accept again", || async {
        let response = fresh
            .get(format!("{}/api/bdc/call-list", h.sandbox.urls().crm))
            .bearer_auth("crm-sandbox-token")
            .send()
            .await
            .ok()?;
        (response.status() == StatusCode::OK).then_some(())
    })
    .await;
    let after = reqwest::Url::parse(&h.sandbox.urls().crm)
        .unwrap()
        .port()
        .unwrap();
    assert_eq!(after, port, "same port after recovery");
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn http_503_error_burst_slow_and_control_prefix_routes() {
    let h = start().await;
    let (status, body) = h
        .control(
            Method::POST,
            "faults",
            Some(json!([
                {"kind": "connector_down", "system": "dms", "mode": "http_503"},
                {"kind": "error_burst", "system": "survey", "rate": 1.0, "status": 502},
                {"kind": "slow", "system": "crm", "delay": "300ms", "for": "1h"}
            ])),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["faults"].as_array().unwrap().len(), 3);
    assert!(body["faults"][2]["remaining"].is_string());
    let (_, listed) = h.control(Method::GET, "faults", None).await;
    let kinds = |v: &Value| -> Vec<Value> {
        v["faults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].clone())
            .collect()
    };
    assert_eq!(kinds(&listed), kinds(&body));

    let (status, error) = h.get(System::Dms, "/api/customers").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(error["error"].as_str().unwrap().contains("dms"));
    assert_eq!(
        h.get(System::Survey, "/api/surveys").await.0,
        StatusCode::BAD_GATEWAY
    );
    let started = Instant::now();
    assert_eq!(
        h.get(System::Crm, "/api/bdc/call-list").await.0,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    let (status, bad) = h
        .control(
            Method::POST,
            "faults",
            Some(json!([{"kind": "error_burst", "system": "crm", "rate": 3}])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad["error"].as_str().unwrap().contains("rate"));

    h.sandbox.set_faults(Vec::new());
    let via_control = h
        .client
        .get(format!("{}/dms/api/customers", h.sandbox.urls().control))
        .bearer_auth("dms-sandbox-token")
        .send()
        .await
        .unwrap();
    assert_eq!(via_control.status(), StatusCode::OK);
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn job_stalled_holds_records_until_cleared() {
    let h = start().await;
    h.sandbox.set_faults(vec![Fault::new(FaultKind::JobStalled {
        job: JobName::AppointmentToRo,
    })]);
    let apt = h.book(VIN).await;
    tokio::time::sleep(Duration::from_millis(LATENCY_MS * 5)).await;
    let path = format!("/api/repair-orders?appointment={apt}");
    assert_eq!(h.get(System::Dms, &path).await.1["items"], json!([]));
    let (_, jobs) = h.control(Method::GET, "jobs", None).await;
    assert_eq!(
        jobs["jobs"][0],
        json!({"job": "appointment_to_ro", "backlog": 1, "stalled": true})
    );

    h.sandbox.set_faults(Vec::new());
    h.ro_for(&apt).await;
    let record = h.truth("repair_order", &apt).await;
    assert!(
        record["latency_ms"].as_f64().unwrap() >= (LATENCY_MS * 5) as f64,
        "{record}"
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn malformed_json_truncates_bodies() {
    let h = start().await;
    let apt = h.book(VIN).await;
    h.sandbox
        .set_faults(vec![Fault::new(FaultKind::MalformedJson {
            system: System::Crm,
        })]);
    let response = h
        .client
        .get(format!("{}/api/appointments/{apt}", h.sandbox.urls().crm))
        .bearer_auth("crm-sandbox-token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(text.starts_with('{'), "{text}");
    assert!(serde_json::from_str::<Value>(&text).is_err(), "{text}");
    h.sandbox.set_faults(Vec::new());
    assert_eq!(
        h.get(System::Crm, &format!("/api/appointments/{apt}"))
            .await
            .0,
        StatusCode::OK
    );
    h.sandbox.shutdown().await;
}

#[tokio::test]
async fn env_exports_urls_and_tokens() {
    let h = start().await;
    let env: std::collections::HashMap<_, _> = h.sandbox.env().into_iter().collect();
    assert_eq!(env["CRM_URL"], h.sandbox.urls().crm);
    assert!(env["DMS_URL"].starts_with("http://127.0.0.1:") && env["DMS_URL"].ends_with("/dms"));
    assert!(env["SURVEY_URL"].ends_with("/survey"));
    assert_eq!(env["SANDBOX_URL"], h.sandbox.urls().control);
    assert_eq!(env["ROOFTOP_SECRET_CRM_TOKEN"], "crm-sandbox-token");
    assert_eq!(env["ROOFTOP_SECRET_DMS_TOKEN"], "dms-sandbox-token");
    assert_eq!(env["ROOFTOP_SECRET_SURVEY_TOKEN"], "survey-sandbox-token");
    let (status, missing) = h.get(System::Crm, "/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing["error"].is_string());
    let (status, invalid) = h
        .post(
            System::Crm,
            "/api/appointments",
            json!({"customer": CUSTOMER}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        invalid["error"].as_str().unwrap().contains("vin"),
        "{invalid}"
    );
    let (status, _) = h
        .post(
            System::Crm,
            "/api/appointments",
            json!({"customer": " ", "vin": VIN}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, wrong_method) = h
        .call(System::Crm, Method::PUT, "/api/bdc/call-list", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(wrong_method["error"].is_string());
    let (status, _) = h.control(Method::PUT, "truth", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    h.sandbox.shutdown().await;
}
