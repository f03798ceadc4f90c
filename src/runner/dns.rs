//! Name resolution for the runner's client: the system resolver (getaddrinfo on tokio's
//! blocking pool, as reqwest's own default does it) or an injected one, wrapped so that a
//! request can tell whether its deadline passed while a lookup it started was unanswered.
//! reqwest reports every expired deadline as the same timeout; this is what lets a DNS
//! server that never answers end as `dns`, not `timeout`. It never changes an answer.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

tokio::task_local! {
    /// The lookups of the request being polled (set by [`watched`]).
    static LOOKUPS: Arc<Lookups>;
}

/// The lookups one request started, and how many of them answered (success or error).
#[derive(Debug, Default)]
pub(super) struct Lookups {
    started: AtomicU32,
    answered: AtomicU32,
    /// The name of the latest lookup started.
    name: Mutex<Option<String>>,
}

impl Lookups {
    /// The name being looked up, when a lookup this request started has not answered.
    pub fn unanswered(&self) -> Option<String> {
        if self.started.load(Ordering::Acquire) > self.answered.load(Ordering::Acquire) {
            self.name.lock().ok().and_then(|n| n.clone())
        } else {
            None
        }
    }
}

/// Runs `request` (one request's future) with `lookups` counting the lookups it starts.
/// reqwest calls the resolver while the request is polled, in the request's task; a
/// connection it finishes in the background is no longer this request's lookup.
pub(super) async fn watched<F: Future>(lookups: Arc<Lookups>, request: F) -> F::Output {
    LOOKUPS.scope(lookups, request).await
}

/// A resolver that tells the request being polled about the lookups it makes.
pub(super) struct Watched {
    inner: Arc<dyn Resolve>,
}

impl Watched {
    /// `inner`, or the system resolver.
    pub fn new(inner: Option<Arc<dyn Resolve>>) -> Watched {
        Watched {
            inner: inner.unwrap_or_else(|| Arc::new(SystemResolver)),
        }
    }
}

impl Resolve for Watched {
    fn resolve(&self, name: Name) -> Resolving {
        let lookups = LOOKUPS.try_with(Arc::clone).ok();
        if let Some(l) = &lookups {
            if let Ok(mut n) = l.name.lock() {
                *n = Some(name.as_str().to_string());
            }
            l.started.fetch_add(1, Ordering::AcqRel);
        }
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let out = lookup.await;
            // Not reached when the request's deadline drops the lookup first.
            if let Some(l) = lookups {
                l.answered.fetch_add(1, Ordering::AcqRel);
            }
            out
        })
    }
}

/// getaddrinfo on the blocking pool; the port is reqwest's to set.
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((name.as_str(), 0)).await?;
            Ok(Box::new(addrs.collect::<Vec<_>>().into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;
    use std::time::Duration;

    use super::*;

    /// Answers after `delay` (forever: `None`) with 127.0.0.1.
    struct Slow(Option<Duration>);

    impl Resolve for Slow {
        fn resolve(&self, _: Name) -> Resolving {
            let delay = self.0;
            Box::pin(async move {
                match delay {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending::<()>().await,
                }
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
                Ok(Box::new(std::iter::once(addr)) as Addrs)
            })
        }
    }

    fn name() -> Name {
        Name::from_str("crm.dealer.test").expect("a name")
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_cut_by_the_deadline_is_unanswered() {
        let resolver = Watched::new(Some(Arc::new(Slow(None))));
        let lookups = Arc::new(Lookups::default());
        let cut = tokio::time::timeout(
            Duration::from_secs(2),
            watched(lookups.clone(), async { resolver.resolve(name()).await }),
        )
        .await;
        assert!(cut.is_err());
        assert_eq!(lookups.unanswered().as_deref(), Some("crm.dealer.test"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_lookup_or_none_is_not_unanswered() {
        let resolver = Watched::new(Some(Arc::new(Slow(Some(Duration::from_millis(10))))));
        let lookups = Arc::new(Lookups::default());
        let addrs = watched(lookups.clone(), async { resolver.resolve(name()).await })
            .await
            .expect("answered");
        assert_eq!(addrs.count(), 1);
        assert_eq!(lookups.unanswered(), None);
        assert_eq!(Lookups::default().unanswered(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lookup_outside_a_watched_request_is_not_counted() {
        let resolver = Watched::new(Some(Arc::new(Slow(None))));
        let lookups = Arc::new(Lookups::default());
        // Started before the request's scope (a connection finished in the background).
        let lookup = resolver.resolve(name());
        let cut = tokio::time::timeout(Duration::from_secs(1), watched(lookups.clone(), lookup));
        assert!(cut.await.is_err());
        assert_eq!(lookups.unanswered(), None);
    }
}
