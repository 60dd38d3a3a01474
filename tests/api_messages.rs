//! The forward feed's API over real HTTP on a SQLite file and on PostgreSQL: messages received
//! through the journal and the real inbound worker, then listed, filtered, read, taken and
//! answered; bad filters and ids get the `errors[]` shape, never a database error.

mod support;

use std::time::Duration;

use chrono::{TimeZone, Utc};
use mako_gateway::api::{router, AppState};
use mako_gateway::clock::Clock;
use mako_gateway::orders::{PartnerStatusRules, Sender};
use mako_gateway::plan::routing::{Route, RoutingTable};
use mako_gateway::store::{InboundRecord, Store, Transport};
use mako_gateway::worker::inbound::InboundWorker;
use mako_gateway::worker::Leases;
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "messages-test-token";
const VNB: &str = "9900000000011";

/// An interchange from the grid operator holding `message`: an MSCONS 13017 (no grammar here:
/// forwarded unchecked) or a UTILMD 55616 in a version we hold no grammar for (refused by the
/// table of this test with its negative APERAK).
fn interchange(reference: &str, message: &str) -> Vec<u8> {
    format!(
        "UNA:+.? 'UNB+UNOC:3+{VNB}:500+9900000000003:500+261001:0815+{reference}'{message}UNZ+1+{reference}'"
    )
    .into_bytes()
}

const MSCONS: &str = "UNH+M1+MSCONS:D:04B:UN:2.4c'BGM+7+MS1+9'DTM+137:202610010815?+00:303'\
RFF+Z13:13017'UNT+5+M1'";
const UTILMD: &str = "UNH+U1+UTILMD:D:11A:UN:S9.9'BGM+E01+UT1'DTM+137:202610010815?+00:303'\
RFF+Z13:55616'UNT+5+U1'";

