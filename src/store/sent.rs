//! What we sent: one row per message of every interchange that left, with the order it
//! belongs to, for matching the partners' acknowledgements and answers.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;

use super::sql::{get, ms, placeholders, select_rows, value_rows, ROWS_PER_STATEMENT};
use super::types::*;
use super::{Connection, Session, StoreError};
use crate::acks::SentMessage;
use crate::plan::inbound::LoadedSent;

/// `order_kind` of a sent message that is a pass-through of the supplier core: `order_id`
/// then holds its `messages` row (`out_…`). The pair of columns already says what a sent
/// message belongs to, so a pass-through needs no column of its own (and no migration).
const PASS_THROUGH_KIND: &str = "pass_through";

/// The columns [`sent_from_row`] reads.
const SENT_COLUMNS: &str = "interchange_ref, message_ref, document_number, order_kind, order_id";

fn sent_from_row(row: &AnyRow) -> Result<SentMessage, StoreError> {
    let kind: Option<String> = get(row, "order_kind")?;
    let id: Option<String> = get(row, "order_id")?;
    let (order, pass_through) = if kind.as_deref() == Some(PASS_THROUGH_KIND) {
        (None, id)
    } else {
        (id, None)
    };
    Ok(SentMessage {
        interchange_reference: get(row, "interchange_ref")?,
        message_reference: get(row, "message_ref")?,
        document_number: get(row, "document_number")?,
        order,
        pass_through,
    })
}

impl<C: Connection> Session<C> {
    /// Records a message we sent; returns its id.
    pub async fn record_sent(
        &mut self,
        sent: &SentRecord,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        let ids = self
            .record_sent_rows(std::slice::from_ref(sent), now)
            .await?;
        Ok(ids.into_iter().next().expect("one id per row"))
    }

    /// Records several messages we sent (one statement per `ROWS_PER_STATEMENT` (500)); returns
    /// their ids.
    pub async fn record_sent_rows(
        &mut self,
        rows: &[SentRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        let mut ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            ids.extend(self.record_sent_chunk(chunk, now).await?);
        }
        Ok(ids)
    }

    async fn record_sent_chunk(
        &mut self,
        rows: &[SentRecord],
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows.iter().map(|_| new_id("snt", now)).collect();
        let statement = format!(
            "INSERT INTO sent_messages (id, partner, interchange_ref, message_ref, document_number, \
             order_kind, order_id, journal_id, created_at) VALUES {}",
            value_rows(rows.len(), 9)
        );
        let statement = super::sql::positional(self.backend, statement);
        let mut query = sqlx::query(&statement);
        for (id, sent) in ids.iter().zip(rows) {
            query = query
                .bind(id.clone())
                .bind(sent.partner.clone())
                .bind(sent.interchange_ref.clone())
                .bind(sent.message_ref.clone())
                .bind(sent.document_number.clone())
                .bind(
                    sent.order
                        .as_ref()
                        .map(|(k, _)| k.as_str().to_string())
                        .or_else(|| sent.pass_through.as_ref().map(|_| PASS_THROUGH_KIND.into())),
                )
                .bind(
                    sent.order
                        .as_ref()
                        .map(|(_, id)| id.clone())
                        .or_else(|| sent.pass_through.clone()),
                )
                .bind(sent.journal_id.clone())
                .bind(ms(now));
        }
        query
            .execute(self.conn())
            .await
            .map_err(StoreError::query("recording sent messages"))?;
        Ok(ids)
    }

    /// The messages of our interchange `interchange_ref` to `partner`.
    pub async fn sent_by_interchange(
        &mut self,
        partner: &str,
        interchange_ref: &str,
    ) -> Result<Vec<SentMessage>, StoreError> {
        let sql = format!(
            "SELECT {SENT_COLUMNS} FROM sent_messages \
             WHERE partner = $1 AND interchange_ref = $2 ORDER BY id"
        );
        select_rows(
            self.conn(),
            "looking up sent messages by interchange",
            &sql,
            &[partner, interchange_ref],
        )
        .await?
        .iter()
        .map(sent_from_row)
        .collect()
    }

