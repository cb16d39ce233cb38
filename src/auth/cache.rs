//! The credentials cache every S3 client uses: credentials are reused until a margin before
//! their expiry, refreshed by one caller at a time, and dropped at once when S3 answers
//! ExpiredToken, so the retried request signs with new ones. The SDK's own identity cache has
//! no way to drop credentials early; this replaces it. It does not decide what to retry.

use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Debug)]
struct Cached {
    credentials: Credentials,
    /// When to fetch new ones: the expiry less the margin, or `None` for credentials that do
    /// not expire (static keys).
    refresh_at: Option<SystemTime>,
}

/// A cloneable handle: clones share the cache.
#[derive(Debug, Clone)]
pub struct CredentialsCache {
    inner: SharedCredentialsProvider,
    margin: Duration,
    cached: Arc<Mutex<Option<Cached>>>,
    /// Held while fetching, so concurrent parts wait for one refresh instead of each doing one.
    refreshing: Arc<tokio::sync::Mutex<()>>,
}

impl CredentialsCache {
    /// Caches `inner`'s credentials, refreshing them `margin` before expiry (or at half their
    /// lifetime when that is sooner, so short sessions are not refreshed on every request).
    pub fn new(inner: SharedCredentialsProvider, margin: Duration) -> Self {
        Self {
            inner,
            margin,
            cached: Arc::default(),
            refreshing: Arc::default(),
        }
    }

    /// Forgets the cached credentials; the next request fetches new ones.
    pub fn invalidate(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        // The guarded value is replaced whole, so a panic elsewhere cannot leave it torn.
        self.cached.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self, now: SystemTime) -> Option<Credentials> {
        let cached = self.lock();
        let c = cached.as_ref()?;
        match c.refresh_at {
            Some(at) if now >= at => None,
            _ => Some(c.credentials.clone()),
        }
    }

    async fn get(&self) -> aws_credential_types::provider::Result {
        if let Some(c) = self.current(SystemTime::now()) {
            return Ok(c);
        }
        let _one_at_a_time = self.refreshing.lock().await;
        // Another caller may have refreshed while this one waited.
        let now = SystemTime::now();
        if let Some(c) = self.current(now) {
            return Ok(c);
        }
        let credentials = self.inner.provide_credentials().await?;
        let refresh_at = credentials
            .expiry()
            .map(|expiry| refresh_time(now, expiry, self.margin));
        *self.lock() = Some(Cached {
            credentials: credentials.clone(),
            refresh_at,
        });
        Ok(credentials)
    }
}

/// `margin` before `expiry`, but never earlier than half way through the remaining lifetime.
fn refresh_time(now: SystemTime, expiry: SystemTime, margin: Duration) -> SystemTime {
    let lifetime = expiry.duration_since(now).unwrap_or_default();
    now + lifetime - margin.min(lifetime / 2)
}

impl ProvideCredentials for CredentialsCache {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Hands out credentials numbered by call, each valid for `valid`.
    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        valid: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let expiry = self.valid.map(|v| SystemTime::now() + v);
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                expiry,
                "test",
            )))
        }
    }

    fn cache(valid: Option<Duration>, margin: Duration) -> (CredentialsCache, Arc<AtomicU32>) {
        let calls = Arc::new(AtomicU32::new(0));
        let provider = Counting {
            calls: calls.clone(),
            valid,
        };
        let cache = CredentialsCache::new(SharedCredentialsProvider::new(provider), margin);
        (cache, calls)
    }

    #[tokio::test]
    async fn reuses_until_invalidated() {
        let (cache, calls) = cache(Some(Duration::from_secs(3600)), Duration::from_secs(600));
        for _ in 0..3 {
            assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID1");
        }
        cache.invalidate();
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID2");
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn static_keys_are_fetched_once_and_refetched_after_invalidation() {
        let (cache, calls) = cache(None, Duration::from_secs(600));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache.invalidate();
        cache.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_inside_the_margin_are_refreshed() {
        // Valid 2 s with a 10 min margin: refresh at half the lifetime, i.e. after 1 s.
        let (cache, calls) = cache(Some(Duration::from_secs(2)), Duration::from_secs(600));
        cache.get().await.unwrap();
        cache.get().await.unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "refreshed before half-life"
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(cache.get().await.unwrap().access_key_id(), "AKID2");
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let (cache, calls) = cache(Some(Duration::from_secs(3600)), Duration::from_secs(60));
        let gets: Vec<_> = (0..8)
            .map(|_| {
                let c = cache.clone();
                tokio::spawn(async move { c.get().await.unwrap() })
            })
            .collect();
        for g in gets {
            g.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn refresh_times() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let hour = Duration::from_secs(3600);
        let ten_min = Duration::from_secs(600);
        assert_eq!(refresh_time(now, now + hour, ten_min), now + hour - ten_min);
        assert_eq!(
            refresh_time(now, now + Duration::from_secs(300), ten_min),
            now + Duration::from_secs(150)
        );
        // Already expired: refresh now.
        assert_eq!(refresh_time(now, now - hour, ten_min), now);
    }
}
