//! The API's HTTP/1.1 server: hyper under the axum router, with the limits `axum::serve`
//! lacks (issue 15 defect 5). A client that sends its header slowly, trickles its body,
//! or holds a connection open without a word is cut off, and connections beyond the cap are
//! answered `503` and closed at once, so that no client exhausts the daemon's file descriptors
//! and `/health` answers while it is attacked.
//!
//! - the header: hyper's header read timeout ([`HttpLimits::header_read_timeout`]);
//! - the body and the answer: the request timeout around the router's call (the body is read
//!   by the handler), answered `408` in the `errors[]` shape;
//! - idleness: no byte in either direction for [`HttpLimits::idle_timeout`] closes the
//!   connection (a kept-alive one between requests, or one whose client stopped reading);
//! - the cap: [`HttpLimits::max_connections`] connections at once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower_service::Service;

use crate::config::HttpLimits;
use crate::transport::net::{idle, Watched};

/// Answer to a connection over the cap, written without waiting and without reading the
/// request (the `errors[]` shape of every other refusal).
const OVER_CAPACITY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 118\r\n\r\n\
{\"errors\":[{\"field\":null,\"code\":\"too_many_connections\",\"message\":\"too many open connections, try again in a moment\"}]}";

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets the
/// requests in progress finish (each bounded by the request timeout) and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections as usize));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut refused: u64 = 0;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => match permits.clone().try_acquire_owned() {
                    Ok(permit) => {
                        connections.spawn(connection(
                            tcp,
                            app.clone(),
                            limits,
                            permit,
                            stopped.clone(),
                        ));
                    }
                    Err(_) => {
                        // Not a task per refusal: one write into the empty send buffer, then
                        // the socket is closed.
                        let _ = tcp.try_write(OVER_CAPACITY);
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(
                                %peer,
                                refused,
                                max_connections = limits.max_connections,
                                "API connection refused: too many open connections"
                            );
                        }
                    }
                },
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(%error, "accepting an API connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    stop.send_replace(true);
    while connections.join_next().await.is_some() {}
}

async fn connection(
    tcp: TcpStream,
    app: Router,
    limits: HttpLimits,
    _permit: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    let io = Watched::new(tcp);
    let activity = io.activity();
    let request_timeout = limits.request_timeout;
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let mut app = app.clone();
        async move {
            match tokio::time::timeout(request_timeout, app.call(request)).await {
                Ok(answer) => answer,
                Err(_) => {
                    let mut answer = super::error::ApiError::general(
                        axum::http::StatusCode::REQUEST_TIMEOUT,
                        "request_timeout",
                        format!(
                            "the request was not received and answered within \
                             {request_timeout:?}"
                        ),
                    )
                    .into_response();
                    answer.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                    Ok(answer)
                }
            }
        }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        () = idle(&activity, limits.idle_timeout) => {
            tracing::debug!("API connection closed: idle");
        }
        () = stop_requested(&mut stopped) => {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(request_timeout, served).await;
        }
    }
}

/// Completes when shutdown begins (the guard `wait_for` returns is not `Send`: dropped here).
async fn stop_requested(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await.map(|_| ());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_over_capacity_answer_is_well_formed_with_its_length() {
        let text = std::str::from_utf8(OVER_CAPACITY).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["errors"][0]["code"], "too_many_connections");
    }
}
