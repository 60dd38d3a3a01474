//! Transports between the gateway and its partners, beside the file drop of the daemon.
//!
//! Today the two halves of the BDEW e-mail transport: [`smime`] (sign and encrypt, decrypt
//! and verify) and [`email`] (the file name, the mail around one interchange, SMTP out, IMAP
//! in). `daemon::email` wires them into `serve` with the partner registry that picks the
//! certificates, and the quarantine.

pub mod as4;
pub mod email;
pub mod smime;
