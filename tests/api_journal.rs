//! The journal API over real HTTP (a server on 127.0.0.1:0, a reqwest client) on a SQLite file
//! and on PostgreSQL: `GET /journal` with each filter alone and together, cursor paging, the
//! raw bytes of journal items, quarantined mails and received AS4 requests byte for byte, and
//! the errors for unknown ids and bad filter values.

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use mako_gateway::api::{router, AppState};
use mako_gateway::ids::new_id;
use mako_gateway::store::{
    As4Answer, InboundRecord, JournalState, MailOutcome, NewMail, OutboundRecord, Store, Transport,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "test-token";
const VNB: &str = "9904292000003";
const MSB: &str = "9903829000006";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap()
}

struct Api {
    base: String,
    client: reqwest::Client,
}

/// A raw download: status, content type, content disposition, bytes.
struct Download {
    status: StatusCode,
    content_type: String,
    disposition: String,
    bytes: Vec<u8>,
}

impl Api {
    async fn start(store: Store) -> Api {
        let state = AppState::new(store, vec![TOKEN.to_string()])
            .with_clock(mako_gateway::clock::Clock::fixed(t0()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        Api {
            base,
            client: reqwest::Client::new(),
        }
    }

    /// `GET path` with the query pairs URL-encoded.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .query(query)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The ids of `GET /journal` with these filters (one page of up to 500).
    async fn journal_ids(&self, query: &[(&str, &str)]) -> Vec<String> {
        let mut query = query.to_vec();
        query.push(("limit", "500"));
        let (status, page) = self.get("/journal", &query).await;
        assert_eq!(status, StatusCode::OK, "{query:?}: {page}");
        assert_eq!(page["next_cursor"], Value::Null, "{query:?}");
        ids(&page)
    }

    async fn download(&self, path: &str) -> Download {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        let (status, content_type, disposition) = (
            response.status(),
            header("content-type"),
            header("content-disposition"),
        );
        Download {
            status,
            content_type,
            disposition,
            bytes: response.bytes().await.unwrap().to_vec(),
        }
    }
}

/// Query pairs, as given to [`Api::get`].
type Query<'a> = Vec<(&'a str, &'a str)>;

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data in {page}"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
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

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

/// Bytes that are not text: a NUL, an invalid UTF-8 byte, CR LF.
fn raw(label: &str) -> Vec<u8> {
    let mut bytes = format!("UNA:+.? 'UNB+UNOC:3+{label}'\r\n").into_bytes();
    bytes.extend_from_slice(&[0x00, 0xff, 0xfe, b'\'']);
    bytes
}

struct Inbound {
    partner: &'static str,
    reference: &'static str,
    pids: &'static [&'static str],
    types: &'static [&'static str],
    minutes: i64,
}

/// What the journal holds, by name.
struct Journaled {
    /// UTILMD 55218 + 55220 from the VNB, processed.
    utilmd: String,
    /// ORDRSP 19133 from the MSB.
    ordrsp: String,
    /// CONTRL from the VNB.
    contrl: String,
    /// A stored PID and type that only start like real ones (`552180`, `UTILMDX`).
    lookalike: String,
    /// Our ORDERS 17133 to the VNB.
    orders: String,
    /// Our APERAK to the MSB.
    aperak: String,
    /// Every id with its bytes.
    raw: Vec<(String, Vec<u8>)>,
}

