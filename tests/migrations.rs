//! Migrations applied to a database that already holds data (the tests' stores start empty).
//!
//! Migration 0009 moves the journal's raw bytes into `journal_raw` and drops the column: on a
//! real SQLite file with migrations 0001-0008 applied and journal rows written the old way,
//! every row keeps its bytes (binary ones too) and gets its size.
//!
//! Migration 0011 stores the bytes in parts: every row written before becomes its part 0.
//!
//! Migration 0010 adds the references of outbox items; items queued before it are indexed when
//! the store opens.

use sqlx::{Connection, Executor};

const BEFORE_0009: [&str; 8] = [
    include_str!("../migrations/0001_init.sql"),
    include_str!("../migrations/0002_references.sql"),
    include_str!("../migrations/0003_mail.sql"),
    include_str!("../migrations/0004_as4.sql"),
    include_str!("../migrations/0005_messages.sql"),
    include_str!("../migrations/0006_deadlines.sql"),
    include_str!("../migrations/0007_console.sql"),
    include_str!("../migrations/0008_as4_one_commit.sql"),
];

#[tokio::test]
async fn the_journal_bytes_move_to_their_own_table_then_into_parts_with_the_data_in_place() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    for sql in BEFORE_0009 {
        conn.execute(sqlx::raw_sql(sql)).await.unwrap();
    }
    // Journal rows as gateways before 0009 wrote them, then 0009 as the migrator applies it.
    let interchanges: [(&str, &[u8]); 2] = [
        (
            "jrn_a",
            b"UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+261207:0800+A1'UNZ+0+A1'",
        ),
        ("jrn_b", b"\x00\xff binary \xe4 bytes"),
    ];
    for (id, raw) in interchanges {
        sqlx::query(
            "INSERT INTO journal (id, direction, partner, transport, interchange_ref, \
             message_refs, pids, message_types, document_numbers, raw, received_at, state, \
             attempts) VALUES ($1, 'in', '9900000000011', 'file', $1, '[]', '[]', '[]', '[]', \
             $2, 0, 'processed', 1)",
        )
        .bind(id)
        .bind(raw)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.execute(sqlx::raw_sql(include_str!(
        "../migrations/0009_journal_raw.sql"
    )))
    .await
    .unwrap();
    for (id, raw) in interchanges {
        let moved: Vec<u8> =
            sqlx::query_scalar("SELECT raw FROM journal_raw WHERE journal_id = $1")
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(moved, raw);
        let size: i64 = sqlx::query_scalar("SELECT size FROM journal WHERE id = $1")
            .bind(id)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(size, raw.len() as i64);
    }
    assert!(conn.execute("SELECT raw FROM journal").await.is_err());
    // 0010, then 0011 puts the bytes in parts: each row written before is its part 0.
    for sql in [
        include_str!("../migrations/0010_outbox_reference.sql"),
        include_str!("../migrations/0011_journal_raw_parts.sql"),
    ] {
        conn.execute(sqlx::raw_sql(sql)).await.unwrap();
    }
    for (id, raw) in interchanges {
        let parts: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT part, raw FROM journal_raw WHERE journal_id = $1")
                .bind(id)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(parts, [(0, raw.to_vec())]);
    }
}

#[tokio::test]
async fn outbox_items_queued_before_their_references_were_recorded_are_indexed_on_opening() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
    let store = mako_gateway::store::Store::connect(&url).await.unwrap();
    let vnb = "9904292000003";
    let payload = format!(
        "UNA:+.? 'UNB+UNOC:3+9900000000003:500+{vnb}:500+261207:0800+MG00000007'\
         UNH+1+APERAK:D:07B:UN:2.1i'BGM+313+DOC7'UNT+3+1'UNZ+1+MG00000007'"
    );
    let item = mako_gateway::store::NewOutboxItem {
        kind: mako_gateway::store::OutboxKind::Ack,
        order: None,
        partner: vnb.to_string(),
        payload: Some(payload.into_bytes()),
        journal_id: None,
    };
    let now = chrono::DateTime::from_timestamp(1_796_630_400, 0).unwrap();
    store
        .conn()
        .await
        .unwrap()
        .add_outbox(&item, now)
        .await
        .unwrap();
    // As a gateway before 0010 left it: the item without its references.
    sqlx::query("DELETE FROM outbox_reference")
        .execute(store.pool())
        .await
        .unwrap();
    store.close().await;
    let reopened = mako_gateway::store::Store::connect(&url).await.unwrap();
    let found = reopened
        .conn()
        .await
        .unwrap()
        .unsent_references(&[vnb.to_string()], &["DOC7", "MG00000007", "1"])
        .await
        .unwrap();
    assert_eq!(found, ["DOC7", "MG00000007", "1"]);
    reopened.close().await;
}
