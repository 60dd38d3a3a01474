//! AS4 per the BDEW AS4 profile: ebMS 3.0 one-way push over HTTPS, WS-Security signatures
//! and encryption, signed receipts (see `../shared/domain/transport.md` §1).
//!
//! The ebMS/WS-Security layer is `asx-rs` (pinned `=0.16.2`), used only here so that it can be
//! replaced; what is ours:
//! - [`https`]: HTTPS client and server on OpenSSL (TLS 1.2 with brainpoolP256r1, mutual
//!   authentication against the SM-PKI roots) — asx's own client (rustls) cannot do brainpool;
//! - [`smpki`]: the SM-PKI identity checks (CN containing `EMT.MAK`, subject OU = market
//!   partner ID) and revocation by CRL for TLS peers.

pub mod https;
pub mod smpki;
