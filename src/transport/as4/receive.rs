//! The AS4 receiver: the handling of one received request ([`handle_request`]): its raw bytes
//! journaled and committed first, then asx-rs's verification and our checks, then the
//! interchange handed to the gateway's [`InboundSink`] — only then does the signed receipt go
//! back.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use super::https::serve_https;
use super::persist::Dedup;
use super::setup::{As4Runtime, DEDUP_LEASE};
use super::{ebms_error_code, is_receipt, As4Endpoint, MessageSink, ReceivedMessage, Refusal};
use crate::clock::Clock;
use crate::ids::MarketPartnerId;
use crate::store::{As4Answer, Inserted, Store, Transport};
use crate::transport::smpki::PeerIdentity;
use crate::transport::InboundSink;

/// The AS4 endpoint's sink for one request: the interchange goes to the gateway's
/// [`InboundSink`] (journaled and committed); the message id and journal item go into the
/// request's row with the answer.
struct RequestSink {
    journal: Arc<dyn InboundSink>,
    clock: Clock,
    refusal: std::sync::Mutex<Option<String>>,
    /// The message id and the journal item of the delivered interchange.
    delivered: std::sync::Mutex<Option<(String, String)>>,
}

impl MessageSink for RequestSink {
    fn refused(&self, refusal: &Refusal) {
        let reason = match refusal {
            Refusal::Retry(r) | Refusal::Permanent(r) => r.clone(),
        };
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + '_>> {
        Box::pin(async move {
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
            let inserted = self
                .journal
                .receive(message.payload, Transport::As4, self.clock.now())
                .await
                .map_err(|e| Refusal::Retry(format!("journaling failed: {e}")))?;
            if let Inserted::Duplicate(id) = &inserted {
                tracing::info!(journal = %id, message = %message.message_id, "interchange delivered twice: journaled once");
            }
            // Recorded with the answer (one commit less per message).
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

fn plain(status: http::StatusCode, text: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What answering AS4 requests needs: where interchanges are journaled, the store of the
/// raw request journal and the dedup claims, the clock, the endpoint, the size limit.
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
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// Answers one AS4 request that came over a TLS connection whose client certificate names
/// `peer` (its market partner ID; `peer_label` adds the address for the journal).
///
/// Order: the body is read (at most `[as4] max_message_bytes`, else 413) and journaled raw
/// and committed (else 503: nothing acknowledged); asx-rs verifies (signature, chain, OU,
/// revocation, decryption, timestamp, duplicate); our checks; the interchange is journaled;
/// then the signed receipt. What was answered is recorded with the raw request.
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
    } = receiver.clone();
    let (parts, body) = request.into_parts();
    if parts.method != http::Method::POST {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "AS4 messages are POSTed\n",
        );
    }
    let limit = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            tracing::warn!(peer = %peer_label, error = %e, "AS4 request not read");
            return if too_big {
                plain(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("an AS4 request has at most {max_message_bytes} bytes here\n"),
                )
            } else {
                plain(
                    http::StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                )
            };
        }
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let now = clock.now();
    let request_id = match async {
        store
            .conn()
            .await?
            .insert_as4_request(&peer_label, &content_type, &raw, now)
            .await
    }
    .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "AS4 request not journaled: answered 503");
            return plain(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "the request could not be stored; send it again later\n",
            );
        }
    };
    let sink = Arc::new(RequestSink {
        journal,
        clock: clock.clone(),
        refusal: std::sync::Mutex::new(None),
        delivered: std::sync::Mutex::new(None),
    });
    let service = endpoint.inbound(
        Dedup::new(store.clone(), DEDUP_LEASE, clock.clone()),
        peer.map(|p| p.as_str().to_string()),
        sink.clone(),
    );
    let request = http::Request::from_parts(parts, Full::new(raw));
    let response = service.call(request).await;
    let status = response.status();
    let body = response
        .body()
        .clone()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let answer = if status == http::StatusCode::SERVICE_UNAVAILABLE {
        As4Answer {
            outcome: "busy",
            http_status: status.as_u16(),
            ebms_code: None,
            reason: None,
            delivered: None,
        }
    } else if status.is_success() && is_receipt(&body) {
        As4Answer {
            outcome: "receipted",
            http_status: status.as_u16(),
            ebms_code: None,
            reason: None,
            delivered: sink
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        }
    } else {
        As4Answer {
            outcome: "refused",
            http_status: status.as_u16(),
            ebms_code: ebms_error_code(&body),
            // Our own reason where we refused; asx-rs's description otherwise.
            reason: sink
                .refusal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .or_else(|| crate::transport::as4::ebms_error_description(&body)),
            delivered: None,
        }
    };
    if answer.outcome == "refused" {
        tracing::warn!(peer = %peer_label, request = %request_id, code = ?answer.ebms_code, reason = ?answer.reason, "AS4 request refused");
    }
    let now = clock.now();
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
    response
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
