//! SMTP out: one raw mail to the relay or submission server, errors classified as transient or
//! permanent.

use std::fmt;
use std::time::Duration;

use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::tls::error_chain;
use super::DEFAULT_TIMEOUT;
use crate::config::{TlsMode, TlsSettings, TlsSetupError};

/// Where and how to send.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port (25 on loopback, 587 for submission).
    pub port: u16,
    /// The name we greet with (EHLO); `localhost` when unset.
    pub hello_name: Option<String>,
    /// SMTP AUTH user and password (PLAIN or LOGIN, as the server offers); `None`: no AUTH.
    pub credentials: Option<(String, String)>,
    /// Transport security (STARTTLS by default).
    pub tls: TlsSettings,
    /// The longest wait for one step.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("hello_name", &self.hello_name)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl SmtpConfig {
    /// Plain SMTP (no TLS, no authentication) to `host:port`; [`send`] refuses it unless
    /// the host is loopback.
    pub fn plain(host: impl Into<String>, port: u16) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port,
            hello_name: None,
            credentials: None,
            tls: TlsSettings::none(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with transport security `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> SmtpConfig {
        self.tls = tls;
        self
    }
}

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The server refused for good (5xx): retrying the same mail will not help.
    #[error("permanent SMTP error {code}: {answer}")]
    Permanent {
        /// The reply code (`550`, …).
        code: u16,
        /// The server's answer text.
        answer: String,
    },
    /// The server refused for now (4xx).
    #[error("transient SMTP error {code}: {answer}")]
    Transient {
        /// The reply code (`451`, …).
        code: u16,
        /// The server's answer text.
        answer: String,
    },
    /// No conversation with the server: connection refused or lost, timeout, garbled reply.
    #[error("SMTP connection to {server}: {detail}")]
    Connection {
        /// `host:port`.
        server: String,
        /// What happened.
        detail: String,
    },
    /// Our side: the envelope or the client set-up is wrong; retrying will not help.
    #[error("SMTP client error: {detail}")]
    Client {
        /// What is wrong.
        detail: String,
    },
}

impl SendError {
    /// Worth retrying later (4xx or no connection).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SendError::Transient { .. } | SendError::Connection { .. }
        )
    }

    /// Retrying will not help (5xx or our own mistake): park the mail with [`Self::answer`].
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// The server's answer, when it gave one.
    pub fn answer(&self) -> Option<&str> {
        match self {
            SendError::Permanent { answer, .. } | SendError::Transient { answer, .. } => {
                Some(answer)
            }
            _ => None,
        }
    }

    fn classify(error: lettre::transport::smtp::Error, config: &SmtpConfig) -> SendError {
        let code = error
            .status()
            .and_then(|c| c.to_string().parse::<u16>().ok());
        // lettre's Display is "permanent error (550): <the server's lines>"; keep the lines.
        let text = error.to_string();
        let answer = text
            .split_once("): ")
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| text.clone());
        match code {
            Some(code) if error.is_permanent() => SendError::Permanent { code, answer },
            Some(code) if error.is_transient() => SendError::Transient { code, answer },
            _ if error.is_client() => SendError::Client { detail: text },
            _ => SendError::Connection {
                server: format!("{}:{}", config.host, config.port),
                detail: text,
            },
        }
    }
}

/// Sends `raw` (a complete RFC 5322 message, e.g. from [`build_mail`](super::build_mail))
/// from `from` to `to` (the SMTP envelope; the headers inside `raw` are not read).
pub async fn send(
    config: &SmtpConfig,
    from: &Address,
    to: &[Address],
    raw: &[u8],
) -> Result<(), SendError> {
    let envelope =
        lettre::address::Envelope::new(Some(from.clone()), to.to_vec()).map_err(|e| {
            SendError::Client {
                detail: e.to_string(),
            }
        })?;
    let hello = ClientId::Domain(
        config
            .hello_name
            .clone()
            .unwrap_or_else(|| "localhost".into()),
    );
    let client_error = |e: TlsSetupError| SendError::Client {
        detail: e.to_string(),
    };
    config.tls.check(&config.host).map_err(client_error)?;
    let tls = smtp_tls(config).map_err(|e| match e {
        SmtpTlsError::Setup(e) => client_error(e),
        SmtpTlsError::Lettre(e) => SendError::Client {
            detail: format!("TLS set-up: {}", error_chain(&e)),
        },
    })?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone())
        .port(config.port)
        .hello_name(hello)
        .tls(tls)
        .timeout(Some(config.timeout));
    if let Some((user, password)) = &config.credentials {
        builder = builder.credentials(lettre::transport::smtp::authentication::Credentials::new(
            user.clone(),
            password.clone(),
        ));
    }
    let transport = builder.build();
    transport
        .send_raw(&envelope, raw)
        .await
        .map(|_| ())
        .map_err(|e| SendError::classify(e, config))
}

enum SmtpTlsError {
    Setup(TlsSetupError),
    Lettre(lettre::transport::smtp::Error),
}

/// lettre's TLS choice for `config`: `Required` is STARTTLS that fails when the server does
/// not offer it, `Wrapper` is implicit TLS.
fn smtp_tls(config: &SmtpConfig) -> Result<lettre::transport::smtp::client::Tls, SmtpTlsError> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
    if config.tls.mode == TlsMode::None {
        return Ok(Tls::None);
    }
    let mut parameters = TlsParameters::builder(config.host.clone());
    let cas = config.tls.ca_certificates().map_err(SmtpTlsError::Setup)?;
    if !cas.is_empty() {
        parameters = parameters.certificate_store(CertificateStore::None);
    }
    for der in cas {
        parameters = parameters
            .add_root_certificate(Certificate::from_der(der).map_err(SmtpTlsError::Lettre)?);
    }
    let parameters = parameters.build_native().map_err(SmtpTlsError::Lettre)?;
    Ok(match config.tls.mode {
        TlsMode::Implicit => Tls::Wrapper(parameters),
        _ => Tls::Required(parameters),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_send_errors() {
        let permanent = SendError::Permanent {
            code: 550,
            answer: "5.1.1 unknown".into(),
        };
        assert!(permanent.is_permanent() && !permanent.is_transient());
        assert_eq!(permanent.answer(), Some("5.1.1 unknown"));
        let connection = SendError::Connection {
            server: "127.0.0.1:1".into(),
            detail: "refused".into(),
        };
        assert!(connection.is_transient());
    }
}
