//! One call to Snyk: the URL rule (only under the configured bases), the token's header, the budget and
//! its retry rules, and reading the answer.

use reqwest::{
    Method, StatusCode,
    header::{AUTHORIZATION, HeaderValue, LOCATION},
};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde_json::Value;

use bb2snyk_http::Call;
use bb2snyk_store::fingerprint;
use tracing::Instrument;

use crate::{Client, SnykError};

/// One API token and how messages name it: never the token itself.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) secret: SecretString,
    pub(crate) label: String,
}

/// A successful answer: its status, its `Location`, its body.
pub(crate) struct Answer {
    pub(crate) location: Option<String>,
    pub(crate) body: String,
}

impl Client {
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.api_base)
    }

    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        call: Call<'_>,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<T, SnykError> {
        let answer = self
            .request(call, method, &self.url(path_and_query), body)
            .await?;
        parse(&answer.body)
    }

    /// One call under the budget and its retry rules, in a span that names its org, endpoint and outcome.
    /// A POST creates something (an org, an import job), so it is never sent again after a failure that
    /// may have happened: the caller looks first.
    pub(crate) async fn request(
        &self,
        call: Call<'_>,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SnykError> {
        let span = tracing::info_span!(
            "snyk",
            org = call.about,
            endpoint = call.endpoint,
            %method,
            outcome = tracing::field::Empty
        );
        let answer = self
            .request_once(call.endpoint, method, url, body)
            .instrument(span.clone())
            .await;
        match &answer {
            Ok(_) => span.record("outcome", "ok"),
            Err(e) => span.record("outcome", tracing::field::display(e.kind())),
        };
        answer
    }

    async fn request_once(
        &self,
        endpoint: &'static str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Answer, SnykError> {
        if !bb2snyk_http::is_within(&self.api_base, url)
            && !bb2snyk_http::is_within(&self.rest_base, url)
        {
            return Err(SnykError::ForeignUrl {
                url: url.chars().take(200).collect(),
                base: self.api_base.clone(),
            });
        }
        let method = &method;
        let rest = bb2snyk_http::is_within(&self.rest_base, url);
        let call = |index: usize| async move {
            let token = &self.tokens[index];
            if let Some(budget) = self.rest_budgets.get(index).filter(|_| rest) {
                budget.take().await?;
            }
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, authorization(token)?);
            match body {
                // JSON:API writes (REST PATCH) must say so, or Snyk answers 400.
                Some(body) if *method == Method::PATCH => {
                    request = request
                        .header(reqwest::header::CONTENT_TYPE, "application/vnd.api+json")
                        .body(body.to_string());
                }
                Some(body) => request = request.json(body),
                None => {}
            }
            let sent = request.send().await;
            bb2snyk_telemetry::metrics::http_call(
                "snyk",
                endpoint,
                sent.as_ref().ok().map(|r| r.status().as_u16()),
            );
            let response = sent.map_err(SnykError::network)?;
            let status = response.status();
            tracing::debug!(%method, %url, %status, "snyk call");
            let retry_after = bb2snyk_http::retry_after(response.headers());
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_owned);
            let body = bb2snyk_http::text(response)
                .await
                .map_err(SnykError::body)?;
            if status.is_success() {
                Ok(Answer { location, body })
            } else {
                Err(SnykError::from_status(
                    status,
                    retry_after,
                    &body,
                    &token.label,
                ))
            }
        };
        if method == Method::POST {
            self.budgets.call_write(call).await
        } else {
            self.budgets.call(call).await
        }
    }
}

/// `token <TOKEN>`, marked sensitive so no debug output of the request shows it.
fn authorization(token: &Token) -> Result<HeaderValue, SnykError> {
    let mut value = HeaderValue::from_str(&format!("token {}", token.secret.expose_secret()))
        .map_err(|_| SnykError::BadToken {
            token: token.label.clone(),
        })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Names a token in Redis keys and messages without revealing it.
pub(crate) fn token_id(token: &SecretString) -> String {
    fingerprint(&format!("snyk:{}", token.expose_secret()))
}

pub(crate) fn parse<T: DeserializeOwned>(body: &str) -> Result<T, SnykError> {
    serde_json::from_str(body).map_err(|_| SnykError::Unexpected {
        status: StatusCode::OK,
        what: "JSON body",
    })
}

/// A path segment, percent-encoded.
pub(crate) fn segment(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
