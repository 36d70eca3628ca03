use std::time::Duration;

use reqwest::{StatusCode, header::HeaderMap};

/// A Bitbucket failure, worded so the reader knows what to change.
#[derive(Debug, thiserror::Error)]
pub enum BitbucketError {
    #[error(
        "this OAuth consumer is public; client_credentials needs a private consumer: tick 'This is a private consumer' \
         in the workspace's OAuth consumer settings"
    )]
    PublicConsumer,
    #[error(
        "the client id or secret is wrong (Bitbucket: {0}); check BITBUCKET_APP_CLIENT_ID and BITBUCKET_APP_CLIENT_SECRET \
         (or the consumer's [[consumer]] table in BITBUCKET_APP_CREDENTIALS_FILE), and that the consumer still exists"
    )]
    BadConsumer(String),
    #[error(
        "the OAuth consumer lacks the scopes {required}: grant them in the workspace's OAuth consumer settings (granted: {granted})"
    )]
    MissingScopes { required: String, granted: String },
    #[error(
        "Bitbucket refused access (403: {0}); the credential may not see this workspace or repository: check \
         the consumer's permissions"
    )]
    Forbidden(String),
    #[error("Bitbucket rejected the credentials ({0}); check the {1} bb2snyk is configured with")]
    Rejected(String, &'static str),
    #[error("Bitbucket rejected the token: {0}")]
    Unauthorized(String),
    #[error(
        "Bitbucket lists no workspaces for this credential: /2.0/user/workspaces and /2.0/workspaces both answered \
         {0}; name the workspaces instead with bitbucket.workspaces in the config file (or BB2SNYK__BITBUCKET__WORKSPACES), \
         comma-separated slugs"
    )]
    WorkspacesUnlisted(StatusCode),
    #[error("Bitbucket: {0}")]
    NotFound(String),
    #[error("Bitbucket removed this endpoint (CHANGE-2770): {0}")]
    Gone(String),
    #[error("Bitbucket's rate limit was reached; retry after {retry_after:?}")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Bitbucket answered {status}; this is usually passing, and is retried")]
    Server { status: StatusCode },
    #[error("cannot reach Bitbucket: {0}")]
    Network(String),
    #[error(
        "Bitbucket's budget has no slot for {wait:?}; the message comes back then rather than hold its delivery"
    )]
    Deferred { wait: Duration },
    #[error(
        "refused to send the Bitbucket credential to {url}: it is not under bitbucket.api_base ({base}); a message, \
         the ledger or an answer named a host bb2snyk was not configured with"
    )]
    ForeignUrl { url: String, base: String },
    #[error(
        "Bitbucket's listing named the page it had just answered as the next one ({0}); the listing is \
         incomplete and is not used"
    )]
    RepeatedPage(String),
    #[error("Bitbucket answered {status} with an unexpected body: {body}")]
    Unexpected { status: StatusCode, body: String },
    /// A credential problem of one of several credentials, naming which (never its secret).
    #[error("{credential}: {source}")]
    Credential {
        credential: String,
        source: Box<BitbucketError>,
    },
    #[error(
        "the message names Bitbucket credential {0:?}, which is not among those configured here \
         (BITBUCKET_APP_CREDENTIALS_FILE): every service must run with the same credentials file"
    )]
    UnknownCredential(String),
}

#[derive(serde::Deserialize)]
struct Envelope {
    error: Option<Inner>,
}

#[derive(serde::Deserialize)]
struct Inner {
    message: Option<String>,
    detail: Option<serde_json::Value>,
}

impl From<bb2snyk_store::Overdue> for BitbucketError {
    fn from(o: bb2snyk_store::Overdue) -> Self {
        Self::Deferred { wait: o.wait }
    }
}

impl bb2snyk_store::Retry for BitbucketError {
    fn next(&self) -> bb2snyk_store::Next {
        use bb2snyk_store::Next;
        match self {
            Self::RateLimited { retry_after } => Next::Pause(*retry_after),
            Self::Network(_) | Self::Server { .. } => Next::Backoff,
            _ => Next::Fail,
        }
    }
}

