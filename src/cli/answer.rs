//! `mako-gateway answer SAMPLE --to SENT`: a partner's answer for trying the gateway out. One
//! of `samples/inbound/` is rewritten to answer an interchange the gateway sent (e.g. the
//! ORDERS in `data/outbox/`): the partner becomes the UNB sender and we the recipient, the
//! references name our UNB reference and document number (`RFF+ON`, `RFF+ACE`, `RFF+AGO`, the
//! CONTRL's `UCI`), `NAD+MS`/`NAD+MR` and `LOC+172` follow the sent message, and the answer
//! gets its own UNB reference, document number and dates. `--text` replaces the free text
//! (`FTX`).
//!
//! What it does not do: check that the sample fits the sent message (a UTILMD 55218 to a meter
//! order is written all the same; the gateway then puts it into clearing) or write anything
//! but the file it is asked to.

use std::path::Path;
use std::process::ExitCode;

use chrono::NaiveDateTime;

use super::{display_name, read_input, EXIT_INVALID_INPUT, EXIT_USAGE};

/// What the answer needs of the interchange it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    /// UNB sender (us) with its qualifier (`9900000000003:500`).
    sender: String,
    /// UNB recipient (the partner) with its qualifier.
    recipient: String,
    /// UNB reference.
    reference: String,
    /// BGM document number of the first message.
    document: Option<String>,
    /// LOC+172 (the market location), if any.
    location: Option<String>,
}

/// Splits EDIFACT with the standard delimiters into segments (terminator kept out, release
/// characters kept in), line breaks between segments dropped.
fn split_segments(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '?' => {
                current.push(c);
                if let Some(n) = chars.next() {
                    current.push(n);
                }
            }
            '\'' => out.push(std::mem::take(&mut current)),
            '\r' | '\n' if current.is_empty() => {}
            _ => current.push(c),
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The data elements of a segment (the tag first), split at `+` not released.
fn split_elements(segment: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = segment.chars();
    while let Some(c) = chars.next() {
        match c {
            '?' => {
                let last = out.last_mut().expect("one element");
                last.push(c);
                if let Some(n) = chars.next() {
                    last.push(n);
                }
            }
            '+' => out.push(String::new()),
            _ => out.last_mut().expect("one element").push(c),
        }
    }
    out
}

fn first_component(element: &str) -> &str {
    element.split(':').next().unwrap_or("")
}

fn read_sent(sent: &str) -> Result<Sent, String> {
    let segments = split_segments(sent);
    let unb = segments
        .iter()
        .map(|s| split_elements(s))
        .find(|e| e[0] == "UNB")
        .ok_or("the sent interchange has no UNB")?;
    let get = |i: usize| unb.get(i).cloned().unwrap_or_default();
    let document = segments
        .iter()
        .map(|s| split_elements(s))
        .find(|e| e[0] == "BGM")
        .and_then(|e| e.get(2).map(|d| first_component(d).to_string()));
    let location = segments
        .iter()
        .map(|s| split_elements(s))
        .find(|e| e[0] == "LOC" && e.get(1).is_some_and(|q| q == "172"))
        .and_then(|e| e.get(2).map(|l| first_component(l).to_string()));
    let sent = Sent {
        sender: get(2),
        recipient: get(3),
        reference: get(5),
        document,
        location,
    };
    if sent.sender.is_empty() || sent.recipient.is_empty() || sent.reference.is_empty() {
        return Err("the sent interchange's UNB lacks the sender, recipient or reference".into());
    }
    Ok(sent)
}

/// Escapes free text for an element (the standard delimiters and the release character).
fn released(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if matches!(c, '?' | '+' | ':' | '\'') {
            out.push('?');
        }
        out.push(c);
    }
    out
}

/// The sample rewritten to answer `sent` at `now` under the UNB reference `reference`; `text`
/// replaces the free text of every FTX. Errors name what is missing.
pub fn template_answer(
    sample: &[u8],
    sent: &[u8],
    now: NaiveDateTime,
    reference: &str,
    text: Option<&str>,
) -> Result<Vec<u8>, String> {
    // The samples and what we send are UNOC (Latin-1): one char per byte both ways.
    let latin1 = |b: &[u8]| b.iter().map(|&c| c as char).collect::<String>();
    let sent = read_sent(&latin1(sent))?;
    let sample = latin1(sample);
    let body = sample.strip_prefix("UNA:+.? '").unwrap_or(&sample);
    let document = sent.document.clone().unwrap_or_default();
    let partner_id = first_component(&sent.recipient).to_string();
    let our_id = first_component(&sent.sender).to_string();
    let mut out = String::from("UNA:+.? '\n");
    for segment in split_segments(body) {
        let mut e = split_elements(&segment);
        match e[0].as_str() {
            "UNB" if e.len() >= 6 => {
                e[2] = sent.recipient.clone();
                e[3] = sent.sender.clone();
                e[4] = now.format("%y%m%d:%H%M").to_string();
                e[5] = reference.to_string();
            }
            "UNZ" if e.len() >= 3 => e[2] = reference.to_string(),
            "BGM" if e.len() >= 3 => e[2] = format!("{reference}A"),
            "DTM" if e.get(1).is_some_and(|d| d.starts_with("137:")) => {
                e[1] = format!("137:{}?+00:303", now.format("%Y%m%d%H%M"));
            }
            "RFF" if e.len() >= 2 => {
                let (qualifier, _) = e[1].split_once(':').unwrap_or((&e[1], ""));
                match qualifier {
                    "ON" | "AGO" if !document.is_empty() => {
                        e[1] = format!("{qualifier}:{document}");
                    }
                    "ACE" => e[1] = format!("ACE:{}", sent.reference),
                    _ => {}
                }
            }
            "UCI" if e.len() >= 4 => {
                e[1] = sent.reference.clone();
                e[2] = sent.sender.clone();
                e[3] = sent.recipient.clone();
            }
            "NAD" if e.len() >= 3 && e[1] == "MS" => {
                e[2] = replace_first_component(&e[2], &partner_id);
            }
            "NAD" if e.len() >= 3 && e[1] == "MR" => {
                e[2] = replace_first_component(&e[2], &our_id);
            }
            "LOC" if e.len() >= 3 && e[1] == "172" => {
                if let Some(l) = &sent.location {
                    e[2] = replace_first_component(&e[2], l);
                }
            }
            "FTX" if e.len() >= 5 => {
                if let Some(t) = text {
                    e[4] = released(t);
                }
            }
            _ => {}
        }
        out.push_str(&e.join("+"));
        out.push_str("'\n");
    }
    Ok(out
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect())
}

