//! The store against a real SQLite file and a real PostgreSQL: dedup of the same interchange,
//! leases that expire and are claimed again, a rolled-back transaction that leaves nothing,
//! optimistic concurrency, and two gateway instances sharing the work without doing anything
//! twice.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mako_gateway::acks::{match_acknowledgement, AckMatch, Acknowledgement};
use mako_gateway::orders::{
    GridFeeReduction, GridFeeStatus, MeterOrder, MeterStatus, MeterType, ReductionType,
};
use mako_gateway::store::*;
use serde_json::json;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap()
}

fn seconds(s: i64) -> chrono::Duration {
    chrono::Duration::seconds(s)
}

const LEASE: Duration = Duration::from_secs(30);

fn inbound(partner: &str, reference: Option<&str>) -> InboundRecord {
    InboundRecord {
        partner: partner.to_string(),
        transport: Transport::File,
        interchange_ref: reference.map(str::to_string),
        message_refs: vec!["1".into()],
        pids: vec!["19133".into()],
        message_types: vec!["ORDRSP".into()],
        document_numbers: vec!["DOC1".into()],
        raw: b"UNA:+.? 'UNB+UNOC:3+9904292000003:500+...'\x00\xff".to_vec(),
        received_at: t0(),
    }
}

fn reduction(subscription: &str) -> GridFeeReduction {
    GridFeeReduction {
        id: new_id("gfr", mako_gateway::clock::Clock::system().now()),
        subscription: subscription.to_string(),
        reduction_type: ReductionType::Module1,
        market_location: "51238696781".parse().unwrap(),
        grid_operator: "9904292000003".parse().unwrap(),
        meter_type: MeterType::Smart,
        status: GridFeeStatus::Intended,
        product: None,
        order_document: None,
        accepted: false,
        valid_from: None,
        valid_until: None,
        rejection: None,
    }
}

fn meter(subscription: &str) -> MeterOrder {
    MeterOrder {
        id: new_id("mor", mako_gateway::clock::Clock::system().now()),
        subscription: subscription.to_string(),
        market_location: "51238696781".parse().unwrap(),
        metering_location: None,
        metering_operator: "9903829000006".parse().unwrap(),
        customer_contact: None,
        status: MeterStatus::Created,
        order_document: None,
        appointment_at: None,
        installed_at: None,
        installation: None,
        activated_at: None,
        cancelled_reason: None,
        blocked_at: None,
        blocked_reason: None,
    }
}

on_both! {
    the_same_interchange_is_journaled_and_claimed_once => journal_dedup;
    an_expired_lease_makes_work_claimable_again => lease_expiry;
    a_rolled_back_transaction_leaves_nothing => rollback_leaves_nothing;
    orders_are_saved_with_optimistic_concurrency => optimistic_concurrency;
    order_lists_filter_and_page_by_cursor => lists_and_cursors;
    sent_messages_serve_the_acknowledgement_lookup => sent_lookup;
    two_instances_claim_every_item_exactly_once => two_workers;
    a_transaction_that_reads_then_writes_is_not_refused_after_another_writer => read_then_write;
    two_instances_never_hand_out_the_same_reference => disjoint_references;
    unsent_references_are_found_by_what_the_waiting_interchanges_carry => unsent_references;
    the_bytes_of_an_interchange_are_written_once_and_survive_its_state_changes => raw_written_once;
    a_large_interchange_is_stored_in_parts_and_read_back_whole => raw_in_parts;
}

