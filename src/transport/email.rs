//! The mail part of the BDEW e-mail transport: the file name of an interchange, the mail that
//! carries it, SMTP out and IMAP in.
//!
//! What it does:
//!
//! - [`TransferFileName`]: the BDEW name of a transfer file, read from the interchange (pure).
//! - [`build_mail`] / [`build_mail_with`]: an RFC 5322 message with exactly one attachment
//!   (`application/octet-stream`, base64), the subject being the file name. The attachment's
//!   MIME entity ([`attachment_entity`]) is built on its own and handed to a hook, so that the
//!   S/MIME layer can sign and encrypt it and the result becomes the body of the outer message.
//! - [`send`]: the raw message over SMTP (lettre, tokio), errors classified as transient
//!   (4xx, connection) or permanent (5xx), with the server's answer.
//! - [`Inbox`] / [`run_inbox`]: an IMAP client (async-imap) that hands every mail not yet
//!   journaled to a callback and marks it only after the callback returned (see "Never twice").
//! - [`extract_single_attachment`]: the interchange out of the (decrypted) MIME entity: exactly
//!   one attachment, else an error that says why (none, several).
//!
//! What it does not do: S/MIME (`transport::smime`), choose the partner or its certificates,
//! parse the interchange, or retry (the outbox and the daemon's loops decide; they ask
//! [`SendError::is_transient`]).
//!
//! # Transport security
//!
//! Each server has a [`TlsMode`]: `starttls` (the default: plain connect, then STARTTLS, and
//! nothing, not even the login, goes before the TLS handshake; a server that does not offer
//! STARTTLS is refused), `tls` (implicit TLS from the first byte: SMTP submissions on 465,
//! IMAPS on 993) or `none` (plain TCP, allowed only to a loopback host, see
//! [`plaintext_allowed`]). The server certificate is verified against the system roots, or
//! against the CA certificates of [`TlsSettings::ca_file`] when one is given (a private CA),
//! and must name the host we connected to. TLS is OpenSSL (via `native-tls`), TLS 1.2 or
//! newer.
//!
//! # Never twice, also across restarts
//!
//! A mail is fetched with `BODY.PEEK[]` (nothing is marked by reading it), handed to the
//! journal callback, and only when that returns `Ok` (the raw mail is committed) does the
//! client store `\Seen` and the keyword [`JOURNALED_KEYWORD`] on it. The next round asks the
//! server for `UNKEYWORD $MakoJournaled` only, so a marked mail is never fetched again: not by
//! this client, not after a restart, not by a second instance on the same mailbox. The state
//! lives on the server, with the mail, so there is no UID bookkeeping to lose or to reset when
//! the mailbox's UIDVALIDITY changes. `\Seen` alone would not do: a person reading the mailbox
//! sets it too. A crash between the commit and the STORE leaves a journaled mail unmarked:
//! it is fetched once more, and the journal stores it once (the callback must be idempotent;
//! the store deduplicates an interchange by sender and UNB reference). A mailbox whose server
//! does not allow new keywords (no `\*` in PERMANENTFLAGS) is refused at [`Inbox::connect`].

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_imap::types::{Flag, UnsolicitedResponse};
use chrono::NaiveDate;
use futures_util::TryStreamExt;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Message, MultiPart, SinglePart};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

pub use lettre::message::Mailbox;
pub use lettre::Address;

/// The attachment's content type (RzÜ 1.5 §6.2 as quoted by an implementation: the file goes
/// as `application/octet-stream`; see `shared/domain/transport.md` §2).
pub const ATTACHMENT_CONTENT_TYPE: &str = "application/octet-stream";

/// The IMAP keyword set on a mail once it is journaled (see the module docs).
pub const JOURNALED_KEYWORD: &str = "$MakoJournaled";

/// How long to wait between two looks into the mailbox when the server has no IDLE, and the
/// longest IDLE before looking anyway (a missed notification costs at most this long).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// The longest single IDLE: RFC 2177 asks clients to end IDLE within 29 minutes, as servers
/// may log off idle clients after 30.
pub const MAX_IDLE: Duration = Duration::from_secs(25 * 60);

/// The longest wait for one network step (connect, a command, one fetch). Generous: a 10 MB
/// interchange is about 14 MB of base64 on the wire.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Reconnect backoff of [`run_inbox`]: first wait, doubled up to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

// ---------------------------------------------------------------------------------------------
// The file name
// ---------------------------------------------------------------------------------------------

/// The BDEW name of a transfer file (Übertragungsdatei), used as the attachment's file name
/// and as the mail's subject:
///
/// ```text
/// Nachrichtentyp_Anwendungsreferenz_von_an_yyyymmdd_DAR.txt
/// ORDERS__9900000000003_9900000000010_20261123_MG0000000042.txt
/// ```
///
/// Source: BDEW/EDI@Energy "Kommunikationsrichtlinie" 2.2 (2012-10-01), §3.2
/// "Namenskonvention für Nachrichtendateien", read in its public text: message type from UNH
/// DE0065; application reference from UNB DE0026 (VL, TL, (LG, EM); empty for most message
/// types, which gives two underscores in a row, as in the document's example
/// `UTILMD__9900123400007_4012345393651_20070131_A177.txt`); sender MP-ID UNB DE0004;
/// recipient MP-ID UNB DE0010; the date the file was made; the interchange reference UNB
/// DE0020; `.txt` for every file (plus `.gz` when compressed). "Alle sechs Bestandteile sind
/// MUSS-Angaben. Als Trennzeichen dient der Unterstrich." The same section of that document
/// (§6.5) makes the subject of the mail the file name. The current home of the rule,
/// "Allgemeine Festlegungen" §2.12 "Namenskonvention für Übertragungsdateien" (versions
/// 6.1c/6.1d), is known only from two independent implementations that quote it with the same
/// pattern and say that the date is taken in UTC; we have not read that document itself.
///
/// Stricter than the rule, on purpose: a part that contains anything but ASCII letters,
/// digits, `-` and `.` is refused (an underscore would make the name ambiguous, a slash or a
/// space unsafe as a file name), and so is an interchange whose messages are of more than
/// one type (the BDEW transfer file is "sortenrein").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFileName {
    /// UNH DE0065 (`ORDERS`, `UTILMD`, …).
    pub message_type: String,
    /// UNB DE0026, empty when absent.
    pub application_reference: String,
    /// UNB DE0004.
    pub sender: String,
    /// UNB DE0010.
    pub recipient: String,
    /// The day the file was made (UTC).
    pub created: NaiveDate,
    /// UNB DE0020.
    pub interchange_reference: String,
}

