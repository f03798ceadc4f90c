//! The sandbox dealership: a simulated CRM + DMS + survey system joined by
//! asynchronous sync jobs, with runtime-switchable faults, ground truth and a
//! leftovers report. Used by rooftop's tests, benchmarks and `rooftop demo`.
//!
//! # Listeners and URLs
//! The `listen` address serves the control API (`/_sandbox/*`, no auth) and also
//! routes `/crm`, `/dms` and `/survey` for convenience. Each system additionally
//! listens on its own port (`crm = http://127.0.0.1:P1/crm`, ...), so that
//! `connector_down` in `refuse` mode really closes that port (and resets its open
//! connections) and re-binds the same port when the fault clears. On the shared
//! control port a refused system answers 503 instead, as a shared socket cannot be
//! refused per system. With port 0 every listener is ephemeral; with a fixed control
//! port P the systems default to P+1 (crm), P+2 (dms), P+3 (survey) unless
//! `config.ports` says otherwise.
//!
//! # Auth
//! `Authorization: Bearer <token>` per system, defaults `crm-sandbox-token`,
//! `dms-sandbox-token`, `survey-sandbox-token`, exported by [`Sandbox::env`] as
//! `ROOFTOP_SECRET_CRM_TOKEN`, `ROOFTOP_SECRET_DMS_TOKEN`, `ROOFTOP_SECRET_SURVEY_TOKEN`.
//!
//! # Sync jobs
//! `appointment_to_ro` (appointment → RO, plus the DMS customer upserted per VIN),
//! `ro_to_survey` (RO close → survey), `lead_to_bdc` (lead → BDC call-list entry),
//! `price_file_to_menu` (price-file line → CRM service-menu price) and `note_to_ro`
//! (CRM note → note on the appointment's RO; a note whose RO does not exist yet waits
//! for it). A job never creates anything for a source deleted meanwhile. Every
//! propagation is logged in `/_sandbox/truth` with its exact latency.
//!
//! # Deletion semantics (what cleanup must delete)
//! - Deleting an appointment deletes its notes; its RO and DMS customer stay.
//! - Deleting a lead deletes its BDC call-list entries.
//! - Deleting (voiding) an RO removes it with its synced notes; its surveys stay and
//!   have their own DELETE.
//! - Deleting a DMS customer, or a survey, deletes just that record.
//! - Deleting a DMS part also removes it from the CRM service menu.
//!
//! `/_sandbox/leftovers` lists the synthetic records (appointments, leads, BDC entries,
//! ROs, customers, surveys, parts, menu items) that still exist.

mod clock;
mod config;
mod control;
mod crm;
mod dms;
mod duration;
mod error;
mod faults;
mod http;
mod jobs;
mod latency;
mod listener;
mod scenario;
mod state;
mod survey;
mod truth;

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::Router;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{JobConfig, JobsConfig, Ports, SandboxConfig, Tokens};
pub use error::SandboxError;
pub use faults::{DownMode, Fault, FaultKind, System};
pub use jobs::JobName;
pub use latency::{Latency, Schedule};
pub use scenario::{Scenario, ScenarioStep, parse_scenario};
pub use truth::{Leftover, TruthRecord};

use listener::SwitchListener;
use state::Shared;

/// How long `shutdown` waits for open connections before cutting them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Base URLs of a running sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SandboxUrls {
    /// `http://127.0.0.1:P0` (the control API lives under `/_sandbox`).
    pub control: String,
    /// `http://127.0.0.1:P1/crm`
    pub crm: String,
    /// `http://127.0.0.1:P2/dms`
    pub dms: String,
    /// `http://127.0.0.1:P3/survey`
    pub survey: String,
}

/// A running sandbox. Dropping it stops every task; `shutdown` also lets open
/// requests finish.
pub struct Sandbox {
    shared: Arc<Shared>,
    urls: SandboxUrls,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    scenario: Mutex<Option<JoinHandle<()>>>,
}

