//! The `bb2snyk` binary and its commands, run as a user would; one test binary, so the helpers in
//! `common` are built and linked once.

mod cli;
mod common;
mod credentials;
mod embedded;
mod evidence;
mod fleet;
mod migrate;
mod policy;
mod record;
mod report;
mod seed;
mod sync;
