//! The daemon end to end, real parts only: `serve()` in-process on 127.0.0.1:0 with a temporary
//! data directory, a real SQLite file and a fresh PostgreSQL database, orders over real HTTP,
//! inbound files dropped into `data/inbox/` (the samples with their references replaced by the
//! ones the gateway really wrote), outbound files read back from `data/outbox/`, and a real
//! webhook receiver. Then the real binary killed with SIGKILL mid-way and restarted.

#[path = "common/gateway.rs"]
mod gateway;
mod support;

use support::binary::Binary;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mako_gateway::config::Config;
use mako_gateway::daemon::serve::serve;
use mako_gateway::daemon::serve::ServeError;
use mako_gateway::grammar::{message_pid, validate_interchange, Registry};
use mako_gateway::plan::webhooks::{verify, SIGNATURE_HEADER};
use mako_gateway::store::Store;
use mako_gateway::transport::file_drop::write_atomically;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::Row;

const TOKEN: &str = "daemon-test-token-0123456789";
const SECRET: &str = "daemon-test-webhook-secret";
/// The IDs of the samples (see samples/README.md).
const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";
const MSB: &str = "9900000000029";
const MALO: &str = "51238696781";
const MELO: &str = "DE0032106765712000000000000000037";
/// How long a test waits for the loops before it fails.
const PATIENCE: Duration = Duration::from_secs(20);

// ---- databases ------------------------------------------------------------------------------

/// Runs `case` with the URL of a fresh SQLite file and the directory to use as `data_dir`.
async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/db/gateway.db", dir.path().display());
    case(url, dir.path().join("data")).await;
}

/// Runs `case` on a fresh PostgreSQL database, or skips with a notice.
async fn on_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(String, PathBuf) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(db) = support::PgDatabase::create(test).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // In a task so that a failing case still drops its database.
    let outcome = tokio::spawn(case(db.url.clone(), dir.path().join("data"))).await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Declares `<name>::sqlite` and `<name>::postgres` running `$case(url, data_dir)`.
macro_rules! daemon_on_both {
    ($($name:ident => $case:ident;)+) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::on_sqlite(super::$case).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::on_postgres(concat!(stringify!($name), "::postgres"), super::$case).await;
                }
            }
        )+
    };
}

// ---- the webhook receiver -------------------------------------------------------------------

/// One POST the receiver got.
#[derive(Debug, Clone)]
struct Received {
    event_id: String,
    topic: String,
    context: Value,
    signature_valid: bool,
    answered: u16,
    at: Instant,
}

/// A webhook receiver on 127.0.0.1:0 that records every POST; it answers 500 to the first
/// delivery of each event whose topic is in `fail_first`.
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<HashSet<String>>,
}

impl Receiver {
    async fn start(fail_first: &[&str]) -> (Receiver, String) {
        let receiver = Receiver {
            got: Arc::default(),
            fail_first: Arc::new(fail_first.iter().map(|s| s.to_string()).collect()),
        };
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/events",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let state = state.clone();
                    async move { state.take(&headers, &body) }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/events", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, url)
    }