fn url_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) if v6.is_unspecified() => format!("[{}]", Ipv6Addr::LOCALHOST),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), SandboxError> {
    let bind_error = |source| SandboxError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

fn system_port(
    config: &SandboxConfig,
    system: System,
    control_port: u16,
    listen_port: u16,
) -> Result<u16, SandboxError> {
    let (configured, offset) = match system {
        System::Crm => (config.ports.crm, 1),
        System::Dms => (config.ports.dms, 2),
        System::Survey => (config.ports.survey, 3),
    };
    match configured {
        Some(port) => Ok(port),
        None if listen_port == 0 => Ok(0),
        None => control_port.checked_add(offset).ok_or_else(|| {
            SandboxError::Config(format!(
                "no port above {control_port} for {}; set ports.{}",
                system.as_str(),
                system.as_str()
            ))
        }),
    }
}

async fn stop_signal(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

impl Sandbox {
    /// Binds the control listener at `listen` and one listener per system, then
    /// starts serving and running the sync jobs.
    pub async fn start(listen: SocketAddr, config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        config.validate()?;
        let shared = Shared::new(&config);
        let (control_listener, control_addr) = bind(listen).await?;
        let host = url_host(listen.ip());
        let mut systems = Vec::new();
        for system in System::ALL {
            let port = system_port(&config, system, control_addr.port(), listen.port())?;
            let (listener, addr) = bind(SocketAddr::new(listen.ip(), port)).await?;
            systems.push((system, listener, addr));
        }
        let url = |system: System| {
            systems
                .iter()
                .find(|(s, _, _)| *s == system)
                .map(|(_, _, addr)| format!("http://{host}:{}/{}", addr.port(), system.as_str()))
                .unwrap_or_default()
        };
        let urls = SandboxUrls {
            control: format!("http://{host}:{}", control_addr.port()),
            crm: url(System::Crm),
            dms: url(System::Dms),
            survey: url(System::Survey),
        };

        let (stop, _) = watch::channel(false);
        let mut servers = Vec::new();
        let control_router = control::router(shared.clone(), urls.clone())
            .merge(crm::router(shared.clone()))
            .merge(dms::router(shared.clone()))
            .merge(survey::router(shared.clone()))
            .fallback(http::not_found);
        let serve = axum::serve(control_listener, control_router)
            .with_graceful_shutdown(stop_signal(stop.subscribe()));
        servers.push(tokio::spawn(async move {
            let _ = serve.await;
        }));
        for (system, listener, addr) in systems {
            let router: Router = match system {
                System::Crm => crm::router(shared.clone()),
                System::Dms => dms::router(shared.clone()),
                System::Survey => survey::router(shared.clone()),
            };
            let switch = SwitchListener::new(system, listener, addr, shared.faults.subscribe());
            let serve = axum::serve(switch, router.fallback(http::not_found))
                .with_graceful_shutdown(stop_signal(stop.subscribe()));
            servers.push(tokio::spawn(async move {
                let _ = serve.await;
            }));
        }
        let workers = JobName::ALL
            .iter()
            .map(|&job| tokio::spawn(jobs::run_worker(shared.clone(), job)))
            .collect();
        Ok(Sandbox {
            shared,
            urls,
            stop,
            servers,
            workers,
            scenario: Mutex::new(None),
        })
    }

    /// Base URLs per system.
    pub fn urls(&self) -> &SandboxUrls {
        &self.urls
    }

    /// `CRM_URL`, `DMS_URL`, `SURVEY_URL`, `SANDBOX_URL` and the three
    /// `ROOFTOP_SECRET_*_TOKEN` variables.
    pub fn env(&self) -> Vec<(String, String)> {
        let tokens = &self.shared.tokens;
        [
            ("CRM_URL", &self.urls.crm),
            ("DMS_URL", &self.urls.dms),
            ("SURVEY_URL", &self.urls.survey),
            ("SANDBOX_URL", &self.urls.control),
            ("ROOFTOP_SECRET_CRM_TOKEN", &tokens.crm),
            ("ROOFTOP_SECRET_DMS_TOKEN", &tokens.dms),
            ("ROOFTOP_SECRET_SURVEY_TOKEN", &tokens.survey),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
    }

    /// `traceparent` headers the systems received (the latest 10,000), oldest first.
    pub fn traceparents(&self) -> Vec<String> {
        self.shared.traceparents()
    }

    /// Replaces the active fault set, like `POST /_sandbox/faults`.
    pub fn set_faults(&self, faults: Vec<Fault>) {
        self.shared.faults.replace(faults);
    }

    /// The active faults as JSON, like `GET /_sandbox/faults`.
    pub fn faults(&self) -> Vec<serde_json::Value> {
        self.shared.faults.list_json()
    }

    /// The ground truth so far, like `GET /_sandbox/truth`.
    pub fn truth(&self) -> Vec<TruthRecord> {
        self.shared.world().truth.clone()
    }

    /// Synthetic records still present, like `GET /_sandbox/leftovers`.
    pub fn leftovers(&self) -> Vec<Leftover> {
        truth::leftovers(&self.shared.world())
    }

    /// Plays a scenario to its end (forever if it repeats).
    pub async fn play_scenario(&self, scenario: Scenario) {
        scenario::play(&self.shared.faults, &scenario).await;
    }

    /// Plays a scenario in the background, replacing any scenario already playing;
    /// it stops at `shutdown`.
    pub fn spawn_scenario(&self, scenario: Scenario) {
        let shared = self.shared.clone();
        let task = tokio::spawn(async move { scenario::play(&shared.faults, &scenario).await });
        let mut slot = self.scenario.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(previous) = slot.replace(task) {
            previous.abort();
        }
    }

    /// Stops the scenario and jobs, stops accepting connections and waits (up to a
    /// grace period) for open requests to finish.
    pub async fn shutdown(mut self) {
        self.abort_background();
        let _ = self.stop.send(true);
        for server in std::mem::take(&mut self.servers) {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
                abort.abort();
            }
        }
    }

    fn abort_background(&mut self) {
        let mut slot = self.scenario.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = slot.take() {
            task.abort();
        }
        for worker in self.workers.drain(..) {
            worker.abort();
        }
        self.shared.faults.stop();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.abort_background();
        for server in self.servers.drain(..) {
            server.abort();
        }
    }
}

fn shell_quote(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./:@[]".contains(c))
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// `rooftop sandbox`: starts the sandbox, prints its URLs and `export` lines, plays
/// the scenario if any, and serves until `shutdown` completes.
pub async fn run_cli(
    listen: SocketAddr,
    config: SandboxConfig,
    scenario: Option<Scenario>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let sandbox = Sandbox::start(listen, config).await?;
    let urls = sandbox.urls();
    println!("rooftop sandbox dealership is running");
    println!("  control  {}/_sandbox", urls.control);
    println!("  crm      {}", urls.crm);
    println!("  dms      {}", urls.dms);
    println!("  survey   {}", urls.survey);
    println!();
    for (key, value) in sandbox.env() {
        println!("export {key}={}", shell_quote(&value));
    }
    if let Some(scenario) = scenario {
        println!();
        println!(
            "playing a scenario of {} steps{}",
            scenario.steps.len(),
            if scenario.repeat { ", repeating" } else { "" }
        );
        sandbox.spawn_scenario(scenario);
    }
    shutdown.await;
    sandbox.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_hosts_and_quoting() {
        assert_eq!(url_host(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), "127.0.0.1");
        assert_eq!(url_host(IpAddr::V6(Ipv6Addr::LOCALHOST)), "[::1]");
        assert_eq!(
            shell_quote("http://127.0.0.1:80/crm"),
            "http://127.0.0.1:80/crm"
        );
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }

    fn any_port() -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
    }

    #[tokio::test]
    async fn start_rejects_bad_config_and_busy_ports() {
        let mut config = SandboxConfig::default();
        config.tokens.crm = String::new();
        assert!(matches!(
            Sandbox::start(any_port(), config).await,
            Err(SandboxError::Config(_))
        ));
        let sandbox = Sandbox::start(any_port(), SandboxConfig::default())
            .await
            .unwrap();
        let port: u16 = sandbox
            .urls()
            .control
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let busy = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(matches!(
            Sandbox::start(busy, SandboxConfig::default()).await,
            Err(SandboxError::Bind { .. })
        ));
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn spawned_scenario_drives_the_fault_board() {
        let sandbox = Sandbox::start(any_port(), SandboxConfig::default())
            .await
            .unwrap();
        let stay = parse_scenario(serde_json::json!({"steps": [
            {"at": "0s", "faults": [{"kind": "duplicate_customer"}]}
        ]}))
        .unwrap();
        let scenario = parse_scenario(serde_json::json!({"steps": [
            {"at": "0s", "faults": [{"kind": "duplicate_customer"}]},
            {"at": "50ms", "faults": []}
        ]}))
        .unwrap();
        sandbox.spawn_scenario(stay);
        tokio::time::timeout(Duration::from_secs(10), async {
            while !sandbox.shared.faults.duplicate_customer() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        sandbox.play_scenario(scenario).await;
        assert!(!sandbox.shared.faults.duplicate_customer());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn run_cli_serves_until_shutdown() {
        let scenario = parse_scenario(serde_json::json!({"steps": [{"at": "0s"}]})).unwrap();
        let shutdown = tokio::time::sleep(Duration::from_millis(100));
        run_cli(
            any_port(),
            SandboxConfig::default(),
            Some(scenario),
            shutdown,
        )
        .await
        .unwrap();
    }

    #[test]
    fn system_ports_follow_the_control_port() {
        let config = SandboxConfig::default();
        assert_eq!(system_port(&config, System::Dms, 8080, 8080).unwrap(), 8082);
        assert_eq!(system_port(&config, System::Dms, 40000, 0).unwrap(), 0);
        assert!(system_port(&config, System::Survey, 65534, 65534).is_err());
        let mut config = SandboxConfig::default();
        config.ports.crm = Some(9000);
        assert_eq!(system_port(&config, System::Crm, 8080, 8080).unwrap(), 9000);
    }
}
