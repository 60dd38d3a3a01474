//! HTTPS for AS4 on OpenSSL: TLS 1.2 with brainpoolP256r1 and mutual authentication against
//! the SM-PKI trust anchors, a client for `asx` ([`HttpsClient`], an `asx::HttpClient`) and a
//! server loop ([`serve_https`]) in front of `asx::Inbound`.
//!
//! Why OpenSSL, and why these settings (`transport.md` §1.8): rustls has no brainpool curves;
//! OpenSSL 3.0 does brainpool TLS 1.2 only when both sides list the groups
//! `brainpoolP256r1:prime256v1` (otherwise "no shared cipher"), and has no TLS 1.3 brainpool
//! groups, so TLS 1.2 is both the minimum and, by default, the maximum.
//!
//! Who the peer is: not a host name. A peer is trusted when its chain ends at one of *our*
//! anchors (never the system roots), its certificate is named as an SM-PKI market
//! communication certificate ([`check_sm_pki_naming`]; for a server, of the market partner we
//! expect at that endpoint) and its CA's CRL does not list it ([`CrlCache`]). Naming is checked
//! inside the handshake, so a refused peer gets a TLS alert; revocation needs a download and is
//! checked right after it, so a revoked peer sees the connection closed.
//!
//! Errors: [`HttpsError`] for the client, [`TlsError`] for a TLS peer on either side. Their
//! `Display` is complete on its own (asx keeps only the text of a client error), and
//! [`HttpsError::kind`] tells a connection failure (retry) from a TLS or certificate failure
//! (park until someone fixes certificates or configuration).
//!
//! Connections are kept (HTTP/1.1 keep-alive, [`HttpsClient`]): per endpoint and expected
//! partner up to [`DEFAULT_MAX_IDLE_PER_ENDPOINT`] idle connections for
//! [`DEFAULT_IDLE_EXPIRY`], each with the identity verified when it was made; a kept connection
//! is used again only for the same endpoint and expected partner, and only after its peer's
//! revocation status was asked again (the [`CrlCache`] answers from its cache until the CRL's
//! `nextUpdate`, so a revocation reaches kept connections as soon as it reaches new ones).
//!
//! A new connection offers the TLS session saved for its endpoint and expected partner (saved
//! only after a full handshake passed every check); the server resumes sessions it issued.
//! After a resumed handshake each side runs the naming and revocation checks again on the
//! peer certificate the session holds (`tls_session` says why that is enough).
//!
//! Not here: proxies, HTTP/2.

use std::collections::HashMap;
use std::fmt;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, HOST};
use http::{Method, Request, Response, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::{TokioIo, TokioTimer};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    Ssl, SslAcceptor, SslConnector, SslContextBuilder, SslMethod, SslRef, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509Ref, X509StoreContextRef, X509VerifyResult, X509};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_openssl::SslStream;
use tower_service::Service;

mod pool;
mod server;

use pool::{Attempt, Connection, Pool, PoolKey};

pub use server::{accept_peer, serve_https, HttpsAcceptor};

use super::tls_session::{SessionKey, Sessions};
use crate::ids::MarketPartnerId;
use crate::transport::smpki::{
    check_sm_pki_naming, BoxError, BoxFuture, CrlCache, CrlFetcher, CrlUnavailable, PeerIdentity,
    RevocationStatus, SmPkiError,
};

/// The groups both sides must offer for brainpool TLS 1.2 on OpenSSL 3.0 (`transport.md` §1.8);
/// `prime256v1` for peers that only do NIST curves for the key exchange.
pub const DEFAULT_GROUPS: &str = "brainpoolP256r1:prime256v1";

/// Names our server's TLS sessions: a session is resumed only by a server of this context.
const SESSION_ID_CONTEXT: &[u8] = b"mako-gateway/as4";

/// TLS 1.2 suites for ECDSA certificates: ECDHE and AEAD first, then the CBC-SHA2 suites that
/// BSI TR-02102-2 (which the BDEW refers to) still allows.
pub const DEFAULT_CIPHERS: &str = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:\
ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256";

/// phase4's BDEW connect timeout (`transport.md` §1.8); also bounds the TLS handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// phase4's BDEW response timeout (`transport.md` §1.8): from the request to the end of the
/// response body.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(100);

/// The largest response body the client reads: a signed receipt or an ebMS error, never a
/// payload; and a CRL (asx caps CRLs at 10 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Idle connections the client keeps per endpoint (and expected partner): as many as
/// exchanges to one partner usually run at once; more are closed when they become idle.
pub const DEFAULT_MAX_IDLE_PER_ENDPOINT: usize = 8;

/// How long the client keeps an idle connection: half the [`DEFAULT_IDLE_TIMEOUT`] after which
/// our own server closes one (and well under what common servers allow), so that a kept
/// connection is rarely closed by the server while we start to send on it.
pub const DEFAULT_IDLE_EXPIRY: Duration = Duration::from_secs(60);

