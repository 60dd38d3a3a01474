//! The server side of AS4 HTTPS: the OpenSSL acceptor ([`HttpsAcceptor`], made by
//! [`TlsSettings::acceptor`]), the checks of an accepted peer ([`accept_peer`]) and the server
//! loop ([`serve_https`]) with its limits (connection cap, handshake, header, request and idle
//! timeouts, graceful stop).

use super::*;

/// The server side: the OpenSSL acceptor from [`TlsSettings::acceptor`] and the limits of
/// [`serve_https`].
pub struct HttpsAcceptor {
    pub(super) acceptor: SslAcceptor,
    pub(super) handshake_timeout: Duration,
    pub(super) header_read_timeout: Duration,
    pub(super) shutdown_grace: Duration,
    pub(super) max_connections: usize,
    pub(super) request_timeout: Duration,
    pub(super) idle_timeout: Duration,
}

impl fmt::Debug for HttpsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpsAcceptor")
            .field("handshake_timeout", &self.handshake_timeout)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("max_connections", &self.max_connections)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpsAcceptor {
    /// Other limits than [`DEFAULT_HANDSHAKE_TIMEOUT`], [`DEFAULT_HEADER_READ_TIMEOUT`] and
    /// [`DEFAULT_SHUTDOWN_GRACE`].
    pub fn with_timeouts(
        mut self,
        handshake: Duration,
        header_read: Duration,
        shutdown_grace: Duration,
    ) -> HttpsAcceptor {
        self.handshake_timeout = handshake;
        self.header_read_timeout = header_read;
        self.shutdown_grace = shutdown_grace;
        self
    }

    /// Other limits than [`DEFAULT_MAX_CONNECTIONS`], [`DEFAULT_REQUEST_TIMEOUT`] and
    /// [`DEFAULT_IDLE_TIMEOUT`].
    pub fn with_limits(
        mut self,
        max_connections: usize,
        request_timeout: Duration,
        idle_timeout: Duration,
    ) -> HttpsAcceptor {
        self.max_connections = max_connections.max(1);
        self.request_timeout = request_timeout;
        self.idle_timeout = idle_timeout;
        self
    }
}

/// The TLS handshake of one accepted connection and the checks of its client certificate
/// (chained to our anchors, SM-PKI naming of any partner, not revoked). [`serve_https`] runs
/// this for every connection; it is public so that the refusals can be tested one by one.
pub async fn accept_peer(
    acceptor: &HttpsAcceptor,
    crl: &CrlCache,
    tcp: TcpStream,
) -> Result<(SslStream<TcpStream>, PeerIdentity), TlsError> {
    let slot = NamingSlot::default();
    let mut ssl = Ssl::new(acceptor.acceptor.context()).map_err(TlsError::Setup)?;
    ssl.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        naming_callback(None, slot.clone()),
    );
    let stream = handshake(ssl, tcp, true, acceptor.handshake_timeout, &slot).await?;
    let identity = verify_peer(stream.ssl(), None, crl).await?;
    Ok((stream, identity))
}

/// Serves HTTPS on `listener` until `shutdown` completes, then stops accepting and gives
/// running connections [`HttpsAcceptor::with_timeouts`]' grace to finish.
///
/// Every connection gets its own task: the handshake (bounded by the handshake timeout), the
/// client certificate checks of [`accept_peer`], then HTTP/1.1 with the service that
/// `make_service` makes for that peer. The peer's identity is also put in each request's
/// extensions. A refused peer's connection is closed and the reason logged with its address.
///
/// `asx::Inbound` fits as `S`:
/// `serve_https(listener, acceptor, crl, move |peer| as4.inbound(dedup.clone(), handler_for(peer)), shutdown)`.
pub async fn serve_https<S, F, B>(
    listener: TcpListener,
    acceptor: Arc<HttpsAcceptor>,
    crl: Arc<CrlCache>,
    make_service: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(PeerIdentity) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let make_service = Arc::new(make_service);
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(acceptor.max_connections));
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(serve_connection(
                            tcp,
                            peer,
                            acceptor.clone(),
                            crl.clone(),
                            make_service.clone(),
                            stopped.clone(),
                            permit,
                        ));
                    }
                    // Over the cap: closed before the handshake (the sender retries later).
                    Err(_) => {
                        drop(tcp);
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(
                                %peer,
                                refused,
                                max_connections = acceptor.max_connections,
                                "AS4 connection refused: too many open connections"
                            );
                        }
                    }
                },
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    stop.send_replace(true);
    let drained = tokio::time::timeout(acceptor.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace; closing them"
        );
        connections.shutdown().await;
    }
}

/// Why an exchange on a connection ended without an answer: the service failed, or the
/// request was not received and answered in time (the connection is then closed).
#[derive(Debug)]
struct ExchangeError(String);

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ExchangeError {}

fn boxed<E: Into<BoxError>>(e: E) -> ExchangeError {
    ExchangeError(e.into().to_string())
}

fn timed_out(limit: Duration) -> ExchangeError {
    ExchangeError(format!(
        "the request was not received and answered within {limit:?}"
    ))
}

/// Completes when shutdown begins (or the server is gone).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`; drop it here.
    let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
}

async fn serve_connection<S, F, B>(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: Arc<HttpsAcceptor>,
    crl: Arc<CrlCache>,
    make_service: Arc<F>,
    mut stopped: watch::Receiver<bool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) where
    F: Fn(PeerIdentity) -> S + Send + Sync + 'static,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let _ = tcp.set_nodelay(true);
    let accepted = tokio::select! {
        accepted = accept_peer(&acceptor, &crl, tcp) => accepted,
        () = stop_requested(&mut stopped) => return,
    };
    let (stream, identity) = match accepted {
        Ok(accepted) => accepted,
        Err(error) => {
            tracing::warn!(%peer, %error, "TLS peer refused");
            return;
        }
    };
    tracing::info!(
        %peer,
        partner = %identity.market_partner_id,
        subject = %identity.subject,
        "TLS peer accepted"
    );
    let service = Arc::new(Mutex::new(make_service(identity.clone())));
    let request_timeout = acceptor.request_timeout;
    let adapter = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(identity.clone());
        let service = service.clone();
        let exchange = async move {
            // HTTP/1.1 serves one request at a time, so the lock is never contended; it is
            // never held across an await.
            poll_fn(|cx| {
                service
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .poll_ready(cx)
            })
            .await?;
            let response = service
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .call(request);
            response.await
        };
        // A body trickled in, or an answer never finished: the connection is closed.
        async move {
            let answer: Result<Result<Response<B>, S::Error>, _> =
                tokio::time::timeout(request_timeout, exchange).await;
            match answer {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(e)) => Err(boxed(e)),
                Err(_) => Err(timed_out(request_timeout)),
            }
        }
    });
    let stream = crate::transport::net::Watched::new(stream);
    let activity = stream.activity();
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(acceptor.header_read_timeout)
        .serve_connection(TokioIo::new(stream), adapter);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = crate::transport::net::idle(&activity, acceptor.idle_timeout) => {
            tracing::debug!(%peer, "AS4 connection closed: idle");
            Ok(())
        }
        () = stop_requested(&mut stopped) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "HTTP connection ended with an error");
    }
}
