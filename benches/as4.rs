//! AS4 throughput over loopback: a sender with the grid operator's SM-PKI identity sends
//! interchanges to a gateway (`serve()` in-process, SQLite) over HTTPS with brainpool mutual
//! TLS; every message is signed, encrypted, verified, decrypted, deduplicated, journaled
//! raw and as an interchange, and answered with a signed receipt that the sender verifies.
//!
//! ```text
//! cargo bench --bench as4                        # 500 messages of 20 KiB, 1 and 4 in flight
//! AS4_MESSAGES=20 cargo bench --bench as4        # smoke run (CI)
//! AS4_PAYLOAD_KIB=1024 cargo bench --bench as4   # larger interchanges
//! ```
//!
//! It prints messages/s and the latency of one exchange (median, 99th percentile), and checks
//! that every message was journaled exactly once (`FAIL` and exit 1 if not). The test PKI is
//! made with the openssl CLI, as in the tests.

#[allow(dead_code)]
#[path = "../tests/common/pki.rs"]
mod pki;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mako_gateway::config::Config;
use mako_gateway::daemon::serve::serve;
use mako_gateway::store::Store;
use mako_gateway::transport::as4::https::{HttpsClient, PlainHttpFetcher, TlsSettings};
use mako_gateway::transport::as4::{certificate, key_pair, As4Endpoint, As4Partner, As4Settings};
use mako_gateway::transport::smpki::CrlCache;
use pki::{Pki, SmPkiRole};
use sqlx::Row;