/// Why no file name could be made for an interchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileNameError {
    /// The bytes are not one readable interchange.
    #[error("the interchange is not readable EDIFACT: {reason}")]
    Unreadable {
        /// The parser's error, with its position.
        reason: String,
    },
    /// More than one interchange: one transfer file carries exactly one.
    #[error("{count} interchanges in one file; a transfer file carries exactly one")]
    SeveralInterchanges {
        /// How many.
        count: usize,
    },
    /// The interchange has no message (no UNH).
    #[error("the interchange has no message, so no message type for the file name")]
    NoMessage,
    /// Messages of different types in one interchange.
    #[error(
        "messages of types {first} and {other} in one interchange; a transfer file is of one type"
    )]
    MixedMessageTypes {
        /// The first message's type.
        first: String,
        /// Another message's type.
        other: String,
    },
    /// A mandatory part is empty.
    #[error("{part} is empty; all parts of the file name are mandatory")]
    Empty {
        /// Which part (`UNB DE0004`, …).
        part: &'static str,
    },
    /// A part has characters that are unsafe in the file name.
    #[error("{part} {value:?} has characters other than A-Z, a-z, 0-9, '-' and '.'")]
    UnsafeCharacter {
        /// Which part.
        part: &'static str,
        /// Its value.
        value: String,
    },
}

impl TransferFileName {
    /// The name of the transfer file for `interchange`, made on `created` (the caller passes
    /// today's UTC date: no clock is read here).
    pub fn of_interchange(
        interchange: &[u8],
        created: NaiveDate,
    ) -> Result<TransferFileName, FileNameError> {
        let document =
            crate::edifact::parse(interchange).map_err(|e| FileNameError::Unreadable {
                reason: e.to_string(),
            })?;
        let count = document.interchanges().len();
        if count > 1 {
            return Err(FileNameError::SeveralInterchanges { count });
        }
        let ic = document
            .interchanges()
            .next()
            .ok_or_else(|| FileNameError::Unreadable {
                reason: "no UNB segment".into(),
            })?;
        let message_type = ic
            .messages()
            .next()
            .map(|m| m.message_type().into_owned())
            .ok_or(FileNameError::NoMessage)?;
        if let Some(other) = ic
            .messages()
            .map(|m| m.message_type().into_owned())
            .find(|t| *t != message_type)
        {
            return Err(FileNameError::MixedMessageTypes {
                first: message_type,
                other,
            });
        }
        let name = TransferFileName {
            message_type,
            application_reference: ic.unb().value(7, 1).into_owned(),
            sender: ic.sender().id.into_owned(),
            recipient: ic.recipient().id.into_owned(),
            created,
            interchange_reference: ic.control_reference().into_owned(),
        };
        name.check()?;
        Ok(name)
    }

    fn check(&self) -> Result<(), FileNameError> {
        let parts: [(&'static str, &str, bool); 5] = [
            ("UNH DE0065", &self.message_type, true),
            ("UNB DE0026", &self.application_reference, false),
            ("UNB DE0004", &self.sender, true),
            ("UNB DE0010", &self.recipient, true),
            ("UNB DE0020", &self.interchange_reference, true),
        ];
        for (part, value, mandatory) in parts {
            if mandatory && value.is_empty() {
                return Err(FileNameError::Empty { part });
            }
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(FileNameError::UnsafeCharacter {
                    part,
                    value: value.to_string(),
                });
            }
        }
        Ok(())
    }
}

impl fmt::Display for TransferFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}_{}_{}.txt",
            self.message_type,
            self.application_reference,
            self.sender,
            self.recipient,
            self.created.format("%Y%m%d"),
            self.interchange_reference
        )
    }
}

// ---------------------------------------------------------------------------------------------
// The mail: building and reading
// ---------------------------------------------------------------------------------------------

/// Why a mail could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The message headers could not be built (an address lettre refuses).
    #[error("the mail headers cannot be built: {reason}")]
    Headers {
        /// lettre's reason.
        reason: String,
    },
    /// The bytes are not a MIME entity.
    #[error("the mail is not readable MIME: {reason}")]
    Unreadable {
        /// The parser's reason.
        reason: String,
    },
    /// No attachment: the mail carries no interchange.
    #[error("the mail has no attachment, so no interchange")]
    NoAttachment,
    /// More than one attachment: a mail carries exactly one interchange.
    #[error("the mail has {count} attachments ({names}); a mail carries exactly one interchange")]
    SeveralAttachments {
        /// How many.
        count: usize,
        /// Their file names, comma-separated (`?` for a part without a name).
        names: String,
    },
    /// The attachment's transfer encoding is broken.
    #[error("the attachment {file_name:?} cannot be decoded: {reason}")]
    UndecodableAttachment {
        /// Its file name, if any.
        file_name: Option<String>,
        /// The decoder's reason.
        reason: String,
    },
}

/// The MIME entity that carries the interchange: a `multipart/mixed` with exactly one part,
/// the interchange as `application/octet-stream` attachment, base64, named `file_name`. This is
/// the entity the S/MIME layer signs and encrypts. CRLF line ends throughout.
pub fn attachment_entity(interchange: &[u8], file_name: &str) -> Vec<u8> {
    // Base64 can carry any bytes, so this never falls back; the fallback (lettre's own choice
    // of encoding) only keeps the function total.
    let body = Body::new_with_encoding(interchange.to_vec(), ContentTransferEncoding::Base64)
        .unwrap_or_else(Body::new);
    let content_type =
        ContentType::parse(ATTACHMENT_CONTENT_TYPE).expect("a constant, valid media type");
    let part = Attachment::new(file_name.to_string()).body(body, content_type);
    MultiPart::mixed().singlepart(part).formatted()
}

