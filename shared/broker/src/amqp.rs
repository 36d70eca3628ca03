//! RabbitMQ for bb2snyk: connection, durable quorum queues, and publishing with confirms.

use std::time::Duration;

use bb2snyk_settings::redact_url;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties,
    options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::{AMQPValue, FieldTable, ShortString},
};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach RabbitMQ at {url}: {cause}; start RabbitMQ or set AMQP_URL")]
    Unreachable { url: String, cause: lapin::Error },
    #[error(
        "nothing is bound to exchange {exchange:?} with routing key {routing_key:?}; the topology is missing"
    )]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
    #[error(
        "RabbitMQ refused the message (nack) on exchange {exchange:?}; it will be published again"
    )]
    Nacked { exchange: String },
    #[error("the message cannot be published: {0}")]
    Unsendable(String),
    #[error("RabbitMQ did not confirm the message within {0:?}")]
    ConfirmTimeout(Duration),
    #[error(
        "the RabbitMQ connection stayed down for {0:?} while its recovery was under way; starting again from a new connection"
    )]
    Stalled(Duration),
    #[error("no RabbitMQ URL to connect to; set AMQP_URL")]
    NoUrl,
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// How hard to try before a connection counts as lost: TCP attempts, with exponential backoff between them.
#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub attempts: usize,
    pub max_delay: Duration,
}

impl Default for Reconnect {
    /// About half a minute of attempts: a broker restart fits, a dead broker is reported soon enough.
    fn default() -> Self {
        Self {
            attempts: 8,
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Reconnect {
    const MIN_DELAY: Duration = Duration::from_millis(200);
    /// Recovery attempts on one node of a cluster before its connection counts as lost: a node that is
    /// down is left at once for the next (the service starts again on a new connection, [`connect`]
    /// walking the addresses), instead of being knocked on for half a minute.
    const PER_NODE: usize = 3;

    /// The longest a recovery that will succeed can take: every wait between attempts at its ceiling,
    /// plus a margin for the attempts themselves. A connection down longer than this is [`stalled`].
    pub fn budget(&self) -> Duration {
        let waits: Duration = (0..self.attempts)
            .map(|i| {
                Self::MIN_DELAY
                    .saturating_mul(2u32.saturating_pow(u32::try_from(i).unwrap_or(u32::MAX)))
                    .min(self.max_delay)
            })
            .sum();
        waits + Duration::from_secs(10)
    }

    /// How each connection to one of `addresses` nodes recovers: as configured for one address, a few
    /// tries for several. [`Reconnect::budget`] of this is how long a recovery may take.
    pub fn per_connection(self, addresses: usize) -> Self {
        if addresses > 1 {
            Self {
                attempts: self.attempts.min(Self::PER_NODE),
                ..self
            }
        } else {
            self
        }
    }
}

/// Connects with automatic recovery, under a name that shows in the management UI. The same backoff
/// applies to the first connection and to every recovery. With several URLs (a cluster's nodes) they are
/// tried in order, each a few times, for as many rounds as `reconnect.attempts` allows; a connection
/// whose node goes away gives up soon (see [`Reconnect::per_connection`]) so the next connect finds a
/// node that is up.
pub async fn connect(
    urls: &[SecretString],
    name: &str,
    reconnect: Reconnect,
) -> Result<Connection, BrokerError> {
    let each = reconnect.per_connection(urls.len());
    let rounds = reconnect.attempts.div_ceil(each.attempts.max(1)).max(1);
    let mut last = None;
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(reconnect.max_delay).await;
        }
        for url in urls {
            match connect_one(url, name, each).await {
                Ok(connection) => return Ok(connection),
                Err(e) => {
                    if urls.len() > 1 {
                        tracing::warn!(error = %e, "RabbitMQ node unreachable; trying the next");
                    }
                    last = Some(e);
                }
            }
        }
    }
    Err(last.unwrap_or(BrokerError::NoUrl))
}

async fn connect_one(
    url: &SecretString,
    name: &str,
    reconnect: Reconnect,
) -> Result<Connection, BrokerError> {
    let properties = ConnectionProperties::default()
        .with_connection_name(name.into())
        .configure_backoff(|b| {
            b.with_min_delay(Reconnect::MIN_DELAY)
                .with_max_delay(reconnect.max_delay)
                .with_max_times(reconnect.attempts)
                .with_jitter()
        })
        .enable_auto_recover();
    Connection::connect(url.expose_secret(), properties)
        .await
        .map_err(|cause| BrokerError::Unreachable {
            url: redact_url(url),
            cause,
        })
}

/// Resolves once `connection` has been down for `limit` in one stretch. lapin's recovery gives up with an
/// error after its tries (about half a minute), which the service handles; but a recovery can also hang
/// without one (amqp-rs/lapin#450), leaving a process that is alive, never ready, and never consuming.
/// Racing the work against this turns such a hang into a failure the supervisor mends with a new connection.
pub async fn stalled(connection: &Connection, limit: Duration) -> BrokerError {
    let check = Duration::from_secs(1).min(limit);
    let mut down_since = None;
    loop {
        tokio::time::sleep(check).await;
        if connection.status().connected() {
            down_since = None;
        } else if down_since
            .get_or_insert_with(tokio::time::Instant::now)
            .elapsed()
            >= limit
        {
            return BrokerError::Stalled(limit);
        }
    }
}

/// The longest a channel waits for lapin to say it has recovered. A recovery that works takes less (the
/// default reconnect tries fit in about 30 s); one that hangs (amqp-rs/lapin#450: the connection is back
/// but a channel's recovery never reports) would otherwise leave a consumer waiting for ever. Past it the
/// serving ends with [`BrokerError::Stalled`] and the service starts again on a new connection.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(30);

/// Waits for lapin's recovery of `channel` after `error`, at most [`RECOVERY_WAIT`].
pub(crate) async fn recovered(channel: &Channel, error: lapin::Error) -> Result<(), BrokerError> {
    match tokio::time::timeout(RECOVERY_WAIT, channel.wait_for_recovery(error)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(BrokerError::Stalled(RECOVERY_WAIT)),
    }
}

/// What a quorum queue is declared with. Every queue bb2snyk owns is durable and quorum.
#[derive(Debug, Clone, Default)]
pub struct QueueSpec {
    /// Deliveries after which the broker dead-letters the message (`x-delivery-limit`).
    pub delivery_limit: Option<u32>,
    /// Where the broker sends rejected, expired or over-limit messages.
    pub dead_letter: Option<(String, String)>,
    /// `x-message-ttl`: how long a message waits before it is dead-lettered (retry tiers).
    pub message_ttl: Option<Duration>,
    /// `x-expires`: the queue goes away after this long unused (test and per-run queues).
    pub expires: Option<Duration>,
}

pub async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    spec: &QueueSpec,
) -> Result<(), BrokerError> {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    if let Some(limit) = spec.delivery_limit {
        args.insert("x-delivery-limit".into(), AMQPValue::LongUInt(limit));
    }
    if let Some((exchange, routing_key)) = &spec.dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(exchange.as_str().into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(routing_key.as_str().into()),
        );
        // Quorum queues then dead-letter with their own confirms, so nothing is lost on the way to parking.
        args.insert(
            "x-dead-letter-strategy".into(),
            AMQPValue::LongString("at-least-once".into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
    }
    if let Some(ttl) = spec.message_ttl {
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(millis(ttl)));
    }
    if let Some(expires) = spec.expires {
        args.insert("x-expires".into(), AMQPValue::LongLongInt(millis(expires)));
    }
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel.queue_declare(name.into(), options, args).await?;
    Ok(())
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A message to publish: its body and the properties every bb2snyk message carries.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub body: &'a [u8],
    /// Deterministic, so a redelivered or replayed message keeps its identity.
    pub message_id: &'a str,
    /// The run id.
    pub correlation_id: &'a str,
    /// The versioned message type, e.g. `repo.import.v1`.
    pub kind: &'a str,
    pub headers: FieldTable,
    /// Refuse it when no queue would take it. Work always is; events go to whoever is listening, if anyone.
    pub mandatory: bool,
}

