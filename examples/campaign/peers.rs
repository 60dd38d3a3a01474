//! The three grid operators, one per transport, as real partners: each takes what the gateway
//! sends (the file drop's outbox emptied as a partner's pickup would, the partner's mailbox
//! read over IMAP and every mail decrypted and verified, an AS4 receiver over HTTPS with mutual
//! TLS that receipts every delivery) and records every copy it got with its bytes; and each
//! answers every ORDERS it receives with an ORDRSP A99 (the order is rejected) over its own
//! transport — sometimes twice, the same interchange (a partner's retry) — until the gateway
//! took it (a file in the inbox, a mail accepted by the SMTP server, an AS4 receipt).

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use mako_gateway::clock::Clock;
use mako_gateway::transport::as4::https::{
    serve_https, HttpsAcceptor, HttpsClient, PlainHttpFetcher, TlsSettings,
};
use mako_gateway::transport::as4::{
    certificate, key_pair, As4Endpoint, As4Partner, As4Settings, MessageSink, ReceivedMessage,
    Refusal,
};
use mako_gateway::transport::email::smime::{
    decrypt_then_verify, sign_then_encrypt, Certificate, Identity, SmimeError,
};
use mako_gateway::transport::email::{
    build_mail_with, extract_single_attachment, send, Address, ImapConfig, Inbox, MailError,
    Mailbox, SmtpConfig,
};
use mako_gateway::transport::smpki::{CrlCache, PeerIdentity};

use super::world::{Transport, World, OWN, VNB_AS4};
use super::Rng;

/// One copy of an interchange a partner received from the gateway.
#[derive(Debug, Clone)]
pub struct Copy {
    /// Over which transport.
    pub transport: Transport,
    /// The partner (UNB recipient).
    pub partner: String,
    /// UNB DE0020.
    pub reference: String,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The AS4 message id it came under.
    pub as4_message_id: Option<String>,
}

/// An answer a partner sent.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The partner.
    pub partner: String,
    /// Its UNB reference.
    pub reference: String,
    /// Our order document it answers.
    pub document: String,
    /// The interchange.
    pub bytes: Vec<u8>,
    /// How often it was handed over (file written, mail accepted, AS4 receipted).
    pub delivered: usize,
}

/// One delivery of an answer to do.
#[derive(Debug, Clone)]
struct Delivery {
    answer: usize,
    /// AS4: the message id and timestamp, fixed before the first attempt.
    message_id: String,
    timestamp: SystemTime,
    /// Failed attempts so far.
    attempts: u32,
}

/// What the partners share: the copies received, the answers sent, the deliveries to do.
#[derive(Debug)]
pub struct Partners {
    /// Every copy received, in order.
    pub received: Mutex<Vec<Copy>>,
    /// Every answer made.
    pub answers: Mutex<Vec<Answer>>,
    /// Things that must not happen on the partners' side (unreadable mail from the gateway, a
    /// permanent refusal of an answer).
    pub problems: Mutex<Vec<String>>,
    answered: Mutex<HashSet<String>>,
    file_queue: Mutex<VecDeque<Delivery>>,
    mail_queue: Mutex<VecDeque<Delivery>>,
    as4_queue: Mutex<VecDeque<Delivery>>,
    /// Deliveries taken from a queue and not yet done.
    in_flight: AtomicUsize,
    rng: Mutex<Rng>,
    duplicate: f64,
    counter: AtomicU64,
    inbox: PathBuf,
    template: Vec<u8>,
}

/// `bytes` with every `from` replaced by `to` (byte-wise: the samples are ISO 8859-1).
pub fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
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

/// What a partner reads of an interchange it received.
#[derive(Debug, Clone)]
pub struct Read {
    /// UNB sender.
    pub sender: String,
    /// UNB recipient.
    pub recipient: String,
    /// UNB DE0020.
    pub reference: String,
    /// `(message type, BGM document number)` of every message.
    pub messages: Vec<(String, String)>,
}

/// Reads `bytes` as a partner does ([`Read`]); `None` when they do not parse.
pub fn read_interchange(bytes: &[u8]) -> Option<Read> {
    let document = mako_gateway::edifact::parse(bytes).ok()?;
    let interchange = document.interchanges().next()?;
    let unb = interchange.unb();
    let messages = interchange
        .messages()
        .map(|m| {
            let doc = m
                .body()
                .find(|s| s.is(b"BGM"))
                .map(|s| s.value(2, 1).into_owned())
                .unwrap_or_default();
            (m.message_type().into_owned(), doc)
        })
        .collect();
    Some(Read {
        sender: unb.value(2, 1).into_owned(),
        recipient: unb.value(3, 1).into_owned(),
        reference: unb.value(5, 1).into_owned(),
        messages,
    })
}

