//! The AS4 receiver: the handling of one received request ([`handle_request`]): the gzip-bomb
//! guard ([`super::size_guard`]), asx-rs's verification and our checks, then the interchange
//! handed to the gateway's [`InboundSink`] together with the raw request and the message's
//! dedup key — one commit — and only then does the signed receipt go back. A refused request
//! is stored raw with its answer before the answer goes out. Every refusal goes out in one
//! shape, ours ([`super::signal`]): an ebMS error signal with the reason, HTTP 200 (503: send
//! it again).
//!
//! Commits per received message (issue 16): before, six (the raw request, the dedup claim,
//! the journal, the evidence, the dedup accept, the answer); now one for the raw request,
//! the dedup key and the journal together (shared with other messages received at the same
//! moment, [`crate::worker::receive::Journal`]) and one for the evidence of the receipt
//! (shared likewise, [`super::persist::EvidenceStore`]).

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt, Full};

use super::https::serve_https;
use super::persist::{Dedup, DuplicateSeen, HeldKey, InFlightKeys};
use super::setup::{As4Runtime, DEDUP_LEASE};
use super::signal::EbmsError;
use super::size_guard::{self, DecryptionKey, Verdict};
use super::{
    accepted_from, ebms_error_code, ebms_error_description, is_receipt, As4Endpoint, MessageSink,
    ReceivedMessage, Refusal,
};
use crate::clock::Clock;
use crate::ids::MarketPartnerId;
use crate::store::{Arrived, As4Answer, As4Arrival, As4IncomingRequest, Inserted, Store};
use crate::transport::smpki::PeerIdentity;
use crate::transport::InboundSink;

/// The AS4 endpoint's sink for one request: the interchange goes to the gateway's
/// [`InboundSink`] together with the request and the message's dedup key (one commit); the
/// message id and journal item are kept for the answer. A message whose id was accepted
/// before ([`DuplicateSeen`]) is compared with what was accepted instead.
struct RequestSink {
    journal: Arc<dyn InboundSink>,
    store: Store,
    clock: Clock,
    /// The request as received, recorded with the interchange.
    request: As4IncomingRequest,
    /// The key this delivery claimed (in this process).
    held: Arc<HeldKey>,
    /// Set by the dedup store when this message's id was accepted before.
    duplicate: Arc<DuplicateSeen>,
    refusal: std::sync::Mutex<Option<Refusal>>,
    /// The message id and the journal item of the delivered interchange, once the request is
    /// recorded with them.
    delivered: std::sync::Mutex<Option<(String, String)>>,
    /// Set when another delivery (another instance) accepted the key first.
    key_taken: std::sync::atomic::AtomicBool,
}

impl MessageSink for RequestSink {
    fn refused(&self, refusal: &Refusal) {
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(refusal.clone());
    }

    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + '_>> {
        Box::pin(async move {
            if self.duplicate.is_set() {
                return self.delivered_again(&message).await;
            }
            // The interchange must come from the party that signed the AS4 message (as for
            // mail: the signer stands for the UNB sender). Only the UNB is read here; the
            // interchange is parsed once, when it is journaled.
            let sender = crate::acks::read_envelope(&message.payload).map(|e| e.sender.id);
            if let Some(sender) = &sender {
                if sender != message.from.as_str() {
                    return Err(Refusal::Permanent(format!(
                        "the interchange's sender (UNB) is {sender}, the AS4 message comes from {}",
                        message.from
                    )));
                }
            }
            let dedup_key = self
                .held
                .key()
                .ok_or_else(|| Refusal::Retry("the message's key is not claimed".into()))?;
            let signed = serde_json::to_string(&message.signed)
                .map_err(|e| Refusal::Retry(format!("the signed parts: {e}")))?;
            let arrival = As4Arrival {
                request: self.request.clone(),
                dedup_key,
                message_id: message.message_id.clone(),
                sender: message.from.to_string(),
                signed,
            };
            let arrived = self
                .journal
                .receive_as4(message.payload, arrival, self.clock.now())
                .await
                .map_err(|e| Refusal::Retry(format!("journaling failed: {e}")))?;
            let inserted = match arrived {
                Arrived::Journaled(inserted) => inserted,
                Arrived::KeyTaken => {
                    self.key_taken
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(Refusal::Retry(format!(
                        "message {} was accepted on another connection meanwhile",
                        message.message_id
                    )));
                }
            };
            if let Inserted::Duplicate(id) = &inserted {
                tracing::info!(journal = %id, message = %message.message_id, "interchange delivered twice: journaled once");
            }
            *self
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((
                message.message_id.clone(),
                inserted.journal_id().to_string(),
            ));
            tracing::info!(message = %message.message_id, from = %message.from, journal = %inserted.journal_id(), "AS4 message journaled");
            Ok(())
        })
    }
}

