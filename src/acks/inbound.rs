//! CONTRL and APERAK in: what a partner says about what we sent, and which of our interchanges
//! and messages it is about.

use crate::edifact::Interchange;

/// A rejected message named in a partner's CONTRL (UCM with action 4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ContrlMessageError {
    /// UCM DE0062: the reference of our message.
    pub message_reference: String,
    /// UCM DE0085 and every UCS/UCD DE0085 below it.
    pub codes: Vec<u8>,
    /// Segment positions (UNH = 1) named by UCS.
    pub segments: Vec<usize>,
}

/// One error of a partner's APERAK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AperakError {
    /// ERC DE9321 (`Z29`, …).
    pub code: String,
    /// The BDEW meaning of the code.
    pub meaning: &'static str,
    /// FTX texts of the error group (deviating content, description, place).
    pub text: Vec<String>,
}

/// An acknowledgement a partner sent us.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Acknowledgement {
    /// A CONTRL about one of our interchanges.
    Contrl {
        /// UCI DE0020: our interchange reference.
        interchange_reference: String,
        /// UCI DE0083 `4`: the whole interchange rejected.
        rejected: bool,
        /// UCI DE0085, when the interchange level is in error.
        interchange_code: Option<u8>,
        /// Messages rejected by UCM 4.
        rejected_messages: Vec<ContrlMessageError>,
    },
    /// An APERAK about one of our messages.
    Aperak {
        /// `BGM+312`: positive (Anerkennungsmeldung).
        positive: bool,
        /// SG2 RFF+ACE: our interchange reference.
        interchange_reference: Option<String>,
        /// SG2 RFF+AGO: the document number (BGM DE1004) of our message.
        document_number: Option<String>,
        /// SG2 RFF+TN: the transaction reference, if given.
        transaction_reference: Option<String>,
        /// SG4 ERC groups.
        errors: Vec<AperakError>,
    },
}

/// The BDEW APERAK error codes (ERC DE9321) with their meanings (APERAK AHB 1.1 §4.3).
pub const ERC_CODES: [(&str, &str); 27] = [
    ("Z10", "ID unbekannt"),
    ("Z14", "Objekt im IT-System nicht gefunden"),
    ("Z15", "Objekt nicht eindeutig"),
    ("Z16", "Objekt nicht mehr im Netzgebiet"),
    ("Z17", "Absender zum Zeitpunkt dem Objekt nicht zugeordnet"),
    ("Z18", "Empfänger zum Zeitpunkt dem Objekt nicht zugeordnet"),
    ("Z19", "Gerätenummer unbekannt"),
    ("Z20", "OBIS-Kennzahl unbekannt"),
    ("Z21", "Geschäftsvorfallinterne Referenzierung fehlerhaft"),
    ("Z24", "Zuordnungs-Tupel unbekannt"),
    ("Z25", "Absender dem Zuordnungs-Tupel nicht zugeordnet"),
    ("Z26", "Empfänger dem Zuordnungs-Tupel nicht zugeordnet"),
    ("Z27", "Vorkomma-Stellenzahl zu lang"),
    (
        "Z29",
        "Erforderliche Angabe für diesen Anwendungsfall fehlt",
    ),
    ("Z30", "Zeitreihe unvollständig"),
    ("Z31", "Geschäftsvorfall wird vom Empfänger zurückgewiesen"),
    (
        "Z33",
        "Referenziertes Geschäftsvorfall-Tupel nicht vorhanden",
    ),
    ("Z34", "Zeitintervall negativ oder Null"),
    ("Z35", "Format nicht eingehalten"),
    (
        "Z37",
        "Geschäftsvorfall darf vom Sender nicht gesendet werden",
    ),
    ("Z38", "Anzahl Codes überschreitet Paketdefinition"),
    ("Z39", "Code nicht aus erlaubtem Wertebereich"),
    ("Z40", "Segment(gruppen)wiederholbarkeit überschritten"),
    ("Z41", "Zeitangabe unplausibel"),
    ("Z42", "Konfigurations-ID unbekannt"),
    (
        "Z43",
        "Geschäftsvorfall für Objekt mit der Eigenschaft nicht erlaubt",
    ),
    ("Z44", "Eigenschaft des Objekts weicht ab"),
];

/// The BDEW meaning of an APERAK ERC code (APERAK AHB 1.1 §4.3).
pub fn erc_meaning(code: &str) -> &'static str {
    known_erc_code(code).map_or("unbekannter Fehlercode", |(_, meaning)| meaning)
}