impl Partners {
    /// Partners answering into `inbox` (the file drop) and through the queues; `duplicate` is
    /// the share of answers delivered twice.
    pub fn new(inbox: PathBuf, rng: Rng, duplicate: f64) -> Arc<Partners> {
        let template = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("samples/inbound/ordrsp_19133_a99_rejected.edi"),
        )
        .expect("the ORDRSP sample");
        Arc::new(Partners {
            received: Mutex::default(),
            answers: Mutex::default(),
            problems: Mutex::default(),
            answered: Mutex::default(),
            file_queue: Mutex::default(),
            mail_queue: Mutex::default(),
            as4_queue: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            rng: Mutex::new(rng),
            duplicate,
            counter: AtomicU64::new(0),
            inbox,
            template,
        })
    }

    /// Deliveries still to do (queued or in flight).
    pub fn pending(&self) -> usize {
        self.file_queue.lock().unwrap().len()
            + self.mail_queue.lock().unwrap().len()
            + self.as4_queue.lock().unwrap().len()
            + self.in_flight.load(Ordering::SeqCst)
    }

    fn problem(&self, text: String) {
        eprintln!("  partner problem: {text}");
        self.problems.lock().unwrap().push(text);
    }

    /// Takes one interchange the gateway sent to `partner` over `transport`: records the copy,
    /// and answers an ORDERS not answered yet.
    pub fn receive(
        &self,
        transport: Transport,
        partner: &str,
        bytes: Vec<u8>,
        as4_message_id: Option<String>,
    ) {
        let Some(Read {
            sender,
            recipient,
            reference,
            messages,
        }) = read_interchange(&bytes)
        else {
            self.problem(format!(
                "{partner} ({}) received bytes that do not parse as an interchange: {:?}",
                transport.name(),
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ));
            return;
        };
        if sender != OWN || recipient != partner {
            self.problem(format!(
                "{partner} ({}) received {reference} from {sender} to {recipient}",
                transport.name()
            ));
        }
        self.received.lock().unwrap().push(Copy {
            transport,
            partner: partner.to_string(),
            reference: reference.clone(),
            bytes,
            as4_message_id,
        });
        for (message_type, document) in messages {
            if message_type != "ORDERS" || document.is_empty() {
                continue;
            }
            if !self.answered.lock().unwrap().insert(document.clone()) {
                continue; // the same order again (resent after a crash): answered already
            }
            self.answer(transport, partner, &document);
        }
    }

    fn answer(&self, transport: Transport, partner: &str, document: &str) {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let letter = match transport {
            Transport::File => 'F',
            Transport::Email => 'M',
            Transport::As4 => 'A',
        };
        let reference = format!("C{letter}{n:010}");
        let bytes = replaced(
            &replaced(
                &replaced(&self.template, "9900000000011", partner),
                "NB0000000001",
                &reference,
            ),
            "MG10000000001",
            document,
        );
        let twice = self.rng.lock().unwrap().chance(self.duplicate);
        let index = {
            let mut answers = self.answers.lock().unwrap();
            answers.push(Answer {
                partner: partner.to_string(),
                reference: reference.clone(),
                document: document.to_string(),
                bytes: bytes.clone(),
                delivered: 0,
            });
            answers.len() - 1
        };
        let deliveries = if twice { 2 } else { 1 };
        for k in 0..deliveries {
            let delivery = Delivery {
                answer: index,
                // AS4: the message id; file drop: the file name's tail.
                message_id: format!("{reference}-{k}@campaign.mako.test"),
                timestamp: SystemTime::from(Clock::system().now()),
                attempts: 0,
            };
            self.queue(transport).lock().unwrap().push_back(delivery);
        }
    }

    fn queue(&self, transport: Transport) -> &Mutex<VecDeque<Delivery>> {
        match transport {
            Transport::File => &self.file_queue,
            Transport::Email => &self.mail_queue,
            Transport::As4 => &self.as4_queue,
        }
    }

    /// Writes the queued file-drop answers into the inbox (a full disk: later).
    fn deliver_files(&self) {
        while let Some(delivery) = self.next(Transport::File) {
            let (partner, reference, bytes) = {
                let answers = self.answers.lock().unwrap();
                let a = &answers[delivery.answer];
                (a.partner.clone(), a.reference.clone(), a.bytes.clone())
            };
            let name = if delivery.message_id.contains("-0@") {
                format!("{partner}_{reference}.edi")
            } else {
                format!("{partner}_{reference}.again.edi")
            };
            match mako_gateway::transport::file_drop::write_atomically(&self.inbox, &name, &bytes) {
                Ok(_) => self.done(&delivery),
                Err(_) => {
                    // The partner's upload failed (the gateway's disk is full): later.
                    let _ = std::fs::remove_file(self.inbox.join(format!(".{name}.tmp")));
                    self.again(Transport::File, delivery);
                    return;
                }
            }
        }
    }

    fn next(&self, transport: Transport) -> Option<Delivery> {
        let next = self.queue(transport).lock().unwrap().pop_front();
        if next.is_some() {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
        }
        next
    }

    fn done(&self, delivery: &Delivery) {
        self.answers.lock().unwrap()[delivery.answer].delivered += 1;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn again(&self, transport: Transport, delivery: Delivery) {
        self.queue(transport).lock().unwrap().push_front(delivery);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    fn bytes_of(&self, delivery: &Delivery) -> Vec<u8> {
        self.answers.lock().unwrap()[delivery.answer].bytes.clone()
    }
}

// ---- the file drop --------------------------------------------------------------------------

/// The file-drop partner: takes every complete file out of `outbox` (as a partner's pickup
/// would) and puts its answers into the inbox, every few milliseconds, until `stop`.
pub fn run_file_partner(partners: Arc<Partners>, outbox: PathBuf, stop: Arc<AtomicBool>) {
    std::thread::spawn(move || loop {
        let last = stop.load(Ordering::SeqCst);
        sweep_outbox(&partners, &outbox);
        partners.deliver_files();
        if last && partners.file_queue.lock().unwrap().is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    });
}

/// One pickup of the outbox.
pub fn sweep_outbox(partners: &Partners, outbox: &Path) {
    for name in super::gateway::files_in(outbox) {
        if !mako_gateway::transport::file_drop::is_complete(&name) {
            continue;
        }
        let path = outbox.join(&name);
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let _ = std::fs::remove_file(&path);
        let partner = name.split('_').next().unwrap_or("").to_string();
        partners.receive(Transport::File, &partner, bytes, None);
    }
}

// ---- e-mail ---------------------------------------------------------------------------------

/// Creates `mailbox` in an IMAP account (plain IMAP on loopback); an existing one is fine.
pub async fn create_mailbox(
    (host, port): &(String, u16),
    (user, password): &(String, String),
    mailbox: &str,
) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect((host.as_str(), *port))
        .await
        .map_err(|e| format!("IMAP {host}:{port}: {e}"))?;
    let mut client = async_imap::Client::new(stream);
    client
        .read_response()
        .await
        .map_err(|e| format!("IMAP greeting: {e}"))?;
    let mut session = client
        .login(user, password)
        .await
        .map_err(|(e, _)| format!("IMAP LOGIN {user}: {e}"))?;
    if let Err(e) = session.create(mailbox).await {
        let text = e.to_string();
        if !text.contains("exists") {
            return Err(format!("IMAP CREATE {mailbox}: {text}"));
        }
    }
    let _ = session.logout().await;
    Ok(())
}

