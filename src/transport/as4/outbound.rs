//! The AS4 side of the [`Outbound`] seam: an interchange goes out as a BDEW user message with
//! the message id and timestamp fixed for its outbox item before the first attempt (so every
//! retry sends the same message, which the partner deduplicates), and the verified receipt is
//! recorded.

use super::As4Endpoint;
use crate::ids::{new_id, MarketPartnerId};
use crate::store::{Store, Transport};
use crate::transport::{BoxFuture, Outbound, Outgoing, SendError, Sent};

/// A send that ended without a verified receipt, with the message id it went out under.
#[derive(Debug, thiserror::Error)]
#[error("AS4 message {message_id}: {failure}")]
pub struct As4SendError {
    /// `eb:MessageId` (the same on every attempt).
    pub message_id: String,
    /// What asx-rs or the partner said.
    #[source]
    pub failure: super::SendFailure,
}

/// An interchange for a partner we cannot send to over AS4 (no `as4_url`: it only sends to us).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoEndpoint(pub String);

/// Sends to the AS4 partners of an endpoint's registry.
#[derive(Debug, Clone)]
pub struct As4Sender {
    endpoint: As4Endpoint,
    store: Store,
    own_id: MarketPartnerId,
}

impl As4Sender {
    /// Sends through `endpoint` as `own_id`, keeping the fixed message ids in `store`.
    pub fn new(endpoint: As4Endpoint, store: Store, own_id: MarketPartnerId) -> As4Sender {
        As4Sender {
            endpoint,
            store,
            own_id,
        }
    }
}

impl Outbound for As4Sender {
    fn kind(&self) -> Transport {
        Transport::As4
    }

    /// Retryable failures (connection, timeout, `EBMS:0202`, an unreadable answer) are
    /// transient; a refusal by the partner (`EBMS:0004`, `0101`, `0102` …) or a configuration
    /// error parks the item with the partner's code. A partner without `as4_url` parks it at
    /// once, before a message id is fixed.
    fn send<'a>(&'a self, out: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            if let Some(reason) = self.endpoint.cannot_send_to(out.partner) {
                return Err(SendError::permanent(NoEndpoint(reason)));
            }
            let store_error = |e: crate::store::StoreError| {
                if e.is_transient() {
                    SendError::transient(e)
                } else {
                    SendError::permanent(e)
                }
            };
            let candidate = format!(
                "{}@{}",
                new_id("as4", out.now).trim_start_matches("as4_"),
                self.own_id
            );
            let fixed = self
                .store
                .conn()
                .await
                .map_err(store_error)?
                .as4_outbound(out.outbox_id, out.partner, &candidate, out.now)
                .await
                .map_err(store_error)?;
            let sent = Sent {
                description: format!("AS4 message {} to {}", fixed.message_id, out.partner),
            };
            if fixed.delivered_at.is_some() {
                // Receipted before a crash that came before the commit: do not send again.
                return Ok(sent);
            }
            let name = crate::transport::file_name::TransferFileName::of_interchange(
                out.bytes,
                out.now.date_naive(),
            )
            .map(|n| n.to_string())
            .unwrap_or_else(|_| format!("{}.txt", out.interchange_ref));
            match self
                .endpoint
                .send(
                    out.partner,
                    out.bytes.to_vec(),
                    &name,
                    &fixed.message_id,
                    std::time::SystemTime::from(fixed.timestamp),
                )
                .await
            {
                Ok(delivered) => {
                    self.store
                        .conn()
                        .await
                        .map_err(store_error)?
                        .as4_delivered(out.outbox_id, &delivered.receipt_record_id, out.now)
                        .await
                        .map_err(store_error)?;
                    tracing::info!(message = %fixed.message_id, signer = %delivered.receipt_signer, "AS4 receipt verified");
                    Ok(sent)
                }
                Err(failure) => {
                    let transient = failure.is_transient();
                    // Each partner has its own endpoint: only our configuration and our store
                    // are AS4 sending's own failures (for the health report).
                    let ours = matches!(failure.kind, "config" | "backend");
                    let error = As4SendError {
                        message_id: fixed.message_id,
                        failure,
                    };
                    let error = if transient {
                        SendError::transient(error)
                    } else {
                        SendError::permanent(error)
                    };
                    Err(if ours {
                        error
                    } else {
                        error.for_this_partner_only()
                    })
                }
            }
        })
    }
}
