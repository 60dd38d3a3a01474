//! AS4 per the BDEW AS4 profile: ebMS 3.0 one-way push over HTTPS, WS-Security signatures
//! and encryption, signed receipts (see `../shared/domain/transport.md` §1).
//!
//! The ebMS/WS-Security layer is `asx-rs` (pinned `=0.16.2`), used only here so that it can be
//! replaced; what is ours:
//! - [`https`]: HTTPS client and server on OpenSSL (TLS 1.2 with brainpoolP256r1, mutual
//!   authentication against the SM-PKI roots) — asx's own client (rustls) cannot do brainpool;
//! - [`crate::transport::smpki`] (shared with e-mail): the SM-PKI identity checks (CN
//!   containing `EMT.MAK`, subject OU = market partner ID) and revocation by CRL for TLS peers.
//!
//! This module is the adapter: [`As4Endpoint`] (our identity, the partner registry, send with a
//! fixed message id and timestamp, the inbound service with our own checks) and [`persist`]
//! (asx-rs's dedup store and audit sink over our [`crate::store::Store`]). Nothing outside
//! `transport::as4` names an asx-rs type. Around it, the two sides of the transport seams:
//! [`setup`] (key material and the runtime, checked with the configuration before the store is
//! touched), [`receive`] (a received request: raw journal, the gzip-bomb guard
//! [`size_guard`], verification, our checks, the interchange into the
//! [`crate::transport::InboundSink`], the signed receipt, every refusal in the one shape of
//! [`signal`]) and [`outbound`] (the [`crate::transport::Outbound`] of AS4).

pub mod https;
pub mod outbound;
pub mod persist;
pub mod receive;
pub mod setup;
pub mod signal;
pub mod size_guard;
mod tls_session;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use asx::as4::{As4, Message, UserMessage};
use asx::{Certificate, KeyPair, LocalParty, Partner, Payload, Profile, Reject, Verified};

use crate::ids::MarketPartnerId;

/// `eb:Service` for market processes (Marktprozesse): the only service our partners use for
/// EDIFACT interchanges (BDEW AS4 profile as implemented by phase4 `BDEWPMode` and asx-rs
/// `src/profile.rs`; transport.md §1.2).
pub const SERVICE_MARKET_PROCESSES: &str = "https://www.bdew.de/as4/communication/services/MP";

/// The ebCore party-id type of a market partner ID (transport.md §1.2): BDEW codes (`99…`)
/// `unregistered:BDEW`, DVGW codes (`98…`) `unregistered:DVGW`, GLNs `iso6523:0088`.
pub fn party_type(id: &str) -> &'static str {
    match crate::edifact::PartnerQualifier::for_id(id) {
        crate::edifact::PartnerQualifier::Bdew => {
            "urn:oasis:names:tc:ebcore:partyid-type:unregistered:BDEW"
        }
        crate::edifact::PartnerQualifier::Dvgw => {
            "urn:oasis:names:tc:ebcore:partyid-type:unregistered:DVGW"
        }
        crate::edifact::PartnerQualifier::Gs1 => {
            "urn:oasis:names:tc:ebcore:partyid-type:iso6523:0088"
        }
    }
}

