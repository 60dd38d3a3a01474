//! The daemon's configuration: a TOML file, environment overrides and defaults, checked in one
//! pass that reports every error at once.
//!
//! Pure: the file's text and a lookup for environment variables come in as arguments, so a
//! test can drive every case without touching the process environment. Reading the file,
//! printing the errors and exiting with [`exit_code_for_config_errors`] before anything binds
//! are the caller's job (`serve`); so are creating `data_dir`, connecting to the database and
//! generating an API token when none is configured.
//!
//! Precedence, per option: environment variable, then the file, then the default. Every
//! option has a default, so the gateway starts with no file at all (SQLite under `data/`, the
//! API on `127.0.0.1:8080`, the file-drop transport for every partner). The documented example
//! with every option is `deploy/mako-gateway.example.toml` ([`Config::example_toml`]).
//!
//! ```
//! use mako_gateway::config::Config;
//!
//! let file = "[api]\naddr = \"0.0.0.0:9090\"\n";
//! let env = |name: &str| (name == "MAKO_LOG_FORMAT").then(|| "json".to_string());
//! let config = Config::load(Some(file), &env).unwrap();
//! assert_eq!(config.api.addr.port(), 9090);
//! assert_eq!(config.database.url, "sqlite://data/mako-gateway.db");
//!
//! // Every error at once, each naming its key and value.
//! let errors = Config::load(Some("own_id = \"123\"\n[api]\naddr = \"localhost\"\n"), &|_| None)
//!     .unwrap_err();
//! assert_eq!(errors.len(), 2);
//! assert!(errors[0].to_string().starts_with("own_id = \"123\": "));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::{Table, Value};

use crate::ids::MarketPartnerId;
use crate::transport::email::{plaintext_allowed, TlsMode, TlsSettings};

/// Our own market partner ID when neither `own_id` nor `MAKO_OWN_ID` is set: a made-up BDEW
/// code (prefix 99, valid §8.1 check digit) that the samples and tests use as the supplier.
/// It belongs to no real market partner; production must set its own ID
/// ([`Config::uses_test_own_id`] lets `serve` warn about it).
pub const DEFAULT_OWN_ID: &str = "9900000000003";
/// Default working directory for the SQLite file and the file drop (`inbox/`, `outbox/`).
pub const DEFAULT_DATA_DIR: &str = "data";
/// The SQLite file name inside `data_dir` when `database.url` is not set.
pub const DEFAULT_SQLITE_FILE: &str = "mako-gateway.db";
/// Default API address: loopback only, so a gateway started without a config file is not
/// reachable from the network.
pub const DEFAULT_API_ADDR: &str = "127.0.0.1:8080";
/// Shortest accepted API token and webhook secret: 16 characters keep a guessed bearer token
/// or an HMAC key out of reach of brute force (a generated token is longer).
pub const MIN_SECRET_LEN: usize = 16;
/// Default pool size: enough for the API and the worker loops of one instance; PostgreSQL's
/// default `max_connections` of 100 leaves room for several instances.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;
/// Default number of inbound workers: two, so one slow message does not hold up the rest.
pub const DEFAULT_INBOUND_WORKERS: u32 = 2;
/// Default number of outbound workers: sending is quick and the file drop is local.
pub const DEFAULT_OUTBOUND_WORKERS: u32 = 1;
/// Default number of webhook workers.
pub const DEFAULT_WEBHOOK_WORKERS: u32 = 1;
/// Most workers of one kind per instance; more instances scale further.
pub const MAX_WORKERS: u32 = 64;
/// Default lease on a claimed work item: far longer than processing one message takes, short
/// enough that work of a crashed instance is taken over within a minute.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(60);
/// Default shutdown grace period in seconds; the systemd unit's `TimeoutStopSec` and the
/// compose file's `stop_grace_period` are a few seconds longer.
pub const DEFAULT_GRACE_SECONDS: u64 = 30;
/// Longest accepted grace period in seconds.
pub const MAX_GRACE_SECONDS: u32 = 3600;
/// Default HTTP timeout of one webhook delivery.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Default retry backoff: first retry after 5 s, doubling up to 1 h, parked after 10 attempts
/// (about 6 hours in all, which spans a partner's usual maintenance window).
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5);
/// See [`DEFAULT_RETRY_BASE`].
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(3600);
/// See [`DEFAULT_RETRY_BASE`].
pub const DEFAULT_RETRY_MAX_ATTEMPTS: u32 = 10;
/// Shortest accepted poll interval and lease: below this, idle instances only load the database.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest accepted poll interval.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// Default SMTP port: 25, the port of a relay on the same host or network (submission with
/// authentication usually is 587 with `tls = "starttls"`, or 465 with `tls = "tls"`).
pub const DEFAULT_SMTP_PORT: u16 = 25;
/// Default IMAP port: 143 (IMAP with STARTTLS; IMAPS, `tls = "tls"`, is 993).
pub const DEFAULT_IMAP_PORT: u16 = 143;
/// Default IMAP mailbox.
pub const DEFAULT_IMAP_MAILBOX: &str = "INBOX";

/// The statuses a partner status rule may lead to: the meter order steps that have no market
/// message (`orders::MeterStatus` `CheckSubmitted`, `CheckReviewed`, `Activated`).
pub const PARTNER_STATUSES: [&str; 3] = ["check_submitted", "check_reviewed", "activated"];

/// The environment variables that override the file, with the option each one sets.
pub const ENV_OVERRIDES: [(&str, &str); 11] = [
    ("MAKO_DATABASE_URL", "database.url"),
    ("MAKO_API_ADDR", "api.addr"),
    ("MAKO_API_TOKEN", "api.token"),
    ("MAKO_OWN_ID", "own_id"),
    ("MAKO_DATA_DIR", "data_dir"),
    ("MAKO_WEBHOOK_URL", "webhook.url"),
    ("MAKO_WEBHOOK_SECRET", "webhook.secret"),
    ("MAKO_LOG_FORMAT", "log.format"),
    ("MAKO_LOG_LEVEL", "log.level"),
    ("MAKO_SMTP_PASSWORD", "email.smtp.password"),
    ("MAKO_IMAP_PASSWORD", "email.imap.password"),
];

/// Every option of the file, as TOML paths (`partners[].id` for the keys of each array entry).
/// The example file documents each one (checked by `tests/config.rs`).
pub const OPTIONS: [&str; 71] = [
    "own_id",
    "data_dir",
    "database.url",
    "database.max_connections",
    "api.addr",
    "api.token",
    "webhook.url",
    "webhook.secret",
    "webhook.timeout",
    "workers.inbound",
    "workers.outbound",
    "workers.webhooks",
    "workers.lease",
    "shutdown.grace_seconds",
    "log.format",
    "log.level",
    "poll.file_drop",
    "poll.inbound",
    "poll.outbound",
    "poll.webhooks",
    "retry.base",
    "retry.max",
    "retry.max_attempts",
    "email.address",
    "email.signing_key",
    "email.signing_cert",
    "email.decryption_key",
    "email.decryption_cert",
    "email.smtp.host",
    "email.smtp.port",
    "email.smtp.user",
    "email.smtp.password",
    "email.smtp.hello_name",
    "email.smtp.timeout",
    "email.smtp.tls",
    "email.smtp.ca_file",
    "email.imap.host",
    "email.imap.port",
    "email.imap.user",
    "email.imap.password",
    "email.imap.mailbox",
    "email.imap.poll_interval",
    "email.imap.timeout",
    "email.imap.tls",
    "email.imap.ca_file",
    "as4.listen",
    "as4.path",
    "as4.signing_key",
    "as4.signing_cert",
    "as4.encryption_key",
    "as4.encryption_cert",
    "as4.tls_key",
    "as4.tls_cert",
    "as4.trust_anchors",
    "as4.crl_signer",
    "as4.max_message_bytes",
    "as4.max_payload_bytes",
    "as4.dedup_retention",
    "as4.connect_timeout",
    "as4.response_timeout",
    "partners[].id",
    "partners[].transport",
    "partners[].email",
    "partners[].signing_cert",
    "partners[].encryption_cert",
    "partners[].as4_url",
    "partners[].statuses",
    "partners[].statuses[].message",
    "partners[].statuses[].pid",
    "partners[].statuses[].code",
    "partners[].statuses[].status",
];

/// The exit code of `serve` when the configuration has errors: 64, `EX_USAGE` of BSD
/// `sysexits.h` ("the command was used incorrectly"), as linkerd2-proxy and other daemons use
/// it; systemd's `Restart=on-failure` then keeps retrying a unit that can never start, so the
/// unit names 64 in `RestartPreventExitStatus`.
pub fn exit_code_for_config_errors() -> u8 {
    64
}

/// The checked configuration of one gateway instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Our market partner ID (`own_id`, `MAKO_OWN_ID`): the UNB sender of what we send.
    pub own_id: MarketPartnerId,
    /// Working directory (`data_dir`, `MAKO_DATA_DIR`): the default SQLite file and the file
    /// drop (`inbox/`, `outbox/`) live here.
    pub data_dir: PathBuf,
    /// `[database]`.
    pub database: DatabaseConfig,
    /// `[api]`.
    pub api: ApiConfig,
    /// `[webhook]`: where status change events go; `None` when no URL is configured (events
    /// are then kept in the store only).
    pub webhook: Option<WebhookConfig>,
    /// `[workers]`.
    pub workers: WorkersConfig,
    /// `[shutdown]`.
    pub shutdown: ShutdownConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[poll]`.
    pub poll: PollConfig,
    /// `[retry]`: backoff of outbox items and webhook deliveries.
    pub retry: RetryConfig,
    /// `[email]`: our mail identity, SMTP and IMAP; `None` when the section is absent (no
    /// partner may then use `transport = "email"`).
    pub email: Option<EmailConfig>,
    /// `[as4]`: our AS4 identity and endpoint; `None` when the section is absent (no partner
    /// may then use `transport = "as4"`).
    pub as4: Option<As4Config>,
    /// `[[partners]]`: partners with their own settings; every other partner uses the file drop.
    pub partners: Vec<PartnerConfig>,
}

/// `[as4]`: what the AS4 transport needs of us (BDEW AS4 profile; `transport::as4`). Only
/// paths here: keys and certificates are read and checked (SM-PKI naming, key matches
/// certificate) when `serve` starts, by `daemon::as4::As4Runtime::load`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct As4Config {
    /// `as4.listen`: the address of our HTTPS receiver; `None`: we only send.
    pub listen: Option<SocketAddr>,
    /// `as4.path`: the path partners POST to (default `/as4`).
    pub path: String,
    /// `as4.signing_key` / `as4.signing_cert`: the WS-Security signature key pair
    /// (brainpoolP256r1; separate pairs for signing, encryption and TLS, BDEW AS4-Profil
    /// §2.3.4.4 as quoted by asx-rs).
    pub signing_key: PathBuf,
    /// See `signing_key`.
    pub signing_cert: PathBuf,
    /// `as4.encryption_key` / `as4.encryption_cert`: what partners encrypt to.
    pub encryption_key: PathBuf,
    /// See `encryption_key`.
    pub encryption_cert: PathBuf,
    /// `as4.tls_key` / `as4.tls_cert`: TLS server and client identity.
    pub tls_key: PathBuf,
    /// See `tls_key`.
    pub tls_cert: PathBuf,
    /// `as4.trust_anchors`: PEM files of the SM-PKI root and sub-CA certificates partners'
    /// certificates must chain to.
    pub trust_anchors: Vec<PathBuf>,
    /// `as4.crl_signer`: the certificate that signs the SM-PKI root's indirect CRL, if any.
    pub crl_signer: Option<PathBuf>,
    /// `as4.max_message_bytes`: the largest AS4 request we read (default 64 MiB).
    pub max_message_bytes: u64,
    /// `as4.max_payload_bytes`: the largest interchange we accept after decompression
    /// (default 32 MiB): a gzip bomb ends here.
    pub max_payload_bytes: u64,
    /// `as4.dedup_retention`: how long received message ids are remembered (at least 7 days,
    /// default 10 days).
    pub dedup_retention: Duration,
    /// `as4.connect_timeout` (default 5 s) and `as4.response_timeout` (default 100 s): the
    /// values of phase4's BDEW client (transport.md §1.8).
    pub connect_timeout: Duration,
    /// See `connect_timeout`.
    pub response_timeout: Duration,
}

/// The AS4 settings of one partner (`transport = "as4"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerAs4 {
    /// `as4_url`: the partner's AS4 endpoint (`https://` only, BDEW).
    pub url: String,
    /// `signing_cert`: PEM file of the certificate the partner signs with.
    pub signing_cert: PathBuf,
    /// `encryption_cert`: PEM file of the certificate we encrypt to.
    pub encryption_cert: PathBuf,
}