/// An interchange larger than a part (`RAW_PART_BYTES`) is stored as several rows (each a
/// statement's worth of copies at most) and read back byte for byte by the claim (one among
/// small ones), by its download and by its item; an empty one keeps one empty part.
async fn raw_in_parts(stores: Vec<Store>) {
    let store = &stores[0];
    let part = mako_gateway::store::RAW_PART_BYTES;
    let mut large = inbound("9904292000003", Some("BIG0000001"));
    // Every byte value, so that a part out of order or cut short shows.
    large.raw = (0..part * 2 + part / 2 + 7)
        .map(|i| (i % 251) as u8)
        .collect();
    let small = inbound("9904292000003", Some("SMALL00001"));
    let mut empty = inbound("9904292000003", Some("EMPTY00001"));
    empty.raw = Vec::new();
    let mut tx = store.begin().await.unwrap();
    let inserted = tx
        .insert_inbound_many(&[&small, &large, &empty])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let ids: Vec<String> = inserted
        .into_iter()
        .map(|i| match i {
            Inserted::New(id) => id,
            other => panic!("new, not {other:?}"),
        })
        .collect();
    for (id, parts) in ids.iter().zip([1, 3, 1]) {
        let stored: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM journal_raw WHERE journal_id = $1",
        )
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(stored, parts, "parts of {id}");
    }
    let mut tx = store.begin().await.unwrap();
    let claimed = tx
        .claim_inbound_batch("w1", t0(), Duration::from_secs(30), 8)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let by_id = |id: &str| claimed.iter().find(|c| c.id == id).unwrap().raw.clone();
    assert_eq!(by_id(&ids[0]), small.raw);
    assert!(
        by_id(&ids[1]) == large.raw,
        "the large interchange read back differs"
    );
    assert!(by_id(&ids[2]).is_empty());
    let mut conn = store.conn().await.unwrap();
    assert!(conn.journal_raw(&ids[1]).await.unwrap().unwrap() == large.raw);
    assert!(conn.journal_item(&ids[1]).await.unwrap().unwrap().raw == large.raw);
    assert_eq!(conn.journal_raw(&ids[2]).await.unwrap().unwrap(), b"");
    assert_eq!(conn.journal_raw("jrn_none").await.unwrap(), None);
}

/// The raw bytes live in `journal_raw`, written once: claiming and finishing the item change
/// its small journal row only (SQLite rewrote a whole record, bytes included, on every state
/// change while they were in it), and the item, its listing and its download still show them.
async fn raw_written_once(stores: Vec<Store>) {
    let store = &stores[0];
    let record = inbound("9904292000003", Some("RAW0000001"));
    let mut tx = store.begin().await.unwrap();
    let Inserted::New(id) = tx.insert_inbound(&record).await.unwrap() else {
        panic!("new");
    };
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let claimed = tx
        .claim_inbound_batch("w1", t0(), Duration::from_secs(30), 8)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].raw, record.raw);
    tx.finish_inbound(&id, "w1", JournalState::Processed, &json!({"ok": true}))
        .await
        .unwrap();
    assert_eq!(tx.journal_raw(&id).await.unwrap().unwrap(), record.raw);
    assert_eq!(tx.journal_item(&id).await.unwrap().unwrap().raw, record.raw);
    tx.commit().await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal_raw WHERE journal_id = $1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1);
    let size: i64 = sqlx::query_scalar("SELECT size FROM journal WHERE id = $1")
        .bind(&id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(size, record.raw.len() as i64);
    // The journal row itself holds no bytes any more.
    assert!(sqlx::query("SELECT raw FROM journal")
        .fetch_all(store.pool())
        .await
        .is_err());
}

