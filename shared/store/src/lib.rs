//! Redis for bb2snyk: one multiplexed, self-reconnecting connection per process, and every key under the
//! configured prefix so several deployments (or tests) share a server without meeting.
//!
//! Redis is a cache and a coordinator here, never the only copy of anything a call needs. So every command
//! goes through a health guard: after a failure the store answers [`StoreError::Degraded`] at once for a
//! short while instead of making each caller wait on a dead server, warns at most once a minute, and counts
//! the failures for `/metrics`. Callers fall back to their in-process state and try Redis again later.
//!
//! Over 400 lines on purpose: every command `Store` offers goes through the health guard and reads as one
//! list (the guard, budgets, locks and the in-process backend are modules of their own; the ledger is a
//! crate of its own).

mod budget;
mod health;
mod lock;
mod memory;
mod pool;

use std::{
    future::Future,
    sync::{Arc, LazyLock},
    time::Duration,
};

use bb2snyk_settings::redact_url;
pub use budget::{Budget, BudgetConfig, Next, Overdue, Retry};
use health::Health;
pub use health::REST;
pub use lock::Guard;
pub use pool::Pool;
use redis::{AsyncCommands, RedisResult, aio::ConnectionManager, aio::ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

/// The budget's scripts, hashed once: `Script::new` hashes its source, and a budget takes a slot (or a
/// write yields to a waiting read) on every request.
static TAKE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(budget::TAKE));
static PAUSE: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(budget::PAUSE));

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {cause}; start Redis or set REDIS_URL")]
    Unreachable {
        url: String,
        cause: redis::RedisError,
    },
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
    #[error("Redis is unavailable; working from in-process state until it is back")]
    Degraded,
    #[error("this command needs Redis; the in-process store cannot run it")]
    NotShared,
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    prefix: String,
    health: Arc<Health>,
}

/// Redis for a fleet; a map in this process for the embedded `bb2snyk run` and `import`.
#[derive(Clone)]
enum Backend {
    Redis(ConnectionManager),
    Memory(Arc<memory::Memory>),
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .field("shared", &self.is_shared())
            .finish_non_exhaustive()
    }
}

/// Deletes `KEYS[1]` only while it still holds `ARGV[1]`: releases a lock we own, or drops a value we read.
const COMPARE_AND_DELETE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0";

