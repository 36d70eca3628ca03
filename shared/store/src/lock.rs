//! The one lock helper: `SET name owner NX PX ttl`, renewed while held, released only by its owner. A
//! crashed holder's lock expires after `ttl`; a live holder's never does, however long its section runs.
//! A live holder's lock that Redis could not release (it was away) is released once Redis is back, not
//! left to expire: an org lock of two minutes, left so across a Redis restart, held a workspace's imports
//! past a run's end (every other delivery of it came back and found the lock taken).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::{Store, StoreError};

/// Extends `KEYS[1]`'s expiry to `ARGV[2]` ms only while it still holds `ARGV[1]`.
pub(crate) const COMPARE_AND_EXPIRE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// A held lock. Dropping it releases it (in the background); [`Guard::release`] does so and reports.
#[derive(Debug)]
pub struct Guard {
    store: Store,
    name: String,
    owner: Vec<u8>,
    ttl: Duration,
    /// Cleared by the renewal when it finds the lock taken over (it expired while Redis was away).
    held: Arc<AtomicBool>,
    renewal: tokio::task::JoinHandle<()>,
    released: bool,
}

impl Store {
    /// Takes lock `name` for this process: `Ok(None)` while another owner holds it. The guard renews it
    /// every `ttl / 3` until it is released or dropped.
    pub async fn lock(&self, name: &str, ttl: Duration) -> Result<Option<Guard>, StoreError> {
        let owner = uuid_like();
        match self.set_nx_px(name, &owner, ttl).await {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            // The SET may have happened with its answer lost: if so, the lock is ours and nobody's to use.
            Err(e) => {
                release_eventually(self.clone(), name.to_owned(), owner, ttl);
                return Err(e);
            }
        }
        let held = Arc::new(AtomicBool::new(true));
        let renewal = tokio::spawn(renew(
            self.clone(),
            name.to_owned(),
            owner.clone(),
            ttl,
            held.clone(),
        ));
        Ok(Some(Guard {
            store: self.clone(),
            name: name.to_owned(),
            owner,
            ttl,
            held,
            renewal,
            released: false,
        }))
    }

    /// Sets `name`'s expiry to `ttl` only while it holds `owner`; true when it did.
    pub async fn compare_and_expire(
        &self,
        name: &str,
        owner: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.key(name);
        if let Some(mut keys) = self.local() {
            return Ok(keys.compare_and_expire(&key, owner, ttl));
        }
        let extended: u64 = self
            .run(|mut c| async move {
                redis::Script::new(COMPARE_AND_EXPIRE)
                    .key(key)
                    .arg(owner)
                    .arg(crate::millis(ttl))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(extended > 0)
    }
}

impl Guard {
    /// False once the renewal found another owner in the lock: the section is no longer exclusive.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Asks Redis, now, whether the lock is still this owner's, and extends it when it is: what a holder
    /// checks before a write that only the holder may make (the renewal's last word may be `ttl / 3` old).
    pub async fn confirm(&self) -> Result<bool, StoreError> {
        let held = self.is_held()
            && self
                .store
                .compare_and_expire(&self.name, &self.owner, self.ttl)
                .await?;
        if !held {
            self.held.store(false, Ordering::SeqCst);
        }
        Ok(held)
    }

    /// Releases the lock now; true when it was still ours. When Redis fails to answer, the release goes
    /// on in the background until it does (or the lock has expired).
    pub async fn release(mut self) -> Result<bool, StoreError> {
        self.released = true;
        self.renewal.abort();
        let released = self.store.compare_and_delete(&self.name, &self.owner).await;
        if released.is_err() {
            release_eventually(
                self.store.clone(),
                self.name.clone(),
                std::mem::take(&mut self.owner),
                self.ttl,
            );
        }
        released
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.renewal.abort();
        if self.released {
            return;
        }
        // Dropped on an early return or a panic: released in the background.
        release_eventually(
            self.store.clone(),
            self.name.clone(),
            std::mem::take(&mut self.owner),
            self.ttl,
        );
    }
}

/// The longest wait between two tries of a release while Redis is away.
const RELEASE_BACKOFF: Duration = Duration::from_secs(2);

/// Deletes lock `name` if it still holds `owner`, in the background, trying again while Redis does not
/// answer, until it has expired by itself (`ttl` from now at the latest). Outside a runtime it is left
/// to expire.
fn release_eventually(store: Store, name: String, owner: Vec<u8>, ttl: Duration) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let deadline = tokio::time::Instant::now() + ttl;
        let mut tries = 0;
        loop {
            match store.compare_and_delete(&name, &owner).await {
                Ok(_) => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::debug!(error = %e, lock = %name, "lock left to expire");
                    return;
                }
                Err(_) => {
                    tries += 1;
                    tokio::time::sleep(bb2snyk_http::backoff(tries, RELEASE_BACKOFF)).await;
                }
            }
        }
    });
}

async fn renew(store: Store, name: String, owner: Vec<u8>, ttl: Duration, held: Arc<AtomicBool>) {
    let every = (ttl / 3).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(every).await;
        match store.compare_and_expire(&name, &owner, ttl).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lock = %name, "lock taken over while held (it expired); no longer exclusive");
                held.store(false, Ordering::SeqCst);
                return;
            }
            // Redis is away: keep trying; the lock still runs on its last expiry.
            Err(e) => {
                tracing::debug!(error = %e, lock = %name, "lock renewal failed; trying again")
            }
        }
    }
}

/// A random owner token, unique per lock taken.
fn uuid_like() -> Vec<u8> {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_held_lock_outlives_its_ttl_and_is_released_by_its_owner_only() {
        let store = Store::memory();
        let ttl = Duration::from_secs(3);
        let guard = store.lock("l", ttl).await.expect("store").expect("free");
        assert!(store.lock("l", ttl).await.expect("store").is_none());
        // Ten lifetimes later it is still held: the renewal keeps it.
        tokio::time::sleep(ttl * 10).await;
        assert!(guard.is_held());
        assert!(store.lock("l", ttl).await.expect("store").is_none());
        assert!(guard.release().await.expect("store"));
        let again = store
            .lock("l", ttl)
            .await
            .expect("store")
            .expect("free again");
        drop(again);
        // The drop releases it in the background.
        tokio::task::yield_now().await;
        assert!(store.lock("l", ttl).await.expect("store").is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_that_confirms_learns_at_once_that_its_lock_lapsed() {
        let store = Store::memory();
        let guard = store
            .lock("l", Duration::from_secs(3))
            .await
            .expect("store")
            .expect("free");
        assert!(guard.confirm().await.expect("store"));
        store.set("l", b"someone else", None).await.expect("store");
        assert!(guard.is_held(), "the renewal has not looked yet");
        assert!(!guard.confirm().await.expect("store"));
        assert!(!guard.is_held());
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_taken_over_says_so() {
        let store = Store::memory();
        let ttl = Duration::from_secs(3);
        let guard = store.lock("l", ttl).await.expect("store").expect("free");
        store.set("l", b"someone else", None).await.expect("store");
        tokio::time::sleep(ttl).await;
        assert!(!guard.is_held());
        assert!(!guard.confirm().await.expect("store"));
        assert!(
            !guard.release().await.expect("store"),
            "not ours to release"
        );
        assert_eq!(
            store.get("l").await.expect("store").as_deref(),
            Some(&b"someone else"[..])
        );
    }
}
