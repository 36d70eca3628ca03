//! The store's in-process backend, for `bb2snyk run` and `import`: the same commands on a map, so stage
//! code that locks and keeps its ledger through [`crate::Store`] runs unchanged without Redis.

use std::{
    collections::{BTreeSet, HashMap},
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
            Value::Bytes(_) => None,
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
