//! The one shape of every refusal the AS4 receiver answers: an unsigned ebMS error signal
//! (SOAP 1.2, `eb:Messaging/eb:SignalMessage` with one `eb:Error` whose `eb:ErrorDetail` says
//! why, empty Body, no SOAP Fault), HTTP 200 for a refusal and HTTP 503 for "send it again
//! later".
//!
//! Why this shape (issue 15, AS4 finding 2; before it asx-rs's refusals came as HTTP 400 and
//! ours as HTTP 200):
//! - phase4, the implementation BDEW partners run, answers every ebMS error with HTTP 200 and
//!   no SOAP Fault (`AS4RequestHandler`: "Errors are always send with an HTTP 200"); only a
//!   request it cannot read at all (no or a broken Content-Type, no SOAP) gets HTTP 400,
//!   without a signal (`AS4IncomingHandler`).
//!   Its client up to 4.1.0, and later ones with `phase4.http.response.accept.allstatuscodes
//!   = false`, throws on any status ≥ 300 before it reads the signal
//!   (`GenericAS4HttpResponseHandler`): a partner would see only "HTTP 400".
//! - ebMS 3.0 Core §6.6 asks for a SOAP Fault beside an error of severity `failure`; the
//!   OASIS ebMS TC made it optional (issue EBXMLMSG-4, as Holodeck B2B's `PackageErrorSignals`
//!   quotes it), Holodeck B2B adds none by default, and a SOAP 1.2 Fault travels with HTTP
//!   400 or 500 in SOAP's HTTP binding, which is what breaks those clients. So: no Fault.
//! - "Send it again later" (the store is down, the same message is being received on another
//!   connection) is HTTP 503 with an `EBMS:0202` signal: a client that reads no body retries
//!   on the status (phase4 retries on an I/O error, which a status ≥ 300 is for its older
//!   clients), one that reads it finds the retryable code (asx-rs retries `EBMS:0202` and any
//!   5xx).
//!
//! Error signals are not signed (neither phase4 without a P-Mode leg nor asx-rs signs them);
//! the BDEW profile signs receipts, which stay asx-rs's.

use chrono::{DateTime, Utc};

/// One ebMS error answered to a sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EbmsError {
    /// `errorCode` (`EBMS:0004` …).
    pub code: String,
    /// `shortDescription`.
    pub short: String,
    /// `category` (`Content`, `Processing`, `Communication`).
    pub category: String,
    /// `eb:Description`: what the code means.
    pub description: String,
    /// `eb:ErrorDetail`: why this message was refused (never anything secret: what the
    /// sender sent or is, and our limits).
    pub detail: String,
    /// `refToMessageInError` and `eb:RefToMessageId`: the refused message, when known.
    pub ref_to: Option<String>,
    /// HTTP 503 (send it again later) instead of HTTP 200.
    pub retry_later: bool,
}

/// The codes this receiver answers with: `(code, shortDescription, category, description)`
/// (ebMS 3.0 Core §6.7.1, AS4 profile §5.2.2 for `EBMS:0303`).
const CODES: &[(&str, &str, &str, &str)] = &[
    (
        "EBMS:0004",
        "Other",
        "Content",
        "The message was refused; the error detail says why.",
    ),
    (
        "EBMS:0101",
        "FailedAuthentication",
        "Processing",
        "The signature or the signing certificate did not pass.",
    ),
    (
        "EBMS:0102",
        "FailedDecryption",
        "Processing",
        "The message could not be decrypted.",
    ),
    (
        "EBMS:0103",
        "PolicyNoncompliance",
        "Processing",
        "The message is not signed or encrypted as the BDEW AS4 profile requires.",
    ),
    (
        "EBMS:0202",
        "DeliveryFailure",
        "Communication",
        "The message could not be taken now; send it again later.",
    ),
    (
        "EBMS:0303",
        "DecompressionFailure",
        "Communication",
        "A payload could not be decompressed.",
    ),
];

/// The longest `eb:ErrorDetail` sent (a reason may quote what the sender sent).
const MAX_DETAIL_CHARS: usize = 1000;

impl EbmsError {
    /// A refusal with `code`; short description, category and description from the code
    /// table (`Other`/`Content` for a code not in it).
    pub fn refused(code: &str, detail: impl Into<String>, ref_to: Option<String>) -> EbmsError {
        let (short, category, description) = CODES
            .iter()
            .find(|(c, ..)| *c == code)
            .map(|(_, s, cat, d)| (*s, *cat, *d))
            .unwrap_or(("Other", "Content", "The message was refused."));
        EbmsError {
            code: code.to_string(),
            short: short.to_string(),
            category: category.to_string(),
            description: description.to_string(),
            detail: detail.into(),
            ref_to,
            retry_later: false,
        }
    }

    /// `EBMS:0202`, answered with HTTP 503: the sender should send the same message again.
    pub fn retry_later(detail: impl Into<String>, ref_to: Option<String>) -> EbmsError {
        EbmsError {
            retry_later: true,
            ..EbmsError::refused("EBMS:0202", detail, ref_to)
        }
    }

