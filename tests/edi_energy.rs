//! Our outbound messages checked by an independent implementation: the AHB validator of the
//! `edi-energy` crate (hupe1980/mako). Where it disagrees, the snapshot records what it says,
//! and the README's domain section records how the disagreement was settled from the BDEW
//! documents. A new disagreement fails this test until it is settled.

use chrono::{NaiveDate, NaiveDateTime};
use edi_energy::EdiEnergyMessage;
use mako_gateway::edifact::{ReferenceSequence, Writer};
use mako_gateway::grammar::Registry;
use mako_gateway::orders::*;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

fn sender() -> Sender {
    Sender {
        id: "9900000000003".parse().unwrap(),
        contact_name: Some("Jürgen Weiß".into()),
        contact_email: Some("mako@lieferant.example".into()),
    }
}

/// What edi-energy reports for the messages of an interchange, one line per issue.
fn edi_energy_verdict(bytes: &[u8]) -> String {
    let mut out = String::new();
    for message in edi_energy::parse_interchange(bytes) {
        match message {
            Err(e) => out.push_str(&format!("parse error: {e}\n")),
            Ok(m) => match m.validate() {
                Err(e) => out.push_str(&format!("not validated: {e}\n")),
                Ok(report) => {
                    if report.is_valid() {
                        out.push_str("valid\n");
                    }
                    for issue in report.errors() {
                        out.push_str(&format!("error: {issue}\n"));
                    }
                }
            },
        }
    }
    out
}