/// The largest CRL [`PlainHttpFetcher`] reads (the cap asx applies to CRLs).
pub const MAX_CRL_BYTES: usize = 10 * 1024 * 1024;

/// How long a client may take for the TLS handshake before the server drops it.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the server waits for the headers of a request on an open connection.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections the AS4 receiver serves at once; one more is closed at once (issue 15 defect 5:
/// no partner, nor anyone who can open a socket, exhausts the daemon's descriptors).
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// From a request's header to the end of its answer (reading the body, verifying, storing):
/// phase4's BDEW response timeout, after which the sender has given up anyway.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = DEFAULT_RESPONSE_TIMEOUT;

/// A connection without a byte in either direction for this long is closed (longer than a
/// request may take).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long running connections may finish after shutdown began. An AS4 exchange that verifies
/// and stores a message takes seconds, not minutes.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Settings

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read.
    #[error("cannot read {what} from {path}: {source}")]
    Read {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// PEM text that is not what it should be.
    #[error("{what} is not readable PEM: {source}")]
    Pem {
        /// What the text should hold.
        what: &'static str,
        /// OpenSSL's reason.
        #[source]
        source: ErrorStack,
    },
    /// A PEM text without any certificate.
    #[error("{what} holds no certificate")]
    NoCertificate {
        /// What the text should hold.
        what: &'static str,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key does not belong to the certificate `{subject}`")]
    KeyMismatch {
        /// The certificate's subject.
        subject: String,
    },
    /// OpenSSL refused a setting.
    #[error("OpenSSL refused {what}: {source}")]
    OpenSsl {
        /// The setting.
        what: &'static str,
        /// OpenSSL's reason.
        #[source]
        source: ErrorStack,
    },
}

/// Our TLS identity and trust for both directions: key and certificate chain (the SM-PKI TLS
/// certificate, its own key pair), the trust anchors (the SM-PKI root and sub CAs), groups,
/// cipher list and protocol versions. Make a client context with [`TlsSettings::connector`] and
/// a server one with [`TlsSettings::acceptor`].
#[derive(Clone)]
pub struct TlsSettings {
    key: PKey<Private>,
    cert: X509,
    chain: Vec<X509>,
    anchors: Vec<X509>,
    groups: String,
    ciphers: String,
    max_version: Option<SslVersion>,
}

impl fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSettings")
            .field(
                "cert",
                &crate::transport::smpki::name_line(self.cert.subject_name()),
            )
            .field("chain", &self.chain.len())
            .field("anchors", &self.anchors.len())
            .field("groups", &self.groups)
            .field("ciphers", &self.ciphers)
            .finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Settings from PEM texts: the private key, our certificate followed by its chain, and
    /// the trust anchors (one or more certificates).
    pub fn from_pem(
        key_pem: &[u8],
        cert_chain_pem: &[u8],
        anchors_pem: &[u8],
    ) -> Result<TlsSettings, TlsConfigError> {
        let key = PKey::private_key_from_pem(key_pem).map_err(|source| TlsConfigError::Pem {
            what: "TLS private key",
            source,
        })?;
        let mut chain = certificates(cert_chain_pem, "TLS certificate chain")?.into_iter();
        let cert = chain.next().ok_or(TlsConfigError::NoCertificate {
            what: "TLS certificate chain",
        })?;
        let anchors = certificates(anchors_pem, "trust anchors")?;
        if anchors.is_empty() {
            return Err(TlsConfigError::NoCertificate {
                what: "trust anchors",
            });
        }
        let matches = cert
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(TlsConfigError::KeyMismatch {
                subject: crate::transport::smpki::name_line(cert.subject_name()),
            });
        }
        Ok(TlsSettings {
            key,
            cert,
            chain: chain.collect(),
            anchors,
            groups: DEFAULT_GROUPS.to_string(),
            ciphers: DEFAULT_CIPHERS.to_string(),
            max_version: Some(SslVersion::TLS1_2),
        })
    }

    /// Settings from PEM files (see [`TlsSettings::from_pem`]).
    pub fn from_pem_files(
        key: &Path,
        cert_chain: &Path,
        anchors: &Path,
    ) -> Result<TlsSettings, TlsConfigError> {
        let read = |what, path: &Path| {
            std::fs::read(path).map_err(|source| TlsConfigError::Read {
                what,
                path: path.display().to_string(),
                source,
            })
        };
        TlsSettings::from_pem(
            &read("TLS private key", key)?,
            &read("TLS certificate chain", cert_chain)?,
            &read("trust anchors", anchors)?,
        )
    }

    /// Other groups than [`DEFAULT_GROUPS`] (OpenSSL `-groups` syntax).
    pub fn with_groups(mut self, groups: &str) -> TlsSettings {
        self.groups = groups.to_string();
        self
    }

    /// Another TLS 1.2 cipher list than [`DEFAULT_CIPHERS`] (OpenSSL syntax).
    pub fn with_ciphers(mut self, ciphers: &str) -> TlsSettings {
        self.ciphers = ciphers.to_string();
        self
    }

    /// Allow TLS 1.3 (`None`: OpenSSL's highest). Off by default: OpenSSL 3.0 has no brainpool
    /// groups for TLS 1.3, so only the NIST groups would remain.
    pub fn with_max_version(mut self, max: Option<SslVersion>) -> TlsSettings {
        self.max_version = max;
        self
    }

    /// The trust anchors, for a [`CrlCache`] that checks the same CAs.
    pub fn anchors(&self) -> &[X509] {
        &self.anchors
    }

    /// The client context: our certificate, our anchors only, no host name check (the SM-PKI
    /// naming replaces it, per connection).
    pub fn connector(&self) -> Result<SslConnector, TlsConfigError> {
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(openssl("client context"))?;
        self.configure(&mut builder)?;
        builder.set_verify(SslVerifyMode::PEER);
        Ok(builder.build())
    }

    /// The server context: a client certificate chained to our anchors is required.
    pub fn acceptor(&self) -> Result<HttpsAcceptor, TlsConfigError> {
        let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
            .map_err(openssl("server context"))?;
        self.configure(&mut builder)?;
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        // Sessions may be resumed (with a client certificate OpenSSL requires a session id
        // context for that); a resumed client's certificate, kept in the session, gets the
        // naming and revocation checks again in `accept_peer`.
        builder
            .set_session_id_context(SESSION_ID_CONTEXT)
            .map_err(openssl("the session id context"))?;
        for anchor in &self.anchors {
            builder
                .add_client_ca(anchor)
                .map_err(openssl("the client CA list"))?;
        }
        Ok(HttpsAcceptor {
            acceptor: builder.build(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    fn configure(&self, ctx: &mut SslContextBuilder) -> Result<(), TlsConfigError> {
        ctx.set_private_key(&self.key)
            .map_err(openssl("the private key"))?;
        ctx.set_certificate(&self.cert)
            .map_err(openssl("the certificate"))?;
        for cert in &self.chain {
            ctx.add_extra_chain_cert(cert.clone())
                .map_err(openssl("the certificate chain"))?;
        }
        ctx.check_private_key().map_err(openssl("the key pair"))?;
        ctx.set_min_proto_version(Some(SslVersion::TLS1_2))
            .map_err(openssl("the minimum TLS version"))?;
        ctx.set_max_proto_version(self.max_version)
            .map_err(openssl("the maximum TLS version"))?;
        ctx.set_groups_list(&self.groups)
            .map_err(openssl("the groups list"))?;
        ctx.set_cipher_list(&self.ciphers)
            .map_err(openssl("the cipher list"))?;
        // A store of our own replaces the default verify paths: system roots are never trusted.
        let mut store = X509StoreBuilder::new().map_err(openssl("the trust store"))?;
        for anchor in &self.anchors {
            store
                .add_cert(anchor.clone())
                .map_err(openssl("a trust anchor"))?;
        }
        ctx.set_cert_store(store.build());
        Ok(())
    }
}

fn openssl(what: &'static str) -> impl Fn(ErrorStack) -> TlsConfigError {
    move |source| TlsConfigError::OpenSsl { what, source }
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<X509>, TlsConfigError> {
    X509::stack_from_pem(pem).map_err(|source| TlsConfigError::Pem { what, source })
}

// ---------------------------------------------------------------------------------------------
// Peer verification, both sides

/// A TLS peer that could not be connected or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// OpenSSL could not set up the connection (a local problem).
    #[error("TLS setup failed: {0}")]
    Setup(#[source] ErrorStack),
    /// The handshake failed for a reason other than the ones below (the peer's alert, no
    /// shared group or cipher, the connection lost).
    #[error("TLS handshake failed: {reason}")]
    Handshake {
        /// OpenSSL's reason (`sslv3 alert handshake failure`, `unexpected eof while reading`…).
        reason: String,
        /// Whether the transport failed (rather than TLS itself).
        lost_connection: bool,
        /// OpenSSL's error.
        #[source]
        source: openssl::ssl::Error,
    },
    /// The handshake did not finish in time.
    #[error("TLS handshake did not finish within {after:?}")]
    HandshakeTimeout {
        /// The limit.
        after: Duration,
    },
    /// The peer presented no certificate.
    #[error("the peer presented no certificate")]
    NoCertificate,
    /// The peer's chain does not verify against our anchors.
    #[error("the peer's certificate was refused: {reason}")]
    Untrusted {
        /// OpenSSL's verify result (`unable to get local issuer certificate`…).
        reason: String,
    },
    /// The peer's certificate is not (the expected) SM-PKI market communication certificate.
    #[error("the peer's certificate is refused: {0}")]
    Naming(#[source] SmPkiError),
    /// The peer's certificate is on its CA's CRL.
    #[error("the peer's certificate (serial {serial}) is revoked since {revoked_at}")]
    Revoked {
        /// The serial number in hexadecimal.
        serial: String,
        /// The revocation date.
        revoked_at: String,
    },
    /// No acceptable CRL for the peer's certificate: refused (fail closed).
    #[error("the peer's certificate is refused, its revocation status is unknown: {0}")]
    RevocationUnknown(#[source] CrlUnavailable),
}

impl TlsError {
    /// Whether the peer's certificate (or our TLS configuration) is the problem, not the
    /// network: retrying will not help until certificates or settings change.
    pub fn is_certificate_error(&self) -> bool {
        match self {
            TlsError::Handshake {
                lost_connection, ..
            } => !lost_connection,
            TlsError::HandshakeTimeout { .. } | TlsError::RevocationUnknown(_) => false,
            TlsError::Setup(_)
            | TlsError::NoCertificate
            | TlsError::Untrusted { .. }
            | TlsError::Naming(_)
            | TlsError::Revoked { .. } => true,
        }
    }
}

/// Where the naming callback leaves its verdict for the code that reports the failure.
type NamingSlot = Arc<Mutex<Option<SmPkiError>>>;

/// The verify callback: OpenSSL's chain verdict first, then at the leaf the SM-PKI naming
/// (so that a wrongly named peer is refused with a TLS alert, inside the handshake).
fn naming_callback(
    expected: Option<MarketPartnerId>,
    slot: NamingSlot,
) -> impl Fn(bool, &mut X509StoreContextRef) -> bool + Send + Sync + 'static {
    move |chain_ok, ctx| {
        if !chain_ok {
            return false;
        }
        if ctx.error_depth() != 0 {
            return true;
        }
        let Some(cert) = ctx.current_cert() else {
            return false;
        };
        match check_sm_pki_naming(cert, expected.as_ref()) {
            Ok(_) => true,
            Err(refusal) => {
                *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(refusal);
                ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
                false
            }
        }
    }
}

/// Runs the handshake on `ssl` and tells why it failed.
async fn handshake(
    ssl: Ssl,
    tcp: TcpStream,
    server: bool,
    limit: Duration,
    slot: &NamingSlot,
) -> Result<SslStream<TcpStream>, TlsError> {
    let mut stream = SslStream::new(ssl, tcp).map_err(TlsError::Setup)?;
    let run = async {
        if server {
            Pin::new(&mut stream).accept().await
        } else {
            Pin::new(&mut stream).connect().await
        }
    };
    let outcome = match tokio::time::timeout(limit, run).await {
        Ok(outcome) => outcome,
        Err(_) => return Err(TlsError::HandshakeTimeout { after: limit }),
    };
    let Err(error) = outcome else {
        return Ok(stream);
    };
    if let Some(refusal) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
        return Err(TlsError::Naming(refusal));
    }
    let verified = stream.ssl().verify_result();
    if verified != X509VerifyResult::OK {
        return Err(TlsError::Untrusted {
            reason: verified.error_string().to_string(),
        });
    }
    let reason = ssl_reason(&error);
    if server && reason.contains("did not return a certificate") {
        return Err(TlsError::NoCertificate);
    }
    Err(TlsError::Handshake {
        lost_connection: error.ssl_error().is_none(),
        reason,
        source: error,
    })
}

/// OpenSSL's reasons, or the I/O error.
fn ssl_reason(error: &openssl::ssl::Error) -> String {
    if let Some(stack) = error.ssl_error() {
        let reasons: Vec<&str> = stack.errors().iter().filter_map(|e| e.reason()).collect();
        if !reasons.is_empty() {
            return reasons.join("; ");
        }
    }
    if let Some(io) = error.io_error() {
        return io.to_string();
    }
    match error.code() {
        openssl::ssl::ErrorCode::SYSCALL => "connection closed during the handshake".to_string(),
        _ => error.to_string(),
    }
}

/// After the handshake: the peer's identity (naming again, now returning it) and its CRL status.
async fn verify_peer(
    ssl: &SslRef,
    expected: Option<&MarketPartnerId>,
    crl: &CrlCache,
) -> Result<PeerIdentity, TlsError> {
    let cert = ssl.peer_certificate().ok_or(TlsError::NoCertificate)?;
    let identity = check_sm_pki_naming(&cert, expected).map_err(TlsError::Naming)?;
    check_revocation(&cert, crl).await?;
    Ok(identity)
}

/// `cert`'s revocation status: good, or why not.
async fn check_revocation(cert: &X509Ref, crl: &CrlCache) -> Result<(), TlsError> {
    match crl.status(cert).await {
        RevocationStatus::Good => Ok(()),
        RevocationStatus::Revoked { serial, revoked_at } => {
            Err(TlsError::Revoked { serial, revoked_at })
        }
        RevocationStatus::Unavailable(why) => Err(TlsError::RevocationUnknown(why)),
    }
}

// ---------------------------------------------------------------------------------------------
// Client

/// An HTTPS exchange that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpsError {
    /// The request cannot be sent (scheme, method, URL): a caller or configuration error.
    #[error("cannot send {method} {url}: {problem}")]
    Request {
        /// The method.
        method: Method,
        /// The URL.
        url: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// TCP connect failed (refused, unreachable, name not resolved).
    #[error("connecting to {authority} failed: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// TCP connect did not finish in time.
    #[error("connecting to {authority} timed out after {after:?}")]
    ConnectTimeout {
        /// `host:port`.
        authority: String,
        /// The limit.
        after: Duration,
    },
    /// TLS failed or the server was refused.
    #[error("TLS with {authority}: {source}")]
    Tls {
        /// `host:port`.
        authority: String,
        /// What failed.
        #[source]
        source: TlsError,
    },
    /// No complete response in time (the request may have arrived).
    #[error("no complete response from {authority} within {after:?}")]
    ResponseTimeout {
        /// `host:port`.
        authority: String,
        /// The limit.
        after: Duration,
    },
    /// The HTTP exchange failed after the connection was made (the request may have arrived).
    #[error("HTTP exchange with {authority} failed: {source}")]
    Http {
        /// `host:port`.
        authority: String,
        /// hyper's error.
        #[source]
        source: BoxError,
    },
    /// The response body is larger than allowed.
    #[error("the response from {authority} is larger than {max} bytes")]
    ResponseTooLarge {
        /// `host:port`.
        authority: String,
        /// The cap.
        max: usize,
    },
}

/// What kind of failure an [`HttpsError`] is, for the retry logic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// The request itself is wrong: do not retry.
    Request,
    /// The network: retry later.
    Connection,
    /// TLS or the peer's certificate (or ours, refused by the peer): park the message until
    /// certificates or settings are fixed.
    Certificate,
    /// The peer's CRL could not be had: retry later (fail closed meanwhile).
    Revocation,
    /// The connection broke or timed out after the request was sent: it may have been
    /// received; retry (AS4 receivers detect duplicates).
    Exchange,
}

impl HttpsError {
    /// The kind of failure.
    pub fn kind(&self) -> FailureKind {
        match self {
            HttpsError::Request { .. } => FailureKind::Request,
            HttpsError::Connect { .. } | HttpsError::ConnectTimeout { .. } => {
                FailureKind::Connection
            }
            HttpsError::Tls { source, .. } => match source {
                TlsError::RevocationUnknown(_) => FailureKind::Revocation,
                e if e.is_certificate_error() => FailureKind::Certificate,
                _ => FailureKind::Connection,
            },
            HttpsError::ResponseTimeout { .. }
            | HttpsError::Http { .. }
            | HttpsError::ResponseTooLarge { .. } => FailureKind::Exchange,
        }
    }

    /// Whether trying again later may succeed without anyone changing certificates or
    /// configuration.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind(),
            FailureKind::Connection | FailureKind::Revocation | FailureKind::Exchange
        )
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    https: bool,
    /// The host as in the URL (IPv6 in brackets).
    host: String,
    port: u16,
}

impl Target {
    fn of(uri: &Uri) -> Result<Target, &'static str> {
        let https = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => true,
            Some(s) if s.eq_ignore_ascii_case("http") => false,
            _ => return Err("only https:// (and http:// for GET) URLs are supported"),
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or("the URL has no host")?
            .to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Target { https, host, port })
    }

    /// `host:port`, the key of the expected-partner map.
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for connecting and SNI.
    fn bare_host(&self) -> &str {
        self.host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&self.host)
    }
}

