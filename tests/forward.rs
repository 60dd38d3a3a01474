//! Every message for our market partner ID: the routing table, the syntax acknowledgement that
//! never rejects a message for want of a grammar, and the forward feed to the supplier core.
//!
//! - pure: every third-party interchange of `../shared/corpus` read as the inbound worker reads
//!   it: none is rejected whole (CONTRL UCI action 4) because we hold no grammar, every message
//!   we do not handle is forwarded (or refused where the table says so);
//! - the real binary over the file drop on a SQLite file and on PostgreSQL, killed with SIGKILL
//!   twice: every forwarded message is offered until the core takes it and never again after;
//!   the core's APERAK goes out with the right references and is journaled.

mod common;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use common::{corpus_dir, edi_files};
use mako_gateway::acks::{AckContext, ContrlPolicy};
use mako_gateway::edifact::{OwnedInterchange, ReferenceSequence};
use mako_gateway::grammar::Registry;
use mako_gateway::plan::inbound::{read_inbound, AperakState, MessageState, ReadInbound};
use mako_gateway::plan::routing::{Route, RoutingCheck, RoutingTable};
use mako_gateway::store::Store;
use serde_json::{json, Value};
use sqlx::Row;
use support::binary::Binary;

const TOKEN: &str = "forward-test-token-0123456789";
const OWN: &str = "9900000000003";
const PATIENCE: Duration = Duration::from_secs(30);

/// A corpus file with its UNB date placeholders filled and, when `reference` is given, its
/// UNB/UNZ reference replaced (the corpus reuses references; the journal keeps one interchange
/// per partner and reference).
fn prepared(raw: &[u8], reference: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw)
        .replace("{{date}}", "261001")
        .replace("{{time}}", "0815");
    let Some(new_ref) = reference else {
        return text.into_bytes();
    };
    let Some(old_ref) =
        mako_gateway::acks::read_envelope(text.as_bytes()).map(|e| e.control_reference)
    else {
        return text.into_bytes();
    };
    // In UNB as DE0020 (after the date/time composite) and in UNZ as DE0020.
    let mut out = String::new();
    for segment in text.split_inclusive('\'') {
        let trimmed = segment.trim_start();
        if trimmed.starts_with("UNB+") || trimmed.starts_with("UNZ+") {
            let mut parts: Vec<String> = segment.split('+').map(str::to_string).collect();
            let at = if trimmed.starts_with("UNB+") { 5 } else { 2 };
            if let Some(p) = parts.get_mut(at) {
                if let Some(rest) = p.strip_prefix(old_ref.as_str()) {
                    *p = format!("{new_ref}{rest}");
                }
            }
            out.push_str(&parts.join("+"));
        } else {
            out.push_str(segment);
        }
    }
    out.into_bytes()
}

fn read(raw: &[u8], routing: &RoutingTable) -> ReadInbound {
    let check = RoutingCheck {
        table: routing,
        registry: Registry::embedded(),
    };
    let mut context = AckContext {
        registry: Registry::embedded(),
        now: NaiveDate::from_ymd_opt(2026, 10, 1)
            .unwrap()
            .and_hms_opt(9, 0, 0)
            .unwrap(),
        contrl_policy: ContrlPolicy::OnErrors,
        references: ReferenceSequence::new("MG", 1).unwrap(),
        processing: &check,
    };
    read_inbound(raw, &mut context, routing)
}