fn replace_first_component(element: &str, value: &str) -> String {
    match element.split_once(':') {
        Some((_, rest)) => format!("{value}:{rest}"),
        None => value.to_string(),
    }
}

/// `answer`: writes the templated answer to `out` (a file, or a name in a folder, written
/// under a temporary name first so that a file drop never reads half of it) or prints it.
pub(super) fn run(
    sample: &Path,
    sent: &Path,
    out: Option<&Path>,
    text: Option<&str>,
    now: NaiveDateTime,
) -> ExitCode {
    let read = |p: &Path| {
        read_input(p).map_err(|e| {
            eprintln!("{}: error: cannot read: {e}", display_name(p));
            ExitCode::from(EXIT_USAGE)
        })
    };
    let (sample_bytes, sent_bytes) = match (read(sample), read(sent)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let reference = format!("A{}", now.format("%y%m%d%H%M%S"));
    let answer = match template_answer(&sample_bytes, &sent_bytes, now, &reference, text) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{}: error: {e}", display_name(sent));
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let Some(out) = out else {
        use std::io::Write;
        let _ = std::io::stdout().write_all(&answer);
        return ExitCode::SUCCESS;
    };
    let target = if out.is_dir() {
        let name = sample
            .file_stem()
            .map_or("answer".into(), |s| s.to_string_lossy().into_owned());
        out.join(format!("{name}_{reference}.edi"))
    } else {
        out.to_path_buf()
    };
    let file_name = target
        .file_name()
        .map_or("answer.edi".into(), |n| n.to_string_lossy().into_owned());
    let temporary = target.with_file_name(format!(".{file_name}.tmp"));
    match std::fs::write(&temporary, &answer).and_then(|()| std::fs::rename(&temporary, &target)) {
        Ok(()) => {
            println!("{}", target.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}: error: cannot write: {e}", target.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9904292000003:500+260601:1000+MG00000042'\
UNH+MG0000004A+ORDERS:D:09B:UN:1.4c'BGM+Z91+MG0000004B'DTM+137:202606011000?+00:303'\
NAD+MS+9900000000003::293'NAD+MR+9904292000003::293'LOC+172+51238696781'UNT+7+MG0000004A'UNZ+1+MG00000042'";

    fn now() -> NaiveDateTime {
        chrono::NaiveDate::from_ymd_opt(2026, 6, 2)
            .unwrap()
            .and_hms_opt(9, 30, 0)
            .unwrap()
    }

    #[test]
    fn an_ordrsp_sample_answers_the_sent_orders() {
        let sample = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/inbound/ordrsp_19133_a99_rejected.edi"
        ))
        .unwrap();
        let answer = template_answer(
            &sample,
            SENT,
            now(),
            "A260602093000",
            Some("Gerät <fehlt>: bitte 'anmelden'"),
        )
        .unwrap();
        let text: String = answer.iter().map(|&b| b as char).collect();
        assert!(
            text.contains(
                "UNB+UNOC:3+9904292000003:500+9900000000003:500+260602:0930+A260602093000'"
            ),
            "{text}"
        );
        assert!(text.contains("RFF+ON:MG0000004B'"));
        assert!(text.contains("NAD+MS+9904292000003::293'"));
        assert!(text.contains("NAD+MR+9900000000003::293'"));
        assert!(text.contains("DTM+137:202606020930?+00:303'"));
        assert!(text.contains("FTX+AAP+++Gerät <fehlt>?: bitte ?'anmelden?''"));
        assert!(text.contains("UNZ+1+A260602093000'"));
    }

    #[test]
    fn a_contrl_sample_names_the_sent_interchange() {
        let sample = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/inbound/contrl_uci4_rejected.edi"
        ))
        .unwrap();
        let answer = template_answer(&sample, SENT, now(), "A1", None).unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.contains("UCI+MG00000042+9900000000003:500+9904292000003:500+4+29+UNZ'"),
            "{text}"
        );
    }

    #[test]
    fn a_sent_file_without_unb_is_refused() {
        assert!(template_answer(b"UNB+x'", b"UNH+1'", now(), "A1", None).is_err());
    }
}
