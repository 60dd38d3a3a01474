//! TLS session resumption for [`super::https::HttpsClient`]: the one call the safe `openssl`
//! crate marks `unsafe`, behind a type that upholds its condition.
//!
//! Why this module exists: offering a saved session to the server (`SSL_set_session`) is
//! `unsafe` in the `openssl` crate (0.10) because OpenSSL requires the session to come from
//! the same `SSL_CTX` as the connection it is offered on; nothing else about it is unsafe (the
//! session is reference counted; OpenSSL takes its own reference). [`Sessions`] holds the
//! sessions of exactly one [`SslConnector`] — it is made with it and hands sessions only to
//! connections configured from it — so the condition holds by construction.
//!
//! What a resumed session means for our checks: the server presents no certificate in an
//! abbreviated handshake and the verify callback does not run; OpenSSL keeps the certificate
//! verified in the full handshake in the session. A session is saved only after a full
//! handshake whose server passed every check (chain to our anchors, SM-PKI naming of the
//! expected partner, not revoked), per endpoint and expected partner, and after a resumed
//! handshake the client runs the naming check and the revocation check again on the session's
//! certificate before using the connection.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use openssl::ssl::{SslConnector, SslRef, SslSession};

use crate::ids::MarketPartnerId;

/// What a session is saved under: the endpoint (`host:port`) and the partner expected there.
pub(super) type SessionKey = (String, Option<MarketPartnerId>);

/// The saved sessions of one [`SslConnector`], and that connector.
pub(super) struct Sessions {
    connector: SslConnector,
    saved: Mutex<HashMap<SessionKey, SslSession>>,
}

impl Sessions {
    /// Sessions for connections from `connector`.
    pub(super) fn new(connector: SslConnector) -> Sessions {
        Sessions {
            connector,
            saved: Mutex::default(),
        }
    }

    /// The connector every connection is configured from.
    pub(super) fn connector(&self) -> &SslConnector {
        &self.connector
    }

    /// Offers the session saved for `key`, if any, on `ssl` (configured from
    /// [`Sessions::connector`]: the caller's duty, which [`super::https`] keeps by making
    /// every client connection there).
    pub(super) fn offer(&self, key: &SessionKey, ssl: &mut SslRef) {
        let saved = self.saved.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(session) = saved.get(key) {
            // SAFETY: every saved session comes from a connection configured from
            // `self.connector` (`save` is only called with those), and so is `ssl`.
            if let Err(error) = unsafe { ssl.set_session(session) } {
                tracing::debug!(%error, "a saved TLS session could not be offered");
            }
        }
    }

    /// Saves `ssl`'s session for `key` (after its server passed every check).
    pub(super) fn save(&self, key: SessionKey, ssl: &SslRef) {
        if let Some(session) = ssl.session() {
            self.saved
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, session.to_owned());
        }
    }

    /// Forgets the session of `key` (its server was refused).
    pub(super) fn forget(&self, key: &SessionKey) {
        self.saved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }
}
