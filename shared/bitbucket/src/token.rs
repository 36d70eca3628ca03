//! Bearer tokens for an OAuth consumer, cached at two levels so a fleet of any size makes one exchange per
//! token lifetime: in-process first, then Redis, shared by every replica that uses the same client id.
//!
//! - One exchange per process: a mutex with a double check.
//! - One across replicas: `SET lock NX PX`; the others poll the shared cache with jitter, and take the lock
//!   when the holder lets it go without leaving a token. The lock's winner looks again before it
//!   exchanges: the previous holder may have shared its token and let go between our look and our lock.
//! - Refreshed early, by max(60 s, 10 % of the lifetime) plus jitter, so no call meets an expired token.
//! - A 401 invalidates only the token that was used (compare-and-delete), so a late 401 for an old token
//!   never throws away the new one.
//! - Redis down (failing for [`STORE_OUTAGE`] with no success between; slow answers under load are not
//!   enough): the in-process cache carries on alone, at most one exchange per process per lifetime.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bb2snyk_store::{Store, StoreError, fingerprint};
use bb2snyk_telemetry::metrics;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::{BitbucketError, Consumer, oauth, seal::Seal};

/// How long one exchange, with its retries, may take.
const EXCHANGE_DEADLINE: Duration = Duration::from_secs(30);
/// The exchange lock's lifetime should its holder crash; a live holder renews it for as long as its
/// exchange takes. The others wait for its token about as long as an exchange may take.
const LOCK_TTL: Duration = Duration::from_secs(10);
/// How long Redis must fail, with no success between, before a process takes it for down and exchanges
/// on its own (a second exchange for the fleet); and how long a new token's shared write is tried, since
/// the other replicas wait for it. A loaded host can time out a few answers in a row (the store's timeout
/// is half a second): a count of failures would mistake that for an outage, a span of time does not.
const STORE_OUTAGE: Duration = Duration::from_secs(5);

pub struct TokenProvider {
    http: reqwest::Client,
    token_url: Url,
    consumer: Consumer,
    store: Option<Store>,
    account: String,
    token_key: String,
    lock_key: String,
    seal: Seal,
    local: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
    stats: Counters,
}

impl std::fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenProvider")
            .field("token_url", &self.token_url.as_str())
            .field("consumer", &self.consumer)
            .field("shared", &self.store.is_some())
            .finish_non_exhaustive()
    }
}

/// A token this process holds, and the Redis value it came from (to invalidate exactly that value).
#[derive(Clone)]
struct Cached {
    token: SecretString,
    refresh_at: Instant,
    shared_value: Option<Vec<u8>>,
}

/// What one look at Redis found.
enum Look {
    /// The shared token, or the outcome of our own exchange.
    Done(Result<Cached, BitbucketError>),
    /// Another replica holds the lock: its token is on the way.
    Wait,
}

/// What is sealed into Redis. No Debug: it holds the token in the clear.
#[derive(Serialize, Deserialize)]
struct Stored {
    access_token: String,
    /// Unix milliseconds after which replicas refresh rather than use it.
    refresh_at_ms: u64,
}

/// What the provider has done, for `/metrics`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TokenStats {
    pub exchanges: u64,
    pub local_hits: u64,
    pub shared_hits: u64,
    /// Exchanges made without the shared cache because Redis was unavailable.
    pub degraded: u64,
}

#[derive(Debug, Default)]
struct Counters {
    exchanges: AtomicU64,
    local_hits: AtomicU64,
    shared_hits: AtomicU64,
    degraded: AtomicU64,
}

impl TokenProvider {
    /// `store: None` keeps tokens in this process only.
    pub fn new(
        http: reqwest::Client,
        token_url: Url,
        consumer: Consumer,
        store: Option<Store>,
    ) -> Self {
        let account = fingerprint(&format!("oauth:{}", consumer.client_id));
        Self {
            seal: Seal::new(&consumer.client_id, &consumer.client_secret),
            token_key: format!("token:{account}"),
            lock_key: format!("token-lock:{account}"),
            account,
            http,
            token_url,
            consumer,
            store,
            local: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            stats: Counters::default(),
        }
    }

