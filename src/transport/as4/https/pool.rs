//! The kept connections of [`HttpsClient`](super::HttpsClient): per endpoint and expected
//! partner, up to a few idle HTTP/1.1 connections, each with the server certificate verified
//! when it was made, handed out again only to the same pair.

use super::*;

/// Kept connections are keyed by the endpoint (`host:port`) and the market partner expected
/// there: a connection is used again only for the pair it was verified for.
pub(super) type PoolKey = SessionKey;

/// An HTTP/1.1 connection to a verified server.
pub(super) struct Connection {
    pub(super) sender: SendRequest<Full<Bytes>>,
    /// The server's certificate, whose revocation status is asked again before each reuse.
    pub(super) cert: X509,
    /// Drives the connection; dropping it closes the connection.
    pub(super) _driver: AbortOnDrop,
}

/// What became of a request on a connection.
pub(super) enum Attempt {
    /// Answered; the connection may be kept.
    Answered(Response<Bytes>, Connection),
    /// The connection was closed before the request was handed over: it can go elsewhere.
    NotSent(Request<Full<Bytes>>),
    /// Failed after the request was (or may have been) sent.
    Failed(HttpsError),
}

/// The idle connections of one client.
pub(super) struct Pool {
    pub(super) idle: Mutex<HashMap<PoolKey, Vec<Idle>>>,
    pub(super) max_idle: usize,
    pub(super) expiry: Duration,
    /// Connections made, for [`HttpsClient::connections_opened`].
    pub(super) opened: AtomicU64,
    /// Of them, resumed TLS sessions, for [`HttpsClient::sessions_resumed`].
    pub(super) resumed: AtomicU64,
}

/// An idle connection and since when it waits.
pub(super) struct Idle {
    pub(super) connection: Connection,
    pub(super) since: Instant,
}

impl Pool {
    pub(super) fn usable(&self, idle: &Idle, now: Instant) -> bool {
        now.saturating_duration_since(idle.since) < self.expiry
            && !idle.connection.sender.is_closed()
    }

    /// The most recently used idle connection for `key` (the least likely to be closed by
    /// the server); expired and closed ones on the way are dropped.
    pub(super) fn checkout(&self, key: &PoolKey, now: Instant) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let list = idle.get_mut(key)?;
        while let Some(entry) = list.pop() {
            if self.usable(&entry, now) {
                return Some(entry.connection);
            }
        }
        None
    }

    /// Keeps `connection` after `response`, unless either side said it closes.
    pub(super) fn keep(
        &self,
        key: PoolKey,
        connection: Connection,
        response: &Response<Bytes>,
        now: Instant,
    ) {
        let closing = response
            .headers()
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str()
                    .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
            });
        if closing || self.max_idle == 0 || connection.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        // Expired and closed connections go, for every endpoint (a handful of entries).
        idle.retain(|_, list| {
            list.retain(|entry| self.usable(entry, now));
            !list.is_empty()
        });
        let list = idle.entry(key).or_default();
        if list.len() >= self.max_idle {
            list.remove(0);
        }
        list.push(Idle {
            connection,
            since: now,
        });
    }
}