/// Why the AS4 endpoint could not be set up (keys, certificates, profile rules).
#[derive(Debug, thiserror::Error)]
pub enum As4SetupError {
    /// A PEM file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A key or certificate is not usable.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which key or certificate.
        what: String,
        /// Why (asx-rs's or OpenSSL's words).
        reason: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, As4SetupError> {
    std::fs::read(path).map_err(|source| As4SetupError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// A certificate from a PEM file.
pub fn certificate(path: &Path) -> Result<Certificate, As4SetupError> {
    Certificate::from_pem(&read(path)?).map_err(|e| As4SetupError::Invalid {
        what: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A key pair from a certificate and a private key, both PEM files.
pub fn key_pair(cert: &Path, key: &Path) -> Result<KeyPair, As4SetupError> {
    KeyPair::from_pem(&read(cert)?, &read(key)?).map_err(|e| As4SetupError::Invalid {
        what: format!("{} with {}", key.display(), cert.display()),
        reason: e.to_string(),
    })
}

/// The HTTP client seam of asx-rs (ours is `https::HttpsClient`).
pub use asx::HttpClient;

/// Our key pairs and the SM-PKI anchors, read from PEM files.
#[derive(Debug, Clone)]
pub struct As4Keys {
    /// WS-Security signing.
    pub signing: KeyPair,
    /// Decryption of what partners send.
    pub encryption: KeyPair,
    /// The same private key for the receiver's gzip-bomb guard ([`size_guard`]), which
    /// looks at a request before asx-rs does.
    pub decryption: size_guard::DecryptionKey,
    /// The CA certificates partners' certificates must chain to.
    pub anchors: Vec<Certificate>,
    /// The signer of an indirect CRL.
    pub crl_signer: Option<Certificate>,
}

/// One AS4 partner of the registry.
#[derive(Debug, Clone)]
pub struct As4Partner {
    /// Its market partner ID (the `eb:PartyId`).
    pub id: MarketPartnerId,
    /// Its endpoint (`https://`); `None` for a partner that only sends to us.
    pub url: Option<String>,
    /// The certificate it signs with (pinned: messages from it must be signed with exactly
    /// this one, and it must chain to an anchor).
    pub signing_cert: Certificate,
    /// The certificate we encrypt to.
    pub encryption_cert: Certificate,
}

/// Everything the endpoint is made of.
#[derive(Debug)]
pub struct As4Settings<H, A> {
    /// Our market partner ID.
    pub own_id: MarketPartnerId,
    /// What we sign with (WS-Security).
    pub signing: KeyPair,
    /// What partners encrypt to.
    pub encryption: KeyPair,
    /// The SM-PKI CA certificates partners' certificates must chain to.
    pub anchors: Vec<Certificate>,
    /// The signer of an indirect CRL, if any.
    pub crl_signer: Option<Certificate>,
    /// The partners.
    pub partners: Vec<As4Partner>,
    /// The HTTPS client (ours: OpenSSL with brainpool, see `https`).
    pub http: H,
    /// Where evidence goes (see [`persist::EvidenceStore`]).
    pub audit: A,
    /// The largest AS4 request read.
    pub max_message_bytes: u64,
    /// The largest interchange accepted after decompression.
    pub max_payload_bytes: u64,
}

/// A verified delivery: the partner's signed receipt matched what we signed.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The audit record id of the receipt (kept by the audit sink).
    pub receipt_record_id: String,
    /// The subject of the certificate that signed the receipt.
    pub receipt_signer: String,
}

/// Why a send did not end with a verified receipt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}{}: {message}", ebms_code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
pub struct SendFailure {
    /// Whether resending the same message (same id and timestamp) may succeed: connection
    /// problems, timeouts, a partner's temporary refusal (`EBMS:0202`), an answer that could
    /// not be judged ([`SendFailure::is_transient`]).
    transient: bool,
    /// asx-rs's error kind (`transport`, `indeterminate`, `partner-error`, `rejected`,
    /// `config`, `backend`).
    pub kind: &'static str,
    /// The ebMS error code the partner answered, if it did (`EBMS:0101` …).
    pub ebms_code: Option<String>,
    /// asx-rs's description.
    pub message: String,
}

impl SendFailure {
    /// True when resending the same message later may succeed.
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    fn from_asx(e: &asx::Error) -> SendFailure {
        let kind = match e.kind() {
            asx::ErrorKind::Transport => "transport",
            asx::ErrorKind::Indeterminate => "indeterminate",
            asx::ErrorKind::PartnerError => "partner-error",
            asx::ErrorKind::Rejected => "rejected",
            asx::ErrorKind::Config => "config",
            asx::ErrorKind::Backend => "backend",
            _ => "other",
        };
        // asx-rs reports a failure of our HTTPS client as indeterminate (retryable); a
        // certificate problem of the partner's server is not cured by waiting: our error in
        // the source chain decides.
        let mut transient = e.is_retryable();
        // Our own store failing (a full disk, the database away) is never the partner's
        // refusal. asx-rs marks "delivered, but the evidence was not written" as not to be
        // resent; we do resend it, under the same message id: the partner answers the
        // duplicate with a receipt again, whose evidence is kept once the store is back
        // (found by the fault campaign: such items were parked though delivered).
        if e.kind() == asx::ErrorKind::Backend {
            transient = true;
        }
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            if let Some(https) = s.downcast_ref::<https::HttpsError>() {
                transient = https.is_transient();
                break;
            }
            source = s.source();
        }
        SendFailure {
            transient,
            kind,
            ebms_code: e.ebms_code().map(str::to_string),
            message: e.to_string(),
        }
    }
}

/// A user message that passed asx-rs's checks (signature, chain, OU = `From`, revocation,
/// decryption, timestamp, replay) and ours (known partner, TLS peer = `From`, SM-PKI signer
/// naming, one payload within the size limit).
#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    /// `eb:MessageId`.
    pub message_id: String,
    /// What the sender signed (`eb:Messaging`, the Body, each attachment): the digests a
    /// receipt for this message attests.
    pub signed: Vec<SignedPart>,
    /// The sender's market partner ID (`eb:From/eb:PartyId`).
    pub from: MarketPartnerId,
    /// The interchange, decompressed.
    pub payload: Vec<u8>,
    /// The payload's file name, if the sender gave one.
    pub file_name: Option<String>,
    /// Subject of the signing certificate.
    pub signer: String,
}

/// One reference of a message's signature, as asx-rs's audit record keeps it (the stored-data
/// contract of `asx::AuditRecord`: `uri`, `digest_algorithm`, the digest in base64).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SignedPart {
    /// `#as4-messaging`, `#as4-body`, `cid:…`.
    pub uri: String,
    /// The digest method's URI.
    pub digest_algorithm: String,
    /// The digest, base64.
    pub digest: String,
}

/// The parts of an `asx::AuditRecord` (its JSON) the receiver reads.
#[derive(Debug, Clone, serde::Deserialize)]
struct RecordView {
    direction: String,
    outcome: String,
    partner: String,
    #[serde(default)]
    references: Vec<SignedPart>,
}

impl RecordView {
    fn of(record: &asx::AuditRecord) -> Option<RecordView> {
        // Through the JSON text, not a value tree: the record carries the signer's certificate.
        serde_json::to_vec(record)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
    }
}

/// The signed parts of the message `from` sent that we accepted, from one of its evidence
/// records (`as4_evidence.record`); `None` for any other record (outbound, refused, another
/// sender, unreadable).
pub fn accepted_from(record_json: &str, from: &str) -> Option<Vec<SignedPart>> {
    let view: RecordView = serde_json::from_str(record_json).ok()?;
    (view.direction == "inbound" && view.outcome == "accepted" && view.partner == from)
        .then_some(view.references)
}

/// What the receiving side does with a message; `Ok` only after it is stored durably (the
/// signed receipt goes out on `Ok`).
pub trait MessageSink: Send + Sync + 'static {
    /// Stores `message`; `Err(Refusal)` answers with an ebMS error instead of a receipt.
    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> Pin<Box<dyn Future<Output = Result<(), Refusal>> + Send + '_>>;

    /// Told why a verified message was refused by our checks (asx-rs's error signal carries
    /// only the code; the receiver answers its own, with the reason, see [`signal`]).
    fn refused(&self, _refusal: &Refusal) {}
}

/// Why a verified message is not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Try again later (`EBMS:0202`, asx-rs's retryable refusal), e.g. the database is down.
    /// The reason is ours (it may name the database): the sender is only told to send again.
    Retry(String),
    /// Never (`EBMS:0004`), e.g. an unknown partner or an oversized payload. The reason goes to
    /// the sender as `eb:ErrorDetail`: it names only what the sender sent or is, and our
    /// limits.
    Permanent(String),
}