impl RequestSink {
    /// A message whose id we accepted before (issue 15, AS4 finding 1). The same content —
    /// every digest the sender signed equal to those of the message we accepted, so the same
    /// payload under the same `eb:Messaging` (same timestamp) — is the sender's retry (its
    /// receipt got lost) and gets a receipt again: asx-rs signs it over those digests, which
    /// are what we hold. Anything else is refused with an ebMS error and never receipted: a
    /// receipt is signed evidence, and we hold only the first message. phase4 answers every
    /// duplicate with an error (`AS4RequestHandler`: `EBMS:0004` until 4.4, its own
    /// `EBMS:4001 DuplicateDetected` since 4.5); `EBMS:0004` is the code every AS4 client
    /// reads. Nothing is journaled either way.
    async fn delivered_again(&self, message: &ReceivedMessage) -> Result<(), Refusal> {
        let id = &message.message_id;
        let from = message.from.as_str();
        let held = async {
            let mut conn = self.store.conn().await?;
            let records = conn.as4_evidence(id).await?;
            if let Some(held) = records.iter().find_map(|r| accepted_from(r, from)) {
                return Ok(Some(held));
            }
            // No evidence: the process stopped after the message was journaled and before
            // its receipt's evidence was written (so no receipt went out). What the sender
            // signed is kept with the request.
            Ok::<_, crate::store::StoreError>(
                conn.as4_signed(id, from)
                    .await?
                    .and_then(|json| serde_json::from_str::<Vec<super::SignedPart>>(&json).ok()),
            )
        }
        .await
        .map_err(|e| Refusal::Retry(format!("reading the evidence of message {id}: {e}")))?;
        match held {
            Some(held) if !held.is_empty() && held == message.signed => {
                tracing::info!(message = %id, from = %message.from, "AS4 message received again: receipted again, not journaled");
                Ok(())
            }
            Some(_) => Err(Refusal::Permanent(format!(
                "message {id} was received before with other content (its signed digests \
                 differ: another payload or another eb:Timestamp); the first one is kept and \
                 this one is dropped: send new content under a new message id"
            ))),
            None => Err(Refusal::Permanent(format!(
                "message {id} was received before, and what was received then is not on \
                 record here: it is not receipted again"
            ))),
        }
    }
}

fn plain(status: http::StatusCode, text: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `error` as the HTTP response, with a message id of our own for the signal.
fn ebms_response(
    endpoint: &As4Endpoint,
    error: &EbmsError,
    now: DateTime<Utc>,
) -> http::Response<Full<Bytes>> {
    let id = crate::ids::new_id("error", now);
    let id = format!("{}@{}", id.trim_start_matches("error_"), endpoint.own_id());
    let mut response = http::Response::new(Full::new(Bytes::from(error.envelope(&id, now))));
    *response.status_mut() = error.http_status();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/soap+xml"),
    );
    response
}

/// A turn on one of the cores for our own CPU work on a request (the gzip-bomb guard's
/// decryption and counted inflation), which runs on tokio's blocking pool: as many at once as
/// the machine has cores, so that a burst of large requests queues here instead of starting
/// hundreds of blocking threads. asx-rs's verification, decryption and decompression run on
/// the blocking pool too, behind its own process-wide limit (twice the cores, at least 4);
/// its receipt signature (one ECDSA sign, about 0.5 ms) runs inline.
async fn cpu_permit() -> Option<tokio::sync::SemaphorePermit<'static>> {
    static CORES: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    CORES
        .get_or_init(|| {
            tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )
        })
        .acquire()
        .await
        .ok()
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    /// More than the limit.
    #[error("the body is larger than max_message_bytes")]
    TooLarge,
    /// The connection failed or the body's framing was broken.
    #[error("the body could not be read: {0}")]
    Broken(String),
}

