use super::*;
use bb2snyk_messages::Target;

fn poll(org: &str, name: &str, requested_ms: u64, due_ms: u64) -> PollImport {
    PollImport {
        import: ImportRepo {
            run_id: "r".parse().expect("a run id"),
            org_id: org.parse().expect("an org id"),
            integration_id: "i".parse().expect("an id"),
            target: Target {
                owner: "acme".parse().expect("an id"),
                name: name.parse().expect("a slug"),
                branch: None,
            },
            failed_jobs: 0,
            policy: None,
        },
        job_url: format!("https://api.snyk.io/v1/job/{name}")
            .parse()
            .expect("a job URL"),
        polls: 0,
        requested_ms: Some(bb2snyk_messages::UnixMs(requested_ms)),
        not_before_ms: Some(bb2snyk_messages::UnixMs(due_ms)),
        hinted: false,
    }
}

/// Hints that have seen `n` jobs done at each of `ages_secs`.
fn seen(ages_secs: impl IntoIterator<Item = u64>) -> Hints {
    let hints = Hints::new(4);
    for age in ages_secs {
        hints.seen_done(Duration::from_secs(age));
    }
    hints
}

#[test]
fn the_durations_tell_the_share_of_jobs_done_by_an_age() {
    let mut durations = Durations::default();
    for s in 1..=60 {
        durations.add(Duration::from_secs(s));
    }
    let cdf = durations.cdf();
    let (at_0, at_15, at_30, at_59, at_90) = (
        cdf.share_within(0),
        cdf.share_within(15_000),
        cdf.share_within(30_000),
        cdf.share_within(59_000),
        cdf.share_within(90_000),
    );
    assert!(at_0 < 0.01, "{at_0}");
    assert!((0.15..0.35).contains(&at_15), "{at_15}");
    assert!((0.4..0.6).contains(&at_30), "{at_30}");
    assert!(at_59 > 0.9, "{at_59}");
    assert!((at_90 - 1.0).abs() < 1e-9, "{at_90}");
    assert!(at_15 < at_30 && at_30 < at_59);
}

#[test]
fn jobs_of_one_length_polled_as_they_end_are_never_worth_a_listing() {
    let hints = seen(std::iter::repeat_n(5, 100));
    // Each job's own first poll comes 5.75 s after its request: within WORTH of its end.
    for n in 0..40u64 {
        hints.follow(&poll(
            "org",
            &format!("r{n}"),
            100_000 + n * 100,
            105_750 + n * 100,
        ));
    }
    for now in (100_000..120_000).step_by(250) {
        assert!(hints.due(now).is_empty(), "listed at {now}");
    }
}

#[test]
fn an_org_is_listed_once_enough_of_its_jobs_are_expected_done_and_only_they_are_hinted() {
    // Jobs of 1 to 60 s, whose own first polls wait for the 90th percentile (about a minute).
    let hints = seen((1..=60).cycle().take(600));
    for n in 0..40u64 {
        hints.follow(&poll("org", &format!("r{n}"), 1_000_000, 1_060_000));
    }
    // A job whose own poll comes within WORTH of each look below: never worth a listing.
    hints.follow(&poll("other", "x", 1_000_000, 1_011_000));
    // A second on, about one job in sixty of forty is expected done: not worth a request.
    assert!(hints.due(1_001_000).is_empty());
    // Ten seconds on, about a sixth of them are: the org is listed, from before its oldest job.
    let due = hints.due(1_010_000);
    assert!(
        matches!(&due[..], [Listing { org, since_ms: 880_000, expected, by_prior: false, .. }] if org == "org" && *expected >= 4.0),
        "{due:?}"
    );

    // Snyk's new targets name two followed jobs and one this importer does not follow.
    let names = [
        "acme/r3".to_owned(),
        "acme/r7".to_owned(),
        "acme/gone".to_owned(),
    ];
    let polls = hints.take("org", &names, false);
    assert_eq!(polls.len(), 2);
    // Listed just now: not again until more are expected done since.
    assert!(hints.due(1_011_500).is_empty());
    assert!(polls.iter().all(|p| p.hinted && p.import.org_id == "org"));
    assert_eq!(hints.followed(), 39, "the hinted are no longer followed");
    assert!(
        hints.take("org", &names, false).is_empty(),
        "one hint per job"
    );

    hints.forget(&poll("org", "r0", 0, 0).import);
    assert_eq!(hints.followed(), 38);
}

#[test]
fn before_twenty_jobs_are_seen_listings_expect_jobs_of_a_second_to_a_minute() {
    // No job seen done yet (a run's first seconds, or a small tenant's whole run): the prior expects.
    let fresh = Hints::new(4);
    for n in 0..40u64 {
        fresh.follow(&poll("org", &format!("r{n}"), 1_000_000, 1_060_000));
    }
    assert!(fresh.due(1_000_800).is_empty(), "no job of under a second");
    let due = fresh.due(1_003_000);
    assert!(
        matches!(&due[..], [Listing { org, by_prior: true, expected, .. }] if org == "org" && *expected >= 4.0),
        "about a quarter of jobs of a second to a minute end within 3 s: {due:?}"
    );
    // It told of none, yet the org is listed again 1.5 s on (not after a doubled interval, 2 s): the
    // prior spreads its expectation over a minute already.
    assert!(fresh.take("org", &[], true).is_empty());
    assert_eq!(fresh.due(1_004_500).len(), 1);

    // A lone job is listed once most jobs of a second to a minute would have ended.
    let lone = Hints::new(4);
    lone.follow(&poll("org", "r", 1_000_000, 1_060_000));
    assert!(lone.due(1_020_000).is_empty());
    assert_eq!(lone.due(1_031_000).len(), 1);

    // Twenty-five outcomes on (faded, over twenty), they alone expect: jobs of 5 s are not expected done at 3 s.
    let seen = seen(std::iter::repeat_n(5, 25));
    for n in 0..40u64 {
        seen.follow(&poll("org", &format!("r{n}"), 1_000_000, 1_060_000));
    }
    assert!(seen.due(1_003_000).is_empty());
    let due = seen.due(1_006_000);
    assert!(
        matches!(
            &due[..],
            [Listing {
                by_prior: false,
                ..
            }]
        ),
        "{due:?}"
    );
}

