//! The store's in-process backend, for `bb2snyk run` and `import`: the same commands on a map, so stage
//! code that locks and keeps its ledger through [`crate::Store`] runs unchanged without Redis.

use crate::budget::Slots;

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

#[derive(Debug, Default)]
pub(crate) struct Memory {
    keys: Mutex<HashMap<String, Entry>>,
}

#[derive(Debug)]
struct Entry {
    value: Value,
    expires: Option<Instant>,
}

#[derive(Debug)]
enum Value {
    Bytes(Vec<u8>),
    Set(BTreeSet<String>),
    /// A budget's grants, oldest first: the sliding log Redis keeps in a sorted set.
    Log(VecDeque<Instant>),
}

/// The live keys: expired ones are dropped as they are met.
pub(crate) struct Keys<'a>(MutexGuard<'a, HashMap<String, Entry>>);

impl Memory {
    pub(crate) fn keys(&self) -> Keys<'_> {
        Keys(self.keys.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Keys<'_> {
    fn live(&mut self, key: &str) -> Option<&mut Entry> {
        if self
            .0
            .get(key)
            .and_then(|e| e.expires)
            .is_some_and(|at| at <= Instant::now())
        {
            self.0.remove(key);
        }
        self.0.get_mut(key)
    }

    pub(crate) fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        match self.live(key).map(|e| &e.value) {
            Some(Value::Bytes(b)) => Some(b.clone()),
            _ => None,
        }
    }

    pub(crate) fn set(&mut self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let entry = Entry {
            value: Value::Bytes(value.to_vec()),
            expires: ttl.map(|t| Instant::now() + t),
        };
        self.0.insert(key.to_owned(), entry);
    }

    pub(crate) fn set_nx(&mut self, key: &str, value: &[u8], ttl: Duration) -> bool {
        if self.live(key).is_some() {
            return false;
        }
        self.set(key, value, Some(ttl));
        true
    }

    pub(crate) fn ttl(&mut self, key: &str) -> Option<Duration> {
        let at = self.live(key)?.expires?;
        Some(at.saturating_duration_since(Instant::now()))
    }

    pub(crate) fn delete(&mut self, key: &str) -> bool {
        self.live(key).is_some() && self.0.remove(key).is_some()
    }

    pub(crate) fn compare_and_delete(&mut self, key: &str, expected: &[u8]) -> bool {
        if self.get(key).as_deref() == Some(expected) {
            self.0.remove(key);
            return true;
        }
        false
    }

    pub(crate) fn compare_and_expire(&mut self, key: &str, expected: &[u8], ttl: Duration) -> bool {
        if self.get(key).as_deref() != Some(expected) {
            return false;
        }
        if let Some(entry) = self.live(key) {
            entry.expires = Some(Instant::now() + ttl);
        }
        true
    }

    fn set_of(&mut self, key: &str) -> Option<&mut BTreeSet<String>> {
        match &mut self.live(key)?.value {
            Value::Set(set) => Some(set),
            Value::Bytes(_) | Value::Log(_) => None,
        }
    }

    pub(crate) fn add(&mut self, key: &str, member: &str) {
        let entry = self.0.entry(key.to_owned()).or_insert_with(|| Entry {
            value: Value::Set(BTreeSet::new()),
            expires: None,
        });
        if let Value::Set(set) = &mut entry.value {
            set.insert(member.to_owned());
        }
    }

    pub(crate) fn remove(&mut self, key: &str, member: &str) {
        if let Some(set) = self.set_of(key) {
            set.remove(member);
        }
    }

