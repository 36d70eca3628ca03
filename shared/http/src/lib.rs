//! One `reqwest::Client` per process, built here, so timeouts, pooling and the user agent are the same for
//! every call to Bitbucket and Snyk.

use std::time::{Duration, SystemTime};

use bb2snyk_settings::HttpSettings;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// Builds the shared client. It pools connections, so clone it rather than building another.
pub fn client(settings: &HttpSettings) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("bb2snyk/", env!("CARGO_PKG_VERSION")))
        .timeout(settings.timeout)
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        // A redirect could carry the Authorization header to another host; the APIs we call never redirect.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The largest answer bb2snyk reads from Bitbucket or Snyk; a larger one is refused, not buffered.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Pages of one list bb2snyk follows before it stops (a server that keeps answering `next`): at 100 a page,
/// a million workspaces or orgs.
pub const MAX_PAGES: usize = 10_000;

/// The body of `response`, read up to [`MAX_BODY`] bytes; past that an error saying so.
pub async fn text(mut response: reqwest::Response) -> Result<String, BodyError> {
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY as u64)
    {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Why an answer's body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over [`MAX_BODY`].
    TooLarge,
    Read(reqwest::Error),
}

/// True when `url` lies under `base`: the same scheme, host and port, no user info, and a path that is
/// `base`'s or continues it. Every URL that arrives in a message, the ledger or an API answer is checked
/// with this before a credential is sent to it.
pub fn is_within(base: &str, url: &str) -> bool {
    let (Ok(base), Ok(url)) = (reqwest::Url::parse(base), reqwest::Url::parse(url)) else {
        return false;
    };
    let root = base.path().trim_end_matches('/');
    let path = url.path();
    base.scheme() == url.scheme()
        && base.host_str() == url.host_str()
        && base.port_or_known_default() == url.port_or_known_default()
        && url.username().is_empty()
        && url.password().is_none()
        && (path == root || path.starts_with(&format!("{root}/")))
}

/// `Retry-After` as delta-seconds or an HTTP date; `None` when absent or unreadable.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// The wait before retry number `attempt` (0-based) of a passing failure: exponential from 500 ms, capped at
/// `max`, drawn at random from its upper half so replicas that failed together do not retry together.
pub fn backoff(attempt: u32, max: Duration) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(max);
    let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(fastrand::u64(millis / 2..=millis))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_str(value).expect("header value"),
        );
        h
    }

    #[test]
    fn backoff_grows_to_its_cap_and_stays_jittered() {
        let max = Duration::from_secs(30);
        for attempt in 0..40 {
            let ceiling = Duration::from_millis(500)
                .saturating_mul(2u32.saturating_pow(attempt.min(16)))
                .min(max);
            let wait = backoff(attempt, max);
            assert!(
                wait <= ceiling && wait >= ceiling / 2,
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn only_urls_under_the_base_are_within_it() {
        let base = "https://api.bitbucket.org/2.0";
        assert!(is_within(
            base,
            "https://api.bitbucket.org/2.0/repositories/acme?page=2"
        ));
        assert!(is_within(base, "https://api.bitbucket.org:443/2.0"));
        for foreign in [
            "https://evil.example/2.0/repositories/acme",
            "http://api.bitbucket.org/2.0/repositories/acme",
            "https://api.bitbucket.org:8443/2.0/repositories/acme",
            "https://api.bitbucket.org/2.0x/repositories",
            "https://api.bitbucket.org/repositories/acme",
            "https://user:pw@api.bitbucket.org/2.0/repositories",
            "https://api.bitbucket.org.evil.example/2.0/repositories",
            "/2.0/repositories/acme",
            "not a url",
        ] {
            assert!(!is_within(base, foreign), "{foreign}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after(&headers("7")), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT")),
            Some(Duration::ZERO)
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let parsed = retry_after(&headers(&later)).expect("a date parses");
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(retry_after(&headers("soon")), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }
}

/// What one call to Bitbucket or Snyk is, for its metric and its span: the endpoint's template
/// (`/orgs/{org}/projects`), named by the caller rather than guessed from the URL, and what the call is
/// about (an org, a group, a workspace), so a slow or failing org shows in the traces.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub endpoint: &'static str,
    pub about: &'a str,
}

impl<'a> Call<'a> {
    /// A call to `endpoint` about `about` (empty when it concerns nothing in particular).
    pub fn new(endpoint: &'static str, about: &'a str) -> Self {
        Self { endpoint, about }
    }
}
