//! The sections every gateway has, whatever its transports: `[database]`, `[api]`,
//! `[webhook]`, `[workers]`, `[shutdown]`, `[log]`, `[poll]`, `[retry]` and `[file_drop]`.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Table;

use super::error::{ConfigError, ConfigKey, Problem};
use super::reader::{render_value, reported, Reader};
use super::values::{
    parse_database_url, parse_http_url, parse_log_filter, parse_secret, parse_socket_addr,
};
use super::{MAX_POLL_INTERVAL, MIN_INTERVAL};

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

/// Default largest inbox file the file drop reads: 256 MiB, far above any interchange seen in
/// the market (the 10 MB test interchange included), low enough that one file cannot take the
/// memory of the host.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Largest accepted `file_drop.max_file_bytes`: SQLite's default limit of one value
/// (`SQLITE_MAX_LENGTH`, 10^9 bytes); a larger interchange could not be journaled.
pub const MAX_MAX_FILE_BYTES: u64 = 1_000_000_000;

/// `[file_drop]`: the file-drop transport's own settings (its poll interval is
/// `poll.file_drop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDropConfig {
    /// `file_drop.max_file_bytes`: an inbox file larger than this is set aside in
    /// `inbox/failed/` unread.
    pub max_file_bytes: u64,
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
    /// `api.max_connections`, `api.header_read_timeout`, `api.request_timeout`,
    /// `api.idle_timeout`: what one client may hold of the server.
    pub limits: HttpLimits,
}

/// The limits of an HTTP server (the API): slow or idle clients are cut off and the number of
/// connections is capped, so that no client exhausts the daemon's file descriptors (issue 15
/// defect 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once; one more is answered 503 and closed at once.
    pub max_connections: u32,
    /// From the first byte of a request (or the connection's start) to the end of its header.
    pub header_read_timeout: Duration,
    /// From the end of the header to the end of the answer: reading the body and answering.
    pub request_timeout: Duration,
    /// A connection with no byte in either direction for this long is closed (longer than
    /// the request timeout).
    pub idle_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_connections: 512,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("limits", &self.limits)
            .finish()
    }
}

/// `[console]`: the operator console at `/ui` (issue 17).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// `console.token`, `MAKO_CONSOLE_TOKEN`: a token accepted at the console's login only,
    /// beside the API token (so operators need not hold the core's API token).
    pub token: Option<String>,
    /// `console.secure_cookie`: always mark the session cookie `Secure`, for a TLS proxy in
    /// front that does not send `X-Forwarded-Proto: https`.
    pub secure_cookie: bool,
}

impl fmt::Debug for ConsoleConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("token", &self.token.as_ref().map(|_| "<hidden>"))
            .field("secure_cookie", &self.secure_cookie)
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