    pub(crate) fn members(&mut self, key: &str) -> Vec<String> {
        self.set_of(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn contains(&mut self, key: &str, member: &str) -> bool {
        self.set_of(key).is_some_and(|s| s.contains(member))
    }

    pub(crate) fn expire(&mut self, key: &str, ttl: Duration) {
        if let Some(entry) = self.live(key) {
            entry.expires = Some(Instant::now() + ttl);
        }
    }

    pub(crate) fn len(&mut self, key: &str) -> u64 {
        self.set_of(key).map_or(0, |s| s.len() as u64)
    }

    /// The budget script's work on a map ([`crate::budget::TAKE`]): zero when a request may go now (and it
    /// is logged in its logs), else the wait, a pause first.
    pub(crate) fn take(&mut self, slots: &Slots<'_>) -> Duration {
        if let Some(wait) = self.ttl(slots.pause).filter(|w| !w.is_zero()) {
            return wait;
        }
        let now = Instant::now();
        if let Some(writes) = &slots.writes
            && let Some(waiting) = self.ttl(slots.reads_waiting).filter(|w| !w.is_zero())
        {
            let span = writes.floor_span;
            let recent = self.log(writes.log, now, slots.window);
            let lately = recent
                .iter()
                .rev()
                .take_while(|t| now.duration_since(**t) < span);
            if lately.count() >= writes.floor as usize {
                return waiting;
            }
        }
        if let Some(per_second) = slots.per_second
            && let Some(wait) = second_spent(
                self.log(slots.log, now, slots.window),
                now,
                per_second as usize,
            )
        {
            return wait;
        }
        let mut logs = vec![(slots.log, slots.limit)];
        logs.extend(slots.writes.map(|w| (w.log, w.limit)));
        for (log, limit) in &logs {
            let grants = self.log(log, now, slots.window);
            if grants.len() >= *limit as usize {
                let oldest = grants.front().copied().unwrap_or(now);
                return slots
                    .window
                    .saturating_sub(now.duration_since(oldest))
                    .max(Duration::from_millis(1));
            }
        }
        for (log, _) in &logs {
            self.log(log, now, slots.window).push_back(now);
        }
        if slots.writes.is_none() {
            self.delete(slots.reads_waiting);
        }
        Duration::ZERO
    }

    /// The grants in `key` within `window` of `now`. A key that held something else becomes a log.
    fn log(&mut self, key: &str, now: Instant, window: Duration) -> &mut VecDeque<Instant> {
        let entry = self.0.entry(key.to_owned()).or_insert_with(|| Entry {
            value: Value::Log(VecDeque::new()),
            expires: None,
        });
        if !matches!(entry.value, Value::Log(_)) {
            entry.value = Value::Log(VecDeque::new());
        }
        let Value::Log(grants) = &mut entry.value else {
            unreachable!("made a log above")
        };
        while grants
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            grants.pop_front();
        }
        grants
    }

    /// Extends the pause in `key` to `duration` unless it already lasts longer.
    pub(crate) fn pause(&mut self, key: &str, duration: Duration) {
        if self.ttl(key).is_none_or(|left| left < duration) {
            self.set(key, b"1", Some(duration));
        }
    }
}

/// With `per_second` grants or more in the second before `now` (grants in time order), how long until the
/// first of them leaves it.
pub(crate) fn second_spent(
    grants: &VecDeque<Instant>,
    now: Instant,
    per_second: usize,
) -> Option<Duration> {
    let second = Duration::from_secs(1);
    let (count, first) = grants
        .iter()
        .rev()
        .take_while(|t| now.duration_since(**t) < second)
        .fold((0, None), |(n, _), t| (n + 1, Some(*t)));
    let first = first.filter(|_| count >= per_second.max(1))?;
    Some(
        second
            .saturating_sub(now.duration_since(first))
            .max(Duration::from_millis(1)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_are_gone_and_locks_are_taken_once() {
        let memory = Memory::default();
        let mut keys = memory.keys();
        assert!(keys.set_nx("lock", b"a", Duration::from_secs(60)));
        assert!(!keys.set_nx("lock", b"b", Duration::from_secs(60)));
        assert!(!keys.compare_and_delete("lock", b"b"));
        assert!(keys.compare_and_delete("lock", b"a"));
        keys.set("gone", b"x", Some(Duration::ZERO));
        assert_eq!(keys.get("gone"), None);
        assert!(!keys.delete("gone"));
        assert!(keys.set_nx("gone", b"y", Duration::from_secs(1)));
        assert!(
            keys.ttl("gone")
                .is_some_and(|t| t <= Duration::from_secs(1))
        );
    }

    fn slots<'a>(log: &'a str, pause: &'a str) -> Slots<'a> {
        Slots {
            log,
            pause,
            reads_waiting: "reads-waiting",
            window: Duration::from_secs(60),
            limit: 2,
            per_second: None,
            writes: None,
        }
    }

    #[test]
    fn a_log_grants_its_limit_per_window_and_a_pause_holds_it() {
        let memory = Memory::default();
        let mut keys = memory.keys();
        let window = Duration::from_secs(60);
        assert!(keys.take(&slots("log", "pause")).is_zero());
        assert!(keys.take(&slots("log", "pause")).is_zero());
        let wait = keys.take(&slots("log", "pause"));
        assert!(wait > Duration::from_secs(59) && wait <= window, "{wait:?}");
        keys.pause("other-pause", Duration::from_secs(5));
        let paused = keys.take(&slots("other-log", "other-pause"));
        assert!(paused > Duration::from_secs(4), "{paused:?}");
        keys.pause("other-pause", Duration::from_secs(1));
        assert!(
            keys.ttl("other-pause") > Some(Duration::from_secs(4)),
            "a pause never shrinks"
        );
    }

    #[test]
    fn sets_count_their_members_once() {
        let memory = Memory::default();
        let mut keys = memory.keys();
        keys.add("s", "a");
        keys.add("s", "a");
        keys.add("s", "b");
        keys.remove("s", "b");
        assert_eq!(keys.len("s"), 1);
        assert_eq!(keys.members("s"), vec!["a".to_owned()]);
        assert_eq!(keys.len("missing"), 0);
    }
}
