//! An in-process broker with the same rules as RabbitMQ's topology: work queues, retry tiers (timers),
//! parking queues. `bb2snyk run` and handler tests use it; nothing survives the process.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicUsize, Ordering},
    },
};

use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{Handler, Message, RetryPolicy, Settlement};

#[derive(Debug, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    policy: RetryPolicy,
    queues: Mutex<HashMap<String, Queue>>,
    /// Messages sent and not yet settled, waiting in a tier included: zero means the pipeline is idle.
    pending: AtomicUsize,
    idle: Notify,
    /// Events with their routing keys, oldest first, for the caller to read.
    events: Mutex<Vec<(Message, String)>>,
}

#[derive(Debug)]
struct Queue {
    /// Messages sent and not yet taken by a consumer.
    waiting: Arc<AtomicUsize>,
    sender: mpsc::UnboundedSender<Message>,
    receiver: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Message>>>,
    parked: Vec<(Message, String)>,
}

impl Queue {
    fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            waiting: Arc::default(),
            sender,
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            parked: Vec::new(),
        }
    }
}

impl MemoryBroker {
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                policy,
                queues: Mutex::new(HashMap::new()),
                pending: AtomicUsize::new(0),
                idle: Notify::new(),
                events: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Sends a message to a work queue.
    pub fn publish(&self, queue: &str, message: Message) {
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        self.inner.send(queue, message);
    }

    /// Messages parked on `queue`, with their reasons.
    pub fn parked(&self, queue: &str) -> Vec<(Message, String)> {
        self.inner
            .lock()
            .get(queue)
            .map(|q| q.parked.clone())
            .unwrap_or_default()
    }

    /// Every event so far, with its routing key, oldest first.
    pub fn events(&self) -> Vec<(Message, String)> {
        self.inner
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the events heard since the last call, oldest first.
    pub fn take_events(&self) -> Vec<(Message, String)> {
        std::mem::take(
            &mut *self
                .inner
                .events
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Moves every parked message of `queue` back to it, attempts reset; returns how many moved.
    pub fn replay(&self, queue: &str) -> usize {
        let parked = self
            .inner
            .lock()
            .get_mut(queue)
            .map(|q| std::mem::take(&mut q.parked))
            .unwrap_or_default();
        let moved = parked.len();
        for (message, _) in parked {
            self.publish(
                queue,
                Message {
                    attempt: 0,
                    ..message
                },
            );
        }
        moved
    }

    /// Resolves once every message sent has been settled and no retry is waiting.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.pending.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Runs `handler` on `queue`, `concurrency` deliveries at a time, until `shutdown`; in-flight handlers
    /// finish before it returns.
    pub async fn serve(
        &self,
        queue: &str,
        handler: Arc<dyn Handler>,
        concurrency: usize,
        shutdown: CancellationToken,
    ) {
        let (receiver, waiting) = {
            let mut queues = self.inner.lock();
            let q = queues.entry(queue.to_owned()).or_insert_with(Queue::new);
            (q.receiver.clone(), q.waiting.clone())
        };
        let slots = Arc::new(Semaphore::new(concurrency.max(1)));
        let tracker = TaskTracker::new();
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let message = tokio::select! {
                _ = shutdown.cancelled() => break,
                message = async { receiver.lock().await.recv().await } => message,
            };
            let Some(message) = message else { break };
            waiting.fetch_sub(1, Ordering::SeqCst);
            let inner = self.inner.clone();
            let handler = handler.clone();
            let queue = queue.to_owned();
            tracker.spawn(async move {
                for settlement in
                    crate::settle::handle(&inner.policy, &queue, &handler, &message).await
                {
                    inner.apply(settlement);
                }
                inner.settled();
                drop(permit);
            });
        }
        tracker.close();
        tracker.wait().await;
    }
}

impl MemoryBroker {
    /// Messages sent to work queue `queue` and not yet taken by a consumer.
    pub fn waiting(&self, queue: &str) -> u64 {
        self.inner
            .lock()
            .get(queue)
            .map_or(0, |q| q.waiting.load(Ordering::SeqCst) as u64)
    }
}

impl crate::Broker for MemoryBroker {
    fn waiting<'a>(&'a self, queue: &'a str) -> futures_util::future::BoxFuture<'a, Option<u64>> {
        let waiting = MemoryBroker::waiting(self, queue);
        Box::pin(async move { Some(waiting) })
    }

    fn publish<'a>(
        &'a self,
        queue: &'a str,
        message: &'a Message,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::BrokerError>> {
        MemoryBroker::publish(self, queue, message.clone());
        Box::pin(async { Ok(()) })
    }

    /// Memory has nothing to drain to: in-flight handlers always finish.
    fn serve<'a>(
        &'a self,
        queue: &'a str,
        handler: Arc<dyn Handler>,
        concurrency: u16,
        shutdown: CancellationToken,
        _drain: std::time::Duration,
    ) -> futures_util::future::BoxFuture<'a, Result<(), crate::BrokerError>> {
        Box::pin(async move {
            MemoryBroker::serve(self, queue, handler, usize::from(concurrency), shutdown).await;
            Ok(())
        })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queue>> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, queue: &str, message: Message) {
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_insert_with(Queue::new);
        q.waiting.fetch_add(1, Ordering::SeqCst);
        // The receiver lives in the map as long as the sender, so this cannot fail.
        let _ = q.sender.send(message);
    }

    fn apply(self: &Arc<Self>, settlement: Settlement) {
        match settlement {
            Settlement::Work { queue, message } => {
                self.pending.fetch_add(1, Ordering::SeqCst);
                self.send(&queue, message);
            }
            Settlement::Later { .. } | Settlement::Delayed { .. } => {
                let (queue, message, wait) = match settlement {
                    Settlement::Later {
                        queue,
                        tier,
                        message,
                    } => (queue, message, self.policy.tiers.get(tier).copied()),
                    Settlement::Delayed {
                        queue,
                        index,
                        message,
                    } => (queue, message, crate::DELAYS.get(index).copied()),
                    _ => unreachable!("matched above"),
                };
                let wait = wait.unwrap_or_default();
                self.pending.fetch_add(1, Ordering::SeqCst);
                let inner = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(wait).await;
                    inner.send(&queue, message);
                });
            }
            Settlement::Event {
                routing_key,
                message,
            } => {
                tracing::debug!(%routing_key, "event");
                self.events
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((message, routing_key));
            }
            Settlement::Parked {
                queue,
                message,
                reason,
            } => {
                // The command running this broker reports what was parked itself, in its summary.
                tracing::info!(%queue, message_id = %message.message_id, %reason, "parked");
                self.lock()
                    .entry(queue)
                    .or_insert_with(Queue::new)
                    .parked
                    .push((message, reason));
            }
        }
    }

    fn settled(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}
