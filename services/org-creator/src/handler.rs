//! The org-creator's stage: one Snyk org per workspace, never two. The ledger maps the workspace to its
//! org once made; until then a Redis lock per group and workspace keeps concurrent deliveries from creating
//! it twice, and an org of the same name already in the group is reused.

use std::time::Duration;

use bb2snyk_broker::{Handler, Message, Outcome};
use bb2snyk_ledger::{Ledger, OrgMapping, Tally};
use bb2snyk_messages::{
    Body, Change, ChangeKind, Event, IntegrationId, OrgId, OrgReady, OrgReadyEvent, SyncPlanned,
    WorkspaceDiscovered,
};
use bb2snyk_snyk::{Client as Snyk, SnykError, quiet_notifications};
use futures_util::future::BoxFuture;

/// A crashed holder's lock expires after this; a live holder's is renewed for as long as it works.
const LOCK_TTL: Duration = Duration::from_secs(120);

#[derive(Debug, Clone)]
pub struct OrgCreator {
    pub snyk: Snyk,
    pub ledger: Ledger,
    /// Where orgs list the Bitbucket Cloud App; `None` tries the known keys.
    pub integration_type: Option<String>,
    pub quiet_notifications: bool,
}

impl Handler for OrgCreator {
    fn handle(&self, message: Message) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            match Body::from_message(&message) {
                Ok(Body::WorkspaceDiscovered(w)) => self.ensure(w).await,
                Ok(other) => Outcome::park(format!(
                    "{} does not belong on the org-creator's queue",
                    other.kind()
                )),
                Err(reason) => Outcome::park(reason),
            }
        })
    }
}

impl OrgCreator {
    /// The workspace's org with its App integration, found as a run finds it or created, for a command
    /// that needs it outside the pipeline (`migrate:legacy`, one process: no lock is needed); the error
    /// says why no org can serve the workspace, or what failed.
    pub async fn org_for(&self, w: &WorkspaceDiscovered) -> Result<OrgMapping, String> {
        match self.ledger.org(&w.group_id, &w.workspace).await {
            Ok(Some(mapping)) => return Ok(mapping),
            Ok(None) => {}
            Err(e) => return Err(format!("ledger: {e}")),
        }
        let mapping = match self.find_or_create(w).await {
            Ok(Ok(mapping)) => mapping,
            Ok(Err(Outcome::Park { reason } | Outcome::Retry { reason })) => return Err(reason),
            Ok(Err(_)) => return Err(format!("no org serves workspace {}", w.workspace)),
            Err(e) => return Err(e.to_string()),
        };
        self.ledger
            .set_org(&w.group_id, &w.workspace, &mapping)
            .await
            .map_err(|e| format!("ledger: {e}"))?;
        Ok(mapping)
    }

    async fn ensure(&self, w: WorkspaceDiscovered) -> Outcome {
        match self.ledger.org(&w.group_id, &w.workspace).await {
            Ok(Some(mapping)) => return self.ready(&w, mapping).await,
            Ok(None) => {}
            Err(e) => return Outcome::failed(e.is_transient(), format!("ledger: {e}")),
        }
        let lock = format!("org-lock:{}:{}", w.group_id, w.workspace);
        let lock = match self.ledger.store().lock(&lock, LOCK_TTL).await {
            Ok(Some(lock)) => lock,
            // Another delivery is ensuring this org: come back through the shortest retry tier, spending no
            // attempt, and find its mapping then.
            Ok(None) => {
                return Outcome::Ack(vec![
                    Body::WorkspaceDiscovered(w).publish_after(Duration::ZERO),
                ]);
            }
            Err(e) => return Outcome::retry(format!("Redis: {e}")),
        };
        let outcome = match self.find_or_create(&w).await {
            // Only the lock's holder records the org: one whose lock lapsed (a long pause, Redis away)
            // comes back and finds what the new holder recorded, or the org by name.
            Ok(Ok(mapping)) => match lock.confirm().await {
                Ok(true) => match self
                    .ledger
                    .set_org(&w.group_id, &w.workspace, &mapping)
                    .await
                {
                    Ok(()) => self.ready(&w, mapping).await,
                    Err(e) => Outcome::failed(e.is_transient(), format!("ledger: {e}")),
                },
                Ok(false) => Outcome::retry(format!(
                    "the org lock of workspace {} lapsed before its org was recorded; another delivery holds it",
                    w.workspace
                )),
                Err(e) => Outcome::retry(format!("Redis: {e}")),
            },
            Ok(Err(parked)) => parked,
            Err(e) => match e.deferred() {
                Some(wait) => Outcome::defer(wait),
                None => Outcome::failed(e.is_transient(), e.to_string()),
            },
        };
        if let Err(e) = lock.release().await {
            tracing::debug!(error = %e, "org lock left to expire");
        }
        outcome
    }

