//! The AS4 transport wired into the daemon: our keys and the AS4 partners from the config
//! ([`As4Runtime::load`], checked before anything binds), and the handling of one received AS4
//! request ([`handle_request`]): its raw bytes journaled and committed first, then asx-rs's
//! verification and our checks (`transport::as4`), then the interchange journaled through
//! the gateway's [`InboundSink`] — only then does the signed receipt go back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};

use crate::config::{
    As4Config, Config, ConfigError, ConfigKey, Problem, Transport as PartnerTransport,
};
use crate::ids::MarketPartnerId;
use crate::store::{As4Answer, Inserted, Store, Transport};
use crate::transport::as4::https::{
    serve_https, HttpsAcceptor, HttpsClient, PlainHttpFetcher, TlsSettings,
};
use crate::transport::as4::persist::{Dedup, EvidenceStore};
use crate::transport::as4::smpki::{CrlCache, PeerIdentity};
use crate::transport::as4::{
    certificate, ebms_error_code, is_receipt, key_pair, As4Endpoint, As4Keys, As4Partner,
    As4Settings, HttpClient, MessageSink, ReceivedMessage, Refusal,
};
use crate::transport::InboundSink;

/// How long one delivery may hold a received message's id (journaling one interchange takes
/// milliseconds; a crashed holder's claim is taken over after this).
pub const DEDUP_LEASE: Duration = Duration::from_secs(60);

fn invalid(key: &str, value: Option<String>, reason: String) -> ConfigError {
    ConfigError {
        key: ConfigKey::File(key.to_string()),
        value,
        problem: Problem::Invalid { reason },
    }
}

/// The partner registry's AS4 part and our identity, read from the configured files.
#[derive(Debug)]
pub struct As4Material {
    /// `[as4]`.
    pub config: As4Config,
    /// The AS4 partners with their certificates.
    pub partners: Vec<As4Partner>,
    /// Our key pairs and the trust anchors.
    pub keys: As4Keys,
}

/// Reads `[as4]` and the AS4 partners' certificates. `Ok(None)` without `[as4]`. Every error
/// at once, keyed like [`Config::load`]'s.
pub fn load_material(config: &Config) -> Result<Option<As4Material>, Vec<ConfigError>> {
    let Some(as4) = &config.as4 else {
        return Ok(None);
    };
    let mut errors = Vec::new();
    let pair =
        |errors: &mut Vec<ConfigError>, key: &str, cert: &std::path::Path, k: &std::path::Path| {
            match key_pair(cert, k) {
                Ok(p) => Some(p),
                Err(e) => {
                    errors.push(invalid(
                        key,
                        Some(format!("{:?}", k.display().to_string())),
                        e.to_string(),
                    ));
                    None
                }
            }
        };
    let signing = pair(
        &mut errors,
        "as4.signing_key",
        &as4.signing_cert,
        &as4.signing_key,
    );
    let encryption = pair(
        &mut errors,
        "as4.encryption_key",
        &as4.encryption_cert,
        &as4.encryption_key,
    );
    // Our own certificates must name us as the SM-PKI does (CN with EMT.MAK, OU = our ID):
    // partners check exactly that (transport.md §1.7).
    for (key, path) in [
        ("as4.signing_cert", &as4.signing_cert),
        ("as4.encryption_cert", &as4.encryption_cert),
        ("as4.tls_cert", &as4.tls_cert),
    ] {
        if let Err(reason) = check_own_certificate(path, &config.own_id) {
            errors.push(invalid(
                key,
                Some(format!("{:?}", path.display().to_string())),
                reason,
            ));
        }
    }
    let mut anchors = Vec::new();
    for (i, path) in as4.trust_anchors.iter().enumerate() {
        match certificate(path) {
            Ok(c) => anchors.push(c),
            Err(e) => errors.push(invalid(
                &format!("as4.trust_anchors[{i}]"),
                Some(format!("{:?}", path.display().to_string())),
                e.to_string(),
            )),
        }
    }
    let crl_signer = match &as4.crl_signer {
        Some(path) => match certificate(path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(invalid(
                    "as4.crl_signer",
                    Some(format!("{:?}", path.display().to_string())),
                    e.to_string(),
                ));
                None
            }
        },
        None => None,
    };
    let mut partners = Vec::new();
    for (i, p) in config.partners.iter().enumerate() {
        if p.transport != PartnerTransport::As4 {
            continue;
        }
        let Some(settings) = &p.as4 else { continue };
        let mut cert = |key: &str, path: &std::path::Path| match certificate(path) {
            Ok(c) => Some(c),
            Err(e) => {
                errors.push(invalid(
                    &format!("partners[{i}].{key}"),
                    Some(format!("{:?}", path.display().to_string())),
                    e.to_string(),
                ));
                None
            }
        };
        let signing_cert = cert("signing_cert", &settings.signing_cert);
        let encryption_cert = cert("encryption_cert", &settings.encryption_cert);
        if let (Some(signing_cert), Some(encryption_cert)) = (signing_cert, encryption_cert) {
            partners.push(As4Partner {
                id: p.id.clone(),
                url: settings.url.clone(),
                signing_cert,
                encryption_cert,
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Some(As4Material {
        config: as4.clone(),
        partners,
        keys: As4Keys {
            signing: signing.expect("no errors"),
            encryption: encryption.expect("no errors"),
            anchors,
            crl_signer,
        },
    }))
}

fn check_own_certificate(path: &std::path::Path, own: &MarketPartnerId) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let cert = openssl::x509::X509::from_pem(&pem).map_err(|e| e.to_string())?;
    let name = cert.subject_name();
    let cn = name
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok())
        .next()
        .unwrap_or_default();
    let ous: Vec<String> = name
        .entries_by_nid(openssl::nid::Nid::ORGANIZATIONALUNITNAME)
        .filter_map(|e| e.data().to_string().ok())
        .collect();
    if !cn.contains("EMT.MAK") {
        return Err(format!(
            "not an SM-PKI certificate for market communication: CN {cn:?} does not contain EMT.MAK"
        ));
    }
    if !ous.iter().any(|ou| ou.trim() == own.as_str()) {
        return Err(format!(
            "the certificate's OU {ous:?} is not our market partner ID {own}"
        ));
    }
    Ok(())
}