impl BitbucketError {
    /// The kind of failure in one word, for a span's outcome (never the message, which may be long).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PublicConsumer | Self::BadConsumer(_) | Self::MissingScopes { .. } => "consumer",
            Self::Forbidden(_) => "forbidden",
            Self::Rejected(..) | Self::Unauthorized(_) => "unauthorized",
            Self::WorkspacesUnlisted(_) => "unlisted",
            Self::NotFound(_) => "not_found",
            Self::Gone(_) => "gone",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Network(_) => "network",
            Self::Deferred { .. } => "deferred",
            Self::ForeignUrl { .. } => "foreign_url",
            Self::RepeatedPage(_) => "repeated_page",
            Self::Unexpected { .. } => "unexpected",
            Self::Credential { source, .. } => source.kind(),
            Self::UnknownCredential(_) => "unknown_credential",
        }
    }

    /// Worth trying again later: the network, Bitbucket's servers or its rate limit, not our request.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Network(_)
                | Self::Server { .. }
                | Self::RateLimited { .. }
                | Self::Deferred { .. }
                | Self::RepeatedPage(_)
        )
    }

    /// How long to wait before the message comes back, when the call gave up waiting for the budget.
    pub fn deferred(&self) -> Option<Duration> {
        match self {
            Self::Deferred { wait } => Some(*wait),
            _ => None,
        }
    }

    /// The credentials or their scopes are wrong: a person has to change the configuration.
    pub fn is_credentials(&self) -> bool {
        matches!(
            self,
            Self::PublicConsumer
                | Self::BadConsumer(_)
                | Self::MissingScopes { .. }
                | Self::Forbidden(_)
                | Self::Rejected(..)
                | Self::Unauthorized(_)
                | Self::Credential { .. }
                | Self::UnknownCredential(_)
        )
    }

    pub(crate) fn body(e: bb2snyk_http::BodyError) -> Self {
        match e {
            bb2snyk_http::BodyError::TooLarge => Self::Unexpected {
                status: StatusCode::OK,
                body: format!("an answer over {} bytes, not read", bb2snyk_http::MAX_BODY),
            },
            bb2snyk_http::BodyError::Read(e) => Self::network(e),
        }
    }

    pub(crate) fn network(e: reqwest::Error) -> Self {
        // reqwest's message names the URL, which never carries a credential here.
        Self::Network(e.to_string())
    }

    pub(crate) fn unexpected(status: StatusCode, body: &str) -> Self {
        Self::Unexpected {
            status,
            body: body.chars().take(200).collect(),
        }
    }

    pub(crate) fn from_oauth(
        status: StatusCode,
        error: Option<&str>,
        description: Option<&str>,
    ) -> Self {
        let description = description.unwrap_or("");
        match error {
            Some("invalid_grant") if description.contains("public") => Self::PublicConsumer,
            Some("unauthorized_client") | Some("invalid_client") => {
                Self::BadConsumer(description.to_owned())
            }
            _ if status.is_server_error() => Self::Server { status },
            _ => Self::Unexpected {
                status,
                body: format!("{} {description}", error.unwrap_or(""))
                    .trim()
                    .to_owned(),
            },
        }
    }

    pub(crate) fn from_api(status: StatusCode, headers: &HeaderMap, body: &str) -> Self {
        let inner = serde_json::from_str::<Envelope>(body)
            .ok()
            .and_then(|e| e.error);
        let message = inner
            .as_ref()
            .and_then(|i| i.message.clone())
            .unwrap_or_else(|| body.chars().take(200).collect());
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized(message),
            StatusCode::FORBIDDEN => {
                let detail = inner.and_then(|i| i.detail);
                let list = |key: &str| {
                    detail
                        .as_ref()
                        .and_then(|d| d.get(key))
                        .and_then(|v| v.as_array())
                        .map(|a| {
                            a.iter()
                                .filter_map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        })
                        .unwrap_or_default()
                };
                let required = list("required");
                if required.is_empty() {
                    return Self::Forbidden(message);
                }
                Self::MissingScopes {
                    required,
                    granted: list("granted"),
                }
            }
            StatusCode::NOT_FOUND => Self::NotFound(message),
            StatusCode::GONE => Self::Gone(message),
            StatusCode::TOO_MANY_REQUESTS => Self::RateLimited {
                retry_after: bb2snyk_http::retry_after(headers),
            },
            s if s.is_server_error() => Self::Server { status },
            _ => Self::Unexpected {
                status,
                body: message,
            },
        }
    }
}