/// The HTTPS client for asx: mutual TLS with our SM-PKI TLS certificate; the server must chain
/// to our anchors, be named as the market partner we expect at that endpoint and not be
/// revoked. Plain `http://` only for `GET` (the CRL downloads asx makes for signature
/// certificates; CRLs are signed).
///
/// Connections are kept and used again (HTTP/1.1 keep-alive): per endpoint and expected
/// partner up to [`DEFAULT_MAX_IDLE_PER_ENDPOINT`] idle ones, each for at most
/// [`DEFAULT_IDLE_EXPIRY`]. A new connection gets every check above in its handshake; a kept
/// one is used only for the endpoint and expected partner it was verified for, and only after
/// its server certificate's revocation status was asked again (from the CRL cache; a new
/// download when the CRL's `nextUpdate` has passed). A kept connection the server closed
/// meanwhile is noticed before anything is sent on it, and the exchange goes to a new
/// connection; a request that was sent is never sent again here (asx decides about retries).
pub struct HttpsClient {
    sessions: Sessions,
    crl: Arc<CrlCache>,
    expected: HashMap<String, MarketPartnerId>,
    connect_timeout: Duration,
    response_timeout: Duration,
    max_response_bytes: usize,
    pool: Pool,
}

impl fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsClient")
            .field("expected", &self.expected)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("max_idle", &self.pool.max_idle)
            .field("idle_expiry", &self.pool.expiry)
            .finish_non_exhaustive()
    }
}

