//! What each transport did last, kept in memory for `/health` and `/metrics` ([`Health`]).
//!
//! The transports' loops and send paths report here: the IMAP loop after each connect, fetch
//! and wait; the outbound worker after each send (SMTP, AS4, file-drop outbox); the file-drop
//! pickup after each scan of the inbox; every received interchange as it is journaled
//! ([`RecordingSink`], which also names the partner from the UNB sender). The API reads a
//! [`Snapshot`]. Nothing here touches the network, the disk or the database: an update is a
//! short lock on a map, cheap enough for every poll.
//!
//! Two levels:
//!
//! - a **part** ([`Part`]): our side of one transport (the IMAP mailbox, the SMTP server, the
//!   AS4 endpoint, AS4 sending, the file-drop inbox and outbox). It fails when the channel
//!   itself fails: the server unreachable, STARTTLS refused, the login refused, the folder not
//!   writable, journaling a received interchange failed;
//! - a **partner on a part**: the outcome of the last exchange with that market partner. A
//!   failure that concerns this partner alone (its address refused, its AS4 endpoint down or
//!   refusing, [`crate::transport::SendError::is_partner_only`]) marks the partner, not the
//!   part.
//!
//! A part or partner is *failing* when its last reported outcome was a failure, and stays so
//! until the next success. State is per process and starts empty at each start (`unused`
//! until the first attempt); several instances each report their own.
//!
//! Partner IDs come from partner data (a UNB sender): only a valid market partner ID (13
//! digits with a check digit) is kept, and at most [`MAX_PARTNERS`] of them, so a hostile
//! sender can neither inject text into a metric label nor grow the map without bound.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::{BoxFuture, InboundSink};
use crate::clock::Clock;
use crate::ids::MarketPartnerId;
use crate::store::{Arrived, As4Arrival, Inserted, StoreError, Transport};

/// Most partners tracked: far more than a supplier exchanges with, few enough to bound the
/// memory and the metric series a flood of made-up (but valid) sender IDs could cause.
pub const MAX_PARTNERS: usize = 1000;

/// Longest reason kept (characters): a server's answer or an error chain, cut beyond this.
pub const MAX_REASON_CHARS: usize = 500;

/// Our side of one transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The IMAP mailbox partners mail to (`[email.imap]`).
    Imap,
    /// The SMTP server our mail goes out through (`[email.smtp]`).
    Smtp,
    /// The AS4 endpoint partners POST to (`[as4] listen`).
    As4Receiver,
    /// AS4 messages we send (`[as4]`).
    As4Send,
    /// The file drop's inbox (`data_dir/inbox/`).
    FileDropInbox,
    /// The file drop's outbox (`data_dir/outbox/`).
    FileDropOutbox,
}

impl Part {
    /// Every part, in the order reports list them.
    pub const ALL: [Part; 6] = [
        Part::Imap,
        Part::Smtp,
        Part::As4Receiver,
        Part::As4Send,
        Part::FileDropInbox,
        Part::FileDropOutbox,
    ];

    /// The label in `/health` and in the metrics' `transport` label.
    pub fn label(self) -> &'static str {
        match self {
            Part::Imap => "imap",
            Part::Smtp => "smtp",
            Part::As4Receiver => "as4_receiver",
            Part::As4Send => "as4_send",
            Part::FileDropInbox => "file_drop_inbox",
            Part::FileDropOutbox => "file_drop_outbox",
        }
    }

    /// The part that receives over `transport` (`None` for the API and replay).
    pub fn receiving(transport: Transport) -> Option<Part> {
        match transport {
            Transport::Email => Some(Part::Imap),
            Transport::As4 => Some(Part::As4Receiver),
            Transport::File => Some(Part::FileDropInbox),
            _ => None,
        }
    }

    /// The part that sends over `transport` (`None` for the API and replay).
    pub fn sending(transport: Transport) -> Option<Part> {
        match transport {
            Transport::Email => Some(Part::Smtp),
            Transport::As4 => Some(Part::As4Send),
            Transport::File => Some(Part::FileDropOutbox),
            _ => None,
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A failure as reported: when and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// When it was reported.
    pub at: DateTime<Utc>,
    /// Why, in the words of the error (control characters replaced, at most
    /// [`MAX_REASON_CHARS`]).
    pub reason: String,
}

/// Where a part or a partner stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Nothing tried since the start.
    Unused,
    /// The last attempt worked.
    Up,
    /// The last attempt failed.
    Down,
}