/// The UCI action code of a CONTRL among the replies (`4` = rejected whole).
fn uci_actions(replies: &[OwnedInterchange]) -> Vec<String> {
    replies
        .iter()
        .map(mako_gateway::plan::inbound::write)
        .flat_map(|bytes| {
            String::from_utf8_lossy(&bytes)
                .split('\'')
                .filter(|s| s.starts_with("UCI+"))
                .filter_map(|s| s.split('+').nth(4).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn reply_types(replies: &[OwnedInterchange]) -> Vec<String> {
    replies
        .iter()
        .flat_map(|ic| ic.messages.iter())
        .map(|m| m.identifier.message_type.clone())
        .collect()
}

#[test]
fn the_mscons_13017_test_message_is_forwarded_not_rejected_with_uci_4() {
    let Some(dir) = corpus_dir() else { return };
    let raw =
        std::fs::read(dir.join("maco-edi-testfiles/inbound_v202604_mscons_13017_1.edi")).unwrap();
    let read = read(&prepared(&raw, None), &RoutingTable::default());
    assert!(
        !uci_actions(&read.replies).contains(&"4".to_string()),
        "{:?}",
        read.replies
    );
    assert_eq!(read.messages.len(), 1, "{:#?}", read.items);
    let m = &read.messages[0];
    assert_eq!(
        (m.message_type.as_str(), m.pid, m.route),
        ("MSCONS", Some(13017), Route::Forward)
    );
    assert_eq!(m.state, MessageState::New);
    // MSCONS 2.4c: we hold no grammar for it, so it goes to the core unchecked, and the core
    // owes the APERAK (the gateway sends none of its own).
    assert!(!m.checked);
    assert_eq!(m.aperak, AperakState::Core);
    assert!(m.aperak_due.is_some());
    assert!(!reply_types(&read.replies).contains(&"APERAK".to_string()));
}

/// The journal outcome is written straight from the report, as the same text the report gave
/// through a `serde_json::Value` (the form it was stored in before).
#[test]
fn the_journal_outcome_text_is_the_report_as_json() {
    let Some(dir) = corpus_dir() else { return };
    let raw =
        std::fs::read(dir.join("maco-edi-testfiles/inbound_v202604_mscons_13017_1.edi")).unwrap();
    let read = read(&prepared(&raw, None), &RoutingTable::default());
    let report = mako_gateway::plan::inbound::InboundReport {
        journal_id: Some("jrn_1".into()),
        facts: read.facts.clone(),
        syntax_errors: vec!["at byte 7: \"quoted\" ü".into()],
        effects: Vec::new(),
        routed: read.messages.clone(),
        replies: vec!["CONTRL".into()],
    };
    let text = report.outcome_text();
    assert_eq!(text, serde_json::to_value(&report).unwrap().to_string());
    assert!(text.contains("\"routed\":[{"), "{text}");
    // Each routed message's findings are embedded as the JSON array they are, not as a string.
    let outcome: serde_json::Value = serde_json::from_str(&text).unwrap();
    let findings = &outcome["routed"][0]["findings"];
    assert!(
        findings.as_array().is_some_and(|f| !f.is_empty()),
        "{findings}"
    );
    assert!(findings[0]["severity"].as_str().is_some(), "{findings}");
    assert_eq!(
        findings,
        &serde_json::from_str::<serde_json::Value>(read.messages[0].findings.as_str()).unwrap()
    );
}

#[test]
fn a_utilmd_55616_we_do_not_process_is_forwarded_and_not_acknowledged_positively() {
    let Some(dir) = corpus_dir() else { return };
    let raw =
        std::fs::read(dir.join("maco-edi-testfiles/inbound_v202604_utilmd_55616_2.edi")).unwrap();
    let read = read(&prepared(&raw, None), &RoutingTable::default());
    assert_eq!(read.messages.len(), 1, "{:#?}", read.items);
    let m = &read.messages[0];
    assert_eq!((m.pid, m.route), (Some(55616), Route::Forward));
    // Either it passed our checks (the core owes the APERAK) or our own negative APERAK went
    // out and it is kept as rejected; never a positive APERAK from the gateway.
    match m.state {
        MessageState::New => assert_eq!(m.aperak, AperakState::Core),
        MessageState::Rejected => assert_eq!(m.aperak, AperakState::Sent),
        other => panic!("{other:?}"),
    }
    for bytes in read.replies.iter().map(mako_gateway::plan::inbound::write) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("BGM+312"),
            "positive APERAK sent"
        );
    }
}

#[test]
fn a_refusing_table_answers_with_its_code_and_forwards_nothing() {
    let Some(dir) = corpus_dir() else { return };
    let raw =
        std::fs::read(dir.join("maco-edi-testfiles/inbound_v202604_utilmd_55616_2.edi")).unwrap();
    let table = RoutingTable::with_overrides([("55616", Route::Refuse)], [], Some("Z37")).unwrap();
    let read = read(&prepared(&raw, None), &table);
    assert_eq!(read.messages[0].state, MessageState::Refused);
    assert_eq!(read.messages[0].aperak, AperakState::Sent);
    let text: String = read
        .replies
        .iter()
        .map(|ic| String::from_utf8_lossy(&mako_gateway::plan::inbound::write(ic)).into_owned())
        .collect();
    assert!(
        text.contains("BGM+313") && text.contains("ERC+Z37'"),
        "{text}"
    );
}

#[test]
fn no_corpus_interchange_is_rejected_whole_for_want_of_a_grammar() {
    let Some(dir) = corpus_dir() else { return };
    let table = RoutingTable::default();
    let (mut forwarded, mut handled, mut unchecked) = (0, 0, 0);
    let mut offences = Vec::new();
    for file in edi_files(&dir) {
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        let raw = prepared(&std::fs::read(&file).unwrap(), None);
        let read = read(&raw, &table);
        // An interchange may be rejected whole for its syntax or for breaking a MIG we hold
        // (whether our unverified MIGs are right is another question), never because we hold
        // no grammar for a message.
        let parsed = mako_gateway::edifact::parse_lenient(&raw);
        let mig_errors = parsed.document.as_ref().is_some_and(|d| {
            d.interchanges().any(|ic| {
                mako_gateway::grammar::validate_interchange(&ic, Registry::embedded())
                    .iter()
                    .any(|r| r.findings.iter().any(|f| f.contrl_code.is_some()))
            })
        });
        if uci_actions(&read.replies).contains(&"4".to_string())
            && read.syntax_errors.is_empty()
            && !mig_errors
        {
            offences.push(format!(
                "{name}: rejected whole without a syntax or MIG error"
            ));
        }
        for m in &read.messages {
            forwarded += 1;
            unchecked += usize::from(!m.checked);
            if m.route == Route::Forward
                && m.state == MessageState::New
                && m.aperak != AperakState::Core
            {
                offences.push(format!(
                    "{name}: forwarded message {} without the core owing its APERAK",
                    m.message_ref
                ));
            }
        }
        handled += read
            .items
            .iter()
            .filter(|i| {
                !matches!(
                    i,
                    mako_gateway::plan::inbound::InboundItem::NotProcessed { .. }
                )
            })
            .count();
    }
    eprintln!(
        "corpus: {forwarded} messages forwarded ({unchecked} unchecked), {handled} items handled"
    );
    assert!(offences.is_empty(), "{offences:#?}");
    assert!(
        forwarded > 100,
        "the corpus holds far more messages we do not handle"
    );
    assert!(unchecked > 0, "MSCONS and others have no grammar here");
}

// ---- the real binary over the file drop, killed twice ----------------------------------------

/// The maco-edi-testfiles interchanges whose messages the default table forwards, each with a
/// reference of its own.
fn forwarded_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let table = RoutingTable::default();
    let mut out = Vec::new();
    for (i, file) in edi_files(&dir.join("maco-edi-testfiles"))
        .iter()
        .enumerate()
    {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("inbound_") {
            continue;
        }
        let raw = prepared(&std::fs::read(file).unwrap(), Some(&format!("FWD{i:04}")));
        let read = read(&raw, &table);
        if read.syntax_errors.is_empty()
            && !read.messages.is_empty()
            && read.messages.iter().all(|m| m.state == MessageState::New)
        {
            out.push((name, raw));
        }
    }
    out
}

fn config_file(dir: &Path) -> PathBuf {
    let path = dir.join("gateway.toml");
    std::fs::write(
        &path,
        "[workers]\ninbound = 2\nlease = \"2s\"\n[poll]\nfile_drop = \"20ms\"\ninbound = \"20ms\"\n\
         outbound = \"20ms\"\nwebhooks = \"20ms\"\n[shutdown]\ngrace_seconds = 1\n",
    )
    .unwrap();
    path
}

async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client
        .request(method, format!("{base}{path}"))
        .bearer_auth(TOKEN);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Every message of the feed with `state` (all pages, small ones to exercise the cursor).
async fn feed(base: &str, state: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/messages?filter[state][eq]={state}&limit=3&cursor={c}"),
            None => format!("/messages?filter[state][eq]={state}&limit=3"),
        };
        let (status, page) = call(base, reqwest::Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn wait_for_feed(base: &str, state: &str, count: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let items = feed(base, state).await;
        if items.len() >= count || started.elapsed() > PATIENCE {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

async fn count(store: &Store, statement: &str) -> i64 {
    sqlx::query(statement)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn feed_across_kills(url: String, data_dir: PathBuf) {
    let Some(corpus) = corpus_dir() else { return };
    let files = forwarded_files(&corpus);
    assert!(files.len() >= 6, "forwarded corpus files: {}", files.len());
    let expected: usize = files
        .iter()
        .map(|(_, raw)| read(raw, &RoutingTable::default()).messages.len())
        .sum();
    eprintln!(
        "feed: {} interchanges, {expected} forwarded messages",
        files.len()
    );
    let config = config_file(data_dir.parent().unwrap());
    let inbox = data_dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();

    // Killed right after the files arrive: whatever was journaled or claimed is picked up
    // again after the restart.
    let mut binary = Binary::start(&url, &data_dir, &config, TOKEN, OWN);
    for (name, raw) in &files {
        mako_gateway::transport::file_drop::write_atomically(&inbox, name, raw).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    binary.kill_9();
    let mut binary = Binary::start(&url, &data_dir, &config, TOKEN, OWN);
    let offered = wait_for_feed(&binary.base, "new", expected).await;
    assert_eq!(offered.len(), expected, "offered: {offered:#?}");
    assert_eq!(ids(&offered).len(), expected, "a message offered twice");
    for m in &offered {
        assert_eq!(m["route"], "forward");
        assert_eq!(m["aperak"]["state"], "core", "{m}");
        assert!(m["age_seconds"].as_i64().unwrap() >= 0);
    }

    // The detail: facts, tree, findings, raw.
    let first = offered[0]["id"].as_str().unwrap().to_string();
    let (status, detail) = call(
        &binary.base,
        reqwest::Method::GET,
        &format!("/messages/{first}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["segments"][0]["tag"], "UNH");
    assert!(detail["raw"].as_str().unwrap().contains("UNB+"));
    assert!(detail["findings"].is_array());
    assert_eq!(
        detail["interchange"]["recipient"].as_str().map(str::len),
        Some(13)
    );

    // The core takes half, then the binary dies again.
    let (taken, kept) = offered.split_at(expected / 2);
    for m in taken {
        let id = m["id"].as_str().unwrap();
        let (status, body) = call(
            &binary.base,
            reqwest::Method::POST,
            &format!("/messages/{id}/ack"),
            None,
        )
        .await;
        assert_eq!(
            (status, body["state"].as_str()),
            (200, Some("taken")),
            "{body}"
        );
    }
    binary.kill_9();
    let binary = Binary::start(&url, &data_dir, &config, TOKEN, OWN);
    let still_new = feed(&binary.base, "new").await;
    assert_eq!(
        ids(&still_new),
        ids(kept),
        "only the messages not taken are offered"
    );
    assert_eq!(ids(&feed(&binary.base, "taken").await), ids(taken));
    let metrics = reqwest::get(format!("{}/metrics", binary.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(&format!("\nmako_messages_new {}\n", kept.len())),
        "{metrics}"
    );
    // Taking again changes nothing.
    let id = taken[0]["id"].as_str().unwrap();
    let (status, again) = call(
        &binary.base,
        reqwest::Method::POST,
        &format!("/messages/{id}/ack"),
        None,
    )
    .await;
    assert_eq!((status, again["state"].as_str()), (200, Some("taken")));

    // The core answers one message with a business rejection: the gateway sends it.
    let answered = kept[0]["id"].as_str().unwrap();
    let (status, body) = call(
        &binary.base,
        reqwest::Method::POST,
        &format!("/messages/{answered}/aperak"),
        Some(json!({"result": "rejected", "errors": [{"code": "Z14", "text": "Marktlokation nicht gefunden"}]})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["aperak"]["state"], "requested");
    let (status, body) = call(
        &binary.base,
        reqwest::Method::POST,
        &format!("/messages/{answered}/aperak"),
        Some(json!({"result": "accepted"})),
    )
    .await;
    assert_eq!(status, 409, "one APERAK per business case: {body}");
    let (status, body) = call(
        &binary.base,
        reqwest::Method::POST,
        &format!("/messages/{}/aperak", kept[1]["id"].as_str().unwrap()),
        Some(json!({"result": "rejected", "errors": [{"code": "Z99", "text": "x"}]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // The APERAK went out over the partner's transport (the file drop) and was journaled.
    let store = Store::connect(&url).await.unwrap();
    let partner = kept[0]["partner"].as_str().unwrap();
    let document = kept[0]["document_number"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let started = Instant::now();
    let aperak = loop {
        let sent: Vec<Vec<u8>> =
            sqlx::query("SELECT (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE direction = 'out' AND partner = $1")
                .bind(partner)
                .fetch_all(store.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<Vec<u8>, _>(0))
                .collect();
        if let Some(raw) = sent
            .into_iter()
            .find(|r| String::from_utf8_lossy(r).contains("ERC+Z14"))
        {
            break String::from_utf8_lossy(&raw).into_owned();
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the requested APERAK was not sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(aperak.contains("BGM+313+"), "{aperak}");
    assert!(aperak.contains(&format!("RFF+AGO:{document}'")), "{aperak}");
    assert!(
        aperak.contains("FTX+Z02+++Marktlokation nicht gefunden'"),
        "{aperak}"
    );
    let received_ref = {
        let journal = kept[0]["journal"].as_str().unwrap();
        sqlx::query("SELECT interchange_ref FROM journal WHERE id = $1")
            .bind(journal)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get::<String, _>(0)
    };
    assert!(
        aperak.contains(&format!("RFF+ACE:{received_ref}'")),
        "{aperak}"
    );

    // One message.received event per message, none twice, across both kills.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE topic = 'message.received'"
        )
        .await,
        expected as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM messages WHERE direction = 'in'"
        )
        .await,
        expected as i64
    );
    // No CONTRL rejected any of them.
    let contrl_rejections = sqlx::query("SELECT (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE direction = 'out'")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .filter(|r| {
            let raw = String::from_utf8_lossy(&r.get::<Vec<u8>, _>(0)).into_owned();
            raw.contains("CONTRL")
                && raw
                    .split('\'')
                    .any(|s| s.starts_with("UCI+") && s.ends_with("+4"))
        })
        .count();
    assert_eq!(contrl_rejections, 0);
    store.close().await;
    let mut binary = binary;
    binary.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_survives_kill_9_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db/gateway.db", dir.path().display());
    feed_across_kills(url, dir.path().join("data")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_survives_kill_9_on_postgres() {
    let Some(db) = support::PgDatabase::create("the_feed_survives_kill_9_on_postgres").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = tokio::spawn(feed_across_kills(db.url.clone(), dir.path().join("data"))).await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
