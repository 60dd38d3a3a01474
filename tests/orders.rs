//! Orders out and answers in: the built messages validate against our grammars (and are
//! snapshotted), the inbound samples are read into answers, and the answers move the orders
//! through their lifecycles.

use chrono::{NaiveDate, NaiveDateTime};
use mako_gateway::acks::AckMatch;
use mako_gateway::edifact::{parse, ReferenceSequence, Writer};
use mako_gateway::grammar::{validate_interchange, Registry, Severity};
use mako_gateway::orders::*;

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
    let melo = "DE0032106765712000000000000000037".parse().unwrap();
    let msb = "9900000000029".parse().unwrap();
    let mut refs = ReferenceSequence::new("MG", 7).unwrap();
    let now = meter_order(
        registry,
        &sender(),
        &msb,
        &melo,
        day(2026, 7, 1),
        at(2026, 5, 10, 8, 15),
        &mut refs,
    )
    .unwrap();
    assert_eq!(now.pid, 17011);
    insta::assert_snapshot!("orders_17011_imsys", written_and_validated(&now));
    let then = meter_order(
        registry,
        &sender(),
        &msb,
        &melo,
        day(2025, 8, 1),
        at(2025, 6, 20, 8, 15),
        &mut refs,
    )
    .unwrap();
    assert_eq!(then.pid, 17003);
    insta::assert_snapshot!("orders_17003_imsys_fv2504", written_and_validated(&then));
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
    read_answer(report.validated.as_ref().unwrap(), report.pid.unwrap()).unwrap()
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
        status: MeterStatus::Created,
        order_document: None,
        appointment_at: None,
        installed_at: None,
        activated_at: None,
        cancelled_reason: None,
        blocked_at: None,
        blocked_reason: None,
    }
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
        .apply(
            &Input::MeteringLocationInstalled(at(2026, 7, 1, 9, 30)),
            now,
        )
        .unwrap();
    assert_eq!(installed.order.installed_at, Some(at(2026, 7, 1, 9, 30)));
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

#[test]
fn rejections_block_or_cancel_the_meter_order() {
    let now = at(2026, 5, 20, 9, 0);
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    // E_0283 A01: the technology is already there.
    let pre = placed
        .clone()
        .apply(&Input::Answer(&response("A01", "E_0283", 19006)), now)
        .unwrap();
    assert_eq!(pre.order.status, MeterStatus::Cancelled);
    assert_eq!(pre.order.cancelled_reason, Some(CancelReason::PreExisting));
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
    // E_0283 A04 offers another window: kept in the reason.
    let window = placed
        .clone()
        .apply(&Input::Answer(&response("A04", "E_0283", 19006)), now)
        .unwrap();
    assert!(window
        .order
        .blocked_reason
        .unwrap()
        .text
        .unwrap()
        .contains("2026-07-31 22:00:00"));
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
        .apply(&Input::MeteringLocationInstalled(now), now)
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
            let answer = read_answer(report.validated.as_ref().unwrap(), pid);
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
                    // What the partner's status means is configured per partner.
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
                Some(a @ Answer::MeteringLocationChanged { .. }) => {
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
                None => format!("PID {pid}: no answer to an order"),
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

/// The partner statuses of the wMSB of the samples: IFTSTA 21043 `Z43` = site check
/// submitted, `Z43:A01` = reviewed, `Z14` = meter activated.
fn wmsb_status_rules() -> PartnerStatusRules {
    let mut rules = PartnerStatusRules::default();
    let wmsb: mako_gateway::ids::MarketPartnerId = "9900000000029".parse().unwrap();
    for (code, status) in [
        ("Z43", MeterStatus::CheckSubmitted),
        ("Z43:A01", MeterStatus::CheckReviewed),
        ("Z14", MeterStatus::Activated),
    ] {
        rules
            .add(
                wmsb.clone(),
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: Some(21043),
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
    let submitted = read("inbound/iftsta_21043_z43_site_check_submitted.edi");
    let activated = read("inbound/iftsta_21043_z14_meter_activated.edi");
    let placed = meter().placed("MG00000007".into()).unwrap().order;
    let meters = vec![placed.clone()];
    assert_eq!(
        match_answer(&submitted, &[], &meters),
        AnswerMatch::Meter(&meters[0]),
        "matched by RFF+AGI"
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
    let Answer::StatusReport(report) = &activated else {
        panic!("{activated:?}")
    };
    // Activation before installation is out of order only if it goes backwards: the
    // partner's activation after the check is accepted as the last milestone.
    let done = step
        .order
        .apply(
            &Input::PartnerStatus(rules.milestone("9900000000029", report).unwrap()),
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
        match_answer(&accepted, &reductions, &[]),
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
    let AnswerMatch::GridFee(matched) = match_answer(&billing, &accepted_rows, &[]) else {
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
        match_answer(&closed, &rows, &[]),
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
        match_answer(&closed, &[ended.order], &[]),
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
        match_answer(&response, &reductions, &meters),
        AnswerMatch::GridFee(vec![&reductions[0]])
    );
    let billing = read("inbound/utilmd_55218_billing_data.edi");
    assert_eq!(
        match_answer(&billing, &reductions, &meters),
        AnswerMatch::GridFee(vec![&reductions[0]])
    );
    let confirmed = read("inbound/ordrsp_19005_e0250_a02_confirmed.edi");
    assert_eq!(
        match_answer(&confirmed, &reductions, &meters),
        AnswerMatch::Meter(&meters[0])
    );
    let installed = read("inbound/utilmd_55620_metering_location_change.edi");
    assert_eq!(
        match_answer(&installed, &reductions, &meters),
        AnswerMatch::Meter(&meters[0])
    );
    // Nothing sent: every answer goes to clearing, with its reason.
    for answer in [&response, &billing, &confirmed, &installed] {
        match match_answer(answer, &[], &[]) {
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
    match match_answer(&billing, &[ordered, second], &[]) {
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
        .apply(
            &Input::MeteringLocationInstalled(at(2026, 6, 15, 8, 0)),
            now,
        )
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
        .apply(
            &Input::MeteringLocationInstalled(at(2026, 6, 15, 8, 0)),
            now,
        )
        .unwrap();
    assert_eq!(again.event, None);
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