impl HttpsClient {
    /// A client with `settings`, checking server certificates' revocation with `crl`.
    /// `expected_partners` maps an endpoint authority (`host:port`, port written out) to the
    /// market partner whose certificate must be there; an endpoint not in the map still needs
    /// an SM-PKI named certificate, of any partner.
    pub fn new(
        settings: &TlsSettings,
        crl: Arc<CrlCache>,
        expected_partners: HashMap<String, MarketPartnerId>,
    ) -> Result<HttpsClient, TlsConfigError> {
        Ok(HttpsClient {
            sessions: Sessions::new(settings.connector()?),
            crl,
            expected: expected_partners
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            pool: Pool {
                idle: Mutex::default(),
                max_idle: DEFAULT_MAX_IDLE_PER_ENDPOINT,
                expiry: DEFAULT_IDLE_EXPIRY,
                opened: AtomicU64::new(0),
                resumed: AtomicU64::new(0),
            },
        })
    }

    /// Other timeouts than [`DEFAULT_CONNECT_TIMEOUT`] (TCP connect, and again the TLS
    /// handshake) and [`DEFAULT_RESPONSE_TIMEOUT`].
    pub fn with_timeouts(mut self, connect: Duration, response: Duration) -> HttpsClient {
        self.connect_timeout = connect;
        self.response_timeout = response;
        self
    }

