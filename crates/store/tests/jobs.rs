//! Deploy jobs: a lease is exclusive while it lives, a heartbeat keeps it, a job whose
//! lease ran out goes to the next claimer, and the replica that lost it can neither
//! renew, release nor finish it; concurrent claimers never take the same job. Run on
//! SQLite and PostgreSQL.

use std::collections::BTreeSet;

use testkit::{Backend, TestDatabase};

/// A database with `count` deployments of `web/dev` waiting for their jobs.
async fn with_jobs(backend: Backend, count: usize) -> TestDatabase {
    let database = TestDatabase::create(backend).await;
    // The store migrates the database on open.
    drop(database.store().await);
    for _ in 0..count {
        database
            .execute_raw(
                "INSERT INTO deployments (application, environment, digest, reason, state, target, requested_by, started_at) \
                 VALUES ('web', 'dev', 'sha256:0000000000000000000000000000000000000000000000000000000000000000', \
                 'promotion', 'deploying', 'record', 'admin', 0)",
            )
            .await;
    }
    database
        .execute_raw(
            "INSERT INTO deploy_jobs (deployment_id, run_after) SELECT id, 0 FROM deployments",
        )
        .await;
    database
}

async fn a_lease_is_exclusive_until_it_runs_out_and_then_fenced(backend: Backend) {
    let database = with_jobs(backend, 1).await;
    let store = database.store().await;
    let jobs = store.jobs();
    let now = store::now_millis();
    let first = jobs
        .claim(None, "a", now, 200)
        .await
        .expect("claim")
        .expect("a job is due");
    assert_eq!(first.attempt, 1);
    assert_eq!(first.order.application, "web");
    assert_eq!(
        jobs.claim(None, "b", now, 200).await.expect("claim"),
        None,
        "held by a"
    );
    assert_eq!(
        jobs.claim(Some(first.order.deployment_id), "b", now, 200)
            .await
            .expect("claim"),
        None
    );
    assert!(
        jobs.heartbeat(first.order.deployment_id, &first.lease, now + 200)
            .await
            .expect("heartbeat")
    );
    assert_eq!(first.lease, "a#1", "each claim holds a lease of its own");
    assert!(
        !jobs
            .heartbeat(first.order.deployment_id, "a", now + 200)
            .await
            .expect("heartbeat"),
        "the owner's name alone holds nothing"
    );
    // The lease runs out (a crashed): the job is due again, for b.
    let later = now + 201;
    let second = jobs
        .claim(None, "b", later, 10_000)
        .await
        .expect("claim")
        .expect("due again");
    assert_eq!(second.order.deployment_id, first.order.deployment_id);
    assert_eq!(second.attempt, 2);
    let id = second.order.deployment_id;
    assert!(
        !jobs
            .heartbeat(id, &first.lease, later + 200)
            .await
            .expect("heartbeat"),
        "a lost it"
    );
    assert!(
        !jobs
            .release(id, &first.lease, later, "late")
            .await
            .expect("release"),
        "a cannot release it"
    );
    let late = store
        .deployments()
        .finish_deployment(id, &first.lease, true, Some("late"), store::now_millis())
        .await
        .expect("finish");
    let store::StoreOutcome::Done(late) = late else {
        panic!("finishing answers Done: {late:?}")
    };
    assert!(!late.recorded, "a's outcome is not recorded");
    assert_eq!(late.deployment.state.as_str(), "deploying");
    let done = store
        .deployments()
        .finish_deployment(id, &second.lease, true, Some("done"), store::now_millis())
        .await
        .expect("finish");
    let store::StoreOutcome::Done(done) = done else {
        panic!("finishing answers Done: {done:?}")
    };
    assert!(done.recorded);
    assert_eq!(done.deployment.state.as_str(), "deployed");
    assert_eq!(done.deployment.message.as_deref(), Some("done"));
    let job = jobs.get(id).await.expect("get").expect("the job");
    assert!(job.finished_at.is_some());
    assert_eq!(job.lease_owner, None);
    assert_eq!(
        jobs.claim(None, "c", later + 100_000, 200)
            .await
            .expect("claim"),
        None,
        "finished jobs are never due"
    );
    let again = store
        .deployments()
        .finish_deployment(id, &second.lease, false, Some("again"), store::now_millis())
        .await
        .expect("finish");
    let store::StoreOutcome::Done(again) = again else {
        panic!("{again:?}")
    };
    assert!(
        !again.recorded,
        "a finished deployment stays as it finished"
    );
}

