//! Bitbucket Cloud for bb2snyk: credentials (an OAuth consumer's client_credentials tokens, cached for the
//! whole fleet in Redis; an access token; Basic auth), and the 2.0 API's workspace and repository lists,
//! paced by a fleet-wide budget, with every failure worded for the person who has to fix it.

mod branches;
mod client;
mod credentials;
mod error;
mod filter;
mod model;
mod names;
mod oauth;
mod seal;
mod tenant;
mod token;

pub use client::{Bitbucket, REPOSITORY_FIELDS, RepositoryPages};
pub use credentials::{Authorization, Configured, Credential, Fixed};
pub use error::BitbucketError;
pub use filter::{RepoFilter, Skip};
pub use model::{Page, Repository, UserWorkspace, Workspace};
pub use names::{MAX_ORG_NAME, disambiguated, org_names};
pub use oauth::{AccessToken, Consumer, DEFAULT_TOKEN_LIFETIME, exchange, exchange_patiently};
pub use tenant::{Account, Discovery, Route, Tenant};
pub use token::{TokenProvider, TokenStats};