    /// The org's mapping, or the outcome to park with when the app is not connected to it.
    async fn find_or_create(
        &self,
        w: &WorkspaceDiscovered,
    ) -> Result<Result<OrgMapping, Outcome>, SnykError> {
        let mut name: String = w
            .name
            .as_ref()
            .map_or_else(|| w.workspace.to_string(), ToString::to_string);
        // The org of that name (snyk-api-import's, or ours), else one named after the slug (bb2snyk's
        // naming before display names).
        let orgs = self.snyk.group_orgs(&w.group_id).await?;
        let mut existing = orgs
            .iter()
            .find(|o| o.name == name)
            .or_else(|| orgs.iter().find(|o| o.name == w.workspace))
            .cloned();
        // An org serves one workspace: one that holds another's repositories is not this one's, whatever
        // its name (it would show this workspace's private repositories to that workspace's team).
        if let Some(org) = &existing
            && let Some(other) = self.other_workspace(&org.id, &w.workspace).await?
        {
            let own = bb2snyk_bitbucket::disambiguated(&name, &w.workspace);
            tracing::warn!(workspace = %w.workspace, org = %org.id, org_name = %org.name, %other, %own, "an org of this workspace's name serves another workspace; this one gets its own");
            existing = orgs.iter().find(|o| o.name == own).cloned();
            if let Some(org) = &existing
                && let Some(other) = self.other_workspace(&org.id, &w.workspace).await?
            {
                return Ok(Err(Outcome::park(format!(
                    "the Snyk orgs named {name:?} and {own:?} both hold repositories of another workspace ({other}); \
                     rename one of them, or map workspace {} to an org in the ledger, then replay this message",
                    w.workspace
                ))));
            }
            name = own;
        }
        let (org_id, created) = match existing {
            Some(org) => (org.id, false),
            // A report lists a workspace no org serves too: each of its repositories is missing from Snyk.
            None if w.sync.as_ref().is_some_and(|s| s.report) => {
                let all_orgs = w.sync.as_ref().is_some_and(|s| s.org_id.is_none());
                let listed = all_orgs.then(|| org_ready(w, None, None).publish());
                return Ok(Err(Outcome::Ack(listed.into_iter().collect())));
            }
            // A sync keeps the orgs bb2snyk manages in step; making orgs for new workspaces is a run's work.
            None if w.sync.is_some() => {
                tracing::info!(workspace = %w.workspace, "no org for this workspace: a sync leaves it to `bb2snyk run`");
                let unmanaged = Event::SyncPlanned(SyncPlanned {
                    run_id: w.run_id.clone(),
                    subject: w.workspace.to_string(),
                    org_id: None,
                    dry_run: w.sync.as_ref().is_some_and(|s| s.dry_run),
                    changes: vec![Change {
                        kind: ChangeKind::Unmanaged,
                        target: w.workspace.to_string(),
                        was: None,
                        uuid: None,
                        projects: 0,
                    }],
                    narrowed: false,
                    braked: None,
                    checked: Vec::new(),
                    part: 1,
                    parts: 1,
                });
                return Ok(Err(Outcome::Ack(vec![unmanaged.publish()])));
            }
            None => {
                let org = self
                    .snyk
                    .create_org_once(&name, &w.group_id, w.source_org_id.as_deref(), &[])
                    .await?;
                tracing::info!(workspace = %w.workspace, org = %org.id, %name, "created Snyk org");
                (org.id, true)
            }
        };
        let Some(integration_id) = self
            .snyk
            .app_integration(&org_id, self.integration_type.as_deref())
            .await?
        else {
            return Ok(Err(Outcome::park(format!(
                "Snyk org {name:?} ({org_id}) has no Bitbucket Cloud App integration: connect the Snyk Bitbucket \
                 Cloud App to workspace {} for that org, then replay this message (bb2snyk replay)",
                w.workspace
            ))));
        };
        if created && self.quiet_notifications {
            self.snyk
                .set_notification_settings(&org_id, &quiet_notifications())
                .await?;
        }
        Ok(Ok(OrgMapping {
            org_id,
            integration_id,
            name,
        }))
    }

    /// Another workspace whose Bitbucket repositories the org holds projects of, if any.
    async fn other_workspace(
        &self,
        org_id: &str,
        workspace: &str,
    ) -> Result<Option<String>, SnykError> {
        Ok(self.snyk.projects(org_id).await?.into_iter().find_map(|p| {
            let owner = p.display_name.split('/').next().unwrap_or_default();
            (owner != workspace).then(|| owner.to_owned())
        }))
    }

    async fn ready(&self, w: &WorkspaceDiscovered, mapping: OrgMapping) -> Outcome {
        // A sync of one org (`--orgId`) leaves the others be.
        if let Some(only) = w.sync.as_ref().and_then(|s| s.org_id.as_deref())
            && only != mapping.org_id
        {
            return Outcome::ack();
        }
        if let Err(e) = self.ledger.mark(&w.run_id, Tally::Orgs, &w.workspace).await {
            return Outcome::failed(e.is_transient(), format!("ledger: {e}"));
        }
        // Snyk's answer or the ledger named them: ids are checked before they go on the wire.
        let (org_id, integration_id) = match (
            OrgId::new(mapping.org_id),
            IntegrationId::new(mapping.integration_id),
        ) {
            (Ok(org), Ok(integration)) => (org, integration),
            (Err(e), _) | (_, Err(e)) => {
                return Outcome::park(format!(
                    "the org of workspace {} has an id bb2snyk cannot use ({e}); check the org in Snyk and \
                     the workspace's mapping in the ledger",
                    w.workspace
                ));
            }
        };
        let event = Event::OrgReady(OrgReadyEvent {
            run_id: w.run_id.clone(),
            subject: w.workspace.to_string(),
            org_id: org_id.clone(),
            org_name: mapping.name,
        });
        let ready = org_ready(w, Some(org_id), Some(integration_id));
        Outcome::Ack(vec![ready.publish(), event.publish()])
    }
}

/// The workspace's listing, sent to the discoverer for its org.
fn org_ready(
    w: &WorkspaceDiscovered,
    org_id: Option<OrgId>,
    integration_id: Option<IntegrationId>,
) -> Body {
    Body::OrgReady(OrgReady {
        run_id: w.run_id.clone(),
        group_id: w.group_id.clone(),
        workspace: w.workspace.clone(),
        org_id,
        integration_id,
        filters: w.filters.clone(),
        credential: w.credential.clone(),
        sync: w.sync.clone(),
    })
}

#[cfg(test)]
mod tests;