async fn journal_some(store: &Store) -> Journaled {
    let mut raw_of = Vec::new();
    let mut inbound_ids = Vec::new();
    for i in [
        Inbound {
            partner: VNB,
            reference: "IN1",
            pids: &["55218", "55220"],
            types: &["UTILMD", "UTILMD"],
            minutes: 0,
        },
        Inbound {
            partner: MSB,
            reference: "IN2",
            pids: &["19133"],
            types: &["ORDRSP"],
            minutes: 60,
        },
        Inbound {
            partner: VNB,
            reference: "IN3",
            pids: &[],
            types: &["CONTRL"],
            minutes: 120,
        },
        Inbound {
            partner: MSB,
            reference: "IN4",
            pids: &["552180"],
            types: &["UTILMDX"],
            minutes: 180,
        },
    ] {
        let bytes = raw(i.reference);
        let inserted = store
            .conn()
            .await
            .unwrap()
            .insert_inbound(&InboundRecord {
                partner: i.partner.to_string(),
                transport: Transport::File,
                interchange_ref: Some(i.reference.to_string()),
                message_refs: i.types.iter().map(|_| "1".to_string()).collect(),
                pids: i.pids.iter().map(|p| p.to_string()).collect(),
                message_types: i.types.iter().map(|t| t.to_string()).collect(),
                document_numbers: vec![format!("DOC-{}", i.reference)],
                raw: bytes.clone(),
                received_at: t0() + Duration::minutes(i.minutes),
            })
            .await
            .unwrap();
        let id = inserted.journal_id().to_string();
        raw_of.push((id.clone(), bytes));
        inbound_ids.push(id);
    }
    let mut outbound_ids = Vec::new();
    for (partner, reference, pid, message_type, minutes) in [
        (VNB, "OUT1", "17133", "ORDERS", 30),
        (MSB, "OUT2", "APERAK", "APERAK", 90),
    ] {
        let bytes = raw(reference);
        let id = store
            .conn()
            .await
            .unwrap()
            .insert_outbound_journal(&OutboundRecord {
                id: None,
                partner: partner.to_string(),
                transport: Transport::As4,
                interchange_ref: reference.to_string(),
                message_refs: vec!["1".into()],
                pids: vec![pid.to_string()],
                message_types: vec![message_type.to_string()],
                document_numbers: vec![format!("DOC-{reference}")],
                raw: bytes.clone(),
                sent_at: t0() + Duration::minutes(minutes),
            })
            .await
            .unwrap();
        raw_of.push((id.clone(), bytes));
        outbound_ids.push(id);
    }
    // The UTILMD is processed by a worker (the oldest received item is claimed first).
    let mut conn = store.conn().await.unwrap();
    let claimed = conn
        .claim_inbound("w1", t0(), std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, inbound_ids[0]);
    assert_eq!(claimed.message_types, vec!["UTILMD", "UTILMD"]);
    conn.finish_inbound(
        &claimed.id,
        "w1",
        JournalState::Processed,
        &json!({"handled": 2}),
    )
    .await
    .unwrap();
    Journaled {
        utilmd: inbound_ids[0].clone(),
        ordrsp: inbound_ids[1].clone(),
        contrl: inbound_ids[2].clone(),
        lookalike: inbound_ids[3].clone(),
        orders: outbound_ids[0].clone(),
        aperak: outbound_ids[1].clone(),
        raw: raw_of,
    }
}

on_both! {
    journal_lists_filter_alone_and_together => journal_filters;
    journal_pages_with_cursors_also_under_a_filter => journal_paging;
    journal_items_show_their_facts_and_link_their_bytes => journal_items_and_raw;
    bad_journal_filters_are_400_and_unknown_ids_404 => journal_errors;
    quarantined_mails_and_as4_requests_link_their_raw_bytes => quarantine_and_as4_raw;
}

