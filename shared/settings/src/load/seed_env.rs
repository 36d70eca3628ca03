//! snyk-api-import's variables (`SNYK_TOKEN`, `BITBUCKET_APP_CLIENT_ID`, ...) as a settings source, so its
//! users' environment works unchanged.

use std::collections::HashMap;

use config::{Map, Source, Value, ValueKind};

use crate::keys::KEYS;

/// snyk-api-import's variables, mapped onto our keys.
#[derive(Debug, Clone)]
pub(super) struct SeedEnv(Map<String, Value>);

impl SeedEnv {
    pub(super) fn new(env: &HashMap<String, String>) -> Self {
        let origin = "environment".to_owned();
        let map = KEYS
            .iter()
            .filter_map(|k| {
                let value = env.get(k.env?)?;
                Some((
                    k.path.to_owned(),
                    Value::new(Some(&origin), ValueKind::String(value.clone())),
                ))
            })
            .collect();
        Self(map)
    }
}

impl Source for SeedEnv {
    fn clone_into_box(&self) -> Box<dyn Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        // config expects nested tables, so "snyk.token" becomes {snyk: {token: ..}}.
        let mut root: Map<String, Value> = Map::new();
        for (path, value) in &self.0 {
            let (section, name) = path.split_once('.').unwrap_or((path.as_str(), ""));
            let entry = root
                .entry(section.to_owned())
                .or_insert_with(|| Value::new(None, ValueKind::Table(Map::new())));
            if let ValueKind::Table(table) = &mut entry.kind {
                table.insert(name.to_owned(), value.clone());
            }
        }
        Ok(root)
    }
}
