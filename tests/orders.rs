//! Orders out and answers in: the built messages validate against our grammars (and are
//! snapshotted), the inbound samples are read into answers, and the answers move the orders
//! through their lifecycles.

use chrono::{NaiveDate, NaiveDateTime};
use mako_gateway::acks::AckMatch;
use mako_gateway::edifact::{parse, ReferenceSequence, Writer};
use mako_gateway::grammar::{validate_interchange, Registry, Severity};
use mako_gateway::orders::*;
use mako_gateway::plan::routing::can_handle;

fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(h, min, 0)
        .unwrap()
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn sender() -> Sender {
    Sender {
        id: "9900000000003".parse().unwrap(),
        contact_name: Some("Jürgen Weiß".into()),
        contact_email: Some("mako@lieferant.example".into()),
    }
}

/// Writes the built interchange, parses it back and validates it: every outbound message must
/// pass our own MIG and AHB rules. Returns the text for the snapshot.
fn written_and_validated(built: &BuiltOrder) -> String {
    let bytes = Writer::new(built.interchange.header.syntax)
        .write_interchange(&built.interchange)
        .unwrap();
    let doc = parse(&bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    for report in validate_interchange(&ic, Registry::embedded()) {
        let errors: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(report.pid, Some(built.pid));
        assert!(report.ahb.is_some(), "the AHB of {} was applied", built.pid);
    }
    bytes
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .replace('\'', "'\n")
}

#[test]
fn grid_fee_orders_for_every_module_validate_and_are_snapshotted() {
    let registry = Registry::embedded();
    let malo: mako_gateway::ids::MarketLocationId = "51238696781".parse().unwrap();
    let vnb: mako_gateway::ids::MarketPartnerId = "9900000000011".parse().unwrap();
    let cases = [
        (
            "modul_1",
            ModuleProduct::Module1,
            ChangeDate::On(day(2026, 6, 1)),
        ),
        (
            "modul_2",
            ModuleProduct::Module2,
            ChangeDate::On(day(2026, 6, 1)),
        ),
        // Modul 3 is ordered on top of an active Modul 1 as "Modul 1 und Modul 3".
        (
            "modul_1_und_3",
            ModuleProduct::for_types(&[ReductionType::Module3], &[ReductionType::Module1]).unwrap(),
            ChangeDate::On(day(2026, 6, 1)),
        ),
        // Ending Modul 3 while keeping Modul 1: ordering Modul 1 alone.
        (
            "modul_3_beenden",
            ModuleProduct::for_types(&[], &[ReductionType::Module1]).unwrap(),
            ChangeDate::NextPossibleFrom(day(2026, 7, 1)),
        ),
    ];
    for (name, product, change) in cases {
        let mut refs = ReferenceSequence::new("MG", 1).unwrap();
        let order = GridFeeOrder {
            grid_operator: vnb.clone(),
            market_location: malo.clone(),
            product,
            change,
        };
        let built = grid_fee_order(
            registry,
            &sender(),
            &order,
            at(2026, 5, 10, 8, 15),
            &mut refs,
        )
        .unwrap();
        assert_eq!(built.pid, 17133);
        insta::assert_snapshot!(
            format!("orders_17133_{name}"),
            written_and_validated(&built)
        );
    }
}

#[test]
fn meter_orders_use_17011_now_and_17003_in_fv2504() {
    let registry = Registry::embedded();
    let melo: mako_gateway::ids::MeteringLocationId =
        "DE0032106765712000000000000000037".parse().unwrap();
    let msb: mako_gateway::ids::MarketPartnerId = "9900000000029".parse().unwrap();
    let mut refs = ReferenceSequence::new("MG", 7).unwrap();
    let order = |wanted| ImsysOrder {
        metering_operator: msb.clone(),
        metering_location: melo.clone(),
        wanted,
        customer: None,
    };
    let now = meter_order(
        registry,
        &sender(),
        &order(day(2026, 7, 1)),
        at(2026, 5, 10, 8, 15),
        &mut refs,
    )
    .unwrap();
    assert_eq!(now.pid, 17011);
    insta::assert_snapshot!("orders_17011_imsys", written_and_validated(&now));
    let then = meter_order(
        registry,
        &sender(),
        &order(day(2025, 8, 1)),
        at(2025, 6, 20, 8, 15),
        &mut refs,
    )
    .unwrap();
    assert_eq!(then.pid, 17003);
    insta::assert_snapshot!("orders_17003_imsys_fv2504", written_and_validated(&then));
}

/// AHB ORDERS 17011 SG2 "Kunde des Lieferanten" (Kann [182] ∧ [6] ∧ [570]): the customer's
/// contact, so that the metering operator can agree the appointment with the customer; after
/// the Meldepunkt group, in FV2604 and FV2610.
#[test]
fn a_meter_order_names_the_customer_contact_in_nad_z09() {
    let contact = CustomerContact::new(ContactFields {
        name: "Jörg Schäfer".into(),
        email: Some("joerg.schaefer@example.de".into()),
        phone: Some("+4930123456".into()),
        mobile: None,
    })
    .unwrap();
    for (fv, now) in [
        ("fv2604", at(2026, 5, 10, 8, 15)),
        ("fv2610", at(2026, 11, 23, 8, 15)),
    ] {
        let mut refs = ReferenceSequence::new("MG", 7).unwrap();
        let built = meter_order(
            Registry::embedded(),
            &sender(),
            &ImsysOrder {
                metering_operator: "9900000000029".parse().unwrap(),
                metering_location: "DE0032106765712000000000000000037".parse().unwrap(),
                wanted: now.date() + chrono::Duration::days(40),
                customer: Some(contact.clone()),
            },
            now,
            &mut refs,
        )
        .unwrap();
        let text = written_and_validated(&built);
        assert!(
            text.contains("LOC+172+DE0032106765712000000000000000037'\nNAD+Z09'\nCTA+IC+:Jörg Schäfer'\nCOM+joerg.schaefer@example.de:EM'\nCOM+?+4930123456:TE'\nLIN+1+Z19'"),
            "{text}"
        );
        insta::assert_snapshot!(format!("orders_17011_imsys_customer_contact_{fv}"), text);
    }
}

fn read(path: &str) -> Answer {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples")
            .join(path),
    )
    .unwrap();
    let doc = parse(&bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let report = validate_interchange(&ic, Registry::embedded()).remove(0);
    read_answers(report.validated.as_ref().unwrap(), report.pid.unwrap())
        .into_iter()
        .next()
        .unwrap()
}

/// An answer in one line: UTILMD 55218 as its periods with dates and Artikel-IDs.
fn answer_line(answer: &Answer) -> String {
    let Answer::BillingData(data) = answer else {
        return format!("{answer:?}");
    };
    let periods: Vec<String> = data
        .periods
        .iter()
        .map(|p| {
            let until = p.until.map(|u| u.to_string()).unwrap_or_default();
            let articles: Vec<&str> = p.articles.iter().map(|a| a.id.as_str()).collect();
            format!("{} {:?} {}..{} {articles:?}", p.id, p.kind, p.from, until)
        })
        .collect();
    format!(
        "BillingData {} {}: {}",
        data.market_location,
        data.transaction,
        periods.join("; ")
    )
}

fn reduction() -> GridFeeReduction {
    GridFeeReduction {
        id: "gfr_1".into(),
        subscription: "sub_1".into(),
        reduction_type: ReductionType::Module1,
        market_location: "51238696781".parse().unwrap(),
        grid_operator: "9900000000011".parse().unwrap(),
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

#[test]
fn a_rejection_with_free_text_rejects_the_reduction_with_its_reason() {
    let answer = read("inbound/ordrsp_19133_a99_rejected.edi");
    let now = at(2026, 5, 12, 10, 0);
    let order = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000001".into())
        .unwrap();
    assert_eq!(order.event, Some("grid_fee_reduction.ordered"));
    let rejected = order.order.apply(&Input::Answer(&answer), now).unwrap();
    assert_eq!(rejected.event, Some("grid_fee_reduction.rejected"));
    let r = rejected.order.rejection.clone().unwrap();
    assert_eq!(r.code, "A99");
    assert_eq!(r.text.as_deref(), Some("Steuerbare Verbrauchseinrichtung ist nicht angemeldet (§14a EnWG: Anmeldung nachholen)"));
    assert_eq!(r.meaning_en, "rejected: other reason (see free text)");
    // The same answer again changes nothing; re-ordering is a new reduction.
    let again = rejected.order.apply(&Input::Answer(&answer), now).unwrap();
    assert_eq!(again.event, None);
}

#[test]
fn acceptance_then_billing_data_activate_the_reduction() {
    let accepted = read("inbound/ordrsp_19133_a20_accepted.edi");
    let now = at(2026, 5, 12, 10, 0);
    let order = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000001".into())
        .unwrap()
        .order;
    let order = order.apply(&Input::Answer(&accepted), now).unwrap();
    assert_eq!(order.event, None, "A20 only records the acceptance");
    assert!(order.order.accepted);
    let billing = read("inbound/utilmd_55218_billing_data.edi");
    let active = order.order.apply(&Input::Answer(&billing), now).unwrap();
    assert_eq!(active.event, Some("grid_fee_reduction.activated"));
    assert_eq!(active.order.valid_from, Some(day(2026, 6, 1)));
    let ended = active.order.end(day(2026, 12, 31)).unwrap();
    assert_eq!(ended.event, Some("grid_fee_reduction.ended"));
    // Out of order: billing data after the end is reported, not applied.
    assert!(matches!(
        ended.order.apply(&Input::Answer(&billing), now),
        Err(ApplyError::IllegalTransition { .. })
    ));
}

#[test]
fn answers_are_matched_by_reference_never_by_guesswork() {
    let accepted = read("inbound/ordrsp_19133_a20_accepted.edi");
    let order = reduction()
        .ordered(ModuleProduct::Module1, "MG99999999999".into())
        .unwrap()
        .order;
    assert_eq!(
        order.apply(&Input::Answer(&accepted), at(2026, 5, 12, 10, 0)),
        Err(ApplyError::NotThisOrder {
            expected: "MG99999999999".into(),
            found: "MG10000000001".into()
        })
    );
    // A billing data message before the order was sent is out of order.
    let billing = read("inbound/utilmd_55218_billing_data.edi");
    assert!(reduction()
        .apply(&Input::Answer(&billing), at(2026, 5, 12, 10, 0))
        .is_err());
}

#[test]
fn a_negative_aperak_rejects_the_reduction() {
    let order = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000001".into())
        .unwrap()
        .order;
    let ack = AckMatch::Rejected {
        messages: vec![],
        codes: vec!["Z29".into()],
        reason: "Z29 …: Segment 12 LOC".into(),
    };
    let r = order
        .apply(&Input::Acknowledgement(&ack), at(2026, 5, 10, 9, 0))
        .unwrap();
    assert_eq!(r.order.status, GridFeeStatus::Rejected);
    assert_eq!(
        r.order.rejection.unwrap().meaning_de,
        "Erforderliche Angabe für diesen Anwendungsfall fehlt"
    );
}

fn meter() -> MeterOrder {
    MeterOrder {
        id: "mo_1".into(),
        subscription: "sub_1".into(),
        market_location: "51238696781".parse().unwrap(),
        metering_location: Some("DE0032106765712000000000000000037".parse().unwrap()),
        metering_operator: "9900000000029".parse().unwrap(),
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

/// The metering operator's UTILMD 55653 with the smart-meter gateway (FV2604 sample).
fn installation() -> Answer {
    read("inbound/utilmd_55653_imsys_installed.edi")
}

fn response(code: &str, tree: &str, pid: u32) -> Answer {
    Answer::MeterOrderResponse {
        order_document: "MG00000007".into(),
        pid,
        code: code.into(),
        decision_tree: tree.into(),
        appointment: Some(at(2026, 6, 30, 22, 0)),
        window: (code == "A04").then(|| (at(2026, 7, 31, 22, 0), at(2026, 8, 31, 22, 0))),
        text: None,
    }
}

#[test]
fn a_meter_order_goes_from_placed_to_activated() {
    let now = at(2026, 5, 20, 9, 0);
    let placed = meter().placed("MG00000007".into()).unwrap();
    assert_eq!(placed.event, Some("meter_order.placed"));
    let checked = placed
        .order
        .apply(&Input::PartnerStatus(MeterStatus::CheckSubmitted), now)
        .unwrap();
    assert_eq!(checked.event, Some("meter_order.check_submitted"));
    let reviewed = checked
        .order
        .apply(&Input::PartnerStatus(MeterStatus::CheckReviewed), now)
        .unwrap();
    let confirmed = response("A02", "E_0250", 19005);
    let scheduled = reviewed
        .order
        .apply(&Input::Answer(&confirmed), now)
        .unwrap();
    assert_eq!(scheduled.event, Some("meter_order.scheduled"));
    assert_eq!(scheduled.order.appointment_at, Some(at(2026, 6, 30, 22, 0)));
    let installed = scheduled
        .order
        .apply(&Input::Answer(&installation()), now)
        .unwrap();
    assert_eq!(installed.event, Some("meter_order.installed"));
    // DTM+Z25 of the period with the gateway: 2026-06-15 00:00 German time.
    assert_eq!(installed.order.installed_at, Some(at(2026, 6, 14, 22, 0)));
    let devices = installed.order.installation.clone().unwrap();
    assert_eq!(devices.gateway, "EPPC0212345678");
    assert_eq!(
        devices.meters,
        [InstalledMeter {
            number: "1EMH0012345678".into(),
            kind: Some("MME".into())
        }]
    );
    let activated = installed
        .order
        .apply(
            &Input::PartnerStatus(MeterStatus::Activated),
            at(2026, 7, 2, 8, 0),
        )
        .unwrap();
    assert_eq!(activated.event, Some("meter_order.activated"));
    assert_eq!(activated.order.activated_at, Some(at(2026, 7, 2, 8, 0)));
    // A late partner status for an earlier milestone is reported, not applied.
    assert!(activated
        .order
        .apply(&Input::PartnerStatus(MeterStatus::CheckSubmitted), now)
        .is_err());
}

/// E_0283 answers the order of an offer (ORDERS 17011 `BGM+Z93`, AHB ORDRSP 19005/19006
/// [82]); the gateway orders on `BGM+Z12`, answered on E_0250 ([83]). An E_0283 A01 used to
/// cancel our order as `pre_existing`; now it applies to no order of ours.
#[test]
fn regression_an_offer_route_answer_does_not_cancel_our_order() {
    let now = at(2026, 5, 20, 9, 0);
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    for code in ["A01", "A04", "A06"] {
        let r = placed
            .clone()
            .apply(&Input::Answer(&response(code, "E_0283", 19006)), now);
        assert!(
            matches!(&r, Err(ApplyError::NotThisOrder { found, .. }) if found.contains("E_0283")),
            "{code}: {r:?}"
        );
    }
    let meters = vec![placed];
    match match_answer(
        &response("A01", "E_0283", 19006),
        "9900000000029",
        &[],
        &meters,
    ) {
        AnswerMatch::Unmatched { reason } => {
            assert!(reason.contains("BGM+Z93"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // `pre_existing` is reached by the supplier core's cancellation.
    let cancelled = meters[0].clone().cancel(CancelReason::PreExisting).unwrap();
    assert_eq!(cancelled.event, Some("meter_order.cancelled"));
    assert_eq!(
        cancelled.order.cancelled_reason,
        Some(CancelReason::PreExisting)
    );
}

#[test]
fn rejections_block_the_meter_order() {
    let now = at(2026, 5, 20, 9, 0);
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    // E_0250 A03: customer's authorisation missing → blocked with reason, milestone kept.
    let blocked = placed
        .clone()
        .apply(&Input::Answer(&response("A03", "E_0250", 19006)), now)
        .unwrap();
    assert_eq!(blocked.event, Some("meter_order.blocked"));
    assert_eq!(blocked.order.status, MeterStatus::Placed);
    assert_eq!(blocked.order.blocked_at, Some(now));
    assert_eq!(
        blocked.order.blocked_reason.as_ref().unwrap().meaning_en,
        "rejected: the customer's authorisation is missing"
    );
    // A later confirmation unblocks.
    let scheduled = blocked
        .order
        .apply(&Input::Answer(&response("A02", "E_0250", 19005)), now)
        .unwrap();
    assert_eq!(scheduled.order.blocked_reason, None);
    // The customer cancels; after installation that is no longer possible.
    assert_eq!(
        scheduled
            .order
            .clone()
            .cancel(CancelReason::CustomerRequest)
            .unwrap()
            .event,
        Some("meter_order.cancelled")
    );
    let installed = scheduled
        .order
        .apply(&Input::Answer(&installation()), now)
        .unwrap()
        .order;
    assert!(installed.cancel(CancelReason::CustomerRequest).is_err());
}

/// For every inbound sample: what it is read as, and what it does to a matching order in the
/// state where it normally arrives. One snapshot lists them all.
#[test]
fn every_inbound_sample_and_the_transition_it_causes() {
    use mako_gateway::acks::{match_acknowledgement, read_acknowledgements, SentMessage};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let now = at(2026, 6, 16, 9, 0);
    let sent = vec![SentMessage {
        interchange_reference: "MG10000000001".into(),
        message_reference: "1".into(),
        document_number: "MG10000000001".into(),
        order: Some("gfr_1".into()),
        pass_through: None,
    }];
    let mut out = String::new();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let doc = parse(&bytes).unwrap();
        let ic = doc.interchanges().next().unwrap();
        let report = validate_interchange(&ic, Registry::embedded()).remove(0);
        let ordered = reduction()
            .ordered(ModuleProduct::Module1, "MG10000000001".into())
            .unwrap()
            .order;
        let placed = meter().placed("MG00000007".into()).unwrap().order;
        let line = if let Some(pid) = report.pid {
            let answer = read_answers(report.validated.as_ref().unwrap(), pid)
                .into_iter()
                .next();
            match &answer {
                Some(a @ Answer::BillingData(data))
                    if data
                        .module_span(|shown| shown.contains(&ReductionType::Module1))
                        .is_some_and(|(_, until)| until.is_some()) =>
                {
                    // A closed period arrives for an activated reduction: it ends.
                    let activated = ordered
                        .clone()
                        .apply(
                            &Input::Answer(&read("inbound/utilmd_55218_billing_data.edi")),
                            now,
                        )
                        .unwrap()
                        .order;
                    let r = activated.apply(&Input::Answer(a), now);
                    format!(
                        "{}\n  -> {:?}",
                        answer_line(a),
                        r.map(|x| (
                            x.order.status,
                            x.event,
                            x.order.valid_from,
                            x.order.valid_until
                        ))
                    )
                }
                Some(a @ (Answer::GridFeeResponse { .. } | Answer::BillingData(_))) => {
                    let r = ordered.apply(&Input::Answer(a), now);
                    format!(
                        "{}\n  -> {:?}",
                        answer_line(a),
                        r.map(|x| (
                            x.order.status,
                            x.event,
                            x.order.valid_from,
                            x.order.rejection.map(|r| r.code)
                        ))
                    )
                }
                Some(a @ Answer::MeterOrderResponse { .. }) => {
                    let r = placed.apply(&Input::Answer(a), now);
                    format!(
                        "{a:?}\n  -> {:?}",
                        r.map(|x| (
                            x.order.status,
                            x.event,
                            x.order.appointment_at,
                            x.order.cancelled_reason,
                            x.order.blocked_reason.map(|r| r.code)
                        ))
                    )
                }
                Some(Answer::StatusReport(report)) => {
                    // What the partner's status means is configured per partner (a bilateral
                    // arrangement: 21043 answers configuration orders).
                    let milestone = wmsb_status_rules().milestone("9900000000029", report);
                    let r = match milestone {
                        Some(status) => placed.apply(
                            &Input::PartnerStatus(status),
                            report.changed_at.unwrap_or(now),
                        ),
                        None => placed.apply(&Input::Answer(answer.as_ref().unwrap()), now),
                    };
                    format!(
                        "{report:?}\n  configured as {milestone:?}\n  -> {:?}",
                        r.map(|x| (x.order.status, x.event, x.order.activated_at))
                    )
                }
                Some(a @ Answer::MeteringLocationData { .. }) => {
                    let scheduled = placed
                        .apply(&Input::Answer(&response("A02", "E_0250", 19005)), now)
                        .unwrap()
                        .order;
                    let r = scheduled.apply(&Input::Answer(a), now);
                    format!(
                        "{a:?}\n  -> {:?}",
                        r.map(|x| (x.order.status, x.event, x.order.installed_at))
                    )
                }
                Some(a @ Answer::MeteringChangeFailed(_)) => {
                    let scheduled = placed
                        .apply(&Input::Answer(&response("A02", "E_0250", 19005)), now)
                        .unwrap()
                        .order;
                    let r = scheduled.apply(&Input::Answer(a), now);
                    format!(
                        "{a:?}\n  -> {:?}",
                        r.map(|x| (
                            x.order.status,
                            x.event,
                            x.order.blocked_at,
                            x.order
                                .blocked_reason
                                .map(|r| (r.code, r.meaning_en, r.text))
                        ))
                    )
                }
                None => format!(
                    "PID {pid}: no answer to an order ({})",
                    if can_handle(pid) {
                        "read only where routed to the gateway"
                    } else {
                        "forwarded to the supplier core"
                    }
                ),
            }
        } else {
            let acks = read_acknowledgements(&ic);
            let m = match_acknowledgement(&acks[0], "9900000000011", sent.as_slice());
            let r = ordered.apply(&Input::Acknowledgement(&m), now);
            format!(
                "{:?}\n  -> {:?}",
                acks[0],
                r.map(|x| (x.order.status, x.event, x.order.rejection.map(|r| r.code)))
            )
        };
        out.push_str(&format!("{name}: {line}\n"));
    }
    insta::assert_snapshot!("inbound_transitions", out);
}

/// A bilateral arrangement with the wMSB of the samples (no BDEW process defines these
/// milestones, and no IFTSTA a supplier receives refers to an iMSys order): IFTSTA 21043 `Z43`
/// = site check submitted, `Z43:A01` = reviewed, IFTSTA 21044 `105` = meter activated.
fn wmsb_status_rules() -> PartnerStatusRules {
    let mut rules = PartnerStatusRules::default();
    let wmsb: mako_gateway::ids::MarketPartnerId = "9900000000029".parse().unwrap();
    for (pid, code, status) in [
        (21043, "Z43", MeterStatus::CheckSubmitted),
        (21043, "Z43:A01", MeterStatus::CheckReviewed),
        (21044, "105", MeterStatus::Activated),
    ] {
        rules
            .add(
                wmsb.clone(),
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: Some(pid),
                    code: code.into(),
                    status,
                },
            )
            .unwrap();
    }
    rules
}

#[test]
fn partner_statuses_move_the_meter_order_only_as_configured() {
    let submitted = read("inbound/iftsta_21043_z43_partner_status.edi");
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let meters = vec![placed.clone()];
    assert_eq!(
        match_answer(&submitted, "9900000000029", &[], &meters),
        AnswerMatch::Meter(&meters[0]),
        "matched by RFF+AGI"
    );
    assert!(
        matches!(
            match_answer(&submitted, "9900000000011", &[], &meters),
            AnswerMatch::Unmatched { .. }
        ),
        "only the metering operator's statuses"
    );
    let Answer::StatusReport(report) = &submitted else {
        panic!("{submitted:?}")
    };
    assert_eq!(report.status, "Z43");
    assert_eq!(report.code, "A02");
    assert_eq!(report.decision_tree, "E_0528");
    // Without a configured meaning the status changes nothing and says why.
    let unconfigured = placed
        .clone()
        .apply(&Input::Answer(&submitted), at(2026, 11, 20, 10, 0));
    assert!(
        matches!(&unconfigured, Err(ApplyError::IllegalTransition { input, .. }) if input.contains("configured")),
        "{unconfigured:?}"
    );
    let rules = wmsb_status_rules();
    let milestone = rules.milestone("9900000000029", report).unwrap();
    assert_eq!(milestone, MeterStatus::CheckSubmitted);
    let step = placed
        .apply(&Input::PartnerStatus(milestone), at(2026, 11, 20, 10, 0))
        .unwrap();
    assert_eq!(step.event, Some("meter_order.check_submitted"));
    let mut ended = report.clone();
    ended.pid = 21044;
    ended.status = "105".into();
    // Activation before installation is out of order only if it goes backwards: the
    // partner's activation after the check is accepted as the last milestone.
    let done = step
        .order
        .apply(
            &Input::PartnerStatus(rules.milestone("9900000000029", &ended).unwrap()),
            at(2026, 12, 3, 9, 0),
        )
        .unwrap();
    assert_eq!(done.event, Some("meter_order.activated"));
    assert_eq!(done.order.activated_at, Some(at(2026, 12, 3, 9, 0)));
}

#[test]
fn a_modul_1_und_3_order_gets_one_answer_for_both_reductions() {
    let modul_1 = reduction()
        .ordered(ModuleProduct::Module1And3, "MG10000000001".into())
        .unwrap()
        .order;
    let mut modul_3 = modul_1.clone();
    modul_3.id = "gfr_3".into();
    modul_3.reduction_type = ReductionType::Module3;
    let reductions = vec![modul_1, modul_3];
    let accepted = read("inbound/ordrsp_19133_a20_accepted.edi");
    assert_eq!(
        match_answer(&accepted, NB, &reductions, &[]),
        AnswerMatch::GridFee(vec![&reductions[0], &reductions[1]])
    );
    let now = at(2026, 5, 12, 10, 0);
    let accepted_rows: Vec<GridFeeReduction> = reductions
        .iter()
        .map(|r| {
            r.clone()
                .apply(&Input::Answer(&accepted), now)
                .unwrap()
                .order
        })
        .collect();
    // Modul 1 alone does not activate a Modul 1 und 3 order; 1-02-0-015 with the Modul 3
    // Arbeitspreise HT/NT (1-02-0-017/-018) does, for both rows.
    let modul_1 = read("inbound/utilmd_55218_billing_data.edi");
    assert!(matches!(
        accepted_rows[0]
            .clone()
            .apply(&Input::Answer(&modul_1), now),
        Err(ApplyError::ModuleMissing { .. })
    ));
    let billing = read("inbound/utilmd_55218_modul_1_und_3.edi");
    let AnswerMatch::GridFee(matched) = match_answer(&billing, NB, &accepted_rows, &[]) else {
        panic!("55218 must match the accepted order")
    };
    assert_eq!(matched.len(), 2);
    for r in matched {
        let a = r.clone().apply(&Input::Answer(&billing), now).unwrap();
        assert_eq!(a.event, Some("grid_fee_reduction.activated"));
        assert_eq!(a.order.valid_from, Some(day(2026, 6, 1)));
    }
}

#[test]
fn a_closed_period_ends_the_activated_reductions_of_the_location() {
    let now = at(2026, 12, 1, 10, 0);
    let activated = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000001".into())
        .unwrap()
        .order
        .apply(
            &Input::Answer(&read("inbound/utilmd_55218_billing_data.edi")),
            now,
        )
        .unwrap()
        .order;
    let closed = read("inbound/utilmd_55218_period_closed.edi");
    let Answer::BillingData(data) = &closed else {
        panic!("{closed:?}")
    };
    // DTM+Z26 2026-12-31 23:00 UTC = 2027-01-01 00:00 German time: the period ends before
    // 1.1., its last day is 31.12.
    assert_eq!(data.periods[0].until, Some(day(2027, 1, 1)));
    assert_eq!(data.transaction, "NB0000000009V1");
    let rows = vec![activated];
    assert_eq!(
        match_answer(&closed, NB, &rows, &[]),
        AnswerMatch::GridFee(vec![&rows[0]])
    );
    let ended = rows[0].clone().apply(&Input::Answer(&closed), now).unwrap();
    assert_eq!(ended.event, Some("grid_fee_reduction.ended"));
    assert_eq!(ended.order.status, GridFeeStatus::Ended);
    assert_eq!(ended.order.valid_until, Some(day(2026, 12, 31)));
    // Repeated: no second event. Nothing active at the location: clearing.
    let again = ended
        .order
        .clone()
        .apply(&Input::Answer(&closed), now)
        .unwrap();
    assert_eq!(again.event, None);
    assert!(matches!(
        match_answer(&closed, NB, &[ended.order], &[]),
        AnswerMatch::Unmatched { .. }
    ));
}

#[test]
fn billing_data_are_answered_with_utilmd_55220() {
    let Answer::BillingData(data) = read("inbound/utilmd_55218_billing_data.edi") else {
        panic!()
    };
    let mut refs = ReferenceSequence::new("MG", 20).unwrap();
    let built = billing_data_answer(
        Registry::embedded(),
        &sender(),
        &BillingDataAnswer {
            grid_operator: "9900000000011".parse().unwrap(),
            market_location: data.market_location.parse().unwrap(),
            transaction: data.transaction.clone(),
            periods: review(&data, None).answers,
            view: Vec::new(),
        },
        at(2026, 6, 2, 9, 0),
        &mut refs,
    )
    .unwrap();
    assert_eq!(built.pid, 55220);
    insta::assert_snapshot!("utilmd_55220_answer", written_and_validated(&built));
}

/// The grid operator and the metering operator of the samples.
const NB: &str = "9900000000011";
const MSB: &str = "9900000000029";

#[test]
fn answers_find_their_order_or_go_to_clearing() {
    let ordered = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000001".into())
        .unwrap()
        .order;
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let reductions = vec![ordered.clone()];
    let meters = vec![placed.clone()];
    let response = read("inbound/ordrsp_19133_a20_accepted.edi");
    assert_eq!(
        match_answer(&response, NB, &reductions, &meters),
        AnswerMatch::GridFee(vec![&reductions[0]])
    );
    let billing = read("inbound/utilmd_55218_billing_data.edi");
    assert_eq!(
        match_answer(&billing, NB, &reductions, &meters),
        AnswerMatch::GridFee(vec![&reductions[0]])
    );
    let confirmed = read("inbound/ordrsp_19005_e0250_a02_confirmed.edi");
    assert_eq!(
        match_answer(&confirmed, MSB, &reductions, &meters),
        AnswerMatch::Meter(&meters[0])
    );
    let installed = installation();
    assert_eq!(
        match_answer(&installed, MSB, &reductions, &meters),
        AnswerMatch::Meter(&meters[0])
    );
    let failed = read("inbound/iftsta_21025_e0286_a01_no_access.edi");
    assert_eq!(
        match_answer(&failed, MSB, &reductions, &meters),
        AnswerMatch::Meter(&meters[0])
    );
    // Nothing sent: every answer goes to clearing, with its reason.
    for answer in [&response, &billing, &confirmed, &installed, &failed] {
        match match_answer(answer, MSB, &[], &[]) {
            AnswerMatch::Unmatched { reason } => assert!(!reason.is_empty()),
            other => panic!("{other:?}"),
        }
    }
    // Two reductions waiting at one market location: not guessed between.
    let mut second = reduction()
        .ordered(ModuleProduct::Module1, "MG10000000002".into())
        .unwrap()
        .order;
    second.id = "gfr_2".into();
    match match_answer(&billing, NB, &[ordered, second], &[]) {
        AnswerMatch::Unmatched { reason } => assert!(reason.contains("several"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn orders_carry_checked_ids_also_through_json() {
    let json = serde_json::to_value(reduction()).unwrap();
    assert_eq!(json["market_location"], "51238696781");
    assert_eq!(json["reduction_type"], "enwg-14a-module-1");
    let back: GridFeeReduction = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(back, reduction());
    let mut bad = json;
    bad["market_location"] = "51238696782".into();
    let err = serde_json::from_value::<GridFeeReduction>(bad).unwrap_err();
    assert!(err.to_string().contains("check digit"), "{err}");
}

#[test]
fn late_repeats_and_late_rejections_do_not_disturb_an_installed_meter() {
    let now = at(2026, 6, 16, 9, 0);
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let confirmation = response("A02", "E_0250", 19005);
    let scheduled = placed
        .apply(&Input::Answer(&confirmation), now)
        .unwrap()
        .order;
    let installed = scheduled
        .apply(&Input::Answer(&installation()), now)
        .unwrap()
        .order;
    let activated = installed
        .apply(&Input::PartnerStatus(MeterStatus::Activated), now)
        .unwrap()
        .order;
    // The same confirmation and the same installation again: no change, no event.
    let again = activated
        .clone()
        .apply(&Input::Answer(&confirmation), now)
        .unwrap();
    assert_eq!((again.event, &again.order), (None, &activated));
    let again = activated
        .clone()
        .apply(&Input::Answer(&installation()), now)
        .unwrap();
    assert_eq!(again.event, None);
    // A failure reported after the installation changes nothing.
    assert!(activated
        .clone()
        .apply(
            &Input::Answer(&read("inbound/iftsta_21025_e0286_a01_no_access.edi")),
            now
        )
        .is_err());
    // A late rejection of the original ORDERS is reported, not applied.
    let late = AckMatch::Rejected {
        messages: vec![],
        codes: vec!["Z29".into()],
        reason: "late".into(),
    };
    assert!(matches!(
        activated.apply(&Input::Acknowledgement(&late), now),
        Err(ApplyError::IllegalTransition { .. })
    ));
}

/// The iMSys milestones from the messages that carry them, per format version: the metering
/// operator's UTILMD 55653 with the smart-meter gateway installs the order (installed_at = the
/// DTM+Z25 of the first period with the gateway), its IFTSTA 21025 parks it with the E_0286
/// reason; both are found by the Messlokation among the metering operator's open orders.
#[test]
fn installation_and_failure_by_format_version() {
    let now = at(2026, 12, 8, 10, 0);
    let scheduled = meter()
        .placed("MG00000007".into())
        .unwrap()
        .order
        .apply(&Input::Answer(&response("A02", "E_0250", 19005)), now)
        .unwrap()
        .order;
    // file, status, installed_at, blocked reason (code, tree meaning), text
    type Case = (
        &'static str,
        MeterStatus,
        Option<NaiveDateTime>,
        Option<(&'static str, &'static str)>,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        (
            "inbound/utilmd_55653_imsys_installed.edi",
            MeterStatus::Installed,
            Some(at(2026, 6, 14, 22, 0)),
            None,
            None,
        ),
        // Two periods: the old meter until 2026-12-07, the iMSys from then.
        (
            "inbound/utilmd_55653_imsys_installed_fv2610.edi",
            MeterStatus::Installed,
            Some(at(2026, 12, 6, 23, 0)),
            None,
            None,
        ),
        (
            "inbound/iftsta_21025_e0286_a01_no_access.edi",
            MeterStatus::Scheduled,
            None,
            Some(("A01", "failed: the installer has no access to the location")),
            None,
        ),
        (
            "inbound/iftsta_21025_e0286_a99_other_fv2610.edi",
            MeterStatus::Scheduled,
            None,
            Some(("A99", "failed: other reason (see free text)")),
            Some("Zählerschrank nicht normgerecht: Umbau durch Elektrofachbetrieb nötig"),
        ),
    ];
    for (file, status, installed_at, blocked, text) in cases {
        let answer = read(file);
        let meters = vec![scheduled.clone()];
        assert_eq!(
            match_answer(&answer, MSB, &[], &meters),
            AnswerMatch::Meter(&meters[0]),
            "{file}"
        );
        let after = scheduled
            .clone()
            .apply(&Input::Answer(&answer), now)
            .unwrap();
        assert_eq!(after.order.status, *status, "{file}");
        assert_eq!(after.order.installed_at, *installed_at, "{file}");
        let reason = after.order.blocked_reason.as_ref();
        assert_eq!(
            reason.map(|r| (r.code.as_str(), r.meaning_en.as_str())),
            *blocked,
            "{file}"
        );
        assert_eq!(reason.and_then(|r| r.text.as_deref()), *text, "{file}");
        assert_eq!(after.order.blocked_at, blocked.map(|_| now), "{file}");
    }
}

/// A 21025 without DE1131 carries Z74/Z75 (AHB [103] ∧ [537]); several SG14 report several
/// locations, each matched on its own.
#[test]
fn a_failure_without_decision_tree_and_several_locations() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound/iftsta_21025_e0286_a01_no_access.edi"),
    )
    .unwrap();
    // The sample is ISO 8859-1: edited byte for byte as Latin-1 characters.
    let text: String = bytes.iter().map(|&b| char::from(b)).collect();
    let text = text
        .replace(
            "STS+Z15+Z13+A01:E_0286'\nRFF+Z13:21025'\n",
            "STS+Z15+Z13+Z75'\nRFF+Z13:21025'\nCNI+2'\nLOC+172+DE0032106765712000000000000000099'\nSTS+Z15+Z13+A02:E_0286'\nRFF+Z13:21025'\n",
        )
        .replace("UNT+12+1", "UNT+16+1");
    let bytes: Vec<u8> = text.chars().map(|c| c as u8).collect();
    let doc = parse(&bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let report = validate_interchange(&ic, Registry::embedded()).remove(0);
    assert!(!report.has_errors(), "{:?}", report.findings);
    let answers = read_answers(report.validated.as_ref().unwrap(), 21025);
    let failures: Vec<(String, String, String)> = answers
        .iter()
        .map(|a| match a {
            Answer::MeteringChangeFailed(f) => (
                f.metering_location.clone(),
                f.code.clone(),
                f.decision_tree.clone(),
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        failures,
        [
            (
                "DE0032106765712000000000000000037".into(),
                "Z75".into(),
                String::new()
            ),
            (
                "DE0032106765712000000000000000099".into(),
                "A02".into(),
                "E_0286".into()
            ),
        ]
    );
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let blocked = placed
        .apply(&Input::Answer(&answers[0]), at(2026, 6, 17, 9, 0))
        .unwrap();
    let reason = blocked.order.blocked_reason.unwrap();
    assert_eq!(
        (reason.code.as_str(), reason.meaning_en.as_str()),
        ("Z75", "failed: communication failure")
    );
}

/// An answer changes an order only when it comes from the party the order went to: the
/// metering operator. Before, an ORDRSP or status naming our document number applied
/// whoever sent it; the Messlokation matches (55653, 21025) are held to the same rule.
#[test]
fn regression_a_meter_answer_from_another_partner_changes_nothing() {
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let meters = vec![placed];
    let answers = [
        read("inbound/ordrsp_19005_e0250_a02_confirmed.edi"),
        read("inbound/iftsta_21043_z43_partner_status.edi"),
        installation(),
        read("inbound/iftsta_21025_e0286_a01_no_access.edi"),
    ];
    for answer in &answers {
        assert_eq!(
            match_answer(answer, MSB, &[], &meters),
            AnswerMatch::Meter(&meters[0])
        );
        match match_answer(answer, NB, &[], &meters) {
            AnswerMatch::Unmatched { reason } => {
                assert!(reason.contains(NB), "{reason}")
            }
            other => panic!("{answer:?}: {other:?}"),
        }
    }
}

/// A 55653 without a smart-meter gateway is a master-data change, not the installation.
#[test]
fn master_data_without_a_gateway_do_not_install() {
    let Answer::MeteringLocationData {
        metering_location,
        transaction,
        ..
    } = installation()
    else {
        panic!()
    };
    let without = Answer::MeteringLocationData {
        metering_location,
        transaction,
        installation: None,
    };
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let r = placed.apply(&Input::Answer(&without), at(2026, 6, 16, 9, 0));
    assert!(
        matches!(&r, Err(ApplyError::IllegalTransition { input, .. }) if input.contains("gateway")),
        "{r:?}"
    );
}

/// Issue 15 defect 6: what our validator refuses is never built for sending. A date beyond
/// what format 303 can hold (the API once let `+262142-12-31` through) and a contact name from the
/// configuration that UNOC cannot write are build errors that name what is wrong, not bytes in
/// the outbox.
#[test]
fn a_message_our_grammars_refuse_is_a_build_error_naming_the_segment() {
    let registry = Registry::embedded();
    let malo: mako_gateway::ids::MarketLocationId = "51238696781".parse().unwrap();
    let vnb: mako_gateway::ids::MarketPartnerId = "9900000000011".parse().unwrap();
    let mut refs = ReferenceSequence::new("MG", 1).unwrap();
    let far = GridFeeOrder {
        grid_operator: vnb.clone(),
        market_location: malo.clone(),
        product: ModuleProduct::Module1,
        change: ChangeDate::On(NaiveDate::from_ymd_opt(262142, 12, 31).unwrap()),
    };
    let error = grid_fee_order(registry, &sender(), &far, at(2026, 10, 5, 8, 0), &mut refs)
        .expect_err("a date of year 262142 is not sendable");
    let text = error.to_string();
    assert!(matches!(error, BuildError::Invalid { .. }), "{error:?}");
    assert!(
        text.contains("ORDERS 17133") && text.contains("DTM"),
        "{text}"
    );

    // ORDERS 1.4b (in force before FV2610) still writes the sender's contact.
    let long_name = Sender {
        contact_name: Some("Jürgen \u{1F600}".into()),
        ..sender()
    };
    let order = GridFeeOrder {
        change: ChangeDate::On(day(2026, 6, 1)),
        ..far
    };
    let error = grid_fee_order(
        registry,
        &long_name,
        &order,
        at(2026, 5, 10, 8, 0),
        &mut refs,
    )
    .expect_err("an emoji is not in UNOC (ISO 8859-1)");
    assert!(
        error.to_string().contains("CTA") && error.to_string().contains("UNOC"),
        "{error}"
    );
    // The same order with a fitting name builds.
    grid_fee_order(
        registry,
        &sender(),
        &order,
        at(2026, 5, 10, 8, 0),
        &mut refs,
    )
    .unwrap();
}
