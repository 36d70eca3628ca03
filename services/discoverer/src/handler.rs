//! The discoverer's stage: a run request becomes one message per workspace (for the org-creator); a
//! workspace whose org is ready becomes its repositories, one page per delivery so none stays unacked for
//! long, each page one import message per repository and, while Bitbucket has more, a message for the next.

use bb2snyk_bitbucket::{
    BitbucketError, RepoFilter, Repository, RepositoryPages, Tenant, org_names,
};
use bb2snyk_broker::{Handler, Message, Outcome, Publish, Route};
use bb2snyk_ledger::{Ledger, LedgerError, Record, SeenRepo, State, Tally};
use bb2snyk_messages::{
    Body, CredentialId, DisplayName, Event, ImportRepo, IntegrationId, OrgId, OrgReady, PageUrl,
    RepoSkipped, ReposPage, RunRequested, SyncImports, SyncWorkspace, Target, WorkspaceDiscovered,
    WorkspaceSlug,
};
use bb2snyk_policy::{Decision, Policy};
use futures_util::future::BoxFuture;
use std::sync::Arc;

use crate::Backlog;

/// Pages of one workspace followed at most (a million repositories at 100 a page).
const MAX_PAGES: u32 = 10_000;

#[derive(Debug, Clone)]
pub struct Discoverer {
    /// Every Bitbucket credential; each workspace's messages name the one that serves it.
    pub bitbucket: Tenant,
    pub filter: RepoFilter,
    /// The import policy: skips, exclusion globs, and the tags and attributes imports carry.
    pub policy: Arc<Policy>,
    pub ledger: Ledger,
    /// Paging pauses while the importer's queue holds more than this; `None` pages as fast as Bitbucket lets.
    pub backlog: Option<Backlog>,
}

impl Handler for Discoverer {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            match Body::from_message(&message) {
                Ok(Body::RunRequested(run)) => self.workspaces(run).await,
                Ok(Body::OrgReady(org)) => self.page(org, None, 1).await,
                Ok(Body::ReposPage(p)) => self.page(p.org, Some(p.next.into()), p.page).await,
                Ok(Body::SyncImports(i)) => self.sync_imports(i).await,
                Ok(other) => Outcome::park(format!(
                    "{} does not belong on the discoverer's queue",
                    other.kind()
                )),
                Err(reason) => Outcome::park(reason),
            }
        })
    }
}

/// Passing Bitbucket failures are retried; credentials, scopes and missing workspaces are parked; a call the
/// budget had no slot for comes back when it will.
fn failure(e: BitbucketError) -> Outcome {
    match e.deferred() {
        Some(wait) => Outcome::defer(wait),
        None => Outcome::failed(e.is_transient(), e.to_string()),
    }
}

impl Discoverer {
    async fn workspaces(&self, run: RunRequested) -> Outcome {
        let discovery = match self.bitbucket.discover().await {
            Ok(d) => d,
            Err(e) => return failure(e),
        };
        for e in &discovery.failed {
            tracing::error!(run = %run.run_id, error = %e, "a Bitbucket credential was refused; its workspaces are left out of this run");
        }
        if !discovery.unseen.is_empty() {
            tracing::error!(run = %run.run_id, workspaces = ?discovery.unseen, "no Bitbucket credential sees these workspaces of bitbucket.workspaces; add a consumer for each to BITBUCKET_APP_CREDENTIALS_FILE");
        }
        let (workspaces, credentials): (Vec<_>, Vec<_>) = discovery.workspaces.into_iter().unzip();
        // A credential's id is a hash of its consumer: always a valid one, checked all the same.
        let credentials: Result<Vec<Option<CredentialId>>, String> = credentials
            .into_iter()
            .map(|c| c.map(CredentialId::new).transpose())
            .collect();
        let credentials = match credentials {
            Ok(credentials) => credentials,
            Err(e) => return Outcome::park(format!("a Bitbucket credential's id: {e}")),
        };
        tracing::info!(run = %run.run_id, workspaces = workspaces.len(), "discovered workspaces");
        // Names are made unique over the whole tenant here, where every workspace is known.
        let names = org_names(&workspaces);
        let publishes = workspaces
            .into_iter()
            .zip(names)
            .zip(credentials)
            .filter_map(|((w, name), credential)| {
                // A slug no message can carry (Bitbucket's answer is input) is said, not sent.
                let workspace = match WorkspaceSlug::new(w.slug) {
                    Ok(workspace) => workspace,
                    Err(e) => {
                        tracing::error!(run = %run.run_id, error = %e, "a workspace no message can name is left out");
                        return None;
                    }
                };
                let message = Body::WorkspaceDiscovered(WorkspaceDiscovered {
                    run_id: run.run_id.clone(),
                    group_id: run.group_id.clone(),
                    source_org_id: run.source_org_id.clone(),
                    workspace,
                    name: DisplayName::new(name).ok(),
                    filters: run.filters.clone(),
                    credential,
                    sync: run.sync.clone(),
                });
                Some(message.publish())
            })
            .collect();
        Outcome::Ack(publishes)
    }