/// `code` as a known ERC code of [`ERC_CODES`], with its meaning.
pub fn known_erc_code(code: &str) -> Option<(&'static str, &'static str)> {
    ERC_CODES.iter().copied().find(|(c, _)| *c == code)
}

/// Reads the CONTRL and APERAK messages of a received interchange (other message types are
/// skipped).
pub fn read_acknowledgements(interchange: &Interchange<'_, '_>) -> Vec<Acknowledgement> {
    let mut out = Vec::new();
    for message in interchange.messages() {
        match message.message_type().as_ref() {
            "CONTRL" => {
                let mut rejected = false;
                let mut interchange_reference = String::new();
                let mut interchange_code = None;
                let mut rejected_messages: Vec<ContrlMessageError> = Vec::new();
                for s in message.body() {
                    match &s.tag().0 {
                        b"UCI" => {
                            interchange_reference = s.value(1, 1).into_owned();
                            // UN DE0083: 4 rejected, 7 acknowledged, 8 received. (The hupe1980
                            // fixtures use 4 and 7 the other way round; the standard is followed.)
                            rejected = s.value(4, 1) == "4";
                            interchange_code = s.value(5, 1).parse().ok();
                        }
                        b"UCM" if s.value(3, 1) == "4" => {
                            rejected_messages.push(ContrlMessageError {
                                message_reference: s.value(1, 1).into_owned(),
                                codes: s.value(4, 1).parse().ok().into_iter().collect(),
                                segments: Vec::new(),
                            });
                        }
                        b"UCS" => {
                            if let Some(m) = rejected_messages.last_mut() {
                                if let Ok(p) = s.value(1, 1).parse() {
                                    m.segments.push(p);
                                }
                                m.codes.extend(s.value(2, 1).parse::<u8>().ok());
                            }
                        }
                        b"UCD" => {
                            if let Some(m) = rejected_messages.last_mut() {
                                m.codes.extend(s.value(1, 1).parse::<u8>().ok());
                            }
                        }
                        _ => {}
                    }
                }
                out.push(Acknowledgement::Contrl {
                    interchange_reference,
                    rejected,
                    interchange_code,
                    rejected_messages,
                });
            }
            "APERAK" => {
                let mut positive = true;
                let (mut ace, mut ago, mut tn) = (None, None, None);
                let mut errors: Vec<AperakError> = Vec::new();
                for s in message.body() {
                    match &s.tag().0 {
                        b"BGM" => positive = s.value(1, 1) == "312",
                        b"ERC" => {
                            let code = s.value(1, 1).into_owned();
                            errors.push(AperakError {
                                meaning: erc_meaning(&code),
                                code,
                                text: Vec::new(),
                            });
                        }
                        b"FTX" => {
                            if let Some(e) = errors.last_mut() {
                                let text = s.value(4, 1);
                                if !text.is_empty() {
                                    e.text.push(text.into_owned());
                                }
                            }
                        }
                        // References before the first ERC are the message's SG2 references.
                        b"RFF" if errors.is_empty() => {
                            let v = Some(s.value(1, 2).into_owned());
                            match s.value(1, 1).as_ref() {
                                "ACE" => ace = v,
                                "AGO" => ago = v,
                                "TN" => tn = v,
                                _ => {}
                            }
                        }
                        _ => {}
                    }
                }
                out.push(Acknowledgement::Aperak {
                    positive,
                    interchange_reference: ace,
                    document_number: ago,
                    transaction_reference: tn,
                    errors,
                });
            }
            _ => {}
        }
    }
    out
}

/// One message we sent, as the store knows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SentMessage {
    /// Our interchange reference (UNB DE0020).
    pub interchange_reference: String,
    /// Our message reference (UNH DE0062).
    pub message_reference: String,
    /// Our document number (BGM DE1004).
    pub document_number: String,
    /// The order this message belongs to, if any (the store's id).
    pub order: Option<String>,
    /// The pass-through message of the supplier core it is, if it is one (the store's id).
    pub pass_through: Option<String>,
}

/// Where the gateway looks up what it sent (the store implements it; tests use a list).
pub trait SentLookup {
    /// The messages of our interchange with this reference, sent to `partner`.
    fn by_interchange(&self, partner: &str, interchange_reference: &str) -> Vec<SentMessage>;
    /// Our message with this document number, sent to `partner`.
    fn by_document(&self, partner: &str, document_number: &str) -> Option<SentMessage>;
}

