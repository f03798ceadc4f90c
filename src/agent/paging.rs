//! The agent's pager, assembled from `rooftop.yaml`: each configured channel with its
//! secrets rendered, the contacts and routes, the outbox, the ack signer; and the
//! delivery-pass observer that turns outbox results into notification metrics.

use std::path::Path;
use std::sync::Arc;

use super::AgentError;
use crate::alerting::ack::AckSigner;
use crate::config::Config;
use crate::model::EmailDestination;
use crate::notify::Channel;
use crate::notify::email::{EmailChannel, EmailTransport, SmtpSettings};
use crate::notify::outbox::{Pass, Router};
use crate::notify::pager::{LiveOnCall, Pager, PagerStores};
use crate::notify::pagerduty::{PagerDutyChannel, PagerDutySettings};
use crate::notify::sms::{SmsChannel, SmsSettings};
use crate::notify::webhook::{WebhookChannel, WebhookSettings};
use crate::runner::Runner;
use crate::store::outbox::OutboxEntry;
use crate::telemetry::Telemetry;

/// The channels of `rooftop.yaml` (secrets rendered) plus `extra` (channels the caller
/// provides, e.g. the demo's SMS folder), the outbox and the ack signer.
pub fn build_pager(
    config: &Config,
    runner: &Runner,
    extra: &[Arc<dyn Channel>],
    stores: PagerStores,
    ack: Option<AckSigner>,
    oncall: Arc<LiveOnCall>,
) -> Result<Pager, AgentError> {
    let a = &config.agent.alerting;
    let render = |what: &str, t: &str| {
        runner
            .render_setting(t)
            .map_err(|e| AgentError::Config(format!("alerting.{what}: {e}")))
    };
    let client = reqwest::Client::new();
    let mut personal: Vec<(String, Arc<dyn Channel>)> = extra
        .iter()
        .map(|c| (c.name().to_string(), c.clone()))
        .collect();
    let mut shared: Vec<Arc<dyn Channel>> = Vec::new();
    if let Some(s) = &a.sms {
        let mut settings = SmsSettings::new(
            s.account_sid.clone(),
            render("sms.auth_token", &s.auth_token)?,
            s.from.clone(),
        );
        if let Some(u) = &s.base_url {
            settings.base_url = u.clone();
        }
        // `Reply ACK 4821.` only while someone reads the replies.
        settings.reply_code = s.replies.is_some();
        personal.push((
            "sms".into(),
            Arc::new(SmsChannel::new(settings, client.clone())),
        ));
    }
    if let Some(w) = &a.webhook {
        let settings = WebhookSettings::new(w.url.clone(), render("webhook.secret", &w.secret)?);
        shared.push(Arc::new(WebhookChannel::new(settings, client.clone())));
    }
    if let Some(pd) = &a.pagerduty {
        let mut settings =
            PagerDutySettings::new(render("pagerduty.routing_key", &pd.routing_key)?);
        if let Some(u) = &pd.url {
            settings.url = u.clone();
        }
        shared.push(Arc::new(PagerDutyChannel::new(settings, client.clone())));
    }
    if let Some(e) = &a.email {
        let transport = match &e.destination {
            EmailDestination::Folder(p) => EmailTransport::Folder(config.dir.join(p)),
            EmailDestination::Smtp {
                host,
                port,
                security,
                username,
                password_template,
                timeout,
                ca_file,
            } => EmailTransport::Smtp(SmtpSettings {
                host: host.clone(),
                port: *port,
                security: *security,
                username: username.clone(),
                password: password_template
                    .as_ref()
                    .map(|t| render("email.smtp.password", t))
                    .transpose()?,
                timeout: *timeout,
                ca_pem: ca_file
                    .as_ref()
                    .map(|f| read_ca(&config.dir, f))
                    .transpose()?,
            }),
        };
        let channel = EmailChannel::new(&e.from, transport)
            .map_err(|e| AgentError::Config(format!("alerting.email: {e}")))?;
        personal.push(("email".into(), Arc::new(channel)));
    }
    // Personal channels in the preferred order, then the shared ones.
    let mut channels: Vec<Arc<dyn Channel>> = Vec::new();
    for name in &a.prefer {
        if let Some(i) = personal.iter().position(|(n, _)| n == name) {
            channels.push(personal.remove(i).1);
        }
    }
    channels.extend(personal.into_iter().map(|(_, c)| c));
    channels.extend(shared);
    if channels.is_empty() && !a.routes.is_empty() {
        tracing::warn!(
            "alerting.routes are set but no channel is configured: incidents are recorded, nobody is paged"
        );
    }
    let router = Router {
        contacts: a.contacts.clone(),
        channels,
        severity_channels: a
            .severities
            .iter()
            .map(|(s, p)| (*s, p.channels.clone()))
            .collect(),
    };
    Ok(Pager::new(
        stores,
        router,
        &config.agent,
        &config.dir,
        ack,
        oncall,
    ))
}

fn read_ca(dir: &Path, file: &Path) -> Result<Vec<u8>, AgentError> {
    std::fs::read(dir.join(file)).map_err(|e| {
        AgentError::Config(format!(
            "alerting.email.smtp.ca_file {}: {e}",
            file.display()
        ))
    })
}

/// Counts each delivery pass's results as notification metrics.
pub fn observe_passes(telemetry: Arc<Telemetry>) -> Arc<dyn Fn(&Pass) + Send + Sync> {
    Arc::new(move |pass: &Pass| {
        // Keys are `<incident>/<kind>[#round]/<channel>/<person>`.
        let parts = |k: &str| {
            let (kind, channel) = OutboxEntry::key_kind_and_channel(k).unwrap_or(("-", "-"));
            let kind = kind.split('#').next().unwrap_or(kind);
            (channel.to_string(), kind.to_string())
        };
        let undelivered: Vec<String> = pass.undelivered.iter().map(|(k, _)| k.clone()).collect();
        for (keys, result) in [
            (&pass.delivered, "delivered"),
            (&pass.retried, "retry"),
            (&pass.failed, "failed"),
            (&pass.confirmed, "confirmed"),
            (&undelivered, "undelivered"),
        ] {
            for k in keys {
                let (c, kind) = parts(k);
                telemetry.observe_notification(&c, &kind, result);
            }
        }
        for (from, _) in &pass.fell_back {
            let (c, kind) = parts(from);
            telemetry.observe_notification(&c, &kind, "fallback");
        }
    })
}