/// Publishes on its own channel in confirm mode; each publish returns once the broker has the message.
#[derive(Debug, Clone)]
pub struct Publisher {
    channel: Channel,
    app_id: String,
    confirm_timeout: Duration,
}

impl Publisher {
    pub async fn new(connection: &Connection, app_id: &str) -> Result<Self, BrokerError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self {
            channel,
            app_id: app_id.to_owned(),
            confirm_timeout: Duration::from_secs(30),
        })
    }

    /// Publishes persistently with `mandatory`: an unroutable or nacked message is an error, not a loss.
    /// When the connection drops, it waits for lapin's recovery and publishes again (a duplicate at worst,
    /// which the idempotent handlers absorb).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Outgoing<'_>,
    ) -> Result<(), BrokerError> {
        let mut recoveries = 0;
        loop {
            match self.publish_once(exchange, routing_key, message).await {
                Err(BrokerError::Amqp(e)) if recoveries < 3 => {
                    recoveries += 1;
                    tracing::warn!(error = %e, "publish failed; waiting for the connection to recover");
                    recovered(&self.channel, e).await?;
                }
                other => return other,
            }
        }
    }

    async fn publish_once(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Outgoing<'_>,
    ) -> Result<(), BrokerError> {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message.message_id.into())
            .with_correlation_id(message.correlation_id.into())
            .with_type(ShortString::from(message.kind))
            .with_app_id(self.app_id.as_str().into())
            .with_headers(message.headers.clone());
        let options = BasicPublishOptions {
            mandatory: message.mandatory,
            ..BasicPublishOptions::default()
        };
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                message.body,
                properties,
            )
            .await?;
        let confirmation = tokio_timeout(self.confirm_timeout, confirm).await?;
        match confirmation? {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(_returned)) => Err(BrokerError::Unroutable {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
            }),
            Confirmation::Nack(_) => Err(BrokerError::Nacked {
                exchange: exchange.to_owned(),
            }),
            // confirm_select ran in `new`, so the broker always answers.
            Confirmation::NotRequested => Ok(()),
        }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

async fn tokio_timeout<F: std::future::IntoFuture>(
    limit: Duration,
    future: F,
) -> Result<F::Output, BrokerError> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| BrokerError::ConfirmTimeout(limit))
}
