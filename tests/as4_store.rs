//! The AS4 state in the store, on a real SQLite file and a real PostgreSQL database:
//! asx-rs's own conformance suites for the dedup store and the audit sink, retention, and the
//! message id fixed before an outbox item's first send.

mod support;

use std::time::Duration;

use asx::testkit::audit::{self as audit_suite, AuditSinkHarness};
use asx::testkit::dedup::{self as dedup_suite, DedupHarness};
use asx::{AuditRecord, BoxFuture};
use chrono::{TimeZone, Utc};
use mako_gateway::store::{DedupClaim, Store};
use mako_gateway::transport::as4::persist::{Dedup, EvidenceStore};
use sqlx::Row;

#[derive(Debug)]
struct DedupOn(Store);

impl DedupHarness for DedupOn {
    type Store = Dedup;
    fn open(&self) -> Dedup {
        // A fresh key space per check: the same table, as several instances share it.
        Dedup::new(
            self.0.clone(),
            self.lease(),
            mako_gateway::clock::Clock::system(),
        )
        .with_namespace(format!(
            "{}/",
            mako_gateway::ids::new_id("db", mako_gateway::clock::Clock::system().now())
        ))
    }
    fn lease(&self) -> Duration {
        // The lease runs on the wall clock (the database's view of time is ours): short
        // enough to wait out for real.
        Duration::from_millis(1500)
    }
}

struct EvidenceOn(Store);

impl AuditSinkHarness for EvidenceOn {
    type Sink = EvidenceStore;
    fn open(&self) -> BoxFuture<'_, EvidenceStore> {
        Box::pin(
            async move { EvidenceStore::new(self.0.clone(), mako_gateway::clock::Clock::system()) },
        )
    }
    fn read_all<'a>(&'a self, _sink: &'a EvidenceStore) -> BoxFuture<'a, Vec<AuditRecord>> {
        Box::pin(async move {
            let rows = sqlx::query("SELECT record FROM as4_evidence")
                .fetch_all(self.0.pool())
                .await
                .expect("read evidence");
            rows.iter()
                .map(|r| {
                    let json: String = r.try_get("record").expect("record column");
                    serde_json::from_str(&json).expect("stored evidence is an audit record")
                })
                .collect()
        })
    }
}

async fn dedup_conforms(stores: Vec<Store>) {
    let failures = dedup_suite::conformance(&DedupOn(stores[0].clone())).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

async fn evidence_conforms(stores: Vec<Store>) {
    let failures = audit_suite::conformance(&EvidenceOn(stores[0].clone())).await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Two instances (two pools on one database) racing for the same message ids: each id is
/// claimed by exactly one of them; after accepting, both see duplicates.
async fn two_instances_claim_each_key_once(stores: Vec<Store>) {
    let now = mako_gateway::clock::Clock::system().now();
    let until = now + chrono::Duration::seconds(60);
    let mut tasks = Vec::new();
    for i in 0..40 {
        for store in &stores {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("BDEW/9900357000004/msg-{i}");
                (
                    key.clone(),
                    store
                        .conn()
                        .await
                        .unwrap()
                        .as4_claim(&key, until, now)
                        .await
                        .unwrap(),
                )
            }));
        }
    }
    let mut claimed = std::collections::BTreeMap::<String, Vec<String>>::new();
    for t in tasks {
        let (key, claim) = t.await.unwrap();
        if let DedupClaim::Claimed(token) = claim {
            claimed.entry(key).or_default().push(token);
        }
    }
    assert_eq!(claimed.len(), 40);
    for (key, tokens) in &claimed {
        assert_eq!(tokens.len(), 1, "{key} claimed {} times", tokens.len());
        assert!(stores[1]
            .conn()
            .await
            .unwrap()
            .as4_accept(key, &tokens[0], now)
            .await
            .unwrap());
        assert_eq!(
            stores[0]
                .conn()
                .await
                .unwrap()
                .as4_claim(key, until, now)
                .await
                .unwrap(),
            DedupClaim::Duplicate
        );
    }
}

