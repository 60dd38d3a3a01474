//! The inbound path's pure core with bytes and a fixed clock: every inbound sample read,
//! acknowledged, matched and applied, with the effects the store would commit.

use chrono::{NaiveDate, NaiveDateTime};
use mako_gateway::acks::{AckContext, ContrlPolicy, SentMessage};
use mako_gateway::edifact::ReferenceSequence;
use mako_gateway::grammar::Registry;
use mako_gateway::orders::*;
use mako_gateway::plan::inbound::*;
use mako_gateway::plan::routing::{Route, RoutingCheck, RoutingTable};

fn now() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2026, 6, 16)
        .unwrap()
        .and_hms_opt(9, 0, 0)
        .unwrap()
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .unwrap()
}

fn read(raw: &[u8]) -> ReadInbound {
    read_routed(raw, &RoutingTable::default())
}

fn read_routed(raw: &[u8], routing: &RoutingTable) -> ReadInbound {
    let check = RoutingCheck {
        table: routing,
        registry: Registry::embedded(),
    };
    let mut ctx = AckContext {
        registry: Registry::embedded(),
        now: now(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("ACK", 1).unwrap(),
        processing: &check,
    };
    read_inbound(raw, &mut ctx, routing)
}

fn ordered_reduction() -> GridFeeReduction {
    GridFeeReduction {
        id: "gfr_1".into(),
        subscription: "sub_1".into(),
        reduction_type: ReductionType::Module1,
        market_location: "51238696781".parse().unwrap(),
        grid_operator: "9900000000011".parse().unwrap(),
        meter_type: MeterType::Smart,
        status: GridFeeStatus::Ordered,
        product: Some(ModuleProduct::Module1),
        order_document: Some("MG10000000001".into()),
        accepted: false,
        valid_from: None,
        valid_until: None,
        rejection: None,
    }
}

fn placed_meter() -> MeterOrder {
    MeterOrder {
        id: "mor_1".into(),
        subscription: "sub_1".into(),
        market_location: "51238696781".parse().unwrap(),
        metering_location: Some("DE0032106765712000000000000000037".parse().unwrap()),
        metering_operator: "9900000000029".parse().unwrap(),
        customer_contact: None,
        status: MeterStatus::Placed,
        order_document: Some("MG00000007".into()),
        appointment_at: None,
        installed_at: None,
        installation: None,
        activated_at: None,
        cancelled_reason: None,
        blocked_at: None,
        blocked_reason: None,
    }
}

fn decide_with(
    read: &ReadInbound,
    candidates: &Candidates,
    rules: &PartnerStatusRules,
) -> Vec<Effect> {
    let sender = Sender {
        id: "9900000000003".parse().unwrap(),
        contact_name: None,
        contact_email: None,
    };
    let mut refs = ReferenceSequence::new("MG", 100).unwrap();
    let partner = read.facts.sender.clone().unwrap_or_default();
    let reference = read.facts.interchange_reference.clone().unwrap_or_default();
    let mut ctx = DecideContext {
        registry: Registry::embedded(),
        sender: &sender,
        partner: &partner,
        interchange_reference: &reference,
        partner_status: rules,
        now: now(),
        references: &mut refs,
    };
    decide(&read.items, candidates, &mut ctx)
}

fn all() -> Candidates {
    Candidates {
        reductions: vec![ordered_reduction()],
        meters: vec![placed_meter()],
        sent: vec![SentMessage {
            interchange_reference: "MG10000000001".into(),
            message_reference: "1".into(),
            document_number: "MG10000000001".into(),
            order: Some("gfr_1".into()),
            pass_through: None,
        }],
        ..Candidates::default()
    }
}

#[test]
fn an_acceptance_is_journaled_acknowledged_and_recorded_on_the_order() {
    let r = read(&sample("ordrsp_19133_a20_accepted.edi"));
    assert_eq!(r.facts.sender.as_deref(), Some("9900000000011"));
    assert_eq!(r.facts.pids, vec![19133]);
    assert_eq!(r.replies.len(), 1, "one positive APERAK");
    assert_eq!(
        r.items[0].keys(),
        vec![LookupKey::OrderDocument("MG10000000001".into())]
    );
    let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
    match &effects[..] {
        [Effect::GridFee {
            from, order, event, ..
        }] => {
            assert_eq!(from, "ordered");
            assert!(order.accepted);
            assert_eq!(*event, None, "A20 records the acceptance, no status change");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn billing_data_activate_and_are_answered_with_55220() {
    let r = read(&sample("utilmd_55218_billing_data.edi"));
    let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
    assert!(matches!(
        &effects[0],
        Effect::GridFee {
            event: Some("grid_fee_reduction.activated"),
            ..
        }
    ));
    match &effects[1] {
        Effect::Send { partner, pid, .. } => {
            assert_eq!(partner, "9900000000011");
            assert_eq!(*pid, 55220);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_broken_answer_is_rejected_by_aperak_and_not_applied() {
    let r = read(&sample("ordrsp_19133_broken.edi"));
    assert_eq!(r.replies.len(), 1);
    let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
    assert!(
        matches!(&effects[..], [Effect::Nothing { reason, .. }] if reason.contains("rejected by our acknowledgement")),
        "{effects:?}"
    );
}

#[test]
fn an_answer_for_nothing_we_sent_goes_to_clearing() {
    let r = read(&sample("ordrsp_19005_e0250_a02_confirmed.edi"));
    let effects = decide_with(&r, &Candidates::default(), &PartnerStatusRules::default());
    assert!(
        matches!(&effects[..], [Effect::Clearing { reason, message }] if reason.contains("MG00000007") && !message.is_empty()),
        "{effects:?}"
    );
}

/// IFTSTA 21043 answers configuration orders: it goes to the supplier core unless the
/// configuration routes it to the gateway for a partner's status rules; even then a status
/// moves a meter order only where a rule gives it a meaning.
#[test]
fn partner_statuses_apply_only_where_configured() {
    let bytes = sample("iftsta_21043_z43_partner_status.edi");
    let forwarded = read(&bytes);
    assert_eq!(forwarded.messages.len(), 1, "{:?}", forwarded.items);
    assert_eq!(forwarded.messages[0].route, Route::Forward);
    let routing = RoutingTable::with_overrides([("21043", Route::Handle)], [], None).unwrap();
    let r = read_routed(&bytes, &routing);
    let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
    assert!(
        matches!(&effects[..], [Effect::NotApplied { reason, .. }] if reason.contains("no configured meaning")),
        "{effects:?}"
    );
    let mut rules = PartnerStatusRules::default();
    rules
        .add(
            "9900000000029".parse().unwrap(),
            PartnerStatusRule {
                message: "IFTSTA".into(),
                pid: Some(21043),
                code: "Z43".into(),
                status: MeterStatus::CheckSubmitted,
            },
        )
        .unwrap();
    let effects = decide_with(&r, &all(), &rules);
    assert!(
        matches!(
            &effects[..],
            [Effect::Meter {
                event: Some("meter_order.check_submitted"),
                ..
            }]
        ),
        "{effects:?}"
    );
}

#[test]
fn a_contrl_rejecting_our_interchange_rejects_its_order() {
    let r = read(&sample("contrl_uci4_rejected.edi"));
    assert!(r.replies.is_empty(), "never a CONTRL or APERAK on a CONTRL");
    assert_eq!(
        r.items[0].keys(),
        vec![LookupKey::SentInterchange("MG10000000001".into())]
    );
    let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
    match &effects[..] {
        [Effect::GridFee { order, event, .. }] => {
            assert_eq!(*event, Some("grid_fee_reduction.rejected"));
            let rejection = order.rejection.as_ref().unwrap();
            assert!(rejection.message_reference.is_some());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn two_answers_in_one_interchange_apply_in_order_and_repeats_change_nothing() {
    // The same acceptance twice: the second one is a repeat.
    let r = read(&sample("ordrsp_19133_a20_accepted.edi"));
    let mut items = r.items.clone();
    items.extend(r.items.clone());
    let doubled = ReadInbound {
        facts: r.facts.clone(),
        replies: Vec::new(),
        syntax_errors: Vec::new(),
        items,
        messages: Vec::new(),
    };
    let effects = decide_with(&doubled, &all(), &PartnerStatusRules::default());
    assert!(matches!(effects[0], Effect::GridFee { .. }));
    assert!(matches!(&effects[1], Effect::Nothing { reason, .. } if reason.contains("repeated")));
}

#[test]
fn garbage_is_kept_as_not_processed_without_panic() {
    for raw in [
        &b""[..],
        b"hello",
        b"UNB+UNOC:3+1:500+2:500+260101:0000+X'UNH+1",
        &[0xff, 0x00, 0x27],
    ] {
        let r = read(raw);
        assert!(
            matches!(&r.items[..], [InboundItem::NotProcessed { .. }]),
            "{raw:?}: {:?}",
            r.items
        );
        let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
        assert_eq!(effects.len(), 1);
    }
}

/// The messages that were read as meter-order milestones without carrying them now reach the
/// supplier core: IFTSTA 21047 names a UTILMD Vorgangsnummer in `RFF+ACW` (AHB IFTSTA [535]),
/// not our order in `RFF+AGI`, so the gateway read nothing and the core never saw it; UTILMD
/// 55620 (the grid operator's MSB assignment) was taken as the installation.
#[test]
fn regression_a_bearbeitungsstand_and_a_55620_go_to_the_core() {
    for name in [
        "iftsta_21047_e0620_a02_data_kept.edi",
        "iftsta_21047_e0620_a01_data_resent_fv2610.edi",
        "utilmd_55620_metering_location_change.edi",
    ] {
        let r = read(&sample(name));
        assert_eq!(r.messages.len(), 1, "{name}: {:?}", r.items);
        assert_eq!(r.messages[0].route, Route::Forward, "{name}");
        assert_eq!(r.messages[0].state, MessageState::New, "{name}");
        let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
        assert!(
            effects
                .iter()
                .all(|e| !matches!(e, Effect::Meter { .. } | Effect::GridFee { .. })),
            "{name}: {effects:?}"
        );
    }
}

/// The installation (UTILMD 55653) and the failure (IFTSTA 21025) are read with the
/// Messlokation as their key and change the metering operator's open order there.
#[test]
fn installation_and_failure_are_found_by_the_messlokation() {
    for (name, event, status) in [
        (
            "utilmd_55653_imsys_installed.edi",
            "meter_order.installed",
            MeterStatus::Installed,
        ),
        (
            "iftsta_21025_e0286_a01_no_access.edi",
            "meter_order.blocked",
            MeterStatus::Placed,
        ),
    ] {
        let r = read(&sample(name));
        assert_eq!(
            r.items[0].keys(),
            vec![LookupKey::MeteringLocation(
                "DE0032106765712000000000000000037".into()
            )],
            "{name}"
        );
        let effects = decide_with(&r, &all(), &PartnerStatusRules::default());
        match &effects[..] {
            [Effect::Meter {
                order,
                event: Some(e),
                ..
            }] => {
                assert_eq!((*e, order.status), (event, status), "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