/// The e-mail partner: reads its mailbox (folder `tag`) over IMAP, decrypts and verifies every
/// mail (its key, our signing certificate), takes the interchange out; and mails its answers
/// through the SMTP server, signed and encrypted, until `stop`. `smtp` is where the partner's
/// own mail goes (the real server, never the fault campaign's switchable relay).
pub fn run_mail_partner(partners: Arc<Partners>, world: &World, stop: Arc<AtomicBool>) {
    let servers = world.mail.clone().expect("mail servers");
    let mut imap = ImapConfig::plain(
        servers.imap.0.clone(),
        servers.imap.1,
        servers.partner.0.clone(),
        servers.partner.1.clone(),
    );
    imap.mailbox = world.mail_tag.clone();
    imap.idle = false;
    imap.timeout = Duration::from_secs(20);
    let identity = Identity::from_pem_files(&world.vnb_mail.key, &world.vnb_mail.cert)
        .expect("the partner's mail identity");
    let ours = Certificate::from_pem_file(&world.ours_mail.cert).expect("our mail certificate");
    let (reader, reader_stop) = (partners.clone(), stop.clone());
    let (identity_r, ours_r) = (identity.clone(), ours.clone());
    tokio::spawn(async move {
        loop {
            let last = reader_stop.load(Ordering::SeqCst);
            match Inbox::connect(imap.clone()).await {
                Ok(mut inbox) => {
                    let fetched = inbox
                        .fetch_new(|mail| {
                            let reader = reader.clone();
                            let (identity, ours) = (identity_r.clone(), ours_r.clone());
                            async move {
                                read_mail(&reader, &mail.raw, &identity, &ours);
                                Ok::<(), Infallible>(())
                            }
                        })
                        .await;
                    if let Err(e) = fetched {
                        eprintln!("  mail partner: reading the mailbox: {e}");
                    }
                    inbox.logout().await;
                }
                Err(e) => eprintln!("  mail partner: IMAP: {e}"),
            }
            if last {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let from: Address = world.partner_address().parse().expect("partner address");
    let to: Address = world.our_address().parse().expect("our address");
    let mut smtp = SmtpConfig::plain(servers.smtp.0.clone(), servers.smtp.1);
    smtp.timeout = Duration::from_secs(20);
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) || partners.pending() > 0 {
            let Some(delivery) = partners.next(Transport::Email) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let bytes = partners.bytes_of(&delivery);
            let reference = partners.answers.lock().unwrap()[delivery.answer]
                .reference
                .clone();
            let file = format!("ORDRSP_{}.txt", reference);
            let mail = build_mail_with(
                &Mailbox::new(None, from.clone()),
                &Mailbox::new(None, to.clone()),
                &bytes,
                &file,
                delivery.timestamp,
                |entity| {
                    sign_then_encrypt(entity, &identity, &ours).map_err(|e: SmimeError| {
                        MailError::Headers {
                            reason: e.to_string(),
                        }
                    })
                },
            );
            match mail {
                Ok(mail) => match send(&smtp, &from, std::slice::from_ref(&to), &mail).await {
                    Ok(()) => partners.done(&delivery),
                    Err(e) => {
                        eprintln!("  mail partner: SMTP: {e}; again");
                        partners.again(Transport::Email, delivery);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                },
                Err(e) => {
                    partners.problem(format!("building the answer mail {file}: {e}"));
                    partners.done(&delivery);
                }
            }
        }
    });
}

fn read_mail(partners: &Partners, raw: &[u8], identity: &Identity, ours: &Certificate) {
    let verified = match decrypt_then_verify(raw, identity, std::slice::from_ref(ours)) {
        Ok(v) => v,
        Err(e) => {
            partners.problem(format!(
                "a mail from the gateway does not decrypt and verify: {e}"
            ));
            return;
        }
    };
    match extract_single_attachment(&verified.content) {
        Ok(a) => partners.receive(Transport::Email, super::world::VNB_MAIL, a.bytes, None),
        Err(e) => partners.problem(format!(
            "a mail from the gateway has no single attachment: {e}"
        )),
    }
}

// ---- AS4 ------------------------------------------------------------------------------------

/// Every delivery is taken: the partner records each one, also a message id it saw before, so
/// that a resent message with other bytes would show.
#[derive(Debug, Default)]
struct EveryDelivery(AtomicU64);

impl asx::DedupStore for EveryDelivery {
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

/// Evidence is not what the campaign checks.
#[derive(Debug)]
struct NoEvidence;

impl asx::AuditSink for NoEvidence {
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

struct Sink(Arc<Partners>);

impl MessageSink for Sink {
    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + '_>> {
        Box::pin(async move {
            self.0.receive(
                Transport::As4,
                VNB_AS4,
                message.payload,
                Some(message.message_id),
            );
            Ok(())
        })
    }
}

#[derive(Clone)]
struct PeerService {
    endpoint: As4Endpoint,
    peer: String,
    partners: Arc<Partners>,
}

impl tower_service::Service<http::Request<hyper::body::Incoming>> for PeerService {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    let mut r = http::Response::new(Full::new(Bytes::new()));
                    *r.status_mut() = http::StatusCode::BAD_REQUEST;
                    return Ok(r);
                }
            };
            let service = this.endpoint.inbound(
                EveryDelivery::default(),
                Some(this.peer.clone()),
                Arc::new(Sink(this.partners.clone())),
            );
            Ok(service
                .call(http::Request::from_parts(parts, Full::new(body)))
                .await)
        })
    }
}