/// Accepted keys are kept for the retention and purged after it; claims in flight are never
/// purged.
async fn retention_purges_only_old_accepted_keys(stores: Vec<Store>) {
    let store = &stores[0];
    let day = chrono::Duration::days(1);
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap();
    let DedupClaim::Claimed(old) = store
        .conn()
        .await
        .unwrap()
        .as4_claim("old", t0 + day, t0)
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    assert!(store
        .conn()
        .await
        .unwrap()
        .as4_accept("old", &old, t0)
        .await
        .unwrap());
    let DedupClaim::Claimed(recent) = store
        .conn()
        .await
        .unwrap()
        .as4_claim("recent", t0 + day * 9, t0 + day * 8)
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    assert!(store
        .conn()
        .await
        .unwrap()
        .as4_accept("recent", &recent, t0 + day * 8)
        .await
        .unwrap());
    let DedupClaim::Claimed(_) = store
        .conn()
        .await
        .unwrap()
        .as4_claim("in-flight", t0 + day, t0)
        .await
        .unwrap()
    else {
        panic!("claim")
    };
    // On day 10, a retention of 9 days 23 hours: only "old" (accepted on day 0) goes.
    let later = t0 + day * 10;
    let purged = store
        .conn()
        .await
        .unwrap()
        .purge_as4_dedup(later - (day * 10 - chrono::Duration::hours(1)))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(
        store
            .conn()
            .await
            .unwrap()
            .as4_claim("recent", later + day, later)
            .await
            .unwrap(),
        DedupClaim::Duplicate
    );
    assert!(matches!(
        store
            .conn()
            .await
            .unwrap()
            .as4_claim("old", later + day, later)
            .await
            .unwrap(),
        DedupClaim::Claimed(_)
    ));
}

/// The message id and timestamp of an outbox item are made once and read back by every later
/// attempt, from any instance.
async fn outbound_message_id_is_fixed_once(stores: Vec<Store>) {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let first = stores[0]
        .conn()
        .await
        .unwrap()
        .as4_outbound("outbox_1", "9900357000004", "m-1@9900000000001", t0)
        .await
        .unwrap();
    let again = stores[1]
        .conn()
        .await
        .unwrap()
        .as4_outbound(
            "outbox_1",
            "9900357000004",
            "m-2@9900000000001",
            t0 + chrono::Duration::minutes(5),
        )
        .await
        .unwrap();
    assert_eq!(first, again);
    assert_eq!(first.message_id, "m-1@9900000000001");
    assert_eq!(first.timestamp, t0);
    assert_eq!(first.delivered_at, None);
    stores[1]
        .conn()
        .await
        .unwrap()
        .as4_delivered("outbox_1", "record-1", t0 + chrono::Duration::minutes(6))
        .await
        .unwrap();
    let delivered = stores[0]
        .conn()
        .await
        .unwrap()
        .as4_outbound("outbox_1", "9900357000004", "m-3", t0)
        .await
        .unwrap();
    assert_eq!(
        delivered.delivered_at,
        Some(t0 + chrono::Duration::minutes(6))
    );
}

