//! Operating a deployment's queues, for `bb2snyk status` and `replay`: exact depths from the broker,
//! unacked counts and rates from RabbitMQ's management API when it answers, the reasons parked messages
//! carry, and replay. The CLI asks through this module, so lapin stays out of it.
//!
//! The management API is one GET per queue here; we call it with our own HTTP client rather than take
//! `rabbitmq_http_client` (it needs Rust 1.94 where we support 1.88, and brings a client stack of its own
//! for that one call).

use std::{sync::Arc, time::Duration};

use lapin::{
    Connection,
    options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions},
    types::FieldTable,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::{AmqpBroker, BrokerError, Message, Topology, decode, parked_reason};

/// One queue, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    pub name: String,
    pub ready: u64,
    /// Unknown without the management API.
    pub unacked: Option<u64>,
    pub consumers: u64,
    /// Messages per second published and acknowledged, from the management API.
    pub publish_rate: Option<f64>,
    pub ack_rate: Option<f64>,
}

/// A connection for operators' commands, with the topology's names and the management API beside it.
#[derive(Debug)]
pub struct Admin {
    connection: Arc<Connection>,
    topology: Topology,
    management: Management,
}

impl Admin {
    pub fn new(connection: Arc<Connection>, topology: Topology, management: Management) -> Self {
        Self {
            connection,
            topology,
            management,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// Every queue of the topology by full name: each work queue, its retry tiers, its delay queues (for
    /// delayed queues), its parking queue.
    pub fn queue_names(&self) -> Vec<String> {
        let t = &self.topology;
        t.queues
            .iter()
            .flat_map(|q| {
                let delays = if t.retry.is_delayed(q) {
                    crate::DELAYS.len()
                } else {
                    0
                };
                std::iter::once(t.work(q))
                    .chain((0..t.retry.tiers.len()).map(|tier| t.retry_queue(q, tier)))
                    .chain((0..delays).map(|index| t.delay_queue(q, index)))
                    .chain(std::iter::once(t.parked(q)))
            })
            .collect()
    }

    /// The queue's depth and consumers, exact, from the broker; unacked and rates from the management API
    /// (whose statistics lag a few seconds) when it answers. The flag says whether it did.
    pub async fn queue(&self, name: &str) -> Result<(QueueStatus, bool), BrokerError> {
        let mut status = self.depth(name).await?;
        let extra = self.management.queue(name).await;
        if let Some(extra) = &extra {
            status.unacked = extra.unacked;
            status.publish_rate = extra.publish_rate;
            status.ack_rate = extra.ack_rate;
        }
        Ok((status, extra.is_some()))
    }

    /// A queue's depth and consumers by passive declare; a missing queue counts as empty.
    async fn depth(&self, name: &str) -> Result<QueueStatus, BrokerError> {
        // A passive declare of a missing queue closes its channel, so each gets its own.
        let channel = self.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let (ready, consumers) = match channel
            .queue_declare(name.into(), options, FieldTable::default())
            .await
        {
            Ok(q) => (u64::from(q.message_count()), u64::from(q.consumer_count())),
            Err(_) => (0, 0),
        };
        let _ = channel.close(200, "done".into()).await;
        Ok(QueueStatus {
            name: name.to_owned(),
            ready,
            unacked: None,
            consumers,
            publish_rate: None,
            ack_rate: None,
        })
    }

    /// The reasons of up to `limit` messages parked on full queue `name`. They are read unacknowledged and
    /// go back when the channel closes; a parking queue has no delivery limit, so reading never loses one.
    pub async fn parked_reasons(
        &self,
        name: &str,
        limit: usize,
    ) -> Result<Vec<String>, BrokerError> {
        let channel = self.connection.create_channel().await?;
        let mut reasons = Vec::new();
        while reasons.len() < limit {
            match channel
                .basic_get(name.into(), BasicGetOptions { no_ack: false })
                .await
            {
                Ok(Some(got)) => reasons.push(parked_reason(&got.delivery)),
                Ok(None) | Err(_) => break,
            }
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(reasons)
    }

    /// Moves parked messages of work queue `queue` (short name) that `select` accepts back to work, attempts
    /// reset and `message_id` kept, at most `limit`; `moved` hears each with its parking reason. Each is read
    /// once and acked only after its republish is confirmed; those not moved stay parked, in order. With
    /// `dry_run` nothing moves. Returns how many were (or would be) moved.
    pub async fn replay(
        &self,
        broker: &AmqpBroker,
        queue: &str,
        limit: usize,
        dry_run: bool,
        mut select: impl FnMut(&Message) -> bool,
        mut moved: impl FnMut(&Message, &str),
    ) -> Result<usize, BrokerError> {
        let channel = self.connection.create_channel().await?;
        let parked = self.topology.parked(queue);
        let waiting = self.depth(&parked).await?.ready;
        let mut count = 0;
        // Those not moved are held unacked until the channel closes, so none is read twice.
        for _ in 0..waiting {
            if count >= limit {
                break;
            }
            let Some(got) = channel
                .basic_get(parked.as_str().into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                break;
            };
            let message = decode(&got.delivery);
            if !select(&message) {
                continue;
            }
            moved(&message, &parked_reason(&got.delivery));
            count += 1;
            if dry_run {
                continue;
            }
            let again = Message {
                attempt: 0,
                ..message
            };
            broker.publish(queue, &again).await?;
            got.delivery.ack(BasicAckOptions::default()).await?;
        }
        let _ = channel.close(200, "done".into()).await;
        Ok(count)
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// RabbitMQ's management API, at the AMQP host on port 15672 with the same credentials and vhost.
#[derive(Debug, Clone)]
pub struct Management {
    http: reqwest::Client,
    base: Option<url::Url>,
    vhost: String,
    user: String,
    password: Option<SecretString>,
}

impl Management {
    /// For a cluster's first node (with it down, status goes on without the API's figures).
    pub fn for_amqp_urls(http: reqwest::Client, amqp_urls: &[SecretString]) -> Self {
        match amqp_urls.first() {
            Some(url) => Self::for_amqp_url(http, url),
            None => Self::for_amqp_url(http, &SecretString::from(String::new())),
        }
    }

    /// For the broker at `amqp_url`; an unparseable URL gives one that never answers.
    pub fn for_amqp_url(http: reqwest::Client, amqp_url: &SecretString) -> Self {
        let Ok(amqp) = url::Url::parse(amqp_url.expose_secret()) else {
            return Self {
                http,
                base: None,
                vhost: String::new(),
                user: String::new(),
                password: None,
            };
        };
        let scheme = if amqp.scheme() == "amqps" {
            "https"
        } else {
            "http"
        };
        let host = amqp.host_str().unwrap_or("127.0.0.1");
        let base = url::Url::parse(&format!("{scheme}://{host}:15672/")).ok();
        let vhost = match amqp.path().trim_start_matches('/') {
            "" => "%2F".to_owned(),
            v => v.to_owned(),
        };
        Self {
            http,
            base,
            vhost,
            user: decoded(amqp.username()),
            password: amqp.password().map(|p| SecretString::from(decoded(p))),
        }
    }

    /// Unacked count and rates of full queue `name`; `None` when the API does not answer.
    pub async fn queue(&self, name: &str) -> Option<QueueStatus> {
        let base = self.base.as_ref()?;
        let url = format!("{base}api/queues/{}/{name}", self.vhost);
        let response = self
            .http
            .get(url)
            .basic_auth(
                &self.user,
                self.password.as_ref().map(|p| p.expose_secret()),
            )
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .ok()?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Some(QueueStatus {
                name: name.to_owned(),
                ready: 0,
                unacked: Some(0),
                consumers: 0,
                publish_rate: None,
                ack_rate: None,
            });
        }
        let q: ManagedQueue = response.error_for_status().ok()?.json().await.ok()?;
        Some(QueueStatus {
            name: name.to_owned(),
            ready: q.messages_ready,
            unacked: Some(q.messages_unacknowledged),
            consumers: q.consumers,
            publish_rate: Some(q.message_stats.publish_details.rate),
            ack_rate: Some(q.message_stats.ack_details.rate),
        })
    }
}

/// The fields of `GET /api/queues/{vhost}/{name}` we read; absent ones count as zero.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct ManagedQueue {
    messages_ready: u64,
    messages_unacknowledged: u64,
    consumers: u64,
    message_stats: MessageStats,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct MessageStats {
    publish_details: Rate,
    ack_details: Rate,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Rate {
    rate: f64,
}

/// A user or password as the URL holds it (percent-encoded), decoded for Basic authentication.
fn decoded(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_decoded_as_a_url_holds_them() {
        assert_eq!(decoded("p%40ss+w%2Fd"), "p@ss+w/d");
    }

    #[test]
    fn the_management_api_sits_beside_the_broker_with_its_vhost() {
        let url = SecretString::from("amqps://u%40x:p%2Fw@mq.example:5671/prod");
        let m = Management::for_amqp_url(reqwest::Client::new(), &url);
        assert_eq!(
            m.base.map(|b| b.to_string()).as_deref(),
            Some("https://mq.example:15672/")
        );
        assert_eq!((m.vhost.as_str(), m.user.as_str()), ("prod", "u@x"));
        assert_eq!(
            m.password.map(|p| p.expose_secret().to_owned()).as_deref(),
            Some("p/w")
        );
        let default_vhost = Management::for_amqp_url(
            reqwest::Client::new(),
            &SecretString::from("amqp://guest:guest@127.0.0.1:5672/"),
        );
        assert_eq!(default_vhost.vhost, "%2F");
    }
}