    fn take(&self, headers: &axum::http::HeaderMap, body: &[u8]) -> StatusCode {
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let signature_valid = verify(
            SECRET.as_bytes(),
            signature,
            body,
            mako_gateway::clock::Clock::system().now(),
            300,
        );
        let event: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let event_id = event["id"].as_str().unwrap_or("").to_string();
        let topic = event["topic"].as_str().unwrap_or("").to_string();
        let mut got = self.got.lock().unwrap();
        let seen_before = got.iter().any(|r| r.event_id == event_id);
        let answered = if self.fail_first.contains(&topic) && !seen_before {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        };
        got.push(Received {
            event_id,
            topic,
            context: event["context"].clone(),
            signature_valid,
            answered: answered.as_u16(),
            at: Instant::now(),
        });
        answered
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

// ---- the gateway in-process -----------------------------------------------------------------

/// The configuration of the tests: fast polls, the samples' supplier ID, a partner status rule
/// for the metering operator's IFTSTA 21043 `Z44` (a bilateral arrangement: no market message
/// reports the activation; 21043 is routed to the gateway for it), optionally a webhook
/// receiver.
fn config(url: &str, data_dir: &Path, webhook: Option<&str>) -> Config {
    let webhook = webhook.map_or(String::new(), |u| {
        format!("[webhook]\nurl = {u:?}\nsecret = {SECRET:?}\ntimeout = \"5s\"\n")
    });
    let text = format!(
        r#"
own_id = "{OWN}"
data_dir = {data_dir:?}
[database]
url = {url:?}
max_connections = 8
[api]
addr = "127.0.0.1:0"
token = "{TOKEN}"
{webhook}
[workers]
inbound = 2
lease = "5s"
[shutdown]
grace_seconds = 2
[poll]
file_drop = "20ms"
inbound = "20ms"
outbound = "20ms"
webhooks = "20ms"
[retry]
base = "1s"
max = "2s"
max_attempts = 5
[routing]
pids = {{ "21043" = "handle" }}
[[partners]]
id = "{MSB}"
statuses = [{{ message = "IFTSTA", pid = 21043, code = "Z44", status = "activated" }}]
"#,
        data_dir = data_dir.display().to_string(),
    );
    Config::load(Some(&text), &|_| None).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// A running `serve()` with an HTTP client and a store of its own for looking inside.
struct Daemon {
    base: String,
    client: reqwest::Client,
    store: Store,
    data_dir: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Daemon {
    async fn start(config: Config) -> Daemon {
        Daemon::start_with_clock(config, mako_gateway::clock::Clock::system()).await
    }

    /// [`Daemon::start`] reading the time from `clock`.
    async fn start_with_clock(config: Config, clock: mako_gateway::clock::Clock) -> Daemon {
        let url = config.database.url.clone();
        let data_dir = config.data_dir.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            config,
            TOKEN.to_string(),
            clock,
            async move {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
        ));
        let addr = ready_rx.await.expect("serve() did not start");
        Daemon {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store: Store::connect(&url).await.unwrap(),
            data_dir,
            stop: Some(stop_tx),
            task,
        }
    }

    /// Stops the gateway and waits for it; returns how long that took.
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("serve() did not return")
            .expect("serve() panicked")
            .expect("serve() failed");
        let took = started.elapsed();
        self.store.close().await;
        took
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
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

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Waits until GET `path` shows `status`; returns the resource.
    async fn wait_for_status(&self, path: &str, status: &str) -> Value {
        let started = Instant::now();
        loop {
            let resource = self.get(path).await;
            if resource["status"] == status {
                return resource;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{path} never became {status}: {resource}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops `bytes` into the inbox as `name` and waits until the gateway journaled and
    /// processed it; returns the journal id.
    async fn deliver(&self, name: &str, bytes: &[u8]) -> String {
        let (partner, reference) = envelope(bytes);
        write_atomically(&self.data_dir.join("inbox"), name, bytes).unwrap();
        let started = Instant::now();
        loop {
            let rows = journal_in(&self.store, &partner, &reference).await;
            if let [(id, state)] = &rows[..] {
                if state == "processed" {
                    return id.clone();
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{name} not processed: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The interchanges in `data/outbox/`, by file name.
    fn outbox_files(&self) -> BTreeMap<String, Vec<u8>> {
        let dir = self.data_dir.join("outbox");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| e.unwrap())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect()
    }

    /// Waits until the outbox holds a message of `pid` (or of type `kind` when `pid` is
    /// `None`) answering `pred`; returns the file's bytes.
    async fn wait_for_outbox(
        &self,
        what: &str,
        pred: impl Fn(&OutboxMessage) -> bool,
    ) -> (String, Vec<u8>) {
        let started = Instant::now();
        loop {
            for (name, bytes) in self.outbox_files() {
                if messages_of(&bytes).iter().any(&pred) {
                    return (name, bytes);
                }
            }
            assert!(
                started.elapsed() < PATIENCE,
                "no {what} in the outbox: {:?}",
                self.outbox_files().keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---- bytes ----------------------------------------------------------------------------------

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .unwrap()
}

/// `bytes` with every occurrence of each `from` replaced by its `to` (byte-wise: the samples
/// are ISO 8859-1).
fn replaced(bytes: &[u8], replacements: &[(&str, &str)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for (from, to) in replacements {
        let (from, to) = (from.as_bytes(), to.as_bytes());
        let mut next = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(from) {
                next.extend_from_slice(to);
                i += from.len();
            } else {
                next.push(out[i]);
                i += 1;
            }
        }
        assert_ne!(next, out, "{:?} not found", String::from_utf8_lossy(from));
        out = next;
    }
    out
}

/// A sample whose UNB reference `sample_ref` becomes `new_ref` and whose reference to our
/// order document (`sample_doc`) becomes `doc`.
fn templated(name: &str, sample_ref: &str, new_ref: &str, doc: Option<(&str, &str)>) -> Vec<u8> {
    let mut replacements = vec![(sample_ref, new_ref)];
    if let Some((sample_doc, doc)) = doc {
        replacements.push((sample_doc, doc));
    }
    replaced(&sample(name), &replacements)
}

/// Sender and UNB reference of an interchange.
fn envelope(bytes: &[u8]) -> (String, String) {
    let doc = mako_gateway::edifact::parse(bytes).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let unb = ic.unb();
    (unb.value(2, 1).into_owned(), unb.value(5, 1).into_owned())
}

/// One message of an outbound file.
#[derive(Debug)]
struct OutboxMessage {
    message_type: String,
    pid: Option<u32>,
    document: String,
    recipient: String,
}

fn messages_of(bytes: &[u8]) -> Vec<OutboxMessage> {
    let Ok(doc) = mako_gateway::edifact::parse(bytes) else {
        return Vec::new();
    };
    doc.interchanges()
        .flat_map(|ic| {
            let recipient = ic.unb().value(3, 1).into_owned();
            ic.messages()
                .map(|m| OutboxMessage {
                    message_type: m.message_type().into_owned(),
                    pid: message_pid(&m),
                    document: m
                        .body()
                        .find(|s| s.is(b"BGM"))
                        .map(|s| s.value(2, 1).into_owned())
                        .unwrap_or_default(),
                    recipient: recipient.clone(),
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Validates every message of an outbound file against the embedded grammars.
fn assert_valid(name: &str, bytes: &[u8]) {
    let doc = mako_gateway::edifact::parse(bytes)
        .unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
    for ic in doc.interchanges() {
        for report in validate_interchange(&ic, Registry::embedded()) {
            assert!(
                !report.has_errors(),
                "{name} {}: {:#?}",
                report.identifier,
                report.findings
            );
        }
    }
}

// ---- looking into the store -----------------------------------------------------------------

/// Inbound journal rows `(id, state)` of one interchange.
async fn journal_in(store: &Store, partner: &str, reference: &str) -> Vec<(String, String)> {
    sqlx::query(
        "SELECT id, state FROM journal WHERE direction = 'in' AND partner = $1 AND interchange_ref = $2",
    )
    .bind(partner.to_string())
    .bind(reference.to_string())
    .fetch_all(store.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get::<String, _>("id"), r.get::<String, _>("state")))
    .collect()
}

/// `(from, to, topic, journal_id)` of an order's status history, oldest first.
type Transition = (Option<String>, String, Option<String>, Option<String>);

async fn history(store: &Store, order: &str) -> Vec<Transition> {
    store
        .conn()
        .await
        .unwrap()
        .history(order)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.from, h.to, h.topic, h.journal_id))
        .collect()
}

/// The status changes (history rows with an event) of an order: `(from, to, topic, journal)`.
async fn changes(store: &Store, order: &str) -> Vec<Transition> {
    let all = history(store, order).await;
    let mut seen = HashSet::new();
    for row in &all {
        assert!(
            seen.insert(row.clone()),
            "transition recorded twice: {all:?}"
        );
    }
    all.into_iter().filter(|h| h.2.is_some()).collect()
}

fn change(from: &str, to: &str, topic: &str, journal: &str) -> Transition {
    (
        Some(from.to_string()),
        to.to_string(),
        Some(topic.to_string()),
        Some(journal.to_string()),
    )
}

/// The outbound journal id of the interchange that carried order document `doc`.
async fn sent_journal(store: &Store, doc: &str) -> String {
    sqlx::query("SELECT journal_id FROM sent_messages WHERE document_number = $1")
        .bind(doc.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get("journal_id")
}

/// Waits until the receiver holds a delivered event for each `(topic, order)`; then checks
/// that every event arrived exactly once with a valid signature.
async fn assert_webhooks(receiver: &Receiver, object: &str, expected: &[(&str, &str)]) {
    let started = Instant::now();
    loop {
        let got = receiver.received();
        let delivered: Vec<(String, String)> = got
            .iter()
            .filter(|r| r.answered == 200)
            .map(|r| {
                (
                    r.topic.clone(),
                    r.context[object].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let all_there = expected
            .iter()
            .all(|(t, o)| delivered.contains(&(t.to_string(), o.to_string())));
        if all_there {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "webhooks missing: expected {expected:?}, got {delivered:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nothing else comes later (the loop polls every 20 ms).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = receiver.received();
    let mut per_event: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        assert!(r.signature_valid, "bad signature on {r:?}");
        assert!(r.event_id.starts_with("evt_"), "{r:?}");
        *per_event.entry(&r.event_id).or_default() += 1;
    }
    assert!(
        per_event.values().all(|n| *n == 1),
        "an event arrived twice without a failure: {got:?}"
    );
    let mut topics: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.topic.clone(),
                r.context[object].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    topics.sort();
    let mut expected: Vec<(String, String)> = expected
        .iter()
        .map(|(t, o)| (t.to_string(), o.to_string()))
        .collect();
    expected.sort();
    assert_eq!(topics, expected, "exactly one event per status change");
}

// ---- lifecycles -----------------------------------------------------------------------------

daemon_on_both! {
    a_grid_fee_reduction_goes_from_post_to_ended_driven_by_inbound_files => grid_fee_lifecycle;
    a_rejected_grid_fee_reduction_shows_code_text_and_meaning => grid_fee_rejection;
    a_meter_order_goes_from_post_to_activated_driven_by_inbound_files => meter_lifecycle;
    meter_orders_are_cancelled_by_the_operator_or_the_customer => meter_cancellations;
    the_metering_operators_messages_install_or_block_the_meter_order => meter_milestones;
    the_same_file_delivered_twice_is_journaled_and_applied_once => dedup;
    a_failed_webhook_delivery_is_retried_with_backoff => webhook_retry;
    a_pass_through_goes_out_by_file_drop_and_the_partners_aperak_rejects_it => pass_through;
    the_answers_we_wait_for_are_met_by_their_partner_or_raised_when_overdue => deadlines;
}

/// The deadlines both ways, on a clock the test moves: the ORDERS awaits its APERAK (45
/// minutes) and its ORDRSP (2nd working day); the ORDRSP meets its deadline only when the grid
/// operator sends it; the APERAK that never comes is raised once as overdue; our own APERAK to
/// the ORDRSP is queued with its due time.
async fn deadlines(url: String, data_dir: PathBuf) {
    use std::sync::atomic::{AtomicI64, Ordering};
    // Thursday 2026-10-01 10:00 German time.
    let start = chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 10, 1, 8, 0, 0).unwrap();
    let offset = Arc::new(AtomicI64::new(0));
    let clock = {
        let offset = Arc::clone(&offset);
        mako_gateway::clock::Clock::from_fn(move || {
            start + chrono::Duration::milliseconds(offset.load(Ordering::Relaxed))
        })
    };
    let gw = Daemon::start_with_clock(config(&url, &data_dir, None), clock).await;
    let (status, created) = gw
        .post(
            "/grid-fee-reductions",
            json!({"subscription": "sub-d", "type": "enwg-14a-module-1", "market_location": MALO,
                   "grid_operator": VNB, "meter_type": "smart", "effective_date": "2026-11-01"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/grid-fee-reductions/{}", created["id"].as_str().unwrap());
    gw.post("/subscriptions/sub-d/confirm", json!({})).await;
    let ordered = gw.wait_for_status(&path, "ordered").await;
    let doc = ordered["order_document"].as_str().unwrap().to_string();
    let awaiting = gw.get(&path).await["awaiting"].clone();
    let kinds: Vec<(&str, &str)> = awaiting
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["awaiting"].as_str().unwrap(),
                d["due_at"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("APERAK", "2026-10-01T08:45:00.000Z"),
            ("ORDRSP", "2026-10-05T22:00:00.000Z")
        ],
        "{awaiting}"
    );

    // An ORDRSP naming our document from another market partner meets nothing…
    let forged = replaced(
        &templated(
            "ordrsp_19133_a20_accepted.edi",
            "NB0000000002",
            "FORGED00001",
            Some(("MG10000000001", &doc)),
        ),
        &[(VNB, "9904292000003")],
    );
    gw.deliver("forged.edi", &forged).await;
    // …and changes nothing: it is in clearing, naming the stranger (issue 15 defect 3).
    let clearing = gw.get("/clearing").await;
    assert!(
        clearing["data"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("9904292000003")),
        "{clearing}"
    );
    // …the grid operator's does.
    gw.deliver(
        "ordrsp_a20.edi",
        &templated(
            "ordrsp_19133_a20_accepted.edi",
            "NB0000000002",
            "GF0000000001",
            Some(("MG10000000001", &doc)),
        ),
    )
    .await;
    let awaiting = gw.get(&path).await["awaiting"].clone();
    assert!(awaiting[0]["met_at"].is_null(), "{awaiting}");
    assert_eq!(
        awaiting[1]["met_at"], "2026-10-01T08:00:00.000Z",
        "{awaiting}"
    );

    // Our APERAK to the ORDRSP is queued with its deadline (an ORDRSP: the next working day
    // 12:00, Friday 2 October 10:00 UTC).
    let outbox = gw.get("/outbox").await;
    let dues: Vec<&str> = outbox["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o["due_at"].as_str())
        .collect();
    assert!(dues.contains(&"2026-10-02T10:00:00Z"), "{outbox}");

    // An hour later the APERAK to our ORDERS is overdue: raised once, however often swept.
    offset.store(3_600_000, Ordering::Relaxed);
    let started = Instant::now();
    loop {
        let overdue = gw.get("/deadlines?filter[state][eq]=overdue").await;
        if overdue["data"].as_array().unwrap().len() == 1 {
            assert_eq!(overdue["data"][0]["awaiting"], "APERAK");
            assert_eq!(overdue["data"][0]["reference"], doc.as_str());
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never overdue: {overdue}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(
        count(
            &gw.store,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE topic = 'grid_fee_reduction.answer_overdue'"
        )
        .await,
        1
    );
    assert!(gw.get(&path).await["awaiting"][0]["overdue"] == true);
    gw.stop().await;
}

async fn grid_fee_lifecycle(url: String, data_dir: PathBuf) {
    let (receiver, hook) = Receiver::start(&[]).await;
    let gw = Daemon::start(config(&url, &data_dir, Some(&hook))).await;

    let (status, created) = gw
        .post(
            "/grid-fee-reductions",
            json!({"subscription": "sub-g", "type": "enwg-14a-module-1", "market_location": MALO,
                   "grid_operator": VNB, "meter_type": "smart"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "intended");
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/grid-fee-reductions/{id}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        gw.outbox_files().is_empty(),
        "nothing goes out before the confirmation"
    );

    let (status, body) = gw.post("/subscriptions/sub-g/confirm", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let ordered = gw.wait_for_status(&path, "ordered").await;
    let doc = ordered["order_document"].as_str().unwrap().to_string();
    let (name, orders) = gw
        .wait_for_outbox("ORDERS 17133", |m| {
            m.pid == Some(17133) && m.document == doc
        })
        .await;
    assert!(name.starts_with(&format!("{VNB}_")), "{name}");
    assert_valid(&name, &orders);

    // The acceptance: recorded, no status change.
    let accepted = gw
        .deliver(
            "ordrsp_a20.edi",
            &templated(
                "ordrsp_19133_a20_accepted.edi",
                "NB0000000002",
                "GF0000000001",
                Some(("MG10000000001", &doc)),
            ),
        )
        .await;
    assert_eq!(gw.get(&path).await["status"], "ordered");

    // The billing data: activated, answered with a UTILMD 55220.
    let billing = gw
        .deliver(
            "utilmd_55218.edi",
            &templated(
                "utilmd_55218_billing_data.edi",
                "NB0000000006",
                "GF0000000002",
                None,
            ),
        )
        .await;
    let activated = gw.wait_for_status(&path, "activated").await;
    assert_eq!(activated["valid_from"], "2026-06-01", "{activated}");
    assert_eq!(activated["valid_until"], Value::Null);
    let (name, answer) = gw
        .wait_for_outbox("UTILMD 55220", |m| {
            m.pid == Some(55220) && m.recipient == VNB
        })
        .await;
    assert_valid(&name, &answer);
    // One APERAK back for each of the two answers.
    let started = Instant::now();
    let aperaks = loop {
        let aperaks: Vec<(String, Vec<u8>)> = gw
            .outbox_files()
            .into_iter()
            .filter(|(_, b)| messages_of(b).iter().any(|m| m.message_type == "APERAK"))
            .collect();
        if aperaks.len() >= 2 || started.elapsed() > PATIENCE {
            break aperaks;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(aperaks.len(), 2, "{:?}", gw.outbox_files().keys());
    for (name, bytes) in &aperaks {
        assert_valid(name, bytes);
    }

    // The grid operator closes the period: ended.
    let closed = gw
        .deliver(
            "utilmd_55218_closed.edi",
            &templated(
                "utilmd_55218_period_closed.edi",
                "NB0000000009",
                "GF0000000003",
                None,
            ),
        )
        .await;
    let ended = gw.wait_for_status(&path, "ended").await;
    assert_eq!(ended["valid_from"], "2026-06-01");
    assert_eq!(ended["valid_until"], "2026-12-31", "{ended}");

    let sent = sent_journal(&gw.store, &doc).await;
    assert_eq!(
        changes(&gw.store, &id).await,
        vec![
            change("intended", "ordered", "grid_fee_reduction.ordered", &sent),
            change(
                "ordered",
                "activated",
                "grid_fee_reduction.activated",
                &billing
            ),
            change("activated", "ended", "grid_fee_reduction.ended", &closed),
        ]
    );
    let all = history(&gw.store, &id).await;
    assert_eq!(all[0].0, None, "created: {all:?}");
    assert!(
        all.iter()
            .all(|h| h.3.as_deref() != Some(&accepted) || h.2.is_none()),
        "the acceptance is no status change: {all:?}"
    );
    assert_webhooks(
        &receiver,
        "grid_fee_reduction",
        &[
            ("grid_fee_reduction.ordered", &id),
            ("grid_fee_reduction.activated", &id),
            ("grid_fee_reduction.ended", &id),
        ],
    )
    .await;
    let listed = gw
        .get("/grid-fee-reductions?filter[status][eq]=ended")
        .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], id);
    gw.stop().await;
}

async fn grid_fee_rejection(url: String, data_dir: PathBuf) {
    let (receiver, hook) = Receiver::start(&[]).await;
    let gw = Daemon::start(config(&url, &data_dir, Some(&hook))).await;
    let (status, created) = gw
        .post(
            "/grid-fee-reductions",
            json!({"subscription": "sub-r", "type": "enwg-14a-module-1", "market_location": MALO,
                   "grid_operator": VNB, "meter_type": "smart"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let path = format!("/grid-fee-reductions/{id}");
    gw.post("/subscriptions/sub-r/confirm", json!({})).await;
    let ordered = gw.wait_for_status(&path, "ordered").await;
    let doc = ordered["order_document"].as_str().unwrap().to_string();

    let rejection = gw
        .deliver(
            "ordrsp_a99.edi",
            &templated(
                "ordrsp_19133_a99_rejected.edi",
                "NB0000000001",
                "GR0000000001",
                Some(("MG10000000001", &doc)),
            ),
        )
        .await;
    let rejected = gw.wait_for_status(&path, "rejected").await;
    let r = &rejected["rejection"];
    assert_eq!(r["code"], "A99", "{rejected}");
    assert_eq!(
        r["text"],
        "Steuerbare Verbrauchseinrichtung ist nicht angemeldet (§14a EnWG: Anmeldung nachholen)"
    );
    assert!(
        !r["meaning_de"].as_str().unwrap().is_empty()
            && !r["meaning_en"].as_str().unwrap().is_empty(),
        "{r}"
    );
    assert_eq!(rejected["valid_from"], Value::Null);
    let sent = sent_journal(&gw.store, &doc).await;
    assert_eq!(
        changes(&gw.store, &id).await,
        vec![
            change("intended", "ordered", "grid_fee_reduction.ordered", &sent),
            change(
                "ordered",
                "rejected",
                "grid_fee_reduction.rejected",
                &rejection
            ),
        ]
    );
    assert_webhooks(
        &receiver,
        "grid_fee_reduction",
        &[
            ("grid_fee_reduction.ordered", &id),
            ("grid_fee_reduction.rejected", &id),
        ],
    )
    .await;
    // Re-ordering after a rejection is allowed.
    let (status, again) = gw
        .post(
            "/grid-fee-reductions",
            json!({"subscription": "sub-r", "type": "enwg-14a-module-1", "market_location": MALO,
                   "grid_operator": VNB, "meter_type": "smart"}),
        )
        .await;
    assert_eq!(status, 201, "{again}");
    gw.stop().await;
}

/// Posts a meter order with its Messlokation and waits until it is placed; returns its id and
/// order document.
async fn placed_meter_order(gw: &Daemon, subscription: &str) -> (String, String) {
    let (status, created) = gw
        .post(
            "/meter-orders",
            json!({"subscription": subscription, "market_location": MALO,
                   "metering_location": MELO, "metering_operator": MSB,
                   "customer_contact": {"name": "Jörg Schäfer", "phone": "+4930123456"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let placed = gw
        .wait_for_status(&format!("/meter-orders/{id}"), "placed")
        .await;
    (id, placed["order_document"].as_str().unwrap().to_string())
}

async fn meter_lifecycle(url: String, data_dir: PathBuf) {
    let (receiver, hook) = Receiver::start(&[]).await;
    let gw = Daemon::start(config(&url, &data_dir, Some(&hook))).await;
    let (id, doc) = placed_meter_order(&gw, "sub-m").await;
    let path = format!("/meter-orders/{id}");
    let (name, orders) = gw
        .wait_for_outbox("ORDERS 17011", |m| {
            m.message_type == "ORDERS" && m.document == doc
        })
        .await;
    assert!(name.starts_with(&format!("{MSB}_")), "{name}");
    assert_valid(&name, &orders);
    // The customer's contact for the appointment (AHB ORDERS 17011 [570]); the file is
    // ISO 8859-1.
    let text: String = orders.iter().map(|&b| char::from(b)).collect();
    assert!(
        text.contains("NAD+Z09'CTA+IC+:Jörg Schäfer'COM+?+4930123456:TE'"),
        "{text}"
    );

    let confirmation = gw
        .deliver(
            "ordrsp_19005.edi",
            &templated(
                "ordrsp_19005_e0250_a02_confirmed.edi",
                "MS0000000001",
                "MO0000000001",
                Some(("MG00000007", &doc)),
            ),
        )
        .await;
    let scheduled = gw.wait_for_status(&path, "scheduled").await;
    assert_eq!(
        scheduled["appointment_at"], "2026-06-14T22:00:00.000Z",
        "{scheduled}"
    );

    let installation = gw
        .deliver(
            "utilmd_55653.edi",
            &templated(
                "utilmd_55653_imsys_installed.edi",
                "MSB0000000051",
                "MO0000000002",
                None,
            ),
        )
        .await;
    let installed = gw.wait_for_status(&path, "installed").await;
    assert_eq!(
        installed["installed_at"], "2026-06-14T22:00:00.000Z",
        "{installed}"
    );
    assert_eq!(installed["installation"]["gateway"], "EPPC0212345678");

    let activation = gw
        .deliver(
            "iftsta_21043_z44.edi",
            &replaced(
                &sample("iftsta_21043_z43_partner_status.edi"),
                &[
                    ("MSB0000000041", "MO0000000003"),
                    ("MG00000007", &doc),
                    ("STS+Z21+Z43+A02:E_0528", "STS+Z21+Z44+A01:E_0526"),
                ],
            ),
        )
        .await;
    let activated = gw.wait_for_status(&path, "activated").await;
    assert!(activated["activated_at"].is_string(), "{activated}");
    assert_eq!(activated["appointment_at"], "2026-06-14T22:00:00.000Z");

    let sent = sent_journal(&gw.store, &doc).await;
    assert_eq!(
        changes(&gw.store, &id).await,
        vec![
            change("created", "placed", "meter_order.placed", &sent),
            change(
                "placed",
                "scheduled",
                "meter_order.scheduled",
                &confirmation
            ),
            change(
                "scheduled",
                "installed",
                "meter_order.installed",
                &installation
            ),
            change(
                "installed",
                "activated",
                "meter_order.activated",
                &activation
            ),
        ]
    );
    assert_webhooks(
        &receiver,
        "meter_order",
        &[
            ("meter_order.placed", &id),
            ("meter_order.scheduled", &id),
            ("meter_order.installed", &id),
            ("meter_order.activated", &id),
        ],
    )
    .await;
    gw.stop().await;
}

/// Table-driven through the real inbound path: per sample of the metering operator (UTILMD
/// 55653 and IFTSTA 21025, FV2604 and FV2610) the order's status, dates and reason; the same
/// message from the grid operator changes nothing and goes to clearing.
async fn meter_milestones(url: String, data_dir: PathBuf) {
    let gw = Daemon::start(config(&url, &data_dir, None)).await;
    // sample, its UNB reference, sender, status, installed_at, blocked reason code
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        &'a str,
        Option<&'a str>,
        Option<&'a str>,
    );
    let cases: [Case; 5] = [
        (
            "utilmd_55653_imsys_installed.edi",
            "MSB0000000051",
            MSB,
            "installed",
            Some("2026-06-14T22:00:00.000Z"),
            None,
        ),
        (
            "utilmd_55653_imsys_installed_fv2610.edi",
            "MSB0000000061",
            MSB,
            "installed",
            Some("2026-12-06T23:00:00.000Z"),
            None,
        ),
        (
            "iftsta_21025_e0286_a01_no_access.edi",
            "MSB0000000052",
            MSB,
            "placed",
            None,
            Some("A01"),
        ),
        (
            "iftsta_21025_e0286_a99_other_fv2610.edi",
            "MSB0000000062",
            MSB,
            "placed",
            None,
            Some("A99"),
        ),
        // The grid operator is not the party the order went to.
        (
            "utilmd_55653_imsys_installed.edi",
            "MSB0000000051",
            VNB,
            "placed",
            None,
            None,
        ),
    ];
    for (i, (file, reference, sender, status, installed_at, blocked)) in
        cases.into_iter().enumerate()
    {
        let (id, _) = placed_meter_order(&gw, &format!("sub-ms-{i}")).await;
        let new_ref = format!("MM{i:011}");
        let mut bytes = replaced(&sample(file), &[(reference, new_ref.as_str())]);
        if sender != MSB {
            bytes = replaced(&bytes, &[(MSB, sender)]);
        }
        gw.deliver(&format!("milestone-{i}.edi"), &bytes).await;
        let order = gw.get(&format!("/meter-orders/{id}")).await;
        assert_eq!(order["status"], status, "{file} from {sender}: {order}");
        assert_eq!(
            order["installed_at"].as_str(),
            installed_at,
            "{file}: {order}"
        );
        assert_eq!(
            order["blocked_reason"]["code"].as_str(),
            blocked,
            "{file}: {order}"
        );
        assert_eq!(
            order["blocked_at"].is_string(),
            blocked.is_some(),
            "{order}"
        );
        if sender != MSB {
            let clearing = gw.get("/clearing").await;
            assert!(
                clearing["data"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["reason"].as_str().unwrap_or("").contains(VNB)),
                "{clearing}"
            );
        }
        // Each order is the only open one at the Messlokation: cancel it for the next case.
        let (status, body) = gw
            .post(&format!("/meter-orders/{id}/cancel"), json!({}))
            .await;
        assert!(status == 200 || status == 409, "{body}");
    }
    gw.stop().await;
}

async fn meter_cancellations(url: String, data_dir: PathBuf) {
    let (receiver, hook) = Receiver::start(&[]).await;
    let gw = Daemon::start(config(&url, &data_dir, Some(&hook))).await;

    // An answer of the offer route (E_0283, BGM+Z93: "bestellte Technik liegt bereits vor")
    // answers no order of ours: clearing, the order stays placed. The core learns that an
    // iMSys is there and cancels with `pre_existing`.
    let (pre, doc) = placed_meter_order(&gw, "sub-pre").await;
    let offer_answer = replaced(
        &sample("ordrsp_19006_e0250_a03_no_authorisation.edi"),
        &[
            ("MG00000007", &doc),
            ("BGM+Z12", "BGM+Z93"),
            ("AJT+A03+E_0250", "AJT+A01+E_0283"),
        ],
    );
    let (_, reference) = envelope(&offer_answer);
    let offer_answer = replaced(&offer_answer, &[(reference.as_str(), "MC0000000001")]);
    gw.deliver("ordrsp_e0283_a01.edi", &offer_answer).await;
    let view = gw.get(&format!("/meter-orders/{pre}")).await;
    assert_eq!(view["status"], "placed");
    // Nor does it meet the ORDRSP we wait for (regression of merging the offer-route decision
    // with the deadlines: an ORDRSP naming our document used to meet it on any decision tree).
    let ordrsp: Vec<&Value> = view["awaiting"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["awaiting"] == "ORDRSP")
        .collect();
    assert_eq!(ordrsp.len(), 1, "{view}");
    assert!(ordrsp[0]["met_at"].is_null(), "{view}");
    let clearing = gw.get("/clearing").await;
    assert!(
        clearing["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["reason"].as_str().unwrap_or("").contains("E_0283")),
        "{clearing}"
    );
    let (status, body) = gw
        .post(
            &format!("/meter-orders/{pre}/cancel"),
            json!({"reason": "pre_existing"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["cancelled_reason"], "pre_existing", "{body}");
    let sent = sent_journal(&gw.store, &doc).await;
    let rows = changes(&gw.store, &pre).await;
    assert_eq!(
        rows[0],
        change("created", "placed", "meter_order.placed", &sent)
    );
    assert_eq!(
        rows[1..],
        [(
            Some("placed".into()),
            "cancelled".into(),
            Some("meter_order.cancelled".into()),
            None
        )]
    );

    // The customer cancels through the API.
    let (customer, _) = placed_meter_order(&gw, "sub-cust").await;
    let (status, body) = gw
        .post(&format!("/meter-orders/{customer}/cancel"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let cancelled = gw
        .wait_for_status(&format!("/meter-orders/{customer}"), "cancelled")
        .await;
    assert_eq!(cancelled["cancelled_reason"], "customer_request");
    let rows = changes(&gw.store, &customer).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[1],
        (
            Some("placed".into()),
            "cancelled".into(),
            Some("meter_order.cancelled".into()),
            None
        ),
        "an API action has no journal entry"
    );
    assert_webhooks(
        &receiver,
        "meter_order",
        &[
            ("meter_order.placed", &pre),
            ("meter_order.cancelled", &pre),
            ("meter_order.placed", &customer),
            ("meter_order.cancelled", &customer),
        ],
    )
    .await;
    gw.stop().await;
}

async fn dedup(url: String, data_dir: PathBuf) {
    let gw = Daemon::start(config(&url, &data_dir, None)).await;
    let (id, doc) = placed_meter_order(&gw, "sub-d").await;
    let bytes = templated(
        "ordrsp_19005_e0250_a02_confirmed.edi",
        "MS0000000001",
        "DD0000000001",
        Some(("MG00000007", &doc)),
    );
    // Twice at once (one pickup), and once more after it was processed, under other names.
    let inbox = data_dir.join("inbox");
    write_atomically(&inbox, "copy-1.edi", &bytes).unwrap();
    write_atomically(&inbox, "copy-2.edi", &bytes).unwrap();
    let journal = gw.deliver("copy-3.edi", &bytes).await;
    gw.wait_for_status(&format!("/meter-orders/{id}"), "scheduled")
        .await;
    let started = Instant::now();
    while std::fs::read_dir(inbox.join("done")).unwrap().count() < 3 {
        assert!(started.elapsed() < PATIENCE, "not all copies picked up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the loops run a little more: nothing may happen with the copies.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (partner, reference) = envelope(&bytes);
    assert_eq!(
        journal_in(&gw.store, &partner, &reference).await,
        vec![(journal.clone(), "processed".to_string())],
        "journaled once"
    );
    let applied: Vec<Transition> = history(&gw.store, &id)
        .await
        .into_iter()
        .filter(|h| h.3.as_deref() == Some(&journal))
        .collect();
    assert_eq!(applied.len(), 1, "applied once: {applied:?}");
    let acks: i64 = sqlx::query("SELECT COUNT(*) AS n FROM outbox WHERE journal_id = $1")
        .bind(journal.clone())
        .fetch_one(gw.store.pool())
        .await
        .unwrap()
        .get("n");
    assert_eq!(acks, 1, "one APERAK back, not three");
    let mut done: Vec<String> = std::fs::read_dir(inbox.join("done"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    done.sort();
    assert_eq!(
        done,
        ["copy-1.edi", "copy-2.edi", "copy-3.edi"]
            .iter()
            .map(|n| format!("{journal}--{n}"))
            .collect::<Vec<_>>(),
        "every copy acknowledged with the one journal entry"
    );
    gw.stop().await;
}

/// Waits until the pass-through message at `path` is in `state`; returns it.
async fn wait_for_state(gw: &Daemon, path: &str, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let message = gw.get(path).await;
        if message["state"] == state {
            return message;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{path} never became {state}: {message}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pass_through(url: String, data_dir: PathBuf) {
    let gw = Daemon::start(config(&url, &data_dir, None)).await;
    let (status, created) = gw
        .post(
            "/interchanges",
            json!({"partner": VNB, "message": gateway::core_utilmd()}),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let id = created["data"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/interchanges/{id}");

    // Out through the file drop: the bytes journaled when the core handed it over, valid.
    let (name, bytes) = gw
        .wait_for_outbox("the pass-through UTILMD", |m| {
            m.message_type == "UTILMD" && m.document == gateway::CORE_DOCUMENT
        })
        .await;
    assert_valid(&name, &bytes);
    let sent = wait_for_state(&gw, &path, "sent").await;
    assert_eq!(sent["transport"], "file", "{sent}");
    assert!(sent["aperak_due"].is_string(), "{sent}");
    assert_eq!(sent["overdue"], false);
    let journaled: Vec<u8> = sqlx::query("SELECT (SELECT r.raw FROM journal_raw r WHERE r.journal_id = journal.id) AS raw FROM journal WHERE id = $1")
        .bind(sent["journal_id"].as_str().unwrap())
        .fetch_one(gw.store.pool())
        .await
        .unwrap()
        .get("raw");
    assert_eq!(journaled, bytes);
    let (sender, reference) = envelope(&bytes);
    assert_eq!(sender, OWN);
    assert_eq!(sent["interchange_ref"], reference.as_str());

    // The grid operator's APERAK 313 dropped into the inbox: rejected with its code and text.
    let answer = gw
        .deliver(
            "aperak_pass_through.edi",
            &gateway::partner_aperak(&reference, "PT0000000001"),
        )
        .await;
    let rejected = wait_for_state(&gw, &path, "rejected").await;
    assert_eq!(rejected["answer"]["codes"], json!(["Z29"]), "{rejected}");
    assert_eq!(rejected["answer"]["journal_id"], answer.as_str());
    assert_eq!(
        rejected["answer"]["acknowledgement"]["errors"][0]["text"][0],
        "Segment 12 LOC: Marktlokation fehlt"
    );
    let listed = gw.get("/interchanges?filter[state][eq]=rejected").await;
    assert_eq!(listed["data"][0]["id"], id.as_str());
    gw.stop().await;
}

async fn webhook_retry(url: String, data_dir: PathBuf) {
    let (receiver, hook) = Receiver::start(&["meter_order.placed"]).await;
    let gw = Daemon::start(config(&url, &data_dir, Some(&hook))).await;
    let (id, _) = placed_meter_order(&gw, "sub-w").await;
    let started = Instant::now();
    let attempts = loop {
        let attempts: Vec<Received> = receiver
            .received()
            .into_iter()
            .filter(|r| r.topic == "meter_order.placed")
            .collect();
        if attempts.iter().any(|r| r.answered == 200) {
            break attempts;
        }
        assert!(started.elapsed() < PATIENCE, "never retried: {attempts:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0].answered, 500);
    assert_eq!(attempts[0].event_id, attempts[1].event_id, "the same event");
    assert_eq!(attempts[1].context["meter_order"], id);
    assert!(attempts.iter().all(|a| a.signature_valid));
    let waited = attempts[1].at - attempts[0].at;
    assert!(
        waited >= Duration::from_millis(750),
        "retried after {waited:?}, before the backoff (retry.base = 1s, spread at most a quarter)"
    );
    // The gateway records the delivery once the receiver's answer is in.
    let started = Instant::now();
    loop {
        let row = sqlx::query("SELECT state, attempts FROM webhook_deliveries WHERE id = $1")
            .bind(attempts[0].event_id.clone())
            .fetch_one(gw.store.pool())
            .await
            .unwrap();
        let state: String = row.get("state");
        if state == "delivered" {
            assert_eq!(row.get::<i64, _>("attempts"), 2);
            break;
        }
        assert!(started.elapsed() < PATIENCE, "still {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.stop().await;
}

// ---- graceful shutdown ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn serve_returns_within_the_grace_period_with_a_delivery_hanging() {
    // A receiver that takes the request and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/events", listener.local_addr().unwrap());
    let hung = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hung.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gateway.db", dir.path().display());
    let config = config(&url, &dir.path().join("data"), Some(&hook));
    let grace = config.shutdown.grace;
    let gw = Daemon::start(config).await;
    placed_meter_order(&gw, "sub-s").await;
    let started = Instant::now();
    while hung.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < PATIENCE, "the webhook never went out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let base = gw.base.clone();
    let took = gw.stop().await;
    assert!(
        took >= grace.saturating_sub(Duration::from_millis(100)),
        "a delivery was in flight: serve() waited for it ({took:?})"
    );
    assert!(
        took < grace + Duration::from_secs(1),
        "took {took:?}, grace {grace:?}"
    );
    assert!(
        reqwest::get(format!("{base}/health")).await.is_err(),
        "the API is closed after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_serve_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gateway.db", dir.path().display());
    let gw = Daemon::start(config(&url, &dir.path().join("data"), None)).await;
    assert_eq!(gw.get("/health").await["status"], "ok");
    let took = gw.stop().await;
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

// ---- kill -9 mid-way ------------------------------------------------------------------------

/// A count from the store.
async fn count(store: &Store, statement: &str) -> i64 {
    sqlx::query(statement)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// Rows of `(label, count)` that should not exist.
async fn offending(store: &Store, statement: &str) -> Vec<String> {
    sqlx::query(statement)
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            format!(
                "{:?} x{}",
                r.get::<Option<String>, _>(0),
                r.get::<i64, _>(1)
            )
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

daemon_on_both! {
    nothing_is_lost_or_applied_twice_when_the_binary_is_killed_mid_way => kill_and_restart;
}

async fn kill_and_restart(url: String, data_dir: PathBuf) {
    /// Orders; each gets an ORDRSP A99 and an APERAK Z29 (both reject it, whichever comes
    /// first makes the transition), and a fifth of the files comes twice.
    const ORDERS: usize = 100;
    let started = Instant::now();
    let config_file = data_dir.with_file_name("gateway.toml");
    std::fs::write(
        &config_file,
        "[workers]\ninbound = 2\nlease = \"2s\"\n[shutdown]\ngrace_seconds = 2\n\
         [poll]\nfile_drop = \"20ms\"\ninbound = \"20ms\"\noutbound = \"20ms\"\nwebhooks = \"20ms\"\n",
    )
    .unwrap();
    let mut binary = Binary::start(&url, &data_dir, &config_file, TOKEN, OWN);
    let client = reqwest::Client::new();
    for i in 0..ORDERS {
        let subscription = format!("k-{i:03}");
        let response = client
            .post(format!("{}/grid-fee-reductions", binary.base))
            .bearer_auth(TOKEN)
            .json(
                &json!({"subscription": subscription, "type": "enwg-14a-module-1",
                          "market_location": MALO, "grid_operator": VNB, "meter_type": "smart"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let response = client
            .post(format!(
                "{}/subscriptions/{subscription}/confirm",
                binary.base
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let store = Store::connect(&url).await.unwrap();
    while count(
        &store,
        "SELECT COUNT(*) FROM grid_fee_reductions WHERE status = 'ordered'",
    )
    .await
        < ORDERS as i64
    {
        assert!(started.elapsed() < PATIENCE, "orders not sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The answers, templated with what the gateway really sent.
    let sent = sqlx::query(
        "SELECT document_number, interchange_ref FROM sent_messages WHERE order_id IS NOT NULL ORDER BY order_id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(sent.len(), ORDERS);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, row) in sent.iter().enumerate() {
        let doc: String = row.get("document_number");
        let interchange: String = row.get("interchange_ref");
        files.push((
            format!("k{i:03}-ordrsp.edi"),
            templated(
                "ordrsp_19133_a99_rejected.edi",
                "NB0000000001",
                &format!("KA{i:010}"),
                Some(("MG10000000001", &doc)),
            ),
        ));
        files.push((
            format!("k{i:03}-aperak.edi"),
            replaced(
                &sample("aperak_313_z29.edi"),
                &[
                    ("NB0000000003", &format!("KB{i:010}")),
                    ("RFF+ACE:MG10000000001", &format!("RFF+ACE:{interchange}")),
                    ("RFF+AGO:MG10000000001", &format!("RFF+AGO:{doc}")),
                ],
            ),
        ));
    }
    let inbox = data_dir.join("inbox");
    let (first, second) = files.split_at(120);
    for (name, bytes) in first {
        write_atomically(&inbox, name, bytes).unwrap();
    }
    // Kill -9 as soon as the first interchanges are through.
    while count(
        &store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state = 'processed'",
    )
    .await
        < 10
    {
        assert!(started.elapsed() < PATIENCE, "nothing processed");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    binary.kill_9();
    let processed_at_kill = count(
        &store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state = 'processed'",
    )
    .await;
    let journaled_at_kill = count(
        &store,
        "SELECT COUNT(*) FROM journal WHERE direction = 'in'",
    )
    .await;
    let claimed_at_kill = files_in(&inbox.join(".claimed")).len();
    let waiting_at_kill = files_in(&inbox).len();
    eprintln!(
        "killed after {:?}: {processed_at_kill} processed, {journaled_at_kill} journaled, \
         {claimed_at_kill} claimed files, {waiting_at_kill} waiting in the inbox",
        started.elapsed()
    );
    assert!(
        (processed_at_kill as usize) < first.len(),
        "killed mid-way through the first batch, not after it"
    );

    // While it is down: the rest, and copies of 20 files already delivered.
    for (name, bytes) in second {
        write_atomically(&inbox, name, bytes).unwrap();
    }
    for (name, bytes) in first.iter().step_by(6) {
        write_atomically(&inbox, &format!("again-{name}"), bytes).unwrap();
    }
    let delivered = files.len() + first.iter().step_by(6).count();

    let mut binary = Binary::start(&url, &data_dir, &config_file, TOKEN, OWN);
    loop {
        let pending = count(
            &store,
            "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state <> 'processed'",
        )
        .await;
        let journaled = count(
            &store,
            "SELECT COUNT(*) FROM journal WHERE direction = 'in'",
        )
        .await;
        let left = files_in(&inbox).len() + files_in(&inbox.join(".claimed")).len();
        if pending == 0 && left == 0 && journaled == files.len() as i64 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "not finished after the restart: {pending} pending, {journaled} journaled, {left} files left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every file journaled exactly once, every one moved to done/.
    assert_eq!(
        offending(
            &store,
            "SELECT interchange_ref, COUNT(*) FROM journal WHERE direction = 'in' \
             GROUP BY partner, interchange_ref HAVING COUNT(*) > 1"
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(files_in(&inbox.join("done")).len(), delivered);
    // Every order rejected exactly once, no transition twice.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM grid_fee_reductions WHERE status = 'rejected'"
        )
        .await,
        ORDERS as i64
    );
    assert_eq!(
        offending(
            &store,
            "SELECT order_id, COUNT(*) FROM status_history \
             GROUP BY order_id, from_status, to_status HAVING COUNT(*) > 1"
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM status_history WHERE to_status = 'rejected'"
        )
        .await,
        ORDERS as i64
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM webhook_deliveries WHERE topic = 'grid_fee_reduction.rejected'"
        )
        .await,
        ORDERS as i64
    );
    // One APERAK back per ORDRSP (none on an APERAK), none twice.
    assert_eq!(
        offending(
            &store,
            "SELECT journal_id, COUNT(*) FROM outbox WHERE kind = 'ack' \
             GROUP BY journal_id HAVING COUNT(*) > 1"
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM outbox WHERE kind = 'ack'").await,
        ORDERS as i64
    );
    // Graceful stop of the survivor.
    std::process::Command::new("kill")
        .arg("-TERM")
        .arg(binary.child.id().to_string())
        .status()
        .unwrap();
    let stopping = Instant::now();
    loop {
        if let Some(status) = binary.child.try_wait().unwrap() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "no stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    store.close().await;
    eprintln!("kill test took {:?}", started.elapsed());
}