/// Received requests are journaled raw before they are answered, and listed with their
/// answer, filtered by outcome, a page at a time.
async fn received_requests_are_kept_with_their_answers(stores: Vec<Store>) {
    use mako_gateway::store::{As4Answer, PageRequest};
    let t0 = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).unwrap();
    let good = stores[0]
        .conn()
        .await
        .unwrap()
        .insert_as4_request(
            "9900000000011 (CN=grid.tls.EMT.MAK)",
            "multipart/related",
            b"raw-1",
            t0,
        )
        .await
        .unwrap();
    let bad = stores[1]
        .conn()
        .await
        .unwrap()
        .insert_as4_request(
            "9900000000011 (CN=grid.tls.EMT.MAK)",
            "multipart/related",
            b"raw-22",
            t0,
        )
        .await
        .unwrap();
    let pending = stores[0]
        .conn()
        .await
        .unwrap()
        .insert_as4_request("9900000000029", "text/plain", b"raw-333", t0)
        .await
        .unwrap();
    stores[0]
        .conn()
        .await
        .unwrap()
        .finish_as4_request(
            &good,
            &As4Answer {
                outcome: "receipted",
                http_status: 200,
                ebms_code: None,
                reason: None,
                delivered: Some(("m-1@x".into(), "journal_1".into())),
            },
            t0,
        )
        .await
        .unwrap();
    stores[1]
        .conn()
        .await
        .unwrap()
        .finish_as4_request(
            &bad,
            &As4Answer {
                outcome: "refused",
                http_status: 400,
                ebms_code: Some("EBMS:0101".into()),
                reason: Some("signature".into()),
                delivered: None,
            },
            t0,
        )
        .await
        .unwrap();
    let all = stores[0]
        .conn()
        .await
        .unwrap()
        .list_as4_requests(
            None,
            &PageRequest {
                limit: 2,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    assert_eq!(all.items[0].id, good);
    assert_eq!(all.items[0].message_id.as_deref(), Some("m-1@x"));
    assert_eq!(all.items[0].journal_id.as_deref(), Some("journal_1"));
    assert_eq!(all.items[1].size, 6);
    let rest = stores[0]
        .conn()
        .await
        .unwrap()
        .list_as4_requests(
            None,
            &PageRequest {
                limit: 2,
                cursor: all.next_cursor,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert_eq!(rest.items[0].id, pending);
    assert_eq!(rest.items[0].outcome, "pending");
    let refused = stores[1]
        .conn()
        .await
        .unwrap()
        .list_as4_requests(
            Some("refused"),
            &PageRequest {
                limit: 10,
                cursor: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(refused.items.len(), 1);
    assert_eq!(refused.items[0].ebms_code.as_deref(), Some("EBMS:0101"));
    assert_eq!(refused.items[0].reason.as_deref(), Some("signature"));
}

/// For the receiver (issue 15, AS4 finding 1): a key accepted before is handed to the handler,
/// not answered by asx-rs — the claim succeeds and marks the delivery a duplicate, and
/// settling that claim either way leaves the accepted key as it was; a new key is claimed as
/// always. Without the mode the trait's `Duplicate` stands (the conformance suite above).
async fn duplicates_are_handed_to_the_handler_and_settling_them_changes_nothing(
    stores: Vec<Store>,
) {
    use asx::{Claim, DedupStore};
    use mako_gateway::transport::as4::persist::DuplicateSeen;
    use std::sync::Arc;
    let clock = mako_gateway::clock::Clock::system();
    let namespace = format!("{}/", mako_gateway::ids::new_id("dup", clock.now()));
    let plain = Dedup::new(stores[0].clone(), Duration::from_secs(60), clock.clone())
        .with_namespace(namespace.clone());
    let Claim::Claimed(token) = plain.claim("BDEW/9900000000011/m1").await.unwrap() else {
        panic!("a new key is claimed");
    };
    plain.accept("BDEW/9900000000011/m1", &token).await.unwrap();
    assert!(matches!(
        plain.claim("BDEW/9900000000011/m1").await.unwrap(),
        Claim::Duplicate
    ));

    for settle_by_accepting in [false, true] {
        let seen = Arc::new(DuplicateSeen::default());
        let handing = Dedup::new(stores[1].clone(), Duration::from_secs(60), clock.clone())
            .with_namespace(namespace.clone())
            .handing_duplicates_to(seen.clone());
        let Claim::Claimed(token) = handing.claim("BDEW/9900000000011/m1").await.unwrap() else {
            panic!("an accepted key is handed to the handler");
        };
        assert!(seen.is_set());
        if settle_by_accepting {
            handing
                .accept("BDEW/9900000000011/m1", &token)
                .await
                .unwrap();
        } else {
            handing
                .abandon("BDEW/9900000000011/m1", &token)
                .await
                .unwrap();
        }
        assert!(matches!(
            plain.claim("BDEW/9900000000011/m1").await.unwrap(),
            Claim::Duplicate
        ));
    }

    let seen = Arc::new(DuplicateSeen::default());
    let handing = Dedup::new(stores[0].clone(), Duration::from_secs(60), clock.clone())
        .with_namespace(namespace)
        .handing_duplicates_to(seen.clone());
    assert!(matches!(
        handing.claim("BDEW/9900000000011/m2").await.unwrap(),
        Claim::Claimed(_)
    ));
    assert!(!seen.is_set());
}

/// Issue 16, the one-commit path: a delivery claims a key in its process only; the journal's
/// transaction settles it as accepted together with the interchange and the raw request. Of
/// two instances delivering the same message, exactly one journals it (the other finds the
/// key taken and writes nothing); in one instance a second delivery finds it in flight; a
/// live two-phase claim row keeps the key in flight; a claim ends with its delivery.
async fn in_process_claims_are_settled_once_by_the_journal_commit(stores: Vec<Store>) {
    use asx::{Claim, DedupStore};
    use mako_gateway::store::{Arrived, As4Arrival, As4IncomingRequest, Inserted};
    use mako_gateway::transport::as4::persist::{HeldKey, InFlightKeys};
    use mako_gateway::worker::receive::Journal;
    use std::sync::Arc;
    let clock = mako_gateway::clock::Clock::system();
    let namespace = format!("{}/", mako_gateway::ids::new_id("one", clock.now()));
    let (keys_a, keys_b) = (
        Arc::new(InFlightKeys::default()),
        Arc::new(InFlightKeys::default()),
    );
    let dedup = |store: &Store, held: &Arc<HeldKey>| {
        Dedup::new(store.clone(), Duration::from_secs(60), clock.clone())
            .with_namespace(namespace.clone())
            .claiming_in_process(held.clone())
    };
    let key = "BDEW/9900000000011/one-1";
    let held_a = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[0], &held_a).claim(key).await.unwrap(),
        Claim::Claimed(_)
    ));
    // The same key again in the same instance: in flight; in another instance: claimed too.
    let held_a2 = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[0], &held_a2).claim(key).await.unwrap(),
        Claim::InFlight
    ));
    let held_b = Arc::new(HeldKey::new(keys_b.clone()));
    assert!(matches!(
        dedup(&stores[1], &held_b).claim(key).await.unwrap(),
        Claim::Claimed(_)
    ));

    let reference = "ONE1";
    let raw = format!(
        "UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+260512:0930+{reference}'\
         UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+{reference}'UNT+3+1'UNZ+1+{reference}'"
    )
    .into_bytes();
    let arrival = |held: &HeldKey, id: &str| As4Arrival {
        request: As4IncomingRequest {
            id: id.to_string(),
            peer: "9900000000011 (test)".into(),
            content_type: "multipart/related".into(),
            raw: bytes::Bytes::from_static(b"--request--"),
            received_at: clock.now(),
        },
        dedup_key: held.key().expect("claimed"),
        message_id: "one-1".into(),
        sender: "9900000000011".into(),
        signed: "[]".into(),
    };
    let id_a = mako_gateway::ids::new_id("as4in", clock.now());
    let id_b = mako_gateway::ids::new_id("as4in", clock.now());
    let a = Journal::new(stores[0].clone())
        .receive_as4(raw.clone(), arrival(&held_a, &id_a), clock.now())
        .await
        .unwrap();
    assert!(matches!(a, Arrived::Journaled(Inserted::New(_))), "{a:?}");
    let b = Journal::new(stores[1].clone())
        .receive_as4(raw.clone(), arrival(&held_b, &id_b), clock.now())
        .await
        .unwrap();
    assert_eq!(b, Arrived::KeyTaken);
    let mut conn = stores[1].conn().await.unwrap();
    let journaled: i64 = sqlx::query("SELECT COUNT(*) FROM journal WHERE interchange_ref = $1")
        .bind(reference)
        .fetch_one(stores[1].pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(journaled, 1);
    let recorded = conn.as4_request_raw(&id_a).await.unwrap().unwrap();
    assert_eq!(recorded.raw, b"--request--");
    assert!(conn.as4_request_raw(&id_b).await.unwrap().is_none());
    assert_eq!(
        conn.as4_signed("one-1", "9900000000011")
            .await
            .unwrap()
            .as_deref(),
        Some("[]")
    );
    // Accepted now: a duplicate for everyone.
    let held = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[1], &held).claim(key).await.unwrap(),
        Claim::Duplicate
    ));

    // A live two-phase claim row (an instance on the old path) keeps the key in flight.
    let plain = Dedup::new(stores[0].clone(), Duration::from_secs(60), clock.clone())
        .with_namespace(namespace.clone());
    let other = "BDEW/9900000000011/one-2";
    assert!(matches!(
        plain.claim(other).await.unwrap(),
        Claim::Claimed(_)
    ));
    let held = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[0], &held).claim(other).await.unwrap(),
        Claim::InFlight
    ));
    assert!(!conn
        .as4_accept_unclaimed(&format!("{namespace}{other}"), clock.now())
        .await
        .unwrap());

    // A claim ends with its delivery (its HeldKey dropped, whatever the outcome).
    let third = "BDEW/9900000000011/one-3";
    let held = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[0], &held).claim(third).await.unwrap(),
        Claim::Claimed(_)
    ));
    drop(held);
    let held = Arc::new(HeldKey::new(keys_a.clone()));
    assert!(matches!(
        dedup(&stores[0], &held).claim(third).await.unwrap(),
        Claim::Claimed(_)
    ));
    drop((held_a, held_a2, held_b));
}

on_both! {
    received_requests => received_requests_are_kept_with_their_answers;
    duplicates_handed_to_the_handler => duplicates_are_handed_to_the_handler_and_settling_them_changes_nothing;
    dedup_store_passes_the_asx_conformance_suite => dedup_conforms;
    evidence_store_passes_the_asx_conformance_suite => evidence_conforms;
    two_instances_claim_each_message_once => two_instances_claim_each_key_once;
    retention => retention_purges_only_old_accepted_keys;
    outbound_message_id => outbound_message_id_is_fixed_once;
    in_process_claims => in_process_claims_are_settled_once_by_the_journal_commit;
}
