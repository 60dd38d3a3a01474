//! Transports between the gateway and its partners, beside the file drop of the daemon.
//!
//! Today the mail part of the BDEW e-mail transport ([`email`]: the file name, the mail around
//! one interchange, SMTP out, IMAP in); the S/MIME layer and the partner registry that picks the
//! certificates are separate work (issue 6).

pub mod email;
