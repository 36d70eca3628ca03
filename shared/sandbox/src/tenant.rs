//! A deterministic Bitbucket tenant: the same knobs give the same workspaces and repositories, with the
//! details that trip clients up (slugs that differ from names, forks, empty repositories).

use serde::Serialize;
use serde_json::{Value, json};

use crate::knobs::Knobs;

/// splitmix64: tiny, seedable and good enough to shape a tenant or pick a fault.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Poison {
    /// The import POST answers 400.
    PostRejected,
    /// The import job ends `failed`.
    JobFails,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    pub slug: String,
    pub name: String,
    pub uuid: String,
    pub repos: Vec<Repo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Repo {
    pub slug: String,
    pub name: String,
    pub uuid: String,
    pub project_key: String,
    pub language: &'static str,
    pub is_private: bool,
    pub created_on: String,
    pub updated_on: String,
    /// `workspace/slug` of the parent, for forks.
    pub parent: Option<String>,
    /// `None` for empty repositories.
    pub mainbranch: Option<&'static str>,
    pub poison: Option<Poison>,
}

const TEAMS: &[&str] = &[
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell",
    "soylent",
];
const NOUNS: &[&str] = &[
    "billing", "search", "gateway", "ledger", "portal", "auth", "catalog", "mailer", "reports",
    "sync",
];
const KINDS: &[&str] = &[
    "service", "api", "web", "worker", "lib", "cli", "infra", "sdk",
];
const LANGUAGES: &[&str] = &["javascript", "python", "java", "go", "c#", "ruby", ""];
pub(crate) const BRANCHES: &[&str] = &["main", "master", "develop"];

pub fn generate(knobs: &Knobs) -> Vec<Workspace> {
    let mut rng = Rng::new(knobs.seed);
    (0..knobs.workspaces)
        .map(|w| {
            let team = TEAMS[w % TEAMS.len()];
            let slug = format!("{team}-{w:03}");
            // The first `shared_names` odd workspaces take the display name of the one before: display names
            // are not unique in Bitbucket, slugs are.
            let named = if w % 2 == 1 && w / 2 < knobs.shared_names {
                w - 1
            } else {
                w
            };
            let name = format!(
                "{} Engineering {named}",
                capitalise(TEAMS[named % TEAMS.len()])
            );
            let uuid = format!("{{{}}}", rng.uuid());
            let count = knobs.repo_count(w);
            let mut repos: Vec<Repo> = Vec::with_capacity(count);
            for r in 0..count {
                let repo = generate_repo(&mut rng, knobs, &slug, r, &repos);
                repos.push(repo);
            }
            Workspace {
                slug,
                name,
                uuid,
                repos,
            }
        })
        .collect()
}