    /// The HTTP status this error goes out with.
    pub fn http_status(&self) -> http::StatusCode {
        if self.retry_later {
            http::StatusCode::SERVICE_UNAVAILABLE
        } else {
            http::StatusCode::OK
        }
    }

    /// The SOAP 1.2 envelope of the error signal, its own message id `message_id`.
    pub fn envelope(&self, message_id: &str, now: DateTime<Utc>) -> Vec<u8> {
        let mut out = String::with_capacity(1024);
        out.push_str(
            "<S12:Envelope xmlns:S12=\"http://www.w3.org/2003/05/soap-envelope\" \
             xmlns:eb=\"http://docs.oasis-open.org/ebxml-msg/ebms/v3.0/ns/core/200704/\">\
             <S12:Header><eb:Messaging S12:mustUnderstand=\"true\"><eb:SignalMessage>\
             <eb:MessageInfo><eb:Timestamp>",
        );
        out.push_str(&now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string());
        out.push_str("</eb:Timestamp><eb:MessageId>");
        push_text(&mut out, message_id);
        out.push_str("</eb:MessageId>");
        if let Some(ref_to) = &self.ref_to {
            out.push_str("<eb:RefToMessageId>");
            push_text(&mut out, ref_to);
            out.push_str("</eb:RefToMessageId>");
        }
        out.push_str("</eb:MessageInfo><eb:Error errorCode=\"");
        push_text(&mut out, &self.code);
        out.push_str("\" severity=\"failure\" shortDescription=\"");
        push_text(&mut out, &self.short);
        out.push_str("\" category=\"");
        push_text(&mut out, &self.category);
        out.push_str("\" origin=\"ebMS\"");
        if let Some(ref_to) = &self.ref_to {
            out.push_str(" refToMessageInError=\"");
            push_text(&mut out, ref_to);
            out.push('"');
        }
        out.push_str("><eb:Description xml:lang=\"en\">");
        push_text(&mut out, &self.description);
        out.push_str("</eb:Description><eb:ErrorDetail>");
        let detail: String = self.detail.chars().take(MAX_DETAIL_CHARS).collect();
        push_text(&mut out, &detail);
        out.push_str(
            "</eb:ErrorDetail></eb:Error></eb:SignalMessage></eb:Messaging></S12:Header>\
             <S12:Body/></S12:Envelope>",
        );
        out.into_bytes()
    }
}

/// `text` escaped for element content and double-quoted attribute values (the only quotes
/// used here, so an apostrophe stays as it is); characters XML 1.0
/// does not allow (controls but tab, CR, LF; U+FFFE, U+FFFF) become U+FFFD: a reason may quote
/// hostile bytes (a UNB sender).
fn push_text(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        "2026-05-12T09:30:00Z".parse().unwrap()
    }

    #[test]
    fn an_error_signal_names_the_code_the_message_and_the_reason_escaped() {
        let e = EbmsError::refused(
            "EBMS:0004",
            "the interchange's sender (UNB) is <9900\u{1}\"x\">",
            Some("m&1@x".into()),
        );
        assert_eq!(e.http_status(), http::StatusCode::OK);
        let xml = String::from_utf8(e.envelope("err-1@9900000000003", at())).unwrap();
        assert!(xml.contains(
            "<eb:Error errorCode=\"EBMS:0004\" severity=\"failure\" shortDescription=\"Other\" \
             category=\"Content\" origin=\"ebMS\" refToMessageInError=\"m&amp;1@x\">"
        ));
        assert!(xml.contains("<eb:RefToMessageId>m&amp;1@x</eb:RefToMessageId>"));
        assert!(xml.contains(
            "<eb:ErrorDetail>the interchange's sender (UNB) is \
             &lt;9900\u{FFFD}&quot;x&quot;&gt;</eb:ErrorDetail>"
        ));
        assert!(xml.contains("<eb:Timestamp>2026-05-12T09:30:00.000Z</eb:Timestamp>"));
        assert!(xml.ends_with("<S12:Body/></S12:Envelope>"));
        assert!(!xml.contains("Fault"));
    }

    #[test]
    fn retry_later_is_ebms_0202_with_http_503() {
        let e = EbmsError::retry_later("send it again later", None);
        assert_eq!(e.code, "EBMS:0202");
        assert_eq!(e.short, "DeliveryFailure");
        assert_eq!(e.http_status(), http::StatusCode::SERVICE_UNAVAILABLE);
        let xml = String::from_utf8(e.envelope("err-2@x", at())).unwrap();
        assert!(!xml.contains("refToMessageInError"));
        assert!(!xml.contains("RefToMessageId"));
    }

    #[test]
    fn a_long_detail_is_cut_and_an_unknown_code_is_other_content() {
        let e = EbmsError::refused("EBMS:0009", "x".repeat(5000), None);
        assert_eq!(
            (e.short.as_str(), e.category.as_str()),
            ("Other", "Content")
        );
        let xml = String::from_utf8(e.envelope("err-3@x", at())).unwrap();
        assert!(xml.contains(&format!(
            "<eb:ErrorDetail>{}</eb:ErrorDetail>",
            "x".repeat(1000)
        )));
    }
}