/// The request body, at most `limit` bytes. A larger one is refused, but only after up to
/// `limit` more bytes were read and thrown away: a client still sending when the answer comes
/// and the connection closes sees "broken pipe", not our error signal (hyper's client reports
/// the failed write). Memory stays at `limit`.
async fn read_body<B>(body: B, limit: u64) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: std::fmt::Display,
{
    use bytes::{Buf, BufMut};
    let mut body = std::pin::pin!(body);
    let mut kept = bytes::BytesMut::new();
    let mut seen: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Broken(e.to_string()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let n = data.remaining() as u64;
        seen += n;
        if seen <= limit {
            kept.put(data);
        } else {
            data.advance(data.remaining());
            if !kept.is_empty() {
                kept = bytes::BytesMut::new();
            }
            if seen > limit.saturating_mul(2) {
                break;
            }
        }
    }
    if seen > limit {
        return Err(BodyError::TooLarge);
    }
    Ok(kept.freeze())
}

/// What answering AS4 requests needs: where interchanges are journaled, the store of the
/// raw request journal and the dedup claims, the clock, the endpoint, the size limit, our
/// decryption key for the gzip-bomb guard.
#[derive(Clone)]
pub struct Receiver {
    /// The gateway's inbound sink.
    pub journal: Arc<dyn InboundSink>,
    /// The store (raw requests, duplicate detection).
    pub store: Store,
    /// The clock.
    pub clock: Clock,
    /// The endpoint (asx-rs's verification and receipts).
    pub endpoint: As4Endpoint,
    /// `[as4] max_message_bytes`.
    pub max_message_bytes: u64,
    /// The key partners encrypt to, for [`size_guard::check`].
    pub decryption: DecryptionKey,
    /// The message keys deliveries in this process hold.
    pub in_flight: Arc<InFlightKeys>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// The `eb:MessageId` a request claims (the first `MessageId` element of its SOAP part),
/// unverified: only to name the message in an error signal and in the log.
fn claimed_message_id(raw: &[u8]) -> Option<String> {
    for at in memchr::memmem::find_iter(raw, b"MessageId>") {
        let open = raw[..at].iter().rposition(|b| *b == b'<')?;
        let name = &raw[open + 1..at];
        let qualified = name.is_empty()
            || (name.ends_with(b":")
                && name[..name.len() - 1]
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')));
        if !qualified {
            continue;
        }
        let start = at + "MessageId>".len();
        let end = start + memchr::memchr(b'<', raw.get(start..)?)?;
        let id = std::str::from_utf8(&raw[start..end]).ok()?.trim();
        return (!id.is_empty() && id.len() <= 256).then(|| unescape(id));
    }
    None
}

/// The five predefined XML entities resolved (what asx-rs's and a sender's XML escape).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The value of the first `name="…"` attribute of an AS4 response body, unescaped.
fn attribute(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let key = format!(" {name}=\"");
    let at = text.find(&key)? + key.len();
    let end = text[at..].find('"')?;
    Some(unescape(&text[at..at + end]))
}

/// How a request is refused, if it is: the error signal sent, the outcome and the reason
/// recorded for it (`as4_inbox`). The reason recorded may say more than the signal (a
/// retryable refusal's cause stays ours).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refused {
    error: EbmsError,
    outcome: &'static str,
    reason: String,
}

impl Refused {
    fn of(error: EbmsError) -> Refused {
        Refused {
            reason: error.detail.clone(),
            outcome: "refused",
            error,
        }
    }

