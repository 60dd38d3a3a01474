//! The world of a campaign: the partners and their identities (a test PKI made with the
//! openssl CLI), the ports, the gateway's configuration file and its database.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{Connection, Executor};

use super::pki::{KeyKind, Party, Pki, SmPkiRole};

/// Our market partner ID (the samples' supplier).
pub const OWN: &str = "9900000000003";
/// The grid operator reached over the file drop (the samples' grid operator).
pub const VNB_FILE: &str = "9900000000011";
/// The grid operator reached by e-mail.
pub const VNB_MAIL: &str = "9900000000045";
/// The grid operator reached over AS4.
pub const VNB_AS4: &str = "9900000000053";
/// The API token of the campaign gateways.
pub const TOKEN: &str = "campaign-token-0123456789abcdef0123";

/// Which transports a campaign drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `data/inbox`, `data/outbox`.
    File,
    /// S/MIME over SMTP (Postfix) and IMAP (Dovecot).
    Email,
    /// BDEW AS4 over HTTPS with brainpool mutual TLS.
    As4,
}

impl Transport {
    /// The grid operator of this transport.
    pub fn partner(self) -> &'static str {
        match self {
            Transport::File => VNB_FILE,
            Transport::Email => VNB_MAIL,
            Transport::As4 => VNB_AS4,
        }
    }

    /// Its name in the journal (`transport` column) and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Transport::File => "file",
            Transport::Email => "email",
            Transport::As4 => "as4",
        }
    }

    /// The transport of a grid operator.
    pub fn of(partner: &str) -> Option<Transport> {
        [Transport::File, Transport::Email, Transport::As4]
            .into_iter()
            .find(|t| t.partner() == partner)
    }

    /// `file,email,as4` → the list.
    pub fn parse_list(text: &str) -> Result<Vec<Transport>, String> {
        text.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| match t.trim() {
                "file" => Ok(Transport::File),
                "email" => Ok(Transport::Email),
                "as4" => Ok(Transport::As4),
                other => Err(format!("unknown transport {other:?} (file, email, as4)")),
            })
            .collect()
    }
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The loopback mail servers of `scripts/mail-test-server.sh` (the variables of
/// `tests/email.rs` point elsewhere).
#[derive(Debug, Clone)]
pub struct MailServers {
    /// SMTP host and port.
    pub smtp: (String, u16),
    /// IMAP host and port (STARTTLS).
    pub imap: (String, u16),
    /// The test CA of the servers' certificate.
    pub ca: PathBuf,
    /// The mail domain.
    pub domain: String,
    /// Our IMAP account (user, password).
    pub gateway: (String, String),
    /// The partner's IMAP account.
    pub partner: (String, String),
}

impl MailServers {
    /// The servers, or why they cannot be used.
    pub fn find() -> Result<MailServers, String> {
        let host_port = |v: String| -> Result<(String, u16), String> {
            let (h, p) = v.rsplit_once(':').ok_or(format!("{v}: not host:port"))?;
            Ok((
                h.to_string(),
                p.parse().map_err(|_| format!("{v}: bad port"))?,
            ))
        };
        let account = |v: String| -> Result<(String, String), String> {
            let (u, p) = v.split_once(':').ok_or(format!("{v}: not user:password"))?;
            Ok((u.to_string(), p.to_string()))
        };
        let s = MailServers {
            smtp: host_port(env_or("MAKO_TEST_SMTP", "127.0.0.1:25"))?,
            imap: host_port(env_or("MAKO_TEST_IMAP", "127.0.0.1:143"))?,
            ca: env_or("MAKO_TEST_MAIL_CA", "/etc/mako-test-mail/ca.pem").into(),
            domain: env_or("MAKO_TEST_MAIL_DOMAIN", "mako.test"),
            gateway: account(env_or("MAKO_TEST_MAIL_GATEWAY", "gateway:gateway-secret"))?,
            partner: account(env_or("MAKO_TEST_MAIL_PARTNER", "partner:partner-secret"))?,
        };
        for (h, p) in [&s.smtp, &s.imap] {
            let addr = format!("{h}:{p}");
            let parsed = addr
                .parse()
                .map_err(|_| format!("{addr}: not an IP address"))?;
            std::net::TcpStream::connect_timeout(&parsed, Duration::from_secs(2)).map_err(|e| {
                format!("mail server {addr} not reachable ({e}); run scripts/mail-test-server.sh as root, or leave out --transports email")
            })?;
        }
        Ok(s)
    }
}

/// A free TCP port on loopback (bound and released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One market partner's AS4 identity (separate key pairs for signing, encryption and TLS).
#[derive(Debug, Clone)]
pub struct As4Identity {
    /// Signing.
    pub sig: Party,
    /// Encryption.
    pub enc: Party,
    /// TLS.
    pub tls: Party,
}

/// Everything a campaign run is made of, in a temporary folder.
#[derive(Debug)]
pub struct World {
    /// The temporary folder (kept with `--keep`).
    pub dir: PathBuf,
    /// The test PKI (its CA signs every certificate; its CRL is served on loopback).
    pub pki: Pki,
    /// Our AS4 identity.
    pub ours_as4: As4Identity,
    /// The AS4 grid operator's identity.
    pub vnb_as4: As4Identity,
    /// Our S/MIME identity.
    pub ours_mail: Party,
    /// The e-mail grid operator's S/MIME identity.
    pub vnb_mail: Party,
    /// Our AS4 receiver's port (fixed across restarts: the partner sends there).
    pub our_as4_port: u16,
    /// The AS4 grid operator's port.
    pub peer_as4_port: u16,
    /// The mail servers, when e-mail is driven.
    pub mail: Option<MailServers>,
    /// The folder of this run in both mail accounts (plus-addressing: `user+tag@domain`).
    pub mail_tag: String,
    /// The transports driven.
    pub transports: Vec<Transport>,
    /// Keeps the CRL server's files alive.
    _crl: Arc<Mutex<HashMap<String, Vec<u8>>>>,
}

fn sm_pki_subject(id: &str, name: &str) -> String {
    format!("/C=DE/O={name}/OU={id}/CN={name}.EMT.MAK")
}

impl World {
    /// Makes the PKI, the identities and the ports; `dir` is the run's folder.
    pub fn new(dir: PathBuf, transports: Vec<Transport>, tag: &str) -> Result<World, String> {
        let mail = if transports.contains(&Transport::Email) {
            Some(MailServers::find()?)
        } else {
            None
        };
        let crl = Arc::new(Mutex::new(HashMap::new()));
        let url = format!("{}/ca.crl", super::pki::serve_files(crl.clone()));
        let mut pki = Pki::new();
        pki.set_crl_url(&url);
        let as4 = |name: &str, id: &str| As4Identity {
            sig: pki.issue_sm_pki(name, id, SmPkiRole::Signing),
            enc: pki.issue_sm_pki(name, id, SmPkiRole::Encryption),
            tls: pki.issue_sm_pki(name, id, SmPkiRole::Tls),
        };
        let ours_as4 = as4("supplier", OWN);
        let vnb_as4 = as4("grid", VNB_AS4);
        let ours_mail = pki.issue(
            "we-mail",
            KeyKind::Brainpool,
            &sm_pki_subject(OWN, "Supplier"),
        );
        let vnb_mail = pki.issue(
            "vnb-mail",
            KeyKind::Brainpool,
            &sm_pki_subject(VNB_MAIL, "GridMail"),
        );
        crl.lock()
            .unwrap()
            .insert("/ca.crl".into(), std::fs::read(pki.crl(&[])).unwrap());
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(World {
            dir,
            pki,
            ours_as4,
            vnb_as4,
            ours_mail,
            vnb_mail,
            our_as4_port: free_port(),
            peer_as4_port: free_port(),
            mail,
            mail_tag: tag.to_string(),
            transports,
            _crl: crl,
        })
    }

    /// Whether `t` is driven.
    pub fn drives(&self, t: Transport) -> bool {
        self.transports.contains(&t)
    }

    /// Our mail address (`gateway+tag@domain`).
    pub fn our_address(&self) -> String {
        let m = self.mail.as_ref().expect("mail servers");
        format!("{}+{}@{}", m.gateway.0, self.mail_tag, m.domain)
    }

    /// The e-mail grid operator's address.
    pub fn partner_address(&self) -> String {
        let m = self.mail.as_ref().expect("mail servers");
        format!("{}+{}@{}", m.partner.0, self.mail_tag, m.domain)
    }

    /// The gateway's configuration (the database, data folder, API address and token come
    /// from the environment: see [`super::gateway::Gateway::start`]). `smtp_port` replaces
    /// the mail server's (the fault campaign puts a switchable relay in between); `extra` is
    /// appended.
    pub fn config_text(&self, smtp_port: Option<u16>, lease: &str, extra: &str) -> String {
        let p = |path: &Path| format!("{:?}", path.display().to_string());
        let mut text = format!(
            "[workers]\ninbound = 2\nlease = \"{lease}\"\n[shutdown]\ngrace_seconds = 2\n\
             [poll]\nfile_drop = \"20ms\"\ninbound = \"20ms\"\noutbound = \"20ms\"\nwebhooks = \"1s\"\n\
             [retry]\nbase = \"200ms\"\nmax = \"1s\"\nmax_attempts = 1000\n"
        );
        if let (Some(m), true) = (&self.mail, self.drives(Transport::Email)) {
            text.push_str(&format!(
                "[email]\naddress = \"{address}\"\nsigning_key = {key}\nsigning_cert = {cert}\n\
                 [email.smtp]\nhost = \"{smtp_host}\"\nport = {smtp_port}\ntimeout = \"20s\"\n\
                 tls = \"starttls\"\nca_file = {ca}\n\
                 [email.imap]\nhost = \"{imap_host}\"\nport = {imap_port}\ntls = \"starttls\"\n\
                 ca_file = {ca}\nuser = \"{user}\"\npassword = \"{password}\"\nmailbox = \"{tag}\"\n\
                 poll_interval = \"1s\"\ntimeout = \"20s\"\n",
                address = self.our_address(),
                key = p(&self.ours_mail.key),
                cert = p(&self.ours_mail.cert),
                smtp_host = m.smtp.0,
                smtp_port = smtp_port.unwrap_or(m.smtp.1),
                imap_host = m.imap.0,
                imap_port = m.imap.1,
                ca = p(&m.ca),
                user = m.gateway.0,
                password = m.gateway.1,
                tag = self.mail_tag,
            ));
        }
        if self.drives(Transport::As4) {
            let o = &self.ours_as4;
            text.push_str(&format!(
                "[as4]\nlisten = \"127.0.0.1:{port}\"\nsigning_key = {sk}\nsigning_cert = {sc}\n\
                 encryption_key = {ek}\nencryption_cert = {ec}\ntls_key = {tk}\ntls_cert = {tc}\n\
                 trust_anchors = [{ca}]\nconnect_timeout = \"2s\"\nresponse_timeout = \"20s\"\n",
                port = self.our_as4_port,
                sk = p(&o.sig.key),
                sc = p(&o.sig.cert),
                ek = p(&o.enc.key),
                ec = p(&o.enc.cert),
                tk = p(&o.tls.key),
                tc = p(&o.tls.cert),
                ca = p(&self.pki.ca()),
            ));
        }
        text.push_str(extra);
        if self.drives(Transport::Email) {
            text.push_str(&format!(
                "[[partners]]\nid = \"{VNB_MAIL}\"\ntransport = \"email\"\nemail = \"{}\"\n\
                 signing_cert = {c}\nencryption_cert = {c}\n",
                self.partner_address(),
                c = p(&self.vnb_mail.cert),
            ));
        }
        if self.drives(Transport::As4) {
            text.push_str(&format!(
                "[[partners]]\nid = \"{VNB_AS4}\"\ntransport = \"as4\"\n\
                 as4_url = \"https://127.0.0.1:{}/as4\"\nsigning_cert = {}\nencryption_cert = {}\n",
                self.peer_as4_port,
                p(&self.vnb_as4.sig.cert),
                p(&self.vnb_as4.enc.cert),
            ));
        }
        text
    }
}

/// The database of a campaign run.
#[derive(Debug, Clone)]
pub enum Database {
    /// A SQLite file.
    Sqlite {
        /// `sqlite://…`.
        url: String,
    },
    /// A fresh database on a PostgreSQL server, dropped at the end.
    Postgres {
        /// The server's administrative URL (a database to connect to for CREATE/DROP).
        admin_url: String,
        /// The database's name.
        name: String,
        /// Its URL.
        url: String,
    },
}

/// The PostgreSQL server of the machine (`MAKO_CAMPAIGN_POSTGRES_URL` overrides).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

impl Database {
    /// A SQLite file in `dir`.
    pub fn sqlite(dir: &Path) -> Database {
        Database::Sqlite {
            url: format!("sqlite://{}/db/gateway.db", dir.display()),
        }
    }

    /// A fresh database `mako_campaign_<tag>` on the server of `admin_url`.
    pub async fn postgres(admin_url: &str, tag: &str) -> Result<Database, String> {
        sqlx::any::install_default_drivers();
        let mut admin = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::AnyConnection::connect(admin_url),
        )
        .await
        .map_err(|_| format!("PostgreSQL at {admin_url} did not answer"))?
        .map_err(|e| format!("PostgreSQL at {admin_url}: {e}"))?;
        let name = format!("mako_campaign_{tag}");
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        let _ = admin.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url, String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        Ok(Database::Postgres {
            admin_url: admin_url.to_string(),
            url: format!("{server}/{name}{query}"),
            name,
        })
    }

    /// The URL the gateway gets.
    pub fn url(&self) -> &str {
        match self {
            Database::Sqlite { url } | Database::Postgres { url, .. } => url,
        }
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }

    /// Drops a PostgreSQL database (nothing for SQLite: its folder goes with the run's).
    pub async fn drop_database(&self) {
        if let Database::Postgres {
            admin_url, name, ..
        } = self
        {
            if let Ok(mut admin) = sqlx::AnyConnection::connect(admin_url).await {
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await;
                let _ = admin.close().await;
            }
        }
    }
}
