//! A request budget shared by every replica: at most `limit` requests in any rolling `window`, the way
//! Bitbucket and Snyk count. A small tenant spends the budget at full speed; pacing starts only as it runs
//! out. An evenly paced budget (Snyk's, by default) also spends at most a second's share of the limit in
//! any second: a fleet that could spend a whole window in its first seconds would otherwise wait out the
//! rest of it, polls of finished jobs included. A 429 sets a fleet-wide pause that every replica honours
//! before its next request.
//!
//! The shared state is a sliding log (a sorted set of grant times, read with Redis's own clock so replicas'
//! clocks never disagree) in one Lua script. A GCRA or token bucket would be smaller, but it lets up to twice
//! the budget into one rolling window after a burst, which a rolling-window server answers with 429s.
//! When Redis is unavailable each process keeps its own log, so it still never exceeds the budget alone.
//!
//! Over 400 lines on purpose: the two Lua scripts, the code that reads their answers and the local
//! fallback that stands in for them must change together, so they read in one place.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{Store, millis};

/// What to do after a failed call, as its error says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Final: return the error.
    Fail,
    /// The API is rate limiting: pause every replica (for `Retry-After` when given), then try again.
    Pause(Option<Duration>),
    /// A passing failure (5xx, network): back off, then try again.
    Backoff,
    /// The credential the call was signed with was refused (401): in a [`Pool`](crate::Pool), that member
    /// leaves the rotation and the call goes to another; with none left, the error is returned.
    Refused,
}

/// A call would wait longer for the budget (or a 429 pause) than a delivery may be held: its message should
/// come back after `wait` instead, freeing its slot (RabbitMQ closes a channel that holds a delivery past its
/// `consumer_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overdue {
    pub wait: Duration,
}

/// Classifies an API's errors for [`Budget::call`].
pub trait Retry {
    fn next(&self) -> Next;

    /// True when the request reached the server and may have taken effect even though it failed: a 5xx, a
    /// 408, a timeout or a reset after it was sent. [`Budget::call_write`] never sends such a call again.
    fn may_have_happened(&self) -> bool {
        false
    }
}

/// `KEYS[1]` the log, `KEYS[2]` the pause, `KEYS[3]` the mark of a read that waits, and for a write
/// `KEYS[4]` the writes' log; `ARGV` window ms, limit, a unique member, the most requests in any second (0:
/// no such bound), and for a write the writes' limit, their floor and the span of the floor in ms. Returns
/// 0 when a request may go now (logged in each log), else the milliseconds to wait.
///
/// Reads go first: a write yields while a read waits (the mark lives until just after that read's retry),
/// unless writes have had less than their floor lately. A read that is granted clears the mark. A write of
/// a budget [going first](Budget::going_first) marks as a read does, and its floor is never reached.
pub(crate) const TAKE: &str = r"
local pause = redis.call('PTTL', KEYS[2])
if pause > 0 then return pause end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local write = KEYS[4] ~= nil
if write then
  local waiting = redis.call('PTTL', KEYS[3])
  if waiting > 0 and redis.call('ZCOUNT', KEYS[4], now - tonumber(ARGV[7]) + 1, '+inf') >= tonumber(ARGV[6]) then
    return waiting
  end
