//! Group commit of the inbound journal (issue 16 item 1) on a real SQLite file and a real
//! PostgreSQL: interchanges received at the same time share a transaction, and yet each caller
//! is answered for its own interchange only after the commit, duplicates are found within a
//! group as across groups, and an interchange the database refuses fails alone.

mod support;

use chrono::{TimeZone, Utc};
use futures_util::future::join_all;
use mako_gateway::store::{Inserted, Store, Transport};
use mako_gateway::worker::receive::Journal;

fn interchange(sender: &str, reference: &str) -> Vec<u8> {
    format!(
        "UNA:+.? 'UNB+UNOC:3+{sender}:500+9900000000003:500+261001:0815+{reference}'\
         UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+D1+9'UNT+3+1'UNZ+1+{reference}'"
    )
    .into_bytes()
}

async fn rows(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE direction = 'in'")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn concurrent_deliveries(stores: Vec<Store>) {
    let store = &stores[0];
    let journal = Journal::new(store.clone());
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    // 300 distinct interchanges and, among them, 30 delivered twice at the same moment.
    let mut deliveries = Vec::new();
    for i in 0..300 {
        deliveries.push(interchange("9900000000011", &format!("R{i:05}")));
        if i % 10 == 0 {
            deliveries.push(interchange("9900000000011", &format!("R{i:05}")));
        }
    }
    let results = join_all(
        deliveries
            .into_iter()
            .map(|raw| journal.receive(raw, Transport::File, now)),
    )
    .await;
    let mut new = std::collections::BTreeSet::new();
    let mut duplicates = Vec::new();
    for result in results {
        match result.expect("journaled") {
            Inserted::New(id) => assert!(new.insert(id)),
            Inserted::Duplicate(id) => duplicates.push(id),
        }
    }
    assert_eq!(new.len(), 300);
    assert_eq!(duplicates.len(), 30);
    // Each duplicate names the one journal item of its interchange.
    assert!(
        duplicates.iter().all(|id| new.contains(id)),
        "{duplicates:?}"
    );
    assert_eq!(rows(store).await, 300);
    // Another instance's journal on the same database finds them as duplicates too.
    let other = Journal::new(stores[1].clone());
    let again = other
        .receive(interchange("9900000000011", "R00007"), Transport::File, now)
        .await
        .unwrap();
    assert!(matches!(again, Inserted::Duplicate(_)), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_are_each_journaled_once_on_sqlite() {
    support::on_sqlite(concurrent_deliveries).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deliveries_are_each_journaled_once_on_postgres() {
    support::on_postgres(
        "concurrent_deliveries_are_each_journaled_once_on_postgres",
        concurrent_deliveries,
    )
    .await;
}

/// The database refuses one interchange of a group (a rule added for the test, standing in for
/// SQLite's "string or blob too big" and the like): it fails with its own error, the others of
/// its group are journaled and answered.
async fn one_refused(stores: Vec<Store>) {
    let store = &stores[0];
    let refuse = match store.backend() {
        mako_gateway::store::Backend::Sqlite => {
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON journal WHEN NEW.interchange_ref = 'BAD01' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        }
        mako_gateway::store::Backend::Postgres => {
            "ALTER TABLE journal ADD CONSTRAINT refuse_bad CHECK (interchange_ref <> 'BAD01')"
        }
    };
    sqlx::query(refuse).execute(store.pool()).await.unwrap();
    let journal = Journal::new(store.clone());
    let now = Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap();
    let mut deliveries: Vec<Vec<u8>> = (0..40)
        .map(|i| interchange("9900000000011", &format!("G{i:05}")))
        .collect();
    deliveries.insert(20, interchange("9900000000011", "BAD01"));
    let results = join_all(
        deliveries
            .into_iter()
            .map(|raw| journal.receive(raw, Transport::File, now)),
    )
    .await;
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![20], "{results:?}");
    assert_eq!(rows(store).await, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refused_interchange_fails_alone_in_its_group_on_sqlite() {
    support::on_sqlite(one_refused).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_refused_interchange_fails_alone_in_its_group_on_postgres() {
    support::on_postgres(
        "one_refused_interchange_fails_alone_in_its_group_on_postgres",
        one_refused,
    )
    .await;
}