/// The AS4 grid operator: its endpoint (sending our gateway its answers), its HTTPS receiver
/// (which can be stopped and started again: the fault campaign's outage).
pub struct As4Peer {
    endpoint: As4Endpoint,
    acceptor: Arc<HttpsAcceptor>,
    crl: Arc<CrlCache>,
    port: u16,
    server: Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    partners: Arc<Partners>,
}

impl As4Peer {
    /// The partner of `world`, not yet listening.
    pub fn new(world: &World, partners: Arc<Partners>) -> Arc<As4Peer> {
        let id = &world.vnb_as4;
        let tls = TlsSettings::from_pem_files(&id.tls.key, &id.tls.cert, &world.pki.ca())
            .expect("the partner's TLS settings");
        let crl = Arc::new(CrlCache::new(
            tls.anchors().to_vec(),
            Arc::new(PlainHttpFetcher::default()),
            Clock::system(),
        ));
        let ours = format!("127.0.0.1:{}", world.our_as4_port);
        let expected = std::collections::HashMap::from([(ours.clone(), OWN.parse().unwrap())]);
        let http = HttpsClient::new(&tls, crl.clone(), expected)
            .expect("the partner's HTTPS client")
            .with_timeouts(Duration::from_secs(2), Duration::from_secs(20));
        let endpoint = As4Endpoint::build(As4Settings {
            own_id: VNB_AS4.parse().unwrap(),
            signing: key_pair(&id.sig.cert, &id.sig.key).unwrap(),
            encryption: key_pair(&id.enc.cert, &id.enc.key).unwrap(),
            anchors: vec![certificate(&world.pki.ca()).unwrap()],
            crl_signer: None,
            partners: vec![As4Partner {
                id: OWN.parse().unwrap(),
                url: Some(format!("https://{ours}/as4")),
                signing_cert: certificate(&world.ours_as4.sig.cert).unwrap(),
                encryption_cert: certificate(&world.ours_as4.enc.cert).unwrap(),
            }],
            http,
            audit: NoEvidence,
            max_message_bytes: 64 << 20,
            max_payload_bytes: 64 << 20,
        })
        .expect("the partner's AS4 endpoint");
        let acceptor = Arc::new(
            tls.acceptor()
                .expect("the partner's TLS acceptor")
                .with_timeouts(
                    Duration::from_secs(5),
                    Duration::from_secs(5),
                    Duration::from_millis(200),
                ),
        );
        Arc::new(As4Peer {
            endpoint,
            acceptor,
            crl,
            port: world.peer_as4_port,
            server: Mutex::new(None),
            partners,
        })
    }

