//! `mako-gateway render ORDER.json`: the interchange the gateway writes for an order given as
//! JSON (for debugging and for the snapshots).

use std::path::Path;
use std::process::ExitCode;

use chrono::{NaiveDate, NaiveDateTime};
use serde::Deserialize;

use super::{display_name, read_input, EXIT_INVALID_INPUT, EXIT_USAGE};
use crate::edifact::{LineBreak, ReferenceSequence, Writer};
use crate::grammar::Registry;
use crate::ids::{MarketLocationId, MarketPartnerId, MeteringLocationId};
use crate::orders::{
    billing_data_answer, check_new_reductions, grid_fee_order, meter_order, BillingDataAnswer,
    ChangeDate, ContactFields, CustomerContact, Existing, GridFeeOrder, GridFeeStatus, ImsysOrder,
    MeterType, ModuleProduct, PeriodAnswer, ReductionType, Sender, E0610,
};

/// Our side of the message.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SenderJson {
    id: String,
    contact_name: Option<String>,
    contact_email: Option<String>,
}

/// An order as `render` reads it.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum OrderJson {
    /// A §14a grid-fee reduction (one or more module types at once).
    GridFeeReduction {
        now: NaiveDateTime,
        sender: SenderJson,
        grid_operator: String,
        market_location: String,
        types: Vec<ReductionType>,
        #[serde(default)]
        active: Vec<ReductionType>,
        meter_type: MeterType,
        change_date: Option<NaiveDate>,
        next_possible_from: Option<NaiveDate>,
        #[serde(default = "default_prefix")]
        reference_prefix: String,
        #[serde(default = "one")]
        sequence: u64,
    },
    /// A smart-meter installation order.
    MeterOrder {
        now: NaiveDateTime,
        sender: SenderJson,
        metering_operator: String,
        metering_location: String,
        wanted_date: NaiveDate,
        /// The end customer's contact (NAD+Z09), checked by the product rules.
        customer_contact: Option<ContactFields>,
        #[serde(default = "default_prefix")]
        reference_prefix: String,
        #[serde(default = "one")]
        sequence: u64,
    },
    /// The answer to a grid operator's UTILMD 55218 (UTILMD 55220).
    BillingDataAnswer {
        now: NaiveDateTime,
        sender: SenderJson,
        grid_operator: String,
        market_location: String,
        /// The 55218's Vorgangsnummer (IDE+24).
        transaction: String,
        /// The 55218's Zeitraum-IDs (RFF+Z49 and RFF+Z53).
        periods: Vec<String>,
        /// EBD E_0610: A01 or A02, for every period.
        code: String,
        #[serde(default = "default_prefix")]
        reference_prefix: String,
        #[serde(default = "one")]
        sequence: u64,
    },
}

fn default_prefix() -> String {
    "MG".to_string()
}

fn one() -> u64 {
    1
}

fn sender(s: SenderJson) -> Result<Sender, String> {
    Ok(Sender {
        id: s.id.parse::<MarketPartnerId>().map_err(|e| e.to_string())?,
        contact_name: s.contact_name,
        contact_email: s.contact_email,
    })
}

/// Renders an order given as JSON into EDIFACT bytes (one segment per line).
pub fn render_order(json: &[u8]) -> Result<Vec<u8>, String> {
    let order: OrderJson =
        serde_json::from_slice(json).map_err(|e| format!("invalid order JSON: {e}"))?;
    let registry = Registry::embedded();
    let built = match order {
        OrderJson::GridFeeReduction {
            now,
            sender: s,
            grid_operator,
            market_location,
            types,
            active,
            meter_type,
            change_date,
            next_possible_from,
            reference_prefix,
            sequence,
        } => {
            let existing: Vec<Existing> = active
                .iter()
                .map(|&t| Existing {
                    reduction_type: t,
                    status: GridFeeStatus::Activated,
                })
                .collect();
            check_new_reductions(&existing, &types, meter_type).map_err(|broken| {
                broken
                    .iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })?;
            let product = ModuleProduct::for_types(&types, &active)
                .ok_or("this combination of modules cannot be ordered")?;
            let change = match (change_date, next_possible_from) {
                (Some(d), None) => ChangeDate::On(d),
                (None, Some(d)) => ChangeDate::NextPossibleFrom(d),
                _ => return Err("give exactly one of change_date and next_possible_from".into()),
            };
            let order = GridFeeOrder {
                grid_operator: grid_operator
                    .parse()
                    .map_err(|e: crate::ids::IdError| e.to_string())?,
                market_location: market_location
                    .parse::<MarketLocationId>()
                    .map_err(|e| e.to_string())?,
                product,
                change,
            };
            let mut refs = ReferenceSequence::new(&reference_prefix, sequence)?;
            grid_fee_order(registry, &sender(s)?, &order, now, &mut refs)
                .map_err(|e| e.to_string())?
        }
        OrderJson::MeterOrder {
            now,
            sender: s,
            metering_operator,
            metering_location,
            wanted_date,
            customer_contact,
            reference_prefix,
            sequence,
        } => {
            let operator: MarketPartnerId = metering_operator
                .parse()
                .map_err(|e: crate::ids::IdError| e.to_string())?;
            let melo: MeteringLocationId = metering_location
                .parse()
                .map_err(|e: crate::ids::IdError| e.to_string())?;
            let customer = customer_contact
                .map(CustomerContact::new)
                .transpose()
                .map_err(|problems| {
                    let problems: Vec<String> = problems
                        .iter()
                        .map(|p| format!("customer_contact.{}: {p}", p.field()))
                        .collect();
                    problems.join("; ")
                })?;
            let order = ImsysOrder {
                metering_operator: operator,
                metering_location: melo,
                wanted: wanted_date,
                customer,
            };
            let mut refs = ReferenceSequence::new(&reference_prefix, sequence)?;
            meter_order(registry, &sender(s)?, &order, now, &mut refs).map_err(|e| e.to_string())?
        }
        OrderJson::BillingDataAnswer {
            now,
            sender: s,
            grid_operator,
            market_location,
            transaction,
            periods,
            code,
            reference_prefix,
            sequence,
        } => {
            // EBD E_0610: A01 übernommen ohne Anmerkung, A02 übernommen, Sicht des LF folgt.
            let code = match code.as_str() {
                "A01" => E0610::A01,
                "A02" => E0610::A02,
                other => return Err(format!("E_0610 knows A01 and A02, not {other:?}")),
            };
            let answer = BillingDataAnswer {
                grid_operator: grid_operator
                    .parse()
                    .map_err(|e: crate::ids::IdError| e.to_string())?,
                market_location: market_location
                    .parse::<MarketLocationId>()
                    .map_err(|e| e.to_string())?,
                transaction,
                periods: periods
                    .into_iter()
                    .map(|period| PeriodAnswer { period, code })
                    .collect(),
                view: Vec::new(),
            };
            let mut refs = ReferenceSequence::new(&reference_prefix, sequence)?;
            billing_data_answer(registry, &sender(s)?, &answer, now, &mut refs)
                .map_err(|e| e.to_string())?
        }
    };
    Writer::new(built.interchange.header.syntax)
        .with_line_break(LineBreak::Lf)
        .write_interchange(&built.interchange)
        .map_err(|e| e.to_string())
}

pub(super) fn run(path: &Path) -> ExitCode {
    let input = match read_input(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", display_name(path));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match render_order(&input) {
        Ok(bytes) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: error: {e}", display_name(path));
            ExitCode::from(EXIT_INVALID_INPUT)
        }
    }
}
