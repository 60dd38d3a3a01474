//! An interchange as an operator reads it (pure: bytes in, HTML out): the raw EDIFACT one
//! segment a line with every finding marked at its byte position, and the segments as a tree
//! of messages with the name the MIG gives each segment position (chosen by the segment's
//! qualifier where the MIG lists the same tag several times).
//!
//! What it does not do: validate (the caller passes the findings of
//! [`crate::grammar::validate_interchange`] and the syntax errors as [`Mark`]s) or trust the
//! bytes: every character shown goes through maud's escaping.

use maud::{html, Markup};

use crate::grammar::{ElementDef, Mig, Registry};

/// Something to mark in the raw bytes: a finding or a syntax error at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// Byte offset in the interchange.
    pub offset: usize,
    /// `error` or `warning`.
    pub severity: &'static str,
    /// What is wrong, in words (with the rule's reference).
    pub text: String,
}

/// The delimiters of an interchange (UNA, else the defaults of syntax level A/UNOC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Delimiters {
    component: u8,
    element: u8,
    release: u8,
    terminator: u8,
}

impl Delimiters {
    fn of(raw: &[u8]) -> Delimiters {
        match raw {
            [b'U', b'N', b'A', c, e, _decimal, r, _reserved, t, ..] => Delimiters {
                component: *c,
                element: *e,
                release: *r,
                terminator: *t,
            },
            _ => Delimiters {
                component: b':',
                element: b'+',
                release: b'?',
                terminator: b'\'',
            },
        }
    }
}

/// One segment of the raw bytes: `start..end` (the terminator included).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// The segments of `raw`, the line breaks and blanks between them left out; a last segment
/// without terminator is kept as it is.
fn segments(raw: &[u8], d: Delimiters) -> Vec<Span> {
    let mut out = Vec::new();
    // UNA is nine characters and no segment of its own syntax.
    let mut i = 0;
    if raw.starts_with(b"UNA") && raw.len() >= 9 {
        out.push(Span { start: 0, end: 9 });
        i = 9;
    }
    while i < raw.len() {
        while i < raw.len() && matches!(raw[i], b'\r' | b'\n' | b' ' | b'\t') {
            i += 1;
        }
        if i >= raw.len() {
            break;
        }
        let start = i;
        while i < raw.len() {
            if raw[i] == d.release {
                i += 2;
                continue;
            }
            if raw[i] == d.terminator {
                i += 1;
                break;
            }
            i += 1;
        }
        out.push(Span {
            start,
            end: i.min(raw.len()),
        });
    }
    out
}

/// Bytes as text: UNOC is ISO 8859-1, one character per byte, so offsets stay byte offsets.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| b as char).collect()
}

/// Where a mark at `offset` ends in its segment: at the next delimiter not released.
fn mark_end(raw: &[u8], offset: usize, end: usize, d: Delimiters) -> usize {
    let mut i = offset;
    while i < end {
        let b = raw[i];
        if b == d.release {
            i += 2;
            continue;
        }
        if i > offset && (b == d.element || b == d.component || b == d.terminator) {
            return i;
        }
        if b == d.terminator {
            return i;
        }
        i += 1;
    }
    end
}

/// The data elements of a segment (after the tag), each split into its components, with
/// release characters removed.
fn elements(raw: &[u8], span: &Span, d: Delimiters) -> (String, Vec<Vec<String>>) {
    let body = &raw[span.start..span.end];
    let body = body.strip_suffix(&[d.terminator]).unwrap_or(body);
    let mut elements: Vec<Vec<String>> = vec![vec![String::new()]];
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        let last = elements.last_mut().expect("one element at least");
        if b == d.release && i + 1 < body.len() {
            last.last_mut()
                .expect("one component at least")
                .push(body[i + 1] as char);
            i += 2;
            continue;
        }
        if b == d.element {
            elements.push(vec![String::new()]);
        } else if b == d.component {
            last.push(String::new());
        } else {
            last.last_mut()
                .expect("one component at least")
                .push(b as char);
        }
        i += 1;
    }
    let tag = elements.remove(0).join(":");
    (tag, elements)
}

/// The MIG's name of a segment: among the positions with its tag, the one whose first
/// coded value (the qualifier) lists the segment's; else the only or first position.
pub fn segment_name(mig: &Mig, tag: &str, elements: &[Vec<String>]) -> Option<String> {
    let tag: [u8; 3] = tag.as_bytes().try_into().ok()?;
    let defs = mig.segment_defs(&tag);
    let qualifier = elements.first().and_then(|e| e.first());
    let by_qualifier = qualifier.and_then(|q| {
        defs.iter().find(|def| match def.elements.first() {
            Some(ElementDef::Simple(s)) => s.codes.iter().any(|c| c == q),
            Some(ElementDef::Composite { components, .. }) => components
                .first()
                .is_some_and(|s| s.codes.iter().any(|c| c == q)),
            None => false,
        })
    });
    by_qualifier.or(defs.first()).map(|d| d.name.clone())
}

