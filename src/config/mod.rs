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
//!
//! Inside: `error` (what an error says), `reader` (the reader that collects the errors and its
//! generic helpers), `values` (the parsers of single values), and one module per topic:
//! `basics` (database, API, webhook, workers, shutdown, log, poll, retry and file drop),
//! `email`, `as4` and `partners`. Every public item is re-exported here.

mod as4;
mod basics;
mod email;
mod error;
mod partners;
mod reader;
mod routing;
mod tls;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use toml::Table;

use crate::ids::MarketPartnerId;

pub use as4::{As4Config, PartnerAs4};
pub use basics::{
    ApiConfig, ConsoleConfig, DatabaseConfig, DatabaseKind, FileDropConfig, HttpLimits, LogConfig,
    LogFormat, PollConfig, RetryConfig, ShutdownConfig, WebhookConfig, WorkersConfig,
    DEFAULT_API_ADDR, DEFAULT_GRACE_SECONDS, DEFAULT_INBOUND_WORKERS, DEFAULT_LEASE,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_FILE_BYTES, DEFAULT_OUTBOUND_WORKERS, DEFAULT_RETRY_BASE,
    DEFAULT_RETRY_MAX, DEFAULT_RETRY_MAX_ATTEMPTS, DEFAULT_SQLITE_FILE, DEFAULT_WEBHOOK_TIMEOUT,
    DEFAULT_WEBHOOK_WORKERS, MAX_GRACE_SECONDS, MAX_MAX_FILE_BYTES, MAX_WORKERS, MIN_SECRET_LEN,
};
pub use email::{
    EmailConfig, ImapSettings, PartnerEmail, SmtpSettings, DEFAULT_IMAP_MAILBOX, DEFAULT_IMAP_PORT,
    DEFAULT_SMTP_PORT,
};
pub use error::{exit_code_for_config_errors, ConfigError, ConfigKey, Problem};
pub use partners::{PartnerConfig, PartnerStatusRule, Transport, PARTNER_STATUSES};
pub use tls::{
    plaintext_allowed, TlsMode, TlsSettings, TlsSetupError, DEFAULT_MAIL_TIMEOUT,
    DEFAULT_POLL_INTERVAL,
};

use reader::{line_column, reported, Reader};
use values::parse_market_partner_id;

/// Our own market partner ID when neither `own_id` nor `MAKO_OWN_ID` is set: a made-up BDEW
/// code (prefix 99, valid §8.1 check digit) that the samples and tests use as the supplier.
/// It belongs to no real market partner; production must set its own ID
/// ([`Config::uses_test_own_id`] lets `serve` warn about it).
pub const DEFAULT_OWN_ID: &str = "9900000000003";
/// Default working directory for the SQLite file and the file drop (`inbox/`, `outbox/`).
pub const DEFAULT_DATA_DIR: &str = "data";
/// Shortest accepted poll interval and lease: below this, idle instances only load the database.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
/// Longest accepted poll interval.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);