impl Reader<'_> {
    /// `[database]`; without a URL, the SQLite file in `data_dir`.
    pub(super) fn database(&mut self, root: &mut Table, data_dir: &Path) -> DatabaseConfig {
        let mut t = self.table(root, "", "database");
        let database = {
            let url = self.setting(
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
                max_connections: self
                    .integer(&mut t, "database", "max_connections", 1, 1000)
                    .unwrap_or(DEFAULT_MAX_CONNECTIONS),
            }
        };
        self.unknown_keys(t, "database", &["url", "max_connections"]);
        database
    }

    /// `[api]`.
    pub(super) fn api(&mut self, root: &mut Table) -> ApiConfig {
        let mut t = self.table(root, "", "api");
        let api = ApiConfig {
            addr: self
                .setting(&mut t, "api", "addr", "MAKO_API_ADDR", parse_socket_addr)
                .unwrap_or_else(|| DEFAULT_API_ADDR.parse().expect("DEFAULT_API_ADDR is valid")),
            token: self.setting(&mut t, "api", "token", "MAKO_API_TOKEN", parse_secret),
            limits: self.http_limits(&mut t, "api"),
        };
        self.unknown_keys(
            t,
            "api",
            &[
                "addr",
                "token",
                "max_connections",
                "header_read_timeout",
                "request_timeout",
                "idle_timeout",
            ],
        );
        api
    }

    /// `[console]`.
    pub(super) fn console(&mut self, root: &mut Table) -> ConsoleConfig {
        let mut t = self.table(root, "", "console");
        let token = self.setting(
            &mut t,
            "console",
            "token",
            "MAKO_CONSOLE_TOKEN",
            parse_secret,
        );
        let secure_cookie = match t.remove("secure_cookie") {
            None => false,
            Some(toml::Value::Boolean(b)) => b,
            Some(other) => {
                self.wrong_type("console.secure_cookie".into(), &other, "true or false");
                false
            }
        };
        self.unknown_keys(t, "console", &["token", "secure_cookie"]);
        ConsoleConfig {
            token,
            secure_cookie,
        }
    }

    /// The keys of [`HttpLimits`] in table `prefix`, each defaulted.
    fn http_limits(&mut self, t: &mut Table, prefix: &str) -> HttpLimits {
        let default = HttpLimits::default();
        let (second, hour) = (Duration::from_secs(1), Duration::from_secs(3600));
        let limits = HttpLimits {
            max_connections: self
                .integer(t, prefix, "max_connections", 1u32, 100_000)
                .unwrap_or(default.max_connections),
            header_read_timeout: self
                .duration(t, prefix, "header_read_timeout", second, hour)
                .unwrap_or(default.header_read_timeout),
            request_timeout: self
                .duration(t, prefix, "request_timeout", second, hour)
                .unwrap_or(default.request_timeout),
            idle_timeout: self
                .duration(t, prefix, "idle_timeout", second, hour)
                .unwrap_or(default.idle_timeout),
        };
        if limits.idle_timeout <= limits.request_timeout {
            self.push(
                format!("{prefix}.idle_timeout"),
                Some(format!("{:?}", limits.idle_timeout)),
                Problem::Invalid {
                    reason: format!(
                        "must be longer than {prefix}.request_timeout ({:?}): a request being \
                         answered is not idle",
                        limits.request_timeout
                    ),
                },
            );
        }
        limits
    }

    /// `[webhook]`: `None` without a URL; URL and secret come together.
    pub(super) fn webhook(&mut self, root: &mut Table) -> Option<WebhookConfig> {
        let mut t = self.table(root, "", "webhook");
        let webhook = {
            let url = self.setting(&mut t, "webhook", "url", "MAKO_WEBHOOK_URL", parse_http_url);
            let secret = self.setting(
                &mut t,
                "webhook",
                "secret",
                "MAKO_WEBHOOK_SECRET",
                parse_secret,
            );
            let timeout = self
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
            let url_written = reported(self, "webhook.url", "MAKO_WEBHOOK_URL");
            let secret_written = reported(self, "webhook.secret", "MAKO_WEBHOOK_SECRET");
            match (url, secret) {
                (Some(url), Some(secret)) => Some(WebhookConfig {
                    url,
                    secret,
                    timeout,
                }),
                (Some(_), None) if !secret_written => {
                    self.errors.push(ConfigError {
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
                    self.errors.push(ConfigError {
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
        self.unknown_keys(t, "webhook", &["url", "secret", "timeout"]);
        webhook
    }

    /// `[workers]`.
    pub(super) fn workers(&mut self, root: &mut Table) -> WorkersConfig {
        let mut t = self.table(root, "", "workers");
        let workers = WorkersConfig {
            inbound: self
                .integer(&mut t, "workers", "inbound", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_INBOUND_WORKERS),
            outbound: self
                .integer(&mut t, "workers", "outbound", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_OUTBOUND_WORKERS),
            webhooks: self
                .integer(&mut t, "workers", "webhooks", 1, MAX_WORKERS)
                .unwrap_or(DEFAULT_WEBHOOK_WORKERS),
            lease: self
                .duration(
                    &mut t,
                    "workers",
                    "lease",
                    Duration::from_secs(1),
                    Duration::from_secs(86_400),
                )
                .unwrap_or(DEFAULT_LEASE),
        };
        self.unknown_keys(t, "workers", &["inbound", "outbound", "webhooks", "lease"]);
        workers
    }

    /// `[shutdown]`.
    pub(super) fn shutdown(&mut self, root: &mut Table) -> ShutdownConfig {
        let mut t = self.table(root, "", "shutdown");
        let shutdown = ShutdownConfig {
            grace: Duration::from_secs(
                self.integer(&mut t, "shutdown", "grace_seconds", 1, MAX_GRACE_SECONDS)
                    .map_or(DEFAULT_GRACE_SECONDS, u64::from),
            ),
        };
        self.unknown_keys(t, "shutdown", &["grace_seconds"]);
        shutdown
    }

    /// `[log]`.
    pub(super) fn log(&mut self, root: &mut Table) -> LogConfig {
        let mut t = self.table(root, "", "log");
        let log = LogConfig {
            format: self
                .setting(&mut t, "log", "format", "MAKO_LOG_FORMAT", |s| match s {
                    "text" => Ok(LogFormat::Text),
                    "json" => Ok(LogFormat::Json),
                    _ => Err("must be \"text\" or \"json\"".to_string()),
                })
                .unwrap_or(LogFormat::Text),
            level: self
                .setting(&mut t, "log", "level", "MAKO_LOG_LEVEL", parse_log_filter)
                .unwrap_or_else(|| "info".to_string()),
        };
        self.unknown_keys(t, "log", &["format", "level"]);
        log
    }

    /// `[poll]`.
    pub(super) fn poll(&mut self, root: &mut Table) -> PollConfig {
        let mut t = self.table(root, "", "poll");
        let mut poll_interval = |r: &mut Reader<'_>, key: &str, default: Duration| {
            r.duration(&mut t, "poll", key, MIN_INTERVAL, MAX_POLL_INTERVAL)
                .unwrap_or(default)
        };
        let poll = PollConfig {
            file_drop: poll_interval(self, "file_drop", Duration::from_secs(1)),
            inbound: poll_interval(self, "inbound", Duration::from_millis(500)),
            outbound: poll_interval(self, "outbound", Duration::from_millis(500)),
            webhooks: poll_interval(self, "webhooks", Duration::from_secs(1)),
        };
        self.unknown_keys(t, "poll", &["file_drop", "inbound", "outbound", "webhooks"]);
        poll
    }

    /// `[file_drop]`.
    pub(super) fn file_drop(&mut self, root: &mut Table) -> FileDropConfig {
        let mut t = self.table(root, "", "file_drop");
        let file_drop = FileDropConfig {
            max_file_bytes: self
                .integer(
                    &mut t,
                    "file_drop",
                    "max_file_bytes",
                    1024_i64,
                    MAX_MAX_FILE_BYTES as i64,
                )
                .map_or(DEFAULT_MAX_FILE_BYTES, |n: i64| n as u64),
        };
        self.unknown_keys(t, "file_drop", &["max_file_bytes"]);
        file_drop
    }

    /// `[retry]`: `max` must not be shorter than `base`.
    pub(super) fn retry(&mut self, root: &mut Table) -> RetryConfig {
        let mut t = self.table(root, "", "retry");
        let retry = {
            let week = Duration::from_secs(7 * 86_400);
            let base = self.duration(&mut t, "retry", "base", MIN_INTERVAL, week);
            let max_written = t.get("max").map(render_value);
            let max = self.duration(&mut t, "retry", "max", MIN_INTERVAL, week);
            let base = base.unwrap_or(DEFAULT_RETRY_BASE);
            let max = max.unwrap_or(DEFAULT_RETRY_MAX);
            if max < base {
                self.errors.push(ConfigError {
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
                max_attempts: self
                    .integer(&mut t, "retry", "max_attempts", 1, 1000)
                    .unwrap_or(DEFAULT_RETRY_MAX_ATTEMPTS),
            }
        };
        self.unknown_keys(t, "retry", &["base", "max", "max_attempts"]);
        retry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{env_of, errors, load};
    use crate::config::Config;

    #[test]
    fn the_file_drop_size_cap_is_configured_within_what_the_journal_can_hold() {
        assert_eq!(
            load("").unwrap().file_drop.max_file_bytes,
            DEFAULT_MAX_FILE_BYTES
        );
        assert_eq!(
            load("[file_drop]\nmax_file_bytes = 2048")
                .unwrap()
                .file_drop
                .max_file_bytes,
            2048
        );
        for bad in ["0", "1023", "1000000001", "\"1 MB\""] {
            let errors = errors(&format!("[file_drop]\nmax_file_bytes = {bad}"));
            assert!(
                errors[0].starts_with("file_drop.max_file_bytes = "),
                "{errors:?}"
            );
        }
        assert!(errors("[file_drop]\nmax_bytes = 1")[0].contains("file_drop.max_bytes"));
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
    fn the_api_limits_default_and_an_idle_timeout_must_outlast_a_request() {
        let c = load("").unwrap();
        assert_eq!(c.api.limits, HttpLimits::default());
        let c = load("[api]\nmax_connections = 64\nheader_read_timeout = \"2s\"\nrequest_timeout = \"5s\"\nidle_timeout = \"6s\"").unwrap();
        assert_eq!(
            c.api.limits,
            HttpLimits {
                max_connections: 64,
                header_read_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_secs(6),
            }
        );
        let wrong = errors("[api]\nrequest_timeout = \"60s\"\nidle_timeout = \"30s\"");
        assert_eq!(wrong.len(), 1, "{wrong:?}");
        assert!(wrong[0].starts_with("api.idle_timeout"), "{wrong:?}");
        assert_eq!(errors("[api]\nmax_connections = 0").len(), 1);
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
}