impl State {
    /// `unused`, `up`, `down`.
    pub fn label(self) -> &'static str {
        match self {
            State::Unused => "unused",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// The record of one part, or of one partner on one part.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// When the last attempt worked.
    pub last_success: Option<DateTime<Utc>>,
    /// The last failure.
    pub last_failure: Option<Failure>,
    /// Failures since the start.
    pub failures: u64,
    /// Whether the last reported outcome was a failure.
    failing: bool,
}

impl Status {
    /// Up, down, or unused.
    pub fn state(&self) -> State {
        match (
            self.failing,
            self.last_success.is_some() || self.last_failure.is_some(),
        ) {
            (true, _) => State::Down,
            (false, true) => State::Up,
            (false, false) => State::Unused,
        }
    }

    fn succeed(&mut self, now: DateTime<Utc>) {
        self.last_success = Some(now);
        self.failing = false;
    }

    fn fail(&mut self, reason: &str, now: DateTime<Utc>) {
        self.last_failure = Some(Failure {
            at: now,
            reason: reason.to_string(),
        });
        self.failures += 1;
        self.failing = true;
    }
}

/// One partner on one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerStatus {
    /// The market partner.
    pub partner: MarketPartnerId,
    /// The part.
    pub part: Part,
    /// Its record.
    pub status: Status,
}

/// Everything at one moment, for a report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The parts in use (configured or reported), in [`Part::ALL`] order.
    pub parts: Vec<(Part, Status)>,
    /// The partners, by ID and part.
    pub partners: Vec<PartnerStatus>,
    /// Partner reports not kept because [`MAX_PARTNERS`] were tracked already.
    pub partners_dropped: u64,
}

impl Snapshot {
    /// True when a part or a partner is failing.
    pub fn is_degraded(&self) -> bool {
        self.parts.iter().any(|(_, s)| s.state() == State::Down)
            || self
                .partners
                .iter()
                .any(|p| p.status.state() == State::Down)
    }
}

#[derive(Debug, Default)]
struct Inner {
    parts: BTreeMap<Part, Status>,
    partners: BTreeMap<(MarketPartnerId, Part), Status>,
    /// The partners of `partners`, counted against [`MAX_PARTNERS`].
    partner_ids: BTreeSet<MarketPartnerId>,
    partners_dropped: u64,
}

/// The registry: cheap to clone (one `Arc`), shared by the loops that report and the API that
/// reads.
#[derive(Debug, Clone, Default)]
pub struct Health {
    inner: Arc<Mutex<Inner>>,
}

impl Health {
    /// An empty registry.
    pub fn new() -> Health {
        Health::default()
    }

    /// Lists `part` as in use (configured), `unused` until its first attempt.
    pub fn use_part(&self, part: Part) {
        self.with(|inner| {
            inner.parts.entry(part).or_default();
        });
    }

    /// `part` worked (for `partner`, when given and a market partner ID).
    pub fn succeeded(&self, part: Part, partner: Option<&str>, now: DateTime<Utc>) {
        self.with(|inner| {
            inner.parts.entry(part).or_default().succeed(now);
            if let Some(status) = partner.and_then(|p| inner.partner(p, part)) {
                status.succeed(now);
            }
        });
    }

    /// `part` failed (while dealing with `partner`, when given: it is marked too).
    pub fn failed(
        &self,
        part: Part,
        partner: Option<&str>,
        reason: &dyn fmt::Display,
        now: DateTime<Utc>,
    ) {
        let reason = clean(reason);
        self.with(|inner| {
            inner.parts.entry(part).or_default().fail(&reason, now);
            if let Some(status) = partner.and_then(|p| inner.partner(p, part)) {
                status.fail(&reason, now);
            }
        });
    }