async fn journal_filters(stores: Vec<Store>) {
    let j = journal_some(&stores[0]).await;
    let api = Api::start(stores[1].clone()).await;
    let everything = api.journal_ids(&[]).await;
    assert_eq!(everything.len(), 6);
    assert_eq!(everything, sorted(everything.clone()), "id order");

    let cases: Vec<(Query, Vec<&String>)> = vec![
        (
            vec![("filter[direction][eq]", "in")],
            vec![&j.utilmd, &j.ordrsp, &j.contrl, &j.lookalike],
        ),
        (
            vec![("filter[direction][eq]", "out")],
            vec![&j.orders, &j.aperak],
        ),
        (
            vec![("filter[partner][eq]", VNB)],
            vec![&j.utilmd, &j.contrl, &j.orders],
        ),
        // Exact elements of the list: 55218 is not 552180, UTILMD is not UTILMDX.
        (vec![("filter[pid][eq]", "55218")], vec![&j.utilmd]),
        (vec![("filter[pid][eq]", "55220")], vec![&j.utilmd]),
        (vec![("filter[pid][eq]", "17133")], vec![&j.orders]),
        (vec![("filter[pid][eq]", "55221")], vec![]),
        (
            vec![("filter[message_type][eq]", "UTILMD")],
            vec![&j.utilmd],
        ),
        (vec![("filter[message_type][eq]", "UTILM")], vec![]),
        (
            vec![("filter[message_type][eq]", "APERAK")],
            vec![&j.aperak],
        ),
        (
            vec![("filter[state][eq]", "processed")],
            vec![&j.utilmd, &j.orders, &j.aperak],
        ),
        (
            vec![("filter[state][eq]", "received")],
            vec![&j.ordrsp, &j.contrl, &j.lookalike],
        ),
        (vec![("filter[state][eq]", "failed")], vec![]),
        // Received (in) or sent (out) from 10:30 on, and before 11:30.
        (
            vec![("filter[time][gte]", "2026-06-01T10:30:00Z")],
            vec![&j.ordrsp, &j.contrl, &j.lookalike, &j.orders, &j.aperak],
        ),
        (
            vec![("filter[time][lt]", "2026-06-01T10:30:00Z")],
            vec![&j.utilmd],
        ),
        (
            // The same instant in another offset.
            vec![
                ("filter[time][gte]", "2026-06-01T12:30:00+02:00"),
                ("filter[time][lt]", "2026-06-01T11:30:00Z"),
            ],
            vec![&j.ordrsp, &j.orders],
        ),
        // Together.
        (
            vec![
                ("filter[direction][eq]", "in"),
                ("filter[partner][eq]", VNB),
                ("filter[message_type][eq]", "CONTRL"),
            ],
            vec![&j.contrl],
        ),
        (
            vec![
                ("filter[direction][eq]", "in"),
                ("filter[partner][eq]", VNB),
                ("filter[state][eq]", "received"),
                ("filter[time][gte]", "2026-06-01T11:00:00Z"),
                ("filter[time][lt]", "2026-06-01T13:00:00Z"),
            ],
            vec![&j.contrl],
        ),
        (
            vec![
                ("filter[direction][eq]", "out"),
                ("filter[pid][eq]", "55218"),
            ],
            vec![],
        ),
        (
            vec![
                ("filter[partner][eq]", MSB),
                ("filter[pid][eq]", "19133"),
                ("filter[message_type][eq]", "ORDRSP"),
                ("filter[state][eq]", "received"),
            ],
            vec![&j.ordrsp],
        ),
        // A value that would change the statement if it were part of it matches nothing.
        (vec![("filter[partner][eq]", "x' OR '1'='1")], vec![]),
    ];
    for (query, expected) in cases {
        let expected: Vec<String> = sorted(expected.into_iter().cloned().collect());
        assert_eq!(api.journal_ids(&query).await, expected, "{query:?}");
    }
}

async fn journal_paging(stores: Vec<Store>) {
    let j = journal_some(&stores[0]).await;
    let api = Api::start(stores[0].clone()).await;
    let everything = api.journal_ids(&[]).await;
    for (filter, expected) in [
        (vec![], everything.clone()),
        (
            vec![("filter[direction][eq]", "in")],
            sorted(vec![
                j.utilmd.clone(),
                j.ordrsp.clone(),
                j.contrl.clone(),
                j.lookalike.clone(),
            ]),
        ),
    ] {
        let mut seen = Vec::new();
        let mut pages = 0;
        let mut cursor: Option<String> = None;
        loop {
            let (status, page) = {
                let mut query = filter.clone();
                query.push(("limit", "2"));
                if let Some(c) = &cursor {
                    query.push(("cursor", c.as_str()));
                }
                api.get("/journal", &query).await
            };
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page["object"], "list");
            let on_page = ids(&page);
            assert!(!on_page.is_empty() && on_page.len() <= 2, "{page}");
            seen.extend(on_page);
            pages += 1;
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, expected, "{filter:?}");
        assert_eq!(pages, expected.len().div_ceil(2), "{filter:?}");
    }
}