/// Builds the endpoint from the material, with `http` as the HTTPS client and `evidence`
/// keeping the evidence.
pub fn endpoint<H: HttpClient>(
    config: &Config,
    material: &As4Material,
    http: H,
    evidence: EvidenceStore,
) -> Result<As4Endpoint, ConfigError> {
    let keys = &material.keys;
    As4Endpoint::build(As4Settings {
        own_id: config.own_id.clone(),
        signing: keys.signing.clone(),
        encryption: keys.encryption.clone(),
        anchors: keys.anchors.clone(),
        crl_signer: keys.crl_signer.clone(),
        partners: material.partners.clone(),
        http,
        audit: evidence,
        max_message_bytes: material.config.max_message_bytes,
        max_payload_bytes: material.config.max_payload_bytes,
    })
    .map_err(|e| invalid("as4", None, e.to_string()))
}

/// The AS4 endpoint's sink for one request: the interchange goes to the gateway's
/// [`InboundSink`] (journaled and committed); the message id and journal item go into the
/// request's row with the answer.
struct RequestSink {
    journal: Arc<dyn InboundSink>,
    clock: Clock,
    refusal: std::sync::Mutex<Option<String>>,
    /// The message id and the journal item of the delivered interchange.
    delivered: std::sync::Mutex<Option<(String, String)>>,
}

impl MessageSink for RequestSink {
    fn refused(&self, refusal: &Refusal) {
        let reason = match refusal {
            Refusal::Retry(r) | Refusal::Permanent(r) => r.clone(),
        };
        *self
            .refusal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason);
    }

    fn deliver(
        &self,
        message: ReceivedMessage,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), Refusal>> + Send + '_>> {
        Box::pin(async move {
            // The interchange must come from the party that signed the AS4 message (as for
            // mail: the signer stands for the UNB sender).
            let facts = crate::plan::inbound::journal_facts(&message.payload);
            if let Some(sender) = &facts.sender {
                if sender != message.from.as_str() {
                    return Err(Refusal::Permanent(format!(
                        "the interchange's sender (UNB) is {sender}, the AS4 message comes from {}",
                        message.from
                    )));
                }
            }
            let inserted = self
                .journal
                .receive(message.payload, Transport::As4, self.clock.now())
                .await
                .map_err(|e| Refusal::Retry(format!("journaling failed: {e}")))?;
            if let Inserted::Duplicate(id) = &inserted {
                tracing::info!(journal = %id, message = %message.message_id, "interchange delivered twice: journaled once");
            }
            // Recorded with the answer (one commit less per message).
            *self
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((
                message.message_id.clone(),
                inserted.journal_id().to_string(),
            ));
            tracing::info!(message = %message.message_id, from = %message.from, journal = %inserted.journal_id(), "AS4 message journaled");
            Ok(())
        })
    }
}

