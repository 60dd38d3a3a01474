//! AS4 throughput over loopback: a sender with the grid operator's SM-PKI identity sends
//! interchanges to a gateway (`serve()`, SQLite) over HTTPS with brainpool mutual TLS; every
//! message is signed, encrypted, verified, decrypted, deduplicated, journaled raw and as an
//! interchange, and answered with a signed receipt that the sender verifies.
//!
//! The sender runs in a second process (this bench started again with `AS4_BENCH_SENDER`
//! set), so that the gateway's CPU time can be measured alone: this process reads its own
//! CPU time (`/proc/self/stat`) around each run.
//!
//! ```text
//! cargo bench --bench as4                        # 500 messages of 20 KiB, 1 and 8 in flight
//! AS4_MESSAGES=20 cargo bench --bench as4        # smoke run (CI)
//! AS4_PAYLOAD_KIB=1024 cargo bench --bench as4   # larger interchanges
//! AS4_IN_FLIGHT=1,4,8 cargo bench --bench as4    # other concurrencies
//! ```
//!
//! It prints messages/s and the latency of one exchange (median, 99th percentile) next to the
//! targets of issue 16 (≥ 200 messages/s with 8 in flight, p99 < 250 ms), the gateway's CPU
//! time per message, and the brainpoolP256r1 operation limit measured in the same run with
//! OpenSSL on one core (ECDSA sign, verify, ECDH) with the ratio of the two. It checks that
//! every message was journaled exactly once (`FAIL` and exit 1 if not, or if a send failed).
//! Missing a target is reported, not failed (the CI machine's speed is not ours). The test
//! PKI is made with the openssl CLI, as in the tests.

#[allow(dead_code)]
#[path = "../tests/common/pki.rs"]
mod pki;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
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

/// Issue 16's targets: messages/s with 8 in flight, and the 99th percentile latency.
const TARGET_PER_SECOND: f64 = 200.0;
const TARGET_IN_FLIGHT: usize = 8;
const TARGET_P99: Duration = Duration::from_millis(250);

