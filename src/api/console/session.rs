//! The console's sessions: in memory, per instance, lost on restart (an operator logs in
//! again), each with its CSRF token and an expiry. Ids and CSRF tokens are 256 random bits
//! from the thread's CSPRNG; time comes in as an argument.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use rand::Rng;

/// How long a session lasts after login: a working shift. An operator logs in again after it.
pub const SESSION_HOURS: i64 = 12;

/// Most sessions kept at once; the oldest goes when a login would exceed it (only holders of
/// the token can log in, so this bounds memory against a careless script, not an attacker).
pub const MAX_SESSIONS: usize = 1000;

/// The cookie that carries the session id.
pub const COOKIE: &str = "mako_console";

/// Who is logged in, as the handlers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// The name given at login (for the audit trail).
    pub name: String,
    /// The first hex digits of the SHA-256 of the token used: which token, not the token.
    pub token_fingerprint: String,
    /// The session's CSRF token, written into every form and checked on every POST.
    pub csrf: String,
}

impl Operator {
    /// Who an action is recorded for: `name (console, token <fingerprint>)`.
    pub fn actor(&self) -> String {
        format!("{} (console, token {})", self.name, self.token_fingerprint)
    }
}

#[derive(Debug, Clone)]
struct Entry {
    operator: Operator,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// The session table (cheap to clone: shared).
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<String, Entry>>>,
}

/// 32 random bytes as 64 hex digits.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

impl Sessions {
    /// Opens a session for `operator_name` logged in with a token of `fingerprint`; returns
    /// the session id (the cookie's value).
    pub fn open(&self, operator_name: &str, fingerprint: &str, now: DateTime<Utc>) -> String {
        let id = random_token();
        let entry = Entry {
            operator: Operator {
                name: operator_name.to_string(),
                token_fingerprint: fingerprint.to_string(),
                csrf: random_token(),
            },
            created_at: now,
            expires_at: now + Duration::hours(SESSION_HOURS),
        };
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| e.expires_at > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, e)| e.created_at)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), entry);
        id
    }

    /// The operator of a live session.
    pub fn operator(&self, id: &str, now: DateTime<Utc>) -> Option<Operator> {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(id) {
            Some(e) if e.expires_at > now => Some(e.operator.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Ends a session.
    pub fn close(&self, id: &str) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The session id in a `Cookie` header value.
pub fn cookie_value(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value of a session: never readable by script, sent only to `/ui` and
/// only with requests from our own pages; `Secure` when the console is reached over TLS.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_session_lives_until_its_expiry_and_ends_on_logout() {
        let now = Utc.with_ymd_and_hms(2026, 6, 1, 10, 0, 0).unwrap();
        let sessions = Sessions::default();
        let id = sessions.open("Erika", "ab12cd34", now);
        assert_eq!(id.len(), 64);
        let op = sessions.operator(&id, now).expect("live");
        assert_eq!(op.actor(), "Erika (console, token ab12cd34)");
        assert_eq!(op.csrf.len(), 64);
        assert_ne!(op.csrf, id);
        let later = now + Duration::hours(SESSION_HOURS);
        assert!(sessions.operator(&id, later).is_none(), "expired");
        let id = sessions.open("Erika", "ab12cd34", now);
        sessions.close(&id);
        assert!(sessions.operator(&id, now).is_none(), "closed");
        assert!(sessions.operator("guess", now).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_scoped_to_the_console() {
        assert_eq!(
            set_cookie("abc", false),
            "mako_console=abc; HttpOnly; SameSite=Strict; Path=/ui"
        );
        assert!(set_cookie("abc", true).ends_with("; Secure"));
        assert_eq!(cookie_value("a=1; mako_console=xyz; b=2"), Some("xyz"));
        assert_eq!(cookie_value("a=1"), None);
    }
}