/// Our AS4 endpoint: sends to and receives from the partners of the registry.
#[derive(Debug, Clone)]
pub struct As4Endpoint {
    as4: As4,
    /// Every AS4 partner, with whether it has an endpoint we can send to.
    partners: Arc<BTreeMap<String, KnownPartner>>,
    own_id: MarketPartnerId,
    max_payload_bytes: u64,
}

/// An AS4 partner of the registry as the endpoint keeps it.
#[derive(Debug)]
struct KnownPartner {
    partner: Partner,
    /// Whether it has an endpoint we can send to (`as4_url`).
    sendable: bool,
    /// What our checks read from its configured signing certificate.
    signer: SignerFacts,
}

/// What our checks read from a signing certificate: its subject (for messages and the
/// journal) and whether it is an SM-PKI certificate for market communication (`EMT.MAK` in
/// its CN, phase4 `validateInitiatorIdentity`, transport.md §1.7).
#[derive(Debug)]
struct SignerFacts {
    /// The certificate (DER) these facts are of.
    der: Vec<u8>,
    subject: String,
    market_communication: bool,
}

impl SignerFacts {
    fn of(cert: &Certificate) -> SignerFacts {
        let x509 = x509(cert);
        SignerFacts {
            der: cert.der().to_vec(),
            subject: x509
                .as_ref()
                .map(|c| subject_line(c))
                .unwrap_or_else(|| "<unreadable certificate>".into()),
            market_communication: x509
                .as_ref()
                .and_then(|c| common_name_of(c))
                .is_some_and(|cn| cn.contains("EMT.MAK")),
        }
    }
}

