//! IMAP in: the mailbox partners write to, read so that no mail is journaled twice (see
//! "Never twice" in the module docs of `transport::email`). The TLS connector for IMAP sits
//! here, beside its only user, as the SMTP one does in `smtp`.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use async_imap::types::{Flag, UnsolicitedResponse};
use futures_util::TryStreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::tls::error_chain;
use super::DEFAULT_TIMEOUT;
use crate::config::{TlsMode, TlsSettings, TlsSetupError};
use crate::transport::health::Reporter;

/// The IMAP keyword set on a mail once it is journaled (see "Never twice" in the
/// [module docs](super)).
pub const JOURNALED_KEYWORD: &str = "$MakoJournaled";

use crate::config::DEFAULT_POLL_INTERVAL;

/// The longest single IDLE: RFC 2177 asks clients to end IDLE within 29 minutes, as servers
/// may log off idle clients after 30.
pub const MAX_IDLE: Duration = Duration::from_secs(25 * 60);

/// Reconnect backoff of [`run_inbox`]: first wait, doubled up to the last.
const RECONNECT_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(300));

/// Which mailbox to read and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapConfig {
    /// Server host name or address.
    pub host: String,
    /// Server port (143).
    pub port: u16,
    /// Login name.
    pub user: String,
    /// Password (LOGIN; in clear only with [`TlsMode::None`] to a loopback host).
    pub password: String,
    /// The mailbox to read (`INBOX`).
    pub mailbox: String,
    /// Time between looks when the server has no IDLE (and the longest IDLE).
    pub poll_interval: Duration,
    /// Use IDLE when the server offers it.
    pub idle: bool,
    /// Transport security (STARTTLS by default).
    pub tls: TlsSettings,
    /// The longest wait for one network step.
    pub timeout: Duration,
}