async fn call(
    base: String,
    method: reqwest::Method,
    path: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{base}{path}"))
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

async fn feed_api(stores: Vec<Store>) {
    let store = stores[0].clone();
    let now = Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap();
    for (reference, message) in [("R1", MSCONS), ("R2", UTILMD), ("R3", MSCONS)] {
        store
            .conn()
            .await
            .unwrap()
            .insert_inbound(&InboundRecord {
                partner: VNB.into(),
                transport: Transport::File,
                interchange_ref: Some(reference.into()),
                message_refs: vec!["1".into()],
                pids: Vec::new(),
                message_types: Vec::new(),
                document_numbers: Vec::new(),
                raw: interchange(reference, message),
                received_at: now,
            })
            .await
            .unwrap();
    }
    let routing = RoutingTable::with_overrides([("55616", Route::Refuse)], [], None).unwrap();
    let worker = InboundWorker::new(
        store.clone(),
        "test".into(),
        Leases {
            lease: Duration::from_secs(30),
            max_attempts: 3,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(2),
        },
        Sender {
            id: "9900000000003".parse().unwrap(),
            contact_name: None,
            contact_email: None,
        },
        PartnerStatusRules::default(),
    )
    .with_routing(routing);
    assert_eq!(worker.process_batch(now, 32).await.unwrap(), Some(3));
    // Issue 15 defect 11: an interchange nobody can read is not silently "processed": it is
    // kept in the clearing list for a person.
    store
        .conn()
        .await
        .unwrap()
        .insert_inbound(&InboundRecord {
            partner: VNB.into(),
            transport: Transport::File,
            interchange_ref: Some("R4".into()),
            message_refs: Vec::new(),
            pids: Vec::new(),
            message_types: Vec::new(),
            document_numbers: Vec::new(),
            raw: format!(
                "UNA:+.? 'UNB+UNOC:3+{VNB}:500+9900000000003:500+261001:0815+R4'UNH+1+MSC"
            )
            .into_bytes(),
            received_at: now,
        })
        .await
        .unwrap();
    assert_eq!(worker.process_batch(now, 32).await.unwrap(), Some(1));
    let clearing = store
        .conn()
        .await
        .unwrap()
        .list_clearing(
            false,
            &mako_gateway::store::PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(clearing.items.len(), 1, "{clearing:?}");
    assert!(
        clearing.items[0]
            .reason
            .starts_with("unreadable interchange"),
        "{clearing:?}"
    );

    // Forty minutes later: within the APERAK deadline of an MSCONS (next working day 12:00).
    let later = now + chrono::Duration::minutes(40);
    let base = serve(&store, later).await;
    let get = |path: &str| call(base.clone(), reqwest::Method::GET, path.to_string(), None);

    let (status, all) = get("/messages").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let data = all["data"].as_array().unwrap();
    assert_eq!(data.len(), 3, "{all}");
    let (status, new) =
        get("/messages?filter[state][eq]=new&filter[type][eq]=MSCONS&filter[pid][eq]=13017").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(new["data"].as_array().unwrap().len(), 2, "{new}");
    let first = &new["data"][0];
    assert_eq!(first["checked"], false, "no MSCONS grammar here: unchecked");
    assert_eq!(first["aperak"]["state"], "core");
    assert_eq!(first["age_seconds"], 2400);
    assert_eq!(first["partner"], VNB);
    let (_, refused) = get("/messages?filter[state][eq]=refused").await;
    assert_eq!(refused["data"][0]["pid"], 55616);
    assert_eq!(refused["data"][0]["aperak"]["state"], "sent");
    let (_, by_partner) = get(&format!("/messages?filter[partner][eq]={VNB}&limit=2")).await;
    assert_eq!(by_partner["data"].as_array().unwrap().len(), 2);
    let cursor = by_partner["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = get(&format!(
        "/messages?filter[partner][eq]={VNB}&limit=2&cursor={cursor}"
    ))
    .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);

    // Bad filters and ids: 400 / 404 in the errors[] shape, whatever the database.
    for bad in [
        "/messages?filter[pid][eq]=5561",
        "/messages?filter[pid][eq]=%00abc1",
        "/messages?filter[type][eq]=mscons",
        "/messages?filter[partner][eq]=99%27%3B--",
        "/messages?filter[state][eq]=lost",
        "/messages?filter[colour][eq]=red",
    ] {
        let (status, body) = get(bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["errors"][0]["field"].is_string(), "{bad}: {body}");
    }
    // A NUL never reaches a handler (400, see hostile_values); ids of the wrong shape are 404.
    for bad in ["gfr_1", "msg_..%2F..%2Fetc", "msg_unknown0"] {
        let (status, body) = get(&format!("/messages/{bad}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{bad}: {body}");
        assert_eq!(body["errors"][0]["code"], "not_found", "{bad}");
    }

    // A refused message is not offered: not taken, and its APERAK is the gateway's.
    let refused_id = refused["data"][0]["id"].as_str().unwrap();
    let post =
        |path: String, body: Value| call(base.clone(), reqwest::Method::POST, path, Some(body));
    let (status, _) = post(format!("/messages/{refused_id}/ack"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = post(
        format!("/messages/{refused_id}/aperak"),
        json!({"result": "accepted"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // The detail of a forwarded message.
    let id = first["id"].as_str().unwrap();
    let (status, detail) = get(&format!("/messages/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["document_number"], "MS1");
    assert_eq!(detail["interchange"]["reference"], "R1");
    assert_eq!(
        detail["segments"][3]["elements"][0],
        json!(["Z13", "13017"])
    );
    assert_eq!(detail["findings"][0]["rule"], "no_grammar");
    assert!(detail["raw"]
        .as_str()
        .unwrap()
        .starts_with("UNA:+.? 'UNB+UNOC:3+9900000000011"));

    // Invalid APERAK requests name every problem.
    let (status, body) = post(
        format!("/messages/{id}/aperak"),
        json!({"result": "rejected", "errors": [{"code": "Z14", "text": "x\u{7}"}, {"code": "A01", "text": "y"}], "colour": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["colour", "errors[0].text", "errors[1].code"],
        "{body}"
    );

    // A positive APERAK from the core: 312, queued for the sender.
    let (status, body) = post(
        format!("/messages/{id}/aperak"),
        json!({"result": "accepted"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["aperak"]["answer"]["result"], "accepted");
    let outbox = store
        .conn()
        .await
        .unwrap()
        .list_outbox(
            None,
            &mako_gateway::store::PageRequest {
                cursor: None,
                limit: 50,
            },
        )
        .await
        .unwrap();
    let item = outbox
        .items
        .iter()
        .find(|o| Some(o.id.as_str()) == body["outbox"].as_str())
        .expect("the APERAK is in the outbox");
    assert_eq!(item.partner, VNB);

    let (_, after) = get("/messages?filter[state][eq]=new").await;
    assert_eq!(
        after["data"].as_array().unwrap().len(),
        2,
        "taking is separate from answering"
    );

    // The next working day after 12:00 German time, the unanswered MSCONS is overdue.
    let next_day = Utc.with_ymd_and_hms(2026, 10, 2, 10, 1, 0).unwrap();
    let base = serve(&store, next_day).await;
    let (_, late) = call(
        base.clone(),
        reqwest::Method::GET,
        "/messages?filter[state][eq]=new".to_string(),
        None,
    )
    .await;
    let states: Vec<&str> = late["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["aperak"]["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["requested", "overdue"], "{late}");
}

async fn serve(store: &Store, at: chrono::DateTime<Utc>) -> String {
    let state = AppState::new(store.clone(), vec![TOKEN.to_string()]).with_clock(Clock::fixed(at));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_api_on_sqlite() {
    support::on_sqlite(feed_api).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_api_on_postgres() {
    support::on_postgres("the_feed_api_on_postgres", feed_api).await;
}

/// Issue 15 defect 4: NUL bytes and over-long values got a 500 with database text from
/// PostgreSQL; now a 400 in the `errors[]` shape on both databases.
async fn hostile_values(stores: Vec<Store>) {
    let base = serve(
        &stores[0],
        Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap(),
    )
    .await;
    for path in [
        "/grid-fee-reductions/gfr_%00x",
        "/meter-orders/%FF",
        "/grid-fee-reductions?filter[subscription][eq]=a%00b",
        "/grid-fee-reductions?cursor=%00",
    ] {
        let (status, body) = call(base.clone(), reqwest::Method::GET, path.to_string(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            body["errors"][0]["code"], "invalid_target",
            "{path}: {body}"
        );
    }
    // Issue 15 defect 10: a cursor that no page gave is a 400.
    let (status, body) = call(
        base.clone(),
        reqwest::Method::GET,
        "/grid-fee-reductions?cursor=%27%20OR%201%3D1%20--".to_string(),
        None,
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("cursor")),
        "{body}"
    );
    // Issue 15 defect 8: the 4xx axum answers itself come in the errors[] shape too.
    let (status, body) = call(
        base.clone(),
        reqwest::Method::DELETE,
        "/grid-fee-reductions".to_string(),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["errors"][0]["code"], "method_not_allowed", "{body}");
    let huge = json!({"subscription": "x".repeat(3 * 1024 * 1024)});
    let (status, body) = call(
        base.clone(),
        reqwest::Method::POST,
        "/grid-fee-reductions".to_string(),
        Some(huge),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["errors"][0]["code"], "body_too_large", "{body}");
    for subscription in ["x".repeat(2_800), "a\u{0}b".to_string(), "a\nb".to_string()] {
        let (status, body) = call(
            base.clone(),
            reqwest::Method::POST,
            "/grid-fee-reductions".to_string(),
            Some(
                json!({"subscription": subscription, "type": "enwg-14a-module-1",
                "market_location": "51238696781", "grid_operator": VNB, "meter_type": "smart"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["errors"][0]["field"], "subscription", "{body}");
    }
}

/// Issue 15 defect 6: dates far beyond any process were accepted and written as invalid
/// EDIFACT (`DTM+203:?+26214212302300?+00:303`).
async fn unbounded_dates(stores: Vec<Store>) {
    let base = serve(
        &stores[0],
        Utc.with_ymd_and_hms(2026, 10, 1, 9, 0, 0).unwrap(),
    )
    .await;
    let (status, body) = call(
        base.clone(),
        reqwest::Method::POST,
        "/grid-fee-reductions".to_string(),
        Some(json!({"subscription": "s-1", "type": "enwg-14a-module-1",
            "market_location": "51238696781", "grid_operator": VNB, "meter_type": "smart",
            "effective_date": "+262142-12-31"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "effective_date", "{body}");
    let (status, body) = call(
        base.clone(),
        reqwest::Method::POST,
        "/meter-orders".to_string(),
        Some(
            json!({"subscription": "s-2", "market_location": "51238696781",
            "metering_location": "DE0032106765712000000000000000037",
            "metering_operator": "9900000000029", "wanted_date": "+99999-01-01"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["field"], "wanted_date", "{body}");
}

/// Issue 15 defect 6, the second half: every message is checked with our grammars before it
/// is queued. On a (fake) clock at the end of year 9999 a date in year 10000 is within every
/// bound of the API (lead time, ten years ahead), but format 303 (`CCYYMMDDHHMM`) cannot write
/// it: 400 `not_sendable` naming the DTM, and nothing in the outbox.
async fn unsendable_messages(stores: Vec<Store>) {
    let store = &stores[0];
    let base = serve(store, Utc.with_ymd_and_hms(9999, 12, 1, 9, 0, 0).unwrap()).await;
    let (status, body) = call(
        base.clone(),
        reqwest::Method::POST,
        "/grid-fee-reductions".to_string(),
        Some(json!({"subscription": "s-1", "type": "enwg-14a-module-1",
            "market_location": "51238696781", "grid_operator": VNB, "meter_type": "smart",
            "effective_date": "+10000-01-15"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["code"], "not_sendable", "{body}");
    let text = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        text.contains("ORDERS 17133") && text.contains("DTM"),
        "{text}"
    );
    let (status, body) = call(
        base.clone(),
        reqwest::Method::POST,
        "/meter-orders".to_string(),
        Some(
            json!({"subscription": "s-2", "market_location": "51238696781",
            "metering_location": "DE0032106765712000000000000000037",
            "metering_operator": "9900000000029", "wanted_date": "+10000-03-01"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["errors"][0]["code"], "not_sendable", "{body}");
    // Nothing was created, nothing queued.
    let (_, listed) = call(
        base.clone(),
        reqwest::Method::GET,
        "/grid-fee-reductions".into(),
        None,
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
    let (_, outbox) = call(base, reqwest::Method::GET, "/outbox".into(), None).await;
    assert_eq!(outbox["data"].as_array().map(Vec::len), Some(0), "{outbox}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_unsendable_messages_are_400_on_sqlite() {
    support::on_sqlite(unsendable_messages).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_unsendable_messages_are_400_on_postgres() {
    support::on_postgres(
        "regression_unsendable_messages_are_400_on_postgres",
        unsendable_messages,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_unbounded_dates_are_400_on_sqlite() {
    support::on_sqlite(unbounded_dates).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_unbounded_dates_are_400_on_postgres() {
    support::on_postgres(
        "regression_unbounded_dates_are_400_on_postgres",
        unbounded_dates,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_hostile_values_are_400_on_sqlite() {
    support::on_sqlite(hostile_values).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_hostile_values_are_400_on_postgres() {
    support::on_postgres(
        "regression_hostile_values_are_400_on_postgres",
        hostile_values,
    )
    .await;
}
