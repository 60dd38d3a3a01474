//! HTTPS for AS4 over real sockets on 127.0.0.1 and real OpenSSL: our client and server with
//! brainpool mutual TLS, both against the `openssl` CLI, and every refusal with its precise
//! error. The test PKI is made once per run with the openssl CLI (tests/common/pki.rs); its
//! CRL is served by a small HTTP server in a thread.

#[path = "common/pki.rs"]
#[allow(dead_code)]
mod pki;

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use mako_gateway::transport::as4::https::{
    accept_peer, serve_https, FailureKind, HttpsClient, HttpsError, PlainHttpFetcher, TlsError,
    TlsSettings,
};
use mako_gateway::transport::smpki::{
    Clock, CrlCache, CrlFetcher, CrlUnavailable, PeerIdentity, SmPkiError,
};
use openssl::ssl::{SslConnector, SslMethod, SslVersion};
use pki::{Party, Pki, SmPkiRole};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

const SERVER_MP: &str = "9904292000003";
const CLIENT_MP: &str = "9903829000006";
const REVOKED_MP: &str = "9900269000000";
const OTHER_MP: &str = "4012345000023";

struct Fixture {
    pki: Pki,
    _other_ca: Pki,
    crl_base: String,
    server: Party,
    client: Party,
    revoked: Party,
    no_crl: Party,
    not_emt_mak: Party,
    ou_not_mp_id: Party,
    other_ca_client: Party,
}

/// One PKI for the whole run: a CA with a CRL (listing `revoked`) at `<crl_base>/ca.crl`,
/// and a second, unrelated CA.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let files = Arc::new(Mutex::new(HashMap::new()));
        let crl_base = pki::serve_files(files.clone());
        let mut pki = Pki::new();
        pki.set_crl_url(&format!("{crl_base}/ca.crl"));
        let server = pki.issue_sm_pki("netz", SERVER_MP, SmPkiRole::Tls);
        let client = pki.issue_sm_pki("lieferant", CLIENT_MP, SmPkiRole::Tls);
        let revoked = pki.issue_sm_pki("widerrufen", REVOKED_MP, SmPkiRole::Tls);
        let crl_url = format!("{crl_base}/ca.crl");
        let no_crl = pki.issue_sm_pki_with(
            "no-crl",
            &format!("/O=Ohne CRL/OU={CLIENT_MP}/CN=ohne.tls.EMT.MAK"),
            SmPkiRole::Tls,
            Some(&format!("{crl_base}/missing.crl")),
        );
        let not_emt_mak = pki.issue_sm_pki_with(
            "not-emt-mak",
            &format!("/O=Lieferant/OU={CLIENT_MP}/CN=lieferant.tls.example"),
            SmPkiRole::Tls,
            Some(&crl_url),
        );
        let ou_not_mp_id = pki.issue_sm_pki_with(
            "ou-not-mp-id",
            "/O=Lieferant/OU=Vertrieb/CN=lieferant.tls.EMT.MAK",
            SmPkiRole::Tls,
            Some(&crl_url),
        );
        let crl = std::fs::read(pki.crl(&[&revoked])).expect("CRL");
        files.lock().unwrap().insert("/ca.crl".to_string(), crl);
        let other_ca = Pki::new();
        let other_ca_client = other_ca.issue_sm_pki("fremd", OTHER_MP, SmPkiRole::Tls);
        Fixture {
            pki,
            _other_ca: other_ca,
            crl_base,
            server,
            client,
            revoked,
            no_crl,
            not_emt_mak,
            ou_not_mp_id,
            other_ca_client,
        }
    })
}

fn settings(party: &Party, anchors: &Path) -> TlsSettings {
    TlsSettings::from_pem_files(&party.key, &party.cert, anchors).expect("TLS settings")
}

fn crl_cache() -> Arc<CrlCache> {
    let anchors =
        vec![openssl::x509::X509::from_pem(&std::fs::read(fixture().pki.ca()).unwrap()).unwrap()];
    let clock: Clock = mako_gateway::clock::Clock::system();
    Arc::new(CrlCache::new(
        anchors,
        Arc::new(PlainHttpFetcher::default()),
        clock,
    ))
}

