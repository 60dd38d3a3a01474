//! UTILMD 55218 from bytes to the order through the daemon's real inbound path: the interchange
//! journaled in a real store (a SQLite file, a fresh PostgreSQL database), the `InboundWorker`
//! processing it, then the reduction's status, dates and reason, the clearing list and the
//! UTILMD 55220 in the outbox (snapshotted) read back. One table, one case per row.

mod support;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use mako_gateway::grammar::{message_pid, validate_interchange, Registry};
use mako_gateway::orders::{
    GridFeeReduction, GridFeeStatus, MeterType, ModuleProduct, PartnerStatusRules, ReductionType,
    Sender,
};
use mako_gateway::store::{InboundRecord, PageRequest, Store, Transport};
use mako_gateway::worker::inbound::InboundWorker;
use mako_gateway::worker::Leases;

const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";
const MALO: &str = "51238696781";

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// A reduction as the store holds it before the 55218 arrives, with the change date of its
/// ORDERS (`None`: the next possible date).
struct Before {
    id: &'static str,
    reduction_type: ReductionType,
    product: ModuleProduct,
    status: GridFeeStatus,
    accepted: bool,
    valid_from: Option<NaiveDate>,
    change_date: Option<NaiveDate>,
}

/// What the reduction is afterwards.
struct After {
    id: &'static str,
    status: GridFeeStatus,
    valid_from: Option<NaiveDate>,
    valid_until: Option<NaiveDate>,
}

struct Case {
    /// The inbound sample.
    sample: &'static str,
    /// When the gateway processes it (UTC).
    now: DateTime<Utc>,
    before: Vec<Before>,
    after: Vec<After>,
    /// The `STS+E01` of the 55220: `<Zeitraum-ID> <E_0610 code>`, in order.
    answers: &'static [&'static str],
    /// What the clearing entry says (a part of it), if there is one.
    clearing: Option<&'static str>,
}

/// An accepted Modul 1 order waiting for its data.
fn waiting_modul_1(change_date: Option<NaiveDate>) -> Before {
    Before {
        id: "gfr_1",
        reduction_type: ReductionType::Module1,
        product: ModuleProduct::Module1,
        status: GridFeeStatus::Ordered,
        accepted: true,
        valid_from: None,
        change_date,
    }
}

fn after(status: GridFeeStatus, from: Option<NaiveDate>, until: Option<NaiveDate>) -> After {
    After {
        id: "gfr_1",
        status,
        valid_from: from,
        valid_until: until,
    }
}

