//! Transports between the gateway and its partners, and the two seams every transport fits:
//!
//! - [`Outbound`]: sends one interchange to one partner (the file drop, e-mail, AS4), with
//!   errors that answer [`SendError::is_transient`]; the outbound worker asks the partner's
//!   transport, chosen from the configuration, and never knows which one it is.
//! - [`InboundSink`]: where every transport hands what it received; `Ok` means the
//!   interchange is journaled and committed, and only then may the transport acknowledge it.
//!
//! Each transport lives whole in its own module, with both sides of the seams:
//! [`file_drop`], [`email`] (with S/MIME, [`email::smime`]), [`as4`] (with the BDEW AS4
//! profile's HTTPS and SM-PKI checks).
//!
//! [`health`] keeps what each transport did last (in memory) for `/health` and `/metrics`.

pub mod as4;
pub mod email;
pub mod file_drop;
pub mod file_name;
pub mod health;
pub mod net;
pub mod smpki;

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::store::{Arrived, As4Arrival, Inserted, StoreError, Transport};

/// A boxed, sendable future (the seams are object safe: the worker holds `dyn Outbound`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where every transport hands a received interchange.
pub trait InboundSink: Send + Sync {
    /// Journals `raw`, received over `transport` at `now`, and commits it. The same
    /// interchange (sender and UNB reference) again is stored once. Only after `Ok` may the
    /// transport acknowledge what it received.
    fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Inserted, StoreError>>;

    /// Journals `raw`, received in an AS4 message at `now`, as [`InboundSink::receive`]
    /// does, and in the same commit settles the message's dedup key as accepted and records
    /// its request as receipted ([`As4Arrival`]): one commit per received message (issue 16).
    /// [`Arrived::KeyTaken`] when another delivery accepted or claimed the key meanwhile;
    /// nothing is written then.
    fn receive_as4(
        &self,
        raw: Vec<u8>,
        arrival: As4Arrival,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Arrived, StoreError>>;
}

/// One interchange to send.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The outbox item it belongs to (a transport may key its own state on it: AS4 fixes the
    /// message id per item before the first attempt).
    pub outbox_id: &'a str,
    /// The recipient's market partner ID (UNB S003).
    pub partner: &'a str,
    /// Our UNB reference (DE0020).
    pub interchange_ref: &'a str,
    /// The interchange.
    pub bytes: &'a [u8],
    /// Now.
    pub now: DateTime<Utc>,
}

/// What a transport did with an interchange the partner's side took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Where it went, for the log (`mail <file name> to <address>`, a path, an AS4 message id).
    pub description: String,
}

/// Sending interchanges to partners: the file drop, e-mail and AS4 stand in for each other.
pub trait Outbound: Send + Sync + std::fmt::Debug {
    /// Which transport this is (recorded in the journal).
    fn kind(&self) -> Transport;

    /// Sends one interchange. `Ok` once the partner's side took it (the file is written, the
    /// SMTP server accepted the mail, the AS4 receipt is verified). A transient error is
    /// retried with the same bytes; a permanent one parks the outbox item.
    fn send<'a>(&'a self, interchange: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>>;
}

/// Why an interchange was not sent.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct SendError {
    transient: bool,
    /// The failure is this partner's alone (see [`SendError::is_partner_only`]).
    partner_only: bool,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl SendError {
    /// A failure that may pass when tried again later (a server down, a timeout, a lost
    /// race).
    pub fn transient(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SendError {
        SendError {
            transient: true,
            partner_only: false,
            source: source.into(),
        }
    }

    /// A failure that repeats until someone changes something (a refusal, a certificate
    /// problem, a configuration error).
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> SendError {
        SendError {
            transient: false,
            partner_only: false,
            source: source.into(),
        }
    }

    /// True when retrying the same interchange later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// The same error, marked as this partner's alone: its address or its data refused, its
    /// own server (an AS4 endpoint) down or refusing. The transport itself works, so the
    /// health report marks the partner, not the transport.
    pub fn for_this_partner_only(mut self) -> SendError {
        self.partner_only = true;
        self
    }

    /// True when the failure concerns this partner only; false (the default) when the
    /// transport itself failed (our server unreachable, TLS refused, our folder not
    /// writable) or it cannot be told.
    pub fn is_partner_only(&self) -> bool {
        self.partner_only
    }
}
