//! AS4 state: duplicate detection of received user messages (two-phase, leased claims), the
//! non-repudiation evidence, and the ebMS MessageId fixed for each outbox item before its
//! first send. Plain statements; `transport::as4::persist` puts asx-rs's traits on top.

use chrono::{DateTime, Utc};

use super::sql::{get, ms, page_rows, time};
use super::{Connection, Page, PageRequest, Session, StoreError};

/// What a claim on a received message's key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupClaim {
    /// New (or its earlier claim's lease ran out): the caller holds it with this token.
    Claimed(String),
    /// Accepted before: a duplicate.
    Duplicate,
    /// Another delivery holds it right now.
    InFlight,
}

/// The ebMS identity of an outbound AS4 message, fixed before its first send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4Outbound {
    /// `eb:MessageId`.
    pub message_id: String,
    /// `eb:Timestamp` (millisecond precision).
    pub timestamp: DateTime<Utc>,
    /// When the partner's receipt was verified, if it was.
    pub delivered_at: Option<DateTime<Utc>>,
}

impl<C: Connection> Session<C> {
    /// Claims `key` for one delivery: atomic (one statement decides), so of two deliveries of
    /// the same message exactly one gets [`DedupClaim::Claimed`]. An unsettled claim whose
    /// lease ended may be taken over (with a new token; the old token then settles nothing).
    pub async fn as4_claim(
        &mut self,
        key: &str,
        lease_until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<DedupClaim, StoreError> {
        for _ in 0..3 {
            let token = super::new_id("claim", now);
            let inserted = sqlx::query(
                "INSERT INTO as4_dedup (message_key, state, token, lease_until, claimed_at) \
                 VALUES ($1, 'in_flight', $2, $3, $4) ON CONFLICT (message_key) DO NOTHING",
            )
            .bind(key)
            .bind(&token)
            .bind(ms(lease_until))
            .bind(ms(now))
            .execute(self.conn())
            .await
            .map_err(StoreError::query("claiming an AS4 message key"))?;
            if inserted.rows_affected() == 1 {
                return Ok(DedupClaim::Claimed(token));
            }
            let taken = sqlx::query(
                "UPDATE as4_dedup SET token = $1, lease_until = $2, claimed_at = $3 \
                 WHERE message_key = $4 AND state = 'in_flight' AND lease_until <= $3",
            )
            .bind(&token)
            .bind(ms(lease_until))
            .bind(ms(now))
            .bind(key)
            .execute(self.conn())
            .await
            .map_err(StoreError::query("taking over an expired AS4 claim"))?;
            if taken.rows_affected() == 1 {
                return Ok(DedupClaim::Claimed(token));
            }
            let row = sqlx::query("SELECT state FROM as4_dedup WHERE message_key = $1")
                .bind(key)
                .fetch_optional(self.conn())
                .await
                .map_err(StoreError::query("reading an AS4 message key"))?;
            match row {
                Some(row) => {
                    let state: String = get(&row, "state")?;
                    return Ok(if state == "accepted" {
                        DedupClaim::Duplicate
                    } else {
                        DedupClaim::InFlight
                    });
                }
                // Abandoned between the statements: try again.
                None => continue,
            }
        }
        Ok(DedupClaim::InFlight)
    }

    /// Settles a claim as accepted (the message is journaled; later deliveries are
    /// duplicates). `false` when `token` no longer holds the key (settled, abandoned, or
    /// taken over after its lease).
    pub async fn as4_accept(
        &mut self,
        key: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE as4_dedup SET state = 'accepted', token = NULL, accepted_at = $1 \
             WHERE message_key = $2 AND token = $3 AND state = 'in_flight'",
        )
        .bind(ms(now))
        .bind(key)
        .bind(token)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("accepting an AS4 message key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Releases a claim (the delivery failed; a retry may claim the key again). `false` when
    /// `token` no longer holds it.
    pub async fn as4_abandon(&mut self, key: &str, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM as4_dedup WHERE message_key = $1 AND token = $2 AND state = 'in_flight'",
        )
        .bind(key)
        .bind(token)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("abandoning an AS4 message key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Forgets accepted keys accepted before `before` (callers keep at least 7 days). Returns
    /// how many.
    pub async fn purge_as4_dedup(&mut self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM as4_dedup WHERE state = 'accepted' AND accepted_at < $1")
                .bind(ms(before))
                .execute(self.conn())
                .await
                .map_err(StoreError::query("purging old AS4 message keys"))?;
        Ok(done.rows_affected())
    }

    /// Keeps one evidence record (JSON) durably; the same record again is stored once.
    pub async fn insert_as4_evidence(
        &mut self,
        record_id: &str,
        message_id: &str,
        partner: &str,
        record_json: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO as4_evidence (record_id, message_id, partner, record, recorded_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (record_id) DO NOTHING",
        )
        .bind(record_id)
        .bind(message_id)
        .bind(partner)
        .bind(record_json)
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("keeping AS4 evidence"))?;
        Ok(())
    }

    /// The evidence records (JSON) of a message, oldest first.
    pub async fn as4_evidence(&mut self, message_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT record FROM as4_evidence WHERE message_id = $1 ORDER BY recorded_at, record_id",
        )
        .bind(message_id)
        .fetch_all(self.conn())
        .await
        .map_err(StoreError::query("reading AS4 evidence"))?;
        rows.iter().map(|r| get(r, "record")).collect()
    }

    /// The message id and timestamp of an outbox item's AS4 message: made and committed on
    /// the first call (`new_id` gives the id), read back on every later one, so that all
    /// attempts send the same message.
    pub async fn as4_outbound(
        &mut self,
        outbox_id: &str,
        partner: &str,
        new_id: &str,
        now: DateTime<Utc>,
    ) -> Result<As4Outbound, StoreError> {
        sqlx::query(
            "INSERT INTO as4_outbound (outbox_id, message_id, partner, sent_timestamp, \
             created_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (outbox_id) DO NOTHING",
        )
        .bind(outbox_id)
        .bind(new_id)
        .bind(partner)
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("fixing an AS4 message id"))?;
        let row = sqlx::query(
            "SELECT message_id, sent_timestamp, delivered_at FROM as4_outbound \
             WHERE outbox_id = $1",
        )
        .bind(outbox_id)
        .fetch_one(self.conn())
        .await
        .map_err(StoreError::query("reading an AS4 message id"))?;
        Ok(As4Outbound {
            message_id: get(&row, "message_id")?,
            timestamp: time(get(&row, "sent_timestamp")?),
            delivered_at: get::<Option<i64>>(&row, "delivered_at")?.map(time),
        })
    }

