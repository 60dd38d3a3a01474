//! `mako-gateway validate` and `mako-gateway ack`.

use std::path::Path;
use std::process::ExitCode;

use chrono::NaiveDateTime;
use serde_json::json;

use super::{display_name, read_input, EXIT_INVALID_INPUT, EXIT_USAGE};
use crate::acks::{plan, AckContext, AckPlan, ContrlPolicy};
use crate::edifact::{parse_lenient, ReferenceSequence};
use crate::grammar::{validate_interchange, MessageReport, Registry, Severity};
use crate::plan::routing::{route_of_message, Route, RoutingTable};

/// Renders the findings of a validation as text lines.
pub fn render_findings(
    file: &str,
    syntax: &[crate::edifact::SyntaxError],
    reports: &[MessageReport<'_>],
) -> String {
    let mut out = String::new();
    for e in syntax {
        let p = &e.position;
        out.push_str(&format!("{file}:{}:{}: error: {e}\n", p.line, p.column));
    }
    for r in reports {
        let pid = r.pid.map_or(String::new(), |p| format!(" PID {p}"));
        let grammar = r.mig.as_deref().unwrap_or("no grammar");
        out.push_str(&format!(
            "message {} {}{pid}: {} finding(s) ({grammar}{})\n",
            r.reference,
            r.identifier,
            r.findings.len(),
            r.ahb.as_deref().map_or(String::new(), |a| format!(", {a}"))
        ));
        for f in &r.findings {
            let codes = match (f.contrl_code, f.aperak_code) {
                (Some(c), _) => format!(" [CONTRL {c}]"),
                (None, Some(a)) => format!(" [APERAK {a}]"),
                _ => String::new(),
            };
            out.push_str(&format!("  {f}{codes}\n"));
        }
    }
    out
}

fn reports_json(
    syntax: &[crate::edifact::SyntaxError],
    reports: &[MessageReport<'_>],
    routes: &[Route],
) -> serde_json::Value {
    json!({
        "syntax_errors": syntax.iter().map(|e| super::error_json(e)["error"].clone()).collect::<Vec<_>>(),
        "messages": reports.iter().zip(routes).map(|(r, route)| json!({
            "ref": r.reference,
            "route": route,
            "checked": !r.is_unchecked(),
            "identifier": r.identifier,
            "pid": r.pid,
            "date": r.date.map(|d| d.to_string()),
            "mig": r.mig,
            "ahb": r.ahb,
            "findings": r.findings,
        })).collect::<Vec<_>>(),
    })
}

pub(super) fn run_validate(path: &Path, json_output: bool, config: Option<&Path>) -> ExitCode {
    let routing = match config {
        None => RoutingTable::default(),
        Some(_) => match super::daemon::load_config(config) {
            Ok(c) => c.routing,
            Err(code) => return code,
        },
    };
    let input = match read_input(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", display_name(path));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let outcome = parse_lenient(&input);
    let registry = Registry::embedded();
    let reports: Vec<MessageReport<'_>> = outcome
        .document
        .as_ref()
        .map(|d| {
            d.interchanges()
                .flat_map(|ic| validate_interchange(&ic, registry))
                .collect()
        })
        .unwrap_or_default();
    // The route of each message, as the gateway would apply it.
    let routes: Vec<Route> = outcome
        .document
        .as_ref()
        .map(|d| {
            d.interchanges()
                .flat_map(|ic| {
                    ic.messages()
                        .map(|m| route_of_message(&routing, registry, &m))
                        .collect::<Vec<_>>()
                })
                .collect()
        })
        .unwrap_or_default();
    if json_output {
        println!("{}", reports_json(&outcome.errors, &reports, &routes));
    } else {
        print!(
            "{}",
            render_findings(&display_name(path), &outcome.errors, &reports)
        );
        for (r, route) in reports.iter().zip(&routes) {
            let pid = r.pid.map_or(String::new(), |p| format!(" PID {p}"));
            let what = match route {
                Route::Handle => "handled by the gateway",
                Route::Forward if r.is_unchecked() => {
                    "forwarded to the supplier core, unchecked (no grammar)"
                }
                Route::Forward => "forwarded to the supplier core",
                Route::Refuse => "refused (negative APERAK)",
            };
            println!("route: message {}{pid}: {what}", r.reference);
        }
    }
    let errors = !outcome.errors.is_empty()
        || reports
            .iter()
            .any(|r| r.findings.iter().any(|f| f.severity == Severity::Error));
    if errors {
        ExitCode::from(EXIT_INVALID_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}

/// The answers for a received interchange as text: each planned interchange, or a line saying
/// why there is none.
pub fn render_plan(plan: &AckPlan<'_>) -> Result<String, crate::edifact::WriteError> {
    let mut out = String::new();
    let rendered = plan.render()?;
    let mut it = rendered.iter();
    match &plan.contrl {
        Some(_) => {
            out.push_str("# CONTRL\n");
            out.push_str(
                &String::from_utf8_lossy(it.next().expect("rendered CONTRL")).replace('\'', "'\n"),
            );
        }
        None => out.push_str("# no CONTRL due (Strom: CONTRL only for syntax errors)\n"),
    }
    match &plan.aperak {
        Some(_) => {
            out.push_str("# APERAK\n");
            let bytes = it.next().expect("rendered APERAK");
            // UNOC: show Latin-1 as text.
            let text: String = bytes.iter().map(|&b| b as char).collect();
            out.push_str(&text.replace('\'', "'\n"));
        }
        None => out.push_str("# no APERAK due\n"),
    }
    for (what, due) in [("CONTRL", plan.contrl_due), ("APERAK", plan.aperak_due)] {
        if let Some(due) = due {
            out.push_str(&format!("# {what} due by {due} UTC\n"));
        }
    }
    Ok(out)
}

pub(super) fn run_ack(path: &Path, now: Option<NaiveDateTime>, gas: bool) -> ExitCode {
    let input = match read_input(path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", display_name(path));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    // The command line is an edge of the program: the one place besides the daemon's clock
    // that reads the wall clock, and only when --now is not given.
    let now = now.unwrap_or_else(|| crate::clock::Clock::system().now().naive_utc());
    let mut context = AckContext {
        registry: Registry::embedded(),
        now,
        contrl_policy: if gas {
            ContrlPolicy::Always
        } else {
            ContrlPolicy::OnErrors
        },
        references: ReferenceSequence::new("ACK", 1).expect("valid prefix"),
        processing: &crate::acks::NoProcessingCheck,
    };
    let plan = plan(&input, &mut context);
    match render_plan(&plan) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot write the answer: {e}");
            ExitCode::from(EXIT_INVALID_INPUT)
        }
    }
}
