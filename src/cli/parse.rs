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
/// for an interchange of many messages. The text is exactly that of [`summary_json`] (the
/// tests compare both on the corpus and on generated headers); a message whose UNH is plain
/// (ASCII with nothing to unescape, decode or escape for JSON) is written from its bytes
/// without serde, which is most of the work for an interchange of many small messages.
pub fn write_summary_json(
    document: &Document<'_>,
    mut out: impl std::io::Write,
) -> std::io::Result<()> {
    out.write_all(b"{\"interchanges\":[")?;
    for (i, ic) in document.interchanges().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        let (sender, recipient) = (ic.sender(), ic.recipient());
        out.write_all(b"{\"syntax\":")?;
        serde_json::to_writer(&mut out, &ic.syntax().to_string())?;
        out.write_all(b",\"sender\":")?;
        serde_json::to_writer(&mut out, &Party::of(&sender))?;
        out.write_all(b",\"recipient\":")?;
        serde_json::to_writer(&mut out, &Party::of(&recipient))?;
        out.write_all(b",\"control_ref\":")?;
        serde_json::to_writer(&mut out, &ic.control_reference())?;
        out.write_all(b",\"messages\":[")?;
        let mut version = Vec::with_capacity(32);
        let plain = PlainBytes::of(&ic.delimiters());
        let mut number = itoa::Buffer::new();
        // The headers are out of the cache again by now (the parse read every byte since):
        // reading one costs a wait for memory. Read in a tight loop, a block of them waits
        // together (the loads are independent) instead of one after another.
        let mut warm = ic.messages();
        for (n, m) in ic.messages().enumerate() {
            if n % HEADERS_WARMED == 0 {
                let touched = warm
                    .by_ref()
                    .take(HEADERS_WARMED)
                    .fold(0u8, |t, m| t ^ m.unh().raw().first().copied().unwrap_or(0));
                std::hint::black_box(touched);
            }
            if n > 0 {
                out.write_all(b",")?;
            }
            let unh = m.unh();
            match plain_header(&unh, &plain, &mut version) {
                Some((reference, message_type)) => {
                    out.write_all(b"{\"ref\":\"")?;
                    out.write_all(reference)?;
                    out.write_all(b"\",\"type\":\"")?;
                    out.write_all(message_type)?;
                    out.write_all(b"\",\"version\":\"")?;
                    out.write_all(&version)?;
                    out.write_all(b"\",\"segments\":")?;
                    out.write_all(number.format(m.segment_count()).as_bytes())?;
                    out.write_all(b"}")?;
                }
                None => serde_json::to_writer(&mut out, &MessageSummary::of(&m))?,
            }
        }
        write!(out, "],\"segments\":{}", ic.segment_count())?;
        let groups = ic.group_count();
        if groups > 0 {
            write!(out, ",\"groups\":{groups}")?;
        }
        out.write_all(b"}")?;
    }
    out.write_all(b"]}")
}

/// How many message headers [`write_summary_json`] brings into the cache at a time.
const HEADERS_WARMED: usize = 256;

/// The bytes that a header may hold to be written as they are: printable ASCII (which decodes
/// to itself in every repertoire) other than the characters JSON escapes (`"`, `\\`) and the
/// release and repetition characters (a value with them needs unescaping or splitting).
struct PlainBytes([bool; 256]);

impl PlainBytes {
    fn of(d: &crate::edifact::Delimiters) -> PlainBytes {
        let mut table = [false; 256];
        for b in 0x20u8..0x7f {
            table[usize::from(b)] =
                b != b'"' && b != b'\\' && Some(b) != d.release && Some(b) != d.repetition;
        }
        PlainBytes(table)
    }
}

