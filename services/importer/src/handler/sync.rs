//! A sync compares a workspace, as its discovery saw it, with the org in Snyk, and acts on the
//! differences: new repositories are imported; renamed ones (the same Bitbucket uuid under a new name)
//! are imported under the new name; a changed default branch is imported on the new branch and the old
//! branch's projects retired. The projects of a name the listing does not show are retired only once
//! Bitbucket answers 404 for it ([`evidence`]), and a sync that would retire much of an org stops there.
//! Retired means deactivated, or deleted with `--delete`. Only active projects are retired, so a second
//! sync finds nothing to do.

mod branches;
mod coverage;
mod evidence;
mod plan;

use bb2snyk_broker::{Outcome, Publish};
use bb2snyk_ledger::LastSync;
use bb2snyk_messages::{
    Body, Change, ChangeKind, Event, FullName, MAX_CHANGES, MAX_RETIRED, MAX_SYNC_IMPORTS,
    ProjectPolicy, ProjectsMetadata, ProjectsRetired, Reason, RetireProjects, SyncImports,
    SyncPlanned, SyncWorkspace,
};
pub use evidence::Brake;

use super::{Importer, ledger_failure, metadata, project_ids, snyk_failure};

impl Importer {
    /// Compares the workspace with the org and acts: imports and retirements as messages of their own,
    /// so each is retried and parked on its own; in a dry run, only the plan is told.
    pub(super) async fn sync(&self, s: SyncWorkspace) -> Outcome {
        // A workspace no org serves (only a report lists one) has nothing in Snyk.
        let org = match (&s.org_id, &s.integration_id) {
            (Some(org), Some(integration)) => Some((org.clone(), integration.clone())),
            (None, _) if s.sync.report => None,
            _ => {
                return Outcome::park(format!(
                    "a sync of workspace {} names no org and integration; only a report lists a workspace \
                     without an org",
                    s.workspace
                ));
            }
        };
        let org_key = s.org_id.as_deref().unwrap_or_default();
        let (seen, uuids) = match (
            self.ledger.seen(&s.run_id, org_key, &s.workspace).await,
            self.ledger.uuids(org_key).await,
        ) {
            (Ok(seen), Ok(uuids)) => (seen, uuids),
            (Err(e), _) | (_, Err(e)) => return ledger_failure(e),
        };
        let (projects, targets) = match &org {
            None => (Vec::new(), Vec::new()),
            Some((org_id, _)) => match (
                self.snyk.projects(org_id).await,
                self.snyk.targets(org_id).await,
            ) {
                (Ok(projects), Ok(targets)) => (projects, targets),
                (Err(e), _) | (_, Err(e)) => return snyk_failure(e),
            },
        };
        let plan = plan::plan(&plan::Views {
            workspace: &s.workspace,
            seen: &seen,
            uuids: &uuids,
            projects: &projects,
            targets: &targets,
            narrowed: s.narrowed,
            started: s
                .sync
                .started_ms
                .map(|at| bb2snyk_telemetry::clock::rfc3339_secs(at.get())),
        });
        let bitbucket = match &self.bitbucket {
            Some(tenant) => match tenant.client(s.credential.as_deref()) {
                Ok(client) => Some(client),
                Err(e) => return Outcome::park(e.to_string()),
            },
            None => None,
        };
        // A report changes nothing, so the brake does not stop its questions.
        let judged = match evidence::judge(
            bitbucket,
            &s.workspace,
            plan,
            self.policy.brake,
            s.sync.allow_mass_retire || s.sync.report,
        )
        .await
        {
            Ok(judged) => judged,
            Err(e) => match e.deferred() {
                Some(wait) => return Outcome::defer(wait),
                None => return Outcome::failed(e.is_transient(), e.to_string()),
            },
        };
        if s.sync.report {
            tracing::info!(workspace = %s.workspace, org = org_key, repositories = seen.len(), "coverage listed");
            return Outcome::Ack(coverage::listed(
                &s,
                &seen,
                &projects,
                &targets,
                &judged.changes,
            ));
        }
        let Some((org_id, integration_id)) = org else {
            return Outcome::ack();
        };
        // Branches the policy imports that Snyk does not have yet.
        let branches = match bitbucket {
            Some(client) => branches::missing(client, &s.workspace, &seen, &projects).await,
            None => Ok(Vec::new()),
        };
        let mut judged = match branches {
            Ok(branches) => judged.with_branches(branches),
            Err(e) => match e.deferred() {
                Some(wait) => return Outcome::defer(wait),
                None => return Outcome::failed(e.is_transient(), e.to_string()),
            },
        };
        // The policy's tags and attributes, where the org's projects differ from them.
        let metadata = metadata::out_of_step(&s.workspace, &seen, &projects);
        judged
            .changes
            .extend(metadata.iter().map(|(target, _, ids)| Change {
                kind: ChangeKind::Metadata,
                target: target.clone(),
                was: None,
                uuid: None,
                projects: plan::count(ids.len()),
            }));
        let count = |kind| plan::count(judged.changes.iter().filter(|c| c.kind == kind).count());
        let last = LastSync {
            run_id: s.run_id.to_string(),
            workspace: s.workspace.to_string(),
            at_ms: crate::schedule::now_ms(),
            dry_run: s.sync.dry_run,
            new: count(ChangeKind::New),
            renamed: count(ChangeKind::Renamed),
            branch_changed: count(ChangeKind::BranchChanged),
            deleted: count(ChangeKind::Deleted),
            braked: judged.braked.is_some(),
        };
        if let Err(e) = self.ledger.set_last_sync(&org_id, &last).await {
            return ledger_failure(e);
        }
        if !s.sync.dry_run {
            bb2snyk_telemetry::metrics::synced(last.at_ms);
        }
        tracing::info!(workspace = %s.workspace, org = %org_id, changes = judged.changes.len(), checked = judged.checked.len(), braked = judged.braked.is_some(), dry_run = s.sync.dry_run, "synced");
        let stop = s.sync.dry_run || judged.braked.is_some();
        let mut publishes = planned(&s, &judged);
        if stop {
            return Outcome::Ack(publishes);
        }
        // Imports go through the discoverer, which sends them on as the importer's queue has room, each
        // with what the policy asks for its repository.
        let policy_of: std::collections::HashMap<&str, &ProjectPolicy> = seen
            .iter()
            .filter_map(|r| Some((r.slug.as_str(), r.policy.as_ref()?)))
            .collect();
        publishes.extend(judged.imports.chunks(MAX_SYNC_IMPORTS).enumerate().map(
            |(n, targets)| {
                Body::SyncImports(SyncImports {
                    run_id: s.run_id.clone(),
                    org_id: org_id.clone(),
                    integration_id: integration_id.clone(),
                    page: plan::count(n + 1),
                    policies: targets
                        .iter()
                        .map(|t| policy_of.get(t.name.as_str()).map(|p| (*p).clone()))
                        .collect(),
                    targets: targets.to_vec(),
                })
                .publish()
            },
        ));
        for (target, policy, ids) in metadata {
            // Snyk's display names are input: one no message can carry is left for a person.
            let Ok(target) = FullName::new(target.as_str()) else {
                tracing::warn!(%target, "a target name no message can carry; its tags are not set again");
                continue;
            };
            for chunk in ids.chunks(MAX_RETIRED) {
                publishes.push(
                    Body::ProjectsMetadata(ProjectsMetadata {
                        run_id: s.run_id.clone(),
                        org_id: org_id.clone(),
                        target: target.clone(),
                        projects: project_ids(chunk),
                        policy: policy.clone(),
                    })
                    .publish(),
                );
            }
        }
        for retire in judged.retire {
            let Ok(target) = FullName::new(retire.target.as_str()) else {
                tracing::warn!(target = %retire.target, "a target name no message can carry; its projects are left");
                continue;
            };
            let reason = Reason::from_text(&retire.reason);
            for chunk in retire.projects.chunks(MAX_RETIRED) {
                publishes.push(
                    Body::RetireProjects(RetireProjects {
                        run_id: s.run_id.clone(),
                        org_id: org_id.clone(),
                        target: target.clone(),
                        projects: project_ids(chunk),
                        delete: s.sync.delete,
                        reason: reason.clone(),
                    })
                    .publish(),
                );
            }
        }
        Outcome::Ack(publishes)
    }