/// Which of our references stand in an interchange still waiting in the outbox for a partner:
/// its UNB, UNH and BGM references as whole values (not a value elsewhere, not part of a
/// longer one), each reported once in the order asked, other partners' items and sent items
/// ignored, across many payloads; the bytes an order item keeps when it is built count too,
/// and items queued without their references (before migration 0010) are indexed when the
/// store opens.
async fn unsent_references(stores: Vec<Store>) {
    let store = &stores[0];
    let vnb = "9904292000003";
    let ack = |partner: &str, unb: &str, unh: &str, bgm: &str| NewOutboxItem {
        kind: OutboxKind::Ack,
        order: None,
        partner: partner.to_string(),
        payload: Some(
            format!(
                "UNA:+.? 'UNB+UNOC:3+9900000000003:500+{partner}:500+261207:0800+{unb}'\
                 UNH+{unh}+APERAK:D:07B:UN:2.1i'BGM+313+{bgm}'RFF+ACE:MGX0009'\
                 UNT+4+{unh}'UNZ+1+{unb}'"
            )
            .into_bytes(),
        ),
        journal_id: None,
    };
    let mut items: Vec<NewOutboxItem> = (0..200)
        .map(|i| {
            ack(
                vnb,
                &format!("AK{i:08}"),
                &format!("AM{i:08}"),
                &format!("AD{i:08}"),
            )
        })
        .collect();
    items.push(ack(vnb, "MG00000077", "MG00000077", "DOC42"));
    items.push(ack("9900000000011", "MG00000088", "1", "DOC88"));
    items.push(ack(vnb, "MG00000099", "1", "DOC99"));
    let mut tx = store.begin().await.unwrap();
    let ids = tx.add_outbox_items(&items, t0()).await.unwrap();
    tx.commit().await.unwrap();
    // The last one leaves: what it names is no longer being sent.
    let sent = ids.last().unwrap();
    sqlx::query("UPDATE outbox SET state = 'sent' WHERE id = $1")
        .bind(sent.as_str())
        .execute(store.pool())
        .await
        .unwrap();
    let asked = [
        "DOC42",      // a BGM document number
        "MG00000088", // only in another partner's item
        "DOC4",       // part of a longer value
        "MGX0009",    // in an RFF: not a reference of ours
        "AM00000150", // a UNH reference in one of many payloads
        "AK00000151", // a UNB reference
        "MG00000077", // UNB and UNH, asked twice
        "MG00000077",
        "DOC99", // sent
        "",
    ];
    let expected = ["DOC42", "AM00000150", "AK00000151", "MG00000077"];
    let found = store
        .conn()
        .await
        .unwrap()
        .unsent_references(&[vnb.to_string()], &asked)
        .await
        .unwrap();
    assert_eq!(found, expected);

    // An order item gets its bytes when it is built, while claimed.
    let order = NewOutboxItem {
        kind: OutboxKind::Order,
        order: Some((OrderKind::GridFeeReduction, "gfr_x".into())),
        partner: vnb.to_string(),
        payload: None,
        journal_id: None,
    };
    store
        .conn()
        .await
        .unwrap()
        .add_outbox(&order, t0())
        .await
        .unwrap();
    let mut conn = store.conn().await.unwrap();
    let mut claimed = conn
        .claim_outbox("w1", t0() + seconds(1), LEASE)
        .await
        .unwrap();
    while claimed.as_ref().is_some_and(|c| c.payload.is_some()) {
        claimed = conn
            .claim_outbox("w1", t0() + seconds(1), LEASE)
            .await
            .unwrap();
    }
    let claimed = claimed.expect("the order item");
    let built = ack(vnb, "MG00000100", "1", "MG00000101").payload.unwrap();
    conn.set_outbox_payload(&claimed.id, "w1", &built)
        .await
        .unwrap();
    let found = conn
        .unsent_references(&[vnb.to_string()], &["MG00000101", "MG00000100"])
        .await
        .unwrap();
    assert_eq!(found, ["MG00000101", "MG00000100"]);
    drop(conn);

    // Items queued before their references were recorded: indexed when the store opens
    // (`tests/migrations.rs` opens one), by this.
    sqlx::query("DELETE FROM outbox_reference")
        .execute(store.pool())
        .await
        .unwrap();
    assert!(store
        .conn()
        .await
        .unwrap()
        .unsent_references(&[vnb.to_string()], &asked)
        .await
        .unwrap()
        .is_empty());
    let mut conn = store.conn().await.unwrap();
    // Every unsent item (the one marked sent is left alone).
    assert_eq!(conn.index_unindexed_outbox().await.unwrap(), items.len());
    assert_eq!(conn.index_unindexed_outbox().await.unwrap(), 0);
    let found = conn
        .unsent_references(&[vnb.to_string()], &asked)
        .await
        .unwrap();
    assert_eq!(found, expected);
}

async fn disjoint_references(stores: Vec<Store>) {
    // Two instances, two loops each, taking blocks of 12 as the inbound worker does, across
    // several refills of the in-memory block.
    let mut tasks = Vec::new();
    for store in stores.iter().chain(stores.iter()) {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut firsts = Vec::new();
            for _ in 0..200 {
                firsts.push(store.reserve_references(12).await.unwrap());
            }
            firsts
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for first in t.await.unwrap() {
            for r in first..first + 12 {
                assert!(seen.insert(r), "reference {r} handed out twice");
            }
        }
    }
    assert_eq!(seen.len(), 4 * 200 * 12);
}