/// The mail for `interchange`, unencrypted: headers (From, To, Subject = `file_name`, Date =
/// `date`, a new Message-ID, MIME-Version) and [`attachment_entity`] as body.
pub fn build_mail(
    from: &Mailbox,
    to: &Mailbox,
    interchange: &[u8],
    file_name: &str,
    date: SystemTime,
) -> Result<Vec<u8>, MailError> {
    build_mail_with(from, to, interchange, file_name, date, |entity| {
        Ok::<_, MailError>(entity.to_vec())
    })
}

/// Like [`build_mail`], but the attachment's entity goes through `wrap` first, and what it
/// returns (a complete MIME entity: its own Content-Type and other content headers, a blank
/// line, the body) becomes the mail's body. The S/MIME layer's sign-then-encrypt is such a
/// `wrap`; its error type only has to take a [`MailError`].
pub fn build_mail_with<E, W>(
    from: &Mailbox,
    to: &Mailbox,
    interchange: &[u8],
    file_name: &str,
    date: SystemTime,
    wrap: W,
) -> Result<Vec<u8>, E>
where
    W: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    E: From<MailError>,
{
    let entity = wrap(&attachment_entity(interchange, file_name))?;
    let mut mail = outer_headers(from, to, file_name, date)?.into_bytes();
    mail.extend_from_slice(&entity);
    Ok(mail)
}

/// From, To, Subject, Date, Message-ID and MIME-Version, each line ending in CRLF, encoded by
/// lettre (RFC 2047 where needed).
fn outer_headers(
    from: &Mailbox,
    to: &Mailbox,
    subject: &str,
    date: SystemTime,
) -> Result<String, MailError> {
    let message_id = format!("<{:032x}@{}>", rand::random::<u128>(), from.email.domain());
    // The builder wants a body; a MIME body keeps its own headers out of `headers()`, so the
    // placeholder contributes nothing but MIME-Version.
    let message = Message::builder()
        .from(from.clone())
        .to(to.clone())
        .subject(subject)
        .date(date)
        .message_id(Some(message_id))
        .singlepart(SinglePart::builder().body(String::new()))
        .map_err(|e| MailError::Headers {
            reason: e.to_string(),
        })?;
    Ok(message.headers().to_string())
}

/// The one attachment of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractedAttachment {
    /// The file name (Content-Disposition `filename`, else Content-Type `name`), if given.
    pub file_name: Option<String>,
    /// Its media type as sent (`application/octet-stream` per the BDEW rules; not enforced).
    pub content_type: String,
    /// The decoded bytes: the interchange.
    pub bytes: Vec<u8>,
}

/// The interchange out of a mail or MIME entity (after decryption: the entity the S/MIME
/// layer returns): exactly one attachment, else [`MailError::NoAttachment`] or
/// [`MailError::SeveralAttachments`].
///
/// An attachment is a leaf part that is marked `attachment`, or has a file name, or is not
/// text; inline text without a name is the mail's body text and is ignored, and so is a
/// detached signature (`application/pkcs7-signature`), which is not an interchange.
pub fn extract_single_attachment(mail: &[u8]) -> Result<ExtractedAttachment, MailError> {
    let parsed = mailparse::parse_mail(mail).map_err(|e| MailError::Unreadable {
        reason: e.to_string(),
    })?;
    let mut found = Vec::new();
    collect_attachments(&parsed, &mut found);
    match found.as_slice() {
        [] => Err(MailError::NoAttachment),
        [part] => {
            let file_name = part_file_name(part);
            let bytes = part
                .get_body_raw()
                .map_err(|e| MailError::UndecodableAttachment {
                    file_name: file_name.clone(),
                    reason: e.to_string(),
                })?;
            Ok(ExtractedAttachment {
                file_name,
                content_type: part.ctype.mimetype.clone(),
                bytes,
            })
        }
        several => Err(MailError::SeveralAttachments {
            count: several.len(),
            names: several
                .iter()
                .map(|p| part_file_name(p).unwrap_or_else(|| "?".into()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn collect_attachments<'m, 'a>(
    part: &'m mailparse::ParsedMail<'a>,
    out: &mut Vec<&'m mailparse::ParsedMail<'a>>,
) {
    let media_type = part.ctype.mimetype.to_ascii_lowercase();
    if media_type.starts_with("multipart/") {
        for sub in &part.subparts {
            collect_attachments(sub, out);
        }
        return;
    }
    if matches!(
        media_type.as_str(),
        "application/pkcs7-signature" | "application/x-pkcs7-signature"
    ) {
        return;
    }
    let marked =
        part.get_content_disposition().disposition == mailparse::DispositionType::Attachment;
    if marked || part_file_name(part).is_some() || !media_type.starts_with("text/") {
        out.push(part);
    }
}

fn part_file_name(part: &mailparse::ParsedMail<'_>) -> Option<String> {
    part.get_content_disposition()
        .params
        .get("filename")
        .or_else(|| part.ctype.params.get("name"))
        .filter(|n| !n.is_empty())
        .cloned()
}

// ---------------------------------------------------------------------------------------------
// Transport security
// ---------------------------------------------------------------------------------------------

/// How a connection to a mail server is protected (`tls = "none" | "starttls" | "tls"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP: only to a loopback host ([`plaintext_allowed`]).
    None,
    /// Plain connect, then STARTTLS before anything else; refused when the server does not
    /// offer it.
    #[default]
    StartTls,
    /// Implicit TLS from the first byte (SMTP 465, IMAPS 993).
    Implicit,
}

impl TlsMode {
    /// The configuration word: `none`, `starttls`, `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "tls",
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Implicit),
            other => Err(format!(
                "{other:?} is not a TLS mode; use \"starttls\", \"tls\" or \"none\""
            )),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport security of one server connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// How the connection is protected.
    pub mode: TlsMode,
    /// PEM file with the CA certificate(s) to trust instead of the system roots (a private
    /// CA); `None`: the system roots.
    pub ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// No TLS (loopback only).
    pub fn none() -> TlsSettings {
        TlsSettings {
            mode: TlsMode::None,
            ca_file: None,
        }
    }

    /// `mode`, trusting the CA certificates in `ca_file` (PEM).
    pub fn with_ca(mode: TlsMode, ca_file: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            mode,
            ca_file: Some(ca_file.into()),
        }
    }
}

/// True when `host` is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`: the only
/// hosts a password may go to without TLS.
pub fn plaintext_allowed(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the TLS set-up failed before any connection was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// `none` to a host that is not loopback.
    #[error("tls = \"none\" is allowed only for a loopback host (127.0.0.1, ::1, localhost), not {host:?}: passwords and mail would go in clear")]
    PlaintextNotLoopback {
        /// The host.
        host: String,
    },
    /// The CA file cannot be read or has no PEM certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl TlsSettings {
    /// Refuses `none` to a host that is not loopback.
    pub fn check(&self, host: &str) -> Result<(), TlsSetupError> {
        if self.mode == TlsMode::None && !plaintext_allowed(host) {
            return Err(TlsSetupError::PlaintextNotLoopback { host: host.into() });
        }
        Ok(())
    }

    /// Reads [`Self::ca_file`] (when set) as a client would: an error when it cannot be read
    /// or holds no PEM certificate.
    pub fn check_ca_file(&self) -> Result<(), TlsSetupError> {
        self.ca_certificates().map(drop)
    }

    /// The CA certificates of [`Self::ca_file`], as DER, or none when it is unset.
    fn ca_certificates(&self) -> Result<Vec<Vec<u8>>, TlsSetupError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        read_ca_file(path)
    }
}

/// Every certificate of a PEM file, as DER; an error when there is none.
fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, TlsSetupError> {
    let error = |reason: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem)
        .map_err(|e| error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| error(e.to_string())))
        .collect()
}