/// The environment variables that override the file, with the option each one sets.
pub const ENV_OVERRIDES: [(&str, &str); 12] = [
    ("MAKO_DATABASE_URL", "database.url"),
    ("MAKO_API_ADDR", "api.addr"),
    ("MAKO_API_TOKEN", "api.token"),
    ("MAKO_CONSOLE_TOKEN", "console.token"),
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
pub const OPTIONS: [&str; 77] = [
    "own_id",
    "data_dir",
    "database.url",
    "database.max_connections",
    "api.addr",
    "api.token",
    "console.token",
    "console.secure_cookie",
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
    "file_drop.max_file_bytes",
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
    "routing.pids",
    "routing.types",
    "routing.refuse_code",
];

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
    /// `[console]`: the operator console's own token and cookie setting.
    pub console: ConsoleConfig,
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
    /// `[file_drop]`: the file-drop transport's limits.
    pub file_drop: FileDropConfig,
    /// `[email]`: our mail identity, SMTP and IMAP; `None` when the section is absent (no
    /// partner may then use `transport = "email"`).
    pub email: Option<EmailConfig>,
    /// `[as4]`: our AS4 identity and endpoint; `None` when the section is absent (no partner
    /// may then use `transport = "as4"`).
    pub as4: Option<As4Config>,
    /// `[[partners]]`: partners with their own settings; every other partner uses the file drop.
    pub partners: Vec<PartnerConfig>,
    /// `[routing]`: where received messages go (our PIDs handled, every other forwarded to
    /// the supplier core unless configured otherwise).
    pub routing: crate::plan::routing::RoutingTable,
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
            "own_id",
            "data_dir",
            "database",
            "api",
            "console",
            "webhook",
            "workers",
            "shutdown",
            "log",
            "poll",
            "retry",
            "file_drop",
            "email",
            "as4",
            "partners",
            "routing",
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

        // One section after the other, in the order of `OPTIONS`, so the errors come in that
        // order too.
        let database = r.database(&mut root, &data_dir);
        let api = r.api(&mut root);
        let console = r.console(&mut root);
        let webhook = r.webhook(&mut root);
        let workers = r.workers(&mut root);
        let shutdown = r.shutdown(&mut root);
        let log = r.log(&mut root);
        let poll = r.poll(&mut root);
        let retry = r.retry(&mut root);
        let file_drop = r.file_drop(&mut root);
        let email = r.email(&mut root);
        let as4 = r.as4(&mut root);
        let partners = r.partners(&mut root);
        let routing = r.routing(&mut root);
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
                console,
                webhook,
                workers,
                shutdown,
                log,
                poll,
                retry,
                file_drop,
                email,
                as4,
                partners,
                routing,
            })
        } else {
            Err(r.errors)
        }
    }

    /// The documented example configuration, `deploy/mako-gateway.example.toml`, embedded in
    /// the binary (it loads without errors: `tests/config.rs`).
    pub fn example_toml() -> &'static str {
        include_str!("../../deploy/mako-gateway.example.toml")
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    pub(super) fn no_env(_: &str) -> Option<String> {
        None
    }

    pub(super) fn load(file: &str) -> Result<Config, Vec<ConfigError>> {
        Config::load(Some(file), &no_env)
    }

    pub(super) fn errors(file: &str) -> Vec<String> {
        load(file)
            .expect_err("the file has errors")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    pub(super) fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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
            ("MAKO_CONSOLE_TOKEN", "console-token-0123456789"),
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
        assert_eq!(c.console.token.as_deref(), Some("console-token-0123456789"));
        assert!(!c.console.secure_cookie);
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
    fn the_console_section_takes_a_token_and_the_cookie_setting() {
        let c = load("[console]\ntoken = \"console-token-0123456789\"\nsecure_cookie = true\n")
            .unwrap();
        assert_eq!(c.console.token.as_deref(), Some("console-token-0123456789"));
        assert!(c.console.secure_cookie);
        assert!(!format!("{:?}", c.console).contains("console-token"));
        let errors = load("[console]\ntoken = \"short\"\nsecure_cookie = \"yes\"\ncolour = 1\n")
            .unwrap_err();
        let keys: Vec<String> = errors.iter().map(|e| e.key.to_string()).collect();
        assert_eq!(
            keys,
            ["console.token", "console.secure_cookie", "console.colour"],
            "{errors:?}"
        );
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
            "colour = \"blue\": unknown key (known here: own_id, data_dir, database, api, console, webhook, workers, shutdown, log, poll, retry, file_drop, email, as4, partners, routing)",
        ];
        assert_eq!(got, expected);
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
    fn the_default_own_id_is_a_valid_market_partner_id() {
        assert!(DEFAULT_OWN_ID.parse::<MarketPartnerId>().is_ok());
        let c = load("own_id = \"9904292000003\"").unwrap();
        assert!(!c.uses_test_own_id());
    }

    #[test]
    fn routing_overrides_are_read_and_every_bad_one_is_named() {
        use crate::plan::routing::Route;
        let c = load(
            "[routing]\npids = { \"55616\" = \"refuse\" }\ntypes = { \"PRICAT\" = \"refuse\" }\n\
             refuse_code = \"Z37\"\n",
        )
        .unwrap();
        assert_eq!(
            c.routing.route("UTILMD", "S2.2", Some(55616)),
            Route::Refuse
        );
        assert_eq!(c.routing.route("PRICAT", "2.0e", None), Route::Refuse);
        assert_eq!(
            c.routing.route("MSCONS", "2.4c", Some(13017)),
            Route::Forward
        );
        assert_eq!(c.routing.refuse_code(), "Z37");

        let errors: Vec<String> = load(
            "[routing]\npids = { \"13017\" = \"handle\", \"55001\" = \"drop\", \"123\" = \"forward\" }\n\
             types = { \"CONTRL\" = \"refuse\" }\nrefuse_code = \"Z99\"\ncolour = 1\n",
        )
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(' ').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "routing.pids.55001",
                "routing.colour",
                "routing.pids.123",
                "routing.pids.13017",
                "routing.types.CONTRL",
                "routing.refuse_code"
            ],
            "{errors:#?}"
        );
        assert!(errors[3].contains("no workflow of the gateway handles PID 13017"));
    }
}