async fn journal_dedup(stores: Vec<Store>) {
    let store = &stores[0];
    let first = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("9904292000003", Some("REF1")))
        .await
        .unwrap();
    let Inserted::New(id) = &first else {
        panic!("first delivery must be new, got {first:?}")
    };
    // The same interchange again, also through the other instance.
    let again = stores[1]
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("9904292000003", Some("REF1")))
        .await
        .unwrap();
    assert_eq!(again, Inserted::Duplicate(id.clone()));
    // Another sender may use the same reference.
    let other = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("9903829000006", Some("REF1")))
        .await
        .unwrap();
    assert!(matches!(other, Inserted::New(ref o) if o != id));
    // Unreadable interchanges (no reference) are each kept.
    let a = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("", None))
        .await
        .unwrap();
    let b = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("", None))
        .await
        .unwrap();
    assert!(matches!((&a, &b), (Inserted::New(x), Inserted::New(y)) if x != y));

    let stored = store
        .conn()
        .await
        .unwrap()
        .journal_item(id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.raw, inbound("", None).raw, "raw bytes kept exactly");
    assert_eq!(stored.direction, Direction::In);
    assert_eq!(stored.state, JournalState::Received);
    assert_eq!(stored.pids, vec!["19133".to_string()]);
    assert_eq!(stored.message_types, vec!["ORDRSP".to_string()]);

    let mut claimed = Vec::new();
    while let Some(item) = store
        .conn()
        .await
        .unwrap()
        .claim_inbound("w1", t0(), LEASE)
        .await
        .unwrap()
    {
        claimed.push(item.id);
    }
    assert_eq!(
        claimed.len(),
        4,
        "REF1 once, the other sender's REF1, two unreadable"
    );
    assert_eq!(claimed.iter().filter(|c| *c == id).count(), 1);
}

async fn lease_expiry(stores: Vec<Store>) {
    let store = &stores[0];
    let Inserted::New(jid) = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("9904292000003", Some("L1")))
        .await
        .unwrap()
    else {
        panic!("new")
    };
    let first = store
        .conn()
        .await
        .unwrap()
        .claim_inbound("crashed", t0(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id.as_str(), first.attempts), (jid.as_str(), 1));
    assert!(
        store
            .conn()
            .await
            .unwrap()
            .claim_inbound("w2", t0() + seconds(29), LEASE)
            .await
            .unwrap()
            .is_none(),
        "lease still held"
    );
    let again = store
        .conn()
        .await
        .unwrap()
        .claim_inbound("w2", t0() + seconds(31), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id.as_str(), again.attempts), (jid.as_str(), 2));
    // The worker that lost its lease cannot finish the item.
    let mut tx = store.begin().await.unwrap();
    let lost = tx
        .finish_inbound(&jid, "crashed", JournalState::Processed, &json!({}))
        .await;
    assert!(
        matches!(lost, Err(StoreError::LeaseLost { .. })),
        "{lost:?}"
    );
    drop(tx);
    let mut tx = store.begin().await.unwrap();
    tx.finish_inbound(
        &jid,
        "w2",
        JournalState::Processed,
        &json!({"matched": "gfr_x"}),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(
        store
            .conn()
            .await
            .unwrap()
            .claim_inbound("w3", t0() + seconds(3600), LEASE)
            .await
            .unwrap()
            .is_none(),
        "processed items stay done"
    );
    let done = store
        .conn()
        .await
        .unwrap()
        .journal_item(&jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.state, done.outcome.map(|o| o.value().unwrap())),
        (JournalState::Processed, Some(json!({"matched": "gfr_x"})))
    );

    // Outbox: lease expiry, retry with backoff, park.
    let mut tx = store.begin().await.unwrap();
    let oid = tx
        .add_outbox(
            &NewOutboxItem::order(OrderKind::GridFeeReduction, "gfr_1", "9904292000003"),
            t0(),
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let o = store
        .conn()
        .await
        .unwrap()
        .claim_outbox("crashed", t0(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.id.as_str(), o.state),
        (oid.as_str(), OutboxState::InFlight)
    );
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w2", t0() + seconds(10), LEASE)
        .await
        .unwrap()
        .is_none());
    let o = store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w2", t0() + seconds(31), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.attempts, 2);
    store
        .conn()
        .await
        .unwrap()
        .retry_outbox(&oid, "w2", t0() + seconds(120), "partner unreachable")
        .await
        .unwrap();
    assert!(
        store
            .conn()
            .await
            .unwrap()
            .claim_outbox("w2", t0() + seconds(60), LEASE)
            .await
            .unwrap()
            .is_none(),
        "backoff respected"
    );
    let o = store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w2", t0() + seconds(121), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(o.last_error.as_deref(), Some("partner unreachable"));
    store
        .conn()
        .await
        .unwrap()
        .park_outbox(&oid, "w2", "recipient unknown")
        .await
        .unwrap();
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w2", t0() + seconds(9999), LEASE)
        .await
        .unwrap()
        .is_none());
    let parked = store
        .conn()
        .await
        .unwrap()
        .list_outbox(
            Some(OutboxState::Parked),
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(parked.items.len(), 1);
    assert_eq!(
        parked.items[0].last_error.as_deref(),
        Some("recipient unknown")
    );

    // Webhooks the same way.
    let mut tx = store.begin().await.unwrap();
    let event = WebhookEvent::new("meter_order.placed", json!({"meter_order": "mor_1"}), t0());
    tx.add_webhook(&event, t0()).await.unwrap();
    tx.commit().await.unwrap();
    let w = store
        .conn()
        .await
        .unwrap()
        .claim_webhook("crashed", t0(), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(w.id, event.id);
    let payload: serde_json::Value = serde_json::from_str(&w.payload).unwrap();
    assert_eq!(payload["topic"], "meter_order.placed");
    assert_eq!(payload["context"]["meter_order"], "mor_1");
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_webhook("w2", t0() + seconds(5), LEASE)
        .await
        .unwrap()
        .is_none());
    let w = store
        .conn()
        .await
        .unwrap()
        .claim_webhook("w2", t0() + seconds(31), LEASE)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        store
            .conn()
            .await
            .unwrap()
            .mark_webhook_delivered(&w.id, "crashed", t0() + seconds(32))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
    store
        .conn()
        .await
        .unwrap()
        .mark_webhook_delivered(&w.id, "w2", t0() + seconds(32))
        .await
        .unwrap();
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_webhook("w2", t0() + seconds(9999), LEASE)
        .await
        .unwrap()
        .is_none());
}