/// A connector for IMAP: TLS 1.2 or newer, the system roots or only the CA file's
/// certificates.
fn imap_tls_connector(config: &ImapConfig) -> Result<tokio_native_tls::TlsConnector, ImapError> {
    let tls = &config.tls;
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    let cas = tls.ca_certificates().map_err(ImapError::TlsSetup)?;
    if !cas.is_empty() {
        builder.disable_built_in_roots(true);
    }
    for der in cas {
        let cert = native_tls::Certificate::from_der(&der).map_err(|e| {
            ImapError::TlsSetup(TlsSetupError::CaFile {
                path: tls
                    .ca_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })
        })?;
        builder.add_root_certificate(cert);
    }
    let connector = builder.build().map_err(|e| ImapError::Tls {
        server: config.server(),
        detail: error_chain(&e),
    })?;
    Ok(connector.into())
}

/// An error with its sources, `: `-joined (OpenSSL's verify reason sits in a source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// SMTP out
// ---------------------------------------------------------------------------------------------

/// Where and how to send.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port (25 on loopback, 587 for submission).
    pub port: u16,
    /// The name we greet with (EHLO); `localhost` when unset.
    pub hello_name: Option<String>,
    /// SMTP AUTH user and password (PLAIN or LOGIN, as the server offers); `None`: no AUTH.
    pub credentials: Option<(String, String)>,
    /// Transport security (STARTTLS by default).
    pub tls: TlsSettings,
    /// The longest wait for one step.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("hello_name", &self.hello_name)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    /// Plain SMTP (no TLS, no authentication) to `host:port`; [`send`] refuses it unless
    /// the host is loopback.
    pub fn plain(host: impl Into<String>, port: u16) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port,
            hello_name: None,
            credentials: None,
            tls: TlsSettings::none(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with transport security `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> SmtpConfig {
        self.tls = tls;
        self
    }
}

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The server refused for good (5xx): retrying the same mail will not help.
    #[error("permanent SMTP error {code}: {answer}")]
    Permanent {
        /// The reply code (`550`, …).
        code: u16,
        /// The server's answer text.
        answer: String,
    },
    /// The server refused for now (4xx).
    #[error("transient SMTP error {code}: {answer}")]
    Transient {
        /// The reply code (`451`, …).
        code: u16,
        /// The server's answer text.
        answer: String,
    },
    /// No conversation with the server: connection refused or lost, timeout, garbled reply.
    #[error("SMTP connection to {server}: {detail}")]
    Connection {
        /// `host:port`.
        server: String,
        /// What happened.
        detail: String,
    },
    /// Our side: the envelope or the client set-up is wrong; retrying will not help.
    #[error("SMTP client error: {detail}")]
    Client {
        /// What is wrong.
        detail: String,
    },
}

impl SendError {
    /// Worth retrying later (4xx or no connection).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SendError::Transient { .. } | SendError::Connection { .. }
        )
    }

    /// Retrying will not help (5xx or our own mistake): park the mail with [`Self::answer`].
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The server's answer, when it gave one.
    pub fn answer(&self) -> Option<&str> {
        match self {
            SendError::Permanent { answer, .. } | SendError::Transient { answer, .. } => {
                Some(answer)
            }
            _ => None,
        }
    }

    fn classify(error: lettre::transport::smtp::Error, config: &SmtpConfig) -> SendError {
        let code = error
            .status()
            .and_then(|c| c.to_string().parse::<u16>().ok());
        // lettre's Display is "permanent error (550): <the server's lines>"; keep the lines.
        let text = error.to_string();
        let answer = text
            .split_once("): ")
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| text.clone());
        match code {
            Some(code) if error.is_permanent() => SendError::Permanent { code, answer },
            Some(code) if error.is_transient() => SendError::Transient { code, answer },
            _ if error.is_client() => SendError::Client { detail: text },
            _ => SendError::Connection {
                server: format!("{}:{}", config.host, config.port),
                detail: text,
            },
        }
    }
}

/// Sends `raw` (a complete RFC 5322 message, e.g. from [`build_mail`]) from `from` to `to`
/// (the SMTP envelope; the headers inside `raw` are not read).
pub async fn send(
    config: &SmtpConfig,
    from: &Address,
    to: &[Address],
    raw: &[u8],
) -> Result<(), SendError> {
    let envelope =
        lettre::address::Envelope::new(Some(from.clone()), to.to_vec()).map_err(|e| {
            SendError::Client {
                detail: e.to_string(),
            }
        })?;
    let hello = ClientId::Domain(
        config
            .hello_name
            .clone()
            .unwrap_or_else(|| "localhost".into()),
    );
    let client_error = |e: TlsSetupError| SendError::Client {
        detail: e.to_string(),
    };
    config.tls.check(&config.host).map_err(client_error)?;
    let tls = smtp_tls(config).map_err(|e| match e {
        SmtpTlsError::Setup(e) => client_error(e),
        SmtpTlsError::Lettre(e) => SendError::Client {
            detail: format!("TLS set-up: {}", error_chain(&e)),
        },
    })?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port)
        .hello_name(hello)
        .tls(tls)
        .timeout(Some(config.timeout));
    if let Some((user, password)) = &config.credentials {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password.clone(),
        ));
    }
    let transport = builder.build();
    transport
        .send_raw(&envelope, raw)
        .await
        .map(|_| ())
        .map_err(|e| SendError::classify(e, config))
}

enum SmtpTlsError {
    Setup(TlsSetupError),
    Lettre(lettre::transport::smtp::Error),
}

/// lettre's TLS choice for `config`: `Required` is STARTTLS that fails when the server does
/// not offer it, `Wrapper` is implicit TLS.
fn smtp_tls(config: &SmtpConfig) -> Result<lettre::transport::smtp::client::Tls, SmtpTlsError> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    if config.tls.mode == TlsMode::None {
        return Ok(Tls::None);
    }
    let mut parameters = TlsParameters::builder(config.host.clone());
    let cas = config.tls.ca_certificates().map_err(SmtpTlsError::Setup)?;
    if !cas.is_empty() {
        parameters = parameters.certificate_store(CertificateStore::None);
    }
    for der in cas {
        parameters = parameters
            .add_root_certificate(Certificate::from_der(der).map_err(SmtpTlsError::Lettre)?);
    }
    let parameters = parameters.build_native().map_err(SmtpTlsError::Lettre)?;
    Ok(match config.tls.mode {
        TlsMode::Implicit => Tls::Wrapper(parameters),
        _ => Tls::Required(parameters),
    })
}

// ---------------------------------------------------------------------------------------------
// IMAP in
// ---------------------------------------------------------------------------------------------

/// Which mailbox to read and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port (143).
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Password (LOGIN; in clear only with [`TlsMode::None`] to a loopback host).
    pub password: String,
    /// The mailbox to read (`INBOX`).
    pub mailbox: String,
    /// Time between looks when the server has no IDLE (and the longest IDLE).
    pub poll_interval: Duration,
    /// Use IDLE when the server offers it.
    pub idle: bool,
    /// Transport security (STARTTLS by default).
    pub tls: TlsSettings,
    /// The longest wait for one network step.
    pub timeout: Duration,
}

impl ImapConfig {
    /// Plain IMAP to `host:port`, mailbox INBOX, IDLE on, the default intervals;
    /// [`Inbox::connect`] refuses it unless the host is loopback.
    pub fn plain(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> ImapConfig {
        ImapConfig {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            mailbox: "INBOX".into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            idle: true,
            tls: TlsSettings::none(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with transport security `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> ImapConfig {
        self.tls = tls;
        self
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the IMAP side failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapError {
    /// The TCP connection could not be made.
    #[error("IMAP connection to {server}: {source}")]
    Connect {
        /// `host:port`.
        server: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS configuration cannot be used (plain to a remote host, a bad CA file).
    #[error("IMAP TLS set-up: {0}")]
    TlsSetup(TlsSetupError),
    /// The server offers no STARTTLS, though the configuration asks for it.
    #[error("IMAP server {server} does not offer STARTTLS (tls = \"starttls\"); use \"tls\" (IMAPS) if it has that")]
    NoStartTls {
        /// `host:port`.
        server: String,
    },
    /// The TLS handshake failed: an untrusted or wrong certificate, no common protocol.
    #[error("IMAP TLS handshake with {server}: {detail}")]
    Tls {
        /// `host:port`.
        server: String,
        /// OpenSSL's reason (`certificate verify failed`, …).
        detail: String,
    },
    /// A step took longer than the configured timeout.
    #[error("IMAP {step} took longer than {timeout:?}")]
    Timeout {
        /// The step (`LOGIN`, `FETCH`, …).
        step: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The server refused the login.
    #[error("IMAP login of {user} refused: {source}")]
    Login {
        /// The user.
        user: String,
        /// The server's answer.
        source: async_imap::error::Error,
    },
    /// A command failed or the connection broke.
    #[error("IMAP {step}: {source}")]
    Protocol {
        /// The step.
        step: &'static str,
        /// The error.
        source: async_imap::error::Error,
    },
    /// The mailbox does not allow the keyword that marks journaled mail.
    #[error("mailbox {mailbox} does not allow new keywords (PERMANENTFLAGS {flags}), so mail cannot be marked as journaled")]
    KeywordNotAllowed {
        /// The mailbox.
        mailbox: String,
        /// What the server allows.
        flags: String,
    },
    /// The connection was given up after an earlier error.
    #[error("the IMAP session was lost after an earlier error")]
    SessionLost,
}

impl ImapError {
    /// Worth trying again with a new connection (network trouble), as opposed to a
    /// configuration the operator must fix (login, keywords).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ImapError::Login { .. }
                | ImapError::KeywordNotAllowed { .. }
                | ImapError::TlsSetup(_)
                | ImapError::NoStartTls { .. }
        )
    }
}

/// Why [`Inbox::fetch_new`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum InboxError<E> {
    /// The IMAP side failed.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The journal callback failed for this mail; it stays unmarked and is offered again.
    #[error("journaling mail UID {uid} failed: {source}")]
    Journal {
        /// The mail's UID.
        uid: u32,
        /// The callback's error.
        source: E,
    },
}

/// A mail as fetched, for the journal callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The mailbox's UIDVALIDITY: (UIDVALIDITY, UID) names the mail for good.
    pub uid_validity: u32,
    /// The mail's UID.
    pub uid: u32,
    /// The mail exactly as stored on the server.
    pub raw: Vec<u8>,
}

