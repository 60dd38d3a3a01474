//! The AS4 receiving side on arbitrary requests, as `transport::as4::receive::handle_request`
//! runs it after the raw request is journaled and before anything is journaled as an
//! interchange: asx-rs's reading and verification (MIME multipart/related, SOAP, WS-Security
//! signature and decryption, the SM-PKI chain and CRL, decompression limits), then our checks
//! of the verified message (`As4Endpoint::inbound`: registered partner, TLS peer = sender,
//! SM-PKI signer, service, one payload within the size limit) and the UNB sender = AS4 sender
//! check of the sink; and the readers of partners' AS4 answers (`ebms_error_code`,
//! `is_receipt`, `ebms_error_description`). No panic; every request gets an answer.
//!
//! Input: the Content-Type header up to the first newline, then the body. The key material is
//! fixed (`fuzz/keys/`, test keys). With `MAKO_FUZZ_AS4_SEEDS=<dir>` set, the first run writes
//! real signed and encrypted requests of the grid operator there (what `scripts/fuzz-long.sh`
//! uses as seeds; made fresh per run, since the receiver refuses old timestamps). With
//! `MAKO_FUZZ_VERBOSE` set, the answer to each input is printed.
#![no_main]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use mako_gateway::acks::read_envelope;
use mako_gateway::transport::as4::{
    ebms_error_code, ebms_error_description, is_receipt, As4Endpoint, As4Partner, As4Settings,
    MessageSink, ReceivedMessage, Refusal,
};

const OWN: &str = "9900000000003";
const PARTNER: &str = "9900000000011";
/// The distribution point in every certificate of `fuzz/keys/`.
const CRL_URL: &str = "http://127.0.0.1:1/fuzz.crl";

/// The HTTP client of the endpoints: serves the fixed CRL, captures what a sender would POST
/// (and fails it: nothing leaves the process).
#[derive(Debug, Default, Clone)]
struct Wire {
    captured: Arc<Mutex<Vec<http::Request<Bytes>>>>,
}

impl asx::HttpClient for Wire {
    fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> asx::BoxFuture<'_, Result<http::Response<Bytes>, Box<dyn std::error::Error + Send + Sync>>>
    {
        Box::pin(async move {
            if request.method() == http::Method::GET && request.uri() == CRL_URL {
                return Ok(http::Response::new(Bytes::from_static(include_bytes!(
                    "../keys/crl.der"
                ))));
            }
            self.captured.lock().unwrap().push(request);
            Err("fuzz: nothing is sent".into())
        })
    }
}

#[derive(Debug)]
struct NoAudit;

impl asx::AuditSink for NoAudit {
    fn durability(&self) -> asx::AuditDurability {
        asx::AuditDurability::BestEffort
    }

    fn record<'a>(
        &'a self,
        _record: &'a asx::AuditRecord,
    ) -> asx::BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async { Ok(()) })
    }
}

/// Every delivery is new: a mutated seed keeps its message id, and should reach the checks.
#[derive(Debug, Default)]
struct NoDedup(AtomicU64);

impl asx::DedupStore for NoDedup {
    fn claim<'a>(
        &'a self,
        _key: &'a str,
    ) -> asx::BoxFuture<'a, Result<asx::Claim, Box<dyn std::error::Error + Send + Sync>>> {
        let n = self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { Ok(asx::Claim::Claimed(asx::ClaimToken::new(n.to_string()))) })
    }

    fn accept<'a>(
        &'a self,
        _key: &'a str,
        _token: &'a asx::ClaimToken,
    ) -> asx::BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async { Ok(()) })
    }

    fn abandon<'a>(
        &'a self,
        _key: &'a str,
        _token: &'a asx::ClaimToken,
    ) -> asx::BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async { Ok(()) })
    }
}

/// The sink's check before journaling (as `RequestSink::deliver`): the interchange's UNB
/// sender must be the AS4 sender.
struct Sink;

impl MessageSink for Sink {
    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + '_>> {
        Box::pin(async move {
            match read_envelope(&message.payload).map(|e| e.sender.id) {
                Some(sender) if sender != message.from.as_str() => Err(Refusal::Permanent(
                    format!("UNB sender {sender}, AS4 sender {}", message.from),
                )),
                _ => Ok(()),
            }
        })
    }
}

fn cert(pem: &[u8]) -> asx::Certificate {
    asx::Certificate::from_pem(pem).expect("fuzz certificate")
}

fn pair(cert: &[u8], key: &[u8]) -> asx::KeyPair {
    asx::KeyPair::from_pem(cert, key).expect("fuzz key pair")
}