async fn journal_items_and_raw(stores: Vec<Store>) {
    let j = journal_some(&stores[0]).await;
    let api = Api::start(stores[0].clone()).await;
    let (status, page) = api.get("/journal", &[("limit", "500")]).await;
    assert_eq!(status, StatusCode::OK);
    let items = page["data"].as_array().unwrap();
    let item = |id: &str| items.iter().find(|e| e["id"] == id).unwrap().clone();

    let utilmd = item(&j.utilmd);
    let utilmd_raw = &j.raw.iter().find(|(id, _)| *id == j.utilmd).unwrap().1;
    assert_eq!(
        utilmd,
        json!({
            "object": "journal_entry",
            "id": j.utilmd,
            "direction": "in",
            "partner": VNB,
            "transport": "file",
            "interchange_ref": "IN1",
            "message_refs": ["1", "1"],
            "pids": ["55218", "55220"],
            "message_types": ["UTILMD", "UTILMD"],
            "document_numbers": ["DOC-IN1"],
            "received_at": "2026-06-01T10:00:00.000Z",
            "sent_at": null,
            "state": "processed",
            "outcome": {"handled": 2},
            "attempts": 1,
            "size": utilmd_raw.len(),
            "raw": format!("/journal/{}/raw", j.utilmd),
        })
    );
    let orders = item(&j.orders);
    assert_eq!(orders["direction"], "out");
    assert_eq!(orders["transport"], "as4");
    assert_eq!(orders["received_at"], Value::Null);
    assert_eq!(orders["sent_at"], "2026-06-01T10:30:00.000Z");
    assert_eq!(orders["message_types"], json!(["ORDERS"]));
    assert_eq!(orders["outcome"], Value::Null);

    // Every item's bytes, exactly as journaled, from its link.
    for (id, bytes) in &j.raw {
        let entry = item(id);
        assert_eq!(entry["size"], bytes.len(), "{id}");
        let download = api.download(entry["raw"].as_str().unwrap()).await;
        assert_eq!(download.status, StatusCode::OK, "{id}");
        assert_eq!(download.content_type, "application/edifact");
        assert_eq!(
            download.disposition,
            format!("attachment; filename=\"{id}.edi\"")
        );
        assert_eq!(&download.bytes, bytes, "{id}: byte for byte");
    }
}

