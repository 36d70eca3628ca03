use std::time::Duration;

use bb2snyk_store::{Next, Retry};
use reqwest::StatusCode;

/// A Snyk failure, classified: 401 is a configuration error, 400/404/422 are final for that request, 429,
/// 5xx and the network pass.
#[derive(Debug, thiserror::Error)]
pub enum SnykError {
    #[error(
        "Snyk rejected {token} ({status}: {message}): set an API token with admin rights on the group"
    )]
    Unauthorized {
        status: StatusCode,
        message: String,
        /// Which token: `SNYK_TOKEN`, or its number and hash among several.
        token: String,
    },
    #[error("Snyk: {message} ({status})")]
    Rejected { status: StatusCode, message: String },
    #[error("Snyk's rate limit was reached; retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Snyk answered {status}; this is usually passing, and is retried")]
    Server { status: StatusCode },
    #[error("cannot reach Snyk: {message}")]
    Network {
        message: String,
        /// The request may have reached Snyk (a timeout or reset after it was sent, not a refused
        /// connection).
        sent: bool,
    },
    #[error(
        "Snyk's budget has no slot for {wait:?}; the message comes back then rather than hold its delivery"
    )]
    Deferred { wait: Duration },
    #[error("{token} holds characters no HTTP header can carry: set it to the API token alone")]
    BadToken { token: String },
    #[error(
        "refused to send SNYK_TOKEN to {url}: it is not under snyk.api_base ({base}); a message, the ledger or an \
         answer named a host bb2snyk was not configured with"
    )]
    ForeignUrl { url: String, base: String },
    #[error(
        "Snyk's listing answered a next link bb2snyk cannot follow ({link}): {why}; the listing is incomplete \
         and is not used"
    )]
    Unfollowable { link: String, why: &'static str },
    #[error("Snyk answered {status} without the {what} it documents")]
    Unexpected {
        status: StatusCode,
        what: &'static str,
    },
}

impl SnykError {
    /// The kind of failure in one word, for a span's outcome (never the message, which may be long).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Rejected { .. } => "rejected",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Network { .. } => "network",
            Self::Deferred { .. } => "deferred",
            Self::BadToken { .. } => "bad_token",
            Self::ForeignUrl { .. } => "foreign_url",
            Self::Unfollowable { .. } => "unfollowable",
            Self::Unexpected { .. } => "unexpected",
        }
    }

    pub(crate) fn body(e: bb2snyk_http::BodyError) -> Self {
        match e {
            bb2snyk_http::BodyError::TooLarge => Self::Unexpected {
                status: StatusCode::OK,
                what: "body under 8 MiB",
            },
            bb2snyk_http::BodyError::Read(e) => Self::network(e),
        }
    }

    pub(crate) fn network(e: reqwest::Error) -> Self {
        Self::Network {
            sent: !e.is_connect(),
            message: e.to_string(),
        }
    }

    pub(crate) fn from_status(
        status: StatusCode,
        retry_after: Option<Duration>,
        body: &str,
        token: &str,
    ) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized {
                status,
                message: message_of(body),
                token: token.to_owned(),
            },
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited { retry_after },
            StatusCode::REQUEST_TIMEOUT => Self::Server { status },
            s if s.is_server_error() => Self::Server { status },
            _ => Self::Rejected {
                status,
                message: message_of(body),
            },
        }
    }

    /// Worth trying again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Network { .. }
                | Self::Deferred { .. }
                | Self::Unfollowable { .. }
        )
    }

    /// How long to wait before the message comes back, when the call gave up waiting for the budget.
    pub fn deferred(&self) -> Option<Duration> {
        match self {
            Self::Deferred { wait } => Some(*wait),
            _ => None,
        }
    }

    /// The request reached Snyk and may have taken effect though it failed: a 5xx, a 408, a timeout or a
    /// reset after it was sent. A write that fails so is never sent again without looking first.
    pub fn may_have_happened(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network { sent: true, .. })
    }

    /// The token itself is wrong: no message will fare better until a person fixes it.
    pub fn is_configuration(&self) -> bool {
        matches!(self, Self::Unauthorized { .. } | Self::BadToken { .. })
    }
}

impl From<bb2snyk_store::Overdue> for SnykError {
    fn from(o: bb2snyk_store::Overdue) -> Self {
        Self::Deferred { wait: o.wait }
    }
}

impl Retry for SnykError {
    fn next(&self) -> Next {
        match self {
            Self::RateLimited { retry_after } => Next::Pause(*retry_after),
            Self::Server { .. } | Self::Network { .. } => Next::Backoff,
            // Another token of the group may do; the pool moves the call to it.
            Self::Unauthorized { .. } | Self::BadToken { .. } => Next::Refused,
            _ => Next::Fail,
        }
    }

    fn may_have_happened(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Network { sent: true, .. })
    }
}

/// The human part of a Snyk error body, whichever of its shapes it has.
fn message_of(body: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    value["message"]
        .as_str()
        .or_else(|| value["error"]["message"].as_str())
        .or_else(|| value["error"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| body.chars().take(200).collect())
}
