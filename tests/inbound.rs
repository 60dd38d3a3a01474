//! The inbound path's pure core with bytes and a fixed clock: every inbound sample read,
//! acknowledged, matched and applied, with the effects the store would commit.

use chrono::{NaiveDate, NaiveDateTime};
use mako_gateway::acks::{AckContext, ContrlPolicy, SentMessage};
use mako_gateway::edifact::ReferenceSequence;
use mako_gateway::grammar::Registry;
use mako_gateway::orders::*;
use mako_gateway::plan::inbound::*;
use mako_gateway::plan::routing::{RoutingCheck, RoutingTable};

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
    let routing = RoutingTable::default();
    let check = RoutingCheck {
        table: &routing,
        registry: Registry::embedded(),
    };
    let mut ctx = AckContext {
        registry: Registry::embedded(),
        now: now(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("ACK", 1).unwrap(),
        processing: &check,
    };
    read_inbound(raw, &mut ctx, &routing)
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
        status: MeterStatus::Placed,
        order_document: Some("MG00000007".into()),
        appointment_at: None,
        installed_at: None,
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

#[test]
fn partner_statuses_apply_only_where_configured() {
    let r = read(&sample("iftsta_21043_z43_site_check_submitted.edi"));
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
