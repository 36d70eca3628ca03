use super::*;

#[tokio::test(start_paused = true)]
async fn the_estimate_settles_where_most_first_polls_find_the_job_done() {
    // Every first poll a probe, so each one read here is the estimate.
    let probes_only = PollTiming {
        margin: 0.0,
        ..PollTiming::default()
    };
    let schedule = Schedule::new(probes_only, Store::memory());
    assert_eq!(schedule.first_poll().await, Duration::from_secs(5));
    // Twenty first polls a second of jobs taking 10 to 14 s: it climbs, then hovers where nine in ten
    // are done by their first poll (about 13.6 s).
    // In no particular order, as polls come back.
    let second = |low: f64, high: f64| {
        (0..20).map(move |i| {
            Duration::from_secs_f64(low + (high - low) * f64::from(i * 7 % 20) / 19.0)
        })
    };
    // The estimate over the last minute of a run of two minutes, on average: it moves by coarse steps, so
    // it circles where it should be rather than sitting on it.
    async fn run(schedule: &Schedule, jobs: impl Fn() -> Vec<Duration>) -> Duration {
        let mut late = Vec::new();
        for second in 0..120 {
            let estimate = schedule.first_poll().await;
            if second >= 60 {
                late.push(estimate);
            }
            for duration in jobs() {
                schedule
                    .first_poll_found(estimate >= duration, estimate)
                    .await;
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        late.iter().sum::<Duration>() / 60
    }
    let settled = run(&schedule, || second(10.0, 14.0).collect()).await;
    assert!(
        settled >= Duration::from_secs_f64(13.0) && settled <= Duration::from_secs_f64(15.5),
        "{settled:?}"
    );
    // Jobs get faster (2 to 4 s): it follows them down.
    let faster = run(&schedule, || second(2.0, 4.0).collect()).await;
    assert!(
        faster >= Duration::from_secs_f64(3.2) && faster <= Duration::from_secs_f64(4.5),
        "{faster:?}"
    );
    // A burst of outcomes of polls scheduled under one estimate moves it once, by a bounded factor,
    // not hundreds of steps: 500 polls scheduled at 1 s that all find their jobs pending raise it to
    // 1.75 s; 500 scheduled at 30 s that all find theirs done lower it to about 25.8 s.
    let burst = Schedule::new(
        PollTiming {
            prior: Duration::from_secs(1),
            ..probes_only
        },
        Store::memory(),
    );
    for _ in 0..500 {
        burst.first_poll_found(false, Duration::from_secs(1)).await;
    }
    assert_eq!(burst.first_poll().await, Duration::from_millis(1750));
    let high = Schedule::new(
        PollTiming {
            prior: Duration::from_secs(30),
            ..probes_only
        },
        Store::memory(),
    );
    for _ in 0..500 {
        high.first_poll_found(true, Duration::from_secs(30)).await;
    }
    let lowered = high.first_poll().await;
    assert!(
        lowered > Duration::from_secs_f64(25.5) && lowered < Duration::from_secs(26),
        "{lowered:?}"
    );
    // A pending job is polled again as it ages, within the floor and the cap.
    assert_eq!(
        schedule.next_poll(Duration::from_millis(500)),
        Duration::from_secs(1)
    );
    assert_eq!(
        schedule.next_poll(Duration::from_secs(20)),
        Duration::from_secs(10)
    );
    assert_eq!(
        schedule.next_poll(Duration::from_secs(600)),
        Duration::from_secs(60)
    );
}

#[tokio::test(start_paused = true)]
async fn one_first_poll_in_eight_probes_at_the_estimate_and_only_probes_move_it() {
    let schedule = Schedule::new(PollTiming::default(), Store::memory());
    let mut waits = Vec::new();
    for _ in 0..16 {
        waits.push(schedule.first_poll().await.as_millis());
    }
    let (probe, late) = (5_000, 5_750);
    let mut expected = vec![late; 16];
    expected[0] = probe;
    expected[8] = probe;
    assert_eq!(waits, expected, "the estimate, then seven 15 % later");
    // Polls a margin late that find their jobs pending (or done) say nothing of the estimate's quantile.
    for done in [false, true] {
        for _ in 0..100 {
            schedule
                .first_poll_found(done, Duration::from_millis(late as u64))
                .await;
        }
    }
    tokio::time::advance(REFRESH).await;
    assert_eq!(
        schedule.first_poll().await,
        Duration::from_secs(5),
        "the 17th, a probe: the estimate, unmoved"
    );
    // Probes that find theirs pending raise it.
    for _ in 0..MIN_HEARD {
        schedule
            .first_poll_found(false, Duration::from_millis(probe as u64))
            .await;
    }
    assert!(schedule.first_poll().await > Duration::from_secs(6));
}

/// A cohort of probed jobs still largely pending at an age past the estimate raises it to that age at
/// once; one that circles the quantile, or was heard too few times, does not.
#[tokio::test(start_paused = true)]
async fn probed_jobs_still_pending_past_the_estimate_raise_it_to_their_age() {
    let schedule = Schedule::new(PollTiming::default(), Store::memory());
    let first = schedule.plan_first_poll().await;
    assert_eq!(
        first,
        FirstPoll {
            wait: Duration::from_secs(5),
            probe_ms: 5_000
        },
        "the first poll is a probe and says which estimate it probed"
    );
    assert_eq!(
        schedule.plan_first_poll().await.probe_ms,
        0,
        "the next is not"
    );
    let secs = Duration::from_secs;
    let heard = |polls: &[(u32, bool, Duration)]| {
        let polls = polls.to_vec();
        let schedule = &schedule;
        async move {
            for (poll, done, age) in polls {
                schedule.probed_job_found(5_000, poll, done, age).await;
            }
        }
    };
    // Every probe pending at 5 s (no higher than the estimate, and a line that does not fall), then half
    // of them still pending at 8.6 s: the line through both falls to one in ten at 8.6 s + 0.4 / (0.5 /
    // 3.6 s) = 11.48 s.
    heard(&[(0, false, secs(5)); 20]).await;
    assert_eq!(schedule.plan_first_poll().await.wait, secs(5) * 115 / 100);
    let mut second = vec![(1, true, Duration::from_millis(8_600)); 5];
    second.extend([(1, false, Duration::from_millis(8_600)); 5]);
    heard(&second).await;
    let raised = schedule.first_poll().await;
    assert!(
        raised.as_millis().abs_diff(13_202) <= 1,
        "11.48 s and the margin: {raised:?}"
    );
    // At 20 s a sixth of those are pending: 8 % of the cohort, under the fifth it takes, so the estimate
    // stays where it is whatever the age.
    let mut third = vec![(2, false, secs(20)); 2];
    third.extend([(2, true, secs(20)); 10]);
    heard(&third).await;
    assert_eq!(schedule.first_poll().await, raised);

    // Probes circling the quantile (one in ten pending) never raise it, nor do nine outcomes alone, nor
    // polls past those a cohort counts, nor jobs that were not probed.
    let circling = Schedule::new(PollTiming::default(), Store::memory());
    for i in 0..100 {
        circling
            .probed_job_found(5_000, 0, i % 10 != 0, Duration::from_millis(5_400))
            .await;
    }
    for _ in 0..(MIN_HEARD - 1) {
        circling.probed_job_found(7_000, 0, false, secs(9)).await;
    }
    for poll in [COHORT_POLLS as u32, u32::MAX] {
        for _ in 0..MIN_HEARD * 2 {
            circling
                .probed_job_found(5_000, poll, false, secs(50))
                .await;
        }
    }
    for _ in 0..MIN_HEARD * 2 {
        circling.probed_job_found(0, 0, false, secs(50)).await;
    }
    // Probes of 5 s jobs a little early, one in ten taken late enough to find its job done: the probe
    // alone says the quantile is past its age, not where (a line from all pending at 0 doubled it).
    for i in 0..MIN_HEARD {
        circling
            .probed_job_found(4_546, 0, i == 0, Duration::from_millis(4_600))
            .await;
    }
    assert_eq!(circling.plan_first_poll().await.wait, secs(5));
    // A cohort all pending (jobs of one length, say) raises it to the age alone, and not at all by less
    // than a quarter (the tracker's step adapts to small moves); an age past the cap only to the cap.
    // Cohorts kept are bounded.
    for _ in 0..MIN_HEARD {
        circling.probed_job_found(6_000, 0, false, secs(6)).await;
    }
    assert_eq!(circling.plan_first_poll().await.wait, secs(5) * 115 / 100);
    for _ in 0..MIN_HEARD {
        circling.probed_job_found(7_000, 0, false, secs(7)).await;
    }
    let aged = circling.first_poll().await;
    assert!(
        aged.as_millis().abs_diff(8_050) <= 1,
        "7 s and the margin: {aged:?}"
    );
    for _ in 0..MIN_HEARD {
        circling
            .probed_job_found(9_000, 0, false, secs(3_600))
            .await;
    }
    assert_eq!(circling.first_poll().await, secs(60));
    for probe_ms in 1..=(COHORTS as u64 * 4) {
        circling.probed_job_found(probe_ms, 0, true, secs(1)).await;
    }
    assert_eq!(circling.cohorts().len(), COHORTS);
}

/// A probe that finds its job pending polls it again when the other first polls come, not at 1.5 times
/// its age; past that, the backoff.
#[tokio::test(start_paused = true)]
async fn a_pending_probe_s_job_is_polled_again_with_the_other_first_polls() {
    let schedule = Schedule::new(
        PollTiming {
            prior: Duration::from_secs(40),
            margin: 0.25,
            ..PollTiming::default()
        },
        Store::memory(),
    );
    let secs = Duration::from_secs;
    // Expected at 50 s (40 s and 25 %): a probe pending at 40 s comes back 10 s later, not 20 s.
    assert_eq!(schedule.after_probe(secs(40)).await, secs(10));
    // Never later than the backoff, never sooner than the floor.
    assert_eq!(schedule.after_probe(secs(4)).await, secs(2));
    assert_eq!(
        schedule.after_probe(Duration::from_millis(49_800)).await,
        secs(1)
    );
    // A probe older than the expected time (the estimate fell since): the backoff.
    assert_eq!(schedule.after_probe(secs(60)).await, secs(30));
}

/// News is of the estimate it was heard under: outcomes heard before another importer moved the
/// estimate never move the new one.
#[tokio::test(start_paused = true)]
async fn outcomes_of_an_estimate_another_importer_moved_never_move_the_new_one() {
    let probes_only = PollTiming {
        margin: 0.0,
        ..PollTiming::default()
    };
    let store = Store::memory();
    let (a, b) = (
        Schedule::new(probes_only, store.clone()),
        Schedule::new(probes_only, store),
    );
    let at_prior = Duration::from_secs(5);
    for _ in 0..MIN_HEARD - 1 {
        a.first_poll_found(false, at_prior).await;
    }
    for _ in 0..MIN_HEARD {
        b.first_poll_found(false, at_prior).await;
    }
    let moved = Duration::from_millis(8750);
    assert_eq!(b.first_poll().await, moved, "one importer raised it");
    tokio::time::advance(REFRESH).await;
    // The other hears one probe of the new estimate done: with its nine old pending ones it would raise
    // it again, to 15.3 s.
    a.first_poll_found(true, moved).await;
    assert_eq!(a.first_poll().await, moved);
    // Ten of the new estimate, all done, lower it.
    for _ in 0..MIN_HEARD - 1 {
        a.first_poll_found(true, moved).await;
    }
    assert!(a.first_poll().await < moved);
}

/// Jobs that all take the same time answer every probe alike (pending below it, done above): with full
/// steps the estimate circled them from 4.3 to 8.7 s here. Each turn back halves the step, so it closes
/// in; and a change of the jobs is still followed within a few moves.
#[tokio::test(start_paused = true)]
async fn jobs_of_one_length_draw_the_estimate_in_rather_than_round_them() {
    let probes_only = PollTiming {
        margin: 0.0,
        prior: Duration::from_secs(2),
        ..PollTiming::default()
    };
    let schedule = Schedule::new(probes_only, Store::memory());
    let job = Duration::from_secs(5);
    let mut seen = Vec::new();
    for second in 0..180 {
        let estimate = schedule.first_poll().await;
        if second >= 120 {
            seen.push(estimate);
        }
        for _ in 0..10 {
            schedule.first_poll_found(estimate >= job, estimate).await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let (low, high) = (seen.iter().min(), seen.iter().max());
    assert!(
        low >= Some(&Duration::from_millis(4600)) && high <= Some(&Duration::from_millis(5600)),
        "the last minute's estimates ranged from {low:?} to {high:?}"
    );
    // The jobs now take 15 s: within twenty moves the estimate is there.
    let job = Duration::from_secs(15);
    for _ in 0..20 {
        let estimate = schedule.first_poll().await;
        for _ in 0..10 {
            schedule.first_poll_found(estimate >= job, estimate).await;
        }
        tokio::time::advance(Duration::from_secs(1)).await;
    }
    let followed = schedule.first_poll().await;
    assert!(followed >= Duration::from_secs(14), "{followed:?}");
}

/// The store's text is input: garbage is no estimate, and an estimate of an older importer (ms alone)
/// moves by full steps.
#[test]
fn the_fleet_s_estimate_is_read_with_care() {
    for garbage in ["", "soon", "-5", "NaN", "inf", "0"] {
        assert_eq!(Estimate::parse(garbage), None, "{garbage:?}");
    }
    assert_eq!(Estimate::parse("5000"), Some(Estimate::new(5000.0)));
    let read = Estimate::parse("4200 0.25 -2").expect("an estimate");
    assert_eq!((read.ms, read.step, read.streak), (4200.0, 0.25, -2));
    let wild = Estimate::parse("4200 9 7").expect("an estimate");
    assert_eq!((wild.step, wild.streak), (1.0, 0));
    assert_eq!(Estimate::parse(&read.text()), Some(read));
}

/// A cohort's raise moves the estimate, not the tracker's step: raised afresh at full step, jobs of a
/// fixed 5 s kept it circling.
#[tokio::test(start_paused = true)]
async fn a_cohort_s_raise_keeps_the_tracker_s_step() {
    let store = Store::memory();
    store
        .set(KEY, b"4000 0.25 -1", None)
        .await
        .expect("the estimate");
    let schedule = Schedule::new(PollTiming::default(), store.clone());
    for _ in 0..MIN_HEARD {
        schedule
            .probed_job_found(4_000, 0, false, Duration::from_secs(6))
            .await;
    }
    let kept = store.get(KEY).await.expect("read").expect("an estimate");
    assert_eq!(String::from_utf8_lossy(&kept), "6000 0.25 -1");
}

/// A pending job is polled again a floor after the oldest age a job was found pending at, when that comes
/// before its backoff: jobs of up to a minute pending at 55 s are not polled again at 82 s.
#[tokio::test(start_paused = true)]
async fn a_pending_job_is_polled_again_after_the_longest_seen_when_that_is_sooner() {
    let schedule = Schedule::new(PollTiming::default(), Store::memory());
    let secs = Duration::from_secs;
    assert_eq!(schedule.next_poll(secs(55)), Duration::from_millis(27_500));
    schedule.found_pending(secs(59));
    schedule.found_pending(secs(30));
    assert_eq!(schedule.next_poll(secs(55)), secs(5), "at 60 s, not 82.5 s");
    assert_eq!(
        schedule.next_poll(Duration::from_millis(58_500)),
        Duration::from_millis(1_500)
    );
    assert_eq!(
        schedule.next_poll(secs(10)),
        secs(5),
        "the backoff is sooner"
    );
    assert_eq!(
        schedule.next_poll(secs(59)),
        Duration::from_millis(29_500),
        "as old as the longest: the backoff"
    );
}

#[tokio::test(start_paused = true)]
async fn the_estimate_climbs_while_it_rises_by_a_quarter_within_ten_seconds() {
    let schedule = Schedule::new(PollTiming::default(), Store::memory());
    assert!(!schedule.climbing().await, "not before any move");
    tokio::time::advance(Duration::from_secs(2)).await;
    for _ in 0..10 {
        schedule
            .first_poll_found(false, Duration::from_secs(5))
            .await;
    }
    assert!(schedule.climbing().await, "up by 1.75 since 2 s ago");
    // Ten seconds on, with no move since, it no longer climbs.
    for _ in 0..11 {
        tokio::time::advance(Duration::from_secs(1)).await;
        let _ = schedule.climbing().await;
    }
    assert!(!schedule.climbing().await);
}