fn client(party: &Party, expected: &[(SocketAddr, &str)]) -> HttpsClient {
    client_with_crl(party, expected, crl_cache())
}

fn client_with_crl(
    party: &Party,
    expected: &[(SocketAddr, &str)],
    crl: Arc<CrlCache>,
) -> HttpsClient {
    let expected = expected
        .iter()
        .map(|(addr, mp)| (addr.to_string(), mp.parse().unwrap()))
        .collect();
    HttpsClient::new(&settings(party, &fixture().pki.ca()), crl, expected)
        .expect("client")
        .with_timeouts(Duration::from_secs(5), Duration::from_secs(10))
}

fn post(addr: SocketAddr, path: &str) -> Request<Bytes> {
    Request::post(format!("https://{addr}{path}"))
        .body(Bytes::from_static(b"<soap/>"))
        .unwrap()
}

/// Answers with the market partner ID it was made for and the one in the request's
/// extensions.
#[derive(Debug)]
struct WhoAmI {
    peer: PeerIdentity,
}

impl tower_service::Service<Request<Incoming>> for WhoAmI {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        let in_request = request
            .extensions()
            .get::<PeerIdentity>()
            .map(|p| p.market_partner_id.to_string())
            .unwrap_or_default();
        let body = format!("{} {in_request}", self.peer.market_partner_id);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from(body)))))
    }
}

struct Server {
    addr: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_server(party: &Party) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(party, &fixture().pki.ca()).acceptor().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        crl_cache(),
        |peer| WhoAmI { peer },
        async move {
            let _ = stopped.await;
        },
    ));
    Server { addr, stop, task }
}

impl Server {
    async fn shut_down(self) {
        self.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve_https returns after shutdown")
            .unwrap();
    }
}