    /// Records that the partner's signed receipt for an outbox item's message was verified.
    pub async fn as4_delivered(
        &mut self,
        outbox_id: &str,
        receipt_record_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE as4_outbound SET receipt_record_id = $1, delivered_at = $2 \
             WHERE outbox_id = $3",
        )
        .bind(receipt_record_id)
        .bind(ms(now))
        .bind(outbox_id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("recording an AS4 receipt"))?;
        Ok(())
    }

    /// Journals a received AS4 request raw and commits it (before anything is answered).
    pub async fn insert_as4_request(
        &mut self,
        peer: &str,
        content_type: &str,
        raw: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let id = super::new_id("as4in", now);
        sqlx::query(
            "INSERT INTO as4_inbox (id, peer, content_type, raw, received_at, outcome) \
             VALUES ($1, $2, $3, $4, $5, 'pending')",
        )
        .bind(&id)
        .bind(peer)
        .bind(content_type)
        .bind(raw.to_vec())
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling a received AS4 request"))?;
        Ok(id)
    }

    /// Settles `key` as accepted for a delivery that holds no claim row (the one-commit path
    /// of issue 16): a new key, or one whose earlier claim's lease ran out. `false` when the
    /// key is accepted already or another delivery holds a live claim on it; the caller then
    /// writes nothing else (its transaction decides, so of two deliveries exactly one gets
    /// `true`, in one instance or several).
    pub async fn as4_accept_unclaimed(
        &mut self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO as4_dedup (message_key, state, token, lease_until, claimed_at, \
             accepted_at) VALUES ($1, 'accepted', NULL, $2, $2, $2) \
             ON CONFLICT (message_key) DO UPDATE SET state = 'accepted', token = NULL, \
             accepted_at = $2 \
             WHERE as4_dedup.state = 'in_flight' AND as4_dedup.lease_until <= $2",
        )
        .bind(key)
        .bind(ms(now))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("accepting an AS4 message key"))?;
        Ok(done.rows_affected() == 1)
    }

    /// What the dedup store holds for `key` now, read without claiming anything:
    /// [`DedupClaim::Duplicate`] (accepted), [`DedupClaim::InFlight`] (a live claim) or
    /// [`DedupClaim::Claimed`] with an empty token (free: new, or its claim's lease ran out).
    pub async fn as4_key_state(
        &mut self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<DedupClaim, StoreError> {
        let row = sqlx::query("SELECT state, lease_until FROM as4_dedup WHERE message_key = $1")
            .bind(key)
            .fetch_optional(self.conn())
            .await
            .map_err(StoreError::query("reading an AS4 message key"))?;
        let Some(row) = row else {
            return Ok(DedupClaim::Claimed(String::new()));
        };
        let state: String = get(&row, "state")?;
        let lease_until: i64 = get(&row, "lease_until")?;
        Ok(if state == "accepted" {
            DedupClaim::Duplicate
        } else if lease_until > ms(now) {
            DedupClaim::InFlight
        } else {
            DedupClaim::Claimed(String::new())
        })
    }

    /// Records a received request that was journaled as `journal_id`, with its receipt as
    /// the answer (in the transaction that journals it).
    pub async fn insert_as4_arrival(
        &mut self,
        arrival: &As4Arrival,
        journal_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO as4_inbox (id, peer, content_type, raw, received_at, outcome, \
             http_status, answered_at, message_id, journal_id, sender, signed) \
             VALUES ($1, $2, $3, $4, $5, 'receipted', 200, $6, $7, $8, $9, $10)",
        )
        .bind(&arrival.request.id)
        .bind(&arrival.request.peer)
        .bind(&arrival.request.content_type)
        .bind(arrival.request.raw.to_vec())
        .bind(ms(arrival.request.received_at))
        .bind(ms(now))
        .bind(&arrival.message_id)
        .bind(journal_id)
        .bind(&arrival.sender)
        .bind(&arrival.signed)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling a received AS4 request"))?;
        Ok(())
    }

    /// Records a received request with how it was answered, in one statement (a request
    /// that did not deliver an interchange).
    pub async fn insert_as4_request_answered(
        &mut self,
        request: &As4IncomingRequest,
        answer: &As4Answer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO as4_inbox (id, peer, content_type, raw, received_at, outcome, \
             http_status, ebms_code, reason, answered_at, message_id, journal_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&request.id)
        .bind(&request.peer)
        .bind(&request.content_type)
        .bind(request.raw.to_vec())
        .bind(ms(request.received_at))
        .bind(answer.outcome)
        .bind(i32::from(answer.http_status))
        .bind(answer.ebms_code.clone())
        .bind(answer.reason.clone())
        .bind(ms(now))
        .bind(answer.delivered.as_ref().map(|d| d.0.clone()))
        .bind(answer.delivered.as_ref().map(|d| d.1.clone()))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling a received AS4 request"))?;
        Ok(())
    }

    /// What `sender` signed in message `message_id` as we receipted it (the JSON kept with
    /// the request), if a request of it was receipted.
    pub async fn as4_signed(
        &mut self,
        message_id: &str,
        sender: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT signed FROM as4_inbox WHERE message_id = $1 AND sender = $2 \
             AND signed IS NOT NULL ORDER BY id LIMIT 1",
        )
        .bind(message_id)
        .bind(sender)
        .fetch_optional(self.conn())
        .await
        .map_err(StoreError::query("reading what an AS4 message signed"))?;
        row.map(|r| get(&r, "signed")).transpose()
    }

    /// Records how a received AS4 request was answered.
    pub async fn finish_as4_request(
        &mut self,
        id: &str,
        answer: &As4Answer,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE as4_inbox SET outcome = $1, http_status = $2, ebms_code = $3, reason = $4, \
             answered_at = $5, message_id = $6, journal_id = $7 WHERE id = $8",
        )
        .bind(answer.outcome)
        .bind(i32::from(answer.http_status))
        .bind(answer.ebms_code.clone())
        .bind(answer.reason.clone())
        .bind(ms(now))
        .bind(answer.delivered.as_ref().map(|d| d.0.clone()))
        .bind(answer.delivered.as_ref().map(|d| d.1.clone()))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("recording an AS4 answer"))?;
        Ok(())
    }

    /// The received AS4 requests in id order (oldest first), optionally of one outcome
    /// (`pending`, `receipted`, `refused`, `busy`).
    pub async fn list_as4_requests(
        &mut self,
        outcome: Option<&str>,
        page: &PageRequest,
    ) -> Result<Page<As4Request>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing received AS4 requests",
            "as4_inbox",
            "id, peer, content_type, received_at, outcome, http_status, ebms_code, message_id, \
             journal_id, reason, CAST(LENGTH(raw) AS BIGINT) AS size",
            "1 = 1",
            &[("outcome =", outcome)],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let size: i64 = get(r, "size")?;
                Ok(As4Request {
                    id: get(r, "id")?,
                    peer: get(r, "peer")?,
                    content_type: get(r, "content_type")?,
                    received_at: time(get(r, "received_at")?),
                    outcome: get(r, "outcome")?,
                    http_status: get::<Option<i32>>(r, "http_status")?,
                    ebms_code: get(r, "ebms_code")?,
                    message_id: get(r, "message_id")?,
                    journal_id: get(r, "journal_id")?,
                    reason: get(r, "reason")?,
                    size: usize::try_from(size).unwrap_or_default(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// The raw body of a received AS4 request and its Content-Type, as stored when it
    /// arrived (whatever its outcome).
    pub async fn as4_request_raw(&mut self, id: &str) -> Result<Option<As4RequestRaw>, StoreError> {
        let row = sqlx::query("SELECT content_type, raw FROM as4_inbox WHERE id = $1")
            .bind(id)
            .fetch_optional(self.conn())
            .await
            .map_err(StoreError::query("reading a received AS4 request"))?;
        row.map(|r| {
            Ok(As4RequestRaw {
                content_type: get(&r, "content_type")?,
                raw: get(&r, "raw")?,
            })
        })
        .transpose()
    }
}

/// How a received AS4 request was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4Answer {
    /// `receipted`, `refused` or `busy` (503: the same message in flight elsewhere).
    pub outcome: &'static str,
    /// The HTTP status sent.
    pub http_status: u16,
    /// The ebMS error code of a refusal.
    pub ebms_code: Option<String>,
    /// The ebMS error's description, if any.
    pub reason: Option<String>,
    /// The message id and journal item of the interchange it delivered.
    pub delivered: Option<(String, String)>,
}

/// A received AS4 request as journaled (without its bytes).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct As4Request {
    /// Row id.
    pub id: String,
    /// The TLS peer (its market partner ID) and address.
    pub peer: String,
    /// The request's Content-Type.
    pub content_type: String,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
    /// `pending`, `receipted`, `refused`, `busy`.
    pub outcome: String,
    /// The HTTP status answered.
    pub http_status: Option<i32>,
    /// The ebMS error code answered.
    pub ebms_code: Option<String>,
    /// `eb:MessageId` of a delivered message.
    pub message_id: Option<String>,
    /// The journal item of the interchange it carried.
    pub journal_id: Option<String>,
    /// Why it was refused.
    pub reason: Option<String>,
    /// Size of the raw body.
    pub size: usize,
}