async fn rollback_leaves_nothing(stores: Vec<Store>) {
    let store = &stores[0];
    let Inserted::New(jid) = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&inbound("9904292000003", Some("TX1")))
        .await
        .unwrap()
    else {
        panic!("new")
    };
    store
        .conn()
        .await
        .unwrap()
        .claim_inbound("w1", t0(), LEASE)
        .await
        .unwrap()
        .unwrap();
    let order = reduction("sub-tx");

    // Everything one inbound message changes, then no commit (a crash before commit).
    {
        let mut tx = store.begin().await.unwrap();
        tx.insert_grid_fee(&order, None, t0()).await.unwrap();
        tx.add_history(&HistoryEntry {
            order_kind: OrderKind::GridFeeReduction,
            order_id: order.id.clone(),
            from: None,
            to: "intended".into(),
            topic: None,
            journal_id: Some(jid.clone()),
            at: t0(),
            detail: None,
        })
        .await
        .unwrap();
        tx.add_webhook(
            &WebhookEvent::new("grid_fee_reduction.ordered", json!({}), t0()),
            t0(),
        )
        .await
        .unwrap();
        tx.add_outbox(
            &NewOutboxItem::order(OrderKind::GridFeeReduction, &order.id, "9904292000003"),
            t0(),
        )
        .await
        .unwrap();
        tx.add_clearing(&jid, "nothing matched", t0())
            .await
            .unwrap();
        tx.record_sent(
            &SentRecord {
                partner: "9904292000003".into(),
                interchange_ref: "OUT1".into(),
                message_ref: "1".into(),
                document_number: "D1".into(),
                order: Some((OrderKind::GridFeeReduction, order.id.clone())),
                pass_through: None,
                journal_id: jid.clone(),
            },
            t0(),
        )
        .await
        .unwrap();
        tx.confirm_subscription("sub-tx", t0()).await.unwrap();
        tx.finish_inbound(&jid, "w1", JournalState::Processed, &json!({}))
            .await
            .unwrap();
        tx.rollback().await.unwrap();
    }
    assert_eq!(
        store
            .conn()
            .await
            .unwrap()
            .grid_fee(&order.id)
            .await
            .unwrap(),
        None
    );
    assert!(store
        .conn()
        .await
        .unwrap()
        .history(&order.id)
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_webhook("w", t0(), LEASE)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w", t0(), LEASE)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .conn()
        .await
        .unwrap()
        .list_clearing(
            true,
            &PageRequest {
                cursor: None,
                limit: 10
            }
        )
        .await
        .unwrap()
        .items
        .is_empty());
    assert!(store
        .conn()
        .await
        .unwrap()
        .sent_by_interchange("9904292000003", "OUT1")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .conn()
            .await
            .unwrap()
            .subscription_confirmed("sub-tx")
            .await
            .unwrap(),
        None
    );
    let item = store
        .conn()
        .await
        .unwrap()
        .journal_item(&jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        item.state,
        JournalState::Processing,
        "still leased, not processed"
    );
    // After the lease, the item is processed again; a committed transaction keeps everything.
    store
        .conn()
        .await
        .unwrap()
        .claim_inbound("w2", t0() + seconds(31), LEASE)
        .await
        .unwrap()
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.insert_grid_fee(&order, None, t0()).await.unwrap();
    tx.add_clearing(&jid, "nothing matched", t0())
        .await
        .unwrap();
    tx.finish_inbound(&jid, "w2", JournalState::Processed, &json!({}))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert!(store
        .conn()
        .await
        .unwrap()
        .grid_fee(&order.id)
        .await
        .unwrap()
        .is_some());
    let clearing = store
        .conn()
        .await
        .unwrap()
        .list_clearing(
            false,
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(clearing.items.len(), 1);
    assert_eq!(clearing.items[0].partner.as_deref(), Some("9904292000003"));
    assert_eq!(clearing.items[0].interchange_ref.as_deref(), Some("TX1"));
}