/// `[email]`: what the e-mail transport needs of us. Only paths here: the keys and
/// certificates are read (and checked against the partner registry) when `serve` starts, by
/// `daemon::email::EmailSetup::load`, which reports its errors like [`Config::load`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailConfig {
    /// `email.address`: our mail address (From and SMTP envelope sender).
    pub address: String,
    /// `email.signing_key`: PEM file of the private key we sign with.
    pub signing_key: PathBuf,
    /// `email.signing_cert`: PEM file of its certificate (partners verify with it).
    pub signing_cert: PathBuf,
    /// `email.decryption_key`: PEM file of the private key partners encrypt to; default the
    /// signing key.
    pub decryption_key: PathBuf,
    /// `email.decryption_cert`: its certificate; default the signing certificate.
    pub decryption_cert: PathBuf,
    /// `[email.smtp]`: where mail goes out; `None` when absent (then no partner may use
    /// e-mail).
    pub smtp: Option<SmtpSettings>,
    /// `[email.imap]`: the mailbox partners write to; `None`: nothing is read.
    pub imap: Option<ImapSettings>,
}

/// `[email.smtp]`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `user` and `password` (`MAKO_SMTP_PASSWORD`): SMTP AUTH, when both are set.
    pub credentials: Option<(String, String)>,
    /// `hello_name`: the name in EHLO; `localhost` when unset.
    pub hello_name: Option<String>,
    /// `tls` (`starttls` by default; `none` only to a loopback host) and `ca_file`.
    pub tls: TlsSettings,
    /// `timeout`: the longest wait for one SMTP step.
    pub timeout: Duration,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|c| &c.0))
            .field("hello_name", &self.hello_name)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `[email.imap]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapSettings {
    /// `host`.
    pub host: String,
    /// `port`.
    pub port: u16,
    /// `user`.
    pub user: String,
    /// `password` (`MAKO_IMAP_PASSWORD`).
    pub password: String,
    /// `mailbox`.
    pub mailbox: String,
    /// `poll_interval`: the longest time between two looks (IDLE wakes earlier).
    pub poll_interval: Duration,
    /// `tls` (`starttls` by default; `none` only to a loopback host) and `ca_file`.
    pub tls: TlsSettings,
    /// `timeout`: the longest wait for one IMAP step.
    pub timeout: Duration,
}

impl fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .field("mailbox", &self.mailbox)
            .field("poll_interval", &self.poll_interval)
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The e-mail settings of one partner (`transport = "email"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerEmail {
    /// `email`: the partner's mail address for interchanges.
    pub address: String,
    /// `signing_cert`: PEM file of the certificate the partner signs with (we verify).
    pub signing_cert: PathBuf,
    /// `encryption_cert`: PEM file of the certificate we encrypt to.
    pub encryption_cert: PathBuf,
}

/// `[database]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// `database.url`, `MAKO_DATABASE_URL`: `sqlite://PATH` or `postgres://…` /
    /// `postgresql://…`; default `sqlite://<data_dir>/mako-gateway.db`.
    pub url: String,
    /// Which database the URL names.
    pub kind: DatabaseKind,
    /// `database.max_connections`: the pool size of this instance.
    pub max_connections: u32,
}

/// The database behind `database.url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// An SQLite file (one instance).
    Sqlite,
    /// PostgreSQL (one or several instances).
    Postgres,
}

/// `[api]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// `api.addr`, `MAKO_API_ADDR`: the address the HTTP API binds.
    pub addr: SocketAddr,
    /// `api.token`, `MAKO_API_TOKEN`: the bearer token; `None` → `serve` generates one and
    /// prints it once.
    pub token: Option<String>,
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// `[webhook]`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `webhook.url`, `MAKO_WEBHOOK_URL`: `http://` or `https://`.
    pub url: String,
    /// `webhook.secret`, `MAKO_WEBHOOK_SECRET`: the HMAC-SHA256 key of `Mako-Signature`.
    pub secret: String,
    /// `webhook.timeout`: HTTP timeout of one delivery attempt.
    pub timeout: Duration,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `[workers]`: concurrent loops of this instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkersConfig {
    /// `workers.inbound`: workers processing journaled inbound interchanges.
    pub inbound: u32,
    /// `workers.outbound`: workers sending outbox items.
    pub outbound: u32,
    /// `workers.webhooks`: workers delivering webhook events.
    pub webhooks: u32,
    /// `workers.lease`: how long a claimed item stays locked to its worker; after that another
    /// worker (or instance) may take it over.
    pub lease: Duration,
}

/// `[shutdown]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownConfig {
    /// `shutdown.grace_seconds`: how long in-flight work may take after SIGTERM/SIGINT.
    pub grace: Duration,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `log.format`, `MAKO_LOG_FORMAT`.
    pub format: LogFormat,
    /// `log.level`, `MAKO_LOG_LEVEL`: a tracing filter such as `info` or
    /// `info,mako_gateway=debug,sqlx=warn`.
    pub level: String,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `[poll]`: how often idle loops look for work that arrived without a notification (files
/// dropped into the inbox, items written by another instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    /// `poll.file_drop`: scan of `data_dir/inbox/`.
    pub file_drop: Duration,
    /// `poll.inbound`: claimable journal items.
    pub inbound: Duration,
    /// `poll.outbound`: due outbox items.
    pub outbound: Duration,
    /// `poll.webhooks`: due webhook deliveries.
    pub webhooks: Duration,
}

/// `[retry]`: exponential backoff for transient errors of the outbox and webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// `retry.base`: the delay before the first retry; it doubles with each attempt.
    pub base: Duration,
    /// `retry.max`: the longest delay between two attempts.
    pub max: Duration,
    /// `retry.max_attempts`: attempts before the item is parked for an operator.
    pub max_attempts: u32,
}

/// One `[[partners]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerConfig {
    /// `id`: the partner's market partner ID.
    pub id: MarketPartnerId,
    /// `transport`: how we exchange interchanges with the partner.
    pub transport: Transport,
    /// `statuses`: the partner's own status messages that move a meter order on.
    pub statuses: Vec<PartnerStatusRule>,
    /// `email`, `signing_cert`, `encryption_cert`: set when `transport = "email"`.
    pub email: Option<PartnerEmail>,
    /// `as4_url`, `signing_cert`, `encryption_cert`: set when `transport = "as4"`.
    pub as4: Option<PartnerAs4>,
}

/// How interchanges travel to and from a partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transport {
    /// Files in `data_dir/outbox/` and `data_dir/inbox/` (default).
    File,
    /// E-mail with S/MIME: SMTP out, IMAP in (needs `[email]` and the partner's address and
    /// certificates).
    Email,
    /// AS4 per the BDEW profile (needs `[as4]` and the partner's endpoint and certificates).
    As4,
}

/// A partner-specific status message that moves a meter order to a step without a market
/// message (`check_submitted`, `check_reviewed`, `activated`). Plain data: the inbound path
/// matches the message type, PID and status code of a received message against these rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerStatusRule {
    /// The EDIFACT message type (UNH S009 0065), e.g. `IFTSTA`.
    pub message: String,
    /// The Prüfidentifikator (RFF+Z13), when the rule applies to one PID only.
    pub pid: Option<u32>,
    /// The partner's status code, e.g. `Z07`.
    pub code: String,
    /// The meter order status it means: one of [`PARTNER_STATUSES`].
    pub status: String,
}

/// Where an error was found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigKey {
    /// A key of the file, as a TOML path (`api.addr`, `partners[1].statuses[0].code`).
    File(String),
    /// An environment variable.
    Env(&'static str),
    /// A place in the file that is not valid TOML (1-based line and column).
    Syntax {
        /// Line.
        line: usize,
        /// Column (in characters).
        column: usize,
    },
}

impl fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigKey::File(path) => f.write_str(path),
            ConfigKey::Env(name) => f.write_str(name),
            ConfigKey::Syntax { line, column } => {
                write!(f, "config file line {line}, column {column}")
            }
        }
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// The file is not valid TOML.
    Syntax {
        /// The TOML parser's message.
        message: String,
    },
    /// The key is not an option (a typo, or an option of another section).
    UnknownKey {
        /// The options allowed at this place.
        known: Vec<&'static str>,
    },
    /// The value has the wrong TOML type.
    WrongType {
        /// The type the option takes.
        expected: &'static str,
        /// The type found.
        found: &'static str,
    },
    /// The value has the right type but is not allowed.
    Invalid {
        /// Why.
        reason: String,
    },
    /// A required key is missing.
    Missing {
        /// Why it is required.
        reason: &'static str,
    },
    /// The value names something that is not built yet.
    NotAvailableYet {
        /// The issue that builds it.
        issue: u32,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Syntax { message } => write!(f, "not valid TOML: {message}"),
            Problem::UnknownKey { known } => {
                write!(f, "unknown key (known here: {})", known.join(", "))
            }
            Problem::WrongType { expected, found } => {
                write!(f, "expected {expected}, found {found}")
            }
            Problem::Invalid { reason } => f.write_str(reason),
            Problem::Missing { reason } => write!(f, "missing: {reason}"),
            Problem::NotAvailableYet { issue } => write!(f, "not available yet (issue {issue})"),
        }
    }
}

/// One configuration error: the key, the value as written and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The TOML path or environment variable.
    pub key: ConfigKey,
    /// The value as written (TOML strings quoted); secrets are shown as `<hidden>` and the
    /// password of a database URL as `***`. `None` for a missing key or a syntax error.
    pub value: Option<String>,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.value) {
            (ConfigKey::Env(name), Some(value)) => write!(f, "{name}={value}")?,
            (key, Some(value)) => write!(f, "{key} = {value}")?,
            (key, None) => write!(f, "{key}")?,
        }
        write!(f, ": {}", self.problem)
    }
}

