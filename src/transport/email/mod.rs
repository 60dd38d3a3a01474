//! The BDEW e-mail transport: the file name of an interchange, the mail that carries it,
//! S/MIME, SMTP out and IMAP in, and the keys and certificates they use.
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
//! - [`smime`]: sign, then encrypt the attachment's MIME entity, and the reverse (its own
//!   module docs say what it does and does not do).
//! - [`EmailSetup`]: our keys and certificates and the e-mail partners', read from the
//!   configured PEM files and checked when `serve` starts, and the signed and encrypted mail
//!   for an outbound interchange ([`EmailSetup::outbound_mail`]).
//! - [`EmailSender`]: this transport's side of the [`crate::transport::Outbound`] seam.
//! - [`handle_mail`]: a received mail journaled raw, decrypted, verified, its signer checked
//!   against the interchange's sender, and handed to the [`crate::transport::InboundSink`] or
//!   quarantined.
//!
//! What it does not do: decide what goes to which partner (the configuration does), parse the
//! interchange beyond its UNB sender, or retry (the outbound worker decides; it asks
//! [`crate::transport::SendError::is_transient`]).
//!
//! One file per part, each re-exported here (the BDEW file name, [`TransferFileName`], is
//! shared with AS4: `transport::file_name`): `mime` (the
//! mail: building and reading), `tls` (transport security), `smtp` (out), `imap` (in),
//! `setup` ([`EmailSetup`]), `send` ([`EmailSender`]), `receive` ([`handle_mail`]); and the
//! public module [`smime`].
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

mod imap;
mod mime;
mod receive;
mod send;
mod setup;
pub mod smime;
mod smtp;
mod tls;

use std::time::Duration;

pub use lettre::message::Mailbox;
pub use lettre::Address;

pub use crate::config::{
    plaintext_allowed, TlsMode, TlsSettings, TlsSetupError, DEFAULT_POLL_INTERVAL,
};
pub use crate::transport::file_name::{FileNameError, TransferFileName};
pub use imap::{
    run_inbox, ImapConfig, ImapError, Inbox, InboxError, ReceivedMail, Wake, JOURNALED_KEYWORD,
    MAX_IDLE,
};
pub use mime::{
    attachment_entity, build_mail, build_mail_with, extract_single_attachment, ExtractedAttachment,
    MailError, ATTACHMENT_CONTENT_TYPE,
};
pub use receive::{handle_mail, MailHandled};
pub use send::EmailSender;
pub use setup::{check_certificate_owner, EmailPartner, EmailSetup, OutboundMailError};
pub use smtp::{send, SendError, SmtpConfig};

/// The longest wait for one network step (connect, a command, one fetch).
pub const DEFAULT_TIMEOUT: Duration = crate::config::DEFAULT_MAIL_TIMEOUT;

#[cfg(test)]
mod tests {
    /// An ORDERS interchange for the unit tests of the parts.
    pub(super) const ORDERS: &[u8] = b"UNA:+.? 'UNB+UNOC:3+9900000000003:500+9900000000010:500+261123:1015+MG42++++++'UNH+1+ORDERS:D:09B:UN:1.4b'BGM+7+D1'UNT+3+1'UNZ+1+MG42'";
}
