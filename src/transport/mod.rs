//! Transports between the gateway and its partners, beside the file drop of the daemon.
//!
//! Today only the S/MIME core of the BDEW e-mail transport ([`smime`]); SMTP out, IMAP in and
//! the partner registry that picks the certificates are later work (issue 6).

pub mod smime;
