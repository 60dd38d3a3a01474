//! The mail around one interchange: building it (with a hook for S/MIME) and taking the one
//! attachment out of a received one.

use std::time::SystemTime;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Attachment, Body, Mailbox, Message, MultiPart, SinglePart};

/// The attachment's content type (RzÜ 1.5 §6.2 as quoted by an implementation: the file goes
/// as `application/octet-stream`; see `shared/domain/transport.md` §2).
pub const ATTACHMENT_CONTENT_TYPE: &str = "application/octet-stream";

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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::transport::email::tests::ORDERS;

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
}