    async fn page(&self, org: OrgReady, next: Option<String>, page: u32) -> Outcome {
        let admission = match &self.backlog {
            Some(backlog) => match backlog.admit().await {
                Some(admission) => Some(admission),
                None => {
                    tracing::debug!(workspace = %org.workspace, page, "the importer's queue is full; paging waits");
                    return Outcome::defer(backlog.pause);
                }
            },
            None => None,
        };
        if page > MAX_PAGES {
            return Outcome::park(format!(
                "workspace {} has more than {MAX_PAGES} pages of repositories; Bitbucket's paging does not end",
                org.workspace
            ));
        }
        // The run's own filters, when its request carried some, else the service's settings.
        let own = org.filters.as_ref().map(RepoFilter::new);
        let filter = own.as_ref().unwrap_or(&self.filter);
        let bitbucket = match self.bitbucket.client(org.credential.as_deref()) {
            Ok(client) => client,
            Err(e) => return failure(e),
        };
        let mut pages = match next {
            Some(url) => RepositoryPages::resume(bitbucket, &org.workspace, url),
            None => bitbucket.repositories(&org.workspace, filter),
        };
        let repos = match pages.next_page().await {
            Ok(repos) => repos.unwrap_or_default(),
            Err(e) => return failure(e),
        };
        // Kept across runs, so a later sync tells a renamed repository from a deleted one.
        let uuids: Vec<(String, String)> = repos
            .iter()
            .filter_map(|r| {
                let uuid = r.uuid.clone()?;
                Some((format!("{}/{}", org.workspace, r.slug), uuid))
            })
            .collect();
        // A workspace no org serves (a report lists those too) has no org to remember them under.
        if let Some(org_id) = &org.org_id
            && let Err(e) = self.ledger.remember_uuids(org_id, &uuids).await
        {
            return Outcome::failed(e.is_transient(), format!("ledger: {e}"));
        }
        let mut publishes: Vec<Publish> = Vec::with_capacity(repos.len() + 1);
        if org.sync.is_some() {
            if let Err(e) = self.saw(&org, filter, repos).await {
                return Outcome::failed(e.is_transient(), format!("ledger: {e}"));
            }
        } else {
            let (Some(org_id), Some(integration_id)) = (&org.org_id, &org.integration_id) else {
                return Outcome::park(format!(
                    "workspace {}'s listing names no org to import into; only a report lists a workspace \
                     without one",
                    org.workspace
                ));
            };
            let into = (org_id, integration_id);
            for repo in repos {
                let decision = self.policy.decide(&repo.facts(&org.workspace));
                let extra =
                    match extra_branches(bitbucket, &org.workspace, filter, &repo, &decision).await
                    {
                        Ok(extra) => extra,
                        Err(e) => return failure(e),
                    };
                match self
                    .accept(&org, into, filter, repo, &decision, extra)
                    .await
                {
                    Ok(more) => publishes.extend(more),
                    Err(e) => return Outcome::failed(e.is_transient(), format!("ledger: {e}")),
                }
            }
        }
        if let Some(admission) = admission {
            let imports = publishes.iter().filter(|p| matches!(p.to, Route::Queue(_)));
            admission.published(imports.count() as u64);
        }
        if let (None, Some(sync)) = (pages.next_url(), &org.sync) {
            // The whole workspace is seen: the importer compares it with the org in Snyk.
            publishes.push(
                Body::SyncWorkspace(SyncWorkspace {
                    run_id: org.run_id.clone(),
                    org_id: org.org_id.clone(),
                    integration_id: org.integration_id.clone(),
                    workspace: org.workspace.clone(),
                    sync: sync.clone(),
                    credential: org.credential.clone(),
                    narrowed: filter.query().is_some(),
                })
                .publish(),
            );
        }
        if let Some(next) = pages.next_url() {
            let next = match PageUrl::new(next) {
                Ok(next) => next,
                Err(e) => {
                    return Outcome::park(format!(
                        "Bitbucket's link to the next page of workspace {} cannot be carried: {e}",
                        org.workspace
                    ));
                }
            };
            let more = Body::ReposPage(ReposPage {
                org: org.clone(),
                next,
                page: page.saturating_add(1),
            });
            publishes.push(more.publish());
        }
        Outcome::Ack(publishes)
    }