/// Brainpool operations the gateway makes per received message once the connection is kept:
/// ECDSA verify of the message signature and of the signer certificate's signature (the CRL
/// is cached), one ECDH with our encryption key (the sender's ephemeral key), one ECDSA sign
/// (the receipt). The sender makes about as many again (sign, ephemeral ECDH key and
/// agreement, receipt and certificate verify): the issue's "~10 per exchange".
const GATEWAY_SIGNS: f64 = 1.0;
const GATEWAY_VERIFIES: f64 = 2.0;
const GATEWAY_ECDHS: f64 = 1.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the gateway")))
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = if std::env::var_os("AS4_BENCH_SENDER").is_some() {
        runtime.block_on(sender())
    } else {
        runtime.block_on(gateway())
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// The brainpool limit

/// Operations per second of `op` on this thread, run for about `for_how_long`.
fn per_second(for_how_long: Duration, mut op: impl FnMut()) -> f64 {
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < for_how_long {
        for _ in 0..16 {
            op();
        }
        n += 16;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// brainpoolP256r1 with OpenSSL on one core: ECDSA signs, ECDSA verifies and ECDH agreements
/// per second.
fn brainpool_limit() -> (f64, f64, f64) {
    use openssl::bn::BigNumContext;
    use openssl::derive::Deriver;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::ecdsa::EcdsaSig;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    let group = EcGroup::from_curve_name(Nid::BRAINPOOL_P256R1).expect("brainpoolP256r1");
    let key = EcKey::generate(&group).expect("key");
    let digest = [0x5au8; 32];
    let signature = EcdsaSig::sign(&digest, &key).expect("sign");
    let signs = per_second(Duration::from_millis(700), || {
        EcdsaSig::sign(&digest, &key).expect("sign");
    });
    let verifies = per_second(Duration::from_millis(700), || {
        assert!(signature.verify(&digest, &key).expect("verify"));
    });
    let ours = PKey::from_ec_key(key.clone()).expect("pkey");
    let peer = {
        let other = EcKey::generate(&group).expect("key");
        let mut ctx = BigNumContext::new().expect("bn");
        let point = other
            .public_key()
            .to_bytes(
                &group,
                openssl::ec::PointConversionForm::UNCOMPRESSED,
                &mut ctx,
            )
            .expect("point");
        let point = openssl::ec::EcPoint::from_bytes(&group, &point, &mut ctx).expect("point");
        PKey::from_ec_key(EcKey::from_public_key(&group, &point).expect("public")).expect("pkey")
    };
    let ecdhs = per_second(Duration::from_millis(700), || {
        let mut deriver = Deriver::new(&ours).expect("deriver");
        deriver.set_peer(&peer).expect("peer");
        deriver.derive_to_vec().expect("derive");
    });
    (signs, verifies, ecdhs)
}

/// This process's CPU time (user + system), from `/proc/self/stat`; `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

// ---------------------------------------------------------------------------------------------
// The gateway (this process)

async fn gateway() -> i32 {
    let messages = env_usize("AS4_MESSAGES", 500);
    let size = env_usize("AS4_PAYLOAD_KIB", 20) * 1024;
    let in_flight = std::env::var("AS4_IN_FLIGHT").unwrap_or_else(|_| "1,8".into());

    let (signs, verifies, ecdhs) = tokio::task::spawn_blocking(brainpool_limit)
        .await
        .expect("the brainpool measurement");
    let gateway_limit =
        1.0 / (GATEWAY_SIGNS / signs + GATEWAY_VERIFIES / verifies + GATEWAY_ECDHS / ecdhs);

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

    // The sender: this bench again, in a process of its own.
    let exe = std::env::current_exe().expect("the bench's own path");
    let mut child = std::process::Command::new(exe)
        .env("AS4_BENCH_SENDER", "1")
        .env("AS4_BENCH_PORT", port.to_string())
        .env("AS4_BENCH_CA", pki.ca())
        .env("AS4_BENCH_SIGNING_KEY", &vnb.0.key)
        .env("AS4_BENCH_SIGNING_CERT", &vnb.0.cert)
        .env("AS4_BENCH_ENCRYPTION_KEY", &vnb.1.key)
        .env("AS4_BENCH_ENCRYPTION_CERT", &vnb.1.cert)
        .env("AS4_BENCH_TLS_KEY", &vnb.2.key)
        .env("AS4_BENCH_TLS_CERT", &vnb.2.cert)
        .env("AS4_BENCH_OUR_SIGNING_CERT", &ours.0.cert)
        .env("AS4_BENCH_OUR_ENCRYPTION_CERT", &ours.1.cert)
        .env("AS4_MESSAGES", messages.to_string())
        .env("AS4_PAYLOAD_KIB", (size / 1024).to_string())
        .env("AS4_IN_FLIGHT", &in_flight)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the sender process starts");
    // Its lines, read by a thread of their own.
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });

    println!(
        "AS4 over HTTPS (brainpool mutual TLS) into a gateway on SQLite: {messages} messages of \
         {} KiB per run, the sender in a second process (pid {})",
        size / 1024,
        child.id()
    );
    println!(
        "  brainpoolP256r1 on one core, measured now (OpenSSL): {signs:.0} signs/s, \
         {verifies:.0} verifies/s, {ecdhs:.0} ECDH/s; the gateway's {GATEWAY_SIGNS} sign + \
         {GATEWAY_VERIFIES} verifies + {GATEWAY_ECDHS} ECDH per message allow at most \
         {gateway_limit:.0} messages/s per core"
    );
    let mut failed = false;
    let mut receipted = 0usize;
    let mut cpu_at_start = None;
    while let Some(line) = lines.recv().await {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["START", _] => cpu_at_start = cpu_time(),
            ["RESULT", n, count, secs, p50, p99, connections] => {
                let parse = |s: &str| s.parse::<f64>().unwrap_or(f64::NAN);
                let (n, count, secs) = (parse(n) as usize, parse(count), parse(secs));
                let (p50, p99) = (parse(p50), parse(p99));
                receipted += count as usize;
                let rate = count / secs;
                let targets = if n == TARGET_IN_FLIGHT {
                    format!(
                        " (target ≥ {TARGET_PER_SECOND:.0}/s: {}; p99 < {} ms: {})",
                        if rate >= TARGET_PER_SECOND {
                            "met"
                        } else {
                            "MISSED"
                        },
                        TARGET_P99.as_millis(),
                        if p99 < TARGET_P99.as_secs_f64() * 1000.0 {
                            "met"
                        } else {
                            "MISSED"
                        }
                    )
                } else {
                    String::new()
                };
                println!(
                    "  {n} in flight: {rate:>7.1} messages/s ({secs:.2} s), latency median \
                     {p50:>6.1} ms, p99 {p99:>6.1} ms{targets}; {connections} connection(s)"
                );
                if let (Some(start), Some(end)) = (cpu_at_start.take(), cpu_time()) {
                    let per_message = (end - start).as_secs_f64() / count;
                    let per_core = 1.0 / per_message;
                    println!(
                        "      gateway CPU {:.2} ms per message = {per_core:.0} messages/s per \
                         core, {:.0} % of the brainpool limit ({gateway_limit:.0}/s per core)",
                        per_message * 1000.0,
                        100.0 * per_core / gateway_limit,
                    );
                }
            }
            ["FAILED", ..] => {
                println!("FAIL: the sender: {line}");
                failed = true;
            }
            _ => println!("  sender: {line}"),
        }
    }
    let status = child.wait().expect("the sender process");
    if !status.success() {
        println!("FAIL: the sender process ended with {status}");
        failed = true;
    }

    let store = Store::connect(&db_url).await.unwrap();
    let journaled: i64 =
        sqlx::query("SELECT COUNT(*) FROM journal WHERE direction = 'in' AND transport = 'as4'")
            .fetch_one(store.pool())
            .await
            .unwrap()
            .get(0);
    let receipted = receipted + 1; // and the warm-up message
    if journaled as usize != receipted {
        println!("FAIL: {journaled} interchanges journaled, {receipted} receipted");
        failed = true;
    } else {
        println!("  check: {receipted} messages receipted, {journaled} journaled once each");
    }
    store.close().await;
    let _ = stop_tx.send(());
    let _ = daemon.await;
    i32::from(failed)
}

