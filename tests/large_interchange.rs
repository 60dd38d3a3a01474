//! One interchange of many messages through the inbound path on a real SQLite file and a real
//! PostgreSQL: every multi-row statement stays under the database's limit of bound values.
//!
//! Regression (issue 16, found by `cargo bench --bench memory`): an MSCONS interchange of
//! 27,205 messages made the single `INSERT` of its `message.received` webhook events exceed
//! SQLite's 32,766 variables ("too many SQL variables"); the item was handed back and claimed
//! again for ever, never processed. 8,400 messages (4 values per event: 33,600) fail the same
//! way without statements of at most `ROWS_PER_STATEMENT` rows.

mod support;

use chrono::{DateTime, TimeZone, Utc};
use mako_gateway::config::Config;
use mako_gateway::daemon::setup::Setup;
use mako_gateway::store::{Backend, Inserted, Store, Transport};
use mako_gateway::worker::inbound::{InboundWorker, INBOUND_BATCH};
use mako_gateway::worker::receive::Journal;

const MESSAGES: usize = 8_400;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 7, 8, 0, 0).unwrap()
}

/// An interchange of `n` small MSCONS messages (one quarter hour each) from the grid operator.
fn many_meter_readings(n: usize) -> Vec<u8> {
    let mut text = String::from(
        "UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+261207:0800+MANY0000001'",
    );
    for i in 1..=n {
        text.push_str(&format!(
            "UNH+{i}+MSCONS:D:04B:UN:2.4c'BGM+7+MV{i:010}+9'DTM+137:202612070800?+00:303'\
             RFF+Z13:13017'NAD+MS+9900000000011::293'NAD+MR+9900000000003::293'UNS+D'NAD+DP'\
             LOC+172+DE00{i:029}'LIN+1'PIA+5+1-1?:1.29.0:SRW'QTY+220:1.000'\
             DTM+163:202612060800?+00:303'DTM+164:202612060815?+00:303'UNT+15+{i}'"
        ));
    }
    text.push_str(&format!("UNZ+{n}+MANY0000001'"));
    text.into_bytes()
}

/// The inbound worker `serve` makes with the default configuration, at [`now`].
fn inbound_worker(store: &Store, name: &str) -> InboundWorker {
    let config = Config::load(None, &|_| None).expect("default configuration");
    let setup = Setup::load(&config, &mako_gateway::clock::Clock::fixed(now())).expect("setup");
    setup.inbound_worker(store, name)
}

/// Received journal items in state `processed`.
async fn processed_items(store: &Store) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state = 'processed'",
    )
    .await
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn an_interchange_of_many_messages_is_processed_once(stores: Vec<Store>) {
    let store = &stores[0];
    let journal = Journal::new(store.clone());
    let inserted = journal
        .receive(many_meter_readings(MESSAGES), Transport::File, now())
        .await
        .expect("journaled");
    assert!(matches!(inserted, Inserted::New(_)), "{inserted:?}");
    let worker = inbound_worker(store, "large-interchange");
    let processed = worker
        .process_batch(now(), INBOUND_BATCH)
        .await
        .expect("the interchange is processed");
    assert_eq!(processed, Some(1));
    assert_eq!(processed_items(store).await, 1);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM messages WHERE direction = 'in' AND pid = 13017"
        )
        .await,
        MESSAGES as i64
    );
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE topic = 'message.received'"
        )
        .await,
        MESSAGES as i64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interchange_of_many_messages_is_processed_once_on_sqlite() {
    support::on_sqlite(an_interchange_of_many_messages_is_processed_once).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interchange_of_many_messages_is_processed_once_on_postgres() {
    support::on_postgres(
        "an_interchange_of_many_messages_is_processed_once_on_postgres",
        an_interchange_of_many_messages_is_processed_once,
    )
    .await;
}

/// Processing drops an item's bytes once it has read them (they are the largest thing held
/// while the plan is applied, `cargo bench --bench memory`). An attempt that fails after that
/// point is handed back, and the next claim reads the bytes from the store again: the item is
/// processed whole, its journaled bytes unchanged.
async fn an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole(stores: Vec<Store>) {
    const SMALL: usize = 3;
    let store = &stores[0];
    let raw = many_meter_readings(SMALL);
    let journal = Journal::new(store.clone());
    let Inserted::New(id) = journal
        .receive(raw.clone(), Transport::File, now())
        .await
        .expect("journaled")
    else {
        panic!("a new interchange");
    };
    // Refuses the forwarded messages' rows: applying the plan fails after reading.
    let refuse: &[&str] = match store.backend() {
        Backend::Sqlite => &["CREATE TRIGGER refuse BEFORE INSERT ON messages \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"],
        Backend::Postgres => &[
            "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN \
             RAISE EXCEPTION 'refused by the test'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse BEFORE INSERT ON messages FOR EACH ROW \
             EXECUTE FUNCTION refuse()",
        ],
    };
    for statement in refuse {
        sqlx::query(statement).execute(store.pool()).await.unwrap();
    }
    let worker = inbound_worker(store, "failing-once");
    let failed = worker.process_batch(now(), INBOUND_BATCH).await;
    assert!(
        failed
            .as_ref()
            .is_err_and(|e| e.to_string().contains("refused by the test")),
        "{failed:?}"
    );
    let state = "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state = 'received'";
    assert_eq!(
        count(store, state).await,
        1,
        "handed back after the failure"
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM messages").await, 0);

    sqlx::query("DROP TRIGGER refuse ON messages")
        .execute(store.pool())
        .await
        .or(sqlx::query("DROP TRIGGER refuse")
            .execute(store.pool())
            .await)
        .unwrap();
    assert_eq!(
        worker.process_batch(now(), INBOUND_BATCH).await.unwrap(),
        Some(1)
    );
    assert_eq!(processed_items(store).await, 1);
    assert_eq!(
        count(
            store,
            "SELECT COUNT(*) FROM messages WHERE direction = 'in'"
        )
        .await,
        SMALL as i64
    );
    let item = store
        .conn()
        .await
        .unwrap()
        .journal_item(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.raw, raw, "the journaled bytes are unchanged");
    assert_eq!(item.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole_on_sqlite() {
    support::on_sqlite(an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole_on_postgres() {
    support::on_postgres(
        "an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole_on_postgres",
        an_attempt_failing_after_the_bytes_were_read_is_processed_again_whole,
    )
    .await;
}
