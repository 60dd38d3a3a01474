//! `[email]` (our mail identity, `[email.smtp]`, `[email.imap]`) and the e-mail settings of a
//! partner.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use toml::Table;

use super::tls::{
    plaintext_allowed, TlsMode, TlsSettings, DEFAULT_MAIL_TIMEOUT, DEFAULT_POLL_INTERVAL,
};

use super::error::{ConfigKey, Problem};
use super::reader::{join, render_value, reported, Reader};
use super::values::{parse_host, parse_mail_address, parse_non_empty, parse_path};
use super::{Transport, MAX_POLL_INTERVAL, MIN_INTERVAL};

/// Default SMTP port: 25, the port of a relay on the same host or network (submission with
/// authentication usually is 587 with `tls = "starttls"`, or 465 with `tls = "tls"`).
pub const DEFAULT_SMTP_PORT: u16 = 25;
/// Default IMAP port: 143 (IMAP with STARTTLS; IMAPS, `tls = "tls"`, is 993).
pub const DEFAULT_IMAP_PORT: u16 = 143;
/// Default IMAP mailbox.
pub const DEFAULT_IMAP_MAILBOX: &str = "INBOX";

/// `[email]`: what the e-mail transport needs of us. Only paths here: the keys and
/// certificates are read (and checked against the partner registry) when `serve` starts, by
/// `transport::email::EmailSetup::load`, which reports its errors like
/// [`Config::load`](super::Config::load).
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

impl Reader<'_> {
    /// `tls` and `ca_file` of `[email.smtp]` or `[email.imap]` (`p`): `starttls` when unset;
    /// `none` is refused unless `host` is loopback (passwords would go in clear).
    pub(super) fn tls(&mut self, s: &mut Table, p: &str, host: Option<&str>) -> TlsSettings {
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

    pub(super) fn email(&mut self, root: &mut Table) -> Option<EmailConfig> {
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
                .unwrap_or(DEFAULT_MAIL_TIMEOUT);
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
                .unwrap_or(DEFAULT_POLL_INTERVAL);
            let timeout = self
                .duration(
                    &mut s,
                    p,
                    "timeout",
                    Duration::from_secs(1),
                    MAX_POLL_INTERVAL,
                )
                .unwrap_or(DEFAULT_MAIL_TIMEOUT);
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
    pub(super) fn partner_email(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{env_of, errors, load};
    use crate::config::{Config, Transport};
    use crate::ids::MarketPartnerId;

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
}
