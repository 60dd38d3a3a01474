//! The mail journal: every mail read from the IMAP mailbox, raw, with its outcome; the
//! quarantine is the part of it whose outcome is `quarantined`.

use chrono::{DateTime, Utc};

use super::sql::{get, ms, page_rows, time};
use super::{
    Connection, MailOutcome, NewMail, Page, PageRequest, QuarantineItem, Session, StoreError,
};

impl<C: Connection> Session<C> {
    /// Journals a received mail raw and commits it (one statement). The same mail again (same
    /// mailbox, UIDVALIDITY and UID: fetched once more after a crash before the IMAP mark) is
    /// not stored twice: the first row's id and outcome come back, so the caller can tell
    /// whether it was handled already.
    pub async fn insert_mail(
        &mut self,
        mail: &NewMail,
    ) -> Result<(String, MailOutcome), StoreError> {
        let id = super::new_id("mail", mail.received_at);
        let inserted = sqlx::query(
            "INSERT INTO mail_journal (id, mailbox, uid_validity, uid, from_header, subject, raw, \
             received_at, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending') \
             ON CONFLICT (mailbox, uid_validity, uid) DO NOTHING",
        )
        .bind(&id)
        .bind(&mail.mailbox)
        .bind(i64::from(mail.uid_validity))
        .bind(i64::from(mail.uid))
        .bind(&mail.from_header)
        .bind(&mail.subject)
        .bind(mail.raw.clone())
        .bind(ms(mail.received_at))
        .execute(self.conn())
        .await
        .map_err(StoreError::query("journaling a received mail"))?;
        if inserted.rows_affected() == 1 {
            return Ok((id, MailOutcome::Pending));
        }
        let row = sqlx::query(
            "SELECT id, outcome FROM mail_journal WHERE mailbox = $1 AND uid_validity = $2 \
             AND uid = $3",
        )
        .bind(&mail.mailbox)
        .bind(i64::from(mail.uid_validity))
        .bind(i64::from(mail.uid))
        .fetch_one(self.conn())
        .await
        .map_err(StoreError::query("reading a journaled mail"))?;
        let id: String = get(&row, "id")?;
        let outcome: String = get(&row, "outcome")?;
        let outcome = MailOutcome::parse(&outcome).ok_or_else(|| StoreError::Corrupt {
            what: "mail",
            id: id.clone(),
            column: "outcome",
            detail: format!("unknown outcome {outcome:?}"),
        })?;
        Ok((id, outcome))
    }

    /// Records what became of a journaled mail.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_mail(
        &mut self,
        id: &str,
        outcome: MailOutcome,
        journal_id: Option<&str>,
        reason: Option<&str>,
        sender: Option<&str>,
        signer: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE mail_journal SET outcome = $1, journal_id = $2, reason = $3, sender = $4, \
             signer = $5, handled_at = $6 WHERE id = $7",
        )
        .bind(outcome.as_str())
        .bind(journal_id.map(str::to_string))
        .bind(reason.map(str::to_string))
        .bind(sender.map(str::to_string))
        .bind(signer.map(str::to_string))
        .bind(ms(now))
        .bind(id)
        .execute(self.conn())
        .await
        .map_err(StoreError::query("recording a mail's outcome"))?;
        Ok(())
    }

    /// The quarantined mails, in id order (oldest first).
    pub async fn list_quarantine(
        &mut self,
        page: &PageRequest,
    ) -> Result<Page<QuarantineItem>, StoreError> {
        let (rows, next_cursor) = page_rows(
            self.conn(),
            "listing the quarantine",
            "mail_journal",
            "id, mailbox, uid_validity, uid, from_header, subject, reason, received_at, \
             CAST(LENGTH(raw) AS BIGINT) AS size",
            "outcome = 'quarantined'",
            &[],
            page,
        )
        .await?;
        let items = rows
            .iter()
            .map(|r| {
                let size: i64 = get(r, "size")?;
                Ok(QuarantineItem {
                    id: get(r, "id")?,
                    mailbox: get(r, "mailbox")?,
                    uid_validity: get(r, "uid_validity")?,
                    uid: get(r, "uid")?,
                    from: get(r, "from_header")?,
                    subject: get(r, "subject")?,
                    reason: get::<Option<String>>(r, "reason")?.unwrap_or_default(),
                    received_at: time(get(r, "received_at")?),
                    size: usize::try_from(size).unwrap_or_default(),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Page { items, next_cursor })
    }

    /// The raw bytes of a quarantined mail (`None` for another mail: only the quarantine is
    /// an operator's to read).
    pub async fn quarantined_mail_raw(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row =
            sqlx::query("SELECT raw FROM mail_journal WHERE id = $1 AND outcome = 'quarantined'")
                .bind(id)
                .fetch_optional(self.conn())
                .await
                .map_err(StoreError::query("reading a quarantined mail"))?;
        row.map(|r| get(&r, "raw")).transpose()
    }

    /// The raw bytes of a journaled mail.
    pub async fn mail_raw(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let row = sqlx::query("SELECT raw FROM mail_journal WHERE id = $1")
            .bind(id)
            .fetch_optional(self.conn())
            .await
            .map_err(StoreError::query("reading a journaled mail"))?;
        row.map(|r| get(&r, "raw")).transpose()
    }
}
