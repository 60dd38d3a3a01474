//! The API's HTTP server under slow and idle clients (issue 15 defect 5): thousands of
//! slow-header, slow-body and idle connections once stayed open for ever, and past the soft
//! descriptor limit `/health` and every POST timed out. Real sockets on 127.0.0.1 against
//! `api::server::serve` with the router on a SQLite file.

mod support;

use std::time::{Duration, Instant};

use mako_gateway::api::{router, server, AppState};
use mako_gateway::config::HttpLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMITS: HttpLimits = HttpLimits {
    max_connections: 8,
    header_read_timeout: Duration::from_secs(1),
    request_timeout: Duration::from_secs(2),
    idle_timeout: Duration::from_secs(3),
};

async fn start(store: mako_gateway::store::Store) -> std::net::SocketAddr {
    let state = AppState::new(store, vec!["token".into()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        router(state),
        LIMITS,
        std::future::pending(),
    ));
    addr
}

/// Reads until the server closes the connection (or `limit` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut all = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|()| String::from_utf8_lossy(&all).into_owned())
}

async fn health(addr: std::net::SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    read_to_close(&mut stream, Duration::from_secs(5))
        .await
        .expect("/health answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_connections_over_the_cap_get_503_and_idle_ones_are_closed() {
    let (_dir, store) = support::sqlite().await;
    let addr = start(store).await;
    // The cap's worth of connections that say nothing.
    let mut idle = Vec::new();
    for _ in 0..LIMITS.max_connections {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // One more is answered at once, in the errors[] shape, and closed.
    let mut over = TcpStream::connect(addr).await.unwrap();
    let answer = read_to_close(&mut over, Duration::from_secs(2))
        .await
        .expect("closed at once");
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    let body = answer.split_once("\r\n\r\n").unwrap().1;
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["errors"][0]["code"], "too_many_connections", "{json}");
    // The silent ones are cut off by the header read timeout (1 s), well before 3 s.
    let started = Instant::now();
    for stream in &mut idle {
        let rest = read_to_close(stream, Duration::from_secs(5)).await;
        assert!(rest.is_some(), "a silent connection stays open");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    // And the server answers again.
    let answer = health(addr).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_slow_header_is_cut_off() {
    let (_dir, store) = support::sqlite().await;
    let addr = start(store).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // One header byte every 300 ms: never idle, never complete.
    let trickle = async {
        for b in b"GET /health HTTP/1.1\r\nhost: localhost\r\nx-slow: aaaaaaaaaaaaaaaaaaaa" {
            if stream.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(6), trickle).await;
    let closed = started.elapsed();
    assert!(
        closed < Duration::from_secs(3),
        "a slow header held the connection for {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_slow_body_is_answered_408() {
    let (_dir, store) = support::sqlite().await;
    let addr = start(store).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /grid-fee-reductions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer token\r\n\
              content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"subscription\"",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut stream, Duration::from_secs(6))
        .await
        .expect("the server gives up on the body");
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_is_closed_after_the_idle_timeout_and_served_before() {
    let (_dir, store) = support::sqlite().await;
    let addr = start(store).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    // Kept alive, then silent: closed after the idle (or header) timeout, not left open.
    let started = Instant::now();
    let rest = read_to_close(&mut stream, Duration::from_secs(6)).await;
    assert!(rest.is_some(), "an idle kept-alive connection stays open");
    assert!(started.elapsed() <= Duration::from_millis(3500));
}