    /// Another response body cap than [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn with_max_response_bytes(mut self, max: usize) -> HttpsClient {
        self.max_response_bytes = max;
        self
    }

    /// Other limits for kept connections than [`DEFAULT_MAX_IDLE_PER_ENDPOINT`] and
    /// [`DEFAULT_IDLE_EXPIRY`]; `max_idle` 0 keeps none (one connection per exchange).
    pub fn with_keep_alive(mut self, max_idle: usize, expiry: Duration) -> HttpsClient {
        self.pool.max_idle = max_idle;
        self.pool.expiry = expiry;
        self
    }

    /// How many HTTPS connections (TLS handshakes) this client has made so far.
    pub fn connections_opened(&self) -> u64 {
        self.pool.opened.load(Ordering::Relaxed)
    }

    /// How many handshakes resumed a TLS session (an abbreviated handshake), whether the
    /// server then passed the checks or not.
    pub fn sessions_resumed(&self) -> u64 {
        self.pool.resumed.load(Ordering::Relaxed)
    }

    /// One exchange, on a kept connection to the same endpoint and partner if there is one,
    /// else on a new one.
    pub async fn exchange(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpsError> {
        let refuse = |problem| HttpsError::Request {
            method: request.method().clone(),
            url: request.uri().to_string(),
            problem,
        };
        let target = Target::of(request.uri()).map_err(refuse)?;
        if !target.https {
            if request.method() != Method::GET {
                return Err(refuse(
                    "plain http:// is only allowed for GET (CRL downloads)",
                ));
            }
            let limits = Limits {
                connect: self.connect_timeout,
                response: self.response_timeout,
                max_bytes: self.max_response_bytes,
            };
            return plain_exchange(&target, request, &limits).await;
        }
        let authority = target.authority();
        let expected = self.expected.get(&authority).cloned();
        let key: PoolKey = (authority.clone(), expected.clone());
        let mut request = origin_form(request).map_err(|source| HttpsError::Http {
            authority: authority.clone(),
            source,
        })?;
        if let Some(kept) = self.pool.checkout(&key, Instant::now()) {
            // Revoked since the handshake? Asked again before every use (the CRL cache
            // answers at once until the CRL's nextUpdate).
            check_revocation(&kept.cert, &self.crl)
                .await
                .map_err(|source| HttpsError::Tls {
                    authority: authority.clone(),
                    source,
                })?;
            match self.send(kept, request, &authority).await {
                Attempt::Answered(response, connection) => {
                    self.pool.keep(key, connection, &response, Instant::now());
                    return Ok(response);
                }
                Attempt::Failed(error) => return Err(error),
                Attempt::NotSent(back) => {
                    tracing::debug!(%authority, "kept connection closed by the server; opening a new one");
                    request = back;
                }
            }
        }
        let connection = self.connect(&target, &key).await?;
        match self.send(connection, request, &authority).await {
            Attempt::Answered(response, connection) => {
                self.pool.keep(key, connection, &response, Instant::now());
                Ok(response)
            }
            Attempt::Failed(error) => Err(error),
            Attempt::NotSent(_) => Err(HttpsError::Http {
                authority,
                source: "the new connection closed before the request was sent".into(),
            }),
        }
    }

    /// A new connection: TCP, the TLS handshake with every check of the server, HTTP/1.1.
    /// The session saved for `key` is offered; when the server resumes it, the naming and
    /// revocation checks run again on the certificate the session holds.
    async fn connect(&self, target: &Target, key: &PoolKey) -> Result<Connection, HttpsError> {
        let authority = target.authority();
        let expected = key.1.as_ref();
        let tls = |source| HttpsError::Tls {
            authority: authority.clone(),
            source,
        };
        let tcp = connect(target, self.connect_timeout).await?;
        let slot = NamingSlot::default();
        let mut ssl = {
            let mut config = self
                .sessions
                .connector()
                .configure()
                .map_err(|e| tls(TlsError::Setup(e)))?;
            let ip = target.bare_host().parse::<IpAddr>().is_ok();
            config.set_verify_hostname(false);
            config.set_use_server_name_indication(!ip);
            config.set_verify_callback(
                SslVerifyMode::PEER,
                naming_callback(expected.cloned(), slot.clone()),
            );
            config
                .into_ssl(target.bare_host())
                .map_err(|e| tls(TlsError::Setup(e)))?
        };
        self.sessions.offer(key, &mut ssl);
        let stream = handshake(ssl, tcp, false, self.connect_timeout, &slot)
            .await
            .map_err(tls)?;
        if stream.ssl().session_reused() {
            self.pool.resumed.fetch_add(1, Ordering::Relaxed);
        }
        let peer = match verify_peer(stream.ssl(), expected, &self.crl).await {
            Ok(peer) => peer,
            Err(refused) => {
                self.sessions.forget(key);
                return Err(tls(refused));
            }
        };
        let cert = stream
            .ssl()
            .peer_certificate()
            .ok_or(TlsError::NoCertificate)
            .map_err(tls)?;
        self.sessions.save(key.clone(), stream.ssl());
        tracing::debug!(%authority, partner = %peer.market_partner_id, resumed = stream.ssl().session_reused(), "TLS server verified");
        let (sender, driver) = open_http1(stream, &authority).await?;
        self.pool.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Connection {
            sender,
            cert,
            _driver: driver,
        })
    }

    /// `request` on `connection`, the whole response read within the response timeout.
    async fn send(
        &self,
        mut connection: Connection,
        request: Request<Full<Bytes>>,
        authority: &str,
    ) -> Attempt {
        let max_bytes = self.max_response_bytes;
        let exchange = async move {
            // A connection the server closed fails here, before the request is handed over.
            if connection.sender.ready().await.is_err() {
                return Attempt::NotSent(request);
            }
            match connection.sender.try_send_request(request).await {
                Ok(response) => match read_response(response, authority, max_bytes).await {
                    Ok(response) => Attempt::Answered(response, connection),
                    Err(error) => Attempt::Failed(error),
                },
                Err(mut error) => match error.take_message() {
                    Some(request) => Attempt::NotSent(request),
                    None => Attempt::Failed(HttpsError::Http {
                        authority: authority.to_string(),
                        source: error.into_error().into(),
                    }),
                },
            }
        };
        match tokio::time::timeout(self.response_timeout, exchange).await {
            Ok(sent) => sent,
            Err(_) => Attempt::Failed(HttpsError::ResponseTimeout {
                authority: authority.to_string(),
                after: self.response_timeout,
            }),
        }
    }
}

