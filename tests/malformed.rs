//! A table of malformed interchanges: each must give its error kind at its exact place.

use mako_gateway::edifact::{parse, parse_lenient, SyntaxError};

const VALID: &str = "UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+251001:0815+REF1'UNH+1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+1'UNZ+1+REF1'";

/// One malformed input and where its error must be.
struct Case {
    name: &'static str,
    input: Vec<u8>,
    kind: &'static str,
    /// The error offset is where this marker starts in the input, plus `delta`.
    marker: &'static str,
    delta: usize,
    segment: usize,
    tag: Option<&'static str>,
    element: Option<usize>,
    component: Option<usize>,
}

fn replaced(from: &str, to: &str) -> Vec<u8> {
    assert!(VALID.contains(from), "{from} not in the valid input");
    VALID.replacen(from, to, 1).into_bytes()
}

fn cases() -> Vec<Case> {
    let case = |name, input: Vec<u8>, kind, marker, delta, segment, tag, element, component| Case {
        name,
        input,
        kind,
        marker,
        delta,
        segment,
        tag,
        element,
        component,
    };
    vec![
        case("empty input", b"".to_vec(), "empty_input", "", 0, 1, None, None, None),
        case("only line breaks", b"\r\n\n".to_vec(), "empty_input", "", 0, 1, None, None, None),
        case("UNA too short", b"UNA:+".to_vec(), "invalid_service_string_advice", "UNA", 0, 1, None, None, None),
        case("UNA separators not distinct", replaced("UNA:+.? '", "UNA::.? '"), "invalid_service_string_advice", "UNA", 0, 1, None, None, None),
        case("unterminated last segment", VALID.trim_end_matches('\'').as_bytes().to_vec(), "unterminated_segment", "UNZ", 0, 5, Some("UNZ"), None, None),
        case("terminator released at the end", replaced("UNZ+1+REF1'", "UNZ+1+REF1?'"), "unterminated_segment", "UNZ", 0, 5, Some("UNZ"), None, None),
        case("lower-case segment tag", replaced("BGM", "bgm"), "invalid_segment_tag", "bgm", 0, 3, None, None, None),
        case("tag of two letters", replaced("BGM+", "BG+"), "invalid_segment_tag", "BG+", 0, 3, None, None, None),
        case("message without UNB", b"UNH+1+APERAK:D:07B:UN:2.1i'UNT+2+1'".to_vec(), "unexpected_segment", "UNH", 0, 1, Some("UNH"), None, None),
        case("unknown syntax identifier", replaced("UNOC:3", "UNOZ:3"), "unsupported_syntax", "UNOZ", 0, 1, Some("UNB"), Some(1), Some(1)),
        case("syntax version 5", replaced("UNOC:3", "UNOC:5"), "unsupported_syntax", "5+99", 0, 1, Some("UNB"), Some(1), Some(2)),
        case("missing syntax version", replaced("UNOC:3", "UNOC"), "missing_element", "+9900000000003", 0, 1, Some("UNB"), Some(1), Some(2)),
        case("missing sender", replaced("+9900000000003:500", "+"), "missing_element", "+9900000000010", 0, 1, Some("UNB"), Some(2), Some(1)),
        case("missing interchange reference", replaced("0815+REF1'", "0815'"), "missing_element", "'UNH", 0, 1, Some("UNB"), Some(5), Some(1)),
        case("missing message type version", replaced("APERAK:D:07B:UN:2.1i", "APERAK"), "missing_element", "'BGM", 0, 2, Some("UNH"), Some(2), Some(2)),
        case("UNT count too high", replaced("UNT+3+1", "UNT+4+1"), "control_count_mismatch", "UNT+4", 4, 4, Some("UNT"), Some(1), Some(1)),
        case("UNT count not a number", replaced("UNT+3+1", "UNT+3a+1"), "invalid_value", "UNT+3a", 4, 4, Some("UNT"), Some(1), Some(1)),
        case("UNT reference differs", replaced("UNT+3+1", "UNT+3+2"), "control_reference_mismatch", "UNT+3+2", 6, 4, Some("UNT"), Some(2), Some(1)),
        case("UNZ count too low", replaced("UNZ+1", "UNZ+0"), "control_count_mismatch", "UNZ+0", 4, 5, Some("UNZ"), Some(1), Some(1)),
        case("UNZ reference differs", replaced("UNZ+1+REF1", "UNZ+1+REF2"), "control_reference_mismatch", "REF2", 0, 5, Some("UNZ"), Some(2), Some(1)),
        case("missing UNT", replaced("UNT+3+1'", ""), "unexpected_segment", "UNZ", 0, 4, Some("UNZ"), None, None),
        case("missing UNZ", replaced("UNZ+1+REF1'", ""), "missing_segment", "UNT+3+1'", 7, 4, None, None, None),
        case("segment outside a message", replaced("UNZ", "BGM+1'UNZ"), "unexpected_segment", "BGM+1'", 0, 5, Some("BGM"), None, None),
        case("second UNB inside an interchange", replaced("UNZ", "UNB+UNOC:3'UNZ"), "unexpected_segment", "UNB+UNOC:3'UNZ", 0, 5, Some("UNB"), None, None),
        case("release before an ordinary character", replaced("BGM+312+X", "BGM+312+?X"), "invalid_release", "?X", 0, 3, Some("BGM"), Some(2), Some(1)),
        case("control character in UNOC", replaced("BGM+312+X", "BGM+312+X\u{1}"), "invalid_character", "\u{1}", 0, 3, Some("BGM"), Some(2), Some(1)),
        case("C1 control byte in UNOC", {
            let mut v = replaced("BGM+312+X", "BGM+312:XX");
            let at = v.windows(3).position(|w| w == b":XX").unwrap() + 1;
            v[at] = 0x85;
            v
        }, "invalid_character", "312:", 4, 3, Some("BGM"), Some(1), Some(2)),
        case("lower case in UNOA", VALID.replace("UNOC", "UNOA").replace("2.1i", "2.1I").replace("+X'", "+x'").into_bytes(), "invalid_character", "x'", 0, 3, Some("BGM"), Some(2), Some(1)),
        case("Latin-1 byte in UNOW", {
            let mut v = replaced("UNOC:3", "UNOW:4");
            let at = v.windows(2).position(|w| w == b"+X").unwrap() + 1;
            v[at] = 0xFC;
            v
        }, "invalid_utf8", "+\u{fffd}", 1, 3, Some("BGM"), Some(2), Some(1)),
        case("garbage after UNZ", [VALID.as_bytes(), b"garbage"].concat(), "trailing_data", "garbage", 0, 6, None, None, None),
        case("group count wrong", replaced("UNH+1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+1'UNZ+1", "UNG+APERAK+9900000000003:500+9900000000010:500+251001:0815+G1+UN+D:07B'UNH+1+APERAK:D:07B:UN:2.1i'BGM+312+X'UNT+3+1'UNE+2+G1'UNZ+1"), "control_count_mismatch", "UNE+2", 4, 6, Some("UNE"), Some(1), Some(1)),
        case("message outside the groups", replaced("UNZ+1", "UNG+APERAK+A+B+251001:0815+G1'UNE+0+G1'UNZ+1"), "unexpected_segment", "UNG", 0, 5, Some("UNG"), None, None),
    ]
}