fn plain(status: http::StatusCode, text: &str) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// What answering AS4 requests needs: where interchanges are journaled, the store of the
/// raw request journal and the dedup claims, the clock, the endpoint, the size limit.
#[derive(Clone)]
pub struct Receiver {
    /// The gateway's inbound sink.
    pub journal: Arc<dyn InboundSink>,
    /// The store (raw requests, duplicate detection).
    pub store: Store,
    /// The clock.
    pub clock: Clock,
    /// The endpoint (asx-rs's verification and receipts).
    pub endpoint: As4Endpoint,
    /// `[as4] max_message_bytes`.
    pub max_message_bytes: u64,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

/// Answers one AS4 request that came over a TLS connection whose client certificate names
/// `peer` (its market partner ID; `peer_label` adds the address for the journal).
///
/// Order: the body is read (at most `[as4] max_message_bytes`, else 413) and journaled raw
/// and committed (else 503: nothing acknowledged); asx-rs verifies (signature, chain, OU,
/// revocation, decryption, timestamp, duplicate); our checks; the interchange is journaled;
/// then the signed receipt. What was answered is recorded with the raw request.
pub async fn handle_request<B>(
    receiver: &Receiver,
    peer: Option<MarketPartnerId>,
    peer_label: String,
    request: http::Request<B>,
) -> http::Response<Full<Bytes>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error:
        std::fmt::Display + Send + Sync + 'static + Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Receiver {
        journal,
        store,
        clock,
        endpoint,
        max_message_bytes,
    } = receiver.clone();
    let (parts, body) = request.into_parts();
    if parts.method != http::Method::POST {
        return plain(
            http::StatusCode::METHOD_NOT_ALLOWED,
            "AS4 messages are POSTed\n",
        );
    }
    let limit = usize::try_from(max_message_bytes).unwrap_or(usize::MAX);
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            let too_big = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            tracing::warn!(peer = %peer_label, error = %e, "AS4 request not read");
            return if too_big {
                plain(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("an AS4 request has at most {max_message_bytes} bytes here\n"),
                )
            } else {
                plain(
                    http::StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                )
            };
        }
    };
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let now = clock.now();
    let request_id = match async {
        store
            .conn()
            .await?
            .insert_as4_request(&peer_label, &content_type, &raw, now)
            .await
    }
    .await
    {
        Ok(id) => id,
        Err(e) => {
            tracing::error!(error = %e, "AS4 request not journaled: answered 503");
            return plain(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "the request could not be stored; send it again later\n",
            );
        }
    };
    let sink = Arc::new(RequestSink {
        journal,
        clock: clock.clone(),
        refusal: std::sync::Mutex::new(None),
        delivered: std::sync::Mutex::new(None),
    });
    let service = endpoint.inbound(
        Dedup::new(store.clone(), DEDUP_LEASE, clock.clone()),
        peer.map(|p| p.as_str().to_string()),
        sink.clone(),
    );
    let request = http::Request::from_parts(parts, Full::new(raw));
    let response = service.call(request).await;
    let status = response.status();
    let body = response
        .body()
        .clone()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let answer = if status == http::StatusCode::SERVICE_UNAVAILABLE {
        As4Answer {
            outcome: "busy",
            http_status: status.as_u16(),
            ebms_code: None,
            reason: None,
            delivered: None,
        }
    } else if status.is_success() && is_receipt(&body) {
        As4Answer {
            outcome: "receipted",
            http_status: status.as_u16(),
            ebms_code: None,
            reason: None,
            delivered: sink
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        }
    } else {
        As4Answer {
            outcome: "refused",
            http_status: status.as_u16(),
            ebms_code: ebms_error_code(&body),
            // Our own reason where we refused; asx-rs's description otherwise.
            reason: sink
                .refusal
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .or_else(|| crate::transport::as4::ebms_error_description(&body)),
            delivered: None,
        }
    };
    if answer.outcome == "refused" {
        tracing::warn!(peer = %peer_label, request = %request_id, code = ?answer.ebms_code, reason = ?answer.reason, "AS4 request refused");
    }
    let now = clock.now();
    if let Err(e) = async {
        store
            .conn()
            .await?
            .finish_as4_request(&request_id, &answer, now)
            .await
    }
    .await
    {
        tracing::warn!(request = %request_id, error = %e, "AS4 answer not recorded");
    }
    response
}

