//! The delivery loop: a pass over the outbox whenever an entry is due or the pager
//! queued one, until stop, then one last pass; logs what each pass did. What a pass does
//! (send, retry, fall back, poll receipts) is `outbox::deliver_due`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::outbox::{Pass, Policy, Router, deliver_due};
use crate::clock::Clock;
use crate::store::outbox::OutboxStore;

/// Longest pause of the delivery loop when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

/// What the loop delivers with, and what wakes it early.
pub(super) struct DeliveryLoop<'a> {
    pub outbox: &'a OutboxStore,
    pub router: &'a Router,
    pub policy: &'a Policy,
    pub wake: &'a Notify,
}

/// Delivers until `stop`, then one last pass.
pub(super) async fn deliver_until_stopped(
    d: DeliveryLoop<'_>,
    clock: Arc<dyn Clock>,
    mut stop: watch::Receiver<bool>,
    observe: Arc<dyn Fn(&Pass) + Send + Sync>,
) {
    loop {
        let now = clock.now();
        let mut jitter = rand::random::<f64>;
        match deliver_due(d.outbox, d.router, d.policy, now, &mut jitter).await {
            Ok(pass) => {
                observe(&pass);
                log_pass(&pass);
            }
            Err(e) => tracing::warn!("outbox: {e}"),
        }
        let wait = match d.outbox.next_due().await {
            Ok(Some(t)) => (t - clock.now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE),
            _ => IDLE,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = d.wake.notified() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    let mut jitter = rand::random::<f64>;
    if let Ok(pass) = deliver_due(d.outbox, d.router, d.policy, clock.now(), &mut jitter).await {
        observe(&pass);
    }
}

fn log_pass(pass: &Pass) {
    for k in &pass.delivered {
        tracing::info!("page delivered: {k}");
    }
    for (from, to) in &pass.fell_back {
        tracing::info!("page fell back: {from} → {to}");
    }
    for k in &pass.failed {
        tracing::warn!("page failed: {k}");
    }
    for k in &pass.confirmed {
        tracing::info!("page on the handset: {k}");
    }
    for (k, _) in &pass.undelivered {
        tracing::warn!("page not delivered by the carrier: {k}");
    }
}
