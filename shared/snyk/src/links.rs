//! REST `links.next`, in each form Snyk answers, resolved under the configured REST base or refused.

use crate::SnykError;

/// Where a REST `links.next` leads, in each form Snyk answers: relative to the REST base (`/orgs/…`, as
/// documented), with the base's path in front (`/rest/orgs/…`), or absolute under the configured base.
/// Anything else is an error: a listing that cannot go on is never taken for a finished one.
pub(crate) fn next_url(rest_base: &str, next: &str) -> Result<String, SnykError> {
    let refused = |why| SnykError::Unfollowable {
        link: next.chars().take(200).collect(),
        why,
    };
    let url = if next.starts_with("http://") || next.starts_with("https://") {
        next.to_owned()
    } else if next.starts_with('/') && !next.starts_with("//") {
        let base = url::Url::parse(rest_base).map_err(|_| refused("the REST base is not a URL"))?;
        let root = base.path().trim_end_matches('/');
        if !root.is_empty() && (next.starts_with(&format!("{root}/")) || next == root) {
            format!(
                "{}{next}",
                rest_base.strip_suffix(root).unwrap_or(rest_base)
            )
        } else {
            format!("{rest_base}{next}")
        }
    } else {
        return Err(refused("it is neither a path nor a URL"));
    };
    if bb2snyk_http::is_within(rest_base, &url) {
        Ok(url)
    } else {
        Err(refused("it leads off the configured REST base"))
    }
}

#[cfg(test)]
mod tests {
    use super::next_url;

    #[test]
    fn next_links_are_followed_in_each_form_snyk_answers_and_refused_otherwise() {
        let base = "https://api.snyk.io/rest";
        let want = "https://api.snyk.io/rest/orgs/o/targets?version=1&starting_after=x";
        for form in [
            "/orgs/o/targets?version=1&starting_after=x",
            "/rest/orgs/o/targets?version=1&starting_after=x",
            want,
        ] {
            assert_eq!(next_url(base, form).expect(form), want, "{form}");
        }
        let local = "http://127.0.0.1:9/rest";
        assert_eq!(
            next_url(local, "/rest/orgs/o/projects?a=1").expect("prefixed"),
            "http://127.0.0.1:9/rest/orgs/o/projects?a=1"
        );
        for bad in [
            "https://evil.example/rest/orgs/o/targets",
            "http://api.snyk.io/rest/orgs/o/targets",
            "//evil.example/rest/orgs",
            "orgs/o/targets",
            "https://api.snyk.io/v1/org/o",
        ] {
            assert!(next_url(base, bad).is_err(), "{bad}");
        }
    }
}