impl Config {
    /// Reads the configuration from the file's text (`None`: no file) and the environment
    /// (`env` returns a variable's value; an empty value counts as unset, as `VAR=` in
    /// compose files and systemd units usually means "not configured").
    ///
    /// Returns every error of the file and the environment at once, in the order of the
    /// options; a value overridden by the environment is still checked.
    pub fn load(
        file_text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Vec<ConfigError>> {
        let mut r = Reader {
            errors: Vec::new(),
            env,
        };
        let mut root = match file_text {
            None => Table::new(),
            Some(text) => match text.parse::<Table>() {
                Ok(table) => table,
                Err(e) => {
                    let (line, column) = e
                        .span()
                        .map(|span| line_column(text, span.start))
                        .unwrap_or((1, 1));
                    r.errors.push(ConfigError {
                        key: ConfigKey::Syntax { line, column },
                        value: None,
                        problem: Problem::Syntax {
                            message: e.message().trim().to_string(),
                        },
                    });
                    Table::new()
                }
            },
        };
        let root_keys = &[
            "own_id", "data_dir", "database", "api", "webhook", "workers", "shutdown", "log",
            "poll", "retry", "email", "as4", "partners",
        ];

        let own_id = r
            .setting(
                &mut root,
                "",
                "own_id",
                "MAKO_OWN_ID",
                parse_market_partner_id,
            )
            .unwrap_or_else(|| {
                DEFAULT_OWN_ID
                    .parse()
                    .expect("DEFAULT_OWN_ID has a valid check digit")
            });
        let data_dir = r
            .setting(&mut root, "", "data_dir", "MAKO_DATA_DIR", |s| {
                if s.trim().is_empty() {
                    Err("must not be empty".to_string())
                } else {
                    Ok(PathBuf::from(s))
                }
            })
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));

        let mut t = r.table(&mut root, "", "database");
        let database = {
            let url = r.setting(
                &mut t,
                "database",
                "url",
                "MAKO_DATABASE_URL",
                parse_database_url,
            );
            let (url, kind) = url.unwrap_or_else(|| {
                let path = data_dir.join(DEFAULT_SQLITE_FILE);
                (format!("sqlite://{}", path.display()), DatabaseKind::Sqlite)
            });
            DatabaseConfig {
                url,
                kind,
                max_connections: r
                    .integer(&mut t, "database", "max_connections", 1, 1000)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            }
        };
        r.unknown_keys(t, "database", &["url", "max_connections"]);

        let mut t = r.table(&mut root, "", "api");
        let api = ApiConfig {
            addr: r
                .setting(&mut t, "api", "addr", "MAKO_API_ADDR", parse_socket_addr)
                .unwrap_or_else(|| DEFAULT_API_ADDR.parse().expect("DEFAULT_API_ADDR is valid")),
            token: r.setting(&mut t, "api", "token", "MAKO_API_TOKEN", parse_secret),
        };
        r.unknown_keys(t, "api", &["addr", "token"]);

        let mut t = r.table(&mut root, "", "webhook");
        let webhook = {
            let url = r.setting(&mut t, "webhook", "url", "MAKO_WEBHOOK_URL", parse_http_url);
            let secret = r.setting(
                &mut t,
                "webhook",
                "secret",
                "MAKO_WEBHOOK_SECRET",
                parse_secret,
            );
            let timeout = r
                .duration(
                    &mut t,
                    "webhook",
                    "timeout",
                    MIN_INTERVAL,
                    MAX_POLL_INTERVAL,
                )
                .unwrap_or(DEFAULT_WEBHOOK_TIMEOUT);
            // A URL and secret that are present but invalid were reported already; only a
            // missing partner is reported here.
            let url_written = reported(&r, "webhook.url", "MAKO_WEBHOOK_URL");
            let secret_written = reported(&r, "webhook.secret", "MAKO_WEBHOOK_SECRET");
            match (url, secret) {
                (Some(url), Some(secret)) => Some(WebhookConfig {
                    url,
                    secret,
                    timeout,
                }),
                (Some(_), None) if !secret_written => {
                    r.errors.push(ConfigError {
                        key: ConfigKey::File("webhook.secret".into()),
                        value: None,
                        problem: Problem::Missing {
                            reason: "webhook.url is set, so events are signed with \
                                     webhook.secret (or MAKO_WEBHOOK_SECRET)",
                        },
                    });
                    None
                }
                (None, Some(_)) if !url_written => {
                    r.errors.push(ConfigError {
                        key: ConfigKey::File("webhook.url".into()),
                        value: None,
                        problem: Problem::Missing {
                            reason: "webhook.secret is set but there is no webhook.url \
                                     (or MAKO_WEBHOOK_URL) to send events to",
                        },
                    });
                    None
                }
                _ => None,
            }
        };
        r.unknown_keys(t, "webhook", &["url", "secret", "timeout"]);

        let mut t = r.table(&mut root, "", "workers");
        let workers = WorkersConfig {
            inbound: r
                .integer(&mut t, "workers", "inbound", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_INBOUND_WORKERS),
            outbound: r
                .integer(&mut t, "workers", "outbound", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_OUTBOUND_WORKERS),
            webhooks: r
                .integer(&mut t, "workers", "webhooks", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_WEBHOOK_WORKERS),
            lease: r
                .duration(
                    &mut t,
                    "workers",
                    "lease",
                    Duration::from_secs(1),
                    Duration::from_secs(86_400),
                )
                .unwrap_or(DEFAULT_LEASE),
        };
        r.unknown_keys(t, "workers", &["inbound", "outbound", "webhooks", "lease"]);

        let mut t = r.table(&mut root, "", "shutdown");
        let shutdown = ShutdownConfig {
            grace: Duration::from_secs(
                r.integer(&mut t, "shutdown", "grace_seconds", 1, MAX_GRACE_SECONDS)
                    .map_or(DEFAULT_GRACE_SECONDS, u64::from),
            ),
        };
        r.unknown_keys(t, "shutdown", &["grace_seconds"]);

        let mut t = r.table(&mut root, "", "log");
        let log = LogConfig {
            format: r
                .setting(&mut t, "log", "format", "MAKO_LOG_FORMAT", |s| match s {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("must be \"text\" or \"json\"".to_string()),
                })
                .unwrap_or(LogFormat::Text),
            level: r
                .setting(&mut t, "log", "level", "MAKO_LOG_LEVEL", parse_log_filter)
                .unwrap_or_else(|| "info".to_string()),
        };
        r.unknown_keys(t, "log", &["format", "level"]);

        let mut t = r.table(&mut root, "", "poll");
        let mut poll_interval = |r: &mut Reader<'_>, key: &str, default: Duration| {
            r.duration(&mut t, "poll", key, MIN_INTERVAL, MAX_POLL_INTERVAL)
                .unwrap_or(default)
        };
        let poll = PollConfig {
            file_drop: poll_interval(&mut r, "file_drop", Duration::from_secs(1)),
            inbound: poll_interval(&mut r, "inbound", Duration::from_millis(500)),
            outbound: poll_interval(&mut r, "outbound", Duration::from_millis(500)),
            webhooks: poll_interval(&mut r, "webhooks", Duration::from_secs(1)),
        };
        r.unknown_keys(t, "poll", &["file_drop", "inbound", "outbound", "webhooks"]);

        let mut t = r.table(&mut root, "", "retry");
        let retry = {
            let week = Duration::from_secs(7 * 86_400);
            let base = r.duration(&mut t, "retry", "base", MIN_INTERVAL, week);
            let max_written = t.get("max").map(render_value);
            let max = r.duration(&mut t, "retry", "max", MIN_INTERVAL, week);
            let base = base.unwrap_or(DEFAULT_RETRY_BASE);
            let max = max.unwrap_or(DEFAULT_RETRY_MAX);
            if max < base {
                r.errors.push(ConfigError {
                    key: ConfigKey::File("retry.max".into()),
                    value: max_written.or_else(|| Some(format!("{max:?} (default)"))),
                    problem: Problem::Invalid {
                        reason: format!("must not be shorter than retry.base ({base:?})"),
                    },
                });
            }
            RetryConfig {
                base,
                max,
                max_attempts: r
                    .integer(&mut t, "retry", "max_attempts", 1, 1000)
                    .unwrap_or(DEFAULT_RETRY_MAX_ATTEMPTS),
            }
        };
        r.unknown_keys(t, "retry", &["base", "max", "max_attempts"]);

        let email = r.email(&mut root);
        let as4 = r.as4(&mut root);
        let partners = r.partners(&mut root);
        if as4.is_none()
            && partners.iter().any(|p| p.transport == Transport::As4)
            && !reported(&r, "as4.signing_key", "")
        {
            r.push(
                "as4".into(),
                None,
                Problem::Missing {
                    reason: "a partner uses transport = \"as4\", so [as4] says who we are \
                             (keys, certificates, SM-PKI trust anchors)",
                },
            );
        }
        if email.as_ref().and_then(|e| e.smtp.as_ref()).is_none()
            && partners.iter().any(|p| p.transport == Transport::Email)
            && !reported(&r, "email.smtp.host", "")
        {
            r.push(
                "email.smtp.host".into(),
                None,
                Problem::Missing {
                    reason: "a partner uses transport = \"email\", so [email] and \
                             [email.smtp] say who we are and where mail goes out",
                },
            );
        }
        r.unknown_keys(root, "", root_keys);

        if r.errors.is_empty() {
            Ok(Config {
                own_id,
                data_dir,
                database,
                api,
                webhook,
                workers,
                shutdown,
                log,
                poll,
                retry,
                email,
                as4,
                partners,
            })
        } else {
            Err(r.errors)
        }
    }

    /// The documented example configuration, `deploy/mako-gateway.example.toml`, embedded in
    /// the binary (it loads without errors: `tests/config.rs`).
    pub fn example_toml() -> &'static str {
        include_str!("../deploy/mako-gateway.example.toml")
    }

    /// Where the file drop picks up inbound interchanges: `data_dir/inbox/`.
    pub fn inbox_dir(&self) -> PathBuf {
        self.data_dir.join("inbox")
    }

    /// Where the file drop writes outbound interchanges: `data_dir/outbox/`.
    pub fn outbox_dir(&self) -> PathBuf {
        self.data_dir.join("outbox")
    }

    /// The `[[partners]]` entry of a partner, if it has one.
    pub fn partner(&self, id: &MarketPartnerId) -> Option<&PartnerConfig> {
        self.partners.iter().find(|p| &p.id == id)
    }

    /// How to exchange interchanges with a partner: its configured transport, otherwise the
    /// file drop.
    pub fn transport_for(&self, id: &MarketPartnerId) -> Transport {
        self.partner(id).map_or(Transport::File, |p| p.transport)
    }

    /// Whether `own_id` is still the made-up [`DEFAULT_OWN_ID`] (fine for tests, wrong in
    /// production: `serve` should warn).
    pub fn uses_test_own_id(&self) -> bool {
        self.own_id.as_str() == DEFAULT_OWN_ID
    }
}

/// Whether an error about a file key or its environment variable was already reported (used
/// to avoid reporting "missing" for a value that is present but invalid).
fn reported(r: &Reader<'_>, path: &str, var: &str) -> bool {
    r.errors.iter().any(|e| match &e.key {
        ConfigKey::File(p) => p == path,
        ConfigKey::Env(v) => *v == var,
        ConfigKey::Syntax { .. } => false,
    })
}