/// The AS4 transport as `serve` runs it: the endpoint (sending and the asx-rs side of
/// receiving), the HTTPS acceptor and the CRL cache of TLS peers, and `[as4]`.
#[derive(Debug, Clone)]
pub struct As4Runtime {
    /// Sends to and receives from the AS4 partners.
    pub endpoint: As4Endpoint,
    /// `[as4]`.
    pub config: As4Config,
    acceptor: Arc<HttpsAcceptor>,
    crl: Arc<CrlCache>,
    evidence: EvidenceStore,
    clock: Clock,
}

/// `host:port` (port written out, 443 by default) of an `https://` URL.
fn authority(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    Some(format!("{host}:{}", uri.port_u16().unwrap_or(443)))
}

impl As4Runtime {
    /// Reads `[as4]` and the AS4 partners and builds everything, before the store is
    /// connected (the evidence store is attached with [`As4Runtime::attach`]); `Ok(None)`
    /// without `[as4]`. Every error at once, keyed like [`Config::load`]'s.
    pub fn load(config: &Config, clock: Clock) -> Result<Option<As4Runtime>, Vec<ConfigError>> {
        let Some(material) = load_material(config)? else {
            return Ok(None);
        };
        let as4 = &material.config;
        let mut anchors_pem = Vec::new();
        for path in &as4.trust_anchors {
            anchors_pem.extend(std::fs::read(path).unwrap_or_default());
            anchors_pem.push(b'\n');
        }
        let read = |p: &std::path::Path| std::fs::read(p).unwrap_or_default();
        let tls = TlsSettings::from_pem(&read(&as4.tls_key), &read(&as4.tls_cert), &anchors_pem)
            .map_err(|e| {
                vec![invalid(
                    "as4.tls_key",
                    Some(format!("{:?}", as4.tls_key.display().to_string())),
                    e.to_string(),
                )]
            })?;
        let crl = Arc::new(CrlCache::new(
            tls.anchors().to_vec(),
            Arc::new(PlainHttpFetcher::default()),
            clock.clone(),
        ));
        let expected: HashMap<String, MarketPartnerId> = material
            .partners
            .iter()
            .filter_map(|p| Some((authority(&p.url)?, p.id.clone())))
            .collect();
        let client = HttpsClient::new(&tls, crl.clone(), expected)
            .map_err(|e| vec![invalid("as4.tls_cert", None, e.to_string())])?
            .with_timeouts(as4.connect_timeout, as4.response_timeout);
        let acceptor = tls
            .acceptor()
            .map_err(|e| vec![invalid("as4.tls_cert", None, e.to_string())])?;
        let evidence = EvidenceStore::unattached(clock.clone());
        let endpoint =
            endpoint(config, &material, client, evidence.clone()).map_err(|e| vec![e])?;
        Ok(Some(As4Runtime {
            endpoint,
            config: as4.clone(),
            acceptor: Arc::new(acceptor),
            crl,
            evidence,
            clock,
        }))
    }

    /// Gives the runtime its store: the evidence of every exchange is kept there.
    pub fn attach(&self, store: &Store) {
        self.evidence.attach(store.clone());
    }

    /// Serves the AS4 receiver on `listener` until `shutdown` completes: mutual TLS (the
    /// client certificate chained to the SM-PKI anchors, named as the SM-PKI names market
    /// partners, not revoked), then [`handle_request`] for every request on `[as4] path`.
    pub async fn serve(
        self,
        journal: Arc<dyn InboundSink>,
        store: Store,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let runtime = Arc::new(self);
        let acceptor = runtime.acceptor.clone();
        let crl = runtime.crl.clone();
        serve_https(
            listener,
            acceptor,
            crl,
            move |peer: PeerIdentity| As4Service {
                path: runtime.config.path.clone(),
                receiver: Receiver {
                    journal: journal.clone(),
                    store: store.clone(),
                    clock: runtime.clock.clone(),
                    endpoint: runtime.endpoint.clone(),
                    max_message_bytes: runtime.config.max_message_bytes,
                },
                peer,
            },
            shutdown,
        )
        .await;
    }
}

/// The HTTP service of one TLS connection.
struct As4Service {
    path: String,
    receiver: Receiver,
    peer: PeerIdentity,
}

impl tower_service::Service<http::Request<hyper::body::Incoming>> for As4Service {
    type Response = http::Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        let path = self.path.clone();
        let receiver = self.receiver.clone();
        let peer = self.peer.clone();
        Box::pin(async move {
            if request.uri().path() != path {
                return Ok(plain(http::StatusCode::NOT_FOUND, "no AS4 endpoint here\n"));
            }
            let label = format!("{} ({})", peer.market_partner_id, peer.subject);
            Ok(handle_request(
                &receiver,
                Some(peer.market_partner_id.clone()),
                label,
                request,
            )
            .await)
        })
    }
}