impl SentLookup for [SentMessage] {
    fn by_interchange(&self, _partner: &str, interchange_reference: &str) -> Vec<SentMessage> {
        self.iter()
            .filter(|m| m.interchange_reference == interchange_reference)
            .cloned()
            .collect()
    }
    fn by_document(&self, _partner: &str, document_number: &str) -> Option<SentMessage> {
        self.iter()
            .find(|m| m.document_number == document_number)
            .cloned()
    }
}

/// What an acknowledgement means for what we sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AckMatch {
    /// Our messages were received (no error).
    Accepted {
        /// The messages concerned.
        messages: Vec<SentMessage>,
    },
    /// Our messages were rejected, with the partner's reason.
    Rejected {
        /// The messages concerned.
        messages: Vec<SentMessage>,
        /// The codes (CONTRL DE0085 as text, or APERAK ERC codes).
        codes: Vec<String>,
        /// The partner's words (APERAK FTX) or the code meanings.
        reason: String,
    },
    /// Nothing we sent matches: kept for the clearing list with the reason, never dropped.
    Unmatched {
        /// Why.
        reason: String,
    },
}

/// Matches an acknowledgement from `partner` to what we sent, by the references the format
/// provides: CONTRL by UCI DE0020 (and UCM DE0062), APERAK by RFF+AGO (document number), else
/// by RFF+ACE (interchange reference).
pub fn match_acknowledgement(
    ack: &Acknowledgement,
    partner: &str,
    sent: &(impl SentLookup + ?Sized),
) -> AckMatch {
    match ack {
        Acknowledgement::Contrl {
            interchange_reference,
            rejected,
            interchange_code,
            rejected_messages,
        } => {
            let messages = sent.by_interchange(partner, interchange_reference);
            if messages.is_empty() {
                return AckMatch::Unmatched {
                    reason: format!("CONTRL names interchange {interchange_reference:?}, which we did not send to {partner}"),
                };
            }
            if *rejected {
                return AckMatch::Rejected {
                    messages,
                    codes: interchange_code.iter().map(|c| c.to_string()).collect(),
                    reason: format!(
                        "interchange rejected by CONTRL (syntax error code {})",
                        interchange_code.map_or("none".to_string(), |c| c.to_string())
                    ),
                };
            }
            if rejected_messages.is_empty() {
                return AckMatch::Accepted { messages };
            }
            let hit: Vec<SentMessage> = messages
                .iter()
                .filter(|m| {
                    rejected_messages
                        .iter()
                        .any(|r| r.message_reference == m.message_reference)
                })
                .cloned()
                .collect();
            if hit.is_empty() {
                return AckMatch::Unmatched {
                    reason: "CONTRL rejects messages that interchange did not contain".to_string(),
                };
            }
            let codes: Vec<String> = rejected_messages
                .iter()
                .flat_map(|r| r.codes.iter().map(|c| c.to_string()))
                .collect();
            AckMatch::Rejected {
                messages: hit,
                reason: format!(
                    "message rejected by CONTRL (syntax error codes {})",
                    codes.join(", ")
                ),
                codes,
            }
        }
        Acknowledgement::Aperak {
            positive,
            interchange_reference,
            document_number,
            errors,
            ..
        } => {
            let messages = match document_number
                .as_deref()
                .and_then(|d| sent.by_document(partner, d))
            {
                Some(m) => vec![m],
                None => interchange_reference
                    .as_deref()
                    .map(|r| sent.by_interchange(partner, r))
                    .unwrap_or_default(),
            };
            if messages.is_empty() {
                return AckMatch::Unmatched {
                    reason: format!(
                        "APERAK names document {:?} / interchange {:?}, which we did not send to {partner}",
                        document_number, interchange_reference
                    ),
                };
            }
            if *positive && errors.is_empty() {
                return AckMatch::Accepted { messages };
            }
            let codes: Vec<String> = errors.iter().map(|e| e.code.clone()).collect();
            let reason = errors
                .iter()
                .map(|e| {
                    if e.text.is_empty() {
                        format!("{} {}", e.code, e.meaning)
                    } else {
                        format!("{} {}: {}", e.code, e.meaning, e.text.join(" "))
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            AckMatch::Rejected {
                messages,
                codes,
                reason,
            }
        }
    }
}
