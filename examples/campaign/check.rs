//! The invariants a campaign checks at the end, from the database and from what the partners
//! received: nothing lost, nothing sent twice with different bytes, no transition applied
//! twice, nothing left unprocessed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use mako_gateway::store::Store;
use sqlx::Row;

use super::driver::Core;
use super::gateway::{files_in, Logs};
use super::peers::Partners;
use super::world::Transport;

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    /// `(what, figure)`, printed in order.
    pub figures: Vec<(String, String)>,
    /// Every broken invariant, with what it concerns.
    pub defects: Vec<String>,
}

impl Report {
    fn figure(&mut self, what: &str, value: impl ToString) {
        self.figures.push((what.to_string(), value.to_string()));
    }

    fn defect(&mut self, text: String) {
        self.defects.push(text);
    }

    /// Prints the figures and the defects (at most `limit` of them in full).
    pub fn print(&self, limit: usize) {
        for (what, value) in &self.figures {
            println!("  {what:<52} {value}");
        }
        for d in self.defects.iter().take(limit) {
            println!("  DEFECT: {d}");
        }
        if self.defects.len() > limit {
            println!("  … and {} more defects", self.defects.len() - limit);
        }
    }
}

fn s(row: &sqlx::any::AnyRow, i: usize) -> String {
    row.try_get::<Option<String>, _>(i)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// `Ok` when the gateway has done everything there is (every order created and answered,
/// everything processed and sent, every answer delivered, every outbound interchange received
/// by its partner), else what is still open.
pub async fn settled(
    store: &Store,
    core: &Core,
    partners: &Partners,
    data_dir: &Path,
) -> Result<(), String> {
    async fn count(store: &Store, sql: &str) -> i64 {
        match sqlx::query(sql).fetch_one(store.pool()).await {
            Ok(row) => row.get::<i64, _>(0),
            Err(_) => -1,
        }
    }
    let orders = core
        .orders
        .lock()
        .unwrap()
        .iter()
        .filter(|o| !o.refused)
        .count() as i64;
    let rejected = count(
        store,
        "SELECT COUNT(*) FROM grid_fee_reductions WHERE status = 'rejected'",
    )
    .await;
    let inbound = count(
        store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state <> 'processed'",
    )
    .await;
    let outbox = count(store, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'").await;
    let mails = count(
        store,
        "SELECT COUNT(*) FROM mail_journal WHERE outcome = 'pending'",
    )
    .await;
    let outbound = count(
        store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'out'",
    )
    .await;
    let received: BTreeSet<(String, String)> = partners
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|c| (c.partner.clone(), c.reference.clone()))
        .collect();
    let inbox = data_dir.join("inbox");
    let files = files_in(&inbox).len() + files_in(&inbox.join(".claimed")).len();
    let answers = partners.pending();
    if core.settled()
        && rejected == orders
        && inbound == 0
        && outbox == 0
        && mails == 0
        && files == 0
        && answers == 0
        && received.len() as i64 == outbound
    {
        return Ok(());
    }
    Err(format!(
        "{rejected}/{orders} orders rejected, {inbound} inbound unprocessed, {outbox} outbox \
         items unsent, {mails} mails pending, {files} inbox files, {answers} answers \
         undelivered, {}/{outbound} outbound received",
        received.len()
    ))
}

/// Waits until [`settled`], at most `patience`; prints what is open every 15 s. The time it
/// took, or what was still open.
pub async fn wait_settled(
    store: &Store,
    core: &Core,
    partners: &Partners,
    data_dir: &Path,
    patience: std::time::Duration,
) -> Result<std::time::Duration, String> {
    let started = std::time::Instant::now();
    let mut printed = std::time::Instant::now();
    loop {
        match settled(store, core, partners, data_dir).await {
            Ok(()) => return Ok(started.elapsed()),
            Err(open) if started.elapsed() > patience => {
                return Err(format!("not settled after {patience:?}: {open}"))
            }
            Err(open) => {
                if printed.elapsed() > std::time::Duration::from_secs(15) {
                    println!(
                        "  settling ({:.0} s): {open}",
                        started.elapsed().as_secs_f64()
                    );
                    printed = std::time::Instant::now();
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// Checks everything once the gateway has stopped after a last run without faults.
pub async fn invariants(
    store: &Store,
    core: &Core,
    partners: &Partners,
    data_dir: &Path,
    logs: &Logs,
) -> Report {
    let mut r = Report::default();
    let pool = store.pool();
    let query = |sql: &'static str| sqlx::query(sql);

    // 1. Every order the core wanted exists once and ended rejected (its ORDRSP A99).
    let orders = core.orders.lock().unwrap().clone();
    r.figure(
        "orders created over the API",
        orders.iter().filter(|o| o.id.is_some()).count(),
    );
    for o in orders.iter().filter(|o| o.refused) {
        r.defect(format!(
            "the API refused the valid order of {}",
            o.subscription
        ));
    }
    for refusal in core.refusals.lock().unwrap().iter() {
        r.defect(format!("API: {refusal}"));
    }
    let rows = query("SELECT subscription, id, status FROM grid_fee_reductions")
        .fetch_all(pool)
        .await
        .expect("orders");
    let mut by_subscription: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for row in &rows {
        by_subscription
            .entry(s(row, 0))
            .or_default()
            .push((s(row, 1), s(row, 2)));
    }
    for o in orders.iter().filter(|o| !o.refused) {
        match by_subscription.get(&o.subscription).map(Vec::as_slice) {
            None | Some([]) => r.defect(format!(
                "order of {} lost (not in the store)",
                o.subscription
            )),
            Some([(id, status)]) => {
                if Some(id) != o.id.as_ref() {
                    r.defect(format!(
                        "{}: the API said {:?}, the store has {id}",
                        o.subscription, o.id
                    ));
                }
                if status != "rejected" {
                    r.defect(format!(
                        "order {id} ({}) ended {status}, not rejected",
                        o.partner
                    ));
                }
            }
            Some(several) => r.defect(format!(
                "subscription {} has {} orders: {several:?}",
                o.subscription,
                several.len()
            )),
        }
    }
    let planned: BTreeSet<&str> = orders.iter().map(|o| o.subscription.as_str()).collect();
    for sub in by_subscription.keys() {
        if !planned.contains(sub.as_str()) {
            r.defect(format!("an order nobody asked for: subscription {sub}"));
        }
    }

    // 2. Every transition once: intended → ordered (sent), ordered → rejected (the answer).
    let history = query(
        "SELECT order_id, from_status, to_status, topic, journal_id FROM status_history \
         WHERE order_kind = 'grid_fee_reduction' ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .expect("history");
    let mut changes: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let mut seen = BTreeMap::new();
    for row in &history {
        let key = (s(row, 0), s(row, 1), s(row, 2), s(row, 3), s(row, 4));
        *seen.entry(key.clone()).or_insert(0) += 1;
        if !key.3.is_empty() {
            changes
                .entry(key.0.clone())
                .or_default()
                .push((key.1.clone(), key.2.clone()));
        }
    }
    for (key, n) in &seen {
        if *n > 1 {
            r.defect(format!("history row recorded {n} times: {key:?}"));
        }
    }
    let expected = vec![
        ("intended".to_string(), "ordered".to_string()),
        ("ordered".to_string(), "rejected".to_string()),
    ];
    let mut transitions = 0;
    for o in orders.iter().filter_map(|o| o.id.as_ref()) {
        let got = changes.get(o).cloned().unwrap_or_default();
        transitions += got.len();
        if got != expected {
            r.defect(format!(
                "order {o}: transitions {got:?}, expected {expected:?}"
            ));
        }
    }
    r.figure("status transitions (each checked once)", transitions);

    // 3. One ORDERS document per order, ever.
    let docs = query(
        "SELECT order_id, COUNT(DISTINCT document_number), COUNT(*) FROM sent_messages \
         WHERE order_id IS NOT NULL GROUP BY order_id",
    )
    .fetch_all(pool)
    .await
    .expect("sent messages");
    for row in &docs {
        let (distinct, all): (i64, i64) = (row.get(1), row.get(2));
        if distinct != 1 || all != 1 {
            r.defect(format!(
                "order {} was sent as {distinct} documents in {all} records",
                s(row, 0)
            ));
        }
    }

    // 4. Every answer the partners delivered is journaled once, as delivered, and processed.
    let inbound = query("SELECT partner, interchange_ref, (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw, state, transport FROM journal WHERE direction = 'in'")
        .fetch_all(pool)
        .await
        .expect("inbound journal");
    /// `(partner, reference)` → `(raw, state, transport)` of each row.
    type Rows = HashMap<(String, String), Vec<(Vec<u8>, String, String)>>;
    let mut journaled: Rows = HashMap::new();
    for row in &inbound {
        journaled.entry((s(row, 0), s(row, 1))).or_default().push((
            row.get::<Vec<u8>, _>(2),
            s(row, 3),
            s(row, 4),
        ));
    }
    let answers = partners.answers.lock().unwrap().clone();
    let mut twice = 0;
    for a in &answers {
        if a.delivered == 0 {
            r.defect(format!(
                "answer {} of {} was never delivered",
                a.reference, a.partner
            ));
            continue;
        }
        if a.delivered > 1 {
            twice += 1;
        }
        match journaled
            .get(&(a.partner.clone(), a.reference.clone()))
            .map(Vec::as_slice)
        {
            None | Some([]) => r.defect(format!(
                "answer {} of {} delivered {} times, never journaled (lost)",
                a.reference, a.partner, a.delivered
            )),
            Some([(raw, state, transport)]) => {
                if raw != &a.bytes {
                    r.defect(format!("answer {} journaled with other bytes", a.reference));
                }
                if state != "processed" {
                    r.defect(format!("answer {} left {state}", a.reference));
                }
                let expected = Transport::of(&a.partner)
                    .map(Transport::name)
                    .unwrap_or("?");
                if transport != expected {
                    r.defect(format!(
                        "answer {} journaled as {transport}, sent over {expected}",
                        a.reference
                    ));
                }
            }
            Some(several) => r.defect(format!(
                "answer {} journaled {} times",
                a.reference,
                several.len()
            )),
        }
    }
    let sent_refs: BTreeSet<(String, String)> = answers
        .iter()
        .map(|a| (a.partner.clone(), a.reference.clone()))
        .collect();
    for key in journaled.keys() {
        if !sent_refs.contains(key) {
            r.defect(format!("inbound interchange nobody sent: {key:?}"));
        }
    }
    r.figure("answers sent by the partners", answers.len());
    r.figure("  of them delivered twice (same interchange)", twice);
    r.figure("inbound interchanges journaled", inbound.len());

    // 5. One APERAK per answer, and everything in the outbox sent.
    let acks = query(
        "SELECT journal_id, COUNT(*) FROM outbox WHERE kind = 'ack' GROUP BY journal_id HAVING COUNT(*) > 1",
    )
    .fetch_all(pool)
    .await
    .expect("acks");
    for row in &acks {
        r.defect(format!(
            "{} acknowledgements queued for journal item {}",
            row.get::<i64, _>(1),
            s(row, 0)
        ));
    }
    let ack_count: i64 = query("SELECT COUNT(*) FROM outbox WHERE kind = 'ack'")
        .fetch_one(pool)
        .await
        .expect("ack count")
        .get(0);
    if ack_count != inbound.len() as i64 {
        r.defect(format!(
            "{ack_count} acknowledgements for {} inbound interchanges",
            inbound.len()
        ));
    }
    let unsent =
        query("SELECT id, kind, partner, state, last_error FROM outbox WHERE state <> 'sent'")
            .fetch_all(pool)
            .await
            .expect("outbox");
    for row in &unsent {
        r.defect(format!(
            "outbox item {} ({} to {}) left {}: {}",
            s(row, 0),
            s(row, 1),
            s(row, 2),
            s(row, 3),
            s(row, 4)
        ));
    }

    // 6. What the partners received is what was journaled as sent: every outbound
    // interchange arrived, every copy with the journaled bytes.
    let outbound = query(
        "SELECT partner, interchange_ref, (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw, transport FROM journal WHERE direction = 'out'",
    )
    .fetch_all(pool)
    .await
    .expect("outbound journal");
    let received = partners.received.lock().unwrap().clone();
    let mut copies: HashMap<(String, String), Vec<&super::peers::Copy>> = HashMap::new();
    for c in &received {
        copies
            .entry((c.partner.clone(), c.reference.clone()))
            .or_default()
            .push(c);
    }
    let mut out_keys = BTreeSet::new();
    let mut resent = 0;
    for row in &outbound {
        let key = (s(row, 0), s(row, 1));
        let raw: Vec<u8> = row.get(2);
        let transport = s(row, 3);
        out_keys.insert(key.clone());
        match copies.get(&key) {
            None => r.defect(format!(
                "outbound {} to {} ({transport}) journaled as sent, never received",
                key.1, key.0
            )),
            Some(list) => {
                if list.len() > 1 {
                    resent += 1;
                }
                for c in list {
                    if c.bytes != raw {
                        r.defect(format!(
                            "{} to {} received with other bytes than journaled ({})",
                            key.1, key.0, transport
                        ));
                    }
                    if c.transport.name() != transport {
                        r.defect(format!(
                            "{} to {} journaled as {transport}, came over {}",
                            key.1,
                            key.0,
                            c.transport.name()
                        ));
                    }
                }
            }
        }
    }
    for (key, list) in &copies {
        if !out_keys.contains(key) {
            r.defect(format!(
                "{} received by {} ({} copies) but not journaled as sent",
                key.1,
                key.0,
                list.len()
            ));
        }
        let first = &list[0].bytes;
        if list.iter().any(|c| &c.bytes != first) {
            r.defect(format!(
                "{} sent to {} twice with different bytes",
                key.1, key.0
            ));
        }
        let ids: BTreeSet<&str> = list
            .iter()
            .filter_map(|c| c.as4_message_id.as_deref())
            .collect();
        if ids.len() > 1 {
            r.defect(format!(
                "{} sent to {} under {} AS4 message ids: {ids:?}",
                key.1,
                key.0,
                ids.len()
            ));
        }
    }
    for t in [Transport::File, Transport::Email, Transport::As4] {
        let n = received.iter().filter(|c| c.transport == t).count();
        if n > 0 {
            r.figure(&format!("copies received over {}", t.name()), n);
        }
    }
    r.figure("outbound interchanges journaled", outbound.len());
    r.figure("  of them received more than once (same bytes)", resent);

    // 7. Every mail journaled and handled, no AS4 request refused.
    let mails = query("SELECT outcome, reason FROM mail_journal")
        .fetch_all(pool)
        .await
        .expect("mail journal");
    for row in &mails {
        if s(row, 0) != "journaled" {
            r.defect(format!("a mail ended {}: {}", s(row, 0), s(row, 1)));
        }
    }
    r.figure("mails journaled", mails.len());
    let requests = query("SELECT outcome, COUNT(*) FROM as4_inbox GROUP BY outcome")
        .fetch_all(pool)
        .await
        .expect("AS4 requests");
    let mut outcomes = Vec::new();
    for row in &requests {
        let (outcome, n): (String, i64) = (s(row, 0), row.get(1));
        outcomes.push(format!("{outcome} {n}"));
        if outcome == "refused" {
            let reasons =
                query("SELECT ebms_code, reason FROM as4_inbox WHERE outcome = 'refused'")
                    .fetch_all(pool)
                    .await
                    .expect("refusals");
            for row in reasons {
                r.defect(format!(
                    "AS4 request refused: {} {}",
                    s(&row, 0),
                    s(&row, 1)
                ));
            }
        }
    }
    if !outcomes.is_empty() {
        r.figure("AS4 requests received (by outcome)", outcomes.join(", "));
    }

    // 8. Nothing left behind, nothing unexpected on either side.
    let inbox = data_dir.join("inbox");
    for (what, dir) in [
        ("inbox", inbox.clone()),
        ("inbox/.claimed", inbox.join(".claimed")),
        ("inbox/failed", inbox.join("failed")),
    ] {
        let left = files_in(&dir);
        if !left.is_empty() {
            r.defect(format!(
                "{} files left in {what}: {:?}",
                left.len(),
                &left[..left.len().min(5)]
            ));
        }
    }
    for p in partners.problems.lock().unwrap().iter() {
        r.defect(format!("partner: {p}"));
    }
    for p in logs.panics() {
        r.defect(format!("panic in the gateway: {p}"));
    }
    r
}