/// Collects the errors while the options are taken out of the parsed file one by one; what is
/// left in a table afterwards is an unknown key.
struct Reader<'e> {
    errors: Vec<ConfigError>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    fn push(&mut self, path: String, value: Option<String>, problem: Problem) {
        self.errors.push(ConfigError {
            key: ConfigKey::File(path),
            value,
            problem,
        });
    }

    fn wrong_type(&mut self, path: String, value: &Value, expected: &'static str) {
        self.push(
            path,
            Some(render_value(value)),
            Problem::WrongType {
                expected,
                found: value.type_str(),
            },
        );
    }

    /// Takes the table `key` out of `parent` (an empty one when it is absent or has the wrong
    /// type, which is reported).
    fn table(&mut self, parent: &mut Table, prefix: &str, key: &str) -> Table {
        match parent.remove(key) {
            None => Table::new(),
            Some(Value::Table(t)) => t,
            Some(other) => {
                self.wrong_type(join(prefix, key), &other, "a table");
                Table::new()
            }
        }
    }

    /// Reports every key left in `table`.
    fn unknown_keys(&mut self, table: Table, prefix: &str, known: &[&'static str]) {
        for (key, value) in table {
            self.push(
                join(prefix, &key),
                Some(render_value(&value)),
                Problem::UnknownKey {
                    known: known.to_vec(),
                },
            );
        }
    }

    /// A string option that an environment variable may override: the file's value is
    /// checked even when the variable replaces it.
    fn setting<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        var: &'static str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let path = join(prefix, key);
        let from_file = self.string(table, prefix, key).and_then(|s| {
            parse(&s)
                .map_err(|reason| {
                    let value = Some(render_secret_aware(&path, &format!("{s:?}"), &s));
                    self.push(path.clone(), value, Problem::Invalid { reason });
                })
                .ok()
        });
        match (self.env)(var).filter(|v| !v.is_empty()) {
            None => from_file,
            Some(s) => match parse(&s) {
                Ok(value) => Some(value),
                Err(reason) => {
                    self.errors.push(ConfigError {
                        key: ConfigKey::Env(var),
                        value: Some(render_secret_aware(var, &format!("{s:?}"), &s)),
                        problem: Problem::Invalid { reason },
                    });
                    None
                }
            },
        }
    }

    fn string(&mut self, table: &mut Table, prefix: &str, key: &str) -> Option<String> {
        match table.remove(key)? {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(join(prefix, key), &other, "a string");
                None
            }
        }
    }

    fn integer<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        min: T,
        max: T,
    ) -> Option<T>
    where
        T: TryFrom<i64> + Into<i64> + Copy + fmt::Display,
    {
        let path = join(prefix, key);
        match table.remove(key)? {
            Value::Integer(i) if i >= min.into() && i <= max.into() => T::try_from(i).ok(),
            Value::Integer(i) => {
                self.push(
                    path,
                    Some(i.to_string()),
                    Problem::Invalid {
                        reason: format!("must be between {min} and {max}"),
                    },
                );
                None
            }
            other => {
                self.wrong_type(path, &other, "an integer");
                None
            }
        }
    }

    fn duration(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let path = join(prefix, key);
        match table.remove(key)? {
            Value::String(s) => match parse_duration(&s) {
                Ok(d) if d >= min && d <= max => Some(d),
                Ok(_) => {
                    self.push(
                        path,
                        Some(format!("{s:?}")),
                        Problem::Invalid {
                            reason: format!("must be between {min:?} and {max:?}"),
                        },
                    );
                    None
                }
                Err(reason) => {
                    self.push(path, Some(format!("{s:?}")), Problem::Invalid { reason });
                    None
                }
            },
            other => {
                self.wrong_type(
                    path,
                    &other,
                    "a duration string such as \"500ms\", \"5s\", \"10m\" or \"1h\"",
                );
                None
            }
        }
    }

    fn partners(&mut self, root: &mut Table) -> Vec<PartnerConfig> {
        let entries = match root.remove("partners") {
            None => return Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(other) => {
                self.wrong_type(
                    "partners".into(),
                    &other,
                    "an array of tables ([[partners]])",
                );
                return Vec::new();
            }
        };
        let mut partners: Vec<PartnerConfig> = Vec::new();
        let mut first_index: BTreeMap<String, usize> = BTreeMap::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let prefix = format!("partners[{i}]");
            let mut t = match entry {
                Value::Table(t) => t,
                other => {
                    self.wrong_type(prefix, &other, "a table");
                    continue;
                }
            };
            let id_path = join(&prefix, "id");
            let id_written = t.contains_key("id");
            let id = match self.string(&mut t, &prefix, "id") {
                None if !id_written => {
                    self.push(
                        id_path.clone(),
                        None,
                        Problem::Missing {
                            reason: "every [[partners]] entry names its market partner ID",
                        },
                    );
                    None
                }
                None => None,
                Some(s) => match parse_market_partner_id(&s) {
                    Ok(id) => {
                        if let Some(first) = first_index.get(id.as_str()) {
                            self.push(
                                id_path.clone(),
                                Some(format!("{s:?}")),
                                Problem::Invalid {
                                    reason: format!("already configured in partners[{first}]"),
                                },
                            );
                        } else {
                            first_index.insert(id.as_str().to_string(), i);
                        }
                        Some(id)
                    }
                    Err(reason) => {
                        self.push(
                            id_path.clone(),
                            Some(format!("{s:?}")),
                            Problem::Invalid { reason },
                        );
                        None
                    }
                },
            };
            let transport_path = join(&prefix, "transport");
            let transport = match self.string(&mut t, &prefix, "transport").as_deref() {
                None | Some("file") => Some(Transport::File),
                Some("email") => Some(Transport::Email),
                Some("as4") => Some(Transport::As4),
                Some(other) => {
                    self.push(
                        transport_path,
                        Some(format!("{other:?}")),
                        Problem::Invalid {
                            reason: "must be \"file\", \"email\" or \"as4\"".into(),
                        },
                    );
                    None
                }
            };
            let statuses = self.status_rules(&mut t, &prefix);
            let email = self.partner_email(&mut t, &prefix, transport);
            let as4 = self.partner_as4(&mut t, &prefix, transport);
            self.unknown_keys(
                t,
                &prefix,
                &[
                    "id",
                    "transport",
                    "statuses",
                    "email",
                    "signing_cert",
                    "encryption_cert",
                    "as4_url",
                ],
            );
            if let (Some(id), Some(transport)) = (id, transport) {
                partners.push(PartnerConfig {
                    id,
                    transport,
                    statuses,
                    email,
                    as4,
                });
            }
        }
        partners
    }

    /// A string option that must not be empty, parsed by `parse`; reported when invalid.
    fn checked<T>(
        &mut self,
        table: &mut Table,
        prefix: &str,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let path = join(prefix, key);
        let s = self.string(table, prefix, key)?;
        match parse(&s) {
            Ok(v) => Some(v),
            Err(reason) => {
                let value = Some(render_secret_aware(&path, &format!("{s:?}"), &s));
                self.push(path, value, Problem::Invalid { reason });
                None
            }
        }
    }

    /// Reports `prefix.key` as missing unless an error about it was reported already.
    fn require<T>(&mut self, value: Option<T>, path: String, reason: &'static str) -> Option<T> {
        if value.is_none()
            && !self
                .errors
                .iter()
                .any(|e| e.key == ConfigKey::File(path.clone()))
        {
            self.push(path, None, Problem::Missing { reason });
        }
        value
    }

    /// `tls` and `ca_file` of `[email.smtp]` or `[email.imap]` (`p`): `starttls` when unset;
    /// `none` is refused unless `host` is loopback (passwords would go in clear).
    fn tls(&mut self, s: &mut Table, p: &str, host: Option<&str>) -> TlsSettings {
        let mode = self
            .checked(s, p, "tls", |v| v.parse::<TlsMode>())
            .unwrap_or_default();
        if mode == TlsMode::None {
            if let Some(host) = host.filter(|h| !plaintext_allowed(h)) {
                self.push(
                    join(p, "tls"),
                    Some("\"none\"".into()),
                    Problem::Invalid {
                        reason: format!(
                            "\"none\" sends the password and the mail in clear, so it is \
                             allowed only when host is a loopback address (127.0.0.1, ::1, \
                             localhost), not {host:?}; use \"starttls\" or \"tls\""
                        ),
                    },
                );
            }
        }
        let ca_file = self.checked(s, p, "ca_file", parse_path);
        if ca_file.is_some() && mode == TlsMode::None {
            self.push(
                join(p, "ca_file"),
                None,
                Problem::Invalid {
                    reason: "a CA file is for TLS, but tls = \"none\"".into(),
                },
            );
        }
        TlsSettings { mode, ca_file }
    }

    fn email(&mut self, root: &mut Table) -> Option<EmailConfig> {
        if !root.contains_key("email") {
            return None;
        }
        let mut t = self.table(root, "", "email");
        let p = "email";
        let address = self.checked(&mut t, p, "address", parse_mail_address);
        let signing_key = self.checked(&mut t, p, "signing_key", parse_path);
        let signing_cert = self.checked(&mut t, p, "signing_cert", parse_path);
        let decryption_key = self.checked(&mut t, p, "decryption_key", parse_path);
        let decryption_cert = self.checked(&mut t, p, "decryption_cert", parse_path);
        let address = self.require(
            address,
            "email.address".into(),
            "[email] names our mail address",
        );
        let signing_key = self.require(
            signing_key,
            "email.signing_key".into(),
            "[email] names the PEM file of the key we sign with",
        );
        let signing_cert = self.require(
            signing_cert,
            "email.signing_cert".into(),
            "[email] names the PEM file of our signing certificate",
        );
        if decryption_key.is_some() != decryption_cert.is_some() {
            let missing = if decryption_key.is_some() {
                "email.decryption_cert"
            } else {
                "email.decryption_key"
            };
            self.push(
                missing.into(),
                None,
                Problem::Missing {
                    reason: "decryption_key and decryption_cert come together \
                             (leave both out to decrypt with the signing key)",
                },
            );
        }
        let smtp = if t.contains_key("smtp") {
            let mut s = self.table(&mut t, p, "smtp");
            let p = "email.smtp";
            let host = self.checked(&mut s, p, "host", parse_host);
            let host = self.require(
                host,
                "email.smtp.host".into(),
                "[email.smtp] names the SMTP server",
            );
            let port = self
                .integer::<u16>(&mut s, p, "port", 1, u16::MAX)
                .unwrap_or(DEFAULT_SMTP_PORT);
            let user = self.checked(&mut s, p, "user", parse_non_empty);
            let password =
                self.setting(&mut s, p, "password", "MAKO_SMTP_PASSWORD", parse_non_empty);
            let hello_name = self.checked(&mut s, p, "hello_name", parse_host);
            let timeout = self
                .duration(
                    &mut s,
                    p,
                    "timeout",
                    Duration::from_secs(1),
                    MAX_POLL_INTERVAL,
                )
                .unwrap_or(crate::transport::email::DEFAULT_TIMEOUT);
            let tls = self.tls(&mut s, p, host.as_deref());
            let credentials = match (user, password) {
                (Some(u), Some(pw)) => Some((u, pw)),
                (None, None) => None,
                (u, _) => {
                    let missing = if u.is_some() {
                        "email.smtp.password"
                    } else {
                        "email.smtp.user"
                    };
                    if !self
                        .errors
                        .iter()
                        .any(|e| e.key == ConfigKey::File(missing.into()))
                    {
                        self.push(
                            missing.into(),
                            None,
                            Problem::Missing {
                                reason: "SMTP AUTH takes user and password (MAKO_SMTP_PASSWORD) together",
                            },
                        );
                    }
                    None
                }
            };
            self.unknown_keys(
                s,
                p,
                &[
                    "host",
                    "port",
                    "user",
                    "password",
                    "hello_name",
                    "timeout",
                    "tls",
                    "ca_file",
                ],
            );
            host.map(|host| SmtpSettings {
                host,
                port,
                credentials,
                hello_name,
                tls,
                timeout,
            })
        } else {
            None
        };
        let imap = if t.contains_key("imap") {
            let mut s = self.table(&mut t, p, "imap");
            let p = "email.imap";
            let host = self.checked(&mut s, p, "host", parse_host);
            let host = self.require(
                host,
                "email.imap.host".into(),
                "[email.imap] names the IMAP server",
            );
            let port = self
                .integer::<u16>(&mut s, p, "port", 1, u16::MAX)
                .unwrap_or(DEFAULT_IMAP_PORT);
            let user = self.checked(&mut s, p, "user", parse_non_empty);
            let user = self.require(
                user,
                "email.imap.user".into(),
                "[email.imap] names the login",
            );
            let password =
                self.setting(&mut s, p, "password", "MAKO_IMAP_PASSWORD", parse_non_empty);
            let password_set = reported(self, "email.imap.password", "MAKO_IMAP_PASSWORD");
            let password = if password.is_none() && !password_set {
                self.require(
                    password,
                    "email.imap.password".into(),
                    "[email.imap] needs the password (or MAKO_IMAP_PASSWORD)",
                )
            } else {
                password
            };
            let mailbox = self
                .checked(&mut s, p, "mailbox", parse_non_empty)
                .unwrap_or_else(|| DEFAULT_IMAP_MAILBOX.to_string());
            let poll_interval = self
                .duration(&mut s, p, "poll_interval", MIN_INTERVAL, MAX_POLL_INTERVAL)
                .unwrap_or(crate::transport::email::DEFAULT_POLL_INTERVAL);
            let timeout = self
                .duration(
                    &mut s,
                    p,
                    "timeout",
                    Duration::from_secs(1),
                    MAX_POLL_INTERVAL,
                )
                .unwrap_or(crate::transport::email::DEFAULT_TIMEOUT);
            let tls = self.tls(&mut s, p, host.as_deref());
            self.unknown_keys(
                s,
                p,
                &[
                    "host",
                    "port",
                    "user",
                    "password",
                    "mailbox",
                    "poll_interval",
                    "timeout",
                    "tls",
                    "ca_file",
                ],
            );
            match (host, user, password) {
                (Some(host), Some(user), Some(password)) => Some(ImapSettings {
                    host,
                    port,
                    user,
                    password,
                    mailbox,
                    poll_interval,
                    tls,
                    timeout,
                }),
                _ => None,
            }
        } else {
            None
        };
        self.unknown_keys(
            t,
            p,
            &[
                "address",
                "signing_key",
                "signing_cert",
                "decryption_key",
                "decryption_cert",
                "smtp",
                "imap",
            ],
        );
        let (address, signing_key, signing_cert) = (address?, signing_key?, signing_cert?);
        Some(EmailConfig {
            address,
            decryption_key: decryption_key.unwrap_or_else(|| signing_key.clone()),
            decryption_cert: decryption_cert.unwrap_or_else(|| signing_cert.clone()),
            signing_key,
            signing_cert,
            smtp,
            imap,
        })
    }

    /// `email`, `signing_cert` and `encryption_cert` of a partner: required with
    /// `transport = "email"`, refused with any other transport (they would be silently unused).
    fn partner_email(
        &mut self,
        t: &mut Table,
        prefix: &str,
        transport: Option<Transport>,
    ) -> Option<PartnerEmail> {
        // `signing_cert` and `encryption_cert` are shared with AS4 (read by `partner_as4`).
        let own: &[&str] = if transport == Some(Transport::As4) {
            &["email"]
        } else {
            &["email", "signing_cert", "encryption_cert"]
        };
        let written: Vec<&str> = own.iter().copied().filter(|k| t.contains_key(*k)).collect();
        if transport != Some(Transport::Email) {
            if transport.is_some() {
                for key in written {
                    let value = t.remove(key).map(|v| render_value(&v));
                    self.push(
                        join(prefix, key),
                        value,
                        Problem::Invalid {
                            reason: "only used with transport = \"email\"".into(),
                        },
                    );
                }
            } else {
                for key in written {
                    t.remove(key);
                }
            }
            return None;
        }
        let address = self.checked(t, prefix, "email", parse_mail_address);
        let signing_cert = self.checked(t, prefix, "signing_cert", parse_path);
        let encryption_cert = self.checked(t, prefix, "encryption_cert", parse_path);
        let address = self.require(
            address,
            join(prefix, "email"),
            "transport = \"email\" needs the partner's mail address",
        );
        let signing_cert = self.require(
            signing_cert,
            join(prefix, "signing_cert"),
            "transport = \"email\" needs the PEM file of the certificate the partner signs with",
        );
        let encryption_cert = self.require(
            encryption_cert,
            join(prefix, "encryption_cert"),
            "transport = \"email\" needs the PEM file of the certificate we encrypt to",
        );
        Some(PartnerEmail {
            address: address?,
            signing_cert: signing_cert?,
            encryption_cert: encryption_cert?,
        })
    }

    /// `as4_url`, `signing_cert` and `encryption_cert` of a partner: required with
    /// `transport = "as4"`; `as4_url` is refused with any other transport.
    fn partner_as4(
        &mut self,
        t: &mut Table,
        prefix: &str,
        transport: Option<Transport>,
    ) -> Option<PartnerAs4> {
        if transport != Some(Transport::As4) {
            if let Some(value) = t.remove("as4_url") {
                if transport.is_some() {
                    self.push(
                        join(prefix, "as4_url"),
                        Some(render_value(&value)),
                        Problem::Invalid {
                            reason: "only used with transport = \"as4\"".into(),
                        },
                    );
                }
            }
            return None;
        }
        let url = self.checked(t, prefix, "as4_url", parse_https_url);
        let signing_cert = self.checked(t, prefix, "signing_cert", parse_path);
        let encryption_cert = self.checked(t, prefix, "encryption_cert", parse_path);
        let url = self.require(
            url,
            join(prefix, "as4_url"),
            "transport = \"as4\" needs the partner's AS4 endpoint (https://…)",
        );
        let signing_cert = self.require(
            signing_cert,
            join(prefix, "signing_cert"),
            "transport = \"as4\" needs the PEM file of the certificate the partner signs with",
        );
        let encryption_cert = self.require(
            encryption_cert,
            join(prefix, "encryption_cert"),
            "transport = \"as4\" needs the PEM file of the certificate we encrypt to",
        );
        Some(PartnerAs4 {
            url: url?,
            signing_cert: signing_cert?,
            encryption_cert: encryption_cert?,
        })
    }

    /// `[as4]`.
    fn as4(&mut self, root: &mut Table) -> Option<As4Config> {
        if !root.contains_key("as4") {
            return None;
        }
        let mut t = self.table(root, "", "as4");
        let p = "as4";
        let listen = self.checked(&mut t, p, "listen", parse_socket_addr);
        let path = self
            .checked(&mut t, p, "path", |s| {
                if s.starts_with('/') && !s.contains(char::is_whitespace) {
                    Ok(s.to_string())
                } else {
                    Err("must be a path starting with /".to_string())
                }
            })
            .unwrap_or_else(|| "/as4".to_string());
        let file = |r: &mut Reader<'_>, t: &mut Table, key: &str, what: &'static str| {
            let v = r.checked(t, p, key, parse_path);
            r.require(v, format!("as4.{key}"), what)
        };
        let signing_key = file(
            self,
            &mut t,
            "signing_key",
            "[as4] names the PEM file of the key we sign with",
        );
        let signing_cert = file(
            self,
            &mut t,
            "signing_cert",
            "[as4] names the PEM file of our signing certificate",
        );
        let encryption_key = file(
            self,
            &mut t,
            "encryption_key",
            "[as4] names the PEM file of the key partners encrypt to",
        );
        let encryption_cert = file(
            self,
            &mut t,
            "encryption_cert",
            "[as4] names the PEM file of our encryption certificate",
        );
        let tls_key = file(
            self,
            &mut t,
            "tls_key",
            "[as4] names the PEM file of our TLS key",
        );
        let tls_cert = file(
            self,
            &mut t,
            "tls_cert",
            "[as4] names the PEM file of our TLS certificate",
        );
        let trust_anchors = match t.remove("trust_anchors") {
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => match parse_path(&s) {
                            Ok(path) => out.push(path),
                            Err(reason) => self.push(
                                format!("as4.trust_anchors[{i}]"),
                                Some(format!("{s:?}")),
                                Problem::Invalid { reason },
                            ),
                        },
                        other => {
                            self.wrong_type(format!("as4.trust_anchors[{i}]"), &other, "a string")
                        }
                    }
                }
                Some(out)
            }
            Some(other @ Value::Array(_)) | Some(other) => {
                self.wrong_type(
                    "as4.trust_anchors".into(),
                    &other,
                    "a non-empty array of PEM file paths",
                );
                None
            }
            None => {
                self.push(
                    "as4.trust_anchors".into(),
                    None,
                    Problem::Missing {
                        reason: "[as4] names the SM-PKI CA certificates partners' certificates chain to",
                    },
                );
                None
            }
        };
        let crl_signer = self.checked(&mut t, p, "crl_signer", parse_path);
        let mib = 1024 * 1024;
        let max_message_bytes = self
            .integer(&mut t, p, "max_message_bytes", 64 * 1024_i64, 256 * mib)
            .unwrap_or(64 * mib) as u64;
        let max_payload_bytes = self
            .integer(&mut t, p, "max_payload_bytes", 64 * 1024_i64, 128 * mib)
            .unwrap_or(32 * mib) as u64;
        let day = Duration::from_secs(86_400);
        let dedup_retention = self
            .duration(&mut t, p, "dedup_retention", 7 * day, 365 * day)
            .unwrap_or(10 * day);
        let connect_timeout = self
            .duration(
                &mut t,
                p,
                "connect_timeout",
                MIN_INTERVAL,
                Duration::from_secs(600),
            )
            .unwrap_or(Duration::from_secs(5));
        let response_timeout = self
            .duration(
                &mut t,
                p,
                "response_timeout",
                MIN_INTERVAL,
                Duration::from_secs(3600),
            )
            .unwrap_or(Duration::from_secs(100));
        self.unknown_keys(
            t,
            p,
            &[
                "listen",
                "path",
                "signing_key",
                "signing_cert",
                "encryption_key",
                "encryption_cert",
                "tls_key",
                "tls_cert",
                "trust_anchors",
                "crl_signer",
                "max_message_bytes",
                "max_payload_bytes",
                "dedup_retention",
                "connect_timeout",
                "response_timeout",
            ],
        );
        Some(As4Config {
            listen,
            path,
            signing_key: signing_key?,
            signing_cert: signing_cert?,
            encryption_key: encryption_key?,
            encryption_cert: encryption_cert?,
            tls_key: tls_key?,
            tls_cert: tls_cert?,
            trust_anchors: trust_anchors?,
            crl_signer,
            max_message_bytes,
            max_payload_bytes,
            dedup_retention,
            connect_timeout,
            response_timeout,
        })
    }

    fn status_rules(&mut self, partner: &mut Table, prefix: &str) -> Vec<PartnerStatusRule> {
        let rules = match partner.remove("statuses") {
            None => return Vec::new(),
            Some(Value::Array(rules)) => rules,
            Some(other) => {
                self.wrong_type(join(prefix, "statuses"), &other, "an array of tables");
                return Vec::new();
            }
        };
        let mut out: Vec<PartnerStatusRule> = Vec::new();
        for (i, rule) in rules.into_iter().enumerate() {
            let prefix = format!("{prefix}.statuses[{i}]");
            let mut t = match rule {
                Value::Table(t) => t,
                other => {
                    self.wrong_type(prefix, &other, "a table {message, pid, code, status}");
                    continue;
                }
            };
            let mut required = |r: &mut Self, key: &str, check: fn(&str) -> Result<(), String>| {
                let path = join(&prefix, key);
                let had_error = r.errors.len();
                match r.string(&mut t, &prefix, key) {
                    Some(s) => match check(&s) {
                        Ok(()) => Some(s),
                        Err(reason) => {
                            r.push(path, Some(format!("{s:?}")), Problem::Invalid { reason });
                            None
                        }
                    },
                    None => {
                        if r.errors.len() == had_error {
                            r.push(
                                path,
                                None,
                                Problem::Missing {
                                    reason: "a status rule has message, code and status",
                                },
                            );
                        }
                        None
                    }
                }
            };
            let message = required(self, "message", check_message_type);
            let code = required(self, "code", check_status_code);
            let status = required(self, "status", check_partner_status);
            let pid = self.integer::<i64>(&mut t, &prefix, "pid", 10_000, 99_999);
            self.unknown_keys(t, &prefix, &["message", "pid", "code", "status"]);
            let (Some(message), Some(code), Some(status)) = (message, code, status) else {
                continue;
            };
            let pid = pid.map(|p| u32::try_from(p).expect("range checked above"));
            if let Some(j) = out
                .iter()
                .position(|o| o.message == message && o.pid == pid && o.code == code)
            {
                self.push(
                    join(&prefix, "code"),
                    Some(format!("{code:?}")),
                    Problem::Invalid {
                        reason: format!(
                            "the same message, pid and code are already mapped by statuses[{j}]"
                        ),
                    },
                );
                continue;
            }
            out.push(PartnerStatusRule {
                message,
                pid,
                code,
                status,
            });
        }
        out
    }
}

