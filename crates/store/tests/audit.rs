//! The audit log's contract on both backends: appends chain, verification recomputes
//! the chain, and any edit, insertion or removal made behind Gantry's back is named.

use store::{ChainVerdict, NewAuditEntry, Store};
use testkit::{Backend, TestDatabase};

fn entry(n: u32) -> NewAuditEntry {
    NewAuditEntry {
        at: 1_700_000_000_000 + i64::from(n),
        actor: format!("user-{n}"),
        action: domain::audit::AuditAction::Push,
        subject: "acme/app".into(),
        payload: serde_json::json!({ "n": n, "b": [1, 2], "a": { "z": 1, "y": null } }),
    }
}

async fn five_entries(store: &Store) {
    for n in 1..=5 {
        store.audit().record(&entry(n)).await.expect("record");
    }
    // Tampering below goes straight to the table: the entries must be chained first.
    store.audit().flush().await.expect("flush");
}

async fn tamper(database: &TestDatabase, sql: &'static str) {
    database.execute_raw(sql).await;
}

async fn chain_verifies_and_names_the_first_broken_entry(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.store().await;
    assert_eq!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact {
            entries: 0,
            head: domain::audit::GENESIS_HASH.to_owned()
        }
    );
    five_entries(&store).await;
    let entries = store.audit().entries(0, 100).await.expect("entries");
    assert_eq!(entries.len(), 5);
    assert_eq!(
        entries[0].payload, r#"{"a":{"y":null,"z":1},"b":[1,2],"n":1}"#,
        "payload stored canonically"
    );
    assert_eq!(
        entries[1].previous_hash, entries[0].hash,
        "each entry links to the one before"
    );
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 5, .. }
    ));

    tamper(
        &database,
        "UPDATE audit_log SET actor = 'mallory' WHERE sequence = 3",
    )
    .await;
    match store.audit().verify().await.expect("verify") {
        ChainVerdict::Broken { sequence, reason } => {
            assert_eq!(sequence, 3);
            assert!(reason.contains("altered"), "{reason}");
        }
        intact => panic!("an edited entry must be caught: {intact:?}"),
    }
}

async fn removing_entries_breaks_the_chain(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.store().await;
    five_entries(&store).await;
    tamper(&database, "DELETE FROM audit_log WHERE sequence = 2").await;
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Broken { sequence: 2, .. }
    ));

    let database = TestDatabase::create(backend).await;
    let store = database.store().await;
    five_entries(&store).await;
    tamper(&database, "DELETE FROM audit_log WHERE sequence = 5").await;
    match store.audit().verify().await.expect("verify") {
        ChainVerdict::Broken { sequence, reason } => {
            assert_eq!(sequence, 5);
            assert!(reason.contains("removed"), "{reason}");
        }
        intact => panic!("a removed last entry must be caught: {intact:?}"),
    }
}

async fn concurrent_appends_form_one_chain(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.store().await;
    let mut tasks = Vec::new();
    for n in 1..=40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.audit().record(&entry(n)).await
        }));
    }
    // Chainers that skip a taken head and readers' flushes that wait for it run
    // while the appends do, as on every replica.
    let mut chainers = Vec::new();
    for n in 0..6 {
        let store = store.clone();
        chainers.push(tokio::spawn(async move {
            let mut chained = 0;
            for _ in 0..20 {
                chained += if n % 2 == 0 {
                    store.audit().chain_pending().await.expect("chain")
                } else {
                    store.audit().flush().await.expect("flush")
                };
                tokio::task::yield_now().await;
            }
            chained
        }));
    }
    for task in tasks {
        task.await.expect("task").expect("record");
    }
    let mut chained = 0;
    for chainer in chainers {
        chained += chainer.await.expect("chainer");
    }
    chained += store.audit().flush().await.expect("flush");
    // SQLite chains each entry in its writer's transaction: nothing is left pending.
    let expected = match backend {
        Backend::Sqlite => 0,
        Backend::Postgres => 40,
    };
    assert_eq!(
        chained, expected,
        "each entry chained by exactly one of them"
    );
    let entries = store.audit().entries(0, 100).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=40).collect::<Vec<i64>>(),
        "every append got its own sequence, with no gap"
    );
    let mut actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    actors.sort_unstable();
    actors.dedup();
    assert_eq!(actors.len(), 40, "each entry chained exactly once");
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 40, .. }
    ));
    assert_eq!(store.audit().pending().await.expect("pending"), 0);
}

async fn an_entry_committed_before_another_was_appended_is_chained_before_it(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = database.store().await;
    for n in 1..=3 {
        store.audit().record(&entry(n)).await.expect("record");
    }
    store.audit().chain_pending().await.expect("chain");
    for n in 4..=6 {
        store.audit().record(&entry(n)).await.expect("record");
    }
    let entries = store.audit().entries(0, 100).await.expect("entries");
    let actors: Vec<&str> = entries.iter().map(|e| e.actor.as_str()).collect();
    assert_eq!(
        actors,
        ["user-1", "user-2", "user-3", "user-4", "user-5", "user-6"],
    );
}