fn case(name: &str) -> Case {
    use GridFeeStatus::*;
    let fv2604 = Utc.with_ymd_and_hms(2026, 6, 2, 9, 0, 0).unwrap();
    let fv2610 = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
    match name {
        // A closed "keine Daten" period before the open data period: the module applies from
        // the data period, open-ended (before the fix: from the Z53 period's start, until the
        // day before the data period).
        "no_data_then_modul_1" => Case {
            sample: "utilmd_55218_no_data_then_modul_1.edi",
            now: fv2604,
            before: vec![waiting_modul_1(Some(day(2026, 6, 1)))],
            after: vec![after(Activated, Some(day(2026, 6, 1)), None)],
            answers: &["1 A01", "2 A01"],
            clearing: None,
        },
        "no_data_then_modul_1_fv2610" => Case {
            sample: "utilmd_55218_no_data_then_modul_1_fv2610.edi",
            now: fv2610,
            before: vec![waiting_modul_1(None)],
            after: vec![after(Activated, Some(day(2027, 1, 1)), None)],
            answers: &["1 A01", "2 A01"],
            clearing: None,
        },
        // Ordered from 2027-02-01, applied from 2027-01-01: activated as the grid operator
        // bills it, answered A02 with our date, kept for a person.
        "another_date_fv2610" => Case {
            sample: "utilmd_55218_no_data_then_modul_1_fv2610.edi",
            now: fv2610,
            before: vec![waiting_modul_1(Some(day(2027, 2, 1)))],
            after: vec![after(Activated, Some(day(2027, 1, 1)), None)],
            answers: &["1 A01", "2 A02"],
            clearing: Some(
                "(2027-01-01 to 2027-01-31): the data show Modul 1, we expect no §14a module",
            ),
        },
        // Data without the module ordered: the order keeps waiting, A02 with our view.
        "without_module_fv2610" => Case {
            sample: "utilmd_55218_without_module_fv2610.edi",
            now: fv2610,
            before: vec![waiting_modul_1(Some(day(2027, 1, 1)))],
            after: vec![after(Ordered, None, None)],
            answers: &["1 A01", "2 A02"],
            clearing: Some("do not show Modul 1"),
        },
        // The data period with the module is closed, "keine Daten" follow: it ends.
        "modul_1_then_no_data_fv2610" => Case {
            sample: "utilmd_55218_modul_1_then_no_data_fv2610.edi",
            now: fv2610,
            before: vec![Before {
                status: Activated,
                valid_from: Some(day(2026, 6, 1)),
                ..waiting_modul_1(None)
            }],
            after: vec![after(Ended, Some(day(2026, 6, 1)), Some(day(2026, 12, 31)))],
            answers: &["1 A01", "2 A01"],
            clearing: None,
        },
        // Modul 1 und 3 ordered (two rows of one ORDERS), Modul 1 alone in the data.
        "modul_1_und_3_missing_modul_3_fv2610" => Case {
            sample: "utilmd_55218_no_data_then_modul_1_fv2610.edi",
            now: fv2610,
            before: vec![
                Before {
                    product: ModuleProduct::Module1And3,
                    ..waiting_modul_1(Some(day(2027, 1, 1)))
                },
                Before {
                    id: "gfr_3",
                    reduction_type: ReductionType::Module3,
                    product: ModuleProduct::Module1And3,
                    ..waiting_modul_1(Some(day(2027, 1, 1)))
                },
            ],
            after: vec![
                after(Ordered, None, None),
                After {
                    id: "gfr_3",
                    ..after(Ordered, None, None)
                },
            ],
            answers: &["1 A01", "2 A02"],
            clearing: Some("the data show Modul 1, we expect Modul 1 + Modul 3"),
        },
        // Modul 1 und 3 (two rows of one ORDERS): both activated by the Modul 1 flat reduction
        // with the Modul 3 Arbeitspreise HT/NT.
        "modul_1_und_3" => Case {
            sample: "utilmd_55218_modul_1_und_3.edi",
            now: fv2604,
            before: vec![
                Before {
                    product: ModuleProduct::Module1And3,
                    ..waiting_modul_1(Some(day(2026, 6, 1)))
                },
                Before {
                    id: "gfr_3",
                    reduction_type: ReductionType::Module3,
                    product: ModuleProduct::Module1And3,
                    ..waiting_modul_1(Some(day(2026, 6, 1)))
                },
            ],
            after: vec![
                after(Activated, Some(day(2026, 6, 1)), None),
                After {
                    id: "gfr_3",
                    ..after(Activated, Some(day(2026, 6, 1)), None)
                },
            ],
            answers: &["1 A01"],
            clearing: None,
        },
        // Nothing of ours at the market location: answered all the same (before the fix: no
        // 55220 at all), and kept for a person.
        "unmatched" => Case {
            sample: "utilmd_55218_billing_data.edi",
            now: fv2604,
            before: vec![],
            after: vec![],
            answers: &["1 A01"],
            clearing: Some("no reduction there"),
        },
        other => panic!("no case {other}"),
    }
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .unwrap()
}