    /// Our message to `partner` with this BGM document number.
    pub async fn sent_by_document(
        &mut self,
        partner: &str,
        document_number: &str,
    ) -> Result<Option<SentMessage>, StoreError> {
        let sql = format!(
            "SELECT {SENT_COLUMNS} FROM sent_messages \
             WHERE partner = $1 AND document_number = $2 ORDER BY id"
        );
        select_rows(
            self.conn(),
            "looking up a sent message by document number",
            &sql,
            &[partner, document_number],
        )
        .await?
        .first()
        .map(sent_from_row)
        .transpose()
    }

    /// What we sent to any of `partners` under any of these interchange references or
    /// document numbers, with the partner, in id order (one statement per
    /// `ROWS_PER_STATEMENT` (500) references and numbers).
    pub async fn sent_matching(
        &mut self,
        partners: &[String],
        interchange_refs: &[String],
        document_numbers: &[String],
    ) -> Result<Vec<LoadedSent>, StoreError> {
        if partners.is_empty() || (interchange_refs.is_empty() && document_numbers.is_empty()) {
            return Ok(Vec::new());
        }
        if interchange_refs.len() + document_numbers.len() <= ROWS_PER_STATEMENT {
            let rows = self
                .sent_matching_rows(partners, interchange_refs, document_numbers)
                .await?;
            return Ok(rows.into_iter().map(|(_, sent)| sent).collect());
        }
        // A long list (an interchange of many answers): ROWS_PER_STATEMENT values per
        // statement, rows found twice kept once, in id order.
        let mut found: Vec<(String, LoadedSent)> = Vec::new();
        for chunk in interchange_refs.chunks(ROWS_PER_STATEMENT) {
            found.extend(self.sent_matching_rows(partners, chunk, &[]).await?);
        }
        for chunk in document_numbers.chunks(ROWS_PER_STATEMENT) {
            found.extend(self.sent_matching_rows(partners, &[], chunk).await?);
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found.into_iter().map(|(_, sent)| sent).collect())
    }

    /// [`Session::sent_matching`] in one statement, with each row's id.
    async fn sent_matching_rows(
        &mut self,
        partners: &[String],
        interchange_refs: &[String],
        document_numbers: &[String],
    ) -> Result<Vec<(String, LoadedSent)>, StoreError> {
        if interchange_refs.is_empty() && document_numbers.is_empty() {
            return Ok(Vec::new());
        }
        let mut args: Vec<&str> = partners.iter().map(String::as_str).collect();
        let mut any = Vec::new();
        for (column, values) in [
            ("interchange_ref", interchange_refs),
            ("document_number", document_numbers),
        ] {
            if !values.is_empty() {
                any.push(format!(
                    "{column} IN ({})",
                    placeholders(args.len() + 1, values.len())
                ));
                args.extend(values.iter().map(String::as_str));
            }
        }
        let sql = format!(
            "SELECT id, partner, {SENT_COLUMNS} \
             FROM sent_messages WHERE partner IN ({}) AND ({}) ORDER BY id",
            placeholders(1, partners.len()),
            any.join(" OR ")
        );
        select_rows(self.conn(), "looking up sent messages", &sql, &args)
            .await?
            .iter()
            .map(|row| {
                Ok((
                    get(row, "id")?,
                    LoadedSent {
                        partner: get(row, "partner")?,
                        message: sent_from_row(row)?,
                    },
                ))
            })
            .collect()
    }

    /// What we sent to `partner` under these interchange references and document numbers, as
    /// an [`crate::acks::SentLookup`] for `acks::match_acknowledgement`.
    pub async fn sent_snapshot(
        &mut self,
        partner: &str,
        interchange_refs: &[&str],
        document_numbers: &[&str],
    ) -> Result<SentSnapshot, StoreError> {
        let mut messages: Vec<SentMessage> = Vec::new();
        for r in interchange_refs {
            for m in self.sent_by_interchange(partner, r).await? {
                if !messages.contains(&m) {
                    messages.push(m);
                }
            }
        }
        for d in document_numbers {
            if let Some(m) = self.sent_by_document(partner, d).await? {
                if !messages.contains(&m) {
                    messages.push(m);
                }
            }
        }
        Ok(SentSnapshot {
            partner: partner.to_string(),
            messages,
        })
    }
}
