//! The store against the real Redis on this machine (every test under its own key prefix), and against a
//! Redis of its own where a test stops the server: one test binary.

mod budget;
mod redis;

use bb2snyk_store::Store;
use secrecy::SecretString;

/// A store on `url` under `prefix`.
async fn connect(url: &SecretString, prefix: &str) -> Store {
    Store::connect(url, prefix)
        .await
        .expect("Redis is reachable")
}