impl Store {
    /// Connects once; later failures reconnect in the background while commands fail fast.
    pub async fn connect(url: &SecretString, prefix: &str) -> Result<Self, StoreError> {
        let unreachable = |cause| StoreError::Unreachable {
            url: redact_url(url),
            cause,
        };
        let client = redis::Client::open(url.expose_secret()).map_err(unreachable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        Ok(Self {
            backend: Backend::Redis(connection),
            prefix: prefix.to_owned(),
            health: Arc::new(Health::default()),
        })
    }

    /// A store in this process only: same commands, nothing shared, nothing kept after exit.
    pub fn memory() -> Self {
        Self {
            backend: Backend::Memory(Arc::default()),
            prefix: String::new(),
            health: Arc::new(Health::default()),
        }
    }

    /// True on Redis: what this store holds is seen by every replica.
    pub fn is_shared(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// The full key for `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Commands that failed since start: the degraded-mode metric.
    pub fn failures(&self) -> u64 {
        self.health.failures()
    }

    /// True while the store skips Redis after a failure.
    pub fn is_degraded(&self) -> bool {
        self.health.is_resting()
    }

    /// Runs one command (or script) on the shared connection, through the health guard. Redis only: an
    /// in-process store answers [`StoreError::NotShared`], and its callers keep their own state.
    pub async fn run<T, F, Fut>(&self, command: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let Backend::Redis(connection) = &self.backend else {
            return Err(StoreError::NotShared);
        };
        if self.health.is_resting() {
            return Err(StoreError::Degraded);
        }
        match command(connection.clone()).await {
            Ok(value) => {
                self.health.succeeded();
                Ok(value)
            }
            Err(e) if is_connection_trouble(&e) => {
                self.health.failed(&e);
                Err(StoreError::Degraded)
            }
            Err(e) => Err(StoreError::Command(e)),
        }
    }

    /// A budget's take (see [`crate::budget`]): zero when a request may go now (and it is logged), else
    /// the wait, a pause first; a write also needs room in its share and yields to a waiting read. Redis
    /// runs the script; an in-process store does the same on its map.
    pub(crate) async fn budget_take(
        &self,
        slots: &budget::Slots<'_>,
    ) -> Result<Duration, StoreError> {
        let (log, pause) = (self.key(slots.log), self.key(slots.pause));
        let reads_waiting = self.key(slots.reads_waiting);
        let writes_log = slots.writes.map(|w| self.key(w.log));
        let writes = slots
            .writes
            .zip(writes_log.as_deref())
            .map(|(w, log)| budget::Writes { log, ..w });
        let slots = budget::Slots {
            log: &log,
            pause: &pause,
            reads_waiting: &reads_waiting,
            writes,
            ..*slots
        };
        if let Some(mut keys) = self.local() {
            return Ok(keys.take(&slots));
        }
        let member = format!("{:016x}", fastrand::u64(..));
        let wait: u64 = self
            .run(|mut c| async move {
                let mut invocation = TAKE.prepare_invoke();
                invocation
                    .key(slots.log)
                    .key(slots.pause)
                    .key(slots.reads_waiting);
                if let Some(writes) = &slots.writes {
                    invocation.key(writes.log);
                }
                invocation
                    .arg(millis(slots.window))
                    .arg(slots.limit)
                    .arg(member)
                    .arg(slots.per_second.unwrap_or(0));
                if let Some(writes) = &slots.writes {
                    invocation
                        .arg(writes.limit)
                        .arg(writes.floor)
                        .arg(millis(writes.floor_span));
                }
                invocation.invoke_async(&mut c).await
            })
            .await?;
        Ok(Duration::from_millis(wait))
    }

    /// Extends a budget's pause to `duration` unless it already lasts longer.
    pub(crate) async fn budget_pause(
        &self,
        pause: &str,
        duration: Duration,
    ) -> Result<(), StoreError> {
        let pause = self.key(pause);
        if let Some(mut keys) = self.local() {
            keys.pause(&pause, duration);
            return Ok(());
        }
        self.run(|mut c| async move {
            PAUSE
                .key(pause)
                .arg(millis(duration))
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await?;
        Ok(())
    }

    /// The in-process map, when this store is one.
    fn local(&self) -> Option<memory::Keys<'_>> {
        match &self.backend {
            Backend::Memory(memory) => Some(memory.keys()),
            Backend::Redis(_) => None,
        }
    }

    /// `SET key value [PX ttl]`.
    pub async fn set(
        &self,
        name: &str,
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<(), StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            keys.set(&key, value, ttl);
            return Ok(());
        }
        self.run(|mut c| async move {
            let mut set = redis::cmd("SET");
            set.arg(key).arg(value);
            if let Some(ttl) = ttl {
                set.arg("PX").arg(millis(ttl));
            }
            set.query_async(&mut c).await
        })
        .await
    }

    /// `SET key value PX ttl`.
    pub async fn set_px(&self, name: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.set(name, value, Some(ttl)).await
    }

    /// `SET key value NX PX ttl`: true when this call set it.
    pub async fn set_nx_px(
        &self,
        name: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.set_nx(&key, value, ttl));
        }
        let answer: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg(value)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(ttl))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(answer.is_some())
    }

    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.get(&key));
        }
        self.run(|mut c| async move { c.get(key).await }).await
    }

    /// Redis's memory in use and its `maxmemory` (0: unbounded), in bytes, from `INFO memory`; `None` for
    /// the in-process store.
    pub async fn memory_use(&self) -> Result<Option<(u64, u64)>, StoreError> {
        if self.local().is_some() {
            return Ok(None);
        }
        let info: String = self
            .run(|mut c| async move { redis::cmd("INFO").arg("memory").query_async(&mut c).await })
            .await?;
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
        };
        Ok(field("used_memory").zip(field("maxmemory")))
    }

    /// Milliseconds the key has left; `None` when it is gone or has no expiry.
    pub async fn ttl(&self, name: &str) -> Result<Option<Duration>, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.ttl(&key));
        }
        let millis: i64 = self.run(|mut c| async move { c.pttl(key).await }).await?;
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    }

    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.delete(&key));
        }
        let removed: u64 = self.run(|mut c| async move { c.del(key).await }).await?;
        Ok(removed > 0)
    }

    /// Deletes the key only if it still holds `expected`; true when it did.
    pub async fn compare_and_delete(
        &self,
        name: &str,
        expected: &[u8],
    ) -> Result<bool, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.compare_and_delete(&key, expected));
        }
        let removed: u64 = self
            .run(|mut c| async move {
                redis::Script::new(COMPARE_AND_DELETE)
                    .key(key)
                    .arg(expected)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(removed > 0)
    }

    /// `SADD`.
    pub async fn add_member(&self, set: &str, member: &str) -> Result<(), StoreError> {
        self.move_member(&[], set, member, None).await
    }

    /// Takes `member` out of every set in `from` and adds it to `to`, in one step; with `kept`, `to`
    /// then expires that long after this write (`PEXPIRE`).
    pub async fn move_member(
        &self,
        from: &[&str],
        to: &str,
        member: &str,
        kept: Option<Duration>,
    ) -> Result<(), StoreError> {
        let from: Vec<String> = from.iter().map(|name| self.key(name)).collect();
        let to = self.key(to);
        if let Some(mut keys) = self.local() {
            for key in &from {
                keys.remove(key, member);
            }
            keys.add(&to, member);
            if let Some(ttl) = kept {
                keys.expire(&to, ttl);
            }
            return Ok(());
        }
        let member = member.to_owned();
        self.run(|mut c| async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for key in &from {
                pipe.srem(key, &member).ignore();
            }
            pipe.sadd(&to, &member).ignore();
            if let Some(ttl) = kept {
                pipe.pexpire(&to, i64::try_from(millis(ttl)).unwrap_or(i64::MAX))
                    .ignore();
            }
            pipe.query_async::<()>(&mut c).await
        })
        .await
    }

    /// `SMEMBERS`.
    pub async fn members(&self, set: &str) -> Result<Vec<String>, StoreError> {
        let key = self.key(set);
        if let Some(mut keys) = self.local() {
            return Ok(keys.members(&key));
        }
        self.run(|mut c| async move { c.smembers(key).await }).await
    }

    /// `SISMEMBER`.
    pub async fn is_member(&self, set: &str, member: &str) -> Result<bool, StoreError> {
        let key = self.key(set);
        if let Some(mut keys) = self.local() {
            return Ok(keys.contains(&key, member));
        }
        let member = member.to_owned();
        self.run(|mut c| async move { c.sismember(key, member).await })
            .await
    }

    /// `SADD` of every member (in batches of 1,000) and `PEXPIRE`: a set that goes away after `ttl`.
    pub async fn add_members(
        &self,
        set: &str,
        members: &[String],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let key = self.key(set);
        if let Some(mut keys) = self.local() {
            for member in members {
                keys.add(&key, member);
            }
            keys.expire(&key, ttl);
            return Ok(());
        }
        for batch in members.chunks(1000) {
            let (key, batch) = (key.clone(), batch.to_vec());
            self.run(|mut c| async move {
                redis::pipe()
                    .sadd(&key, batch)
                    .ignore()
                    .pexpire(&key, i64::try_from(millis(ttl)).unwrap_or(i64::MAX))
                    .ignore()
                    .query_async::<()>(&mut c)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// `SCARD`.
    pub async fn count(&self, set: &str) -> Result<u64, StoreError> {
        let key = self.key(set);
        if let Some(mut keys) = self.local() {
            return Ok(keys.len(&key));
        }
        self.run(|mut c| async move { c.scard(key).await }).await
    }
}

/// A short, stable name for a credential that does not reveal it: key names carry this, never the credential.
pub fn fingerprint(what: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("bb2snyk:{what}").as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// Errors that say the server is gone or slow, as opposed to a command Redis refused.
fn is_connection_trouble(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}