async fn journal_errors(stores: Vec<Store>) {
    journal_some(&stores[0]).await;
    let api = Api::start(stores[0].clone()).await;
    for (key, value) in [
        ("filter[direction][eq]", "sideways"),
        ("filter[partner][eq]", ""),
        ("filter[pid][eq]", "5521"),
        ("filter[pid][eq]", "552180"),
        ("filter[pid][eq]", "55218' OR '1'='1"),
        ("filter[message_type][eq]", "utilmd"),
        ("filter[message_type][eq]", "UTILMDX"),
        ("filter[state][eq]", "done"),
        ("filter[time][gte]", "yesterday"),
        ("filter[time][lt]", "2026-06-01"),
        ("limit", "0"),
        ("cursor", ""),
    ] {
        let (status, body) = api.get("/journal", &[(key, value)]).await;
        assert_eq!(
            (status, errors(&body)),
            (StatusCode::BAD_REQUEST, vec![pair(key, "invalid")]),
            "{key}={value}"
        );
    }
    for key in [
        "filter[pid][gte]",
        "filter[time][eq]",
        "filter[type][eq]",
        "filter[raw][eq]",
    ] {
        let (status, body) = api.get("/journal", &[(key, "1")]).await;
        assert_eq!(
            (status, errors(&body)),
            (
                StatusCode::BAD_REQUEST,
                vec![pair(key, "unknown_parameter")]
            ),
            "{key}"
        );
    }
    // Every bad value at once, and an empty time range.
    let (status, body) = api
        .get(
            "/journal",
            &[
                ("filter[direction][eq]", "up"),
                ("filter[pid][eq]", "x"),
                ("filter[time][gte]", "2026-06-01T11:00:00Z"),
                ("filter[time][lt]", "2026-06-01T11:00:00Z"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        errors(&body),
        vec![
            pair("filter[direction][eq]", "invalid"),
            pair("filter[pid][eq]", "invalid"),
            pair("filter[time][lt]", "invalid"),
        ]
    );

    // Unknown ids: of the right shape, of another shape, another kind of record.
    for path in [
        format!("/journal/{}/raw", new_id("jrn", t0())),
        "/journal/jrn_1/raw".to_string(),
        format!("/journal/{}/raw", new_id("mail", t0())),
        "/journal/..%2F..%2Fetc%2Fpasswd/raw".to_string(),
    ] {
        let (status, body) = api.get(&path, &[]).await;
        assert_eq!(
            (status, errors(&body)),
            (StatusCode::NOT_FOUND, vec![pair("", "not_found")]),
            "{path}"
        );
    }
}

async fn quarantine_and_as4_raw(stores: Vec<Store>) {
    let store = &stores[0];
    let api = Api::start(store.clone()).await;
    let mail = |uid: u32, raw: Vec<u8>| NewMail {
        mailbox: "gateway@mail.example:993/INBOX".into(),
        uid_validity: 7,
        uid,
        from_header: "grid@example.org".into(),
        subject: "EDIFACT".into(),
        raw,
        received_at: t0(),
    };
    let quarantined_raw =
        b"From: grid@example.org\r\nSubject: EDIFACT\r\n\r\n\x00\xffnot signed\r\n".to_vec();
    let mut conn = store.conn().await.unwrap();
    let (quarantined, _) = conn
        .insert_mail(&mail(1, quarantined_raw.clone()))
        .await
        .unwrap();
    conn.finish_mail(
        &quarantined,
        MailOutcome::Quarantined,
        None,
        Some("unsigned"),
        None,
        None,
        t0(),
    )
    .await
    .unwrap();
    let (taken_in, _) = conn
        .insert_mail(&mail(2, b"signed".to_vec()))
        .await
        .unwrap();
    conn.finish_mail(
        &taken_in,
        MailOutcome::Journaled,
        Some("jrn_x"),
        None,
        None,
        None,
        t0(),
    )
    .await
    .unwrap();

    let (status, page) = api.get("/quarantine", &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), vec![quarantined.clone()]);
    let item = &page["data"][0];
    assert_eq!(item["size"], quarantined_raw.len());
    assert_eq!(item["raw"], format!("/quarantine/{quarantined}/raw"));
    let download = api.download(item["raw"].as_str().unwrap()).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.content_type, "message/rfc822");
    assert_eq!(
        download.disposition,
        format!("attachment; filename=\"{quarantined}.eml\"")
    );
    assert_eq!(download.bytes, quarantined_raw, "byte for byte");
    // A mail that was taken in is not in the quarantine, nor are unknown ones.
    for id in [taken_in.clone(), new_id("mail", t0()), "mail_1".into()] {
        let (status, body) = api.get(&format!("/quarantine/{id}/raw"), &[]).await;
        assert_eq!(
            (status, errors(&body)),
            (StatusCode::NOT_FOUND, vec![pair("", "not_found")]),
            "{id}"
        );
    }

    let content_type =
        "multipart/related; boundary=\"MIME_boundary\"; type=\"application/soap+xml\"";
    let refused_raw = b"--MIME_boundary\r\n\x00\xff<soap/>\r\n--MIME_boundary--\r\n".to_vec();
    let refused = conn
        .insert_as4_request(
            "9904292000003 (127.0.0.1)",
            content_type,
            &refused_raw,
            t0(),
        )
        .await
        .unwrap();
    conn.finish_as4_request(
        &refused,
        &As4Answer {
            outcome: "refused",
            http_status: 400,
            ebms_code: Some("EBMS:0101".into()),
            reason: Some("signature".into()),
            delivered: None,
        },
        t0(),
    )
    .await
    .unwrap();
    let bare = conn
        .insert_as4_request("9904292000003 (127.0.0.1)", "", b"x", t0())
        .await
        .unwrap();
    drop(conn);

    let (status, page) = api
        .get("/as4/requests", &[("filter[outcome][eq]", "refused")])
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), vec![refused.clone()]);
    let item = &page["data"][0];
    assert_eq!(item["size"], refused_raw.len());
    assert_eq!(item["raw"], format!("/as4/requests/{refused}/raw"));
    let download = api.download(item["raw"].as_str().unwrap()).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.content_type, content_type, "as it came");
    assert_eq!(
        download.disposition,
        format!("attachment; filename=\"{refused}.bin\"")
    );
    assert_eq!(download.bytes, refused_raw, "byte for byte");
    // A request that came without a Content-Type is served as plain bytes.
    let download = api.download(&format!("/as4/requests/{bare}/raw")).await;
    assert_eq!(
        (
            download.status,
            download.content_type.as_str(),
            download.bytes
        ),
        (StatusCode::OK, "application/octet-stream", b"x".to_vec())
    );
    for id in [new_id("as4in", t0()), "as4in_1".into(), quarantined] {
        let (status, body) = api.get(&format!("/as4/requests/{id}/raw"), &[]).await;
        assert_eq!(
            (status, errors(&body)),
            (StatusCode::NOT_FOUND, vec![pair("", "not_found")]),
            "{id}"
        );
    }
}
