//! Both transports, the RabbitMQ one on the real broker; one test binary sharing the test stage in
//! `common`.

mod common;
mod memory;
mod pipeline;
mod rabbitmq;