/// The raw interchange, one segment a line, each mark highlighted where it points and its
/// text listed under its segment. Marks outside every segment are listed at the end.
pub fn raw_view(raw: &[u8], marks: &[Mark]) -> Markup {
    let d = Delimiters::of(raw);
    let spans = segments(raw, d);
    let mut placed = vec![false; marks.len()];
    let rendered: Vec<Markup> = spans
        .iter()
        .enumerate()
        .map(|(n, span)| {
            // A mark belongs to the segment it points into (or to the blank before the next).
            let next_start = spans.get(n + 1).map_or(usize::MAX, |s| s.start);
            let mine: Vec<(usize, &Mark)> = marks
                .iter()
                .enumerate()
                .filter(|(_, m)| m.offset >= span.start && m.offset < next_start.max(span.end))
                .collect();
            for (i, _) in &mine {
                placed[*i] = true;
            }
            let mut cuts: Vec<(usize, usize, &'static str)> = mine
                .iter()
                .map(|(_, m)| {
                    let at = m.offset.clamp(span.start, span.end);
                    let to = if at == span.start {
                        span.end
                    } else {
                        mark_end(raw, at, span.end, d)
                    };
                    (at, to.max(at), m.severity)
                })
                .collect();
            cuts.sort();
            let mut pieces: Vec<(String, Option<&'static str>)> = Vec::new();
            let mut at = span.start;
            for (from, to, severity) in cuts {
                if from < at {
                    continue;
                }
                pieces.push((latin1(&raw[at..from]), None));
                pieces.push((latin1(&raw[from..to]), Some(severity)));
                at = to;
            }
            pieces.push((latin1(&raw[at..span.end]), None));
            let class = if mine.is_empty() {
                "seg"
            } else if mine.iter().any(|(_, m)| m.severity == "error") {
                "seg seg-error"
            } else {
                "seg seg-warning"
            };
            html! {
                li class=(class) id={"seg-" (n + 1)} {
                    code {
                        @for (text, severity) in &pieces {
                            @match severity {
                                Some(s) => mark class=(s) { (text) },
                                None => (text),
                            }
                        }
                    }
                    @if !mine.is_empty() {
                        ul class="findings" {
                            @for (_, m) in &mine {
                                li class=(m.severity) {
                                    strong { (m.severity) } ": " (m.text)
                                }
                            }
                        }
                    }
                }
            }
        })
        .collect();
    let unplaced: Vec<&Mark> = marks
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(m, _)| m)
        .collect();
    html! {
        ol class="raw" aria-label="Raw EDIFACT, one segment a line" {
            @for r in rendered { (r) }
        }
        @if !unplaced.is_empty() {
            ul class="findings" {
                @for m in unplaced {
                    li class=(m.severity) { strong { (m.severity) } ": " (m.text) " (byte " (m.offset) ")" }
                }
            }
        }
    }
}

/// A segment's tag and its data elements split into components.
type Row = (String, Vec<Vec<String>>);

/// The messages of an interchange as a tree: the envelope, then per message (UNH to UNT)
/// its segments with the MIG's name and their data elements.
pub fn segment_tree(raw: &[u8], registry: &Registry) -> Markup {
    let d = Delimiters::of(raw);
    let mut envelope: Vec<Row> = Vec::new();
    let mut messages: Vec<(Option<&Mig>, String, Vec<Row>)> = Vec::new();
    let mut in_message = false;
    for span in segments(raw, d) {
        if raw[span.start..].starts_with(b"UNA") {
            continue;
        }
        let (tag, elements) = elements(raw, &span, d);
        match tag.as_str() {
            "UNH" => {
                let s009 = elements.get(1).cloned().unwrap_or_default();
                let kind = s009.first().cloned().unwrap_or_default();
                let association = s009.get(4).cloned().unwrap_or_default();
                let mig = registry.mig(&kind, &association);
                let title = format!("{kind} {association}");
                messages.push((mig, title, vec![(tag, elements)]));
                in_message = true;
            }
            "UNT" if in_message => {
                if let Some(m) = messages.last_mut() {
                    m.2.push((tag, elements));
                }
                in_message = false;
            }
            _ if in_message => {
                if let Some(m) = messages.last_mut() {
                    m.2.push((tag, elements));
                }
            }
            _ => envelope.push((tag, elements)),
        }
    }
    let row = |mig: Option<&Mig>, tag: &str, elements: &[Vec<String>]| {
        let name = mig.and_then(|m| segment_name(m, tag, elements));
        html! {
            li {
                span class="tag" { (tag) }
                @if let Some(n) = name { " " span class="segname" lang="de" { (n) } }
                @if !elements.is_empty() {
                    ol class="elements" {
                        @for e in elements {
                            li { (e.join(" : ")) }
                        }
                    }
                }
            }
        }
    };
    html! {
        ul class="tree" {
            @for (tag, elements) in &envelope {
                (row(None, tag, elements))
            }
            @for (mig, title, segments) in &messages {
                li {
                    details open {
                        summary {
                            "Message " (title)
                            @if mig.is_none() { " (no grammar held)" }
                        }
                        ul {
                            @for (tag, elements) in segments {
                                (row(*mig, tag, elements))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The contact a partner gave in a message (CTA, COM), one line each, as text: where an
/// operator starts the clearing conversation.
pub fn contacts(raw: &[u8]) -> Vec<String> {
    let d = Delimiters::of(raw);
    segments(raw, d)
        .iter()
        .filter_map(|span| {
            let (tag, elements) = elements(raw, span, d);
            let join = |e: &Vec<String>| {
                e.iter()
                    .filter(|c| !c.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            match tag.as_str() {
                "CTA" => Some(format!(
                    "Contact ({}): {}",
                    elements.first().map(join).unwrap_or_default(),
                    elements.get(1).map(join).unwrap_or_default()
                )),
                "COM" => {
                    let c = elements.first()?;
                    let kind = match c.get(1).map(String::as_str) {
                        Some("EM") => "e-mail",
                        Some("TE") => "phone",
                        Some("FX") => "fax",
                        Some("AJ") => "other phone",
                        Some("AL") => "mobile",
                        Some(other) => other,
                        None => "",
                    };
                    Some(format!(
                        "{kind}: {}",
                        c.first().cloned().unwrap_or_default()
                    ))
                }
                _ => None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+260601:1000+REF1'\n\
UNH+1+ORDRSP:D:10A:UN:1.4c'BGM+7+DOC?+1'FTX+AAP+++<script>alert(1)</script> \"x\"'UNT+4+1'UNZ+1+REF1'";

    #[test]
    fn splits_segments_keeping_released_terminators() {
        let d = Delimiters::of(SAMPLE);
        let spans = segments(SAMPLE, d);
        let texts: Vec<String> = spans
            .iter()
            .map(|s| latin1(&SAMPLE[s.start..s.end]))
            .collect();
        assert_eq!(texts[0], "UNA:+.? '");
        assert!(texts[1].starts_with("UNB+"));
        assert_eq!(texts[2], "UNH+1+ORDRSP:D:10A:UN:1.4c'");
        assert_eq!(texts[3], "BGM+7+DOC?+1'");
        assert_eq!(texts.len(), 7);
        let (tag, elements) = elements(SAMPLE, &spans[3], d);
        assert_eq!(tag, "BGM");
        assert_eq!(
            elements,
            vec![vec!["7".to_string()], vec!["DOC+1".to_string()]]
        );
    }

    #[test]
    fn marks_a_finding_at_its_element_and_lists_it_under_its_segment() {
        let at = SAMPLE
            .windows(5)
            .position(|w| w == b"DOC?+")
            .expect("in the sample");
        let marks = vec![Mark {
            offset: at,
            severity: "error",
            text: "value too long".into(),
        }];
        let html = raw_view(SAMPLE, &marks).into_string();
        assert!(
            html.contains("<mark class=\"error\">DOC?+1</mark>"),
            "{html}"
        );
        assert!(html.contains("value too long"));
        assert!(html.contains("seg seg-error"));
    }

    #[test]
    fn partner_text_is_escaped_in_the_raw_view_and_the_tree() {
        let raw = raw_view(SAMPLE, &[]).into_string();
        let tree = segment_tree(SAMPLE, Registry::embedded()).into_string();
        for html in [raw, tree] {
            assert!(!html.contains("<script>"), "{html}");
            assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
            assert!(html.contains("&quot;x&quot;"));
        }
    }

    #[test]
    fn reads_the_partners_contact_as_text() {
        let raw = b"UNA:+.? 'UNB+UNOC:3+1:500+2:500+260601:1000+R'CTA+IC+:Erika <b>Muster</b>'COM+nb@example.org:EM'COM+0221 1234:TE'UNZ+0+R'";
        assert_eq!(
            contacts(raw),
            vec![
                "Contact (IC): Erika <b>Muster</b>".to_string(),
                "e-mail: nb@example.org".to_string(),
                "phone: 0221 1234".to_string(),
            ]
        );
    }

    #[test]
    fn names_segments_from_the_mig_by_their_qualifier() {
        let registry = Registry::embedded();
        let mig = registry
            .migs()
            .iter()
            .find(|m| m.message_type == "ORDRSP")
            .expect("an ORDRSP grammar");
        let dtm = segment_name(mig, "DTM", &[vec!["137".into(), "202606011000".into()]]);
        assert!(dtm.is_some());
        assert_eq!(segment_name(mig, "XYZ", &[]), None);
    }
}