/// The ebMS checks this endpoint adds to asx-rs's for a message received over a TLS connection
/// whose client certificate names `tls_peer`.
fn check_received(
    msg: &Verified<UserMessage>,
    tls_peer: Option<&str>,
    known: &BTreeMap<String, KnownPartner>,
    max_payload_bytes: u64,
) -> Result<ReceivedMessage, Refusal> {
    let from = msg.from();
    let Some(partner) = known.get(from) else {
        // asx-rs accepts any SM-PKI sender whose OU matches; the registry decides who may
        // send to us (asx-rs-audit.md §3).
        return Err(Refusal::Permanent(format!(
            "{from} is not an AS4 partner of this gateway"
        )));
    };
    if let Some(peer) = tls_peer {
        // phase4 `validateInitiatorIdentity`: the TLS client certificate's OU must equal the
        // ebMS sender too (transport.md §1.7).
        if peer != from {
            return Err(Refusal::Permanent(format!(
                "the TLS client certificate belongs to {peer}, the message claims to come from {from}"
            )));
        }
    }
    // The partner's configured signing certificate was read when the endpoint was built
    // (asx-rs pins it: a message signed with another one does not get here); only another
    // certificate is parsed now. OpenSSL 3 decodes a certificate's public key on every parse,
    // which costs about as much as an ECDSA verify for brainpool keys (the AS4 bench's profile).
    let read_now;
    let signer = if msg.signer().der() == partner.signer.der.as_slice() {
        &partner.signer
    } else {
        read_now = SignerFacts::of(msg.signer());
        &read_now
    };
    let signer_subject = signer.subject.clone();
    if !signer.market_communication {
        // SM-PKI certificates for market communication carry EMT.MAK in the CN (phase4
        // `validateInitiatorIdentity`, transport.md §1.7).
        return Err(Refusal::Permanent(format!(
            "the signing certificate {signer_subject} is not an SM-PKI certificate for market \
             communication (its CN does not contain EMT.MAK)"
        )));
    }
    if msg.service() != SERVICE_MARKET_PROCESSES {
        return Err(Refusal::Permanent(format!(
            "service {} is not served here (only {SERVICE_MARKET_PROCESSES})",
            msg.service()
        )));
    }
    if msg.path_switch().is_some() {
        return Err(Refusal::Permanent(
            "the BDEW path switch is not supported by this gateway".into(),
        ));
    }
    let [payload] = msg.payloads() else {
        return Err(Refusal::Permanent(format!(
            "a user message carries exactly one interchange, this one {}",
            msg.payloads().len()
        )));
    };
    let size = payload.bytes().len() as u64;
    if size > max_payload_bytes {
        return Err(Refusal::Permanent(format!(
            "the payload has {size} bytes after decompression, more than {max_payload_bytes}, \
             the most this gateway accepts (max_payload_bytes)"
        )));
    }
    let from = from.parse::<MarketPartnerId>().map_err(|e| {
        Refusal::Permanent(format!("the sender {from:?} is no market partner ID: {e}"))
    })?;
    Ok(ReceivedMessage {
        message_id: msg.message_id().to_string(),
        signed: RecordView::of(msg.evidence())
            .map(|r| r.references)
            .unwrap_or_default(),
        from,
        payload: payload.bytes().to_vec(),
        file_name: payload.name().map(str::to_string),
        signer: signer_subject,
    })
}