    /// Starts listening (again).
    pub async fn listen(&self) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("the AS4 partner cannot listen on {}: {e}", self.port))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let service = PeerService {
            endpoint: self.endpoint.clone(),
            peer: OWN.to_string(),
            partners: self.partners.clone(),
        };
        let task = tokio::spawn(serve_https(
            listener,
            self.acceptor.clone(),
            self.crl.clone(),
            move |peer: PeerIdentity| PeerService {
                peer: peer.market_partner_id.as_str().to_string(),
                ..service.clone()
            },
            async move {
                let _ = stop_rx.await;
            },
        ));
        *self.server.lock().unwrap() = Some((stop_tx, task));
        Ok(())
    }

    /// Stops listening: connections are refused until [`As4Peer::listen`].
    pub async fn stop_listening(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some((stop, task)) = server {
            let _ = stop.send(());
            let _ = task.await;
        }
    }

    /// Sends the queued answers to the gateway, `parallel` at a time, each until it is
    /// receipted (the same message id and timestamp on every attempt), until `stop` and
    /// nothing is left.
    pub fn run_sender(self: &Arc<Self>, parallel: usize, stop: Arc<AtomicBool>) {
        for _ in 0..parallel {
            let (this, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                let partners = this.partners.clone();
                while !stop.load(Ordering::SeqCst) || partners.pending() > 0 {
                    let Some(delivery) = partners.next(Transport::As4) else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let bytes = partners.bytes_of(&delivery);
                    let attempt = delivery.attempts;
                    let sent = this
                        .endpoint
                        .send(
                            OWN,
                            bytes,
                            "ORDRSP.txt",
                            &delivery.message_id,
                            delivery.timestamp,
                        )
                        .await;
                    match sent {
                        Ok(_) => partners.done(&delivery),
                        Err(e) if e.is_transient() => {
                            // As a partner's AS4 gateway retries: the same message, with a
                            // growing pause (200 ms, doubling, at most 2 s).
                            let pause = Duration::from_millis(200 << attempt.min(3))
                                .min(Duration::from_secs(2));
                            let mut delivery = delivery;
                            delivery.attempts += 1;
                            partners.again(Transport::As4, delivery);
                            tokio::time::sleep(pause).await;
                        }
                        Err(e) => {
                            partners.problem(format!(
                                "the gateway refused the AS4 answer {} for good: {e}",
                                delivery.message_id
                            ));
                            partners.done(&delivery);
                        }
                    }
                }
            });
        }
    }
}
