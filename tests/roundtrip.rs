//! Property tests of the core round trips:
//! `parse(write(m)) == m` for generated interchanges, `write(parse(b)) == b` for every input the
//! parser accepts, and no panic on any input. Also: `parse --format json`'s writer gives the
//! text of its serde form for every interchange (its fast path for plain headers included).

use chrono::{NaiveDate, NaiveDateTime};
use proptest::prelude::*;

use mako_gateway::cli::{summary_json, write_summary_json};
use mako_gateway::edifact::{
    parse, parse_lenient, write_document, Charset, Delimiters, InterchangeHeader, LineBreak,
    MessageIdentifier, OutboundMessage, OwnedInterchange, OwnedSegment, PartnerQualifier, Party,
    SyntaxIdentifier, Writer,
};

fn syntax() -> impl Strategy<Value = SyntaxIdentifier> {
    prop_oneof![
        Just((Charset::Unoa, 3)),
        Just((Charset::Unob, 2)),
        Just((Charset::Unob, 3)),
        Just((Charset::Unoc, 3)),
        Just((Charset::Unoc, 4)),
        Just((Charset::Unod, 3)),
        Just((Charset::Unoe, 3)),
        Just((Charset::Unow, 4)),
        Just((Charset::Unoy, 4)),
    ]
    .prop_map(|(charset, version)| SyntaxIdentifier { charset, version })
}

/// Characters a value may contain in each repertoire (delimiters included on purpose).
fn value_char(charset: Charset) -> BoxedStrategy<char> {
    match charset {
        Charset::Unoa => prop::sample::select(
            "ABCXYZ0189 .,-()/='+:?!\"%&*;<>"
                .chars()
                .collect::<Vec<_>>(),
        )
        .boxed(),
        Charset::Unob => (0x20u8..=0x7E).prop_map(char::from).boxed(),
        Charset::Unoc => prop_oneof![
            (0x20u8..=0x7E).prop_map(char::from),
            (0xA0u8..=0xFF).prop_map(char::from)
        ]
        .boxed(),
        Charset::Unod => prop_oneof![
            (0x20u8..=0x7E).prop_map(char::from),
            prop::sample::select("ĄąŁłŚśŹźŻżÓóĆćŃńĘęČčŘřŠšŽž".chars().collect::<Vec<_>>())
        ]
        .boxed(),
        Charset::Unoe => prop_oneof![
            (0x20u8..=0x7E).prop_map(char::from),
            prop::sample::select(
                "АБВГДЕЖЗИЙКЛМНабвгдежзийклмнЁё№"
                    .chars()
                    .collect::<Vec<_>>()
            )
        ]
        .boxed(),
        Charset::Unow | Charset::Unoy => any::<char>()
            .prop_filter("no control characters", |c| {
                (*c as u32) >= 0x20 && !('\u{7f}'..='\u{9f}').contains(c)
            })
            .boxed(),
    }
}

