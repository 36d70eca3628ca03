//! The sandbox checked against `bitbucket-and-snyk-apis.md`, each side in its own module: one test binary.

mod bitbucket;
mod snyk;