    /// The row of `as4_inbox` for it, answered with `status`.
    fn answer(&self, status: http::StatusCode) -> As4Answer {
        As4Answer {
            outcome: self.outcome,
            http_status: status.as_u16(),
            ebms_code: Some(self.error.code.clone()),
            reason: Some(self.reason.clone()),
            delivered: None,
        }
    }
}

/// What asx-rs answered (`status`, `body`), with our own refusal of the message if there was
/// one (`ours`), made into our refusal; `None` for a receipt, which goes out as it is.
/// `claimed` names the message where asx-rs's answer does not.
fn refusal_of(
    status: http::StatusCode,
    body: &[u8],
    ours: Option<&Refusal>,
    claimed: Option<&str>,
) -> Option<Refused> {
    if status == http::StatusCode::OK && is_receipt(body) {
        return None;
    }
    let ref_to = attribute(body, "refToMessageInError").or_else(|| claimed.map(str::to_string));
    let named = ref_to.as_deref().unwrap_or("this message");
    Some(match ours {
        Some(Refusal::Retry(cause)) => Refused {
            error: EbmsError::retry_later(
                format!("{named} could not be taken now; send it again later"),
                ref_to,
            ),
            outcome: "refused",
            reason: cause.clone(),
        },
        Some(Refusal::Permanent(reason)) => {
            Refused::of(EbmsError::refused("EBMS:0004", reason.clone(), ref_to))
        }
        // asx-rs: the same message is being handled by another delivery (its claim).
        None if status == http::StatusCode::SERVICE_UNAVAILABLE && body.is_empty() => Refused {
            error: EbmsError::retry_later(
                format!("{named} is being received on another connection; send it again later"),
                ref_to,
            ),
            outcome: "busy",
            reason: "the same message is being received on another connection".into(),
        },
        // asx-rs: our dedup store, audit sink or signer failed.
        None if status.is_server_error() => Refused {
            error: EbmsError::retry_later(
                format!("{named} could not be processed now; send it again later"),
                ref_to,
            ),
            outcome: "refused",
            reason: format!(
                "asx-rs answered HTTP {}: {}",
                status.as_u16(),
                ebms_error_description(body).unwrap_or_default()
            ),
        },
        // asx-rs refused the message (signature, certificate, decryption, policy, …): its
        // code and its description as the detail (it words them for the sender; a decryption
        // failure is always just "decryption failed").
        None => Refused::of(EbmsError::refused(
            &ebms_error_code(body).unwrap_or_else(|| "EBMS:0004".into()),
            ebms_error_description(body)
                .map(|d| unescape(&d))
                .unwrap_or_else(|| format!("refused (HTTP {})", status.as_u16())),
            ref_to,
        )),
    })
}

/// Answers one AS4 request that came over a TLS connection whose client certificate names
/// `peer` (its market partner ID; `peer_label` adds the address for the journal).
///
/// Order: the body is read (at most `[as4] max_message_bytes`); the gzip-bomb guard; asx-rs
/// verifies (signature, chain, OU, revocation, decryption, timestamp, duplicate); our checks;
/// the interchange is journaled with the raw request and the message's dedup key, in one
/// commit; then the signed receipt (its evidence committed first). A refused request is
/// stored raw with its answer, and committed, before that answer goes out (else 503: nothing
/// acknowledged). Every refusal is our error signal ([`super::signal`]).
pub async fn handle_request<B>(
    receiver: &Receiver,
    peer: Option<MarketPartnerId>,
    peer_label: String,
    request: http::Request<B>,
) -> http::Response<Full<Bytes>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error:
        std::fmt::Display + Send + Sync + 'static + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Receiver {
        journal,
        store,
        clock,
        endpoint,
        max_message_bytes,
        decryption,
        in_flight,
    } = receiver.clone();
    let (parts, body) = request.into_parts();
    if parts.method != http::Method::POST {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "AS4 messages are POSTed\n",
        );
    }
    let raw = match read_body(body, max_message_bytes).await {
        Ok(raw) => raw,
        Err(e) => {
            tracing::warn!(peer = %peer_label, error = %e, "AS4 request not read");
            let error = match e {
                BodyError::TooLarge => EbmsError::refused(
                    "EBMS:0004",
                    format!(
                        "the request has more than {max_message_bytes} bytes, the most this \
                         gateway reads (max_message_bytes); it was not read"
                    ),
                    None,
                ),
                BodyError::Broken(_) => EbmsError::retry_later(
                    "the request body could not be read; send it again",
                    None,
                ),
            };
            return ebms_response(&endpoint, &error, clock.now());
        }
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let claimed = claimed_message_id(&raw);
    let now = clock.now();
    let request = As4IncomingRequest {
        id: crate::ids::new_id("as4in", now),
        peer: peer_label.clone(),
        content_type: content_type.clone(),
        raw: raw.clone(),
        received_at: now,
    };
    let request_id = request.id.clone();

    // The gzip-bomb guard, before asx-rs inflates anything (issue 15, AS4 finding 4).
    let max_payload = endpoint.max_payload_bytes();
    let verdict = if size_guard::cannot_exceed(raw.len(), max_payload) {
        // Most requests: no part is big enough to reach the limit, whatever it holds.
        Verdict::Within
    } else {
        let (raw, content_type) = (raw.clone(), content_type.clone());
        let _core = cpu_permit().await;
        tokio::task::spawn_blocking(move || {
            size_guard::check(&raw, &content_type, &decryption, max_payload)
        })
        .await
        .unwrap_or(Verdict::Unread("the guard's task failed"))
    };
    let (response, answer, recorded) = match verdict {
        Verdict::TooLarge { content_id } => {
            let refused = Refused::of(EbmsError::refused(
                "EBMS:0004",
                format!(
                    "the payload cid:{content_id} has more than {max_payload} bytes after \
                     decompression, the most this gateway accepts (max_payload_bytes); \
                     decompression stopped there"
                ),
                claimed.clone(),
            ));
            let response = ebms_response(&endpoint, &refused.error, clock.now());
            let answer = refused.answer(response.status());
            (response, answer, false)
        }
        verdict => {
            if let Verdict::Unread(why) = verdict {
                tracing::warn!(request = %request_id, why, "gzip-bomb guard could not read the request: left to asx-rs (which inflates up to 128 MiB)");
            }
            verify_and_deliver(
                &endpoint,
                &store,
                &clock,
                journal,
                &in_flight,
                peer,
                parts,
                request.clone(),
                claimed.as_deref(),
            )
            .await
        }
    };
    if answer.outcome != "receipted" {
        tracing::warn!(peer = %peer_label, request = %request_id, code = ?answer.ebms_code, reason = ?answer.reason, "AS4 request refused");
    }
    let now = clock.now();
    if recorded {
        // Journaled with the request as receipted; only a failure after that (the receipt
        // or its evidence) changes the answer recorded.
        if answer.outcome != "receipted" {
            if let Err(e) = async {
                store
                    .conn()
                    .await?
                    .finish_as4_request(&request_id, &answer, now)
                    .await
            }
            .await
            {
                tracing::warn!(request = %request_id, error = %e, "AS4 answer not recorded");
            }
        }
        return response;
    }
    // Not delivered: the raw request is stored with its answer before the answer goes out.
    match async {
        store
            .conn()
            .await?
            .insert_as4_request_answered(&request, &answer, now)
            .await
    }
    .await
    {
        Ok(()) => response,
        Err(e) => {
            tracing::error!(request = %request_id, error = %e, "AS4 request not journaled: answered 503");
            let error = EbmsError::retry_later(
                "the request could not be stored; send it again later",
                claimed,
            );
            ebms_response(&endpoint, &error, clock.now())
        }
    }
}

