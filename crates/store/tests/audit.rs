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
        assert_eq!(
            store.audit().record(&entry(n)).await.expect("record"),
            i64::from(n)
        );
    }
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
    let mut sequences = Vec::new();
    for task in tasks {
        sequences.push(task.await.expect("task").expect("record"));
    }
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (1..=40).collect::<Vec<i64>>(),
        "every append got its own sequence"
    );
    assert!(matches!(
        store.audit().verify().await.expect("verify"),
        ChainVerdict::Intact { entries: 40, .. }
    ));
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
    concurrent_appends_form_one_chain
);