end
local per_second = tonumber(ARGV[4])
if per_second > 0 and redis.call('ZCOUNT', KEYS[1], now - 999, '+inf') >= per_second then
  local first = redis.call('ZRANGEBYSCORE', KEYS[1], now - 999, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  return math.max(1, tonumber(first[2]) + 1000 - now)
end
local logs = {{KEYS[1], tonumber(ARGV[2])}}
if write then table.insert(logs, {KEYS[4], tonumber(ARGV[5])}) end
for _, log in ipairs(logs) do
  redis.call('ZREMRANGEBYSCORE', log[1], '-inf', now - window)
  if redis.call('ZCARD', log[1]) >= log[2] then
    local oldest = redis.call('ZRANGE', log[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(oldest[2]) + window - now)
  end
end
for _, log in ipairs(logs) do
  redis.call('ZADD', log[1], now, ARGV[3])
  redis.call('PEXPIRE', log[1], window)
end
if not write then redis.call('DEL', KEYS[3]) end
return 0";

/// The share of the limit writes (import POSTs, org creation) may spend in any window, so reads (the polls
/// that follow them) always find slots: every import is followed by at least one poll, so imports never
/// need more than half, and a burst of them cannot take a whole window's budget and leave polls of jobs
/// long done waiting a minute.
///
/// An evenly paced budget has no such share: no second spends more than its share of the window, so
/// writes cannot spend it ahead of the polls, and reads go first whenever they wait. There the half only
/// idled the budget: with jobs of up to a minute and a 30 s first poll, the POSTs of a run's first 35 s
/// (when few polls are due) spent it, and imports stopped for 20-25 s while polls used less than the rest.
const WRITE_SHARE_PERCENT: u32 = 50;

/// The share of the limit writes get however many reads wait: reads go first (a poll that waits is a job
/// done and not yet seen), but a flood of reads (a sync listing every target) never stops imports. Over a
/// second when evenly paced, else over the window.
const WRITE_FLOOR_PERCENT: u32 = 25;

/// How long past its retry a waiting read's mark lasts: should that read never come back (its process
/// stopped, or another member of a pool granted it), writes yield no longer than this after it was due.
const READ_MARK_GRACE: Duration = Duration::from_millis(50);

/// Extends the pause in `KEYS[1]` to `ARGV[1]` ms unless it already lasts longer.
pub(crate) const PAUSE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 0";

/// What one look at a budget's logs checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slots<'a> {
    pub log: &'a str,
    pub pause: &'a str,
    /// Set while a read (or a write going first) waits for this budget: writes yield to it.
    pub reads_waiting: &'a str,
    pub window: Duration,
    pub limit: u32,
    /// The most requests in any second, for an evenly paced budget.
    pub per_second: Option<u32>,
    /// For a write: its share and floor.
    pub writes: Option<Writes<'a>>,
}

/// A write's look at the budget: the writes' log, the most they may spend in a window, and the floor they
/// get however many reads wait (`floor` writes in any `floor_span`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writes<'a> {
    pub log: &'a str,
    pub limit: u32,
    pub floor: u32,
    pub floor_span: Duration,
}

#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// `bitbucket` or `snyk`: the API this budget paces.
    pub api: &'static str,
    /// Names the credential the API counts against, without revealing it (a hash).
    pub credential: String,
    pub limit: u32,
    pub window: Duration,
}

#[derive(Debug)]
pub struct Budget {
    api: &'static str,
    /// Where the log and the pause live: on Redis every replica's budget shares them; on an in-process
    /// store (`bb2snyk run`) every budget of the process does, so its stages together keep to the limit.
    store: Option<Store>,
    log_key: String,
    pause_key: String,
    /// The log of writes alone, for their share of the limit.
    writes_key: String,
    /// Set while a read (or a write going first) waits: writes yield to it.
    reads_waiting_key: String,
    limit: u32,
    window: Duration,
    local: Mutex<Local>,
    waited_ms: AtomicU64,
    /// The longest a call waits for a slot before it answers [`Overdue`]; `None` waits as long as it takes.
    max_hold: Option<Duration>,
    /// Processes that share this budget: while Redis is away each keeps to its share of it.
    fleet_size: u32,
    /// The most requests in any second when evenly paced.
    per_second: Option<u32>,
    /// Its writes go first, as reads do: they never yield, and writes that do yield to them.
    goes_first: bool,
}