#[tokio::test]
async fn mutual_tls_request_reaches_the_service_with_the_client_identity() {
    let f = fixture();
    let server = start_server(&f.server).await;
    let client = client(&f.client, &[(server.addr, SERVER_MP)]);
    let response = client.exchange(post(server.addr, "/as4")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body(), &format!("{CLIENT_MP} {CLIENT_MP}"));
    // Through the asx seam as well.
    let response = asx::HttpClient::send(&client, post(server.addr, "/as4"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.shut_down().await;
}

#[tokio::test]
async fn our_server_accepts_openssl_s_client_with_brainpool() {
    let f = fixture();
    let server = start_server(&f.server).await;
    let port = server.addr.port();
    let (ca, cert, key) = (f.pki.ca(), f.client.cert.clone(), f.client.key.clone());
    let output = tokio::task::spawn_blocking(move || {
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args([
                "-tls1_2",
                "-groups",
                "brainpoolP256r1",
                "-verify_return_error",
            ])
            .arg("-CAfile")
            .arg(&ca)
            .arg("-cert")
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .arg("-quiet")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("openssl s_client runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with("HTTP/1.1 200"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.ends_with(&format!("{CLIENT_MP} {CLIENT_MP}")),
        "{stdout}"
    );
    server.shut_down().await;
}

#[tokio::test]
async fn our_client_talks_to_openssl_s_server_with_brainpool() {
    let f = fixture();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut child = Command::new("openssl")
        .args(["s_server", "-accept", &format!("127.0.0.1:{port}")])
        .args([
            "-tls1_2",
            "-groups",
            "brainpoolP256r1",
            "-Verify",
            "1",
            "-www",
        ])
        .arg("-CAfile")
        .arg(f.pki.ca())
        .arg("-cert")
        .arg(&f.server.cert)
        .arg("-key")
        .arg(&f.server.key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server runs");
    // s_server prints ACCEPT when it listens.
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.contains("ACCEPT"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(10), ready).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let result = match ready {
        Ok(Ok(true)) => {
            let client = client(&f.client, &[(addr, SERVER_MP)]);
            Some(
                client
                    .exchange(
                        Request::get(format!("https://{addr}/"))
                            .body(Bytes::new())
                            .unwrap(),
                    )
                    .await,
            )
        }
        _ => None,
    };
    let _ = child.kill();
    let _ = child.wait();
    let response = result.expect("openssl s_server started").unwrap();
    assert_eq!(response.status(), 200);
    let body = String::from_utf8_lossy(response.body());
    // s_server -www describes the session: brainpool ECDHE and ECDSA over TLS 1.2.
    assert!(body.contains("TLSv1.2"), "{body}");
    assert!(body.contains("ECDHE-ECDSA"), "{body}");
}

/// The server-side verdict on a client: `accept_peer` on one connection while `connect`
/// tries it.
async fn server_verdict<C, Fut>(connect: C) -> Result<PeerIdentity, TlsError>
where
    C: FnOnce(SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.server, &f.pki.ca()).acceptor().unwrap();
    let crl = crl_cache();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_peer(&acceptor, &crl, tcp)
            .await
            .map(|(_, peer)| peer)
    });
    connect(addr).await;
    server.await.unwrap()
}

/// The server-side verdict on our client presenting `party` (trusting our CA).
async fn server_verdict_on(party: &Party) -> Result<PeerIdentity, TlsError> {
    server_verdict(|addr| async move {
        let client = client(party, &[]);
        let result = client.exchange(post(addr, "/as4")).await;
        assert!(result.is_err(), "the client must see the refusal");
    })
    .await
}

#[tokio::test]
async fn server_accepts_a_good_client_and_names_it() {
    let peer = server_verdict(|addr| async move {
        let _ = client(&fixture().client, &[])
            .exchange(post(addr, "/"))
            .await;
    })
    .await
    .unwrap();
    assert_eq!(peer.market_partner_id.as_str(), CLIENT_MP);
    assert_eq!(peer.common_name, "lieferant.tls.EMT.MAK");
}

#[tokio::test]
async fn server_refuses_a_client_without_certificate() {
    let f = fixture();
    let verdict = server_verdict(|addr| async move {
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder
            .set_groups_list("brainpoolP256r1:prime256v1")
            .unwrap();
        builder
            .set_max_proto_version(Some(SslVersion::TLS1_2))
            .unwrap();
        builder.set_ca_file(f.pki.ca()).unwrap();
        let ssl = builder
            .build()
            .configure()
            .unwrap()
            .verify_hostname(false)
            .into_ssl("localhost")
            .unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut stream = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
        let _ = Pin::new(&mut stream).connect().await;
        let mut byte = [0u8; 1];
        let _ = stream.read(&mut byte).await;
    })
    .await;
    assert!(
        matches!(verdict, Err(TlsError::NoCertificate)),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_certificate_of_another_ca() {
    let f = fixture();
    let verdict = server_verdict(|addr| async move {
        // The client trusts our CA, but its own certificate is from another one.
        let settings = settings(&f.other_ca_client, &f.pki.ca());
        let client = HttpsClient::new(&settings, crl_cache(), HashMap::new()).unwrap();
        assert!(client.exchange(post(addr, "/")).await.is_err());
    })
    .await;
    let Err(TlsError::Untrusted { reason }) = &verdict else {
        panic!("{verdict:?}");
    };
    assert!(reason.contains("issuer certificate"), "{reason}");
}

#[tokio::test]
async fn server_refuses_a_client_cn_without_emt_mak() {
    let verdict = server_verdict_on(&fixture().not_emt_mak).await;
    assert!(
        matches!(verdict, Err(TlsError::Naming(SmPkiError::NotEmtMak { .. }))),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_ou_that_is_no_market_partner_id() {
    let verdict = server_verdict_on(&fixture().ou_not_mp_id).await;
    let Err(error @ TlsError::Naming(SmPkiError::NoMarketPartnerId { .. })) = &verdict else {
        panic!("{verdict:?}");
    };
    assert!(error.to_string().contains("OU=Vertrieb"), "{error}");
}

#[tokio::test]
async fn server_refuses_a_revoked_client() {
    let verdict = server_verdict_on(&fixture().revoked).await;
    assert!(
        matches!(verdict, Err(TlsError::Revoked { .. })),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn server_refuses_a_client_whose_crl_is_unavailable() {
    let f = fixture();
    let verdict = server_verdict_on(&f.no_crl).await;
    let Err(TlsError::RevocationUnknown(CrlUnavailable::Fetch { url, .. })) = &verdict else {
        panic!("{verdict:?}");
    };
    assert_eq!(url, &format!("{}/missing.crl", f.crl_base));
    let text = verdict.unwrap_err().to_string();
    assert!(
        text.contains("missing.crl") && text.contains("404"),
        "{text}"
    );
}

#[tokio::test]
async fn client_refuses_a_server_of_another_partner() {
    let f = fixture();
    let server = start_server(&f.server).await;
    let client = client(&f.client, &[(server.addr, OTHER_MP)]);
    let error = client.exchange(post(server.addr, "/")).await.unwrap_err();
    assert!(
        matches!(
            &error,
            HttpsError::Tls {
                source: TlsError::Naming(SmPkiError::UnexpectedMarketPartner { .. }),
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), FailureKind::Certificate);
    assert!(!error.is_transient());
    assert!(
        error.to_string().contains(&format!(
            "is for market partner {SERVER_MP}, expected {OTHER_MP}"
        )),
        "{error}"
    );
    server.shut_down().await;
}

#[tokio::test]
async fn client_refuses_a_server_of_another_ca() {
    let f = fixture();
    // The server trusts our CA for clients, but its own certificate is from another one.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.other_ca_client, &f.pki.ca())
        .acceptor()
        .unwrap();
    let crl = crl_cache();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        accept_peer(&acceptor, &crl, tcp)
            .await
            .map(|(_, peer)| peer)
    });
    let error = client(&f.client, &[])
        .exchange(post(addr, "/"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            HttpsError::Tls {
                source: TlsError::Untrusted { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.kind(), FailureKind::Certificate);
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn connection_refused_is_a_retryable_connection_failure() {
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let error = client(&fixture().client, &[])
        .exchange(post(addr, "/"))
        .await
        .unwrap_err();
    assert!(matches!(error, HttpsError::Connect { .. }), "{error:?}");
    assert_eq!(error.kind(), FailureKind::Connection);
    assert!(error.is_transient());
}

#[tokio::test]
async fn plain_http_is_only_for_get() {
    let f = fixture();
    let client = client(&f.client, &[]);
    let error = client
        .exchange(
            Request::post(format!("{}/ca.crl", f.crl_base))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, HttpsError::Request { .. }), "{error:?}");
    assert!(!error.is_transient());
    // A CRL download as asx makes it.
    let crl = client
        .exchange(
            Request::get(format!("{}/ca.crl", f.crl_base))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(crl.status(), 200);
    assert!(openssl::x509::X509Crl::from_der(crl.body()).is_ok());
}

#[tokio::test]
async fn a_silent_client_does_not_block_others_and_is_dropped_after_the_handshake_timeout() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.server, &f.pki.ca())
        .acceptor()
        .unwrap()
        .with_timeouts(
            Duration::from_millis(500),
            Duration::from_secs(5),
            Duration::from_secs(5),
        );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        crl_cache(),
        |peer| WhoAmI { peer },
        async move {
            let _ = stopped.await;
        },
    ));
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let client = client(&f.client, &[(addr, SERVER_MP)]);
    let response = tokio::time::timeout(Duration::from_secs(3), client.exchange(post(addr, "/")))
        .await
        .expect("served while another client is silent")
        .unwrap();
    assert_eq!(response.status(), 200);
    // The silent one is closed once the handshake timeout has passed.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(3), silent.read(&mut buf))
        .await
        .expect("the silent connection is closed by the server");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Issue 15 defect 5 on the AS4 receiver: connections beyond the cap are closed before any
/// handshake, and an exchange not answered within the request timeout ends its connection
/// (a slow body or a stuck service holds nothing for ever).
#[tokio::test]
async fn regression_connections_over_the_cap_are_closed_and_a_stuck_exchange_times_out() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.server, &f.pki.ca())
        .acceptor()
        .unwrap()
        .with_timeouts(
            Duration::from_secs(5),
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .with_limits(2, Duration::from_millis(200), Duration::from_secs(5));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        crl_cache(),
        // Slow answers after 500 ms: longer than the request timeout.
        |_| Slow,
        async move {
            let _ = stopped.await;
        },
    ));
    let _first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(1), third.read(&mut buf))
        .await
        .expect("the connection over the cap is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop((_first, _second));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Within the cap again; the stuck exchange ends without an answer.
    let client = client(&f.client, &[(addr, SERVER_MP)]);
    let started = std::time::Instant::now();
    let error = client.exchange(post(addr, "/")).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), FailureKind::Exchange, "{error}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}

/// Answers after a pause, to be caught by a shutdown.
#[derive(Debug)]
struct Slow;

impl tower_service::Service<Request<Incoming>> for Slow {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Incoming>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            Ok(Response::new(Full::new(Bytes::from_static(b"done"))))
        })
    }
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_a_running_exchange_finish() {
    let f = fixture();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.server, &f.pki.ca()).acceptor().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        crl_cache(),
        |_| Slow,
        async move {
            let _ = stopped.await;
        },
    ));
    let client = Arc::new(client(&f.client, &[(addr, SERVER_MP)]));
    let running = tokio::spawn({
        let client = client.clone();
        async move { client.exchange(post(addr, "/")).await }
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    stop.send(()).unwrap();
    let response = running.await.unwrap().unwrap();
    assert_eq!(response.body(), "done");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("serve_https returns once the exchange is done")
        .unwrap();
    let error = client.exchange(post(addr, "/")).await.unwrap_err();
    assert_eq!(error.kind(), FailureKind::Connection, "{error}");
}

/// A server that counts the TLS connections it accepted (each gets its own service) and
/// closes connections idle for `idle`.
async fn start_counting_server(party: &Party, idle: Duration) -> (Server, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(party, &fixture().pki.ca())
        .acceptor()
        .unwrap()
        .with_limits(16, Duration::from_secs(10), idle);
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        crl_cache(),
        move |peer| {
            counter.fetch_add(1, AtomicOrdering::SeqCst);
            WhoAmI { peer }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    (Server { addr, stop, task }, accepted)
}

#[tokio::test]
async fn two_exchanges_to_one_server_use_one_connection() {
    let f = fixture();
    let (server, accepted) = start_counting_server(&f.server, Duration::from_secs(30)).await;
    let client = client(&f.client, &[(server.addr, SERVER_MP)]);
    for _ in 0..3 {
        let response = client.exchange(post(server.addr, "/as4")).await.unwrap();
        assert_eq!(response.body(), &format!("{CLIENT_MP} {CLIENT_MP}"));
    }
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(client.connections_opened(), 1);
    // Four at once need four connections; afterwards all four are kept and used again.
    let exchanges = (0..4).map(|_| client.exchange(post(server.addr, "/as4")));
    for response in futures_util::future::join_all(exchanges).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    let exchanges = (0..4).map(|_| client.exchange(post(server.addr, "/as4")));
    for response in futures_util::future::join_all(exchanges).await {
        assert_eq!(response.unwrap().status(), 200);
    }
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 4);
    server.shut_down().await;
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_replaced_without_an_error() {
    let f = fixture();
    let (server, accepted) = start_counting_server(&f.server, Duration::from_millis(300)).await;
    let client = client(&f.client, &[(server.addr, SERVER_MP)]);
    client.exchange(post(server.addr, "/as4")).await.unwrap();
    // The server closes the idle connection; the client still holds it.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let response = client.exchange(post(server.addr, "/as4")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 2);
    assert_eq!(client.connections_opened(), 2);
    server.shut_down().await;
}

#[tokio::test]
async fn a_client_without_keep_alive_opens_a_connection_per_exchange() {
    let f = fixture();
    let (server, accepted) = start_counting_server(&f.server, Duration::from_secs(30)).await;
    let client =
        client(&f.client, &[(server.addr, SERVER_MP)]).with_keep_alive(0, Duration::from_secs(60));
    for _ in 0..2 {
        client.exchange(post(server.addr, "/as4")).await.unwrap();
    }
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 2);
    server.shut_down().await;
}

#[tokio::test]
async fn a_kept_connection_is_never_used_for_another_partner() {
    let f = fixture();
    // Two partners' servers; the client's own certificate serves as the second one's.
    let (first, first_accepted) = start_counting_server(&f.server, Duration::from_secs(30)).await;
    let (second, second_accepted) = start_counting_server(&f.client, Duration::from_secs(30)).await;
    let client = client(
        &f.client,
        &[(first.addr, SERVER_MP), (second.addr, CLIENT_MP)],
    );
    for _ in 0..2 {
        client.exchange(post(first.addr, "/as4")).await.unwrap();
        client.exchange(post(second.addr, "/as4")).await.unwrap();
    }
    assert_eq!(first_accepted.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(second_accepted.load(AtomicOrdering::SeqCst), 1);
    assert_eq!(client.connections_opened(), 2);
    first.shut_down().await;
    second.shut_down().await;
}

#[tokio::test]
async fn a_new_connection_resumes_the_tls_session_and_both_sides_still_know_who_is_there() {
    let f = fixture();
    let (server, accepted) = start_counting_server(&f.server, Duration::from_millis(300)).await;
    let client = client(&f.client, &[(server.addr, SERVER_MP)]);
    client.exchange(post(server.addr, "/as4")).await.unwrap();
    assert_eq!(client.sessions_resumed(), 0);
    // The server closes the idle connection; the next one resumes the session.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let response = client.exchange(post(server.addr, "/as4")).await.unwrap();
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 2);
    assert_eq!(client.sessions_resumed(), 1);
    // The server named the client from the certificate the session holds.
    assert_eq!(response.body(), &format!("{CLIENT_MP} {CLIENT_MP}"));
    server.shut_down().await;
}

#[tokio::test]
async fn a_resumed_session_of_a_server_revoked_since_is_refused() {
    let f = fixture();
    let (server, _accepted) = start_counting_server(&f.server, Duration::from_millis(300)).await;
    let crl = Arc::new(SwappableCrl(Mutex::new(
        std::fs::read(f.pki.crl_valid_for(&[], 1)).unwrap(),
    )));
    let days_on = Arc::new(AtomicUsize::new(0));
    let clock = {
        let days_on = days_on.clone();
        let start = Clock::system().now();
        Clock::from_fn(move || {
            start + chrono::Duration::days(days_on.load(AtomicOrdering::SeqCst) as i64)
        })
    };
    let anchors = vec![openssl::x509::X509::from_pem(&std::fs::read(f.pki.ca()).unwrap()).unwrap()];
    let cache = Arc::new(CrlCache::new(anchors, crl.clone(), clock));
    let client = client_with_crl(&f.client, &[(server.addr, SERVER_MP)], cache);
    client.exchange(post(server.addr, "/as4")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    *crl.0.lock().unwrap() = std::fs::read(f.pki.crl_valid_for(&[&f.server], 7)).unwrap();
    days_on.store(2, AtomicOrdering::SeqCst);
    let error = client
        .exchange(post(server.addr, "/as4"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            HttpsError::Tls {
                source: TlsError::Revoked { .. },
                ..
            }
        ),
        "{error:?}"
    );
    // The handshake itself was abbreviated: the refusal came from the check after it.
    assert_eq!(client.sessions_resumed(), 1);
    assert_eq!(client.connections_opened(), 1);
    server.shut_down().await;
}

#[tokio::test]
async fn our_server_refuses_a_resumed_session_of_a_client_revoked_since() {
    let f = fixture();
    // The server's CRL cache: a CRL valid for one day without the client, then one that
    // revokes it, fetched once the first has expired.
    let crl = Arc::new(SwappableCrl(Mutex::new(
        std::fs::read(f.pki.crl_valid_for(&[], 1)).unwrap(),
    )));
    let days_on = Arc::new(AtomicUsize::new(0));
    let clock = {
        let days_on = days_on.clone();
        let start = Clock::system().now();
        Clock::from_fn(move || {
            start + chrono::Duration::days(days_on.load(AtomicOrdering::SeqCst) as i64)
        })
    };
    let anchors = vec![openssl::x509::X509::from_pem(&std::fs::read(f.pki.ca()).unwrap()).unwrap()];
    let server_crl = Arc::new(CrlCache::new(anchors, crl.clone(), clock));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = settings(&f.server, &f.pki.ca())
        .acceptor()
        .unwrap()
        .with_limits(16, Duration::from_secs(10), Duration::from_millis(300));
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_https(
        listener,
        Arc::new(acceptor),
        server_crl,
        move |peer| {
            counter.fetch_add(1, AtomicOrdering::SeqCst);
            WhoAmI { peer }
        },
        async move {
            let _ = stopped.await;
        },
    ));
    let client = client(&f.client, &[(addr, SERVER_MP)]);
    client.exchange(post(addr, "/as4")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    *crl.0.lock().unwrap() = std::fs::read(f.pki.crl_valid_for(&[&f.client], 7)).unwrap();
    days_on.store(2, AtomicOrdering::SeqCst);
    // The client resumes its session; the server checks the certificate the session holds
    // and closes the connection.
    let error = client.exchange(post(addr, "/as4")).await.unwrap_err();
    assert_eq!(client.sessions_resumed(), 1, "{error}");
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 1, "{error}");
    Server { addr, stop, task }.shut_down().await;
}

/// A CRL source whose answer the test changes.
#[derive(Debug)]
struct SwappableCrl(Mutex<Vec<u8>>);

impl CrlFetcher for SwappableCrl {
    fn fetch<'a>(
        &'a self,
        _url: &'a str,
    ) -> mako_gateway::transport::smpki::BoxFuture<
        'a,
        Result<Bytes, mako_gateway::transport::smpki::BoxError>,
    > {
        let crl = Bytes::from(self.0.lock().unwrap().clone());
        Box::pin(async move { Ok(crl) })
    }
}

#[tokio::test]
async fn a_kept_connection_is_checked_against_the_crl_again_before_it_is_used() {
    let f = fixture();
    let (server, accepted) = start_counting_server(&f.server, Duration::from_secs(30)).await;
    // The client's CRL cache: a CRL valid for one day without the server, then one that
    // revokes it, fetched once the first has expired (the clock moved two days on).
    let crl = Arc::new(SwappableCrl(Mutex::new(
        std::fs::read(f.pki.crl_valid_for(&[], 1)).unwrap(),
    )));
    let days_on = Arc::new(AtomicUsize::new(0));
    let clock = {
        let days_on = days_on.clone();
        let start = Clock::system().now();
        Clock::from_fn(move || {
            start + chrono::Duration::days(days_on.load(AtomicOrdering::SeqCst) as i64)
        })
    };
    let anchors = vec![openssl::x509::X509::from_pem(&std::fs::read(f.pki.ca()).unwrap()).unwrap()];
    let cache = Arc::new(CrlCache::new(anchors, crl.clone(), clock));
    let client = client_with_crl(&f.client, &[(server.addr, SERVER_MP)], cache);
    client.exchange(post(server.addr, "/as4")).await.unwrap();
    *crl.0.lock().unwrap() = std::fs::read(f.pki.crl_valid_for(&[&f.server], 7)).unwrap();
    // Within the first CRL's validity the kept connection is used.
    client.exchange(post(server.addr, "/as4")).await.unwrap();
    days_on.store(2, AtomicOrdering::SeqCst);
    let error = client
        .exchange(post(server.addr, "/as4"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            HttpsError::Tls {
                source: TlsError::Revoked { .. },
                ..
            }
        ),
        "{error:?}"
    );
    // Refused on the kept connection, without a new handshake.
    assert_eq!(client.connections_opened(), 1);
    assert_eq!(accepted.load(AtomicOrdering::SeqCst), 1);
    server.shut_down().await;
}

/// `asx::Inbound` plugs into `serve_https` as it is (checked by the compiler; never run).
#[allow(dead_code)]
fn asx_inbound_fits_serve_https(
    listener: TcpListener,
    acceptor: Arc<mako_gateway::transport::as4::https::HttpsAcceptor>,
    crl: Arc<CrlCache>,
    make_inbound: impl Fn(PeerIdentity) -> asx::Inbound + Send + Sync + 'static,
) -> impl std::future::Future<Output = ()> + Send {
    serve_https(
        listener,
        acceptor,
        crl,
        make_inbound,
        std::future::pending(),
    )
}