    /// A sync's imports, sent on under the same bound as a page's: once the importer's queue has room.
    async fn sync_imports(&self, imports: SyncImports) -> Outcome {
        let admission = match &self.backlog {
            Some(backlog) => match backlog.admit().await {
                Some(admission) => Some(admission),
                None => return Outcome::defer(backlog.pause),
            },
            None => None,
        };
        let publishes: Vec<Publish> = imports
            .targets
            .into_iter()
            .map(|target| {
                Body::ImportRepo(ImportRepo {
                    run_id: imports.run_id.clone(),
                    org_id: imports.org_id.clone(),
                    integration_id: imports.integration_id.clone(),
                    target,
                    failed_jobs: 0,
                    policy: None,
                })
                .publish()
            })
            .collect();
        if let Some(admission) = admission {
            admission.published(publishes.len() as u64);
        }
        Outcome::Ack(publishes)
    }

    /// A sync's page: what it saw is kept for the comparison with Snyk; nothing is imported yet.
    async fn saw(
        &self,
        org: &OrgReady,
        filter: &RepoFilter,
        repos: Vec<Repository>,
    ) -> Result<(), LedgerError> {
        let mut seen = Vec::with_capacity(repos.len());
        for repo in repos {
            let target = match Target::new(&org.workspace, &repo.slug, repo.branch()) {
                Ok(target) => target,
                Err(e) => {
                    tracing::warn!(workspace = %org.workspace, error = %e, "a repository no message can name; left out of the sync");
                    continue;
                }
            };
            let id = bb2snyk_messages::target_id(
                org.org_id.as_deref().unwrap_or_default(),
                org.integration_id.as_deref().unwrap_or_default(),
                &target,
            );
            self.ledger
                .mark(&org.run_id, Tally::Discovered, &id)
                .await?;
            let decision = self.policy.decide(&repo.facts(&org.workspace));
            let reason = skip_reason(filter, &repo, &decision);
            seen.push(SeenRepo {
                skipped: reason.is_some(),
                reason,
                policy: applied(&decision),
                branches: decision
                    .branches
                    .iter()
                    .flatten()
                    .map(|g| g.as_str().to_owned())
                    .collect(),
                slug: repo.slug,
                branch: target.branch.map(String::from),
                uuid: repo.uuid,
            });
        }
        self.ledger
            .saw(
                &org.run_id,
                org.org_id.as_deref().unwrap_or_default(),
                &org.workspace,
                &seen,
            )
            .await
    }

    /// The import messages for `repo` (its main branch, and the `extra` branches the policy asks for), or
    /// the event that says why it is skipped (and recorded so).
    async fn accept(
        &self,
        org: &OrgReady,
        (org_id, integration_id): (&OrgId, &IntegrationId),
        filter: &RepoFilter,
        repo: Repository,
        decision: &Decision,
        extra: Vec<String>,
    ) -> Result<Vec<Publish>, LedgerError> {
        let import = |target: Target| ImportRepo {
            run_id: org.run_id.clone(),
            org_id: org_id.clone(),
            integration_id: integration_id.clone(),
            target,
            failed_jobs: 0,
            policy: applied(decision),
        };
        // A repository whose name or branch no message can carry is skipped, with the reason.
        let (main, unnamed) = match Target::new(&org.workspace, &repo.slug, repo.branch()) {
            Ok(target) => (Some(import(target)), None),
            Err(e) => (
                None,
                Some(format!("its name or branch cannot be imported: {e}")),
            ),
        };
        let id = main.as_ref().map_or_else(
            || format!("{org_id}:{integration_id}:{}:{}", repo.slug, org.workspace),
            ImportRepo::target_id,
        );
        self.ledger
            .mark(&org.run_id, Tally::Discovered, &id)
            .await?;
        let skipped = unnamed.or_else(|| skip_reason(filter, &repo, decision));
        let (Some(main), None) = (main, &skipped) else {
            let reason = skipped.unwrap_or_default();
            let record = Record {
                last_error: Some(reason.clone()),
                ..Record::new(State::Skipped, &org.run_id)
            };
            self.ledger.record(&id, &record).await?;
            return Ok(vec![
                Event::RepoSkipped(RepoSkipped {
                    run_id: org.run_id.clone(),
                    subject: id,
                    reason,
                })
                .publish(),
            ]);
        };
        let mut imports = vec![Body::ImportRepo(main).publish()];
        for branch in extra {
            let Ok(target) = Target::new(&org.workspace, &repo.slug, Some(&branch)) else {
                tracing::warn!(workspace = %org.workspace, %branch, "a branch no message can name; not imported");
                continue;
            };
            let other = import(target);
            self.ledger
                .mark(&org.run_id, Tally::Discovered, &other.target_id())
                .await?;
            imports.push(Body::ImportRepo(other).publish());
        }
        Ok(imports)
    }
}

mod decision;
use decision::{applied, extra_branches, skip_reason};

#[cfg(test)]
mod tests;