/// `prefix.key`, with the key quoted when it is not a bare TOML key.
fn join(prefix: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_string()
    } else {
        format!("{key:?}")
    };
    if prefix.is_empty() {
        key
    } else {
        format!("{prefix}.{key}")
    }
}

/// A short rendering of a TOML value for an error message.
fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::Datetime(d) => d.to_string(),
        Value::Array(_) => "[…]".to_string(),
        Value::Table(_) => "{…}".to_string(),
    }
}

/// Hides secrets and database passwords in error messages.
fn render_secret_aware(key: &str, rendered: &str, raw: &str) -> String {
    if key.ends_with("token")
        || key.ends_with("secret")
        || key.ends_with("password")
        || key.ends_with("PASSWORD")
        || key.ends_with("SECRET")
        || key.ends_with("TOKEN")
    {
        format!("<hidden, {} characters>", raw.chars().count())
    } else if key.ends_with("url") || key.ends_with("URL") {
        format!("{:?}", redact_password(raw))
    } else {
        rendered.to_string()
    }
}

/// `scheme://user:***@host…` for a URL with a password; other text unchanged.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn parse_market_partner_id(s: &str) -> Result<MarketPartnerId, String> {
    s.parse::<MarketPartnerId>()
        .map_err(|e| e.problem.to_string())
}