    /// An exchange with `partner` on `part` failed for a reason of that partner alone: the
    /// partner is marked, the part is not (it is listed as in use).
    pub fn partner_failed(
        &self,
        part: Part,
        partner: &str,
        reason: &dyn fmt::Display,
        now: DateTime<Utc>,
    ) {
        let reason = clean(reason);
        self.with(|inner| {
            inner.parts.entry(part).or_default();
            if let Some(status) = inner.partner(partner, part) {
                status.fail(&reason, now);
            }
        });
    }

    /// Everything as it is now.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|inner| Snapshot {
            parts: inner.parts.iter().map(|(p, s)| (*p, s.clone())).collect(),
            partners: inner
                .partners
                .iter()
                .map(|((partner, part), status)| PartnerStatus {
                    partner: partner.clone(),
                    part: *part,
                    status: status.clone(),
                })
                .collect(),
            partners_dropped: inner.partners_dropped,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain data behind: keep using it.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut inner)
    }
}

impl Inner {
    /// The record of `partner` on `part`, made on first use; `None` for what is no market
    /// partner ID, and for a new partner beyond [`MAX_PARTNERS`].
    fn partner(&mut self, partner: &str, part: Part) -> Option<&mut Status> {
        let id: MarketPartnerId = partner.parse().ok()?;
        if !self.partner_ids.contains(&id) {
            if self.partner_ids.len() >= MAX_PARTNERS {
                self.partners_dropped += 1;
                return None;
            }
            self.partner_ids.insert(id.clone());
        }
        Some(self.partners.entry((id, part)).or_default())
    }
}

/// One part's reporter for a loop that has no time of its own (the IMAP loop): a [`Health`],
/// the part, and the clock that dates the reports.
#[derive(Debug, Clone)]
pub struct Reporter {
    health: Health,
    part: Part,
    clock: Clock,
}

impl Reporter {
    /// Reports `part` to `health` (listed as in use from now on), dated by `clock`.
    pub fn new(health: Health, part: Part, clock: Clock) -> Reporter {
        health.use_part(part);
        Reporter {
            health,
            part,
            clock,
        }
    }

    /// The part worked.
    pub fn succeeded(&self) {
        self.health.succeeded(self.part, None, self.clock.now());
    }

    /// The part failed.
    pub fn failed(&self, reason: &dyn fmt::Display) {
        self.health
            .failed(self.part, None, reason, self.clock.now());
    }

    /// The registry reported to.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

/// A reason as kept: one line, at most [`MAX_REASON_CHARS`] characters.
fn clean(reason: &dyn fmt::Display) -> String {
    let text = reason.to_string();
    let mut out: String = text
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > MAX_REASON_CHARS {
        out.push('…');
    }
    out
}

/// An [`InboundSink`] that reports every interchange it journals: the receiving part and the
/// partner named as UNB sender worked; a journal that fails is the part's failure (what it
/// received cannot be acknowledged).
#[derive(Clone)]
pub struct RecordingSink {
    sink: Arc<dyn InboundSink>,
    health: Health,
}

impl fmt::Debug for RecordingSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingSink").finish_non_exhaustive()
    }
}

impl RecordingSink {
    /// Reports what `sink` journals to `health`.
    pub fn new(sink: Arc<dyn InboundSink>, health: Health) -> RecordingSink {
        RecordingSink { sink, health }
    }
}

