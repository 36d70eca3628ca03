//! A repository's branches, as an import policy's `branches` globs ask for them.

use reqwest::StatusCode;

use crate::{Bitbucket, BitbucketError};

impl Bitbucket {
    /// The names of a repository's branches that `globs` match, every page. Bitbucket is asked for names
    /// containing the globs' common literal start (`q=name~"release/"`), so few pages cross the wire.
    pub async fn branches(
        &self,
        workspace: &str,
        slug: &str,
        globs: &[bb2snyk_filters::Glob],
    ) -> Result<Vec<String>, BitbucketError> {
        let mut url = format!("{}/repositories/", self.api_base());
        url.extend(url::form_urlencoded::byte_serialize(workspace.as_bytes()));
        url.push('/');
        url.extend(url::form_urlencoded::byte_serialize(slug.as_bytes()));
        url.push_str("/refs/branches?pagelen=100&fields=next,values.name");
        let start = common_start(globs);
        if !start.is_empty() {
            let q = format!("name~\"{}\"", start.replace('"', ""));
            url.push_str("&q=");
            url.extend(url::form_urlencoded::byte_serialize(q.as_bytes()));
        }
        let mut set = globset::GlobSetBuilder::new();
        for glob in globs {
            set.add(glob.matcher().clone());
        }
        let set = set.build().map_err(|e| BitbucketError::Unexpected {
            status: StatusCode::OK,
            body: format!("branch globs do not compile together: {e}"),
        })?;
        let about =
            bb2snyk_http::Call::new("/repositories/{workspace}/{repo}/refs/branches", workspace);
        let branches: Vec<crate::model::Named> = self.collect(about, url).await?;
        Ok(branches
            .into_iter()
            .map(|b| b.name)
            .filter(|name| set.is_match(name))
            .collect())
    }
}

/// What every glob's name starts with before its first wildcard, in common.
fn common_start(globs: &[bb2snyk_filters::Glob]) -> String {
    let literal = |g: &bb2snyk_filters::Glob| -> String {
        g.as_str()
            .chars()
            .take_while(|c| !matches!(c, '*' | '?' | '[' | '{' | '\\'))
            .collect()
    };
    let mut starts = globs.iter().map(literal);
    let Some(first) = starts.next() else {
        return String::new();
    };
    starts.fold(first, |common, next| {
        common
            .chars()
            .zip(next.chars())
            .take_while(|(a, b)| a == b)
            .map(|(a, _)| a)
            .collect()
    })
}