#[test]
fn with_listing_off_nothing_is_followed() {
    let off = Hints::new(0);
    off.follow(&poll("org", "r", 0, 600_000));
    assert_eq!(off.followed(), 0);
    assert!(off.due(300_000).is_empty());
}

#[test]
fn followed_jobs_are_bounded_and_long_overdue_ones_forgotten() {
    let hints = seen([1; 30]);
    for n in 0..TUNING.most_followed + 10 {
        hints.follow(&poll("org", &format!("r{n}"), 0, 10_000));
    }
    assert_eq!(hints.followed(), TUNING.most_followed);
    // Their polls were due at 10 s: ten minutes later they are someone else's, or ended unseen.
    let _ = hints.due(10_000 + millis(TUNING.stale) + 1);
    assert_eq!(hints.followed(), 0);
}

#[test]
fn listings_that_tell_of_fewer_jobs_than_expected_are_made_less_often() {
    let hints = seen((1..=60).cycle().take(600));
    let follow_org = |org: &str| {
        for n in 0..40u64 {
            hints.follow(&poll(org, &format!("r{n}"), 1_000_000, 1_060_000));
        }
    };
    follow_org("a");
    let first = hints.due(1_010_000);
    assert_eq!(first.len(), 1);
    // Its listings keep telling of nothing (say the targets never show): the expectation is scaled down.
    for listing in first {
        hints.calibrate(listing.expected, 0);
    }
    for _ in 0..20 {
        hints.calibrate(8.0, 0);
    }
    follow_org("b");
    assert!(
        hints.due(1_010_000).is_empty(),
        "as many jobs expected, but listings have told of none lately"
    );
    // Most of them expected done is worth a listing whatever listings told of: they would otherwise wait
    // for their own polls, a minute each.
    assert!(
        hints.due(1_050_000).iter().any(|l| l.org == "b"),
        "five in six jobs of a second to a minute are done at 50 s"
    );
}

#[test]
fn hints_are_trusted_unless_a_listing_failed_in_the_last_minute() {
    let hints = Hints::new(4);
    assert!(hints.trusted());
    assert!(hints.failed(now_ms()), "the first failure is a warning");
    assert!(!hints.trusted());
    assert!(!hints.failed(now_ms()), "not another within the minute");
    assert!(!Hints::new(0).trusted());
}

#[test]
fn an_org_s_last_jobs_are_listed_once_most_of_them_are_expected_done() {
    let hints = seen((1..=60).cycle().take(600));
    for n in 0..2u64 {
        hints.follow(&poll("org", &format!("r{n}"), 1_000_000, 1_090_000));
    }
    // Two jobs left: half of them expected done is not most.
    assert!(hints.due(1_030_000).is_empty());
    // At 55 s nearly both are: listed, though fewer than the yield.
    assert_eq!(hints.due(1_055_000).len(), 1);
}

#[test]
fn a_job_a_listing_did_not_tell_of_is_expected_done_anew_and_fruitless_listings_wait_longer() {
    let hints = seen((1..=60).cycle().take(600));
    hints.follow(&poll("org", "late", 1_000_000, 1_200_000));
    // At 48 s four jobs in five are done: listed, but Snyk does not show it yet.
    assert_eq!(hints.due(1_048_000).len(), 1);
    assert!(hints.take("org", &[], false).is_empty());
    // Of jobs that ran past 48 s, a third are done by 52 s: not yet worth another listing.
    assert!(hints.due(1_052_000).is_empty());
    // By 59 s most are: listed again.
    assert_eq!(hints.due(1_059_000).len(), 1);
    assert!(hints.take("org", &[], false).is_empty());
    // A second fruitless listing: it runs longer than nearly every job seen, so it is expected done
    // only as the time since grows (at about 100 s).
    assert!(hints.due(1_063_500).is_empty());
    assert!(hints.due(1_080_000).is_empty());
    assert_eq!(hints.due(1_100_000).len(), 1);
    // Told of at last.
    assert_eq!(hints.take("org", &["acme/late".to_owned()], false).len(), 1);
    assert_eq!(hints.followed(), 0);
}

#[test]
fn a_job_whose_own_poll_is_overdue_sets_not_where_a_listing_starts_but_is_hinted() {
    // Jobs of 5 s; in a fleet another importer's poll took the first job when due.
    let hints = seen(std::iter::repeat_n(5, 100));
    let now = now_ms();
    hints.follow(&poll("o", "long-ago", now - 60_000, now - 60_000 + 5_750));
    hints.follow(&poll("o", "now", now - 1_000, now + 60_000));
    let listed = hints.due(now + 5_000);
    assert_eq!(hints.followed(), 2);
    assert!(
        matches!(&listed[..], [l] if l.since_ms == now - 1_000 - millis(TUNING.clock_slack)),
        "{listed:?}"
    );
    // A listing that names it still hints it (its hinted poll finds the record and asks Snyk nothing).
    let names = ["acme/long-ago".to_owned()];
    assert_eq!(hints.take("o", &names, false).len(), 1);
    assert_eq!(hints.followed(), 1);
}
