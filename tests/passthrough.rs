//! Pass-through sending through the HTTP API (`/interchanges`) on a SQLite file and on
//! PostgreSQL: what is taken (202, with our envelope, or as given), what is refused (422 with
//! the findings and their places, 400 for a malformed request) and that nothing of a refused
//! request is stored; a retried request sends nothing twice; then the outbound worker sends a
//! queued one and a partner's APERAK, processed by the inbound worker, marks it rejected.

#[path = "common/gateway.rs"]
mod gateway;
mod support;

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use gateway::{core_utilmd as utilmd, partner_aperak, CORE_DOCUMENT};
use mako_gateway::api::{router, AppState};
use mako_gateway::orders::{PartnerStatusRules, Sender};
use mako_gateway::store::{InboundRecord, OutboxState, PageRequest, Store, Transport};
use mako_gateway::transport::{BoxFuture, Outbound, Outgoing, SendError, Sent};
use mako_gateway::worker::inbound::InboundWorker;
use mako_gateway::worker::outbound::{OutboundWorker, Transports};
use mako_gateway::worker::Leases;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

const TOKEN: &str = "test-token";
/// The IDs of the samples (see samples/README.md).
const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";

struct Api {
    base: String,
    client: reqwest::Client,
    store: Store,
}

fn leases() -> Leases {
    Leases {
        lease: std::time::Duration::from_secs(60),
        max_attempts: 3,
        retry_base: std::time::Duration::from_secs(1),
        retry_max: std::time::Duration::from_secs(2),
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 2, 9, 0, 0).unwrap()
}

impl Api {
    async fn start(store: Store) -> Api {
        Api::start_at(store, now()).await
    }

