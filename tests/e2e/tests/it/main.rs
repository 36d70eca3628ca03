//! End-to-end: the services on real RabbitMQ and Redis against the sandbox, their endpoints, the
//! deployment files; one test binary over the shared helpers of `bb2snyk_e2e`.

mod deployment;
mod endpoints;
mod hostile;
mod links;
mod pipeline;