fn parse_mail_address(s: &str) -> Result<String, String> {
    s.parse::<crate::transport::email::Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("not a mail address such as gateway@example.org: {e}"))
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    if s.trim().is_empty() {
        Err("must name a file".into())
    } else {
        Ok(PathBuf::from(s))
    }
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_host(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '/' || c == '@') {
        Err("must be a host name or IP address, such as mail.example.org".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        "not an IP address with a port, such as 127.0.0.1:8080 or [::1]:8080 \
         (host names are not resolved)"
            .to_string()
    })
}

fn parse_secret(s: &str) -> Result<String, String> {
    if s.chars().count() < MIN_SECRET_LEN {
        Err(format!("must have at least {MIN_SECRET_LEN} characters"))
    } else if s.chars().any(char::is_whitespace) {
        Err("must not contain whitespace".to_string())
    } else {
        Ok(s.to_string())
    }
}

/// Accepts `sqlite://PATH[?options]`, `postgres://…` and `postgresql://…` (sqlx's forms).
fn parse_database_url(s: &str) -> Result<(String, DatabaseKind), String> {
    let supported = "only sqlite://PATH, postgres://… and postgresql://… URLs are supported";
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(supported.to_string());
    };
    match scheme {
        "sqlite" => {
            let path = rest.split('?').next().unwrap_or_default();
            if path.is_empty() {
                Err("sqlite:// needs a file path, such as sqlite://data/mako-gateway.db".into())
            } else {
                Ok((s.to_string(), DatabaseKind::Sqlite))
            }
        }
        "postgres" | "postgresql" => {
            let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = split_host_port(host_port);
            if host.is_empty() && !rest.contains("host=") {
                return Err("needs a host, such as postgres://user:password@localhost/mako".into());
            }
            if let Some(port) = port {
                if port.parse::<u16>().is_err() {
                    return Err(format!("port {port:?} is not a number from 0 to 65535"));
                }
            }
            Ok((s.to_string(), DatabaseKind::Postgres))
        }
        _ => Err(supported.to_string()),
    }
}

/// Splits `host:port`, `[v6]:port` or `host`.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    if let Some(rest) = s.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((host, tail)) => (host, tail.strip_prefix(':')),
            None => (s, None),
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    }
}

/// Accepts only `https://host…` (BDEW AS4 endpoints are HTTPS; phase4's BDEW validator refuses
/// `http`, transport.md §1.2).
fn parse_https_url(s: &str) -> Result<String, String> {
    if !s.starts_with("https://") {
        return Err("must be an https:// URL (the BDEW AS4 profile allows no plain HTTP)".into());
    }
    parse_http_url(s)
}

/// Accepts `http://host…` and `https://host…`.
fn parse_http_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or("must be an http:// or https:// URL")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = split_host_port(host_port);
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err("needs a host, such as https://core.example/mako-events".into());
    }
    if let Some(port) = port {
        if port.parse::<u16>().is_err() {
            return Err(format!("port {port:?} is not a number from 0 to 65535"));
        }
    }
    Ok(s.to_string())
}

/// `500ms`, `5s`, `10m`, `1h`, `7d`: a whole number and one unit.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let help =
        "a duration is a whole number and a unit: \"500ms\", \"5s\", \"10m\", \"1h\" or \"7d\"";
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits_end);
    let n: u64 = number.parse().map_err(|_| help.to_string())?;
    let seconds_per = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(help.to_string()),
    };
    n.checked_mul(seconds_per)
        .map(Duration::from_secs)
        .ok_or_else(|| "too long".to_string())
}