/// What [`Inbox::wait`] woke up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server announced a change (new mail, most likely).
    Activity,
    /// The poll interval passed.
    Interval,
    /// The stop signal was given.
    Stopped,
}

/// What an IMAP session runs over: plain TCP (loopback) or TLS.
trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> ImapStream for T {}

type Session = async_imap::Session<Box<dyn ImapStream>>;

/// A logged-in IMAP connection with the configured mailbox selected.
#[derive(Debug)]
pub struct Inbox {
    config: ImapConfig,
    /// `None` after an error that left the connection in an unknown state.
    session: Option<Session>,
    uid_validity: u32,
    idle: bool,
}

async fn step<T, F>(timeout: Duration, name: &'static str, future: F) -> Result<T, ImapError>
where
    F: Future<Output = Result<T, async_imap::error::Error>>,
{
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|source| ImapError::Protocol { step: name, source }),
        Err(_) => Err(ImapError::Timeout {
            step: name,
            timeout,
        }),
    }
}

impl Inbox {
    /// Connects, logs in, checks IDLE and selects the mailbox; refuses a mailbox that cannot
    /// take the [`JOURNALED_KEYWORD`].
    pub async fn connect(config: ImapConfig) -> Result<Inbox, ImapError> {
        let timeout = config.timeout;
        config
            .tls
            .check(&config.host)
            .map_err(ImapError::TlsSetup)?;
        let connector = match config.tls.mode {
            TlsMode::None => None,
            _ => Some(imap_tls_connector(&config)?),
        };
        let stream = match tokio::time::timeout(
            timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ImapError::Connect {
                    server: config.server(),
                    source,
                })
            }
            Err(_) => {
                return Err(ImapError::Timeout {
                    step: "connect",
                    timeout,
                })
            }
        };
        let client = Self::secure(&config, stream, connector).await?;
        let mut session =
            match tokio::time::timeout(timeout, client.login(&config.user, &config.password)).await
            {
                Ok(Ok(session)) => session,
                Ok(Err((source, _))) => {
                    return Err(ImapError::Login {
                        user: config.user.clone(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ImapError::Timeout {
                        step: "LOGIN",
                        timeout,
                    })
                }
            };
        let idle = config.idle
            && step(timeout, "CAPABILITY", session.capabilities())
                .await?
                .has_str("IDLE");
        let mailbox = step(timeout, "SELECT", session.select(&config.mailbox)).await?;
        let keyword_allowed = mailbox.permanent_flags.iter().any(|f| {
            matches!(f, Flag::MayCreate)
                || matches!(f, Flag::Custom(k) if k.eq_ignore_ascii_case(JOURNALED_KEYWORD))
        });
        if !keyword_allowed {
            return Err(ImapError::KeywordNotAllowed {
                mailbox: config.mailbox.clone(),
                flags: format!("{:?}", mailbox.permanent_flags),
            });
        }
        Ok(Inbox {
            uid_validity: mailbox.uid_validity.unwrap_or(0),
            config,
            session: Some(session),
            idle,
        })
    }

    /// The client after the greeting, over TLS unless the mode is `none`: for `tls` the
    /// handshake comes first; for `starttls` the greeting and STARTTLS go in clear, then the
    /// handshake, and the client starts afresh on the TLS stream (RFC 9051 §6.2.1: nothing
    /// the server said before counts). The login only ever goes after the handshake.
    async fn secure(
        config: &ImapConfig,
        stream: TcpStream,
        connector: Option<tokio_native_tls::TlsConnector>,
    ) -> Result<async_imap::Client<Box<dyn ImapStream>>, ImapError> {
        let timeout = config.timeout;
        let Some(connector) = connector else {
            let mut client = async_imap::Client::new(Box::new(stream) as Box<dyn ImapStream>);
            step(timeout, "greeting", async {
                client.read_response().await.map_err(Into::into)
            })
            .await?;
            return Ok(client);
        };
        let handshake = |stream: TcpStream| async move {
            match tokio::time::timeout(timeout, connector.connect(&config.host, stream)).await {
                Ok(Ok(tls)) => Ok(Box::new(tls) as Box<dyn ImapStream>),
                Ok(Err(e)) => Err(ImapError::Tls {
                    server: config.server(),
                    detail: error_chain(&e),
                }),
                Err(_) => Err(ImapError::Timeout {
                    step: "TLS handshake",
                    timeout,
                }),
            }
        };
        if config.tls.mode == TlsMode::Implicit {
            let mut client = async_imap::Client::new(handshake(stream).await?);
            step(timeout, "greeting", async {
                client.read_response().await.map_err(Into::into)
            })
            .await?;
            return Ok(client);
        }
        let mut plain = async_imap::Client::new(stream);
        step(timeout, "greeting", async {
            plain.read_response().await.map_err(Into::into)
        })
        .await?;
        // A server without STARTTLS answers BAD or NO; the tagged OK is the go-ahead.
        step(
            timeout,
            "STARTTLS",
            plain.run_command_and_check_ok("STARTTLS", None),
        )
        .await
        .map_err(|e| match e {
            ImapError::Protocol { .. } => ImapError::NoStartTls {
                server: config.server(),
            },
            other => other,
        })?;
        Ok(async_imap::Client::new(
            handshake(plain.into_inner()).await?,
        ))
    }

    /// The selected mailbox's UIDVALIDITY.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// True when waiting uses IDLE (configured and offered by the server).
    pub fn uses_idle(&self) -> bool {
        self.idle
    }

    fn session(&mut self) -> Result<&mut Session, ImapError> {
        self.session.as_mut().ok_or(ImapError::SessionLost)
    }

    /// The UIDs of the mails not yet journaled, oldest first.
    pub async fn pending(&mut self) -> Result<Vec<u32>, ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        let query = format!("UNDELETED UNKEYWORD {JOURNALED_KEYWORD}");
        let mut uids: Vec<u32> = step(timeout, "UID SEARCH", session.uid_search(query))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Hands every mail not yet journaled, oldest first, to `journal`, and marks each one
    /// (`\Seen` and [`JOURNALED_KEYWORD`]) once `journal` returned `Ok`. `journal` must return
    /// `Ok` only when the raw mail is committed to durable storage, and must accept the same
    /// mail twice (after a crash between its commit and the mark). Stops at the first error;
    /// what was marked stays marked. Returns how many mails were journaled.
    pub async fn fetch_new<F, Fut, E>(&mut self, mut journal: F) -> Result<usize, InboxError<E>>
    where
        F: FnMut(ReceivedMail) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let timeout = self.config.timeout;
        let mut done = 0;
        for uid in self.pending().await? {
            // One mail per FETCH: a mailbox full of 10 MB mails is not held in memory at once.
            let session = self.session()?;
            let raw = step(timeout, "UID FETCH", async {
                let fetches: Vec<_> = session
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .await?
                    .try_collect()
                    .await?;
                Ok(fetches
                    .into_iter()
                    .find(|f| f.uid == Some(uid))
                    .and_then(|f| f.body().map(<[u8]>::to_vec)))
            })
            .await?;
            // Gone since the search (expunged by someone else): nothing to do.
            let Some(raw) = raw else { continue };
            let mail = ReceivedMail {
                uid_validity: self.uid_validity,
                uid,
                raw,
            };
            journal(mail)
                .await
                .map_err(|source| InboxError::Journal { uid, source })?;
            self.mark_journaled(uid).await?;
            done += 1;
        }
        Ok(done)
    }

    async fn mark_journaled(&mut self, uid: u32) -> Result<(), ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        step(timeout, "UID STORE", async {
            session
                .uid_store(
                    uid.to_string(),
                    format!("+FLAGS.SILENT (\\Seen {JOURNALED_KEYWORD})"),
                )
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }

    /// The flags of one mail (`\Seen`, `$MakoJournaled`, …), for checks and operators.
    pub async fn flags(&mut self, uid: u32) -> Result<Vec<String>, ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        step(timeout, "UID FETCH FLAGS", async {
            let fetches: Vec<_> = session
                .uid_fetch(uid.to_string(), "(UID FLAGS)")
                .await?
                .try_collect()
                .await?;
            Ok(fetches
                .iter()
                .filter(|f| f.uid == Some(uid))
                .flat_map(|f| f.flags().map(|flag| flag_text(&flag)))
                .collect())
        })
        .await
    }

    /// True when the server announced new mail (EXISTS/RECENT) since the last look; empties
    /// the queue of announcements.
    fn announced(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let mut any = false;
        while let Ok(response) = session.unsolicited_responses.try_recv() {
            any |= matches!(
                response,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            );
        }
        any
    }

    /// Waits for new mail: IDLE when the server has it, else the poll interval; at most the
    /// poll interval either way, and returns at once when `stop` turns true.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Wake, ImapError> {
        if *stop.borrow() {
            return Ok(Wake::Stopped);
        }
        // Mail that arrived while we were fetching was announced then; IDLE would not see it.
        if self.announced() {
            return Ok(Wake::Activity);
        }
        let interval = self.config.poll_interval.min(MAX_IDLE);
        if !self.idle {
            return Ok(tokio::select! {
                _ = tokio::time::sleep(interval) => Wake::Interval,
                _ = stop.changed() => Wake::Stopped,
            });
        }
        let timeout = self.config.timeout;
        let session = self.session.take().ok_or(ImapError::SessionLost)?;
        let mut handle = session.idle();
        step(timeout, "IDLE", handle.init()).await?;
        let woke = {
            let (idle, interrupt) = handle.wait_with_timeout(interval);
            let woke = tokio::select! {
                r = idle => match r {
                    Ok(async_imap::extensions::idle::IdleResponse::NewData(_)) => Wake::Activity,
                    Ok(_) => Wake::Interval,
                    Err(source) => return Err(ImapError::Protocol { step: "IDLE", source }),
                },
                // Keep-alives reset IDLE's own timeout; the interval is a hard limit.
                _ = tokio::time::sleep(interval) => Wake::Interval,
                _ = stop.changed() => Wake::Stopped,
            };
            drop(interrupt);
            woke
        };
        self.session = Some(step(timeout, "DONE", handle.done()).await?);
        Ok(woke)
    }

    /// Logs out (best effort: the connection is closed either way).
    pub async fn logout(mut self) {
        let timeout = self.config.timeout;
        if let Some(session) = self.session.as_mut() {
            let _ = step(timeout, "LOGOUT", session.logout()).await;
        }
    }
}