/// The billing data of an inbound UTILMD 55218 sample, read as the inbound path reads them.
fn billing_data(name: &str) -> BillingData {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .unwrap();
    let doc = mako_gateway::edifact::parse(&bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let report = mako_gateway::grammar::validate_interchange(&ic, Registry::embedded()).remove(0);
    match read_answer(report.validated.as_ref().unwrap(), 55218) {
        Some(Answer::BillingData(data)) => data,
        other => panic!("{name}: {other:?}"),
    }
}

fn built_messages() -> Vec<(String, Vec<u8>)> {
    let registry = Registry::embedded();
    let mut out = Vec::new();
    let malo: mako_gateway::ids::MarketLocationId = "51238696781".parse().unwrap();
    let vnb: mako_gateway::ids::MarketPartnerId = "9900000000011".parse().unwrap();
    // Now (FV2610) and in FV2604, the two versions the gateway writes this year.
    for (fv, now) in [
        ("fv2604", at(2026, 5, 10, 8, 15)),
        ("fv2610", at(2026, 11, 23, 8, 15)),
    ] {
        for (name, product) in [
            ("modul_1", ModuleProduct::Module1),
            ("modul_2", ModuleProduct::Module2),
            ("modul_1_und_3", ModuleProduct::Module1And3),
        ] {
            let order = GridFeeOrder {
                grid_operator: vnb.clone(),
                market_location: malo.clone(),
                product,
                change: ChangeDate::On(now.date() + chrono::Duration::days(30)),
            };
            let mut refs = ReferenceSequence::new("MG", 1).unwrap();
            let built = grid_fee_order(registry, &sender(), &order, now, &mut refs).unwrap();
            let bytes = Writer::new(built.interchange.header.syntax)
                .write_interchange(&built.interchange)
                .unwrap();
            out.push((format!("{fv}_17133_{name}"), bytes));
        }
        let mut refs = ReferenceSequence::new("MG", 7).unwrap();
        let mut order = ImsysOrder {
            metering_operator: "9900000000029".parse().unwrap(),
            metering_location: "DE0032106765712000000000000000037".parse().unwrap(),
            wanted: now.date() + chrono::Duration::days(40),
            customer: None,
        };
        let built = meter_order(registry, &sender(), &order, now, &mut refs).unwrap();
        let bytes = Writer::new(built.interchange.header.syntax)
            .write_interchange(&built.interchange)
            .unwrap();
        out.push((format!("{fv}_{}_imsys", built.pid), bytes));
        // With the customer's contact (NAD+Z09, AHB ORDERS 17011 [570]).
        order.customer = Some(
            CustomerContact::new(ContactFields {
                name: "Jörg Schäfer".into(),
                email: Some("joerg.schaefer@example.de".into()),
                phone: Some("+4930123456".into()),
                mobile: None,
            })
            .unwrap(),
        );
        let built = meter_order(registry, &sender(), &order, now, &mut refs).unwrap();
        let bytes = Writer::new(built.interchange.header.syntax)
            .write_interchange(&built.interchange)
            .unwrap();
        out.push((format!("{fv}_{}_imsys_customer_contact", built.pid), bytes));
        let answer = BillingDataAnswer {
            grid_operator: vnb.clone(),
            market_location: malo.clone(),
            transaction: "NB0000000006V1".into(),
            periods: vec![PeriodAnswer {
                period: "1".into(),
                code: E0610::A01,
            }],
            view: Vec::new(),
        };
        let built = billing_data_answer(registry, &sender(), &answer, now, &mut refs).unwrap();
        let bytes = Writer::new(built.interchange.header.syntax)
            .write_interchange(&built.interchange)
            .unwrap();
        out.push((format!("{fv}_55220_billing_data_answer"), bytes));
        // A 55218 without the Modul 1 we ordered from 2027-01-01: A02 for its second period,
        // with our view (RFF+Z48 periods, SEQ+Z82 with the Artikel-IDs we expect).
        let data = billing_data("utilmd_55218_without_module_fv2610.edi");
        let waiting = GridFeeReduction {
            accepted: true,
            ..GridFeeReduction::intended(
                "gfr_1".into(),
                "sub_1".into(),
                ReductionType::Module1,
                malo.clone(),
                vnb.clone(),
                MeterType::Smart,
            )
            .ordered(ModuleProduct::Module1, "MG1".into())
            .unwrap()
            .order
        };
        let expectation =
            expectation_for(&[&waiting], &data, |_| NaiveDate::from_ymd_opt(2027, 1, 1));
        let review = review(&data, expectation.as_ref());
        let answer = BillingDataAnswer {
            transaction: data.transaction.clone(),
            periods: review.answers,
            view: review.view,
            ..answer
        };
        let built = billing_data_answer(registry, &sender(), &answer, now, &mut refs).unwrap();
        let bytes = Writer::new(built.interchange.header.syntax)
            .write_interchange(&built.interchange)
            .unwrap();
        out.push((format!("{fv}_55220_a02_with_our_view"), bytes));
    }
    out
}

#[test]
fn edi_energy_on_our_outbound_messages() {
    for (name, bytes) in built_messages() {
        insta::assert_snapshot!(format!("edi_energy_{name}"), edi_energy_verdict(&bytes));
    }
}

#[test]
fn edi_energy_on_our_acknowledgements() {
    use mako_gateway::acks::{plan, AckContext, ContrlPolicy, NoProcessingCheck};
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound");
    let cases = [
        ("aperak_312", "ordrsp_19133_a20_accepted.edi"),
        ("aperak_313_z29", "ordrsp_19133_broken.edi"),
    ];
    for (fv, now) in [
        ("fv2604", at(2026, 5, 12, 10, 0)),
        ("fv2610", at(2026, 11, 23, 10, 0)),
    ] {
        for (name, file) in cases {
            let input = std::fs::read(samples.join(file)).unwrap();
            let mut ctx = AckContext {
                registry: Registry::embedded(),
                now,
                contrl_policy: ContrlPolicy::OnErrors,
                references: ReferenceSequence::new("ACK", 1).unwrap(),
                processing: &NoProcessingCheck,
            };
            let answers = plan(&input, &mut ctx).render().unwrap();
            insta::assert_snapshot!(
                format!("edi_energy_{fv}_{name}"),
                edi_energy_verdict(&answers[0])
            );
        }
    }
    // A CONTRL for a broken interchange (UCM 29 on UNT).
    let broken = std::fs::read(samples.join("ordrsp_19133_a20_accepted.edi")).unwrap();
    let broken: Vec<u8> = String::from_utf8_lossy(&broken)
        .replace("UNT+10+1", "UNT+11+1")
        .into_bytes();
    let mut ctx = AckContext {
        registry: Registry::embedded(),
        now: at(2026, 11, 23, 10, 0),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("ACK", 1).unwrap(),
        processing: &NoProcessingCheck,
    };
    let answers = plan(&broken, &mut ctx).render().unwrap();
    insta::assert_snapshot!("edi_energy_contrl_ucm_29", edi_energy_verdict(&answers[0]));
}

/// The inbound samples of the iMSys milestones and the Bearbeitungsstand (UTILMD 55653, IFTSTA
/// 21025 and 21047, FV2604 and FV2610), as edi-energy judges them. Its disagreements are
/// settled in the README's domain section (IFTSTA 21025: edi-energy admits only Z74/Z75 in
/// STS DE9013, where the AHB asks for the E_0286 code).
#[test]
fn edi_energy_on_the_inbound_samples_of_the_meter_order() {
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound");
    let mut files: Vec<_> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| {
            ["utilmd_55653_", "iftsta_21025_", "iftsta_21047_"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    for name in files {
        let bytes = std::fs::read(samples.join(&name)).unwrap();
        insta::assert_snapshot!(
            format!("edi_energy_inbound_{}", name.trim_end_matches(".edi")),
            edi_energy_verdict(&bytes)
        );
    }
}
