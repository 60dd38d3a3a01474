//! Regressions found by the crash and fault campaigns (`examples/crash_campaign.rs`,
//! `examples/fault_campaign.rs`), each reproduced here fast and deterministically, on a SQLite
//! file and on PostgreSQL.
//!
//! - An answer that overtakes our record of sending: the partner took the ORDERS and its
//!   ORDRSP was journaled and processed before the outbound worker committed the sending (a
//!   fast partner, a busy database, or a crash between handing it over and the commit). It
//!   went to clearing ("refers to order …, which we did not send") and the order stayed
//!   `ordered` for good. It now waits until the sending is recorded.
//! - An AS4 message the partner receipted while our evidence store failed (a full disk): asx-rs
//!   reports it "delivered but its audit record was not written", not to be resent; it was
//!   taken for the partner's refusal and the outbox item parked, the order never recorded as
//!   sent. It is now a transient failure: resent under the same message id (the partner
//!   answers the duplicate with a receipt again).
//! - A mail whose signature part's Content-Type is not UTF-8 (the `smime_read` fuzz target, from
//!   an AES-CBC mail with a changed ciphertext block: CBC has no integrity, so anybody on the
//!   way can garble the decrypted headers): OpenSSL copies the header into its error queue and
//!   the `openssl` crate unwraps that text as UTF-8; the mail reader panicked, the mail stayed
//!   unmarked and came again after every restart. It is now refused as malformed.
//! - `/health` while PostgreSQL is unreachable: its database check waited for a pool
//!   connection up to the pool's acquire timeout (30 s), so the health check itself hung. It
//!   now answers 503 "unavailable" within `store::PING_TIMEOUT`.

mod support;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeZone, Utc};
use mako_gateway::api::{router, AppState};
use mako_gateway::orders::{PartnerStatusRules, Sender};
use mako_gateway::store::{Store, Transport};
use mako_gateway::transport::{BoxFuture, Outbound, Outgoing, SendError, Sent};
use mako_gateway::worker::inbound::{InboundWorker, INBOUND_BATCH};
use mako_gateway::worker::outbound::{OutboundWorker, Transports};
use mako_gateway::worker::receive::Journal;
use mako_gateway::worker::Leases;
use serde_json::{json, Value};
use sqlx::Row;

const TOKEN: &str = "campaign-regression-token";
/// The IDs of the samples (see samples/README.md).
const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";
const MALO: &str = "51238696781";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 2, 9, 0, 0).unwrap()
}

fn leases() -> Leases {
    Leases {
        lease: std::time::Duration::from_secs(60),
        max_attempts: 3,
        retry_base: std::time::Duration::from_secs(1),
        retry_max: std::time::Duration::from_secs(2),
    }
}

fn sender() -> Sender {
    Sender {
        id: OWN.parse().unwrap(),
        contact_name: None,
        contact_email: None,
    }
}

fn inbound_worker(store: &Store) -> InboundWorker {
    InboundWorker::new(
        store.clone(),
        "inbound-worker".into(),
        leases(),
        sender(),
        PartnerStatusRules::default(),
    )
}

/// Creates a §14a order over the API and confirms it; returns its id.
async fn ordered(store: &Store) -> String {
    let state = AppState::new(store.clone(), vec![TOKEN.to_string()])
        .with_clock(mako_gateway::clock::Clock::fixed(now()))
        .with_own_id(OWN.parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("{base}/grid-fee-reductions"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"subscription": "sub-race", "type": "enwg-14a-module-1",
                       "market_location": MALO, "grid_operator": VNB, "meter_type": "smart"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let confirmed = client
        .post(format!("{base}/subscriptions/sub-race/confirm"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    created["id"].as_str().expect("an order id").to_string()
}

/// `bytes` with every `from` replaced by `to` (byte-wise: the samples are ISO 8859-1).
fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The grid operator's ORDRSP A99 (rejected) to our ORDERS document `document`.
fn rejection(document: &str) -> Vec<u8> {
    let sample = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound/ordrsp_19133_a99_rejected.edi"),
    )
    .unwrap();
    replaced(
        &replaced(&sample, "MG10000000001", document),
        "NB0000000001",
        "RACE00000001",
    )
}

/// The BGM document number of the ORDERS in `interchange`.
fn document_of(interchange: &[u8]) -> String {
    let doc = mako_gateway::edifact::parse(interchange).unwrap();
    let ic = doc.interchanges().next().unwrap();
    let message = ic.messages().next().unwrap();
    let bgm = message.body().find(|s| s.is(b"BGM")).unwrap();
    bgm.value(2, 1).into_owned()
}

/// A partner that answers at once: while our outbound worker hands the ORDERS over (before it
/// records the sending), the partner's ORDRSP is journaled and the inbound worker processes
/// it. Then the hand-over succeeds, or (`refuse`) fails for good.
#[derive(Debug)]
struct AnswersAtOnce {
    store: Store,
    refuse: bool,
    answered: Mutex<Vec<String>>,
}

impl Outbound for AnswersAtOnce {
    fn kind(&self) -> Transport {
        Transport::File
    }

    fn send<'a>(&'a self, interchange: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let document = document_of(interchange.bytes);
            Journal::new(self.store.clone())
                .receive(rejection(&document), Transport::File, interchange.now)
                .await
                .unwrap();
            inbound_worker(&self.store)
                .process_batch(interchange.now, INBOUND_BATCH)
                .await
                .unwrap();
            self.answered.lock().unwrap().push(document);
            if self.refuse {
                return Err(SendError::permanent("550 the partner refuses"));
            }
            Ok(Sent {
                description: "handed over".into(),
            })
        })
    }
}