fn flag_text(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(k) => k.to_string(),
    }
}

/// Reads the mailbox until `stop` turns true: connects, hands every new mail to `journal`
/// ([`Inbox::fetch_new`]), waits ([`Inbox::wait`]), and reconnects with backoff after an
/// error. A journal error leaves the mail unmarked; it is offered again after the poll
/// interval.
pub async fn run_inbox<F, Fut, E>(
    config: ImapConfig,
    mut journal: F,
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut(ReceivedMail) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let mut backoff = RECONNECT_BACKOFF.0;
    while !*stop.borrow() {
        match Inbox::connect(config.clone()).await {
            Ok(mut inbox) => {
                backoff = RECONNECT_BACKOFF.0;
                loop {
                    match inbox.fetch_new(&mut journal).await {
                        Ok(n) if n > 0 => tracing::info!(mails = n, "mails journaled"),
                        Ok(_) => {}
                        Err(InboxError::Journal { uid, source }) => {
                            tracing::warn!(uid, error = %source, "journaling a mail failed; it stays unmarked")
                        }
                        Err(InboxError::Imap(e)) => {
                            tracing::warn!(error = %e, "IMAP failed; reconnecting");
                            break;
                        }
                    }
                    match inbox.wait(&mut stop).await {
                        Ok(Wake::Stopped) => {
                            inbox.logout().await;
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "IMAP wait failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, server = %config.server(), "IMAP connect failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG42++++++'UNH+1+ORDERS:D:09B:UN:1.4b'BGM+7+D1'UNT+3+1'UNZ+1+MG42'";

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 23).unwrap()
    }

    #[test]
    fn names_the_file_as_the_bdew_convention_says() {
        let name = TransferFileName::of_interchange(ORDERS, day()).unwrap();
        assert_eq!(
            name.to_string(),
            "ORDERS__9900000000003_9900000000010_20261123_MG42.txt"
        );
    }

    #[test]
    fn keeps_the_application_reference_of_unb_de0026() {
        let mscons = b"UNB+UNOC:3+9900123400007:500+4012345393651:500+070131:1015+B31++TL'UNH+1+MSCONS:D:04B:UN:2.4c'UNT+2+1'UNZ+1+B31'";
        let name = TransferFileName::of_interchange(mscons, day()).unwrap();
        // The document's own example, with our date.
        assert_eq!(
            name.to_string(),
            "MSCONS_TL_9900123400007_4012345393651_20261123_B31.txt"
        );
    }

    #[test]
    fn refuses_a_reference_with_an_underscore() {
        let bad = b"UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG_1'UNH+1+ORDERS:D:09B:UN:1.4b'UNT+2+1'UNZ+1+MG_1'";
        assert_eq!(
            TransferFileName::of_interchange(bad, day()),
            Err(FileNameError::UnsafeCharacter {
                part: "UNB DE0020",
                value: "MG_1".into()
            })
        );
    }

    #[test]
    fn refuses_mixed_message_types() {
        let mixed = b"UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG1'UNH+1+ORDERS:D:09B:UN:1.4b'UNT+2+1'UNH+2+UTILMD:D:11A:UN:S2.1'UNT+2+2'UNZ+2+MG1'";
        assert!(matches!(
            TransferFileName::of_interchange(mixed, day()),
            Err(FileNameError::MixedMessageTypes { .. })
        ));
    }

    fn mailbox(s: &str) -> Mailbox {
        s.parse().unwrap()
    }

    #[test]
    fn builds_a_mail_with_one_base64_attachment_named_like_the_subject() {
        let name = "ORDERS__9900000000003_9900000000010_20261123_MG42.txt";
        let mail = build_mail(
            &mailbox("Gateway <gateway@mako.test>"),
            &mailbox("partner@mako.test"),
            ORDERS,
            name,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        )
        .unwrap();
        let text = String::from_utf8(mail.clone()).unwrap();
        assert!(text.contains(&format!("Subject: {name}\r\n")), "{text}");
        assert!(text.contains("Message-ID: <"), "{text}");
        assert!(text.contains("Date: "), "{text}");
        assert!(text.contains("MIME-Version: 1.0\r\n"), "{text}");
        assert!(text.contains("Content-Transfer-Encoding: base64"), "{text}");
        let parsed = mailparse::parse_mail(&mail).unwrap();
        assert_eq!(parsed.ctype.mimetype, "multipart/mixed");
        let attachment = extract_single_attachment(&mail).unwrap();
        assert_eq!(attachment.file_name.as_deref(), Some(name));
        assert_eq!(attachment.content_type, ATTACHMENT_CONTENT_TYPE);
        assert_eq!(attachment.bytes, ORDERS);
    }

    #[test]
    fn the_hook_gets_the_inner_entity_and_its_output_becomes_the_body() {
        let mail = build_mail_with(
            &mailbox("gateway@mako.test"),
            &mailbox("partner@mako.test"),
            ORDERS,
            "x.txt",
            SystemTime::UNIX_EPOCH,
            |entity| {
                assert!(entity.starts_with(b"Content-Type: multipart/mixed"));
                Ok::<_, MailError>(
                    b"Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data\r\n\r\nWRAPPED\r\n"
                        .to_vec(),
                )
            },
        )
        .unwrap();
        let parsed = mailparse::parse_mail(&mail).unwrap();
        assert_eq!(parsed.ctype.mimetype, "application/pkcs7-mime");
        assert_eq!(parsed.get_body_raw().unwrap(), b"WRAPPED\r\n");
    }

    #[test]
    fn body_text_is_not_an_attachment_but_two_files_are_two() {
        let one = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.txt\r\nContent-Transfer-Encoding: base64\r\n\r\nVU5CKw==\r\n--b--\r\n";
        let a = extract_single_attachment(one).unwrap();
        assert_eq!(a.bytes, b"UNB+");
        let two = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream; name=a.txt\r\n\r\nA\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=b.txt\r\n\r\nB\r\n--b--\r\n";
        assert_eq!(
            extract_single_attachment(two),
            Err(MailError::SeveralAttachments {
                count: 2,
                names: "a.txt, b.txt".into()
            })
        );
        let none = b"Content-Type: text/plain\r\n\r\nno file here\r\n";
        assert_eq!(
            extract_single_attachment(none),
            Err(MailError::NoAttachment)
        );
    }

    #[test]
    fn plain_text_only_to_loopback() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(plaintext_allowed(host), "{host}");
            assert!(TlsSettings::none().check(host).is_ok());
        }
        for host in [
            "10.0.0.1",
            "mail.example.org",
            "localhost.example.org",
            "::2",
        ] {
            assert!(!plaintext_allowed(host), "{host}");
            assert!(TlsSettings::none().check(host).is_err());
            assert!(TlsSettings::default().check(host).is_ok());
        }
        assert_eq!("tls".parse(), Ok(TlsMode::Implicit));
        assert_eq!(TlsMode::default().to_string(), "starttls");
    }

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings::with_ca(TlsMode::StartTls, dir.path().join("nope.pem"));
        assert!(matches!(
            missing.check_ca_file(),
            Err(TlsSetupError::CaFile { .. })
        ));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let error = TlsSettings::with_ca(TlsMode::StartTls, &garbage)
            .check_ca_file()
            .unwrap_err();
        assert!(error.to_string().contains("garbage.pem"), "{error}");
        // Two certificates in one file (a bundle) are both read.
        let key = openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut builder = openssl::x509::X509::builder().unwrap();
        builder.set_pubkey(&key).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let later = openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        builder.set_not_before(&now).unwrap();
        builder.set_not_after(&later).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let pem = builder.build().to_pem().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, [pem.clone(), pem].concat()).unwrap();
        let settings = TlsSettings::with_ca(TlsMode::Implicit, &bundle);
        assert_eq!(settings.ca_certificates().unwrap().len(), 2);
    }

    #[test]
    fn classifies_send_errors() {
        let permanent = SendError::Permanent {
            code: 550,
            answer: "5.1.1 unknown".into(),
        };
        assert!(permanent.is_permanent() && !permanent.is_transient());
        assert_eq!(permanent.answer(), Some("5.1.1 unknown"));
        let connection = SendError::Connection {
            server: "127.0.0.1:1".into(),
            detail: "refused".into(),
        };
        assert!(connection.is_transient());
    }
}