/// A tracing filter: comma-separated directives `LEVEL`, `TARGET` or `TARGET=LEVEL`. Span
/// filters (`target[span{field=value}]=level`) are passed on unchecked; tracing-subscriber
/// parses the filter again when `serve` starts logging.
fn parse_log_filter(s: &str) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if s.trim().is_empty() {
        return Err("must not be empty (for example \"info\")".into());
    }
    for directive in s.split(',').map(str::trim) {
        if directive.contains('[') {
            continue;
        }
        let is_target = |t: &str| {
            !t.is_empty()
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
        };
        let ok = match directive.rsplit_once('=') {
            Some((target, level)) => {
                is_target(target) && LEVELS.contains(&level.to_ascii_lowercase().as_str())
            }
            None => is_target(directive),
        };
        if !ok {
            return Err(format!(
                "directive {directive:?} is not LEVEL, TARGET or TARGET=LEVEL \
                 (levels: {})",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(s.to_string())
}

fn check_message_type(s: &str) -> Result<(), String> {
    if s.len() == 6 && s.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err("must be an EDIFACT message type: six upper-case letters such as IFTSTA".into())
    }
}

fn check_status_code(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.len() <= 35
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    {
        Ok(())
    } else {
        Err("must be a code of 1 to 35 upper-case letters and digits, such as Z07".into())
    }
}

fn check_partner_status(s: &str) -> Result<(), String> {
    if PARTNER_STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(format!("must be one of {}", PARTNER_STATUSES.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load(file: &str) -> Result<Config, Vec<ConfigError>> {
        Config::load(Some(file), &no_env)
    }

    fn errors(file: &str) -> Vec<String> {
        load(file)
            .expect_err("the file has errors")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn defaults_work_without_a_file() {
        let c = Config::load(None, &no_env).unwrap();
        assert_eq!(c.own_id.as_str(), DEFAULT_OWN_ID);
        assert!(c.uses_test_own_id());
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert_eq!(c.database.url, "sqlite://data/mako-gateway.db");
        assert_eq!(c.database.kind, DatabaseKind::Sqlite);
        assert_eq!(c.database.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(c.api.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.api.token, None);
        assert_eq!(c.webhook, None);
        assert_eq!(
            c.workers,
            WorkersConfig {
                inbound: 2,
                outbound: 1,
                webhooks: 1,
                lease: Duration::from_secs(60)
            }
        );
        assert_eq!(c.shutdown.grace, Duration::from_secs(30));
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log.level, "info");
        assert_eq!(c.poll.inbound, Duration::from_millis(500));
        assert_eq!(c.retry.max_attempts, 10);
        assert!(c.partners.is_empty());
        assert_eq!(c.inbox_dir(), PathBuf::from("data/inbox"));
        assert_eq!(c.outbox_dir(), PathBuf::from("data/outbox"));
        // An empty file is the same as none.
        assert_eq!(load("").unwrap(), c);
    }

    #[test]
    fn the_default_database_follows_data_dir() {
        let c = load("data_dir = \"/var/lib/mako-gateway\"").unwrap();
        assert_eq!(
            c.database.url,
            "sqlite:///var/lib/mako-gateway/mako-gateway.db"
        );
        assert_eq!(c.inbox_dir(), PathBuf::from("/var/lib/mako-gateway/inbox"));
    }

    #[test]
    fn environment_variables_override_the_file() {
        let file = "own_id = \"9904292000003\"\ndata_dir = \"from-file\"\n\
                    [database]\nurl = \"sqlite://file.db\"\n[api]\naddr = \"127.0.0.1:1\"\n\
                    token = \"file-token-0123456789\"\n[log]\nformat = \"text\"\nlevel = \"warn\"\n";
        let env = env_of(&[
            ("MAKO_OWN_ID", "9903829000006"),
            ("MAKO_DATA_DIR", "from-env"),
            ("MAKO_DATABASE_URL", "postgresql://mako@db:5432/mako"),
            ("MAKO_API_ADDR", "[::]:9000"),
            ("MAKO_API_TOKEN", "env-token-0123456789"),
            ("MAKO_WEBHOOK_URL", "https://core.example/events"),
            ("MAKO_WEBHOOK_SECRET", "env-secret-0123456789"),
            ("MAKO_LOG_FORMAT", "json"),
            ("MAKO_LOG_LEVEL", "debug,sqlx=warn"),
        ]);
        let c = Config::load(Some(file), &env).unwrap();
        assert_eq!(c.own_id.as_str(), "9903829000006");
        assert_eq!(c.data_dir, PathBuf::from("from-env"));
        assert_eq!(c.database.url, "postgresql://mako@db:5432/mako");
        assert_eq!(c.database.kind, DatabaseKind::Postgres);
        assert_eq!(c.api.addr, "[::]:9000".parse().unwrap());
        assert_eq!(c.api.token.as_deref(), Some("env-token-0123456789"));
        let webhook = c.webhook.unwrap();
        assert_eq!(webhook.url, "https://core.example/events");
        assert_eq!(webhook.secret, "env-secret-0123456789");
        assert_eq!(webhook.timeout, DEFAULT_WEBHOOK_TIMEOUT);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.log.level, "debug,sqlx=warn");
        // Every override is in ENV_OVERRIDES (which the README and the example list); the
        // mail passwords need an [email] section and are exercised with it below.
        for (var, option) in ENV_OVERRIDES {
            if option.starts_with("email.") {
                continue;
            }
            assert!(env(var).is_some(), "{var} not exercised");
        }
    }

    #[test]
    fn an_empty_environment_variable_counts_as_unset() {
        let env = env_of(&[("MAKO_API_TOKEN", ""), ("MAKO_API_ADDR", "")]);
        let c = Config::load(Some("[api]\naddr = \"0.0.0.0:8080\""), &env).unwrap();
        assert_eq!(c.api.token, None);
        assert_eq!(c.api.addr.port(), 8080);
    }

    #[test]
    fn every_error_is_reported_at_once_with_key_and_value() {
        let file = r#"
own_id = "9900357000004"
data_dir = 7
colour = "blue"
[database]
url = "mysql://localhost/mako"
max_connections = 0
[api]
addr = "localhost:8080"
token = "short"
[webhook]
url = "ftp://core.example"
[workers]
inbound = "2"
[shutdown]
grace_seconds = 0
[log]
format = "yaml"
level = "info,sqlx=loud"
[poll]
file_drop = 1
inbound = "0ms"
[retry]
base = "10m"
max = "1m"
"#;
        let env = env_of(&[("MAKO_API_ADDR", "8080")]);
        let got: Vec<String> = Config::load(Some(file), &env)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let expected = [
            "own_id = \"9900357000004\": check digit matches neither the BDEW/DVGW nor the GS1 procedure",
            "data_dir = 7: expected a string, found integer",
            "database.url = \"mysql://localhost/mako\": only sqlite://PATH, postgres://… and postgresql://… URLs are supported",
            "database.max_connections = 0: must be between 1 and 1000",
            "api.addr = \"localhost:8080\": not an IP address with a port, such as 127.0.0.1:8080 or [::1]:8080 (host names are not resolved)",
            "MAKO_API_ADDR=\"8080\": not an IP address with a port, such as 127.0.0.1:8080 or [::1]:8080 (host names are not resolved)",
            "api.token = <hidden, 5 characters>: must have at least 16 characters",
            "webhook.url = \"ftp://core.example\": must be an http:// or https:// URL",
            "workers.inbound = \"2\": expected an integer, found string",
            "shutdown.grace_seconds = 0: must be between 1 and 3600",
            "log.format = \"yaml\": must be \"text\" or \"json\"",
            "log.level = \"info,sqlx=loud\": directive \"sqlx=loud\" is not LEVEL, TARGET or TARGET=LEVEL (levels: trace, debug, info, warn, error, off)",
            "poll.file_drop = 1: expected a duration string such as \"500ms\", \"5s\", \"10m\" or \"1h\", found integer",
            "poll.inbound = \"0ms\": must be between 10ms and 3600s",
            "retry.max = \"1m\": must not be shorter than retry.base (600s)",
            "colour = \"blue\": unknown key (known here: own_id, data_dir, database, api, webhook, workers, shutdown, log, poll, retry, email, as4, partners)",
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn log_level_accepts_targets_and_span_filters() {
        for ok in [
            "info",
            "mako_gateway",
            "info,mako_gateway::store=TRACE",
            "warn,[serve{id=1}]=debug",
        ] {
            assert_eq!(
                load(&format!("[log]\nlevel = {ok:?}")).unwrap().log.level,
                ok
            );
        }
    }

    #[test]
    fn a_toml_syntax_error_names_line_and_column_and_env_errors_still_count() {
        let env = env_of(&[("MAKO_OWN_ID", "12")]);
        let errs = Config::load(Some("[api]\naddr = \"127.0.0.1:8080\nx = 1\n"), &env).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(
            matches!(errs[0].key, ConfigKey::Syntax { line: 2, .. }),
            "{:?}",
            errs[0]
        );
        assert!(errs[0]
            .to_string()
            .starts_with("config file line 2, column "));
        assert_eq!(
            errs[1].to_string(),
            "MAKO_OWN_ID=\"12\": must have 13 digits"
        );
    }

    #[test]
    fn unknown_keys_are_named_by_their_toml_path() {
        let got = errors(
            "[api]\nport = 8080\n[[partners]]\nid = \"9904292000003\"\nnmae = \"x\"\n\
             statuses = [{ message = \"IFTSTA\", code = \"Z07\", status = \"activated\", colour = 1 }]\n\
             [\"odd key\"]\n",
        );
        assert_eq!(
            got,
            [
                "api.port = 8080: unknown key (known here: addr, token)",
                "partners[0].statuses[0].colour = 1: unknown key (known here: message, pid, code, status)",
                "partners[0].nmae = \"x\": unknown key (known here: id, transport, statuses, email, signing_cert, encryption_cert, as4_url)",
                "\"odd key\" = {…}: unknown key (known here: own_id, data_dir, database, api, webhook, workers, shutdown, log, poll, retry, email, as4, partners)",
            ]
        );
    }

    #[test]
    fn a_section_of_the_wrong_type_is_reported() {
        assert_eq!(
            errors("api = \"127.0.0.1:8080\"\npartners = { id = \"1\" }"),
            [
                "api = \"127.0.0.1:8080\": expected a table, found string",
                "partners = {…}: expected an array of tables ([[partners]]), found table",
            ]
        );
    }

    #[test]
    fn database_urls_are_sqlite_or_postgres_and_passwords_stay_hidden() {
        for (url, kind) in [
            ("sqlite://data/x.db", DatabaseKind::Sqlite),
            ("sqlite:///var/lib/x.db?mode=rwc", DatabaseKind::Sqlite),
            (
                "postgres://mako:pw@localhost:5432/mako",
                DatabaseKind::Postgres,
            ),
            ("postgresql://[::1]/mako", DatabaseKind::Postgres),
            (
                "postgres:///mako?host=/run/postgresql",
                DatabaseKind::Postgres,
            ),
        ] {
            let c = load(&format!("[database]\nurl = {url:?}")).unwrap();
            assert_eq!((c.database.url.as_str(), c.database.kind), (url, kind));
        }
        assert_eq!(
            errors("[database]\nurl = \"postgres://mako:geheim@db:54x/mako\""),
            ["database.url = \"postgres://mako:***@db:54x/mako\": port \"54x\" is not a number from 0 to 65535"]
        );
        let env = env_of(&[("MAKO_DATABASE_URL", "postgres://mako:geheim@/mako")]);
        let err = Config::load(None, &env).unwrap_err()[0].to_string();
        assert!(!err.contains("geheim"), "{err}");
        assert!(err.starts_with("MAKO_DATABASE_URL=\"postgres://mako:***@/mako\": needs a host"));
        for bad in ["data/x.db", "sqlite://", "sqlite::memory:", "mysql://h/db"] {
            assert_eq!(
                load(&format!("[database]\nurl = {bad:?}"))
                    .unwrap_err()
                    .len(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn a_webhook_needs_url_and_secret_together() {
        assert_eq!(
            errors("[webhook]\nurl = \"https://core.example/events\""),
            ["webhook.secret: missing: webhook.url is set, so events are signed with webhook.secret (or MAKO_WEBHOOK_SECRET)"]
        );
        let env = env_of(&[("MAKO_WEBHOOK_SECRET", "0123456789abcdef")]);
        let errs = Config::load(None, &env).unwrap_err();
        assert_eq!(errs[0].key, ConfigKey::File("webhook.url".into()));
        // An invalid secret is reported once, not again as missing, and never shown.
        assert_eq!(
            errors("[webhook]\nurl = \"https://core.example\"\nsecret = \"kurz geheim\""),
            ["webhook.secret = <hidden, 11 characters>: must have at least 16 characters"]
        );
        let c = load(
            "[webhook]\nurl = \"http://127.0.0.1:9999/hook\"\nsecret = \"0123456789abcdef\"\ntimeout = \"2s\"",
        )
        .unwrap();
        let webhook = c.webhook.unwrap();
        assert_eq!(webhook.timeout, Duration::from_secs(2));
        assert!(!format!("{webhook:?}").contains("0123456789abcdef"));
        for bad in ["https://", "https:// x", "http://h:99999/", "core.example"] {
            assert_eq!(
                load(&format!(
                    "[webhook]\nurl = {bad:?}\nsecret = \"0123456789abcdef\""
                ))
                .unwrap_err()
                .len(),
                1,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_api_token_is_hidden_in_debug_output() {
        let env = env_of(&[("MAKO_API_TOKEN", "s3cr3t-t0ken-for-the-api")]);
        let c = Config::load(None, &env).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
        assert_eq!(
            errors("[api]\ntoken = \"has a space in it, sadly\"")[0],
            "api.token = <hidden, 24 characters>: must not contain whitespace"
        );
    }

    #[test]
    fn partners_with_transport_and_status_rules() {
        let c = load(
            r#"
[[partners]]
id = "9903829000006"
statuses = [
    { message = "IFTSTA", pid = 21039, code = "Z07", status = "check_submitted" },
    { message = "IFTSTA", code = "Z09", status = "activated" },
]
[[partners]]
id = "9904292000003"
transport = "file"
"#,
        )
        .unwrap();
        assert_eq!(c.partners.len(), 2);
        let msb: MarketPartnerId = "9903829000006".parse().unwrap();
        assert_eq!(c.transport_for(&msb), Transport::File);
        assert_eq!(
            c.partner(&msb).unwrap().statuses,
            [
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: Some(21039),
                    code: "Z07".into(),
                    status: "check_submitted".into(),
                },
                PartnerStatusRule {
                    message: "IFTSTA".into(),
                    pid: None,
                    code: "Z09".into(),
                    status: "activated".into(),
                },
            ]
        );
        let unknown: MarketPartnerId = "9900269000000".parse().unwrap();
        assert_eq!(c.partner(&unknown), None);
        assert_eq!(c.transport_for(&unknown), Transport::File);
    }

    #[test]
    fn as4_partners_need_the_as4_section_their_endpoint_and_certificates() {
        let errs = load(
            "[[partners]]\nid = \"9904292000003\"\ntransport = \"as4\"\n\
             as4_url = \"http://vnb.example/as4\"\n\
             [[partners]]\nid = \"9900269000000\"\ntransport = \"ftp\"\n\
             [[partners]]\nid = \"9903829000006\"\nas4_url = \"https://x.example/as4\"\n",
        )
        .unwrap_err();
        let got: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "partners[0].as4_url = \"http://vnb.example/as4\": must be an https:// URL \
                 (the BDEW AS4 profile allows no plain HTTP)",
                "partners[0].signing_cert: missing: transport = \"as4\" needs the PEM file of \
                 the certificate the partner signs with",
                "partners[0].encryption_cert: missing: transport = \"as4\" needs the PEM file \
                 of the certificate we encrypt to",
                "partners[1].transport = \"ftp\": must be \"file\", \"email\" or \"as4\"",
                "partners[2].as4_url = \"https://x.example/as4\": only used with transport = \"as4\"",
                "as4: missing: a partner uses transport = \"as4\", so [as4] says who we are \
                 (keys, certificates, SM-PKI trust anchors)",
            ]
        );
    }

    #[test]
    fn as4_section_reads_paths_defaults_and_limits() {
        let c = load(
            "[as4]\nlisten = \"127.0.0.1:8443\"\nsigning_key = \"s.key\"\n\
             signing_cert = \"s.pem\"\nencryption_key = \"e.key\"\nencryption_cert = \"e.pem\"\n\
             tls_key = \"t.key\"\ntls_cert = \"t.pem\"\ntrust_anchors = [\"ca.pem\"]\n\
             [[partners]]\nid = \"9904292000003\"\ntransport = \"as4\"\n\
             as4_url = \"https://vnb.example/as4\"\nsigning_cert = \"vnb-s.pem\"\n\
             encryption_cert = \"vnb-e.pem\"\n",
        )
        .unwrap();
        let as4 = c.as4.as_ref().unwrap();
        assert_eq!(as4.listen, Some("127.0.0.1:8443".parse().unwrap()));
        assert_eq!(as4.path, "/as4");
        assert_eq!(as4.trust_anchors, [PathBuf::from("ca.pem")]);
        assert_eq!(as4.dedup_retention, Duration::from_secs(10 * 86_400));
        assert_eq!(as4.max_payload_bytes, 32 * 1024 * 1024);
        assert_eq!(as4.connect_timeout, Duration::from_secs(5));
        let partner = c.partners[0].as4.as_ref().unwrap();
        assert_eq!(partner.url, "https://vnb.example/as4");
        assert_eq!(c.partners[0].transport, Transport::As4);

        let errs =
            load("[as4]\ndedup_retention = \"3d\"\nmax_payload_bytes = 1\ntrust_anchors = []\n")
                .unwrap_err();
        let keys: Vec<String> = errs.iter().map(|e| e.key.to_string()).collect();
        for key in [
            "as4.signing_key",
            "as4.trust_anchors",
            "as4.max_payload_bytes",
            "as4.dedup_retention",
        ] {
            assert!(keys.contains(&key.to_string()), "{key} not in {keys:?}");
        }
    }

    const EMAIL: &str = r#"
[email]
address = "gateway@mako.test"
signing_key = "keys/own.key"
signing_cert = "keys/own.pem"
[email.smtp]
host = "127.0.0.1"
[email.imap]
host = "127.0.0.1"
user = "gateway"
password = "imap-password"
mailbox = "edi"
poll_interval = "10s"
[[partners]]
id = "9903829000006"
transport = "email"
email = "edi@partner.example"
signing_cert = "keys/partner-sign.pem"
encryption_cert = "keys/partner-enc.pem"
"#;

    #[test]
    fn an_email_partner_with_our_identity_smtp_and_imap() {
        let c = load(EMAIL).unwrap();
        let email = c.email.as_ref().unwrap();
        assert_eq!(email.address, "gateway@mako.test");
        // Decryption defaults to the signing key.
        assert_eq!(email.decryption_key, PathBuf::from("keys/own.key"));
        assert_eq!(email.decryption_cert, PathBuf::from("keys/own.pem"));
        let smtp = email.smtp.as_ref().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("127.0.0.1", 25));
        assert_eq!(smtp.credentials, None);
        let imap = email.imap.as_ref().unwrap();
        assert_eq!(imap.mailbox, "edi");
        assert_eq!(imap.poll_interval, Duration::from_secs(10));
        assert!(!format!("{imap:?}").contains("imap-password"));
        let msb: MarketPartnerId = "9903829000006".parse().unwrap();
        assert_eq!(c.transport_for(&msb), Transport::Email);
        let partner = c.partner(&msb).unwrap().email.clone().unwrap();
        assert_eq!(partner.address, "edi@partner.example");
        assert_eq!(
            partner.encryption_cert,
            PathBuf::from("keys/partner-enc.pem")
        );
        // The environment overrides the passwords.
        let env = env_of(&[
            ("MAKO_IMAP_PASSWORD", "imap-from-the-environment"),
            ("MAKO_SMTP_PASSWORD", "smtp-from-the-environment"),
        ]);
        let file = EMAIL.replace("[email.smtp]\n", "[email.smtp]\nuser = \"edi\"\n");
        let email = Config::load(Some(&file), &env).unwrap().email.unwrap();
        assert_eq!(email.imap.unwrap().password, "imap-from-the-environment");
        assert_eq!(
            email.smtp.unwrap().credentials,
            Some(("edi".into(), "smtp-from-the-environment".into()))
        );
    }

    #[test]
    fn mail_servers_default_to_starttls_and_plain_text_only_to_loopback() {
        let c = load(EMAIL).unwrap();
        let email = c.email.unwrap();
        assert_eq!(email.smtp.unwrap().tls, TlsSettings::default());
        assert_eq!(email.imap.unwrap().tls.mode, TlsMode::StartTls);

        let file = EMAIL
            .replace(
                "[email.smtp]\nhost = \"127.0.0.1\"\n",
                "[email.smtp]\nhost = \"127.0.0.1\"\ntls = \"none\"\n",
            )
            .replace(
                "[email.imap]\nhost = \"127.0.0.1\"\n",
                "[email.imap]\nhost = \"imap.example.org\"\nport = 993\ntls = \"tls\"\nca_file = \"ca/private.pem\"\n",
            );
        let email = load(&file).unwrap().email.unwrap();
        assert_eq!(email.smtp.unwrap().tls, TlsSettings::none());
        assert_eq!(
            email.imap.unwrap().tls,
            TlsSettings::with_ca(TlsMode::Implicit, "ca/private.pem")
        );

        let file = EMAIL
            .replace(
                "[email.smtp]\nhost = \"127.0.0.1\"\n",
                "[email.smtp]\nhost = \"mail.example.org\"\ntls = \"none\"\n",
            )
            .replace(
                "[email.imap]\nhost = \"127.0.0.1\"\n",
                "[email.imap]\nhost = \"127.0.0.1\"\ntls = \"ssl\"\n",
            );
        assert_eq!(
            errors(&file),
            [
                "email.smtp.tls = \"none\": \"none\" sends the password and the mail in clear, so it is allowed only when host is a loopback address (127.0.0.1, ::1, localhost), not \"mail.example.org\"; use \"starttls\" or \"tls\"",
                "email.imap.tls = \"ssl\": \"ssl\" is not a TLS mode; use \"starttls\", \"tls\" or \"none\"",
            ]
        );
    }

    #[test]
    fn email_settings_are_required_together_and_reported_at_once() {
        assert_eq!(
            errors(
                "[email]\naddress = \"no-at-sign\"\ndecryption_key = \"k\"\n\
                 [email.smtp]\nuser = \"u\"\n[email.imap]\nhost = \"h\"\npassword = \"pw\"\n\
                 [[partners]]\nid = \"9903829000006\"\ntransport = \"email\"\n\
                 [[partners]]\nid = \"9904292000003\"\nemail = \"x@y.z\"\n"
            ),
            [
                "email.address = \"no-at-sign\": not a mail address such as gateway@example.org: Missing domain or user",
                "email.signing_key: missing: [email] names the PEM file of the key we sign with",
                "email.signing_cert: missing: [email] names the PEM file of our signing certificate",
                "email.decryption_cert: missing: decryption_key and decryption_cert come together (leave both out to decrypt with the signing key)",
                "email.smtp.host: missing: [email.smtp] names the SMTP server",
                "email.smtp.password: missing: SMTP AUTH takes user and password (MAKO_SMTP_PASSWORD) together",
                "email.imap.user: missing: [email.imap] names the login",
                "partners[0].email: missing: transport = \"email\" needs the partner's mail address",
                "partners[0].signing_cert: missing: transport = \"email\" needs the PEM file of the certificate the partner signs with",
                "partners[0].encryption_cert: missing: transport = \"email\" needs the PEM file of the certificate we encrypt to",
                "partners[1].email = \"x@y.z\": only used with transport = \"email\"",
            ]
        );
    }

    #[test]
    fn partner_ids_are_checked_required_and_unique() {
        assert_eq!(
            errors(
                "[[partners]]\nid = \"9904292000004\"\n[[partners]]\ntransport = \"file\"\n\
                 [[partners]]\nid = \"9903829000006\"\n[[partners]]\nid = \"9903829000006\"\n"
            ),
            [
                "partners[0].id = \"9904292000004\": check digit matches neither the BDEW/DVGW nor the GS1 procedure",
                "partners[1].id: missing: every [[partners]] entry names its market partner ID",
                "partners[3].id = \"9903829000006\": already configured in partners[2]",
            ]
        );
    }

    #[test]
    fn status_rules_are_checked_field_by_field() {
        assert_eq!(
            errors(
                r#"
[[partners]]
id = "9903829000006"
statuses = [
    { message = "iftsta", pid = 210390, code = "Z 7", status = "installed" },
    { message = "IFTSTA", status = "activated" },
    { message = "IFTSTA", code = "Z07", status = "activated" },
    { message = "IFTSTA", code = "Z07", status = "check_reviewed" },
    "Z07",
]
"#
            ),
            [
                "partners[0].statuses[0].message = \"iftsta\": must be an EDIFACT message type: six upper-case letters such as IFTSTA",
                "partners[0].statuses[0].code = \"Z 7\": must be a code of 1 to 35 upper-case letters and digits, such as Z07",
                "partners[0].statuses[0].status = \"installed\": must be one of check_submitted, check_reviewed, activated",
                "partners[0].statuses[0].pid = 210390: must be between 10000 and 99999",
                "partners[0].statuses[1].code: missing: a status rule has message, code and status",
                "partners[0].statuses[3].code = \"Z07\": the same message, pid and code are already mapped by statuses[0]",
                "partners[0].statuses[4] = \"Z07\": expected a table {message, pid, code, status}, found string",
            ]
        );
    }

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        for bad in ["5", "s", "1.5s", "-1s", "5 s", "1w", ""] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let c = load("[workers]\nlease = \"2m\"\n[retry]\nbase = \"1s\"\nmax = \"1s\"").unwrap();
        assert_eq!(c.workers.lease, Duration::from_secs(120));
        assert_eq!(c.retry.max, Duration::from_secs(1));
    }

    #[test]
    fn the_default_own_id_is_a_valid_market_partner_id() {
        assert!(DEFAULT_OWN_ID.parse::<MarketPartnerId>().is_ok());
        let c = load("own_id = \"9904292000003\"").unwrap();
        assert!(!c.uses_test_own_id());
    }

    #[test]
    fn config_errors_exit_with_ex_usage() {
        assert_eq!(exit_code_for_config_errors(), 64);
    }
}