impl ImapConfig {
    /// Plain IMAP to `host:port`, mailbox INBOX, IDLE on, the default intervals;
    /// [`Inbox::connect`] refuses it unless the host is loopback.
    pub fn plain(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> ImapConfig {
        ImapConfig {
            host: host.into(),
            port,
            user: user.into(),
            password: password.into(),
            mailbox: "INBOX".into(),
            poll_interval: DEFAULT_POLL_INTERVAL,
            idle: true,
            tls: TlsSettings::none(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The same with transport security `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> ImapConfig {
        self.tls = tls;
        self
    }

    fn server(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Why the IMAP side failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImapError {
    /// The TCP connection could not be made.
    #[error("IMAP connection to {server}: {source}")]
    Connect {
        /// `host:port`.
        server: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TLS configuration cannot be used (plain to a remote host, a bad CA file).
    #[error("IMAP TLS set-up: {0}")]
    TlsSetup(TlsSetupError),
    /// The server offers no STARTTLS, though the configuration asks for it.
    #[error("IMAP server {server} does not offer STARTTLS (tls = \"starttls\"); use \"tls\" (IMAPS) if it has that")]
    NoStartTls {
        /// `host:port`.
        server: String,
    },
    /// The TLS handshake failed: an untrusted or wrong certificate, no common protocol.
    #[error("IMAP TLS handshake with {server}: {detail}")]
    Tls {
        /// `host:port`.
        server: String,
        /// OpenSSL's reason (`certificate verify failed`, …).
        detail: String,
    },
    /// A step took longer than the configured timeout.
    #[error("IMAP {step} took longer than {timeout:?}")]
    Timeout {
        /// The step (`LOGIN`, `FETCH`, …).
        step: &'static str,
        /// The limit.
        timeout: Duration,
    },
    /// The server refused the login.
    #[error("IMAP login of {user} refused: {source}")]
    Login {
        /// The user.
        user: String,
        /// The server's answer.
        source: async_imap::error::Error,
    },
    /// A command failed or the connection broke.
    #[error("IMAP {step}: {source}")]
    Protocol {
        /// The step.
        step: &'static str,
        /// The error.
        source: async_imap::error::Error,
    },
    /// The mailbox does not allow the keyword that marks journaled mail.
    #[error("mailbox {mailbox} does not allow new keywords (PERMANENTFLAGS {flags}), so mail cannot be marked as journaled")]
    KeywordNotAllowed {
        /// The mailbox.
        mailbox: String,
        /// What the server allows.
        flags: String,
    },
    /// The connection was given up after an earlier error.
    #[error("the IMAP session was lost after an earlier error")]
    SessionLost,
}

impl ImapError {
    /// Worth trying again with a new connection (network trouble), as opposed to a
    /// configuration the operator must fix (login, keywords).
    pub fn is_transient(&self) -> bool {
        !matches!(
            self,
            ImapError::Login { .. }
                | ImapError::KeywordNotAllowed { .. }
                | ImapError::TlsSetup(_)
                | ImapError::NoStartTls { .. }
        )
    }
}

/// Why [`Inbox::fetch_new`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum InboxError<E> {
    /// The IMAP side failed.
    #[error(transparent)]
    Imap(#[from] ImapError),
    /// The journal callback failed for this mail; it stays unmarked and is offered again.
    #[error("journaling mail UID {uid} failed: {source}")]
    Journal {
        /// The mail's UID.
        uid: u32,
        /// The callback's error.
        source: E,
    },
}

/// A mail as fetched, for the journal callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The mailbox's UIDVALIDITY: (UIDVALIDITY, UID) names the mail for good.
    pub uid_validity: u32,
    /// The mail's UID.
    pub uid: u32,
    /// The mail exactly as stored on the server.
    pub raw: Vec<u8>,
}

/// What [`Inbox::wait`] woke up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The server announced a change (new mail, most likely).
    Activity,
    /// The poll interval passed.
    Interval,
    /// The stop signal was given.
    Stopped,
}

/// A connector for IMAP: TLS 1.2 or newer, the system roots or only the CA file's
/// certificates.
fn imap_tls_connector(config: &ImapConfig) -> Result<tokio_native_tls::TlsConnector, ImapError> {
    let tls = &config.tls;
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    let cas = tls.ca_certificates().map_err(ImapError::TlsSetup)?;
    if !cas.is_empty() {
        builder.disable_built_in_roots(true);
    }
    for der in cas {
        let cert = native_tls::Certificate::from_der(&der).map_err(|e| {
            ImapError::TlsSetup(TlsSetupError::CaFile {
                path: tls
                    .ca_file
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: e.to_string(),
            })
        })?;
        builder.add_root_certificate(cert);
    }
    let connector = builder.build().map_err(|e| ImapError::Tls {
        server: config.server(),
        detail: error_chain(&e),
    })?;
    Ok(connector.into())
}

/// What an IMAP session runs over: plain TCP (loopback) or TLS.
trait ImapStream: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> ImapStream for T {}

type Session = async_imap::Session<Box<dyn ImapStream>>;

/// A logged-in IMAP connection with the configured mailbox selected.
#[derive(Debug)]
pub struct Inbox {
    config: ImapConfig,
    /// `None` after an error that left the connection in an unknown state.
    session: Option<Session>,
    uid_validity: u32,
    idle: bool,
}

async fn step<T, F>(timeout: Duration, name: &'static str, future: F) -> Result<T, ImapError>
where
    F: Future<Output = Result<T, async_imap::error::Error>>,
{
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result.map_err(|source| ImapError::Protocol { step: name, source }),
        Err(_) => Err(ImapError::Timeout {
            step: name,
            timeout,
        }),
    }
}

impl Inbox {
    /// Connects, logs in, checks IDLE and selects the mailbox; refuses a mailbox that cannot
    /// take the [`JOURNALED_KEYWORD`].
    pub async fn connect(config: ImapConfig) -> Result<Inbox, ImapError> {
        let timeout = config.timeout;
        config
            .tls
            .check(&config.host)
            .map_err(ImapError::TlsSetup)?;
        let connector = match config.tls.mode {
            TlsMode::None => None,
            _ => Some(imap_tls_connector(&config)?),
        };
        let stream = match tokio::time::timeout(
            timeout,
            TcpStream::connect((config.host.as_str(), config.port)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ImapError::Connect {
                    server: config.server(),
                    source,
                })
            }
            Err(_) => {
                return Err(ImapError::Timeout {
                    step: "connect",
                    timeout,
                })
            }
        };
        let client = Self::secure(&config, stream, connector).await?;
        let mut session =
            match tokio::time::timeout(timeout, client.login(&config.user, &config.password)).await
            {
                Ok(Ok(session)) => session,
                Ok(Err((source, _))) => {
                    return Err(ImapError::Login {
                        user: config.user.clone(),
                        source,
                    })
                }
                Err(_) => {
                    return Err(ImapError::Timeout {
                        step: "LOGIN",
                        timeout,
                    })
                }
            };
        let idle = config.idle
            && step(timeout, "CAPABILITY", session.capabilities())
                .await?
                .has_str("IDLE");
        let mailbox = step(timeout, "SELECT", session.select(&config.mailbox)).await?;
        let keyword_allowed = mailbox.permanent_flags.iter().any(|f| {
            matches!(f, Flag::MayCreate)
                || matches!(f, Flag::Custom(k) if k.eq_ignore_ascii_case(JOURNALED_KEYWORD))
        });
        if !keyword_allowed {
            return Err(ImapError::KeywordNotAllowed {
                mailbox: config.mailbox.clone(),
                flags: format!("{:?}", mailbox.permanent_flags),
            });
        }
        Ok(Inbox {
            uid_validity: mailbox.uid_validity.unwrap_or(0),
            config,
            session: Some(session),
            idle,
        })
    }

    /// The client after the greeting, over TLS unless the mode is `none`: for `tls` the
    /// handshake comes first; for `starttls` the greeting and STARTTLS go in clear, then the
    /// handshake, and the client starts afresh on the TLS stream (RFC 9051 §6.2.1: nothing
    /// the server said before counts). The login only ever goes after the handshake.
    async fn secure(
        config: &ImapConfig,
        stream: TcpStream,
        connector: Option<tokio_native_tls::TlsConnector>,
    ) -> Result<async_imap::Client<Box<dyn ImapStream>>, ImapError> {
        let timeout = config.timeout;
        let Some(connector) = connector else {
            let mut client = async_imap::Client::new(Box::new(stream) as Box<dyn ImapStream>);
            step(timeout, "greeting", async {
                client.read_response().await.map_err(Into::into)
            })
            .await?;
            return Ok(client);
        };
        let handshake = |stream: TcpStream| async move {
            match tokio::time::timeout(timeout, connector.connect(&config.host, stream)).await {
                Ok(Ok(tls)) => Ok(Box::new(tls) as Box<dyn ImapStream>),
                Ok(Err(e)) => Err(ImapError::Tls {
                    server: config.server(),
                    detail: error_chain(&e),
                }),
                Err(_) => Err(ImapError::Timeout {
                    step: "TLS handshake",
                    timeout,
                }),
            }
        };
        if config.tls.mode == TlsMode::Implicit {
            let mut client = async_imap::Client::new(handshake(stream).await?);
            step(timeout, "greeting", async {
                client.read_response().await.map_err(Into::into)
            })
            .await?;
            return Ok(client);
        }
        let mut plain = async_imap::Client::new(stream);
        step(timeout, "greeting", async {
            plain.read_response().await.map_err(Into::into)
        })
        .await?;
        // A server without STARTTLS answers BAD or NO; the tagged OK is the go-ahead.
        step(
            timeout,
            "STARTTLS",
            plain.run_command_and_check_ok("STARTTLS", None),
        )
        .await
        .map_err(|e| match e {
            ImapError::Protocol { .. } => ImapError::NoStartTls {
                server: config.server(),
            },
            other => other,
        })?;
        Ok(async_imap::Client::new(
            handshake(plain.into_inner()).await?,
        ))
    }

    /// The selected mailbox's UIDVALIDITY.
    pub fn uid_validity(&self) -> u32 {
        self.uid_validity
    }

    /// True when waiting uses IDLE (configured and offered by the server).
    pub fn uses_idle(&self) -> bool {
        self.idle
    }

    fn session(&mut self) -> Result<&mut Session, ImapError> {
        self.session.as_mut().ok_or(ImapError::SessionLost)
    }

    /// The UIDs of the mails not yet journaled, oldest first.
    pub async fn pending(&mut self) -> Result<Vec<u32>, ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        let query = format!("UNDELETED UNKEYWORD {JOURNALED_KEYWORD}");
        let mut uids: Vec<u32> = step(timeout, "UID SEARCH", session.uid_search(query))
            .await?
            .into_iter()
            .collect();
        uids.sort_unstable();
        Ok(uids)
    }

    /// Hands every mail not yet journaled, oldest first, to `journal`, and marks each one
    /// (`\Seen` and [`JOURNALED_KEYWORD`]) once `journal` returned `Ok`. `journal` must return
    /// `Ok` only when the raw mail is committed to durable storage, and must accept the same
    /// mail twice (after a crash between its commit and the mark). Stops at the first error;
    /// what was marked stays marked. Returns how many mails were journaled.
    pub async fn fetch_new<F, Fut, E>(&mut self, mut journal: F) -> Result<usize, InboxError<E>>
    where
        F: FnMut(ReceivedMail) -> Fut,
        Fut: Future<Output = Result<(), E>>,
    {
        let timeout = self.config.timeout;
        let mut done = 0;
        for uid in self.pending().await? {
            // One mail per FETCH: a mailbox full of 10 MB mails is not held in memory at once.
            let session = self.session()?;
            let raw = step(timeout, "UID FETCH", async {
                let fetches: Vec<_> = session
                    .uid_fetch(uid.to_string(), "(UID BODY.PEEK[])")
                    .await?
                    .try_collect()
                    .await?;
                Ok(fetches
                    .into_iter()
                    .find(|f| f.uid == Some(uid))
                    .and_then(|f| f.body().map(<[u8]>::to_vec)))
            })
            .await?;
            // Gone since the search (expunged by someone else): nothing to do.
            let Some(raw) = raw else { continue };
            let mail = ReceivedMail {
                uid_validity: self.uid_validity,
                uid,
                raw,
            };
            journal(mail)
                .await
                .map_err(|source| InboxError::Journal { uid, source })?;
            self.mark_journaled(uid).await?;
            done += 1;
        }
        Ok(done)
    }

    async fn mark_journaled(&mut self, uid: u32) -> Result<(), ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        step(timeout, "UID STORE", async {
            session
                .uid_store(
                    uid.to_string(),
                    format!("+FLAGS.SILENT (\\Seen {JOURNALED_KEYWORD})"),
                )
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }

    /// The flags of one mail (`\Seen`, `$MakoJournaled`, …), for checks and operators.
    pub async fn flags(&mut self, uid: u32) -> Result<Vec<String>, ImapError> {
        let timeout = self.config.timeout;
        let session = self.session()?;
        step(timeout, "UID FETCH FLAGS", async {
            let fetches: Vec<_> = session
                .uid_fetch(uid.to_string(), "(UID FLAGS)")
                .await?
                .try_collect()
                .await?;
            Ok(fetches
                .iter()
                .filter(|f| f.uid == Some(uid))
                .flat_map(|f| f.flags().map(|flag| flag_text(&flag)))
                .collect())
        })
        .await
    }

    /// True when the server announced new mail (EXISTS/RECENT) since the last look; empties
    /// the queue of announcements.
    fn announced(&mut self) -> bool {
        let Some(session) = self.session.as_mut() else {
            return false;
        };
        let mut any = false;
        while let Ok(response) = session.unsolicited_responses.try_recv() {
            any |= matches!(
                response,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            );
        }
        any
    }

    /// Waits for new mail: IDLE when the server has it, else the poll interval; at most the
    /// poll interval either way, and returns at once when `stop` turns true.
    pub async fn wait(&mut self, stop: &mut watch::Receiver<bool>) -> Result<Wake, ImapError> {
        if *stop.borrow() {
            return Ok(Wake::Stopped);
        }
        // Mail that arrived while we were fetching was announced then; IDLE would not see it.
        if self.announced() {
            return Ok(Wake::Activity);
        }
        let interval = self.config.poll_interval.min(MAX_IDLE);
        if !self.idle {
            return Ok(tokio::select! {
                _ = tokio::time::sleep(interval) => Wake::Interval,
                _ = stop.changed() => Wake::Stopped,
            });
        }
        let timeout = self.config.timeout;
        let session = self.session.take().ok_or(ImapError::SessionLost)?;
        let mut handle = session.idle();
        step(timeout, "IDLE", handle.init()).await?;
        let woke = {
            let (idle, interrupt) = handle.wait_with_timeout(interval);
            let woke = tokio::select! {
                r = idle => match r {
                    Ok(async_imap::extensions::idle::IdleResponse::NewData(_)) => Wake::Activity,
                    Ok(_) => Wake::Interval,
                    Err(source) => return Err(ImapError::Protocol { step: "IDLE", source }),
                },
                // Keep-alives reset IDLE's own timeout; the interval is a hard limit.
                _ = tokio::time::sleep(interval) => Wake::Interval,
                _ = stop.changed() => Wake::Stopped,
            };
            drop(interrupt);
            woke
        };
        self.session = Some(step(timeout, "DONE", handle.done()).await?);
        Ok(woke)
    }

    /// Logs out (best effort: the connection is closed either way).
    pub async fn logout(mut self) {
        let timeout = self.config.timeout;
        if let Some(session) = self.session.as_mut() {
            let _ = step(timeout, "LOGOUT", session.logout()).await;
        }
    }
}

fn flag_text(flag: &Flag<'_>) -> String {
    match flag {
        Flag::Seen => "\\Seen".into(),
        Flag::Answered => "\\Answered".into(),
        Flag::Flagged => "\\Flagged".into(),
        Flag::Deleted => "\\Deleted".into(),
        Flag::Draft => "\\Draft".into(),
        Flag::Recent => "\\Recent".into(),
        Flag::MayCreate => "\\*".into(),
        Flag::Custom(k) => k.to_string(),
    }
}

/// Reads the mailbox until `stop` turns true: connects, hands every new mail to `journal`
/// ([`Inbox::fetch_new`]), waits ([`Inbox::wait`]), and reconnects with backoff after an
/// error. A journal error leaves the mail unmarked; it is offered again after the poll
/// interval. Every connect, fetch and wait is reported to `report` (the IMAP part of the
/// health registry): a refused connection or STARTTLS, a failed login or a lost session as
/// a failure with its reason, a working round as a success.
pub async fn run_inbox<F, Fut, E>(
    config: ImapConfig,
    mut journal: F,
    mut stop: watch::Receiver<bool>,
    report: Reporter,
) where
    F: FnMut(ReceivedMail) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: fmt::Display,
{
    let mut backoff = RECONNECT_BACKOFF.0;
    while !*stop.borrow() {
        match Inbox::connect(config.clone()).await {
            Ok(mut inbox) => {
                backoff = RECONNECT_BACKOFF.0;
                report.succeeded();
                loop {
                    match inbox.fetch_new(&mut journal).await {
                        Ok(n) => {
                            report.succeeded();
                            if n > 0 {
                                tracing::info!(mails = n, "mails journaled");
                            }
                        }
                        Err(InboxError::Journal { uid, source }) => {
                            // The mailbox works; the store's trouble shows in /health.
                            tracing::warn!(uid, error = %source, "journaling a mail failed; it stays unmarked")
                        }
                        Err(InboxError::Imap(e)) => {
                            report.failed(&e);
                            tracing::warn!(error = %e, "IMAP failed; reconnecting");
                            break;
                        }
                    }
                    match inbox.wait(&mut stop).await {
                        Ok(Wake::Stopped) => {
                            inbox.logout().await;
                            return;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            report.failed(&e);
                            tracing::warn!(error = %e, "IMAP wait failed; reconnecting");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                report.failed(&e);
                tracing::warn!(error = %e, server = %config.server(), "IMAP connect failed")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
    }
}