async fn optimistic_concurrency(stores: Vec<Store>) {
    let store = &stores[0];
    let order = reduction("sub-oc");
    let day = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
    let mut tx = store.begin().await.unwrap();
    let record = tx.insert_grid_fee(&order, Some(day), t0()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(record.version, 1);

    let applied = order
        .clone()
        .ordered(mako_gateway::orders::ModuleProduct::Module1, "DOC9".into())
        .unwrap();
    let mut tx = stores[0].begin().await.unwrap();
    assert_eq!(
        tx.save_grid_fee(&applied.order, 1, t0() + seconds(1))
            .await
            .unwrap(),
        2
    );
    tx.commit().await.unwrap();
    // A second writer that read version 1 loses.
    let mut tx = stores[1].begin().await.unwrap();
    let stale = tx.save_grid_fee(&order, 1, t0() + seconds(2)).await;
    assert!(
        matches!(stale, Err(StoreError::VersionConflict { expected: 1, .. })),
        "{stale:?}"
    );
    drop(tx);
    let read = store
        .conn()
        .await
        .unwrap()
        .grid_fee(&order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (read.order.status, read.version, read.effective_date),
        (GridFeeStatus::Ordered, 2, Some(day))
    );
    let mut tx = store.begin().await.unwrap();
    let found = tx
        .grid_fee_reductions_for_matching(None, Some("DOC9"))
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    drop(tx);

    // One meter order per subscription, ever: the database says so too.
    let mut tx = store.begin().await.unwrap();
    tx.insert_meter_order(&meter("sub-oc"), None, t0())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = store.begin().await.unwrap();
    let second = tx.insert_meter_order(&meter("sub-oc"), None, t0()).await;
    assert!(
        matches!(second, Err(StoreError::DuplicateMeterOrder { .. })),
        "{second:?}"
    );
}

async fn lists_and_cursors(stores: Vec<Store>) {
    let store = &stores[0];
    let mut ids = Vec::new();
    let mut tx = store.begin().await.unwrap();
    for i in 0..7 {
        let mut order = reduction(if i % 2 == 0 { "sub-even" } else { "sub-odd" });
        if i == 3 {
            order.status = GridFeeStatus::Rejected;
        }
        tx.insert_grid_fee(&order, None, t0()).await.unwrap();
        ids.push(order.id);
    }
    tx.commit().await.unwrap();
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .conn()
            .await
            .unwrap()
            .list_grid_fees(
                &OrderFilter::default(),
                &PageRequest {
                    cursor: cursor.clone(),
                    limit: 3,
                },
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.order.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, ids, "every order once, in creation order");
    let even = store
        .conn()
        .await
        .unwrap()
        .list_grid_fees(
            &OrderFilter {
                subscription: Some("sub-even".into()),
                status: None,
            },
            &PageRequest {
                cursor: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    assert_eq!(even.next_cursor, None);
    let rejected = store
        .conn()
        .await
        .unwrap()
        .list_grid_fees(
            &OrderFilter {
                subscription: None,
                status: Some("rejected".into()),
            },
            &PageRequest {
                cursor: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        rejected
            .items
            .iter()
            .map(|r| &r.order.id)
            .collect::<Vec<_>>(),
        vec![&ids[3]]
    );
    let counts = store.conn().await.unwrap().counts().await.unwrap();
    assert!(
        counts
            .grid_fee_reductions
            .contains(&("intended".to_string(), 6)),
        "{counts:?}"
    );
}

async fn sent_lookup(stores: Vec<Store>) {
    let store = &stores[0];
    let partner = "9904292000003";
    let mut tx = store.begin().await.unwrap();
    let jid = tx
        .insert_outbound_journal(&OutboundRecord {
            id: None,
            partner: partner.into(),
            transport: Transport::File,
            interchange_ref: "MG0001".into(),
            message_refs: vec!["MG0002".into()],
            pids: vec!["17133".into()],
            message_types: vec!["ORDERS".into()],
            document_numbers: vec!["MG0003".into()],
            raw: b"UNB...".to_vec(),
            sent_at: t0(),
        })
        .await
        .unwrap();
    tx.record_sent(
        &SentRecord {
            partner: partner.into(),
            interchange_ref: "MG0001".into(),
            message_ref: "MG0002".into(),
            document_number: "MG0003".into(),
            order: Some((OrderKind::GridFeeReduction, "gfr_a".into())),
            pass_through: None,
            journal_id: jid.clone(),
        },
        t0(),
    )
    .await
    .unwrap();
    let snapshot = tx
        .sent_snapshot(partner, &["MG0001"], &["MG0003"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(snapshot.messages.len(), 1);
    let out = store
        .conn()
        .await
        .unwrap()
        .journal_item(&jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((out.direction, out.sent_at), (Direction::Out, Some(t0())));
    let by_doc = store
        .conn()
        .await
        .unwrap()
        .sent_by_document(partner, "MG0003")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_doc.order.as_deref(), Some("gfr_a"));
    assert!(
        store
            .conn()
            .await
            .unwrap()
            .sent_by_document("9903829000006", "MG0003")
            .await
            .unwrap()
            .is_none(),
        "other partner"
    );
    // The acknowledgement logic matches against the store's snapshot.
    let aperak = Acknowledgement::Aperak {
        positive: false,
        interchange_reference: Some("MG0001".into()),
        document_number: Some("MG0003".into()),
        transaction_reference: None,
        errors: vec![],
    };
    let matched = match_acknowledgement(&aperak, partner, &snapshot);
    assert!(
        matches!(matched, AckMatch::Rejected { ref messages, .. } if messages[0].order.as_deref() == Some("gfr_a")),
        "{matched:?}"
    );
    let unmatched = match_acknowledgement(&aperak, "9903829000006", &snapshot);
    assert!(matches!(unmatched, AckMatch::Unmatched { .. }));
}

/// Items per queue in the two-worker test.
const ITEMS: usize = 500;
/// Concurrent claim loops per instance.
const LOOPS_PER_INSTANCE: usize = 4;

async fn two_workers(stores: Vec<Store>) {
    let mut tx = stores[0].begin().await.unwrap();
    for i in 0..ITEMS {
        tx.insert_inbound(&inbound("9904292000003", Some(&format!("W{i:04}"))))
            .await
            .unwrap();
        tx.add_outbox(
            &NewOutboxItem::order(OrderKind::MeterOrder, &format!("mor_{i}"), "9903829000006"),
            t0(),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();

    let mut tasks = Vec::new();
    for (instance, store) in stores.iter().enumerate() {
        for n in 0..LOOPS_PER_INSTANCE {
            let store = store.clone();
            let worker = format!("instance{instance}-loop{n}");
            tasks.push(tokio::spawn(async move {
                let mut journal = Vec::new();
                let mut outbox = Vec::new();
                loop {
                    let mut idle = true;
                    if let Some(item) = store
                        .conn()
                        .await
                        .unwrap()
                        .claim_inbound(&worker, t0(), LEASE)
                        .await
                        .unwrap()
                    {
                        let mut tx = store.begin().await.unwrap();
                        tx.finish_inbound(
                            &item.id,
                            &worker,
                            JournalState::Processed,
                            &json!({"by": worker}),
                        )
                        .await
                        .unwrap();
                        tx.commit().await.unwrap();
                        journal.push(item.id);
                        idle = false;
                    }
                    if let Some(item) = store
                        .conn()
                        .await
                        .unwrap()
                        .claim_outbox(&worker, t0(), LEASE)
                        .await
                        .unwrap()
                    {
                        store
                            .conn()
                            .await
                            .unwrap()
                            .mark_outbox_sent(&item.id, &worker, t0())
                            .await
                            .unwrap();
                        outbox.push(item.id);
                        idle = false;
                    }
                    if idle {
                        return (instance, journal, outbox);
                    }
                }
            }));
        }
    }
    let mut journal = Vec::new();
    let mut outbox = Vec::new();
    let mut per_instance = [0usize; 2];
    for t in tasks {
        let (instance, j, o) = t.await.unwrap();
        per_instance[instance] += j.len() + o.len();
        journal.extend(j);
        outbox.extend(o);
    }
    let unique_journal: HashSet<&String> = journal.iter().collect();
    let unique_outbox: HashSet<&String> = outbox.iter().collect();
    assert_eq!(
        (journal.len(), unique_journal.len()),
        (ITEMS, ITEMS),
        "every journal item claimed exactly once"
    );
    assert_eq!(
        (outbox.len(), unique_outbox.len()),
        (ITEMS, ITEMS),
        "every outbox item claimed exactly once"
    );
    assert!(
        per_instance.iter().all(|n| *n > 0),
        "both instances took work: {per_instance:?}"
    );
    let counts = stores[1].conn().await.unwrap().counts().await.unwrap();
    assert_eq!(counts.outbox, vec![("sent".to_string(), ITEMS as i64)]);
    assert_eq!(
        counts.journal,
        vec![("in/processed".to_string(), ITEMS as i64)]
    );
}

#[tokio::test]
async fn a_sqlite_url_creates_its_directories_and_other_urls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/store.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    assert_eq!(store.backend(), Backend::Sqlite);
    store.ping().await.unwrap();
    store.close().await;
    // Opening it again applies no migration twice.
    let again = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    again.close().await;
    let refused = Store::connect("mysql://user:secret@localhost/db")
        .await
        .unwrap_err();
    let text = refused.to_string();
    assert!(
        text.contains("not supported") && !text.contains("secret"),
        "{text}"
    );
    assert!(matches!(
        Store::connect("sqlite::memory:").await,
        Err(StoreError::UnsupportedUrl { .. })
    ));
}

/// Regression (found by tests/daemon.rs: `POST /meter-orders/{id}/cancel` answered 500
/// "database is locked" while the daemon's loops were writing): a SQLite transaction began
/// as DEFERRED takes its read snapshot at the first SELECT and cannot upgrade to a writer
/// once another connection committed since; SQLite refuses that at once, without waiting
/// for the busy timeout. Every read-then-write transaction (the API's, the inbound path's)
/// must therefore take the write lock when it begins.
async fn read_then_write(stores: Vec<Store>) {
    let mut setup = stores[0].begin().await.unwrap();
    let order = reduction("sub-rw");
    setup.insert_grid_fee(&order, None, t0()).await.unwrap();
    setup.commit().await.unwrap();

    // Instance 1 reads the order ...
    let mut tx = stores[0].begin().await.unwrap();
    let record = tx.grid_fee(&order.id).await.unwrap().unwrap();
    // ... instance 2 writes and commits meanwhile (or waits for instance 1's lock) ...
    let other = stores[1].clone();
    let writer = tokio::spawn(async move {
        let mut tx = other.begin().await?;
        tx.insert_grid_fee(&reduction("sub-rw-2"), None, t0())
            .await?;
        tx.commit().await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ... and instance 1 writes what it read.
    let mut changed = record.order.clone();
    changed.status = GridFeeStatus::Ordered;
    tx.save_grid_fee(&changed, record.version, t0() + seconds(1))
        .await
        .expect("the read-then-write transaction is refused");
    tx.commit().await.unwrap();
    writer.await.unwrap().expect("the other writer failed");
    let saved = stores[0]
        .conn()
        .await
        .unwrap()
        .grid_fee(&order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.order.status, GridFeeStatus::Ordered);
    assert_eq!(saved.version, record.version + 1);
}

/// Issue 15 defect 9: the SQLite file holds every raw interchange; it and its folder are
/// created readable by the gateway's user alone, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn regression_the_database_file_and_its_folder_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("data");
    let file = folder.join("gateway.db");
    let store = Store::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&folder), 0o700);
    assert_eq!(mode(&file), 0o600);
    store.close().await;
}