    /// Deactivates (or deletes) each project; done again, it changes nothing more.
    pub(super) async fn retire(&self, r: RetireProjects) -> Outcome {
        for id in &r.projects {
            let done = if r.delete {
                self.snyk.delete_project(&r.org_id, id).await
            } else {
                self.snyk.deactivate_project(&r.org_id, id).await
            };
            if let Err(e) = done {
                return snyk_failure(e);
            }
        }
        tracing::info!(target = %r.target, projects = r.projects.len(), deleted = r.delete, reason = %r.reason, "retired projects");
        Outcome::Ack(vec![
            Event::ProjectsRetired(ProjectsRetired {
                run_id: r.run_id,
                subject: r.target.to_string(),
                org_id: r.org_id,
                projects: r.projects,
                deleted: r.delete,
                reason: r.reason.to_string(),
            })
            .publish(),
        ])
    }
}

/// The `n`th part of `items`, `size` to a part.
fn part<T: Clone>(items: &[T], n: usize, size: usize) -> Vec<T> {
    items.iter().skip(n * size).take(size).cloned().collect()
}

/// The plan as `sync.planned.v1` events, in parts of at most [`MAX_CHANGES`] changes and checks each, so
/// no event of a large workspace outgrows the broker's message limit.
fn planned(s: &SyncWorkspace, judged: &evidence::Judged) -> Vec<Publish> {
    let parts = judged
        .changes
        .len()
        .max(judged.checked.len())
        .div_ceil(MAX_CHANGES)
        .max(1);
    (0..parts)
        .map(|n| {
            Event::SyncPlanned(SyncPlanned {
                run_id: s.run_id.clone(),
                subject: s.workspace.to_string(),
                org_id: s.org_id.clone(),
                dry_run: s.sync.dry_run,
                changes: part(&judged.changes, n, MAX_CHANGES),
                narrowed: s.narrowed,
                braked: judged.braked.clone(),
                checked: part(&judged.checked, n, MAX_CHANGES),
                part: plan::count(n + 1),
                parts: plan::count(parts),
            })
            .publish()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use bb2snyk_messages::{Change, Checked, Verdict};

    use super::*;

    /// 2,500 changes and 1,200 checks go out as three events of at most 1,000 each, every one whole.
    #[test]
    fn a_large_plan_goes_out_in_parts_no_larger_than_the_bound() {
        let s = SyncWorkspace {
            run_id: "r".parse().expect("a run id"),
            org_id: Some("o".parse().expect("an id")),
            integration_id: Some("i".parse().expect("an id")),
            workspace: "acme".parse().expect("an id"),
            sync: Default::default(),
            credential: None,
            narrowed: false,
        };
        let judged = evidence::Judged {
            changes: (0..2500)
                .map(|i| Change {
                    kind: ChangeKind::New,
                    target: format!("acme/repo-{i}"),
                    was: None,
                    uuid: None,
                    projects: 0,
                })
                .collect(),
            checked: (0..1200)
                .map(|i| Checked {
                    target: format!("acme/old-{i}"),
                    verdict: Verdict::Alive,
                    detail: "200".into(),
                })
                .collect(),
            ..Default::default()
        };
        let parts: Vec<SyncPlanned> = planned(&s, &judged)
            .iter()
            .map(|p| match Event::from_message(&p.message) {
                Ok(Event::SyncPlanned(e)) => e,
                other => panic!("expected sync.planned, got {other:?}"),
            })
            .collect();
        let sizes: Vec<(u32, u32, usize, usize)> = parts
            .iter()
            .map(|p| (p.part, p.parts, p.changes.len(), p.checked.len()))
            .collect();
        assert_eq!(
            sizes,
            [(1, 3, 1000, 1000), (2, 3, 1000, 200), (3, 3, 500, 0)]
        );
        let ids: std::collections::BTreeSet<String> = planned(&s, &judged)
            .into_iter()
            .map(|p| p.message.message_id)
            .collect();
        assert_eq!(ids.len(), 3, "each part has an id of its own");
    }
}