async fn count(store: &Store, sql: &str, id: &str) -> i64 {
    sqlx::query(sql)
        .bind(id.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

async fn status(store: &Store, id: &str) -> String {
    sqlx::query("SELECT status FROM grid_fee_reductions WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

async fn clearing(store: &Store) -> Vec<String> {
    sqlx::query("SELECT reason FROM clearing")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn answer_state(store: &Store) -> String {
    sqlx::query("SELECT state FROM journal WHERE direction = 'in'")
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get(0)
}

on_both! {
    regression_an_answer_that_overtakes_the_record_of_sending_waits_for_it => overtaking_answer;
    an_answer_to_an_order_that_was_then_parked_goes_to_clearing => overtaking_answer_parked;
}

async fn overtaking_answer(stores: Vec<Store>) {
    let store = stores[0].clone();
    let id = ordered(&store).await;
    let partner = Arc::new(AnswersAtOnce {
        store: store.clone(),
        refuse: false,
        answered: Mutex::default(),
    });
    let outbound = OutboundWorker::new(
        store.clone(),
        "outbound-worker".into(),
        leases(),
        sender(),
        Transports::new(partner.clone()),
    );
    let report = outbound.send_next(now()).await.unwrap().unwrap();
    assert!(report.outcome.starts_with("sent"), "{report:?}");
    assert_eq!(partner.answered.lock().unwrap().len(), 1);
    // The answer came before the record of sending: not applied, not in clearing, waiting.
    assert_eq!(status(&store, &id).await, "ordered");
    assert_eq!(clearing(&store).await, Vec::<String>::new());
    assert_eq!(answer_state(&store).await, "processing");

    // Planned again once the wait is over: now it matches.
    let later = now() + chrono::Duration::seconds(2);
    let inbound = inbound_worker(&store);
    inbound.process_batch(later, INBOUND_BATCH).await.unwrap();
    assert_eq!(status(&store, &id).await, "rejected");
    assert_eq!(clearing(&store).await, Vec::<String>::new());
    assert_eq!(answer_state(&store).await, "processed");
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM status_history WHERE order_id = $1 AND to_status = 'rejected'",
            &id
        )
        .await,
        1
    );
    // Its APERAK is queued once.
    assert_eq!(
        sqlx::query("SELECT COUNT(*) FROM outbox WHERE kind = 'ack'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get::<i64, _>(0),
        1
    );
    assert_eq!(
        inbound.process_batch(later, INBOUND_BATCH).await.unwrap(),
        None
    );
}

async fn overtaking_answer_parked(stores: Vec<Store>) {
    let store = stores[0].clone();
    let id = ordered(&store).await;
    let partner = Arc::new(AnswersAtOnce {
        store: store.clone(),
        refuse: true,
        answered: Mutex::default(),
    });
    let outbound = OutboundWorker::new(
        store.clone(),
        "outbound-worker".into(),
        leases(),
        sender(),
        Transports::new(partner.clone()),
    );
    let report = outbound.send_next(now()).await.unwrap().unwrap();
    assert!(report.outcome.starts_with("parked"), "{report:?}");
    assert_eq!(answer_state(&store).await, "processing");
    // The order was not sent after all: the answer waits no longer and goes to clearing.
    let later = now() + chrono::Duration::seconds(2);
    inbound_worker(&store)
        .process_batch(later, INBOUND_BATCH)
        .await
        .unwrap();
    assert_eq!(answer_state(&store).await, "processed");
    assert_eq!(status(&store, &id).await, "intended");
    let reasons = clearing(&store).await;
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert!(reasons[0].contains("which we did not send"), "{reasons:?}");
}

// ---- /health while the database is unreachable ----------------------------------------------

/// A TCP relay to the PostgreSQL server that can turn into a black hole: connections accepted
/// and never answered, the relayed ones cut (a server that went away without closing
/// anything, as after a network partition).
struct BlackHole {
    addr: std::net::SocketAddr,
    swallow: Arc<std::sync::atomic::AtomicBool>,
    relayed: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl BlackHole {
    async fn to(target: String) -> BlackHole {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let swallow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let relayed: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (s, r) = (swallow.clone(), relayed.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if s.load(std::sync::atomic::Ordering::SeqCst) {
                    held.push(inbound);
                    continue;
                }
                let target = target.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                r.lock().unwrap().push(task.abort_handle());
            }
        });
        BlackHole {
            addr,
            swallow,
            relayed,
        }
    }

    fn swallow(&self) {
        self.swallow
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for task in self.relayed.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_health_answers_at_once_while_postgres_is_unreachable() {
    let Some(db) = support::PgDatabase::create(
        "regression_health_answers_at_once_while_postgres_is_unreachable",
    )
    .await
    else {
        return;
    };
    // The store reaches the server through the relay.
    let url = reqwest::Url::parse(&db.url).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let hole = BlackHole::to(target).await;
    let mut through = url.clone();
    through.set_host(Some("127.0.0.1")).unwrap();
    through.set_port(Some(hole.addr.port())).unwrap();
    let store = Store::connect(through.as_str()).await.unwrap();
    let state = AppState::new(store.clone(), vec![TOKEN.to_string()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    let client = reqwest::Client::new();
    let health = || async {
        let started = std::time::Instant::now();
        let response = client
            .get(format!("{base}/health"))
            .timeout(std::time::Duration::from_secs(20))
            .send()
            .await;
        (started.elapsed(), response)
    };
    let (_, up) = health().await;
    assert_eq!(up.unwrap().status(), 200);

    hole.swallow();
    let (took, down) = health().await;
    let down = down.expect("/health answers while the database is unreachable");
    assert_eq!(down.status(), 503);
    let body: Value = down.json().await.unwrap();
    assert_eq!(body["status"], "unavailable", "{body}");
    // Within the check's own timeout (2 s) and some slack; a health check that waits out the
    // pool's 30 s answers too late for any probe.
    assert!(
        took < std::time::Duration::from_secs(5),
        "/health took {took:?}"
    );
    db.drop_database().await;
}

// ---- AS4: delivered, but the evidence not written -------------------------------------------

/// The fixed test keys of the fuzz targets (`fuzz/keys/`): SM-PKI certificates of us and of
/// the grid operator, with a CRL at `http://127.0.0.1:1/fuzz.crl`.
fn fuzz_key(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/keys")
            .join(name),
    )
    .unwrap()
}

/// An in-process wire: CRL downloads answered with the test CA's CRL, AS4 requests handed to
/// the receiving endpoint, if there is one.
#[derive(Debug, Clone, Default)]
struct Wire {
    receiver: Arc<Mutex<Option<mako_gateway::transport::as4::As4Endpoint>>>,
}

impl asx::HttpClient for Wire {
    fn send(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> asx::BoxFuture<
        '_,
        Result<http::Response<bytes::Bytes>, Box<dyn std::error::Error + Send + Sync>>,
    > {
        Box::pin(async move {
            use http_body_util::BodyExt;
            if request.method() == http::Method::GET {
                return Ok(http::Response::new(bytes::Bytes::from(fuzz_key("crl.der"))));
            }
            let receiver = self.receiver.lock().unwrap().clone().ok_or("no receiver")?;
            let service = receiver.inbound(
                asx::MemoryDedup::default(),
                Some(OWN.to_string()),
                Arc::new(Takes),
            );
            let (parts, body) = request.into_parts();
            let response = service
                .call(http::Request::from_parts(
                    parts,
                    http_body_util::Full::new(body),
                ))
                .await;
            let (parts, body) = response.into_parts();
            Ok(http::Response::from_parts(
                parts,
                body.collect().await?.to_bytes(),
            ))
        })
    }
}

/// The grid operator takes every message.
struct Takes;

impl mako_gateway::transport::as4::MessageSink for Takes {
    fn deliver(
        &self,
        _message: mako_gateway::transport::as4::ReceivedMessage,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<(), mako_gateway::transport::as4::Refusal>>
                + Send
                + '_,
        >,
    > {
        Box::pin(async { Ok(()) })
    }
}

/// Evidence, durable: kept, or (`full`) refused with the error of a full disk (asx-rs keeps
/// the record of a send with its receipt, after the partner answered).
#[derive(Debug)]
struct Evidence {
    full: bool,
}

impl asx::AuditSink for Evidence {
    fn durability(&self) -> asx::AuditDurability {
        asx::AuditDurability::Durable
    }

    fn record<'a>(
        &'a self,
        _record: &'a asx::AuditRecord,
    ) -> asx::BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        let full = self.full;
        Box::pin(async move {
            if full {
                Err("keeping AS4 evidence failed: (code: 13) database or disk is full".into())
            } else {
                Ok(())
            }
        })
    }
}

fn endpoint(
    own: &str,
    own_keys: &str,
    peer: &str,
    peer_keys: &str,
    wire: Wire,
    full: bool,
) -> mako_gateway::transport::as4::As4Endpoint {
    use mako_gateway::transport::as4::{As4Endpoint, As4Partner, As4Settings};
    let pair = |role: &str| {
        asx::KeyPair::from_pem(
            &fuzz_key(&format!("{own_keys}-{role}.pem")),
            &fuzz_key(&format!("{own_keys}-{role}.key")),
        )
        .unwrap()
    };
    let cert = |name: &str| asx::Certificate::from_pem(&fuzz_key(name)).unwrap();
    As4Endpoint::build(As4Settings {
        own_id: own.parse().unwrap(),
        signing: pair("sig"),
        encryption: pair("enc"),
        anchors: vec![cert("ca.pem")],
        crl_signer: None,
        partners: vec![As4Partner {
            id: peer.parse().unwrap(),
            url: Some("https://127.0.0.1:1/as4".into()),
            signing_cert: cert(&format!("{peer_keys}-sig.pem")),
            encryption_cert: cert(&format!("{peer_keys}-enc.pem")),
        }],
        http: wire,
        audit: Evidence { full },
        max_message_bytes: 1 << 20,
        max_payload_bytes: 1 << 20,
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_an_as4_message_delivered_while_the_evidence_store_fails_is_retried_not_parked()
{
    let wire = Wire::default();
    let grid = endpoint(VNB, "partner", OWN, "ours", Wire::default(), false);
    *wire.receiver.lock().unwrap() = Some(grid);
    let ours = endpoint(OWN, "ours", VNB, "partner", wire, true);
    let interchange = format!(
        "UNA:+.? 'UNB+UNOC:3+{OWN}:500+{VNB}:500+260602:0900+MG00000001'UNH+1+ORDERS:D:09B:UN:1.4b'\
         BGM+Z91+MG00000002'UNT+2+1'UNZ+1+MG00000001'"
    );
    let failure = ours
        .send(
            VNB,
            interchange.into_bytes(),
            "ORDERS.txt",
            "regression-1@9900000000003",
            // The receiver checks the timestamp against its clock: the real one.
            std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
        )
        .await
        .expect_err("the evidence store fails");
    assert_eq!(failure.kind, "backend", "{failure}");
    assert!(
        failure.message.contains("delivered"),
        "the partner took it: {failure}"
    );
    assert!(failure.is_transient(), "{failure}");
}

// ---- a hostile MIME header inside an S/MIME mail ------------------------------------------

#[test]
fn regression_a_signature_part_whose_type_is_not_utf8_is_refused_not_a_panic() {
    use mako_gateway::transport::email::smime::{
        decrypt_then_verify, Certificate, Identity, SmimeError,
    };
    let (key, cert) = (fuzz_key("mail-rsa.key"), fuzz_key("mail-rsa.pem"));
    let own = Identity::from_pem(&key, &cert).unwrap();
    let mut inner: Vec<u8> = b"MIME-Version: 1.0\r\nContent-Type: multipart/signed; \
        protocol=\"application/pkcs7-signature\"; micalg=\"sha-256\"; boundary=\"----B1\"\r\n\r\n\
        This is an S/MIME signed message\r\n\r\n------B1\r\nContent-Type: text/plain\r\n\r\n\
        ORDRSP\r\n\r\n------B1\r\nContent-Type: application/pkcs7-si"
        .to_vec();
    inner.extend_from_slice(b"\xff\xfegnature\r\n\r\nMIIB\r\n\r\n------B1--\r\n\r\n");
    // Encrypted to us with AES-CBC, as partners outside the SM-PKI may (no integrity).
    let mut recipients = openssl::stack::Stack::new().unwrap();
    recipients
        .push(openssl::x509::X509::from_pem(&cert).unwrap())
        .unwrap();
    let der = openssl::cms::CmsContentInfo::encrypt(
        &recipients,
        &inner,
        openssl::symm::Cipher::aes_256_cbc(),
        openssl::cms::CMSOptions::BINARY,
    )
    .unwrap()
    .to_der()
    .unwrap();
    let mail = format!(
        "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; \
         name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        openssl::base64::encode_block(&der)
    );
    let refused = decrypt_then_verify(
        mail.as_bytes(),
        &own,
        &[Certificate::from_pem(&cert).unwrap()],
    )
    .expect_err("a signature part of another type");
    assert!(matches!(refused, SmimeError::Malformed { .. }), "{refused}");
    assert!(
        refused.to_string().contains("application/pkcs7-si"),
        "the reason names the header: {refused}"
    );
}