/// The reference (element 1, first component) and message type of a plain UNH, with its
/// version written into `version` as [`crate::edifact::version_of`] gives it; `None` where
/// the header is not plain ([`PlainBytes`]): there the serde form is written. Plain bytes are
/// ASCII, so the bytes are the text (and JSON needs no escape in them).
fn plain_header<'a>(
    unh: &Segment<'a>,
    plain: &PlainBytes,
    version: &mut Vec<u8>,
) -> Option<(&'a [u8], &'a [u8])> {
    let raw = unh.raw();
    if !raw.iter().all(|&b| plain.0[usize::from(b)]) {
        return None;
    }
    let d = unh.delimiters();
    // One pass over the bytes (plain: no release character, so every separator is one): the
    // tag's element (`UNH`, or `UNH:1` with a nesting indicator) is no value; element 1's
    // first component is the reference, element 2's the type, its others the version,
    // joined as `crate::edifact::write_joined` joins them (empty ones written only before a
    // non-empty one). The end of the segment ends the last element.
    let (mut reference, mut message_type) = (&raw[..0], &raw[..0]);
    let (mut element, mut component, mut from) = (0u32, 0u32, 0usize);
    let mut pending = 0usize;
    version.clear();
    for at in 0..=raw.len() {
        let b = if at < raw.len() { raw[at] } else { d.element };
        if b != d.element && b != d.component {
            continue;
        }
        let value = &raw[from..at];
        match (element, component) {
            (1, 0) => reference = value,
            (2, 0) => message_type = value,
            (2, _) => {
                if component > 1 {
                    pending += 1;
                }
                if !value.is_empty() {
                    version.extend(std::iter::repeat_n(b':', pending));
                    pending = 0;
                    version.extend_from_slice(value);
                }
            }
            _ => {}
        }
        if b == d.element {
            if element == 2 {
                break;
            }
            (element, component) = (element + 1, 0);
        } else {
            component += 1;
        }
        from = at + 1;
    }
    Some((reference, message_type))
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
        let ic = &self.0;
        let (sender, recipient) = (ic.sender(), ic.recipient());
        let groups = ic.group_count();
        let mut map = serializer.serialize_map(Some(if groups > 0 { 7 } else { 6 }))?;
        map.serialize_entry("syntax", &ic.syntax().to_string())?;
        map.serialize_entry("sender", &Party::of(&sender))?;
        map.serialize_entry("recipient", &Party::of(&recipient))?;
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
        serializer.collect_seq(self.0.messages().map(|m| MessageSummary::of(&m)))
    }
}

/// A party of the summary: UNB S002 or S003.
#[derive(Serialize)]
struct Party<'p> {
    id: &'p str,
    qualifier: &'p str,
}

impl<'p> Party<'p> {
    fn of(party: &'p crate::edifact::PartyRef<'_>) -> Party<'p> {
        Party {
            id: &party.id,
            qualifier: &party.qualifier,
        }
    }
}

/// One message of the summary.
#[derive(Serialize)]
struct MessageSummary<'m> {
    #[serde(rename = "ref")]
    reference: Cow<'m, str>,
    #[serde(rename = "type")]
    message_type: Cow<'m, str>,
    version: VersionField<'m>,
    segments: usize,
}

impl<'m> MessageSummary<'m> {
    /// UNH read once (its elements found once), as the message's own `reference()`,
    /// `message_type()` and `version()` would give them.
    fn of(m: &crate::edifact::Message<'_, 'm>) -> MessageSummary<'m> {
        let unh = m.unh();
        let mut elements = unh.elements();
        let reference = elements.next().map_or(Cow::Borrowed(""), |e| e.value(1));
        let s009 = elements.next();
        MessageSummary {
            reference,
            message_type: s009.as_ref().map_or(Cow::Borrowed(""), |e| e.value(1)),
            version: VersionField(s009),
            segments: m.segment_count(),
        }
    }
}

/// S009 from its second component on, written straight into the output.
struct VersionField<'m>(Option<crate::edifact::Element<'m>>);

impl Serialize for VersionField<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Some(s009) => serializer.collect_str(&crate::edifact::Version(s009)),
            None => serializer.serialize_str(""),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON summary as `write_summary_json` writes it.
    fn written(input: &[u8]) -> String {
        let document = crate::edifact::parse(input).expect("parses");
        let mut out = Vec::new();
        write_summary_json(&document, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn an_interchange_with_a_functional_group_is_written_as_its_summary_value() {
        let input = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+261001:0815+REF1'\
UNG+ORDERS+9900000000003:500+9900000000010:500+261001:0815+G1+UN+D:09B'\
UNH+M1+ORDERS:D:09B:UN:1.4b'BGM+Z12+X'UNT+3+M1'UNE+1+G1'UNZ+1+REF1'";
        let text = written(input);
        let document = crate::edifact::parse(input).unwrap();
        assert_eq!(text, summary_json(&document).to_string());
        assert!(text.ends_with(r#""segments":7,"groups":1}]}"#), "{text}");
    }

    #[test]
    fn regression_a_unh_with_a_nesting_indicator_is_read_from_its_second_element() {
        // Syntax version 4 lets a tag carry a nesting indicator (`UNH:1`); element 1 is then
        // the reference. The fast path took byte 4 for the start of element 1.
        let input = b"UNA:+.? 'UNB+UNOC:4+9900000000003:500+9900000000010:500+20261001:0815+REF1'\
UNH:1+M1+ORDERS:D:09B:UN:1.4b'BGM+Z12+X'UNT+3+M1'UNZ+1+REF1'";
        let text = written(input);
        let document = crate::edifact::parse(input).unwrap();
        assert_eq!(text, summary_json(&document).to_string());
        assert!(
            text.contains(r#""ref":"M1","type":"ORDERS","version":"D:09B:UN:1.4b""#),
            "{text}"
        );
    }
}