// ---------------------------------------------------------------------------------------------
// The sender (the second process)

/// The sender's HTTPS client, shared so that its connection count can be read.
#[derive(Debug)]
struct Shared(Arc<HttpsClient>);

impl asx::HttpClient for Shared {
    fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> asx::BoxFuture<'_, Result<http::Response<Bytes>, Box<dyn std::error::Error + Send + Sync>>>
    {
        Box::pin(async move { self.0.exchange(request).await.map_err(Into::into) })
    }
}

async fn sender() -> i32 {
    let messages = env_usize("AS4_MESSAGES", 500);
    let size = env_usize("AS4_PAYLOAD_KIB", 20) * 1024;
    let port = env_usize("AS4_BENCH_PORT", 0);
    let runs: Vec<usize> = std::env::var("AS4_IN_FLIGHT")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let ca = env_path("AS4_BENCH_CA");
    let tls = TlsSettings::from_pem_files(
        &env_path("AS4_BENCH_TLS_KEY"),
        &env_path("AS4_BENCH_TLS_CERT"),
        &ca,
    )
    .unwrap();
    let crl = Arc::new(CrlCache::new(
        tls.anchors().to_vec(),
        Arc::new(PlainHttpFetcher::default()),
        mako_gateway::clock::Clock::system(),
    ));
    let expected = HashMap::from([(format!("127.0.0.1:{port}"), OWN.parse().unwrap())]);
    let client = Arc::new(HttpsClient::new(&tls, crl, expected).unwrap());
    let sender = As4Endpoint::build(As4Settings {
        own_id: VNB.parse().unwrap(),
        signing: key_pair(
            &env_path("AS4_BENCH_SIGNING_CERT"),
            &env_path("AS4_BENCH_SIGNING_KEY"),
        )
        .unwrap(),
        encryption: key_pair(
            &env_path("AS4_BENCH_ENCRYPTION_CERT"),
            &env_path("AS4_BENCH_ENCRYPTION_KEY"),
        )
        .unwrap(),
        anchors: vec![certificate(&ca).unwrap()],
        crl_signer: None,
        partners: vec![As4Partner {
            id: OWN.parse().unwrap(),
            url: Some(format!("https://127.0.0.1:{port}/as4")),
            signing_cert: certificate(&env_path("AS4_BENCH_OUR_SIGNING_CERT")).unwrap(),
            encryption_cert: certificate(&env_path("AS4_BENCH_OUR_ENCRYPTION_CERT")).unwrap(),
        }],
        http: Shared(client.clone()),
        audit: asx::testkit::audit::MemoryAuditSink::new(),
        max_message_bytes: 256 * 1024 * 1024,
        max_payload_bytes: 256 * 1024 * 1024,
    })
    .unwrap();
    let now = || std::time::SystemTime::from(mako_gateway::clock::Clock::system().now());

    // Warm-up: CRLs fetched, keys in cache.
    if let Err(e) = sender
        .send(
            OWN,
            interchange("WARM", size),
            "ORDRSP.txt",
            "warm@bench",
            now(),
        )
        .await
    {
        println!("FAILED warm-up: {e}");
        return 1;
    }
    for in_flight in runs {
        let opened = client.connections_opened();
        let latencies = Arc::new(Mutex::new(Vec::with_capacity(messages)));
        let failures = Arc::new(Mutex::new(Vec::new()));
        println!("START {in_flight}");
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..in_flight {
            let (sender, latencies, failures) =
                (sender.clone(), latencies.clone(), failures.clone());
            tasks.spawn(async move {
                let mut i = worker;
                while i < messages {
                    let reference = format!("B{in_flight}X{i:08}");
                    let t = Instant::now();
                    match sender
                        .send(
                            OWN,
                            interchange(&reference, size),
                            "ORDRSP.txt",
                            &format!("{reference}@bench"),
                            now(),
                        )
                        .await
                    {
                        Ok(_) => latencies.lock().unwrap().push(t.elapsed()),
                        Err(e) => failures.lock().unwrap().push(format!("{reference}: {e}")),
                    }
                    i += in_flight;
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("sender task");
        }
        let elapsed = started.elapsed();
        for failure in failures.lock().unwrap().iter() {
            println!("FAILED {failure}");
        }
        let mut l = latencies.lock().unwrap().clone();
        if l.is_empty() {
            return 1;
        }
        l.sort();
        println!(
            "RESULT {in_flight} {} {:.4} {:.2} {:.2} {}",
            l.len(),
            elapsed.as_secs_f64(),
            percentile(&l, 0.5).as_secs_f64() * 1000.0,
            percentile(&l, 0.99).as_secs_f64() * 1000.0,
            client.connections_opened() - opened,
        );
    }
    0
}
