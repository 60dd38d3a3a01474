//! The console's test world: a real gateway (`serve()` in-process, file drop, SQLite file or
//! PostgreSQL) with a §14a order that went out and was rejected by the grid operator's
//! ORDRSP (a hostile free text and a contact in it), an answer that matched nothing (clearing),
//! and a parked outbox item; plus a console login over HTTP.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mako_gateway::config::Config;
use serde_json::{json, Value};

use super::gateway::{sample, Daemon, TOKEN};

/// A partner text no page may show as markup.
pub const HOSTILE: &str = "<script>alert(1)</script> \"quoted\" & 'single'";
/// The grid operator's contact person, as hostile as its free text.
pub const CONTACT: &str = "Klärung <b>Netz</b>";
pub const MALO: &str = "51238696781";
pub const MALO_2: &str = "55123678945";
pub const VNB: &str = "9904292000003";
/// The parked outbox item's id and the partner's answer that parked it.
/// The console's own token (`[console] token`): a login, not an API token.
pub const CONSOLE_TOKEN: &str = "console-only-token-0123456789";
pub const PARKED: &str = "obx_console_parked_1";
pub const PARKED_BECAUSE: &str = "550 5.1.1 <vnb@example.org>: mailbox unavailable";

pub struct World {
    pub daemon: Daemon,
    pub dir: tempfile::TempDir,
    /// The rejected reduction.
    pub rejected: String,
    /// A reduction of an unconfirmed subscription whose (made-up) outbox item is parked.
    pub intended: String,
    /// The ORDRSP that rejected it, as dropped.
    pub answer: Vec<u8>,
    /// The open clearing entry.
    pub clearing: String,
}

fn config(dir: &Path, database_url: Option<&str>) -> Config {
    let database = database_url
        .map(|u| format!("[database]\nurl = {u:?}\n"))
        .unwrap_or_default();
    let text = format!(
        "data_dir = {dir:?}\n[api]\naddr = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\
         [workers]\nlease = \"5s\"\n[shutdown]\ngrace_seconds = 1\n\
         [poll]\nfile_drop = \"50ms\"\ninbound = \"50ms\"\noutbound = \"50ms\"\nwebhooks = \"1s\"\n\
         [retry]\nbase = \"200ms\"\nmax = \"500ms\"\n\
         [console]\ntoken = \"{CONSOLE_TOKEN}\"\n{database}",
        dir = dir.display().to_string(),
    );
    Config::load(Some(&text), &|_| None).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// Writes `bytes` into the file drop's inbox under `name` (a temporary name first).
pub fn drop_into_inbox(dir: &Path, name: &str, bytes: &[u8]) {
    let inbox = dir.join("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    let tmp = inbox.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, inbox.join(name)).unwrap();
}

/// The interchange the gateway wrote to the file drop's outbox with `document` in it.
pub async fn sent_with(daemon: &Daemon, dir: &Path, document: &str) -> Vec<u8> {
    let outbox: PathBuf = dir.join("outbox");
    daemon
        .wait(
            &format!("an interchange with {document} in outbox/"),
            || {
                let outbox = outbox.clone();
                async move {
                    std::fs::read_dir(&outbox).ok()?.find_map(|e| {
                        let bytes = std::fs::read(e.ok()?.path()).ok()?;
                        mako_gateway::store::names_value(&bytes, document).then_some(bytes)
                    })
                }
            },
        )
        .await
}

/// The grid operator's answer: `samples/inbound/<sample>` templated to `sent` by the command
/// the project ships (`mako-gateway answer`), with `text` as its free text and the contact
/// (CTA/COM after NAD+MS, ORDRSP 1.4b SG3) added.
pub fn answer_to(sent: &[u8], sample_name: &str, reference: &str, text: &str) -> Vec<u8> {
    let now = mako_gateway::clock::Clock::system().now().naive_utc();
    let answer =
        mako_gateway::cli::template_answer(&sample(sample_name), sent, now, reference, Some(text))
            .unwrap();
    let answer: String = answer.iter().map(|&b| b as char).collect();
    let contact = "CTA+IC+:Kl\u{e4}rung <b>Netz</b>'\nCOM+klaerung@vnb.example:EM'\n";
    let at = answer.find("NAD+MR+").expect("NAD+MR in the answer");
    let mut out = format!("{}{contact}{}", &answer[..at], &answer[at..]);
    // Two segments more in the message.
    let unt = out.find("UNT+").unwrap();
    let end = out[unt + 4..].find('+').unwrap() + unt + 4;
    let count: u32 = out[unt + 4..end].parse().unwrap();
    out.replace_range(unt + 4..end, &(count + 2).to_string());
    out.chars().map(|c| c as u8).collect()
}

pub async fn world(database_url: Option<&str>) -> World {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(config(dir.path(), database_url)).await;

    // 1. An order goes out and the grid operator rejects it.
    let rejected = daemon.order("sub-rejected", MALO, VNB).await;
    let ordered = daemon
        .wait_for_status(&format!("/grid-fee-reductions/{rejected}"), "ordered")
        .await;
    let document = ordered["order_document"].as_str().unwrap().to_string();
    let sent = sent_with(&daemon, dir.path(), &document).await;
    let answer = answer_to(&sent, "ordrsp_19133_a99_rejected.edi", "NBREJ0001", HOSTILE);
    drop_into_inbox(dir.path(), "rejection.edi", &answer);
    daemon
        .wait_for_status(&format!("/grid-fee-reductions/{rejected}"), "rejected")
        .await;

    // 2. An answer to a document we never sent: clearing.
    let unknown = String::from_utf8_lossy(&sent)
        .replace(&document, "MGZZZZZZZZ")
        .into_bytes();
    let stray = answer_to(
        &unknown,
        "ordrsp_19133_a20_accepted.edi",
        "NBCLR0001",
        HOSTILE,
    );
    drop_into_inbox(dir.path(), "stray.edi", &stray);
    let clearing = daemon
        .wait("a clearing entry", || async {
            let list = daemon.get("/clearing").await;
            list["data"][0]["id"].as_str().map(str::to_string)
        })
        .await;

    // 3. A reduction of an unconfirmed subscription (nothing queued), whose outbox item is
    // made parked here with a partner's refusal: the one state a test cannot reach quickly.
    let intended = daemon
        .post(
            "/grid-fee-reductions",
            json!({"subscription": "sub-parked", "type": "enwg-14a-module-1",
                   "market_location": MALO_2, "grid_operator": VNB, "meter_type": "smart"}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = mako_gateway::clock::Clock::system()
        .now()
        .timestamp_millis();
    sqlx::query(
        "INSERT INTO outbox (id, kind, order_kind, order_id, partner, state, attempts, \
         next_attempt_at, last_error, created_at) \
         VALUES ($1, 'order', 'grid_fee_reduction', $2, $3, 'parked', 5, $4, $5, $4)",
    )
    .bind(PARKED)
    .bind(&intended)
    .bind(VNB)
    .bind(now)
    .bind(PARKED_BECAUSE)
    .execute(daemon.store.pool())
    .await
    .unwrap();

    World {
        daemon,
        dir,
        rejected,
        intended,
        answer,
        clearing,
    }
}

/// The API's view of a resource (for comparing what the console did with what the API sees).
pub async fn api(daemon: &Daemon, path: &str) -> Value {
    daemon.get(path).await
}