impl asx::HttpClient for HttpsClient {
    fn send(
        &self,
        request: Request<Bytes>,
    ) -> asx::BoxFuture<'_, Result<Response<Bytes>, Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move { self.exchange(request).await.map_err(Into::into) })
    }
}

/// Timeouts and cap of one plain exchange.
#[derive(Debug, Clone, Copy)]
struct Limits {
    connect: Duration,
    response: Duration,
    max_bytes: usize,
}

async fn connect(target: &Target, limit: Duration) -> Result<TcpStream, HttpsError> {
    let authority = target.authority();
    match tokio::time::timeout(limit, TcpStream::connect((target.bare_host(), target.port))).await {
        Ok(Ok(tcp)) => {
            // Nagle would delay the last segment of each request.
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(source)) => Err(HttpsError::Connect { authority, source }),
        Err(_) => Err(HttpsError::ConnectTimeout {
            authority,
            after: limit,
        }),
    }
}

async fn plain_exchange(
    target: &Target,
    request: Request<Bytes>,
    limits: &Limits,
) -> Result<Response<Bytes>, HttpsError> {
    let tcp = connect(target, limits.connect).await?;
    send_on(
        tcp,
        request,
        &target.authority(),
        limits.response,
        limits.max_bytes,
    )
    .await
}

