//! `mako-gateway parse`: print an interchange as a tree, JSON or EDIFACT.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value as Json};

use super::{display_name, read_input, ParseFormat, EXIT_INVALID_INPUT, EXIT_USAGE};
use crate::edifact::{parse, write_document, Document, Segment, SyntaxError};

pub(super) fn run(path: &Path, format: ParseFormat) -> ExitCode {
    let started = Instant::now();
    let input = match read_input(path) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("{}: error: cannot read: {e}", display_name(path));
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let document = match parse(&input) {
        Ok(d) => d,
        Err(error) => {
            if format == ParseFormat::Json || format == ParseFormat::Stats {
                println!("{}", error_json(&error));
            } else {
                let p = &error.position;
                eprintln!(
                    "{}:{}:{}: error: {error}",
                    display_name(path),
                    p.line,
                    p.column
                );
            }
            return ExitCode::from(EXIT_INVALID_INPUT);
        }
    };
    let elapsed = started.elapsed().as_secs_f64();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = match format {
        ParseFormat::Text => out.write_all(render_text(&document).as_bytes()),
        ParseFormat::Json => write_summary_json(&document, &mut out).and_then(|()| writeln!(out)),
        ParseFormat::Edifact => out.write_all(&write_document(&document)),
        ParseFormat::Stats => writeln!(out, "{}", stats_json(&document, elapsed)),
    };
    match written.and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`| head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write output: {e}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The machine-readable error object of `parse --format json`.
pub fn error_json(error: &SyntaxError) -> Json {
    let p = &error.position;
    let mut e = json!({
        "kind": error.kind.name(),
        "message": error.to_string(),
        "offset": p.offset,
        "line": p.line,
        "column": p.column,
        "segment": p.segment,
        "tag": p.tag.map(|t| t.to_string()),
    });
    if let Some(element) = p.element {
        e["element"] = json!(element);
    }
    if let Some(component) = p.component {
        e["component"] = json!(component);
    }
    if let Some(ms) = p.message_segment {
        e["message_segment"] = json!(ms);
    }
    json!({ "error": e })
}

/// The JSON summary of `parse --format json`, as a value (the same text as
/// `write_summary_json` writes).
pub fn summary_json(document: &Document<'_>) -> Json {
    serde_json::to_value(Summary(document)).unwrap_or(Json::Null)
}

/// Writes the JSON summary of `parse --format json` to `out` as it goes: no value tree is built
/// for an interchange of many messages.
pub fn write_summary_json(
    document: &Document<'_>,
    out: impl std::io::Write,
) -> std::io::Result<()> {
    serde_json::to_writer(out, &Summary(document)).map_err(std::io::Error::from)
}

/// The summary's shape: `{"interchanges": [...]}`.
struct Summary<'d, 'a>(&'d Document<'a>);

impl Serialize for Summary<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("interchanges", &Interchanges(self.0))?;
        map.end()
    }
}

struct Interchanges<'d, 'a>(&'d Document<'a>);

impl Serialize for Interchanges<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.interchanges().map(InterchangeSummary))
    }
}

struct InterchangeSummary<'d, 'a>(crate::edifact::Interchange<'d, 'a>);

impl Serialize for InterchangeSummary<'_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Party<'p> {
            id: &'p str,
            qualifier: &'p str,
        }
        let ic = &self.0;
        let (sender, recipient) = (ic.sender(), ic.recipient());
        let groups = ic.group_count();
        let mut map = serializer.serialize_map(Some(if groups > 0 { 7 } else { 6 }))?;
        map.serialize_entry("syntax", &ic.syntax().to_string())?;
        map.serialize_entry(
            "sender",
            &Party {
                id: &sender.id,
                qualifier: &sender.qualifier,
            },
        )?;
        map.serialize_entry(
            "recipient",
            &Party {
                id: &recipient.id,
                qualifier: &recipient.qualifier,
            },
        )?;
        map.serialize_entry("control_ref", &ic.control_reference())?;
        map.serialize_entry("messages", &MessageSummaries(ic))?;
        map.serialize_entry("segments", &ic.segment_count())?;
        if groups > 0 {
            map.serialize_entry("groups", &groups)?;
        }
        map.end()
    }
}

struct MessageSummaries<'i, 'd, 'a>(&'i crate::edifact::Interchange<'d, 'a>);

impl Serialize for MessageSummaries<'_, '_, '_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct MessageSummary<'m> {
            #[serde(rename = "ref")]
            reference: Cow<'m, str>,
            #[serde(rename = "type")]
            message_type: Cow<'m, str>,
            version: String,
            segments: usize,
        }
        // UNH read once per message (its elements found once), as the message's own
        // `reference()`, `message_type()` and `version()` would give them.
        serializer.collect_seq(self.0.messages().map(|m| {
            let mut elements = m.unh().elements();
            let reference = elements.next().map_or(Cow::Borrowed(""), |e| e.value(1));
            let s009 = elements.next();
            MessageSummary {
                reference,
                message_type: s009.as_ref().map_or(Cow::Borrowed(""), |e| e.value(1)),
                version: s009
                    .as_ref()
                    .map_or_else(String::new, crate::edifact::version_of),
                segments: m.segment_count(),
            }
        }))
    }
}

fn stats_json(document: &Document<'_>, seconds: f64) -> Json {
    let bytes = document.input().len();
    let segments = document.segment_count();
    let messages: usize = document.interchanges().map(|ic| ic.messages().len()).sum();
    json!({
        "bytes": bytes,
        "interchanges": document.interchanges().len(),
        "messages": messages,
        "segments": segments,
        "parse_s": (seconds * 1e4).round() / 1e4,
        "mb_s": (bytes as f64 / 1e6 / seconds).round(),
        "segments_s": (segments as f64 / seconds).round(),
    })
}

/// The readable tree of `parse --format text`: one line per interchange, message and segment,
/// values unescaped and decoded, elements separated by ` + `, components by `:`. A value that
/// itself contains `+`, `:` or leading/trailing spaces is quoted.
pub fn render_text(document: &Document<'_>) -> String {
    let mut out = String::new();
    for (i, ic) in document.interchanges().enumerate() {
        let s = ic.sender();
        let r = ic.recipient();
        let _ = writeln!(
            out,
            "interchange {}: {} from {}:{} to {}:{}, reference {}, {} segments",
            i + 1,
            ic.syntax(),
            s.id,
            s.qualifier,
            r.id,
            r.qualifier,
            ic.control_reference(),
            ic.segment_count()
        );
        if let Some(una) = ic.una() {
            let _ = writeln!(out, "  UNA {}", String::from_utf8_lossy(&una[3..]));
        }
        let mut messages = ic.messages().peekable();
        let mut in_message = false;
        for segment in ic.segments() {
            if segment.is(b"UNH") {
                if let Some(m) = messages.next() {
                    let _ = writeln!(
                        out,
                        "  message {}: {} {}, {} segments",
                        m.reference(),
                        m.message_type(),
                        m.version(),
                        m.segment_count()
                    );
                }
                in_message = true;
            }
            let indent = if in_message { "    " } else { "  " };
            let _ = writeln!(out, "{indent}{}", render_segment(&segment));
            if segment.is(b"UNT") {
                in_message = false;
            }
        }
    }
    out
}

fn render_segment(segment: &Segment<'_>) -> String {
    let mut line = format!("{:>4} {}", segment.number(), segment.tag());
    for (i, element) in segment.elements().enumerate() {
        line.push_str(if i == 0 { " " } else { " + " });
        for (r, repetition) in element.repetitions().enumerate() {
            if r > 0 {
                line.push_str(" * ");
            }
            for (c, component) in repetition.components().enumerate() {
                if c > 0 {
                    line.push(':');
                }
                let text = component.text();
                if text.contains([':', '+', '*', '"']) || text.trim() != text {
                    let _ = write!(line, "{text:?}");
                } else {
                    line.push_str(&text);
                }
            }
        }
    }
    line
}