fn x509(cert: &Certificate) -> Option<openssl::x509::X509> {
    openssl::x509::X509::from_der(cert.der()).ok()
}

fn subject_of(cert: &Certificate) -> String {
    x509(cert)
        .map(|c| subject_line(&c))
        .unwrap_or_else(|| "<unreadable certificate>".into())
}

fn subject_line(c: &openssl::x509::X509Ref) -> String {
    c.subject_name()
        .entries()
        .filter_map(|e| {
            let key = e.object().nid().short_name().ok()?;
            let value = e.data().to_string().ok()?;
            Some(format!("{key}={value}"))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn common_name_of(c: &openssl::x509::X509Ref) -> Option<String> {
    let entry = c
        .subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .next()?;
    entry.data().to_string().ok()
}

impl As4Endpoint {
    /// Builds the endpoint; asx-rs refuses what the BDEW profile does not allow (wrong key
    /// types, a partner certificate that does not chain or whose OU is not its ID, a
    /// non-https endpoint).
    pub fn build<H, A>(settings: As4Settings<H, A>) -> Result<As4Endpoint, As4SetupError>
    where
        H: asx::HttpClient,
        A: asx::AuditSink + 'static,
    {
        let own = settings.own_id.as_str().to_string();
        let profile = Profile::bdew().max_message_bytes(settings.max_message_bytes);
        let mut builder = As4::builder(profile)
            .local(
                LocalParty::new(own.clone())
                    .party_type(party_type(&own))
                    .signer(settings.signing)
                    .decrypter(settings.encryption),
            )
            .http_client(settings.http)
            .audit(settings.audit);
        for anchor in settings.anchors {
            builder = builder.trust_anchor(anchor);
        }
        if let Some(signer) = settings.crl_signer {
            builder = builder.crl_signer(signer);
        }
        let mut partners = BTreeMap::new();
        for p in settings.partners {
            let id = p.id.as_str().to_string();
            let signer = SignerFacts::of(&p.signing_cert);
            let mut partner = Partner::new(id.clone())
                .party_type(party_type(&id))
                .signing_cert(p.signing_cert)
                .encryption_cert(p.encryption_cert);
            if let Some(url) = &p.url {
                partner = partner.endpoint(url);
            }
            builder = builder.partner(partner.clone());
            partners.insert(
                id,
                KnownPartner {
                    partner,
                    sendable: p.url.is_some(),
                    signer,
                },
            );
        }
        let as4 = builder.build().map_err(|e| As4SetupError::Invalid {
            what: "AS4 endpoint".into(),
            reason: e.to_string(),
        })?;
        Ok(As4Endpoint {
            as4,
            partners: Arc::new(partners),
            own_id: settings.own_id,
            max_payload_bytes: settings.max_payload_bytes,
        })
    }

    /// Whether `id` is an AS4 partner.
    pub fn knows(&self, id: &str) -> bool {
        self.partners.contains_key(id)
    }

    /// Why nothing can be sent to `id` over AS4, if nothing can: it is no AS4 partner, or it
    /// has no `as4_url` (it only sends to us).
    pub fn cannot_send_to(&self, id: &str) -> Option<String> {
        self.sendable(id).err()
    }

    fn sendable(&self, id: &str) -> Result<&Partner, String> {
        match self.partners.get(id) {
            None => Err(format!("{id} is not an AS4 partner")),
            Some(KnownPartner {
                sendable: false, ..
            }) => Err(format!(
                "partner {id} has no as4_url in [[partners]] (it only sends to us over AS4): \
                 there is no endpoint to send its interchange to"
            )),
            Some(KnownPartner { partner, .. }) => Ok(partner),
        }
    }

    /// Our market partner ID.
    pub fn own_id(&self) -> &MarketPartnerId {
        &self.own_id
    }

    /// `[as4] max_payload_bytes`: the largest interchange accepted after decompression.
    pub fn max_payload_bytes(&self) -> u64 {
        self.max_payload_bytes
    }

    /// Sends one interchange to a partner as a BDEW user message (service MP, gzip, signed,
    /// encrypted) and verifies the signed receipt. `message_id` and `timestamp` are fixed by
    /// the caller before the first attempt: resending after a retryable failure sends the
    /// same message, which the receiver deduplicates (reception awareness).
    pub async fn send(
        &self,
        to: &str,
        interchange: Vec<u8>,
        file_name: &str,
        message_id: &str,
        timestamp: SystemTime,
    ) -> Result<Delivered, SendFailure> {
        let partner = self.sendable(to).map_err(|message| SendFailure {
            transient: false,
            kind: "config",
            ebms_code: None,
            message,
        })?;
        let message = Message::to(partner)
            .service(SERVICE_MARKET_PROCESSES)
            .message_id(message_id)
            .timestamp(timestamp)
            .payload(Payload::new(interchange, "application/octet-stream").named(file_name));
        match self.as4.send(message).await {
            Ok(receipt) => Ok(Delivered {
                receipt_record_id: receipt.evidence().record_id().to_string(),
                receipt_signer: subject_of(receipt.signer()),
            }),
            Err(e) => Err(SendFailure::from_asx(&e)),
        }
    }

    /// The receiving service for one HTTP request that arrived over a TLS connection whose
    /// client certificate names `tls_peer` (its market partner ID). A tower `Service`:
    /// asx-rs verifies, claims the message id in `dedup`, then our checks run and `sink`
    /// stores it; the answer is the signed receipt, an ebMS error, or 503 while the same
    /// message is in flight.
    pub fn inbound<D, S>(&self, dedup: D, tls_peer: Option<String>, sink: Arc<S>) -> InboundService
    where
        D: asx::DedupStore,
        S: MessageSink + ?Sized,
    {
        let partners = self.partners.clone();
        let max = self.max_payload_bytes;
        InboundService(self.as4.inbound(dedup, move |msg: Verified<UserMessage>| {
            let checked = check_received(&msg, tls_peer.as_deref(), &partners, max);
            let sink = sink.clone();
            async move {
                let received = match checked {
                    Ok(r) => r,
                    Err(refusal) => {
                        tracing::warn!(message = %msg.message_id(), from = %msg.from(), ?refusal, "AS4 message refused");
                        sink.refused(&refusal);
                        return Err(reject(refusal));
                    }
                };
                sink.deliver(received).await.map_err(|refusal| {
                    sink.refused(&refusal);
                    reject(refusal)
                })
            }
        }))
    }
}

/// The receiving side for one request (see [`As4Endpoint::inbound`]).
#[derive(Debug)]
pub struct InboundService(asx::Inbound);

impl InboundService {
    /// Answers one AS4 request: a signed receipt, an ebMS error signal, or 503 while the same
    /// message is being handled by another delivery.
    pub async fn call(
        mut self,
        request: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> http::Response<http_body_util::Full<bytes::Bytes>> {
        use tower_service::Service;
        match self.0.call(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

fn reject(refusal: Refusal) -> Reject {
    match refusal {
        Refusal::Retry(reason) => Reject::new(reason),
        Refusal::Permanent(reason) => Reject::permanent(reason),
    }
}

/// The ebMS error code of an AS4 response body (`eb:Error/@errorCode`), if it is an error
/// signal; `None` for a receipt or anything unreadable.
pub fn ebms_error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("errorCode=\"")? + "errorCode=\"".len();
    let end = text[at..].find('"')?;
    Some(text[at..at + end].to_string())
}

/// Whether an AS4 response body carries a receipt signal.
pub fn is_receipt(body: &[u8]) -> bool {
    memchr::memmem::find(body, b":Receipt").is_some()
}

/// The description of the first ebMS error of an AS4 response body (`eb:Description` or
/// `eb:ErrorDetail`), if any.
pub fn ebms_error_description(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    for tag in ["Description", "ErrorDetail"] {
        let open = format!(":{tag}");
        if let Some(at) = text.find(&open) {
            let start = at + text[at..].find('>')? + 1;
            let end = start + text[start..].find('<')?;
            let value = text[start..end].trim();
            if !value.is_empty() {
                return Some(value.to_string());
            }
        }
    }
    None
}
