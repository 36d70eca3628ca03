//! A Bitbucket that misbehaves: lists that never end, answers too large to read. The client stops, with a
//! reason, instead of looping or buffering without bound; a repository walk that cannot go on is an error,
//! never a finished listing (a sync would take what it did not read for deleted).

use bb2snyk_bitbucket::{Bitbucket, BitbucketError};
use bb2snyk_sandbox::{Knobs, Sandbox};

fn client(sandbox: &Sandbox) -> Bitbucket {
    let settings = crate::settings(sandbox, &[]);
    Bitbucket::from_settings(&settings, reqwest::Client::new(), None).expect("credentials")
}

#[tokio::test]
async fn a_list_whose_next_is_itself_stops_and_a_repository_walk_says_it_is_incomplete() {
    let sandbox = Sandbox::start(Knobs {
        workspaces: 3,
        repos_per_workspace: 150,
        loop_pages: true,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    let bitbucket = client(&sandbox);
    let workspaces = bitbucket.workspaces().await.expect("workspaces");
    assert_eq!(workspaces.len(), 3, "the one page there is");
    let mut pages = bitbucket.repositories(&workspaces[0].slug, &Default::default());
    match pages.next_page().await {
        Err(BitbucketError::RepeatedPage(_)) => {}
        other => panic!("a page naming itself as next is an error, got {other:?}"),
    }
    assert!(pages.next_url().is_some(), "the walk is not finished");
    let requests = sandbox.stats().requests_total;
    assert!(requests < 10, "{requests} requests: it did not loop");
}

#[tokio::test]
async fn an_answer_too_large_is_refused_unread() {
    let sandbox = Sandbox::start(Knobs {
        padding_bytes: bb2snyk_http::MAX_BODY + 1,
        ..Knobs::default()
    })
    .await
    .expect("sandbox");
    match client(&sandbox).workspaces().await {
        Err(BitbucketError::Unexpected { body, .. }) => {
            assert!(body.contains("not read"), "{body}")
        }
        other => panic!("expected the answer refused, got {other:?}"),
    }
}