    /// An API whose clock stands at `at`.
    async fn start_at(store: Store, at: chrono::DateTime<Utc>) -> Api {
        let state = AppState::new(store.clone(), vec![TOKEN.to_string()])
            .with_clock(mako_gateway::clock::Clock::fixed(at))
            .with_own_id(OWN.parse().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        Api {
            base,
            client: reqwest::Client::new(),
            store,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn post(&self, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, "/interchanges", Some(body))
            .await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(self.store.pool())
            .await
            .unwrap()
            .get::<i64, _>("n")
    }
}

/// An MSCONS interchange (no grammar held: sent unchecked) from `sender` to `recipient`.
fn mscons(sender: &str, recipient: &str, reference: &str, document: &str) -> String {
    format!(
        "UNA:+.? '\nUNB+UNOC:3+{sender}:500+{recipient}:500+260602:0900+{reference}'\n\
         UNH+1+MSCONS:D:04B:UN:2.4c'\nBGM+7+{document}'\nUNT+3+1'\nUNZ+1+{reference}'\n"
    )
}

/// The `(field, code)` pairs of an error body.
fn errors(body: &Value) -> Vec<(String, String)> {
    body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {body}"))
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap_or("").to_string(),
                e["code"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(field: &str, code: &str) -> (String, String) {
    (field.to_string(), code.to_string())
}

on_both! {
    a_message_is_queued_in_our_envelope_and_a_retried_request_sends_nothing_twice => message_flow;
    an_interchange_is_queued_as_given_and_unknown_types_go_unchecked => interchange_flow;
    an_invalid_submission_is_refused_with_its_findings_and_nothing_is_stored => refusals;
    a_sent_pass_through_is_rejected_by_the_partners_aperak => sent_and_answered;
    a_pass_through_the_partner_refuses_for_good_is_failed_with_the_reason => parked;
}

async fn message_flow(stores: Vec<Store>) {
    let api = Api::start(stores[0].clone()).await;
    let (status, created) = api.post(json!({"partner": VNB, "message": utilmd()})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let record = &created["data"][0];
    let id = record["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("out_"), "{record}");
    assert_eq!(record["object"], "pass_through_message");
    assert_eq!(record["state"], "queued");
    assert_eq!(record["overdue"], false);
    assert_eq!(record["validation"], "checked");
    assert_eq!(record["message_type"], "UTILMD");
    assert_eq!(record["pid"], 55220);
    assert_eq!(record["document_number"], CORE_DOCUMENT);
    assert_eq!(record["transport"], "api", "not sent yet");
    assert_eq!(record["outbox"]["state"], "pending");
    assert_eq!(record["links"]["self"], format!("/interchanges/{id}"));
    let reference = record["interchange_ref"].as_str().unwrap().to_string();
    assert!(reference.starts_with("MG"), "our reference: {reference}");
    assert_ne!(record["message_ref"], "MG0000000X", "UNH renumbered");

    // Journaled with the bytes that will go out, and those fixed in the outbox item.
    let (status, one) = api.get(&format!("/interchanges/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(one, *record);
    let journal: (String, String, Vec<u8>) =
        sqlx::query("SELECT state, transport, (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE id = $1")
            .bind(record["journal_id"].as_str().unwrap())
            .fetch_one(api.store.pool())
            .await
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .unwrap();
    assert_eq!((journal.0.as_str(), journal.1.as_str()), ("queued", "api"));
    let text = String::from_utf8(journal.2.clone()).unwrap();
    assert!(
        text.starts_with(&format!(
            "UNA:+.? 'UNB+UNOC:3+{OWN}:500+{VNB}:500+260602:0900+{reference}'UNH+"
        )),
        "{text}"
    );
    assert!(text.contains("UNT+12+"), "UNT counted anew: {text}");
    let outbox = api
        .store
        .conn()
        .await
        .unwrap()
        .list_outbox(
            Some(OutboxState::Pending),
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0].kind.as_str(), "pass_through");
    assert_eq!(outbox[0].payload.as_deref(), Some(&journal.2[..]));

    // The same request again: the same record, nothing queued twice.
    let (status, again) = api.post(json!({"partner": VNB, "message": utilmd()})).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"][0]["id"], id.as_str());
    assert_eq!(api.count("outbox").await, 1);
    // Another message under the same document number: refused.
    let other = utilmd().replace("NB0000000006V1", "NB0000000007V1");
    let (status, conflict) = api.post(json!({"partner": VNB, "message": other})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(
        errors(&conflict),
        vec![pair("message", "document_number_used")]
    );
    assert_eq!(api.count("messages").await, 1);

    // Listed, filtered by state and partner.
    let (_, list) = api.get("/interchanges?filter[state][eq]=queued").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let (_, list) = api
        .get(&format!("/interchanges?filter[partner][eq]={OWN}"))
        .await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
    let (_, list) = api.get("/interchanges?filter[state][eq]=overdue").await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
    let (status, bad) = api.get("/interchanges?filter[state][eq]=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(errors(&bad), vec![pair("filter[state][eq]", "invalid")]);
    let (status, _) = api.get("/interchanges/out_nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn interchange_flow(stores: Vec<Store>) {
    let api = Api::start(stores[0].clone()).await;
    let given = mscons(OWN, VNB, "CORE1", "MS1");
    let (status, created) = api
        .post(json!({"partner": VNB, "interchange": given}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let record = &created["data"][0];
    assert_eq!(record["validation"], "unchecked", "{record}");
    assert_eq!(record["interchange_ref"], "CORE1");
    assert_eq!(record["message_ref"], "1", "sent as given");
    assert!(!record["findings"].as_array().unwrap().is_empty());
    let raw: Vec<u8> = sqlx::query("SELECT (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE id = $1")
        .bind(record["journal_id"].as_str().unwrap())
        .fetch_one(api.store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(raw, given.as_bytes(), "byte for byte");

    // Again: the same; the same reference with other content: refused.
    let (status, again) = api
        .post(json!({"partner": VNB, "interchange": given}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["data"][0]["id"], record["id"]);
    let (status, conflict) = api
        .post(json!({"partner": VNB, "interchange": mscons(OWN, VNB, "CORE1", "MS2")}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{conflict}");
    assert_eq!(
        errors(&conflict),
        vec![pair("interchange", "interchange_reference_used")]
    );
    assert_eq!(api.count("journal").await, 1);
}

async fn refusals(stores: Vec<Store>) {
    let api = Api::start(stores[0].clone()).await;
    // An AHB error: the LOC with the market location is required.
    let without_loc = utilmd().replace("LOC+Z16+51238696781'\n", "");
    let (status, refused) = api
        .post(json!({"partner": VNB, "message": without_loc}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    let first = &refused["errors"][0];
    assert_eq!(first["field"], "message", "{refused}");
    let position = &first["position"];
    assert_eq!(position["message"], 1, "{refused}");
    assert!(position["segment"].as_u64().unwrap() >= 1, "{refused}");
    assert!(position["tag"].is_string(), "{refused}");
    // An interchange not from us, to someone else, under a reference of our shape.
    let (status, refused) = api
        .post(json!({"partner": VNB, "interchange": mscons(VNB, OWN, "MG00000001", "X")}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        errors(&refused),
        vec![
            pair("interchange", "sender_not_us"),
            pair("interchange", "recipient_not_partner"),
            pair("interchange", "reserved_reference"),
        ]
    );
    assert_eq!(refused["errors"][0]["position"]["tag"], "UNB");
    // A wrong UNZ count.
    let miscounted = mscons(OWN, VNB, "CORE2", "X").replace("UNZ+1+", "UNZ+2+");
    let (status, refused) = api
        .post(json!({"partner": VNB, "interchange": miscounted}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert_eq!(
        errors(&refused),
        vec![pair("interchange", "control_count_mismatch")]
    );
    assert_eq!(refused["errors"][0]["position"]["line"], 6);
    // Malformed requests: 400.
    for (body, expected) in [
        (
            json!({"message": utilmd()}),
            vec![pair("partner", "required")],
        ),
        (
            json!({"partner": "9900000000012", "message": utilmd()}),
            vec![pair("partner", "invalid")],
        ),
        (json!({"partner": VNB}), vec![pair("message", "required")]),
        (
            json!({"partner": VNB, "message": utilmd(), "interchange": "x"}),
            vec![pair("interchange", "invalid")],
        ),
        (
            json!({"partner": VNB, "message": utilmd(), "colour": "blue"}),
            vec![pair("colour", "unknown_field")],
        ),
        (
            json!({"partner": VNB, "message": utilmd(), "application_reference": "a b"}),
            vec![pair("application_reference", "invalid")],
        ),
    ] {
        let (status, refused) = api.post(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {refused}");
        assert_eq!(errors(&refused), expected, "{body}");
    }
    // Nothing of it stored.
    for table in ["messages", "journal", "outbox"] {
        assert_eq!(api.count(table).await, 0, "{table}");
    }
    let (_, list) = api.get("/interchanges").await;
    assert!(list["data"].as_array().unwrap().is_empty(), "{list}");
}

/// A transport that refuses everything for good.
#[derive(Debug)]
struct Refusing;

impl Outbound for Refusing {
    fn kind(&self) -> Transport {
        Transport::As4
    }

    fn send<'a>(&'a self, _: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async { Err(SendError::permanent("EBMS:0004 the partner refuses")) })
    }
}

async fn parked(stores: Vec<Store>) {
    let store = stores[0].clone();
    let api = Api::start(store.clone()).await;
    let (status, created) = api
        .post(json!({"partner": VNB, "interchange": mscons(OWN, VNB, "CORE9", "MS9")}))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let record = created["data"][0].clone();
    let outbound = OutboundWorker::new(
        store.clone(),
        "test-worker".into(),
        leases(),
        Sender {
            id: OWN.parse().unwrap(),
            contact_name: None,
            contact_email: None,
        },
        Transports::new(Arc::new(Refusing)),
    );
    let report = outbound.send_next(now()).await.unwrap().unwrap();
    assert!(report.outcome.starts_with("parked"), "{report:?}");
    let (_, shown) = api
        .get(&format!("/interchanges/{}", record["id"].as_str().unwrap()))
        .await;
    assert_eq!(shown["state"], "failed", "{shown}");
    assert_eq!(shown["outbox"]["state"], "parked");
    assert!(
        shown["outbox"]["last_error"]
            .as_str()
            .unwrap()
            .contains("EBMS:0004"),
        "{shown}"
    );
    assert_eq!(shown["sent_at"], Value::Null);
    let journal: (String, String) = sqlx::query("SELECT state, outcome FROM journal WHERE id = $1")
        .bind(record["journal_id"].as_str().unwrap())
        .fetch_one(store.pool())
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(journal.0, "failed");
    assert!(journal.1.contains("EBMS:0004"), "{journal:?}");
}

/// A transport that keeps what it is given.
#[derive(Debug, Default)]
struct Kept(std::sync::Mutex<Vec<Vec<u8>>>);

impl Outbound for Kept {
    fn kind(&self) -> Transport {
        Transport::File
    }

    fn send<'a>(&'a self, interchange: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        self.0.lock().unwrap().push(interchange.bytes.to_vec());
        Box::pin(async {
            Ok(Sent {
                description: "kept".into(),
            })
        })
    }
}

async fn sent_and_answered(stores: Vec<Store>) {
    let store = stores[0].clone();
    let api = Api::start(store.clone()).await;
    let (status, created) = api.post(json!({"partner": VNB, "message": utilmd()})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let record = created["data"][0].clone();
    let id = record["id"].as_str().unwrap();
    let sender = Sender {
        id: OWN.parse().unwrap(),
        contact_name: None,
        contact_email: None,
    };
    let kept = Arc::new(Kept::default());
    let outbound = OutboundWorker::new(
        store.clone(),
        "test-worker".into(),
        leases(),
        sender.clone(),
        Transports::new(kept.clone()),
    );
    let report = outbound.send_next(now()).await.unwrap().unwrap();
    assert!(report.outcome.starts_with("sent"), "{report:?}");
    let sent = kept.0.lock().unwrap().clone();
    let journal: Vec<u8> = sqlx::query("SELECT (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE id = $1")
        .bind(record["journal_id"].as_str().unwrap())
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0);
    assert_eq!(sent, vec![journal], "the journaled bytes went out");
    let (_, shown) = api.get(&format!("/interchanges/{id}")).await;
    assert_eq!(shown["state"], "sent", "{shown}");
    assert_eq!(shown["transport"], "file");
    assert_eq!(shown["outbox"]["state"], "sent");
    // UTILMD: the APERAK is due 45 minutes after sending.
    assert_eq!(shown["aperak_due"], "2026-06-02T09:45:00.000Z", "{shown}");

    // Without an answer past the deadline it shows as overdue.
    let late = Api::start_at(store.clone(), now() + chrono::Duration::minutes(46)).await;
    let (_, shown) = late.get(&format!("/interchanges/{id}")).await;
    assert_eq!(shown["overdue"], true, "{shown}");
    let (_, list) = late.get("/interchanges?filter[state][eq]=overdue").await;
    assert_eq!(list["data"][0]["id"], id, "{list}");
    let (_, list) = api.get("/interchanges?filter[state][eq]=overdue").await;
    assert!(
        list["data"].as_array().unwrap().is_empty(),
        "not yet: {list}"
    );

    // The grid operator's APERAK 313 naming our interchange and the core's document number.
    let aperak = partner_aperak(record["interchange_ref"].as_str().unwrap(), "NB0000000003");
    let received = now() + chrono::Duration::minutes(10);
    let journal_id = store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&InboundRecord {
            partner: VNB.into(),
            transport: Transport::File,
            interchange_ref: Some("NB0000000003".into()),
            message_refs: vec!["1".into()],
            pids: Vec::new(),
            message_types: vec!["APERAK".into()],
            document_numbers: Vec::new(),
            raw: aperak,
            received_at: received,
        })
        .await
        .unwrap();
    let inbound = InboundWorker::new(
        store.clone(),
        "test-worker".into(),
        leases(),
        sender,
        PartnerStatusRules::default(),
    );
    inbound.process_next(received).await.unwrap().unwrap();
    let (_, shown) = api.get(&format!("/interchanges/{id}")).await;
    assert_eq!(shown["state"], "rejected", "{shown}");
    let answer = &shown["answer"];
    assert_eq!(answer["outcome"], "rejected");
    assert_eq!(answer["codes"], json!(["Z29"]));
    assert_eq!(answer["journal_id"], journal_id.journal_id());
    assert_eq!(
        answer["acknowledgement"]["errors"][0]["text"][0],
        "Segment 12 LOC: Marktlokation fehlt"
    );
    assert_eq!(shown["overdue"], false, "answered");
    let (_, list) = api.get("/interchanges?filter[state][eq]=rejected").await;
    assert_eq!(list["data"][0]["id"], id);
}