/// This process's own view: its grants and the latest pause it heard of.
#[derive(Debug, Default)]
struct Local {
    grants: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Budget {
    /// `store: None` paces this budget alone; an in-process store, every budget of the process on it.
    pub fn new(store: Option<Store>, config: BudgetConfig) -> Self {
        // The tag in braces keeps both keys of the script in one Redis Cluster slot.
        let tag = format!("{{{}:{}}}", config.api, config.credential);
        Self {
            api: config.api,
            store,
            log_key: format!("budget:{tag}"),
            writes_key: format!("budget-writes:{tag}"),
            reads_waiting_key: format!("budget-reads-waiting:{tag}"),
            pause_key: format!("pause:{tag}"),
            limit: config.limit.max(1),
            window: config.window,
            local: Mutex::new(Local::default()),
            waited_ms: AtomicU64::new(0),
            max_hold: None,
            fleet_size: 1,
            per_second: None,
            goes_first: false,
        }
    }

    /// When `first`, this budget's writes go first, as reads do: a stage whose few calls unlock much
    /// other work (an org's setup, which a hundred imports wait for) is not paced by the imports it
    /// feeds. With 320 import POSTs waiting at every moment, four org-creator tasks won a slot so rarely
    /// that orgs came at under 2 a second, no faster than the importers took repositories, and the
    /// importers waited for them at the end of a 50,000-repository run.
    pub fn going_first(mut self, first: bool) -> Self {
        self.goes_first = first;
        self
    }

    /// Whether a call of this kind waits for others: writes yield to waiting reads unless they go first.
    pub(crate) fn yields(&self, write: bool) -> bool {
        write && !self.goes_first
    }

    /// When `even`, at most a second's share of the limit (rounded up) goes in any second.
    pub fn evenly_paced(mut self, even: bool) -> Self {
        let per_second = (u64::from(self.limit) * 1000).div_ceil(millis(self.window).max(1));
        self.per_second = even.then(|| u32::try_from(per_second).unwrap_or(u32::MAX).max(1));
        self
    }

    /// A budget as the pipeline's settings shape it: shared by `pipeline.fleet_size` processes and, for a
    /// stage (`for_stage`), answering [`Overdue`] past `pipeline.max_hold_secs`.
    pub fn for_pipeline(
        store: Option<Store>,
        config: BudgetConfig,
        pipeline: &bb2snyk_settings::PipelineSettings,
        for_stage: bool,
    ) -> Self {
        let budget = Self::new(store, config).shared_by(pipeline.fleet_size);
        if for_stage {
            budget.holding_at_most(pipeline.max_hold)
        } else {
            budget
        }
    }

    /// `fleet_size` processes spend this budget: while Redis is away, each keeps to `limit / fleet_size` so
    /// the fleet together stays under the API's limit (not `fleet_size` times over it).
    pub fn shared_by(mut self, fleet_size: u32) -> Self {
        self.fleet_size = fleet_size.max(1);
        self
    }

    /// What this process may spend on its own: the whole budget when nothing else shares it, else its share.
    fn local_limit(&self) -> usize {
        if self.store.as_ref().is_some_and(Store::is_shared) {
            (self.limit / self.fleet_size).max(1) as usize
        } else {
            self.limit as usize
        }
    }

    /// Calls give up waiting after `max_hold` and answer [`Overdue`], so a delivery is never held for long.
    pub fn holding_at_most(mut self, max_hold: Duration) -> Self {
        self.max_hold = Some(max_hold);
        self
    }

    /// Total time callers have waited for the budget: the limiter-wait metric.
    pub fn waited(&self) -> Duration {
        Duration::from_millis(self.waited_ms.load(Ordering::Relaxed))
    }

    /// Waits until one request may be sent. Never fails: without Redis it paces this process alone.
    /// Takes a slot, waiting at most this budget's hold bound ([`Overdue`] past it).
    pub async fn take(&self) -> Result<(), Overdue> {
        crate::pool::acquire(self, self.max_hold(), false)
            .await
            .map(drop)
    }

    pub async fn acquire(&self) {
        // Without a bound the wait always ends in a slot.
        let _ = crate::pool::acquire(self, None, false).await;
    }

    /// One look at the budget: zero when a slot was taken (and recorded), else how long until one may be.
    /// A `write` also needs a slot in the writes' share.
    pub(crate) async fn try_take(&self, write: bool) -> Duration {
        let wait = match self.local_pause() {
            Some(wait) => wait,
            None => match self.take_shared(write).await {
                Some(wait) => wait,
                None => self.take_local(),
            },
        };
        if wait.is_zero() {
            self.record_local();
        }
        wait
    }

    /// Counts a wait that ended in a slot of this budget: the limiter-wait metric.
    pub(crate) fn record_wait(&self, waited: Duration) {
        bb2snyk_telemetry::metrics::limiter_waited(self.api, waited);
        self.waited_ms
            .fetch_add(millis(waited).saturating_sub(1), Ordering::Relaxed);
    }

    pub(crate) fn max_hold(&self) -> Option<Duration> {
        self.max_hold
    }

    /// Runs an idempotent `call` (a GET, a PUT) under the budget: one slot per try, a fleet-wide pause on
    /// 429, backoff on passing failures, up to 8 tries.
    pub async fn call<T, E, F, Fut>(&self, mut call: F) -> Result<T, E>
    where
        E: Retry + std::fmt::Display + From<Overdue>,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        crate::pool::run(self, true, |_| call()).await
    }