/// asx-rs's verification and our checks and delivery for one request: the response, the
/// answer to record, and whether the request is recorded already (journaled with its
/// interchange). A receipt goes out as asx-rs made it; anything else becomes our refusal
/// ([`refusal_of`]).
#[allow(clippy::too_many_arguments)]
async fn verify_and_deliver(
    endpoint: &As4Endpoint,
    store: &Store,
    clock: &Clock,
    journal: Arc<dyn InboundSink>,
    in_flight: &Arc<InFlightKeys>,
    peer: Option<MarketPartnerId>,
    parts: http::request::Parts,
    request: As4IncomingRequest,
    claimed: Option<&str>,
) -> (http::Response<Full<Bytes>>, As4Answer, bool) {
    let duplicate = Arc::new(DuplicateSeen::default());
    let held = Arc::new(HeldKey::new(in_flight.clone()));
    let raw = request.raw.clone();
    let sink = Arc::new(RequestSink {
        journal,
        store: store.clone(),
        clock: clock.clone(),
        request,
        held: held.clone(),
        duplicate: duplicate.clone(),
        refusal: std::sync::Mutex::new(None),
        delivered: std::sync::Mutex::new(None),
        key_taken: std::sync::atomic::AtomicBool::new(false),
    });
    let service = endpoint.inbound(
        Dedup::new(store.clone(), DEDUP_LEASE, clock.clone())
            .handing_duplicates_to(duplicate)
            .claiming_in_process(held),
        peer.map(|p| p.as_str().to_string()),
        sink.clone(),
    );
    let response = service
        .call(http::Request::from_parts(parts, Full::new(raw)))
        .await;
    let status = response.status();
    let body = response
        .body()
        .clone()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let ours = sink
        .refusal
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let delivered = sink
        .delivered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let recorded = delivered.is_some();
    match refusal_of(status, &body, ours.as_ref(), claimed) {
        None => {
            let answer = As4Answer {
                outcome: "receipted",
                http_status: status.as_u16(),
                ebms_code: None,
                reason: None,
                delivered,
            };
            (response, answer, recorded)
        }
        Some(mut refused) => {
            if sink.key_taken.load(std::sync::atomic::Ordering::SeqCst) {
                // As asx-rs's own "in flight" answer: the sender's retry is a duplicate.
                let named = claimed.unwrap_or("this message");
                refused = Refused {
                    error: EbmsError::retry_later(
                        format!(
                            "{named} is being received on another connection; send it again later"
                        ),
                        refused.error.ref_to.clone(),
                    ),
                    outcome: "busy",
                    reason: "the same message was accepted on another connection meanwhile".into(),
                };
            }
            let response = ebms_response(endpoint, &refused.error, clock.now());
            let mut answer = refused.answer(response.status());
            answer.delivered = delivered;
            (response, answer, recorded)
        }
    }
}

