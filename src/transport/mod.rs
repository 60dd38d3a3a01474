//! Transports between the gateway and its partners, beside the file drop of the daemon.
//!
//! - [`email`]: the BDEW e-mail transport, whole in one folder: the file name, the mail around
//!   one interchange, S/MIME ([`email::smime`]: sign and encrypt, decrypt and verify), SMTP out,
//!   IMAP in, and the partner registry that picks the certificates ([`email::EmailSetup`]).
//!   `daemon::email` wires it into `serve`: the handling of a received mail and the
//!   quarantine.
//! - [`as4`]: AS4 per the BDEW AS4 profile; `daemon::as4` wires it into `serve`.

pub mod as4;
pub mod email;