impl InboundSink for RecordingSink {
    fn receive(
        &self,
        raw: Vec<u8>,
        transport: Transport,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Inserted, StoreError>> {
        Box::pin(async move {
            // Only the UNB is read (its sender), and only for the report.
            let sender = crate::acks::read_envelope(&raw).map(|e| e.sender.id);
            let result = self.sink.receive(raw, transport, now).await;
            if let Some(part) = Part::receiving(transport) {
                match &result {
                    Ok(_) => self.health.succeeded(part, sender.as_deref(), now),
                    Err(e) => self.health.failed(
                        part,
                        None,
                        &format_args!("a received interchange cannot be journaled: {e}"),
                        now,
                    ),
                }
            }
            result
        })
    }

    fn receive_as4(
        &self,
        raw: Vec<u8>,
        arrival: As4Arrival,
        now: DateTime<Utc>,
    ) -> BoxFuture<'_, Result<Arrived, StoreError>> {
        Box::pin(async move {
            let sender = arrival.sender.clone();
            let result = self.sink.receive_as4(raw, arrival, now).await;
            match &result {
                Ok(_) => self
                    .health
                    .succeeded(Part::As4Receiver, Some(sender.as_str()), now),
                Err(e) => self.health.failed(
                    Part::As4Receiver,
                    None,
                    &format_args!("a received interchange cannot be journaled: {e}"),
                    now,
                ),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn a_part_is_down_from_its_failure_until_its_next_success() {
        let health = Health::new();
        health.use_part(Part::Imap);
        assert_eq!(health.snapshot().parts[0].1.state(), State::Unused);
        assert!(!health.snapshot().is_degraded());
        health.failed(Part::Imap, None, &"connection refused", at(10));
        let s = health.snapshot();
        assert_eq!(s.parts[0].1.state(), State::Down);
        assert_eq!(s.parts[0].1.failures, 1);
        assert!(s.is_degraded());
        health.succeeded(Part::Imap, None, at(10));
        let s = health.snapshot();
        assert_eq!(s.parts[0].1.state(), State::Up);
        assert_eq!(s.parts[0].1.last_failure.as_ref().unwrap().at, at(10));
        assert!(!s.is_degraded());
    }

    #[test]
    fn a_partner_only_failure_leaves_the_part_up() {
        let health = Health::new();
        health.succeeded(Part::Smtp, Some("9900000000011"), at(1));
        health.partner_failed(Part::Smtp, "9900000000029", &"550 5.1.1 unknown", at(2));
        let s = health.snapshot();
        assert_eq!(s.parts, vec![(Part::Smtp, s.parts[0].1.clone())]);
        assert_eq!(s.parts[0].1.state(), State::Up);
        let states: Vec<_> = s
            .partners
            .iter()
            .map(|p| (p.partner.as_str(), p.status.state()))
            .collect();
        assert_eq!(
            states,
            vec![("9900000000011", State::Up), ("9900000000029", State::Down)]
        );
        assert!(s.is_degraded());
    }

    #[test]
    fn regression_hostile_partner_ids_never_become_labels_and_the_map_is_bounded() {
        let health = Health::new();
        for bad in ["99000000000\"}", "9900000000012", "x\ny", ""] {
            health.succeeded(Part::FileDropInbox, Some(bad), at(1));
        }
        assert!(health.snapshot().partners.is_empty());
        // Valid IDs (GS1 check digit) beyond the bound are counted, not kept.
        let valid = |n: u64| {
            let payload = format!("{n:012}");
            let digits: Vec<u32> = payload.bytes().map(|b| u32::from(b - b'0')).collect();
            format!("{payload}{}", crate::ids::gs1_check_digit(&digits))
        };
        for n in 0..(MAX_PARTNERS as u64 + 5) {
            health.succeeded(Part::FileDropInbox, Some(&valid(n)), at(1));
        }
        let s = health.snapshot();
        assert_eq!(s.partners.len(), MAX_PARTNERS);
        assert_eq!(s.partners_dropped, 5);
        // A known partner is still reported on another part.
        health.failed(Part::FileDropOutbox, Some(&valid(0)), &"disk full", at(2));
        assert_eq!(health.snapshot().partners.len(), MAX_PARTNERS + 1);
    }

    #[test]
    fn reasons_are_one_line_and_bounded() {
        let health = Health::new();
        let long = format!("line1\nline2 {}", "x".repeat(2000));
        health.failed(Part::Smtp, None, &long, at(1));
        let reason = health.snapshot().parts[0]
            .1
            .last_failure
            .clone()
            .unwrap()
            .reason;
        assert!(!reason.contains('\n'));
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 1);
    }
}