/// An endpoint for `own` that knows `peer`.
fn endpoint(own: &str, sig: asx::KeyPair, enc: asx::KeyPair, peer: As4Partner) -> As4Endpoint {
    As4Endpoint::build(As4Settings {
        own_id: own.parse().unwrap(),
        signing: sig,
        encryption: enc,
        anchors: vec![cert(include_bytes!("../keys/ca.pem"))],
        crl_signer: None,
        partners: vec![peer],
        http: Wire::default(),
        audit: NoAudit,
        max_message_bytes: 4 << 20,
        max_payload_bytes: 1 << 20,
    })
    .expect("fuzz endpoint")
}

struct World {
    runtime: tokio::runtime::Runtime,
    receiver: As4Endpoint,
    /// `MAKO_FUZZ_VERBOSE` set: every answer's status is printed (to check seeds and findings).
    verbose: bool,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let receiver = endpoint(
            OWN,
            pair(include_bytes!("../keys/ours-sig.pem"), include_bytes!("../keys/ours-sig.key")),
            pair(include_bytes!("../keys/ours-enc.pem"), include_bytes!("../keys/ours-enc.key")),
            As4Partner {
                id: PARTNER.parse().unwrap(),
                url: Some("https://127.0.0.1:1/as4".into()),
                signing_cert: cert(include_bytes!("../keys/partner-sig.pem")),
                encryption_cert: cert(include_bytes!("../keys/partner-enc.pem")),
            },
        );
        if let Some(dir) = std::env::var_os("MAKO_FUZZ_AS4_SEEDS") {
            write_seeds(&runtime, std::path::Path::new(&dir));
        }
        World {
            runtime,
            receiver,
            verbose: std::env::var_os("MAKO_FUZZ_VERBOSE").is_some(),
        }
    })
}

/// Real requests of the grid operator to us (signed, encrypted, compressed), captured.
fn write_seeds(runtime: &tokio::runtime::Runtime, dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (n, (sender_id, unb)) in [(PARTNER, PARTNER), (PARTNER, "9900000000029")]
        .into_iter()
        .enumerate()
    {
        let wire = Wire::default();
        let sender = As4Endpoint::build(As4Settings {
            own_id: sender_id.parse().unwrap(),
            signing: pair(
                include_bytes!("../keys/partner-sig.pem"),
                include_bytes!("../keys/partner-sig.key"),
            ),
            encryption: pair(
                include_bytes!("../keys/partner-enc.pem"),
                include_bytes!("../keys/partner-enc.key"),
            ),
            anchors: vec![cert(include_bytes!("../keys/ca.pem"))],
            crl_signer: None,
            partners: vec![As4Partner {
                id: OWN.parse().unwrap(),
                url: Some("https://127.0.0.1:1/as4".into()),
                signing_cert: cert(include_bytes!("../keys/ours-sig.pem")),
                encryption_cert: cert(include_bytes!("../keys/ours-enc.pem")),
            }],
            http: wire.clone(),
            audit: NoAudit,
            max_message_bytes: 4 << 20,
            max_payload_bytes: 1 << 20,
        })
        .expect("fuzz sender");
        let interchange = format!(
            "UNA:+.? 'UNB+UNOC:3+{unb}:500+{OWN}:500+260512:0930+FZ{n:010}'\
             UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+FZ{n}A'DTM+137:202605120930?+00:303'\
             RFF+ON:MG10000000001'RFF+Z13:19133'AJT+A20+E_0595'NAD+MS+{unb}::293'\
             NAD+MR+{OWN}::293'UNS+S'UNT+10+1'UNZ+1+FZ{n:010}'"
        );
        let _ = runtime.block_on(sender.send(
            OWN,
            interchange.into_bytes(),
            "ORDRSP.txt",
            &format!("fuzz-seed-{n}@mako.test"),
            std::time::SystemTime::now(),
        ));
        for request in wire.captured.lock().unwrap().iter() {
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes().to_vec())
                .unwrap_or_default();
            let mut seed = content_type;
            seed.push(b'\n');
            seed.extend_from_slice(request.body());
            std::fs::write(dir.join(format!("seed-{n}")), seed).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b""[..], data),
    };
    let mut request = http::Request::post("https://127.0.0.1:1/as4");
    if let Ok(value) = http::HeaderValue::from_bytes(content_type) {
        request = request.header(http::header::CONTENT_TYPE, value);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let service = world
        .receiver
        .inbound(NoDedup::default(), Some(PARTNER.to_string()), Arc::new(Sink));
    let answer = world.runtime.block_on(async {
        let response = service.call(request).await;
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    let (status, answer) = answer;
    if world.verbose {
        eprintln!(
            "as4_inbound: {status} {:?} receipt {}",
            ebms_error_code(&answer),
            is_receipt(&answer)
        );
    }
    assert!(
        status.is_success() || status.is_client_error() || status.is_server_error(),
        "{status}"
    );
    if status.is_success() && is_receipt(&answer) {
        assert_eq!(ebms_error_code(&answer), None);
    }
    let _ = ebms_error_description(&answer);
    let _ = (ebms_error_code(data), is_receipt(data), ebms_error_description(data));
});
