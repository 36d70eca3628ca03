//! Redis for bb2snyk: one multiplexed, self-reconnecting connection per process, and every key under the
//! configured prefix so several deployments (or tests) share a server without meeting.

use std::time::Duration;

use bb2snyk_settings::redact_url;
use redis::{AsyncCommands, aio::ConnectionManager, aio::ConnectionManagerConfig};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot reach Redis at {url}: {cause}; start Redis or set REDIS_URL")]
    Unreachable {
        url: String,
        cause: redis::RedisError,
    },
    #[error("Redis: {0}")]
    Command(#[from] redis::RedisError),
}

#[derive(Clone)]
pub struct Store {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

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
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unreachable)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    /// The full key for `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A clone of the managed connection, for commands and scripts this type does not wrap.
    pub fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }

    /// `SET key value PX ttl`.
    pub async fn set_px(&self, name: &str, value: &[u8], ttl: Duration) -> Result<(), StoreError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let _: () = redis::cmd("SET")
            .arg(self.key(name))
            .arg(value)
            .arg("PX")
            .arg(millis)
            .query_async(&mut self.connection())
            .await?;
        Ok(())
    }

    pub async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.connection().get(self.key(name)).await?)
    }

    /// Milliseconds the key has left; `None` when it is gone or has no expiry.
    pub async fn ttl(&self, name: &str) -> Result<Option<Duration>, StoreError> {
        let millis: i64 = self.connection().pttl(self.key(name)).await?;
        Ok(u64::try_from(millis).ok().map(Duration::from_millis))
    }

    pub async fn delete(&self, name: &str) -> Result<bool, StoreError> {
        let removed: u64 = self.connection().del(self.key(name)).await?;
        Ok(removed > 0)
    }
}