fn value(charset: Charset, max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(value_char(charset), 0..max)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

fn nonempty_value(charset: Charset, max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(value_char(charset), 1..max)
        .prop_map(|chars| chars.into_iter().collect())
        .boxed()
}

/// Distinct delimiters, printable ASCII signs allowed by the repertoire.
fn delimiters(syntax: SyntaxIdentifier) -> BoxedStrategy<Delimiters> {
    if syntax.charset == Charset::Unoa {
        return Just(if syntax.version >= 4 {
            Delimiters::LEVEL_A_V4
        } else {
            Delimiters::LEVEL_A_V3
        })
        .boxed();
    }
    let pool: Vec<u8> = b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~".to_vec();
    let level_b = syntax.charset == Charset::Unob;
    let version = syntax.version;
    (Just(pool).prop_shuffle(), any::<bool>())
        .prop_map(move |(p, use_level_b)| {
            if level_b && use_level_b {
                return if version >= 4 {
                    Delimiters::LEVEL_B_V4
                } else {
                    Delimiters::LEVEL_B_V3
                };
            }
            Delimiters {
                component: p[0],
                element: p[1],
                decimal: p[2],
                release: Some(p[3]),
                repetition: (version >= 4).then_some(p[4]),
                terminator: p[5],
            }
        })
        .boxed()
}

fn segment(charset: Charset) -> BoxedStrategy<OwnedSegment> {
    let tag = "[A-TV-Z][A-Z0-9]{2}";
    let element = prop::collection::vec(value(charset, 8), 0..4);
    (tag, prop::collection::vec(element, 0..5))
        .prop_map(|(tag, elements)| {
            let mut s = OwnedSegment { tag, elements };
            s.trim();
            s
        })
        .boxed()
}

fn message(charset: Charset) -> BoxedStrategy<OutboundMessage> {
    (
        nonempty_value(charset, 14),
        prop::collection::vec(segment(charset), 0..6),
    )
        .prop_map(move |(reference, segments)| OutboundMessage {
            reference,
            // UNOA has no lower-case letters.
            identifier: MessageIdentifier::parse(if charset == Charset::Unoa {
                "ORDERS:D:09B:UN:1.4B"
            } else {
                "ORDERS:D:09B:UN:1.4b"
            })
            .unwrap(),
            segments,
        })
        .boxed()
}

fn prepared() -> impl Strategy<Value = NaiveDateTime> {
    (0i32..100, 1u32..=12, 1u32..=28, 0u32..24, 0u32..60).prop_map(|(y, m, d, h, min)| {
        NaiveDate::from_ymd_opt(2000 + y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    })
}

fn interchange() -> impl Strategy<Value = (OwnedInterchange, Delimiters, LineBreak)> {
    syntax().prop_flat_map(|syntax| {
        let charset = syntax.charset;
        let qualifier = prop_oneof![
            Just(PartnerQualifier::Bdew),
            Just(PartnerQualifier::Gs1),
            Just(PartnerQualifier::Dvgw)
        ];
        (
            (
                "[0-9]{13}",
                qualifier.clone(),
                "[0-9]{13}",
                qualifier,
                prepared(),
                nonempty_value(charset, 14),
                prop::option::of("[A-Z]{2}"),
                any::<bool>(),
            ),
            prop::collection::vec(message(charset), 0..4),
            delimiters(syntax),
            prop_oneof![
                Just(LineBreak::None),
                Just(LineBreak::Lf),
                Just(LineBreak::CrLf)
            ],
        )
            .prop_map(
                move |(
                    (
                        sender,
                        sq,
                        recipient,
                        rq,
                        prepared,
                        control_reference,
                        application_reference,
                        test,
                    ),
                    messages,
                    delimiters,
                    line_break,
                )| {
                    (
                        OwnedInterchange {
                            header: InterchangeHeader {
                                syntax,
                                sender: Party {
                                    id: sender,
                                    qualifier: sq,
                                },
                                recipient: Party {
                                    id: recipient,
                                    qualifier: rq,
                                },
                                prepared,
                                control_reference,
                                application_reference,
                                test,
                            },
                            messages,
                        },
                        delimiters,
                        line_break,
                    )
                },
            )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn parse_of_written_interchange_gives_it_back((interchange, delimiters, line_break) in interchange()) {
        let bytes = Writer::new(interchange.header.syntax)
            .with_delimiters(delimiters)
            .with_line_break(line_break)
            .write_interchange(&interchange)
            .expect("generated values are representable");
        let document = parse(&bytes).map_err(|e| TestCaseError::fail(format!("{e}\n{}", String::from_utf8_lossy(&bytes))))?;
        prop_assert_eq!(write_document(&document), bytes.clone());
        let parsed = document.interchanges().next().unwrap();
        prop_assert_eq!(parsed.delimiters(), delimiters);
        let back = OwnedInterchange::from_parsed(&parsed).unwrap();
        prop_assert_eq!(back, interchange);
    }

    #[test]
    fn the_json_summary_writer_gives_the_text_of_the_summary_value(
        (interchange, delimiters, line_break) in interchange(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        nesting in any::<bool>(),
    ) {
        let mut bytes = Writer::new(interchange.header.syntax)
            .with_delimiters(delimiters)
            .with_line_break(line_break)
            .write_interchange(&interchange)
            .unwrap();
        if nesting {
            // UNH with a nesting indicator (`UNH:1+…`), which the parser accepts.
            let plain = [b'U', b'N', b'H', delimiters.element];
            let nested = [b'U', b'N', b'H', delimiters.component, b'1', delimiters.element];
            let mut out = Vec::with_capacity(bytes.len() + 16);
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i..].starts_with(&plain) {
                    out.extend_from_slice(&nested);
                    i += plain.len();
                } else {
                    out.push(bytes[i]);
                    i += 1;
                }
            }
            bytes = out;
        }
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Some(document) = parse_lenient(&bytes).document {
            let mut written = Vec::new();
            write_summary_json(&document, &mut written).unwrap();
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                summary_json(&document).to_string()
            );
        }
    }

    #[test]
    fn no_input_makes_the_parser_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let outcome = parse_lenient(&bytes);
        if outcome.errors.is_empty() {
            let document = outcome.document.expect("no errors means a document");
            prop_assert_eq!(write_document(&document), bytes);
        }
    }

    #[test]
    fn mutated_interchanges_never_panic_and_valid_ones_round_trip(
        (interchange, delimiters, line_break) in interchange(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = Writer::new(interchange.header.syntax)
            .with_delimiters(delimiters)
            .with_line_break(line_break)
            .write_interchange(&interchange)
            .unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let outcome = parse_lenient(&bytes);
        for e in &outcome.errors {
            prop_assert!(e.position.offset <= bytes.len());
        }
        if let (Some(document), true) = (&outcome.document, outcome.errors.is_empty()) {
            prop_assert_eq!(write_document(document), bytes);
        }
    }
}