/// The `STS+E01` of a 55220 as `<Zeitraum-ID> <code>`.
fn answers_of(bytes: &[u8]) -> Vec<String> {
    let doc = mako_gateway::edifact::parse(bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let message = ic.messages().next().unwrap();
    message
        .body()
        .filter(|s| s.is(b"STS") && s.value(1, 1) == "E01")
        .map(|s| format!("{} {}", s.value(3, 4), s.value(3, 1)))
        .collect()
}

async fn run(name: &str, store: Store) {
    let case = case(name);
    let mut conn = store.conn().await.unwrap();
    let created = case.now - chrono::Duration::days(30);
    for b in &case.before {
        let order = GridFeeReduction {
            id: b.id.into(),
            subscription: "sub_1".into(),
            reduction_type: b.reduction_type,
            market_location: MALO.parse().unwrap(),
            grid_operator: VNB.parse().unwrap(),
            meter_type: MeterType::Smart,
            status: b.status,
            product: Some(b.product),
            order_document: Some("MG10000000001".into()),
            accepted: b.accepted,
            valid_from: b.valid_from,
            valid_until: None,
            rejection: None,
        };
        conn.insert_grid_fee(&order, b.change_date, created)
            .await
            .unwrap();
    }
    let raw = sample(case.sample);
    conn.insert_inbound(&InboundRecord {
        partner: VNB.into(),
        transport: Transport::File,
        interchange_ref: Some(name.into()),
        message_refs: vec!["1".into()],
        pids: vec!["55218".into()],
        message_types: vec!["UTILMD".into()],
        document_numbers: Vec::new(),
        raw,
        received_at: case.now,
    })
    .await
    .unwrap();
    drop(conn);
    let worker = InboundWorker::new(
        store.clone(),
        "test".into(),
        Leases {
            lease: std::time::Duration::from_secs(30),
            max_attempts: 3,
            retry_base: std::time::Duration::from_secs(1),
            retry_max: std::time::Duration::from_secs(2),
        },
        Sender {
            id: OWN.parse().unwrap(),
            contact_name: None,
            contact_email: None,
        },
        PartnerStatusRules::default(),
    );
    assert_eq!(worker.process_batch(case.now, 32).await.unwrap(), Some(1));

    let mut conn = store.conn().await.unwrap();
    for a in &case.after {
        let order = conn.grid_fee(a.id).await.unwrap().unwrap().order;
        assert_eq!(
            (order.status, order.valid_from, order.valid_until),
            (a.status, a.valid_from, a.valid_until),
            "{name}: {}",
            a.id
        );
    }
    let page = PageRequest {
        cursor: None,
        limit: 100,
    };
    let clearing = conn.list_clearing(false, &page).await.unwrap().items;
    match case.clearing {
        None => assert!(clearing.is_empty(), "{name}: {clearing:?}"),
        Some(part) => assert!(
            clearing.len() == 1 && clearing[0].reason.contains(part),
            "{name}: {clearing:?}"
        ),
    }
    let answers: Vec<Vec<u8>> = conn
        .list_outbox(None, &page)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|item| item.payload)
        .filter(|bytes| {
            mako_gateway::edifact::parse(bytes).is_ok_and(|doc| {
                doc.interchanges()
                    .flat_map(|ic| ic.messages().map(|m| message_pid(&m)).collect::<Vec<_>>())
                    .any(|pid| pid == Some(55220))
            })
        })
        .collect();
    assert_eq!(answers.len(), 1, "{name}: one UTILMD 55220");
    let answer = &answers[0];
    assert_eq!(answers_of(answer), case.answers, "{name}");
    let doc = mako_gateway::edifact::parse(answer).unwrap();
    for report in validate_interchange(&doc.interchanges().next().unwrap(), Registry::embedded()) {
        assert!(!report.has_errors(), "{name}: {:#?}", report.findings);
    }
    insta::assert_snapshot!(
        format!("billing_data_{name}"),
        String::from_utf8_lossy(answer).replace('\'', "'\n")
    );
}

macro_rules! cases {
    ($($name:ident,)+) => {
        $(
            async fn $name(stores: Vec<Store>) {
                run(stringify!($name), stores[0].clone()).await;
            }
        )+
        on_both! { $( $name => $name; )+ }
    };
}

cases! {
    no_data_then_modul_1,
    no_data_then_modul_1_fv2610,
    another_date_fv2610,
    without_module_fv2610,
    modul_1_then_no_data_fv2610,
    modul_1_und_3_missing_modul_3_fv2610,
    modul_1_und_3,
    unmatched,
}
