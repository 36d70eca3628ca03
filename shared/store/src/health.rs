//! Remembers that Redis just failed, so callers skip it for a moment instead of each waiting on a timeout.

use std::{
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// How long Redis is left alone after a failure before the next command tries it again: a caller that
/// tries again sooner only meets the same failure.
pub const REST: Duration = Duration::from_millis(500);
/// At most one warning in this long, however many commands fail.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct Health {
    failures: AtomicU64,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    resting_until: Option<Instant>,
    last_warning: Option<Instant>,
    down: bool,
}

impl Health {
    pub(crate) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub(crate) fn is_resting(&self) -> bool {
        self.lock()
            .resting_until
            .is_some_and(|until| Instant::now() < until)
    }

    pub(crate) fn failed(&self, error: &redis::RedisError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        bb2snyk_telemetry::metrics::redis_failed();
        bb2snyk_telemetry::metrics::redis_degraded(true);
        let now = Instant::now();
        let mut state = self.lock();
        state.resting_until = Some(now + REST);
        state.down = true;
        if state
            .last_warning
            .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
        {
            state.last_warning = Some(now);
            tracing::warn!(
                error = %error,
                "Redis is unavailable: the token cache and rate budget work per process until it is back"
            );
        }
    }

    pub(crate) fn succeeded(&self) {
        let mut state = self.lock();
        if state.down {
            bb2snyk_telemetry::metrics::redis_degraded(false);
            state.down = false;
            state.resting_until = None;
            tracing::info!(
                "Redis is back: the shared token cache and rate budget are in use again"
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
