//! The parts of Bitbucket's query language, `fields=` and page-number pagination the sandbox honours.

use serde_json::{Map, Value, json};

pub const DEFAULT_PAGELEN: usize = 10;
pub const MAX_PAGELEN: usize = 100;

/// One BBQL comparison, e.g. `project.key="PRJ1"` or `updated_on>2024-01-01`.
#[derive(Debug, PartialEq)]
struct Clause {
    field: String,
    op: &'static str,
    value: String,
}

/// A parsed `q=`: clauses joined by AND.
#[derive(Debug, Default, PartialEq)]
pub struct Filter(Vec<Clause>);

impl Filter {
    pub fn parse(q: &str) -> Result<Self, String> {
        let mut clauses = Vec::new();
        for part in split_and(q) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (field, op, rest) = ["!=", ">=", "<=", "=", "~", ">", "<"]
                .iter()
                .find_map(|op| part.split_once(op).map(|(f, r)| (f.trim(), *op, r.trim())))
                .ok_or_else(|| format!("Invalid query: {part}"))?;
            if field.is_empty()
                || !field
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
            {
                return Err(format!("Invalid field name: {field}"));
            }
            let value = match rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
                Some(quoted) => quoted.to_owned(),
                None => rest.to_owned(),
            };
            clauses.push(Clause {
                field: field.to_owned(),
                op,
                value,
            });
        }
        Ok(Self(clauses))
    }

    pub fn matches(&self, item: &Value) -> bool {
        self.0.iter().all(|c| {
            let actual = match lookup(item, &c.field) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => return c.op == "!=" && c.value != "null",
                Some(other) => other.to_string(),
            };
            match c.op {
                "=" => actual == c.value,
                "!=" => actual != c.value,
                "~" => actual.to_lowercase().contains(&c.value.to_lowercase()),
                ">" => actual.as_str() > c.value.as_str(),
                ">=" => actual.as_str() >= c.value.as_str(),
                "<" => actual.as_str() < c.value.as_str(),
                "<=" => actual.as_str() <= c.value.as_str(),
                _ => false,
            }
        })
    }
}

/// Splits on ` AND ` outside quotes, any case.
fn split_and(q: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quoted = false;
    let mut rest = q;
    while let Some(c) = rest.chars().next() {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted
            && rest
                .get(..5)
                .is_some_and(|s| s.eq_ignore_ascii_case(" and "))
        {
            parts.push(String::new());
            rest = &rest[5..];
            continue;
        }
        if let Some(last) = parts.last_mut() {
            last.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    parts
}

pub fn lookup<'v>(item: &'v Value, dotted: &str) -> Option<&'v Value> {
    dotted.split('.').try_fold(item, |v, key| v.get(key))
}

/// Sorts by one field; a leading `-` reverses.
pub fn sort(items: &mut [Value], by: &str) {
    let (field, descending) = match by.strip_prefix('-') {
        Some(f) => (f, true),
        None => (by, false),
    };
    items.sort_by(|a, b| {
        let key = |v: &Value| {
            lookup(v, field).map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
        };
        let ordering = key(a).cmp(&key(b));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
}

/// Keeps only the listed dotted paths (`fields=next,values.slug`); `values.x` applies to each value.
pub fn project(page: &Value, fields: &str) -> Value {
    let mut out = Value::Object(Map::new());
    for path in fields.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        copy_path(page, &mut out, &path.split('.').collect::<Vec<_>>());
    }
    out
}

fn copy_path(from: &Value, to: &mut Value, path: &[&str]) {
    let Some((head, rest)) = path.split_first() else {
        return;
    };
    if *head == "*" {
        if let Value::Object(map) = from {
            for key in map.keys() {
                let mut p = vec![key.as_str()];
                p.extend_from_slice(rest);
                copy_path(from, to, &p);
            }
        }
        return;
    }
    let Some(value) = from.get(head) else { return };
    let Value::Object(target) = to else { return };
    if rest.is_empty() {
        target.insert((*head).to_owned(), value.clone());
        return;
    }
    match value {
        Value::Array(items) => {
            let slot = target
                .entry((*head).to_owned())
                .or_insert_with(|| json!(vec![json!({}); items.len()]));
            if let Value::Array(slots) = slot {
                for (item, slot) in items.iter().zip(slots.iter_mut()) {
                    copy_path(item, slot, rest);
                }
            }
        }
        Value::Object(_) => {
            let slot = target
                .entry((*head).to_owned())
                .or_insert_with(|| json!({}));
            copy_path(value, slot, rest);
        }
        _ => {}
    }
}

/// A page of `items` in Bitbucket's envelope, with `next` as the same URL with `page=N+1`.
pub fn page(items: Vec<Value>, page: usize, pagelen: usize, url_without_page: &str) -> Value {
    let size = items.len();
    let start = (page - 1).saturating_mul(pagelen).min(size);
    let end = start.saturating_add(pagelen).min(size);
    let values: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();
    let mut body = json!({"pagelen": pagelen, "page": page, "size": size, "values": values});
    let joiner = if url_without_page.contains('?') {
        '&'
    } else {
        '?'
    };
    if end < size {
        body["next"] = json!(format!("{url_without_page}{joiner}page={}", page + 1));
    }
    if page > 1 {
        body["previous"] = json!(format!("{url_without_page}{joiner}page={}", page - 1));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(key: &str, name: &str, updated: &str) -> Value {
        json!({"slug": name, "name": name, "updated_on": updated, "project": {"key": key}, "is_private": true})
    }

    #[test]
    fn bbql_filters_like_bitbucket() {
        let items = [
            repo("A", "billing-api", "2024-05-01"),
            repo("B", "search-web", "2023-01-01"),
        ];
        let keep = |q: &str| {
            let f = Filter::parse(q).expect("parses");
            items
                .iter()
                .filter(|i| f.matches(i))
                .map(|i| i["slug"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(keep(r#"project.key="A""#), ["billing-api"]);
        assert_eq!(keep(r#"name~"WEB""#), ["search-web"]);
        assert_eq!(keep("updated_on>2024-01-01"), ["billing-api"]);
        assert_eq!(
            keep(r#"project.key="B" AND is_private=true"#),
            ["search-web"]
        );
        assert_eq!(keep(r#"name~"and""#).len(), 0);
        assert!(Filter::parse("what is this").is_err());
    }

    #[test]
    fn fields_keep_only_what_was_asked() {
        let page =
            json!({"next": "n", "size": 2, "values": [repo("A", "a", "x"), repo("B", "b", "y")]});
        let projected = project(&page, "next,values.slug,values.project.key");
        assert_eq!(
            projected,
            json!({"next": "n", "values": [{"slug": "a", "project": {"key": "A"}}, {"slug": "b", "project": {"key": "B"}}]})
        );
    }

    #[test]
    fn pages_link_forward_and_back() {
        let items: Vec<Value> = (0..25).map(|i| json!(i)).collect();
        let first = page(
            items.clone(),
            1,
            10,
            "http://h/2.0/repositories/ws?pagelen=10",
        );
        assert_eq!(
            first["next"],
            "http://h/2.0/repositories/ws?pagelen=10&page=2"
        );
        assert!(first.get("previous").is_none());
        let last = page(items, 3, 10, "http://h/x");
        assert_eq!(last["values"].as_array().map(Vec::len), Some(5));
        assert!(last.get("next").is_none());
        assert_eq!(last["previous"], "http://h/x?page=2");
    }
}