/// PostgreSQL only: a second connection of the test's own, standing for a writer or
/// a chainer whose transaction is open.
async fn other_connection(database: &TestDatabase) -> sqlx::PgConnection {
    use sqlx::Connection as _;
    sqlx::PgConnection::connect(database.url())
        .await
        .expect("connect")
}

async fn appends_do_not_wait_for_the_chain_head() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.store().await;
    let mut holder = other_connection(&database).await;
    sqlx::query("BEGIN")
        .execute(&mut holder)
        .await
        .expect("begin");
    sqlx::query("SELECT sequence FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .expect("take the head row");

    // With the head row held for as long as a transaction lasts, audited writes go on.
    let appends = async {
        let mut tasks = Vec::new();
        for n in 1..=20 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.audit().record(&entry(n)).await
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("record");
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), appends)
        .await
        .expect("appends must not wait for the head row");
    assert_eq!(store.audit().pending().await.expect("pending"), 20);
    assert_eq!(
        store.audit().chain_pending().await.expect("chain"),
        0,
        "a chainer that finds the head taken moves on"
    );

    sqlx::query("ROLLBACK")
        .execute(&mut holder)
        .await
        .expect("rollback");
    assert_eq!(store.audit().chain_pending().await.expect("chain"), 20);
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 20, .. }
    ));
}

async fn an_entry_of_an_open_transaction_is_chained_after_it_commits() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.store().await;
    let mut writer = other_connection(&database).await;
    sqlx::query("BEGIN")
        .execute(&mut writer)
        .await
        .expect("begin");
    sqlx::query(
        "INSERT INTO audit_pending (at, actor, action, subject, payload) \
         VALUES (1, 'slow-writer', 'push', 'acme/app', '{}')",
    )
    .execute(&mut writer)
    .await
    .expect("append in an open transaction");

    // Later appends, committed, are chained without waiting for the open one.
    store.audit().record(&entry(1)).await.expect("record");
    let entries = store.audit().entries(0, 100).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        ["user-1"]
    );

    sqlx::query("COMMIT")
        .execute(&mut writer)
        .await
        .expect("commit");
    store.audit().record(&entry(2)).await.expect("record");
    let entries = store.audit().entries(0, 100).await.expect("entries");
    assert_eq!(
        entries.iter().map(|e| e.actor.as_str()).collect::<Vec<_>>(),
        ["user-1", "slow-writer", "user-2"],
        "the chain's order is the order of chaining; what committed first comes first"
    );
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 3, .. }
    ));
}

async fn pending_entries_outlive_the_replica_that_wrote_them() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let first = database.store().await;
    for n in 1..=3 {
        first.audit().record(&entry(n)).await.expect("record");
    }
    assert_eq!(first.audit().pending().await.expect("pending"), 3);
    drop(first);

    let second = database.store().await;
    let entries = second.audit().entries(0, 100).await.expect("entries");
    assert_eq!(entries.len(), 3, "another replica chains them");
    assert!(matches!(
        second.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 3, .. }
    ));
}

async fn more_pending_entries_than_one_batch_are_all_chained() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let store = database.store().await;
    database
        .execute_raw(
            "INSERT INTO audit_pending (at, actor, action, subject, payload) \
             SELECT n, 'user-' || n, 'push', 'acme/app', '{}' FROM generate_series(1, 2500) AS n",
        )
        .await;
    assert_eq!(store.audit().flush().await.expect("flush"), 2500);
    let last = store.audit().entries(2499, 10).await.expect("entries");
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].actor, "user-2500", "chained in the order appended");
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 2500, .. }
    ));
}

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn appends_do_not_wait_for_the_chain_head() {
        super::appends_do_not_wait_for_the_chain_head().await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_of_an_open_transaction_is_chained_after_it_commits() {
        super::an_entry_of_an_open_transaction_is_chained_after_it_commits().await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_entries_outlive_the_replica_that_wrote_them() {
        super::pending_entries_outlive_the_replica_that_wrote_them().await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn more_pending_entries_than_one_batch_are_all_chained() {
        super::more_pending_entries_than_one_batch_are_all_chained().await
    }
}

macro_rules! on_both {
    ($($name:ident),*) => {
        mod sqlite { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(testkit::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)] async fn $name() { super::$name(testkit::Backend::Postgres).await } )* }
    };
}

on_both!(
    chain_verifies_and_names_the_first_broken_entry,
    removing_entries_breaks_the_chain,
    concurrent_appends_form_one_chain,
    an_entry_committed_before_another_was_appended_is_chained_before_it
);