/// The raw bytes of a received AS4 request, with the Content-Type it came with (the MIME
/// boundary of its parts is there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4RequestRaw {
    /// The request's Content-Type header as received.
    pub content_type: String,
    /// The request body as received.
    pub raw: Vec<u8>,
}

/// A received AS4 request: its row id (made when it arrived, so that rows sort by arrival),
/// the TLS peer, its Content-Type and body as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4IncomingRequest {
    /// Row id (`as4in_…`).
    pub id: String,
    /// The TLS peer (its market partner ID) and address.
    pub peer: String,
    /// The request's Content-Type.
    pub content_type: String,
    /// The body.
    pub raw: bytes::Bytes,
    /// When it arrived.
    pub received_at: DateTime<Utc>,
}

/// What the one commit of a received AS4 message holds besides its interchange (issue 16):
/// the request as received, and the message's dedup key settled as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4Arrival {
    /// The request.
    pub request: As4IncomingRequest,
    /// The key asx-rs deduplicates the message by.
    pub dedup_key: String,
    /// `eb:MessageId`.
    pub message_id: String,
    /// `eb:From` (the sender's market partner ID).
    pub sender: String,
    /// What the sender signed (JSON), to recognise its retry.
    pub signed: String,
}

/// What became of an [`As4Arrival`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrived {
    /// The interchange is journaled (or was, [`super::Inserted::Duplicate`]), the key accepted and
    /// the request recorded as receipted.
    Journaled(super::Inserted),
    /// The key was accepted, or claimed by another delivery, meanwhile: nothing was written.
    KeyTaken,
}