/// Aborts the connection task when the exchange ends or is dropped (a timeout).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The request as HTTP/1.1 sends it: with a `Host` header, the path in origin form.
fn origin_form(request: Request<Bytes>) -> Result<Request<Full<Bytes>>, BoxError> {
    let (parts, body) = request.into_parts();
    let mut request = Request::from_parts(parts, Full::new(body));
    if !request.headers().contains_key(HOST) {
        if let Some(host) = request.uri().authority() {
            if let Ok(value) = HeaderValue::from_str(host.as_str()) {
                request.headers_mut().insert(HOST, value);
            }
        }
    }
    // HTTP/1.1 origin form: the path, not the whole URL.
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    *request.uri_mut() = path.parse()?;
    Ok(request)
}

/// HTTP/1.1 over `io`, its connection driven by a task of its own.
async fn open_http1<IO>(
    io: IO,
    authority: &str,
) -> Result<(SendRequest<Full<Bytes>>, AbortOnDrop), HttpsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpsError::Http {
            authority: authority.to_string(),
            source: e.into(),
        })?;
    let driver = AbortOnDrop(tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "HTTP client connection ended with an error");
        }
    }));
    Ok((sender, driver))
}

/// The whole response, its body at most `max_bytes`.
async fn read_response(
    response: Response<Incoming>,
    authority: &str,
    max_bytes: usize,
) -> Result<Response<Bytes>, HttpsError> {
    let (parts, body) = response.into_parts();
    let body = Limited::new(body, max_bytes)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                HttpsError::ResponseTooLarge {
                    authority: authority.to_string(),
                    max: max_bytes,
                }
            } else {
                HttpsError::Http {
                    authority: authority.to_string(),
                    source: e,
                }
            }
        })?
        .to_bytes();
    Ok(Response::from_parts(parts, body))
}