async fn a_released_job_waits_for_its_run_after(backend: Backend) {
    let database = with_jobs(backend, 1).await;
    let store = database.store().await;
    let jobs = store.jobs();
    let now = store::now_millis();
    let job = jobs
        .claim(None, "a", now, 10_000)
        .await
        .expect("claim")
        .expect("due");
    let id = job.order.deployment_id;
    assert!(
        jobs.release(id, &job.lease, now + 5_000, "503 from the destination")
            .await
            .expect("release")
    );
    assert_eq!(
        jobs.claim(None, "a", now + 4_999, 10_000)
            .await
            .expect("claim"),
        None,
        "not before run_after"
    );
    assert_eq!(jobs.next_due().await.expect("next due"), Some(now + 5_000));
    let state = jobs.get(id).await.expect("get").expect("job");
    assert_eq!(
        state.last_error.as_deref(),
        Some("503 from the destination")
    );
    let retry = jobs
        .claim(None, "b", now + 5_000, 10_000)
        .await
        .expect("claim")
        .expect("due");
    assert_eq!(retry.attempt, 2);
}

async fn concurrent_claimers_never_take_the_same_job(backend: Backend) {
    let database = with_jobs(backend, 40).await;
    let store = database.store().await;
    let mut claimers = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("replica-{n}");
            let mut taken = Vec::new();
            while let Some(job) = store
                .jobs()
                .claim(None, &owner, store::now_millis(), 60_000)
                .await
                .expect("claim")
            {
                taken.push(job.order.deployment_id);
            }
            taken
        }));
    }
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every job claimed once: {all:?}");
    assert_eq!(distinct.len(), 40);
    let counts = store
        .jobs()
        .counts(store::now_millis())
        .await
        .expect("counts");
    assert_eq!(
        counts,
        store::JobCounts {
            running: 40,
            waiting: 0
        }
    );
}

async fn log_lines_are_kept_in_order_cut_and_bounded(backend: Backend) {
    let database = with_jobs(backend, 1).await;
    let store = database.store().await;
    let jobs = store.jobs();
    let id = jobs
        .claim(None, "a", store::now_millis(), 10_000)
        .await
        .expect("claim")
        .expect("due")
        .order
        .deployment_id;
    jobs.append_log(id, 1, &["one".to_owned(), "two".to_owned()])
        .await
        .expect("append");
    jobs.append_log(id, 2, &["é".repeat(store::MAX_LOG_LINE_BYTES)])
        .await
        .expect("append");
    let lines = jobs.log(id, 0, 10).await.expect("log");
    assert_eq!(lines.iter().map(|l| l.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(lines[1].line, "two");
    assert!(
        lines[2].line.len() <= store::MAX_LOG_LINE_BYTES + '…'.len_utf8(),
        "cut on a character boundary"
    );
    assert!(lines[2].line.ends_with('…'));
    let many: Vec<String> = (0..store::MAX_LOG_LINES)
        .map(|n| format!("line {n}"))
        .collect();
    jobs.append_log(id, 3, &many).await.expect("append");
    let tail = jobs
        .log(id, store::MAX_LOG_LINES - 2, 10)
        .await
        .expect("log");
    assert_eq!(tail.len(), 2, "nothing beyond the bound");
    assert_eq!(tail[1].line, "(log truncated: later lines were dropped)");
    assert_eq!(jobs.log(id, 1, 1).await.expect("page")[0].seq, 2);
}

macro_rules! both {
    ($($name:ident),*) => {
        mod sqlite { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(testkit::Backend::Sqlite).await }
        )* }
        mod postgres { $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(testkit::Backend::Postgres).await }
        )* }
    };
}

both!(
    a_lease_is_exclusive_until_it_runs_out_and_then_fenced,
    a_released_job_waits_for_its_run_after,
    concurrent_claimers_never_take_the_same_job,
    log_lines_are_kept_in_order_cut_and_bounded
);
