//! The transport security of the mail servers as configured: the TLS mode, a private CA, and
//! plain text only to loopback. Data and its checks only; `transport::email` reads the CA file
//! and makes the connections.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The longest wait for one network step with a mail server (connect, a command, one fetch).
/// Generous: a 10 MB interchange is about 14 MB of base64 on the wire.
pub const DEFAULT_MAIL_TIMEOUT: Duration = Duration::from_secs(120);

/// How long to wait between two looks into the mailbox when the server has no IDLE, and the
/// longest IDLE before looking anyway (a missed notification costs at most this long).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(60);

/// How a connection to a mail server is protected (`tls = "none" | "starttls" | "tls"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain TCP: only to a loopback host ([`plaintext_allowed`]).
    None,
    /// Plain connect, then STARTTLS before anything else; refused when the server does not
    /// offer it.
    #[default]
    StartTls,
    /// Implicit TLS from the first byte (SMTP 465, IMAPS 993).
    Implicit,
}

impl TlsMode {
    /// The configuration word: `none`, `starttls`, `tls`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::None => "none",
            TlsMode::StartTls => "starttls",
            TlsMode::Implicit => "tls",
        }
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "none" => Ok(TlsMode::None),
            "starttls" => Ok(TlsMode::StartTls),
            "tls" => Ok(TlsMode::Implicit),
            other => Err(format!(
                "{other:?} is not a TLS mode; use \"starttls\", \"tls\" or \"none\""
            )),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport security of one server connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// How the connection is protected.
    pub mode: TlsMode,
    /// PEM file with the CA certificate(s) to trust instead of the system roots (a private
    /// CA); `None`: the system roots.
    pub ca_file: Option<PathBuf>,
}

impl TlsSettings {
    /// No TLS (loopback only).
    pub fn none() -> TlsSettings {
        TlsSettings {
            mode: TlsMode::None,
            ca_file: None,
        }
    }

    /// `mode`, trusting the CA certificates in `ca_file` (PEM).
    pub fn with_ca(mode: TlsMode, ca_file: impl Into<PathBuf>) -> TlsSettings {
        TlsSettings {
            mode,
            ca_file: Some(ca_file.into()),
        }
    }
}

/// True when `host` is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`: the only
/// hosts a password may go to without TLS.
pub fn plaintext_allowed(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why the TLS set-up failed before any connection was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// `none` to a host that is not loopback.
    #[error("tls = \"none\" is allowed only for a loopback host (127.0.0.1, ::1, localhost), not {host:?}: passwords and mail would go in clear")]
    PlaintextNotLoopback {
        /// The host.
        host: String,
    },
    /// The CA file cannot be read or has no PEM certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl TlsSettings {
    /// Refuses `none` to a host that is not loopback.
    pub fn check(&self, host: &str) -> Result<(), TlsSetupError> {
        if self.mode == TlsMode::None && !plaintext_allowed(host) {
            return Err(TlsSetupError::PlaintextNotLoopback { host: host.into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_only_to_loopback() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "localhost",
            "LOCALHOST",
        ] {
            assert!(plaintext_allowed(host), "{host}");
            assert!(TlsSettings::none().check(host).is_ok());
        }
        for host in [
            "10.0.0.1",
            "mail.example.org",
            "localhost.example.org",
            "::2",
        ] {
            assert!(!plaintext_allowed(host), "{host}");
            assert!(TlsSettings::none().check(host).is_err());
            assert!(TlsSettings::default().check(host).is_ok());
        }
        assert_eq!("tls".parse(), Ok(TlsMode::Implicit));
        assert_eq!(TlsMode::default().to_string(), "starttls");
    }
}