    /// Runs a call that must not happen twice (a POST that creates something) under the budget. It is tried
    /// again only when it surely did not happen (a 429, a connection refused); after a failure that may
    /// have happened the error is returned, for the caller to look before it writes again.
    pub async fn call_write<T, E, F, Fut>(&self, mut call: F) -> Result<T, E>
    where
        E: Retry + std::fmt::Display + From<Overdue>,
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        crate::pool::run(self, false, |_| call()).await
    }

    /// Holds every replica's requests for `duration` (after a 429).
    pub async fn pause(&self, duration: Duration) {
        {
            let mut local = self.lock();
            let until = Instant::now() + duration;
            if local.paused_until.is_none_or(|p| p < until) {
                local.paused_until = Some(until);
            }
        }
        if let Some(store) = &self.store
            && let Err(e) = store.budget_pause(&self.pause_key, duration).await
        {
            tracing::debug!(error = %e, "the pause is kept in this process only");
        }
    }

    /// `Some(wait)` from the store's logs, `None` without a store or when Redis cannot answer. (Without
    /// Redis each process keeps to its share of the whole budget, writes included.)
    async fn take_shared(&self, write: bool) -> Option<Duration> {
        let store = self.store.as_ref()?;
        let percent_of = |n: u32, percent: u32| (n * percent / 100).max(1);
        let writes = write.then(|| {
            let (floor_of, floor_span) = match self.per_second {
                Some(per_second) => (per_second, Duration::from_secs(1)),
                None => (self.limit, self.window),
            };
            Writes {
                log: &self.writes_key,
                limit: if self.per_second.is_some() {
                    self.limit
                } else {
                    percent_of(self.limit, WRITE_SHARE_PERCENT)
                },
                // A write that goes first has no floor it could reach: it never yields.
                floor: if self.goes_first {
                    u32::MAX
                } else {
                    percent_of(floor_of, WRITE_FLOOR_PERCENT)
                },
                floor_span,
            }
        });
        let slots = Slots {
            log: &self.log_key,
            pause: &self.pause_key,
            reads_waiting: &self.reads_waiting_key,
            window: self.window,
            limit: self.limit,
            per_second: self.per_second,
            writes,
        };
        store.budget_take(&slots).await.ok()
    }

    /// A read (or a write going first) found no slot and comes back after `retry`: until just after then,
    /// writes yield to it.
    pub(crate) async fn mark_read_waiting(&self, retry: Duration) {
        let Some(store) = &self.store else { return };
        if let Err(e) = store
            .set(&self.reads_waiting_key, b"1", Some(retry + READ_MARK_GRACE))
            .await
        {
            tracing::debug!(error = %e, "a waiting read could not ask writes to yield");
        }
    }

    fn local_pause(&self) -> Option<Duration> {
        let now = Instant::now();
        let until = self.lock().paused_until?;
        (until > now).then(|| until - now)
    }

    /// The wait this process's own log asks for.
    fn take_local(&self) -> Duration {
        let now = Instant::now();
        let mut local = self.lock();
        while local
            .grants
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            local.grants.pop_front();
        }
        if let Some(per_second) = self.per_second {
            // This process's share of a second, as of the window.
            let share = (per_second as usize * self.local_limit()).div_ceil(self.limit as usize);
            if let Some(wait) = crate::memory::second_spent(&local.grants, now, share) {
                return wait;
            }
        }
        if local.grants.len() < self.local_limit() {
            return Duration::ZERO;
        }
        let oldest = local.grants.front().copied().unwrap_or(now);
        (self.window.saturating_sub(now.duration_since(oldest))).max(Duration::from_millis(1))
    }

    /// Every grant is also kept locally, so a fallback starts from what this process already spent.
    fn record_local(&self) {
        let now = Instant::now();
        let mut local = self.lock();
        local.grants.push_back(now);
        while local.grants.len() > self.limit as usize {
            local.grants.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
