//! Transport security of the mail servers: the TLS mode, a private CA, and plain text only to
//! loopback.

use std::fmt;
use std::path::{Path, PathBuf};

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

    /// Reads [`Self::ca_file`] (when set) as a client would: an error when it cannot be read
    /// or holds no PEM certificate.
    pub fn check_ca_file(&self) -> Result<(), TlsSetupError> {
        self.ca_certificates().map(drop)
    }

    /// The CA certificates of [`Self::ca_file`], as DER, or none when it is unset.
    pub(super) fn ca_certificates(&self) -> Result<Vec<Vec<u8>>, TlsSetupError> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        read_ca_file(path)
    }
}

/// Every certificate of a PEM file, as DER; an error when there is none.
fn read_ca_file(path: &Path) -> Result<Vec<Vec<u8>>, TlsSetupError> {
    let error = |reason: String| TlsSetupError::CaFile {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let certs = openssl::x509::X509::stack_from_pem(&pem)
        .map_err(|e| error(format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(error("no PEM certificate in it".into()));
    }
    certs
        .iter()
        .map(|c| c.to_der().map_err(|e| error(e.to_string())))
        .collect()
}

/// An error with its sources, `: `-joined (OpenSSL's verify reason sits in a source).
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = e.source();
    }
    text
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

    #[test]
    fn a_ca_file_must_hold_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsSettings::with_ca(TlsMode::StartTls, dir.path().join("nope.pem"));
        assert!(matches!(
            missing.check_ca_file(),
            Err(TlsSetupError::CaFile { .. })
        ));
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let error = TlsSettings::with_ca(TlsMode::StartTls, &garbage)
            .check_ca_file()
            .unwrap_err();
        assert!(error.to_string().contains("garbage.pem"), "{error}");
        // Two certificates in one file (a bundle) are both read.
        let key = openssl::pkey::PKey::from_ec_key(
            openssl::ec::EcKey::generate(
                &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let mut builder = openssl::x509::X509::builder().unwrap();
        builder.set_pubkey(&key).unwrap();
        let now = openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let later = openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        builder.set_not_before(&now).unwrap();
        builder.set_not_after(&later).unwrap();
        builder
            .sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let pem = builder.build().to_pem().unwrap();
        let bundle = dir.path().join("bundle.pem");
        std::fs::write(&bundle, [pem.clone(), pem].concat()).unwrap();
        let settings = TlsSettings::with_ca(TlsMode::Implicit, &bundle);
        assert_eq!(settings.ca_certificates().unwrap().len(), 2);
    }
}