impl As4Runtime {
    /// Serves the AS4 receiver on `listener` until `shutdown` completes: mutual TLS (the
    /// client certificate chained to the SM-PKI anchors, named as the SM-PKI names market
    /// partners, not revoked), then [`handle_request`] for every request on `[as4] path`.
    pub async fn serve(
        self,
        journal: Arc<dyn InboundSink>,
        store: Store,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let runtime = Arc::new(self);
        let in_flight = Arc::new(InFlightKeys::default());
        let acceptor = runtime.acceptor.clone();
        let crl = runtime.crl.clone();
        serve_https(
            listener,
            acceptor,
            crl,
            move |peer: PeerIdentity| As4Service {
                path: runtime.config.path.clone(),
                receiver: Receiver {
                    journal: journal.clone(),
                    store: store.clone(),
                    clock: runtime.clock.clone(),
                    endpoint: runtime.endpoint.clone(),
                    max_message_bytes: runtime.config.max_message_bytes,
                    decryption: runtime.decryption.clone(),
                    in_flight: in_flight.clone(),
                },
                peer,
            },
            shutdown,
        )
        .await;
    }
}

/// The HTTP service of one TLS connection.
struct As4Service {
    path: String,
    receiver: Receiver,
    peer: PeerIdentity,
}

impl tower_service::Service<http::Request<hyper::body::Incoming>> for As4Service {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let path = self.path.clone();
        let receiver = self.receiver.clone();
        let peer = self.peer.clone();
        Box::pin(async move {
            if request.uri().path() != path {
                return Ok(plain(http::StatusCode::NOT_FOUND, "no AS4 endpoint here\n"));
            }
            let label = format!("{} ({})", peer.market_partner_id, peer.subject);
            Ok(handle_request(
                &receiver,
                Some(peer.market_partner_id.clone()),
                label,
                request,
            )
            .await)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    const ASX_ERROR: &[u8] = b"<S12:Envelope><S12:Header><eb:Messaging><eb:SignalMessage>\
        <eb:Error errorCode=\"EBMS:0101\" severity=\"failure\" shortDescription=\"FailedAuthentication\" \
        category=\"Processing\" origin=\"ebMS\" refToMessageInError=\"m&amp;1@x\"><eb:Description \
        xml:lang=\"en\">the signer&apos;s subject (OU) does not carry the claimed MP-ID</eb:Description>\
        </eb:Error></eb:SignalMessage></eb:Messaging></S12:Header><S12:Body/></S12:Envelope>";

    #[test]
    fn a_receipt_goes_out_as_it_is() {
        let receipt = b"<eb:SignalMessage><eb:Receipt/></eb:SignalMessage>";
        assert_eq!(refusal_of(StatusCode::OK, receipt, None, Some("m1")), None);
    }

    #[test]
    fn asx_rs_refusals_keep_their_code_and_reason_and_go_out_with_http_200() {
        let r = refusal_of(StatusCode::BAD_REQUEST, ASX_ERROR, None, Some("other")).unwrap();
        assert_eq!(r.error.code, "EBMS:0101");
        assert_eq!(r.error.short, "FailedAuthentication");
        assert_eq!(r.error.ref_to.as_deref(), Some("m&1@x"));
        assert_eq!(
            r.error.detail,
            "the signer's subject (OU) does not carry the claimed MP-ID"
        );
        assert_eq!(r.error.http_status(), StatusCode::OK);
        assert_eq!(r.outcome, "refused");
    }

    #[test]
    fn our_permanent_refusal_is_ebms_0004_with_its_reason_as_the_detail() {
        let asx = b"<eb:Error errorCode=\"EBMS:0004\" refToMessageInError=\"m1\"/>";
        let ours = Refusal::Permanent("9900000000029 is not an AS4 partner of this gateway".into());
        let r = refusal_of(StatusCode::OK, asx, Some(&ours), None).unwrap();
        assert_eq!(r.error.code, "EBMS:0004");
        assert_eq!(
            r.error.detail,
            "9900000000029 is not an AS4 partner of this gateway"
        );
        assert_eq!(r.error.ref_to.as_deref(), Some("m1"));
        assert_eq!(r.error.http_status(), StatusCode::OK);
    }

    #[test]
    fn retry_later_says_nothing_of_its_cause_and_goes_out_with_http_503() {
        let asx = b"<eb:Error errorCode=\"EBMS:0202\" refToMessageInError=\"m1\"/>";
        let ours = Refusal::Retry("journaling failed: database at db.internal:5432 down".into());
        let r = refusal_of(StatusCode::OK, asx, Some(&ours), None).unwrap();
        assert_eq!(r.error.code, "EBMS:0202");
        assert_eq!(r.error.http_status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            !r.error.detail.contains("db.internal"),
            "{}",
            r.error.detail
        );
        assert!(
            r.reason.contains("db.internal"),
            "the cause stays in our record"
        );

        // The same message in flight elsewhere (asx-rs: an empty 503).
        let r = refusal_of(StatusCode::SERVICE_UNAVAILABLE, b"", None, Some("m2")).unwrap();
        assert_eq!((r.error.code.as_str(), r.outcome), ("EBMS:0202", "busy"));
        assert_eq!(r.error.ref_to.as_deref(), Some("m2"));
        // A failure of our store behind asx-rs (its HTTP 500 with EBMS:0004).
        let asx = b"<eb:Error errorCode=\"EBMS:0004\"><eb:Description>the message could not be \
                    processed; retry later</eb:Description></eb:Error>";
        let r = refusal_of(StatusCode::INTERNAL_SERVER_ERROR, asx, None, None).unwrap();
        assert_eq!(r.error.code, "EBMS:0202");
        assert_eq!(r.error.http_status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_read_on_and_refused_one_within_is_kept() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let pulled = Arc::new(AtomicUsize::new(0));
        let chunks = |n: usize| {
            let pulled = pulled.clone();
            let frames = (0..n).map(move |_| {
                pulled.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(Bytes::from(vec![
                    7u8;
                    1000
                ])))
            });
            http_body_util::StreamBody::new(futures_util::stream::iter(frames))
        };
        assert_eq!(read_body(chunks(3), 3000).await.unwrap().len(), 3000);
        assert!(matches!(
            read_body(chunks(5), 3000).await,
            Err(BodyError::TooLarge)
        ));
        // Far over the limit: read on up to twice the limit, then no further.
        pulled.store(0, Ordering::SeqCst);
        assert!(matches!(
            read_body(chunks(100_000), 3000).await,
            Err(BodyError::TooLarge)
        ));
        assert_eq!(pulled.load(Ordering::SeqCst), 7);
    }

    #[test]
    fn the_claimed_message_id_is_the_first_message_id_element() {
        let soap = b"--b\r\n\r\n<S12:Envelope><eb:MessageInfo><eb:Timestamp>t</eb:Timestamp>\
                     <eb:MessageId> m1@9900000000011 </eb:MessageId><eb:RefToMessageId>x\
                     </eb:RefToMessageId></eb:MessageInfo>";
        assert_eq!(
            claimed_message_id(soap).as_deref(),
            Some("m1@9900000000011")
        );
        assert_eq!(
            claimed_message_id(b"<RefToMessageId>r</RefToMessageId><MessageId>a&amp;b</MessageId>")
                .as_deref(),
            Some("a&b")
        );
        assert_eq!(claimed_message_id(b"no id here"), None);
        assert_eq!(claimed_message_id(b"<eb:MessageId></eb:MessageId>"), None);
    }
}