/// Sends `request` over `io` with HTTP/1.1 and reads the whole response (one exchange, the
/// connection closed after it).
async fn send_on<IO>(
    io: IO,
    request: Request<Bytes>,
    authority: &str,
    limit: Duration,
    max_bytes: usize,
) -> Result<Response<Bytes>, HttpsError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |source: BoxError| HttpsError::Http {
        authority: authority.to_string(),
        source,
    };
    let request = origin_form(request).map_err(http)?;
    let exchange = async {
        let (mut sender, _connection) = open_http1(io, authority).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http(e.into()))?;
        read_response(response, authority, max_bytes).await
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HttpsError::ResponseTimeout {
            authority: authority.to_string(),
            after: limit,
        }),
    }
}

/// Downloads CRLs over plain HTTP for a [`CrlCache`] (SM-PKI distribution points are
/// `http://`; the CRL is signed, so TLS adds nothing).
#[derive(Debug, Clone)]
pub struct PlainHttpFetcher {
    limits: Limits,
}

impl Default for PlainHttpFetcher {
    /// 5 s to connect, 10 s for the CRL, at most [`MAX_CRL_BYTES`]: a CRL download holds up
    /// the connection that needs it.
    fn default() -> PlainHttpFetcher {
        PlainHttpFetcher {
            limits: Limits {
                connect: DEFAULT_CONNECT_TIMEOUT,
                response: Duration::from_secs(10),
                max_bytes: MAX_CRL_BYTES,
            },
        }
    }
}

impl CrlFetcher for PlainHttpFetcher {
    fn fetch<'a>(&'a self, url: &'a str) -> BoxFuture<'a, Result<Bytes, BoxError>> {
        Box::pin(async move {
            let uri: Uri = url.parse()?;
            let target = Target::of(&uri)?;
            if target.https {
                return Err("CRL distribution points are fetched over http:// only".into());
            }
            let request = Request::get(uri).body(Bytes::new())?;
            let response = plain_exchange(&target, request, &self.limits).await?;
            if !response.status().is_success() {
                return Err(format!("GET {url} answered {}", response.status()).into());
            }
            Ok(response.into_body())
        })
    }
}

// The server side: `server.rs`.

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, &'static str> {
        Target::of(&url.parse().unwrap())
    }

    #[test]
    fn targets_default_their_port_and_lowercase_the_host() {
        let t = target("https://AS4.Example.de/as4").unwrap();
        assert_eq!(t.authority(), "as4.example.de:443");
        assert!(t.https);
        assert_eq!(
            target("http://crl.test/ca.crl").unwrap().authority(),
            "crl.test:80"
        );
        let v6 = target("https://[::1]:8443/").unwrap();
        assert_eq!(v6.authority(), "[::1]:8443");
        assert_eq!(v6.bare_host(), "::1");
        assert!(target("ftp://x/").is_err());
        assert!(target("/relative").is_err());
    }

    #[test]
    fn certificate_failures_are_not_retryable_connection_failures_are() {
        let connect = HttpsError::Connect {
            authority: "a:1".into(),
            source: std::io::ErrorKind::ConnectionRefused.into(),
        };
        assert_eq!(connect.kind(), FailureKind::Connection);
        assert!(connect.is_transient());
        let naming = HttpsError::Tls {
            authority: "a:1".into(),
            source: TlsError::Untrusted {
                reason: "unable to get local issuer certificate".into(),
            },
        };
        assert_eq!(naming.kind(), FailureKind::Certificate);
        assert!(!naming.is_transient());
        let timeout = HttpsError::Tls {
            authority: "a:1".into(),
            source: TlsError::HandshakeTimeout {
                after: Duration::from_secs(5),
            },
        };
        assert_eq!(timeout.kind(), FailureKind::Connection);
        let unknown = HttpsError::Tls {
            authority: "a:1".into(),
            source: TlsError::RevocationUnknown(CrlUnavailable::NoDistributionPoint {
                subject: "CN=x".into(),
            }),
        };
        assert_eq!(unknown.kind(), FailureKind::Revocation);
        assert!(unknown.is_transient());
        let request = HttpsError::Request {
            method: Method::POST,
            url: "http://x/".into(),
            problem: "plain",
        };
        assert!(!request.is_transient());
    }
}