    /// The hash that names this consumer in Redis keys.
    pub fn account(&self) -> String {
        self.account.clone()
    }

    pub fn stats(&self) -> TokenStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TokenStats {
            exchanges: read(&self.stats.exchanges),
            local_hits: read(&self.stats.local_hits),
            shared_hits: read(&self.stats.shared_hits),
            degraded: read(&self.stats.degraded),
        }
    }

    /// A token that is good for at least the refresh margin.
    pub async fn token(&self) -> Result<SecretString, BitbucketError> {
        if let Some(token) = self.fresh_local() {
            return Ok(token);
        }
        let _one_at_a_time = self.refresh.lock().await;
        if let Some(token) = self.fresh_local() {
            return Ok(token);
        }
        let cached = self.fetch().await?;
        let token = cached.token.clone();
        *self.lock_local() = Some(cached);
        Ok(token)
    }

    /// Bitbucket refused `used`: forget it here and in Redis, unless it was already replaced.
    pub async fn invalidate(&self, used: &SecretString) {
        let shared_value = {
            let mut local = self.lock_local();
            match local.as_ref() {
                Some(c) if c.token.expose_secret() == used.expose_secret() => {
                    local.take().and_then(|c| c.shared_value)
                }
                _ => return,
            }
        };
        if let (Some(store), Some(value)) = (&self.store, shared_value)
            && let Err(e) = store.compare_and_delete(&self.token_key, &value).await
        {
            tracing::debug!(error = %e, "could not drop the rejected token from Redis");
        }
    }

    fn fresh_local(&self) -> Option<SecretString> {
        let local = self.lock_local();
        let cached = local.as_ref().filter(|c| Instant::now() < c.refresh_at)?;
        self.stats.local_hits.fetch_add(1, Ordering::Relaxed);
        metrics::token_lookup("hit");
        Some(cached.token.clone())
    }

    /// From Redis, or from an exchange that this replica wins the lock for.
    async fn fetch(&self) -> Result<Cached, BitbucketError> {
        let Some(store) = &self.store else {
            return self.exchange(None).await;
        };
        let give_up_at = Instant::now() + EXCHANGE_DEADLINE + LOCK_TTL;
        // When Redis began failing, with no success since.
        let mut failing_since: Option<Instant> = None;
        while Instant::now() < give_up_at {
            let jitter = Duration::from_millis(fastrand::u64(50..=200));
            match self.look(store).await {
                Ok(Look::Done(result)) => return result,
                Ok(Look::Wait) => {
                    failing_since = None;
                    tokio::time::sleep(jitter).await;
                }
                Err(_)
                    if failing_since.get_or_insert_with(Instant::now).elapsed() < STORE_OUTAGE =>
                {
                    tokio::time::sleep(bb2snyk_store::REST + jitter).await;
                }
                Err(_) => return self.degraded().await,
            }
        }
        tracing::warn!("no replica finished a token exchange in time; exchanging here");
        self.exchange(Some(store)).await
    }

    /// The shared token; else, with the lock (held, and renewed, for the whole exchange, its retries and
    /// 429 pauses included), a second look and then an exchange: the previous holder may have shared its
    /// token and let go between our first look and our lock.
    async fn look(&self, store: &Store) -> Result<Look, StoreError> {
        if let Some(cached) = self.read_shared(store).await? {
            return Ok(Look::Done(Ok(cached)));
        }
        let Some(lock) = store.lock(&self.lock_key, LOCK_TTL).await? else {
            return Ok(Look::Wait);
        };
        let look = match self.read_shared(store).await {
            Ok(Some(cached)) => Ok(Look::Done(Ok(cached))),
            Ok(None) => Ok(Look::Done(self.exchange(Some(store)).await)),
            Err(e) => Err(e),
        };
        if let Err(e) = lock.release().await {
            tracing::debug!(error = %e, "token lock left to expire");
        }
        look
    }

    async fn degraded(&self) -> Result<Cached, BitbucketError> {
        self.stats.degraded.fetch_add(1, Ordering::Relaxed);
        self.exchange(None).await
    }

    async fn read_shared(&self, store: &Store) -> Result<Option<Cached>, StoreError> {
        let Some(value) = store.get(&self.token_key).await? else {
            return Ok(None);
        };
        let stored: Option<Stored> = self
            .seal
            .open(&value, &store.key(&self.token_key))
            .and_then(|plain| serde_json::from_slice(&plain).ok());
        // Sealed under another secret (a rotated consumer) or an older format: a miss, replaced by our write.
        let Some(stored) = stored else {
            return Ok(None);
        };
        let left = Duration::from_millis(stored.refresh_at_ms.saturating_sub(unix_ms()));
        if left.is_zero() {
            return Ok(None);
        }
        self.stats.shared_hits.fetch_add(1, Ordering::Relaxed);
        metrics::token_lookup("shared");
        Ok(Some(Cached {
            token: SecretString::from(stored.access_token),
            refresh_at: Instant::now() + left,
            shared_value: Some(value),
        }))
    }

    /// Exchanges the consumer for a token and, with a store, shares it.
    async fn exchange(&self, store: Option<&Store>) -> Result<Cached, BitbucketError> {
        let token = oauth::exchange_patiently(
            &self.http,
            &self.token_url,
            &self.consumer,
            EXCHANGE_DEADLINE,
        )
        .await?;
        self.stats.exchanges.fetch_add(1, Ordering::Relaxed);
        metrics::token_lookup("miss");
        metrics::token_exchanged();
        let fresh_for = token
            .lifetime
            .saturating_sub(refresh_margin(token.lifetime));
        tracing::info!(lifetime = ?token.lifetime, ?fresh_for, "new Bitbucket token");
        let mut cached = Cached {
            token: token.secret,
            refresh_at: Instant::now() + fresh_for,
            shared_value: None,
        };
        if let Some(store) = store {
            cached.shared_value = self.share(store, &cached.token, fresh_for).await;
        }
        Ok(cached)
    }

    async fn share(
        &self,
        store: &Store,
        token: &SecretString,
        fresh_for: Duration,
    ) -> Option<Vec<u8>> {
        let stored = Stored {
            access_token: token.expose_secret().to_owned(),
            refresh_at_ms: unix_ms() + u64::try_from(fresh_for.as_millis()).unwrap_or(u64::MAX),
        };
        let plain = serde_json::to_vec(&stored).ok()?;
        let sealed = self.seal.seal(&plain, &store.key(&self.token_key))?;
        // The other replicas wait for this write: a few failures are not enough to keep it from them.
        let started = Instant::now();
        loop {
            match store.set_px(&self.token_key, &sealed, fresh_for).await {
                Ok(()) => return Some(sealed),
                Err(e) if started.elapsed() >= STORE_OUTAGE => {
                    tracing::debug!(error = %e, "token kept in this process only");
                    return None;
                }
                Err(_) => tokio::time::sleep(bb2snyk_store::REST).await,
            }
        }
    }

    fn lock_local(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long before expiry a token is replaced: max(60 s, 10 % of its life) plus up to a fifth more, so
/// replicas do not all refresh in the same second; never more than half the life, so short-lived tokens
/// are still used.
fn refresh_margin(lifetime: Duration) -> Duration {
    let margin = Duration::from_secs(60).max(lifetime / 10);
    let jitter = margin.mul_f64(fastrand::f64() / 5.0);
    (margin + jitter).min(lifetime / 2)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_a_minute_or_a_tenth_with_jitter_and_at_most_half() {
        for _ in 0..100 {
            let two_hours = refresh_margin(Duration::from_secs(7200));
            assert!(two_hours >= Duration::from_secs(720) && two_hours <= Duration::from_secs(864));
            let ten_minutes = refresh_margin(Duration::from_secs(600));
            assert!(
                ten_minutes >= Duration::from_secs(60) && ten_minutes <= Duration::from_secs(72)
            );
            assert!(refresh_margin(Duration::from_secs(4)) <= Duration::from_secs(2));
        }
    }
}