fn generate_repo(
    rng: &mut Rng,
    knobs: &Knobs,
    workspace: &str,
    index: usize,
    earlier: &[Repo],
) -> Repo {
    let noun = NOUNS[rng.below(NOUNS.len())];
    let kind = KINDS[rng.below(KINDS.len())];
    let docs = knobs.docs_every > 0 && index % knobs.docs_every == knobs.docs_every - 1;
    let kind = if docs { "docs" } else { kind };
    let empty = rng.unit() < knobs.empty_rate;
    let fork = !earlier.is_empty() && rng.unit() < knobs.fork_rate;
    let roll = rng.unit();
    let poison = match () {
        _ if empty => None,
        _ if roll < knobs.poison_post_rate => Some(Poison::PostRejected),
        _ if roll < knobs.poison_post_rate + knobs.poison_job_rate => Some(Poison::JobFails),
        _ => None,
    };
    let created = rng.below(900) as i64;
    Repo {
        // Documentation ends with its kind, as teams name it (`billing-4-docs`).
        slug: if docs {
            format!("{noun}-{index}-docs")
        } else {
            format!("{noun}-{kind}-{index}")
        },
        name: format!("{} {} {index}", capitalise(noun), capitalise(kind)),
        uuid: format!("{{{}}}", rng.uuid()),
        project_key: format!("PRJ{}", index % 4),
        language: LANGUAGES[rng.below(LANGUAGES.len())],
        is_private: rng.unit() < 0.8,
        created_on: timestamp(created, rng.below(86_400)),
        updated_on: timestamp(created + rng.below(400) as i64, rng.below(86_400)),
        parent: fork.then(|| format!("{workspace}/{}", earlier[rng.below(earlier.len())].slug)),
        mainbranch: (!empty).then(|| BRANCHES[rng.below(BRANCHES.len())]),
        poison,
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Bitbucket's timestamp shape, `days` after 2023-01-01.
fn timestamp(days: i64, seconds: usize) -> String {
    let (y, m, d) = civil_from_days(19_358 + days);
    let (h, min, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    format!(
        "{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{:06}+00:00",
        (seconds * 7919) % 1_000_000
    )
}

/// Days since 1970-01-01 to a calendar date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl Workspace {
    /// The `/2.0/workspaces` object.
    pub fn json(&self, base: &str) -> Value {
        json!({
            "type": "workspace", "uuid": self.uuid, "slug": self.slug, "name": self.name, "is_private": true,
            "created_on": "2019-04-02T09:12:44.158240+00:00",
            "links": {
                "self": {"href": format!("{base}/2.0/workspaces/{}", self.slug)},
                "html": {"href": format!("https://bitbucket.org/{}/", self.slug)},
                "repositories": {"href": format!("{base}/2.0/repositories/{}", self.slug)},
                "projects": {"href": format!("{base}/2.0/workspaces/{}/projects", self.slug)},
            }
        })
    }

    /// The `/2.0/user/workspaces` item: nested, and without a name.
    pub fn access_json(&self, base: &str) -> Value {
        json!({
            "type": "workspace_access", "administrator": false,
            "workspace": {
                "type": "workspace_base", "uuid": self.uuid, "slug": self.slug,
                "links": {"self": {"href": format!("{base}/2.0/workspaces/{}", self.slug)}}
            }
        })
    }
}

impl Repo {
    pub fn full_name(&self, workspace: &Workspace) -> String {
        format!("{}/{}", workspace.slug, self.slug)
    }

    /// The full repository object of `/2.0/repositories/{workspace}`.
    /// Its branches: the main one, and for about a third of the repositories (by a hash of the slug, so the
    /// tenant's generation is unchanged) two release branches and a feature branch.
    pub fn branches(&self) -> Vec<String> {
        let Some(main) = self.mainbranch else {
            return Vec::new();
        };
        let mut branches = vec![main.to_owned()];
        let hash = self
            .slug
            .bytes()
            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        if hash % 3 == 0 {
            branches.extend(["release/1.0", "release/2.0", "feature/login"].map(str::to_owned));
        }
        branches
    }

    pub fn json(&self, ws: &Workspace, base: &str) -> Value {
        let full = self.full_name(ws);
        let api = format!("{base}/2.0/repositories/{full}");
        let mut repo = json!({
            "type": "repository", "uuid": self.uuid, "slug": self.slug, "name": self.name, "full_name": full,
            "is_private": self.is_private, "fork_policy": "no_public_forks", "language": self.language,
            "created_on": self.created_on, "updated_on": self.updated_on, "size": 40_960 + self.slug.len() * 1024,
            "scm": "git", "has_issues": false, "has_wiki": false, "description": "", "website": null,
            "project": {"type": "project", "key": self.project_key, "uuid": format!("{{project-{}}}", self.project_key),
                        "name": format!("Project {}", self.project_key),
                        "links": {"self": {"href": format!("{base}/2.0/workspaces/{}/projects/{}", ws.slug, self.project_key)}}},
            "workspace": {"type": "workspace", "slug": ws.slug, "name": ws.name, "uuid": ws.uuid,
                          "links": {"self": {"href": format!("{base}/2.0/workspaces/{}", ws.slug)}}},
            "owner": {"type": "team", "username": ws.slug, "display_name": ws.name, "uuid": ws.uuid},
            "links": {
                "self": {"href": api}, "html": {"href": format!("https://bitbucket.org/{full}")},
                "commits": {"href": format!("{api}/commits")}, "branches": {"href": format!("{api}/refs/branches")},
                "source": {"href": format!("{api}/src")}, "forks": {"href": format!("{api}/forks")},
                "clone": [
                    {"name": "https", "href": format!("https://bitbucket.org/{full}.git")},
                    {"name": "ssh", "href": format!("git@bitbucket.org:{full}.git")}
                ]
            }
        });
        if let Some(branch) = self.mainbranch {
            repo["mainbranch"] = json!({"type": "branch", "name": branch});
        }
        if let Some(parent) = &self.parent {
            repo["parent"] = json!({"type": "repository", "full_name": parent, "name": parent.rsplit('/').next(),
                                    "uuid": "{00000000-0000-4000-8000-00000000f0f0}",
                                    "links": {"self": {"href": format!("{base}/2.0/repositories/{parent}")}}});
        }
        repo
    }

    /// Files Snyk would find, so completed jobs list believable projects.
    pub fn manifests(&self) -> &'static [&'static str] {
        match self.language {
            "javascript" => &["package.json"],
            "python" => &["requirements.txt", "setup.py"],
            "java" => &["pom.xml"],
            "go" => &["go.mod"],
            "c#" => &["src/App/App.csproj"],
            "ruby" => &["Gemfile.lock"],
            _ => &["Dockerfile"],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_tenant() {
        let knobs = Knobs {
            workspaces: 4,
            repos_per_workspace: 30,
            ..Knobs::default()
        };
        let a = serde_json::to_string(&generate(&knobs)).expect("serialises");
        let b = serde_json::to_string(&generate(&knobs)).expect("serialises");
        assert_eq!(a, b);
        let other =
            serde_json::to_string(&generate(&Knobs { seed: 7, ..knobs })).expect("serialises");
        assert_ne!(a, other);
    }

    #[test]
    fn the_tenant_has_the_awkward_cases() {
        let knobs = Knobs {
            workspaces: 2,
            repos_per_workspace: 200,
            fork_rate: 0.2,
            empty_rate: 0.1,
            ..Knobs::default()
        };
        let tenant = generate(&knobs);
        let repos: Vec<&Repo> = tenant.iter().flat_map(|w| &w.repos).collect();
        assert!(repos.iter().all(|r| r.slug != r.name));
        assert!(tenant.iter().all(|w| w.slug != w.name));
        let forks = repos.iter().filter(|r| r.parent.is_some()).count();
        let empty = repos.iter().filter(|r| r.mainbranch.is_none()).count();
        assert!((50..110).contains(&forks), "forks: {forks}");
        assert!((20..65).contains(&empty), "empty: {empty}");
    }

    #[test]
    fn dates_are_real_calendar_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_358), (2023, 1, 1));
        assert_eq!(civil_from_days(19_417), (2023, 3, 1));
        assert_eq!(timestamp(0, 3661).get(..19), Some("2023-01-01T01:01:01"));
    }
}