const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An interchange of about `size` bytes from the grid operator, with its own reference.
fn interchange(reference: &str, size: usize) -> Vec<u8> {
    let mut text = format!(
        "UNA:+.? 'UNB+UNOC:3+{VNB}:500+{OWN}:500+260512:0930+{reference}'\
         UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+{reference}'"
    );
    let mut n = 0;
    while text.len() < size {
        n += 1;
        text.push_str(&format!("FTX+ACB+++Position {n} der Antwort {reference}'"));
    }
    text.push_str(&format!("UNT+{}+1'UNZ+1+{reference}'", n + 3));
    text.into_bytes()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let messages = env_usize("AS4_MESSAGES", 500);
    let size = env_usize("AS4_PAYLOAD_KIB", 20) * 1024;

    // PKI with a CRL on loopback.
    let files = Arc::new(Mutex::new(HashMap::new()));
    let crl_url = format!("{}/ca.crl", pki::serve_files(files.clone()));
    let mut pki = Pki::new();
    pki.set_crl_url(&crl_url);
    let issue = |name: &str, id: &str| {
        (
            pki.issue_sm_pki(name, id, SmPkiRole::Signing),
            pki.issue_sm_pki(name, id, SmPkiRole::Encryption),
            pki.issue_sm_pki(name, id, SmPkiRole::Tls),
        )
    };
    let ours = issue("supplier", OWN);
    let vnb = issue("grid", VNB);
    files
        .lock()
        .unwrap()
        .insert("/ca.crl".into(), std::fs::read(pki.crl(&[])).unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let text = format!(
        "own_id = \"{OWN}\"\ndata_dir = {data}\n[api]\naddr = \"127.0.0.1:0\"\n\
         token = \"as4-bench-token-0123456789abcdef\"\n[poll]\ninbound = \"50ms\"\n\
         [as4]\nlisten = \"127.0.0.1:{port}\"\nsigning_key = {sk}\nsigning_cert = {sc}\n\
         encryption_key = {ek}\nencryption_cert = {ec}\ntls_key = {tk}\ntls_cert = {tc}\n\
         trust_anchors = [{ca}]\nmax_payload_bytes = 134217728\n\
         [[partners]]\nid = \"{VNB}\"\ntransport = \"as4\"\n\
         as4_url = \"https://127.0.0.1:1/as4\"\nsigning_cert = {vs}\nencryption_cert = {ve}\n",
        data = q(data.path()),
        sk = q(&ours.0.key),
        sc = q(&ours.0.cert),
        ek = q(&ours.1.key),
        ec = q(&ours.1.cert),
        tk = q(&ours.2.key),
        tc = q(&ours.2.cert),
        ca = q(&pki.ca()),
        vs = q(&vnb.0.cert),
        ve = q(&vnb.1.cert),
    );
    let config = Config::load(Some(&text), &|_| None).expect("bench config");
    let db_url = config.database.url.clone();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(serve(
        config,
        "as4-bench-token-0123456789abcdef".into(),
        mako_gateway::clock::Clock::system(),
        async move {
            let _ = stop_rx.await;
        },
        Some(ready_tx),
    ));
    ready_rx.await.expect("the gateway starts");

    // The sender.
    let tls = TlsSettings::from_pem_files(&vnb.2.key, &vnb.2.cert, &pki.ca()).unwrap();
    let crl = Arc::new(CrlCache::new(
        tls.anchors().to_vec(),
        Arc::new(PlainHttpFetcher::default()),
        mako_gateway::clock::Clock::system(),
    ));
    let expected = HashMap::from([(format!("127.0.0.1:{port}"), OWN.parse().unwrap())]);
    let sender = As4Endpoint::build(As4Settings {
        own_id: VNB.parse().unwrap(),
        signing: key_pair(&vnb.0.cert, &vnb.0.key).unwrap(),
        encryption: key_pair(&vnb.1.cert, &vnb.1.key).unwrap(),
        anchors: vec![certificate(&pki.ca()).unwrap()],
        crl_signer: None,
        partners: vec![As4Partner {
            id: OWN.parse().unwrap(),
            url: Some(format!("https://127.0.0.1:{port}/as4")),
            signing_cert: certificate(&ours.0.cert).unwrap(),
            encryption_cert: certificate(&ours.1.cert).unwrap(),
        }],
        http: HttpsClient::new(&tls, crl, expected).unwrap(),
        audit: asx::testkit::audit::MemoryAuditSink::new(),
        max_message_bytes: 256 * 1024 * 1024,
        max_payload_bytes: 256 * 1024 * 1024,
    })
    .unwrap();

    // Warm-up: CRLs fetched, connections and keys in cache.
    sender
        .send(
            OWN,
            interchange("WARM", size),
            "ORDRSP.txt",
            "warm@bench",
            std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
        )
        .await
        .expect("warm-up message");

    println!(
        "AS4 over HTTPS (brainpool mutual TLS) into a gateway on SQLite: {messages} messages \
         of {} KiB",
        size / 1024
    );
    let mut failed = false;
    let mut sent = 1usize;
    for in_flight in [1usize, 4] {
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..in_flight {
            let sender = sender.clone();
            let latencies = latencies.clone();
            tasks.spawn(async move {
                let mut i = worker;
                while i < messages {
                    let reference = format!("B{in_flight}X{i:08}");
                    let t = Instant::now();
                    sender
                        .send(
                            OWN,
                            interchange(&reference, size),
                            "ORDRSP.txt",
                            &format!("{reference}@bench"),
                            std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
                        )
                        .await
                        .expect("receipted");
                    latencies.lock().unwrap().push(t.elapsed());
                    i += in_flight;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("sender task");
        }
        let elapsed = started.elapsed();
        sent += messages;
        let mut l = latencies.lock().unwrap().clone();
        l.sort();
        println!(
            "  {in_flight} in flight: {:>7.1} messages/s ({:.2} s), latency median {:>6.1} ms, \
             p99 {:>6.1} ms",
            messages as f64 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64(),
            percentile(&l, 0.5).as_secs_f64() * 1000.0,
            percentile(&l, 0.99).as_secs_f64() * 1000.0,
        );
    }

    let store = Store::connect(&db_url).await.unwrap();
    let journaled: i64 =
        sqlx::query("SELECT COUNT(*) FROM journal WHERE direction = 'in' AND transport = 'as4'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0);
    if journaled as usize != sent {
        println!("FAIL: {journaled} interchanges journaled, {sent} sent");
        failed = true;
    } else {
        println!("  check: {sent} messages receipted, {journaled} journaled once each");
    }
    store.close().await;
    let _ = stop_tx.send(());
    let _ = daemon.await;
    if failed {
        std::process::exit(1);
    }
}
