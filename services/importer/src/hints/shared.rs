//! Listings shared by the fleet. Each importer follows only the jobs it posted, so with four importers a
//! listing of an org tells each of a quarter of the jobs it would tell one importer of, and an org's
//! jobs waited four times as long for one: with jobs of 1-60 s, 4 importers saw jobs done 15.1 s late
//! at p50, against 5.5 s with one. So an importer keeps its last listing of each org in the store, and the
//! others read it (a store read, no request to Snyk) before they list the org themselves. That alone left
//! them 15.9 s late (an importer that hears a listing expects anew from it, so an org was still listed
//! when one importer's quarter made the yield); with the yield the fleet's (see [`importers`]), 4.8 s.
//!
//! The store's text is input: `<at_ms> <since_ms>` on the first line, then a name a line; anything else,
//! or more than [`MOST_NAMES`] names or [`MOST_BYTES`] bytes, is no listing. A name only selects a job
//! the reader follows for a hinted poll, which asks Snyk about that job at its own URL.

use std::time::Duration;

use bb2snyk_store::Store;

/// How long a shared listing is kept: one older tells of little that a newer one or a poll does not.
const KEPT: Duration = Duration::from_secs(30);
/// The most names a shared listing may hold (Snyk's listing reads at most 10 pages of 100) and the
/// most bytes its text may take.
const MOST_NAMES: usize = 1_000;
const MOST_BYTES: usize = 256 * 1024;

/// An org's new targets as one importer listed them.
#[derive(Debug, PartialEq)]
pub(super) struct SharedListing {
    /// When the listing began, and the time it listed targets from (Unix ms).
    pub at_ms: u64,
    pub since_ms: u64,
    pub names: Vec<String>,
}

fn key(org: &str) -> String {
    format!("hints-listing:{org}")
}

impl SharedListing {
    /// Keeps it in `store` for the fleet; a failure is logged and costs the others a listing of their own.
    pub async fn share(&self, store: &Store, org: &str) {
        if self.names.len() > MOST_NAMES {
            return;
        }
        let mut text = format!("{} {}", self.at_ms, self.since_ms);
        for name in &self.names {
            text.push('\n');
            text.push_str(name);
        }
        if let Err(e) = store.set_px(&key(org), text.as_bytes(), KEPT).await {
            tracing::debug!(%org, error = %e, "a listing was not shared");
        }
    }

    /// The org's last shared listing, if the store holds one that reads as such.
    pub async fn read(store: &Store, org: &str) -> Option<Self> {
        let text = match store.get(&key(org)).await {
            Ok(text) => text?,
            Err(e) => {
                tracing::debug!(%org, error = %e, "a shared listing could not be read");
                return None;
            }
        };
        let parsed = Self::parse(&text);
        if parsed.is_none() {
            tracing::debug!(%org, "the store's shared listing does not read as one; ignored");
        }
        parsed
    }

    fn parse(text: &[u8]) -> Option<Self> {
        if text.len() > MOST_BYTES {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let mut lines = text.split('\n');
        let (at_ms, since_ms) = lines.next()?.split_once(' ')?;
        let names: Vec<String> = lines.map(str::to_owned).collect();
        (names.len() <= MOST_NAMES).then_some(())?;
        Some(Self {
            at_ms: at_ms.parse().ok()?,
            since_ms: since_ms.parse().ok()?,
            names,
        })
    }
}

/// How often an importer says it is present, and the windows presence is counted in.
pub(super) const PRESENT_EVERY: Duration = Duration::from_secs(2);
const WINDOW_MS: u64 = 5_000;

/// Says that importer `name` is present at `now_ms`, and returns how many importers are (at least 1):
/// each adds its name to the set of the current five seconds every [`PRESENT_EVERY`], and the fleet is
/// the larger of this window's set and the last one's. An importer's share of an org's jobs is about one
/// in that many (they take import requests from one queue), and so is its share of what a listing tells.
pub(super) async fn importers(store: &Store, name: &str, now_ms: u64) -> u32 {
    let window = |w: u64| format!("hints-importers:{w}");
    let now = now_ms / WINDOW_MS;
    let kept = Duration::from_millis(WINDOW_MS * 3);
    if let Err(e) = store
        .add_members(&window(now), &[name.to_owned()], kept)
        .await
    {
        tracing::debug!(error = %e, "could not say this importer is present");
    }
    let mut most = 1;
    for w in [now.saturating_sub(1), now] {
        if let Ok(count) = store.count(&window(w)).await {
            most = most.max(count);
        }
    }
    u32::try_from(most).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn importers_present_in_this_window_or_the_last_are_counted() {
        let store = Store::memory();
        assert_eq!(importers(&store, "a", 10_000).await, 1);
        assert_eq!(importers(&store, "b", 11_000).await, 2);
        assert_eq!(importers(&store, "a", 12_000).await, 2, "counted once");
        // In the next window b has not said it yet, but was present in the last one.
        assert_eq!(importers(&store, "a", 15_500).await, 2);
        // b stopped: gone once its window is not the last.
        assert_eq!(importers(&store, "a", 20_500).await, 1);
    }

    #[tokio::test]
    async fn a_shared_listing_reads_back_and_anything_else_is_none() {
        let store = Store::memory();
        let listing = SharedListing {
            at_ms: 1_000,
            since_ms: 500,
            names: vec!["acme/a".into(), "acme/b".into()],
        };
        listing.share(&store, "org").await;
        assert_eq!(SharedListing::read(&store, "org").await, Some(listing));
        assert_eq!(SharedListing::read(&store, "other").await, None);

        for bad in [&b"soon 500\nacme/a"[..], b"1000", b"", b"\xff\xfe 1"] {
            assert_eq!(SharedListing::parse(bad), None, "{bad:?}");
        }
        let many = format!("1 0{}", "\nacme/x".repeat(MOST_NAMES + 1));
        assert_eq!(SharedListing::parse(many.as_bytes()), None);
        let huge = format!("1 0\n{}", "x".repeat(MOST_BYTES));
        assert_eq!(SharedListing::parse(huge.as_bytes()), None);
    }
}