fn describe(e: &SyntaxError) -> String {
    format!("{} at {:?}", e.kind.name(), e.position)
}

#[test]
fn each_malformed_input_reports_its_kind_and_place() {
    for c in cases() {
        let err = match parse(&c.input) {
            Ok(_) => panic!("{}: parsed although malformed", c.name),
            Err(e) => e,
        };
        assert_eq!(err.kind.name(), c.kind, "{}: {}", c.name, describe(&err));
        let marker_at = if c.marker.is_empty() {
            0
        } else {
            let m = c.marker.as_bytes();
            let lossy = String::from_utf8_lossy(&c.input).into_owned();
            c.input
                .windows(m.len())
                .position(|w| w == m)
                .or_else(|| lossy.find(c.marker))
                .unwrap_or_else(|| panic!("{}: marker {:?} not found", c.name, c.marker))
        };
        let p = &err.position;
        assert_eq!(
            p.offset,
            marker_at + c.delta,
            "{}: offset; {}",
            c.name,
            describe(&err)
        );
        assert_eq!(
            p.segment,
            c.segment,
            "{}: segment; {}",
            c.name,
            describe(&err)
        );
        assert_eq!(
            p.tag.map(|t| t.to_string()).as_deref(),
            c.tag,
            "{}: tag",
            c.name
        );
        assert_eq!(
            p.element,
            c.element,
            "{}: element; {}",
            c.name,
            describe(&err)
        );
        assert_eq!(
            p.component,
            c.component,
            "{}: component; {}",
            c.name,
            describe(&err)
        );
        assert_eq!(p.line, 1, "{}: line", c.name);
        assert_eq!(p.column, p.offset + 1, "{}: column", c.name);
        // The message names the place too.
        assert!(
            err.to_string().contains(&format!("byte {}", p.offset)),
            "{}",
            c.name
        );
    }
}

#[test]
fn line_and_column_count_line_breaks() {
    let input = VALID.replace('\'', "'\r\n").replace("UNT+3+1", "UNT+9+1");
    let err = parse(input.as_bytes()).unwrap_err();
    assert_eq!(err.kind.name(), "control_count_mismatch");
    assert_eq!((err.position.line, err.position.column), (5, 5));
}

#[test]
fn lenient_parse_keeps_the_tree_and_every_recoverable_error() {
    let input = VALID
        .replace("BGM+312+X", "BGM+312+?X\u{1}")
        .replace("UNT+3+1", "UNT+2+9");
    let outcome = parse_lenient(input.as_bytes());
    let kinds: Vec<&str> = outcome.errors.iter().map(|e| e.kind.name()).collect();
    assert_eq!(
        kinds,
        [
            "invalid_release",
            "invalid_character",
            "control_count_mismatch",
            "control_reference_mismatch"
        ]
    );
    let document = outcome.document.expect("structure still readable");
    assert_eq!(document.segment_count(), 5);
}

#[test]
fn every_error_kind_maps_to_an_iso_9735_syntax_error_code() {
    for c in cases() {
        let err = parse(&c.input).unwrap_err();
        let code = err.kind.contrl_code();
        assert!(
            [2, 12, 13, 14, 18, 21, 28, 29].contains(&code),
            "{}: code {code}",
            c.name
        );
    }
}
