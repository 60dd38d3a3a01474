//! The e-mail transport against real mail servers on loopback: Postfix (SMTP) delivering into
//! Dovecot (IMAP), as `scripts/mail-test-server.sh` sets them up (CI runs it before the tests).
//!
//! Coordinates come from the environment, with the script's values as defaults:
//! `MAKO_TEST_SMTP` (`127.0.0.1:25`), `MAKO_TEST_IMAP` (`127.0.0.1:143`),
//! `MAKO_TEST_MAIL_DOMAIN` (`mako.test`), `MAKO_TEST_MAIL_GATEWAY` (`gateway:gateway-secret`),
//! `MAKO_TEST_MAIL_PARTNER` (`partner:partner-secret`), and for TLS `MAKO_TEST_IMAPS`
//! (`127.0.0.1:993`) and `MAKO_TEST_MAIL_CA` (`/etc/mako-test-mail/ca.pem`, the test CA the
//! script makes). When the servers do not answer, the tests print a notice and skip, except
//! under CI, where that fails them.
//!
//! Each test sends to `partner+<tag>@<domain>`, which Dovecot delivers into the folder `<tag>`
//! of the partner, so tests running at once (and earlier runs) do not see each other's mail.

mod support;

#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/pki.rs"]
#[allow(dead_code)]
mod pki;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use lettre::Message;
use mako_gateway::clock::Clock;
use mako_gateway::store::Transport;
use mako_gateway::transport::email::{
    build_mail, extract_single_attachment, run_inbox, send, Address, ImapConfig, ImapError, Inbox,
    MailError, Mailbox, ReceivedMail, SendError, SmtpConfig, TlsMode, TlsSettings,
    TransferFileName, JOURNALED_KEYWORD,
};
use mako_gateway::transport::health::{Health, Part, Reporter, State};
use mako_gateway::worker::receive::Journal;

/// The test servers and accounts.
#[derive(Debug, Clone)]
struct Servers {
    smtp: SmtpConfig,
    imap_host: String,
    imap_port: u16,
    domain: String,
    gateway: (String, String),
    partner: (String, String),
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn host_port(value: &str) -> (String, u16) {
    let (host, port) = value
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("host:port expected, found {value:?}"));
    (host.to_string(), port.parse().expect("a port number"))
}

fn account(value: &str) -> (String, String) {
    let (user, password) = value
        .split_once(':')
        .unwrap_or_else(|| panic!("user:password expected, found {value:?}"));
    (user.to_string(), password.to_string())
}

fn answers(host: &str, port: u16) -> bool {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        })
}

/// The servers, or `None` (with a notice) when they do not answer outside CI.
fn servers(test: &str) -> Option<Servers> {
    let (smtp_host, smtp_port) = host_port(&env_or("MAKO_TEST_SMTP", "127.0.0.1:25"));
    let (imap_host, imap_port) = host_port(&env_or("MAKO_TEST_IMAP", "127.0.0.1:143"));
    if !(answers(&smtp_host, smtp_port) && answers(&imap_host, imap_port)) {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: mail servers not reachable at SMTP {smtp_host}:{smtp_port} / IMAP {imap_host}:{imap_port}; CI must run scripts/mail-test-server.sh first"
        );
        eprintln!("notice: {test}: mail servers not reachable (SMTP {smtp_host}:{smtp_port}, IMAP {imap_host}:{imap_port}); run scripts/mail-test-server.sh as root; skipped");
        return None;
    }
    let mut smtp = SmtpConfig::plain(smtp_host, smtp_port);
    smtp.timeout = Duration::from_secs(30);
    Some(Servers {
        smtp,
        imap_host,
        imap_port,
        domain: env_or("MAKO_TEST_MAIL_DOMAIN", "mako.test"),
        gateway: account(&env_or("MAKO_TEST_MAIL_GATEWAY", "gateway:gateway-secret")),
        partner: account(&env_or("MAKO_TEST_MAIL_PARTNER", "partner:partner-secret")),
    })
}

impl Servers {
    fn gateway_address(&self) -> Address {
        format!("{}@{}", self.gateway.0, self.domain)
            .parse()
            .unwrap()
    }

    /// The partner's address whose mail lands in the folder `tag`.
    fn partner_address(&self, tag: &str) -> Address {
        format!("{}+{tag}@{}", self.partner.0, self.domain)
            .parse()
            .unwrap()
    }

    /// The partner's inbox folder `tag`.
    fn partner_inbox(&self, tag: &str) -> ImapConfig {
        let mut config = ImapConfig::plain(
            self.imap_host.clone(),
            self.imap_port,
            self.partner.0.clone(),
            self.partner.1.clone(),
        );
        config.mailbox = tag.to_string();
        config.timeout = Duration::from_secs(60);
        config
    }
}

/// A folder name of its own for one test run.
fn tag(test: &str) -> String {
    format!("{test}-{:08x}", rand::random::<u32>())
}

/// Connects to the folder once `count` mails wait in it (delivery goes through Postfix's
/// queue and LMTP, so it takes a moment); panics after 30 s.
async fn inbox_with(config: &ImapConfig, count: usize) -> Inbox {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let last = match Inbox::connect(config.clone()).await {
            Ok(mut inbox) => match inbox.pending().await {
                Ok(uids) if uids.len() >= count => return inbox,
                Ok(uids) => format!("{} of {count} mails there", uids.len()),
                Err(e) => e.to_string(),
            },
            // The folder is created by the first delivery.
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "{count} mails did not arrive in {}: {last}",
            config.mailbox
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn sample_interchange() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/samples/outbound/orders_17133_modul1.edi"
    ))
    .expect("sample interchange")
}

async fn gateway() -> (tempfile::TempDir, Journal, mako_gateway::store::Store) {
    let (dir, store) = support::sqlite().await;
    (dir, Journal::new(store.clone()), store)
}

fn subject_of(raw: &[u8]) -> String {
    use mailparse::MailHeaderMap;
    let (headers, _) = mailparse::parse_headers(raw).expect("headers");
    headers.get_first_value("Subject").unwrap_or_default()
}

#[tokio::test]
async fn a_mailed_interchange_is_journaled_once_and_marked_also_across_restarts() {
    let Some(servers) = servers("a_mailed_interchange_is_journaled_once") else {
        return;
    };
    let tag = tag("journal");
    let interchange = sample_interchange();
    let name = TransferFileName::of_interchange(
        &interchange,
        mako_gateway::clock::Clock::system().now().date_naive(),
    )
    .expect("file name")
    .to_string();
    assert!(name.starts_with("ORDERS__"), "{name}");
    let to = servers.partner_address(&tag);
    let mail = build_mail(
        &Mailbox::new(Some("Gateway".into()), servers.gateway_address()),
        &Mailbox::new(None, to.clone()),
        &interchange,
        &name,
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    send(&servers.smtp, &servers.gateway_address(), &[to], &mail)
        .await
        .expect("sent");

    let (_dir, gateway, store) = gateway().await;
    let journaled: Arc<Mutex<Vec<(u32, String, String)>>> = Arc::default();
    let journal = |mail: ReceivedMail| {
        let gateway = gateway.clone();
        let journaled = journaled.clone();
        async move {
            let subject = subject_of(&mail.raw);
            let attachment = extract_single_attachment(&mail.raw).map_err(|e| e.to_string())?;
            let inserted = gateway
                .receive(
                    attachment.bytes,
                    Transport::Email,
                    mako_gateway::clock::Clock::system().now(),
                )
                .await
                .map_err(|e| e.to_string())?;
            journaled
                .lock()
                .unwrap()
                .push((mail.uid, inserted.journal_id().to_string(), subject));
            Ok::<(), String>(())
        }
    };

    let config = servers.partner_inbox(&tag);
    let mut inbox = inbox_with(&config, 1).await;
    assert_eq!(inbox.fetch_new(journal).await.unwrap(), 1);
    let (uid, journal_id, subject) = journaled.lock().unwrap()[0].clone();
    assert_eq!(subject, name, "the subject is the file name");
    let item = store
        .conn()
        .await
        .unwrap()
        .journal_item(&journal_id)
        .await
        .unwrap()
        .expect("journal item");
    assert_eq!(
        item.raw, interchange,
        "the journaled bytes are the sent ones"
    );
    assert_eq!(item.transport, "email");
    let flags = inbox.flags(uid).await.unwrap();
    assert!(flags.iter().any(|f| f == "\\Seen"), "{flags:?}");
    assert!(flags.iter().any(|f| f == JOURNALED_KEYWORD), "{flags:?}");

    // The same client again: nothing new.
    assert_eq!(inbox.fetch_new(journal).await.unwrap(), 0);
    inbox.logout().await;
    // A restart (a new connection, as after a new process): still nothing.
    let mut again = Inbox::connect(config).await.unwrap();
    assert!(again.pending().await.unwrap().is_empty());
    assert_eq!(again.fetch_new(journal).await.unwrap(), 0);
    again.logout().await;
    assert_eq!(journaled.lock().unwrap().len(), 1, "journaled exactly once");
}

#[tokio::test]
async fn a_failed_journal_leaves_the_mail_unmarked_for_the_next_round() {
    let Some(servers) = servers("a_failed_journal_leaves_the_mail_unmarked") else {
        return;
    };
    let tag = tag("retry");
    let to = servers.partner_address(&tag);
    let mail = build_mail(
        &Mailbox::new(None, servers.gateway_address()),
        &Mailbox::new(None, to.clone()),
        b"UNB+UNOC:3+1:500+2:500+261123:1200+R1'UNZ+0+R1'",
        "retry.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    send(&servers.smtp, &servers.gateway_address(), &[to], &mail)
        .await
        .unwrap();
    let config = servers.partner_inbox(&tag);
    let mut inbox = inbox_with(&config, 1).await;
    let failed = inbox
        .fetch_new(|_| async { Err::<(), _>("database unreachable") })
        .await;
    assert!(matches!(
        failed,
        Err(mako_gateway::transport::email::InboxError::Journal { .. })
    ));
    let uid = inbox.pending().await.unwrap()[0];
    assert!(!inbox
        .flags(uid)
        .await
        .unwrap()
        .iter()
        .any(|f| f == JOURNALED_KEYWORD));
    assert_eq!(
        inbox
            .fetch_new(|_| async { Ok::<(), String>(()) })
            .await
            .unwrap(),
        1
    );
    inbox.logout().await;
}

/// A mail's subject and what extracting its attachment gave.
type Outcome = (String, Result<Vec<u8>, MailError>);

#[tokio::test]
async fn mails_with_two_attachments_or_none_are_refused_with_the_reason() {
    let Some(servers) = servers("mails_with_two_attachments_or_none") else {
        return;
    };
    let tag = tag("attachments");
    let to = servers.partner_address(&tag);
    let octet = ContentType::parse("application/octet-stream").unwrap();
    let two = Message::builder()
        .from(Mailbox::new(None, servers.gateway_address()))
        .to(Mailbox::new(None, to.clone()))
        .subject("two")
        .multipart(
            MultiPart::mixed()
                .singlepart(Attachment::new("a.txt".into()).body(b"UNB+A'".to_vec(), octet.clone()))
                .singlepart(Attachment::new("b.txt".into()).body(b"UNB+B'".to_vec(), octet)),
        )
        .unwrap();
    let none = Message::builder()
        .from(Mailbox::new(None, servers.gateway_address()))
        .to(Mailbox::new(None, to.clone()))
        .subject("none")
        .singlepart(SinglePart::plain("just text, no interchange".to_string()))
        .unwrap();
    for message in [&two, &none] {
        send(
            &servers.smtp,
            &servers.gateway_address(),
            std::slice::from_ref(&to),
            &message.formatted(),
        )
        .await
        .unwrap();
    }

    let outcomes: Arc<Mutex<Vec<Outcome>>> = Arc::default();
    let mut inbox = inbox_with(&servers.partner_inbox(&tag), 2).await;
    let seen = outcomes.clone();
    let count = inbox
        .fetch_new(move |mail: ReceivedMail| {
            let seen = seen.clone();
            async move {
                // The quarantine would journal the mail with this reason; it is kept either way.
                let outcome = extract_single_attachment(&mail.raw).map(|a| a.bytes);
                seen.lock().unwrap().push((subject_of(&mail.raw), outcome));
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    assert_eq!(count, 2);
    inbox.logout().await;
    let mut outcomes = outcomes.lock().unwrap().clone();
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        outcomes,
        vec![
            ("none".to_string(), Err(MailError::NoAttachment)),
            (
                "two".to_string(),
                Err(MailError::SeveralAttachments {
                    count: 2,
                    names: "a.txt, b.txt".into()
                })
            ),
        ]
    );
}

#[tokio::test]
async fn a_ten_megabyte_attachment_goes_through() {
    let Some(servers) = servers("a_ten_megabyte_attachment_goes_through") else {
        return;
    };
    let tag = tag("large");
    // 10 MiB of every byte value (a simple LCG), so base64 has to carry all of them.
    let mut state = 0x2545_f491_u32;
    let big: Vec<u8> = (0..10 * 1024 * 1024)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let to = servers.partner_address(&tag);
    let mail = build_mail(
        &Mailbox::new(None, servers.gateway_address()),
        &Mailbox::new(None, to.clone()),
        &big,
        "MSCONS__9900000000003_9900000000010_20261123_BIG1.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    send(&servers.smtp, &servers.gateway_address(), &[to], &mail)
        .await
        .expect("a 10 MB mail is accepted");
    let received: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let slot = received.clone();
    let mut inbox = inbox_with(&servers.partner_inbox(&tag), 1).await;
    inbox
        .fetch_new(move |mail: ReceivedMail| {
            let slot = slot.clone();
            async move {
                let attachment = extract_single_attachment(&mail.raw).map_err(|e| e.to_string())?;
                *slot.lock().unwrap() = Some(attachment.bytes);
                Ok::<(), String>(())
            }
        })
        .await
        .unwrap();
    inbox.logout().await;
    let got = received.lock().unwrap().take().expect("fetched");
    assert_eq!(got.len(), big.len());
    assert!(got == big, "the 10 MB attachment arrives unchanged");
}

#[tokio::test]
async fn an_unknown_local_recipient_is_a_permanent_error_with_the_server_answer() {
    let Some(servers) = servers("an_unknown_local_recipient_is_permanent") else {
        return;
    };
    let nobody: Address = format!("nobody-{:08x}@{}", rand::random::<u32>(), servers.domain)
        .parse()
        .unwrap();
    let mail = build_mail(
        &Mailbox::new(None, servers.gateway_address()),
        &Mailbox::new(None, nobody.clone()),
        b"UNB'",
        "x.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    let error = send(&servers.smtp, &servers.gateway_address(), &[nobody], &mail)
        .await
        .expect_err("refused");
    assert!(error.is_permanent(), "{error:?}");
    match &error {
        SendError::Permanent { code, answer } => {
            assert_eq!(*code / 100, 5, "{error}");
            assert!(answer.contains("nobody-"), "the server's answer: {answer}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    // Port 9 (discard) is closed on loopback: no server needed.
    let mut smtp = SmtpConfig::plain("127.0.0.1", 9);
    smtp.timeout = Duration::from_secs(5);
    let from: Address = "gateway@mako.test".parse().unwrap();
    let error = send(
        &smtp,
        &from,
        std::slice::from_ref(&from),
        b"Subject: x\r\n\r\nx\r\n",
    )
    .await
    .expect_err("nothing listens");
    assert!(error.is_transient(), "{error:?}");
    assert!(matches!(error, SendError::Connection { .. }), "{error:?}");
}

#[tokio::test]
async fn the_inbox_loop_wakes_on_idle_and_stops_on_request() {
    let Some(servers) = servers("the_inbox_loop_wakes_on_idle") else {
        return;
    };
    let tag = tag("idle");
    let to = servers.partner_address(&tag);
    let send_one = |n: u32| {
        let servers = servers.clone();
        let to = to.clone();
        async move {
            let mail = build_mail(
                &Mailbox::new(None, servers.gateway_address()),
                &Mailbox::new(None, to.clone()),
                format!("UNB+UNOC:3+1:500+2:500+261123:1200+I{n}'UNZ+0+I{n}'").as_bytes(),
                &format!("idle{n}.txt"),
                std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
            )
            .unwrap();
            send(&servers.smtp, &servers.gateway_address(), &[to], &mail)
                .await
                .unwrap();
        }
    };
    // The first mail creates the folder.
    send_one(1).await;
    let mut config = servers.partner_inbox(&tag);
    let probe = inbox_with(&config, 1).await;
    assert!(probe.uses_idle(), "Dovecot offers IDLE");
    probe.logout().await;

    // A poll interval far beyond the test's patience: only IDLE can wake the loop in time.
    config.poll_interval = Duration::from_secs(120);
    let subjects: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = subjects.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let health = Health::new();
    let task = tokio::spawn(run_inbox(
        config,
        move |mail: ReceivedMail| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(subject_of(&mail.raw));
                Ok::<(), String>(())
            }
        },
        stop_rx,
        Reporter::new(health.clone(), Part::Imap, Clock::system()),
    ));
    let wait_for = |n: usize| {
        let subjects = subjects.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while subjects.lock().unwrap().len() < n {
                assert!(Instant::now() < deadline, "mail {n} not journaled in time");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    wait_for(1).await;
    // Let the loop settle into IDLE, then deliver the second mail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_one(2).await;
    wait_for(2).await;
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops when asked")
        .unwrap();
    let mut subjects = subjects.lock().unwrap().clone();
    subjects.sort();
    assert_eq!(subjects, vec!["idle1.txt", "idle2.txt"]);
    // The loop reported the mailbox working.
    let imap = &health.snapshot().parts[0];
    assert_eq!(
        (imap.0, imap.1.state()),
        (Part::Imap, State::Up),
        "{imap:?}"
    );
    assert_eq!(imap.1.failures, 0);
}

// ---------------------------------------------------------------------------------------------
// TLS
// ---------------------------------------------------------------------------------------------

/// The test CA of `scripts/mail-test-server.sh`.
fn test_ca() -> PathBuf {
    PathBuf::from(env_or("MAKO_TEST_MAIL_CA", "/etc/mako-test-mail/ca.pem"))
}

fn imaps() -> (String, u16) {
    host_port(&env_or("MAKO_TEST_IMAPS", "127.0.0.1:993"))
}

#[tokio::test]
async fn mail_goes_out_over_starttls_and_is_read_over_starttls_and_imaps() {
    let Some(servers) = servers("mail_goes_out_over_starttls") else {
        return;
    };
    let tag = tag("tls");
    let smtp = servers
        .smtp
        .clone()
        .with_tls(TlsSettings::with_ca(TlsMode::StartTls, test_ca()));
    let mail = build_mail(
        &Mailbox::new(None, servers.gateway_address()),
        &Mailbox::new(None, servers.partner_address(&tag)),
        &sample_interchange(),
        "tls.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    send(
        &smtp,
        &servers.gateway_address(),
        &[servers.partner_address(&tag)],
        &mail,
    )
    .await
    .expect("sent over STARTTLS");

    // IMAP with STARTTLS on 143: the mail is there.
    let starttls = servers
        .partner_inbox(&tag)
        .with_tls(TlsSettings::with_ca(TlsMode::StartTls, test_ca()));
    let inbox = inbox_with(&starttls, 1).await;
    inbox.logout().await;

    // IMAPS on 993: read and marked.
    let (host, port) = imaps();
    let mut implicit = servers.partner_inbox(&tag);
    implicit.host = host;
    implicit.port = port;
    implicit.tls = TlsSettings::with_ca(TlsMode::Implicit, test_ca());
    let mut inbox = Inbox::connect(implicit).await.expect("IMAPS");
    let mut seen = Vec::new();
    let n = inbox
        .fetch_new(|m| {
            seen.push(m.raw);
            async { Ok::<_, std::convert::Infallible>(()) }
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    assert_eq!(subject_of(&seen[0]), "tls.txt");
    let attachment = extract_single_attachment(&seen[0]).unwrap();
    assert_eq!(attachment.bytes, sample_interchange());
    inbox.logout().await;
}

#[tokio::test]
async fn an_untrusted_server_certificate_fails_every_protocol_with_the_reason() {
    let Some(servers) = servers("an_untrusted_server_certificate") else {
        return;
    };
    // A CA of our own that did not issue the server's certificate.
    let stranger = pki::Pki::new();
    let untrusted = |mode| TlsSettings::with_ca(mode, stranger.ca());
    let started = Instant::now();

    let mut smtp = servers.smtp.clone().with_tls(untrusted(TlsMode::StartTls));
    smtp.timeout = Duration::from_secs(10);
    let from = servers.gateway_address();
    let error = send(
        &smtp,
        &from,
        std::slice::from_ref(&from),
        b"Subject: x\r\n\r\nx\r\n",
    )
    .await
    .expect_err("the certificate is not trusted");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "SMTP: {error}"
    );

    let mut starttls = servers
        .partner_inbox("INBOX")
        .with_tls(untrusted(TlsMode::StartTls));
    starttls.timeout = Duration::from_secs(10);
    let error = Inbox::connect(starttls).await.expect_err("not trusted");
    assert!(matches!(error, ImapError::Tls { .. }), "{error:?}");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "IMAP STARTTLS: {error}"
    );

    let (host, port) = imaps();
    let mut implicit = servers.partner_inbox("INBOX");
    implicit.host = host;
    implicit.port = port;
    implicit.tls = untrusted(TlsMode::Implicit);
    implicit.timeout = Duration::from_secs(10);
    let error = Inbox::connect(implicit).await.expect_err("not trusted");
    assert!(
        error.to_string().contains("certificate verify failed"),
        "IMAPS: {error}"
    );
    // Refused at the handshake, not after a timeout.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn plain_text_to_a_remote_host_is_refused_before_connecting() {
    let smtp = SmtpConfig::plain("mail.example.org", 25);
    let from: Address = "gateway@mako.test".parse().unwrap();
    let error = send(&smtp, &from, std::slice::from_ref(&from), b"x\r\n\r\nx\r\n")
        .await
        .expect_err("plain to a remote host");
    assert!(matches!(error, SendError::Client { .. }), "{error:?}");
    assert!(error.to_string().contains("loopback"), "{error}");

    let imap = ImapConfig::plain("192.0.2.1", 143, "u", "p");
    let error = Inbox::connect(imap)
        .await
        .expect_err("plain to a remote host");
    assert!(matches!(error, ImapError::TlsSetup(_)), "{error:?}");
    assert!(!error.is_transient());
}

// ---------------------------------------------------------------------------------------------
// Quarantine reasons (issue 15): handled by `handle_mail` on a real SQLite store, without a
// mail server (the mails are made here and handed over as IMAP would).
// ---------------------------------------------------------------------------------------------

mod quarantine_reasons {
    use std::collections::BTreeMap;

    use mako_gateway::transport::email::smime::{sign_then_encrypt, Certificate, Identity};
    use mako_gateway::transport::email::{
        build_mail_with, handle_mail, EmailPartner, EmailSetup, MailError, MailHandled, Mailbox,
        ReceivedMail,
    };
    use mako_gateway::worker::receive::Journal;

    use super::pki::{KeyKind, Party, Pki};

    const OWN: &str = "9900000000003";
    const VNB: &str = "9900000000011";
    const MSB: &str = "9900000000029";

    fn subject(id: &str, name: &str) -> String {
        format!("/C=DE/O={name}/OU={id}/CN={name} EMT.MAK")
    }

    fn identity(p: &Party) -> Identity {
        Identity::from_pem_files(&p.key, &p.cert).unwrap()
    }

    fn cert(p: &Party) -> Certificate {
        Certificate::from_pem_file(&p.cert).unwrap()
    }

    fn interchange(sender: &str, reference: &str) -> Vec<u8> {
        format!(
            "UNA:+.? 'UNB+UNOC:3+{sender}:500+{OWN}:500+260512:0930+{reference}'\
             UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+X'UNT+2+1'UNZ+1+{reference}'"
        )
        .into_bytes()
    }

    /// A mail from the grid operator's address whose S/MIME entity is `smime` of the
    /// attachment entity of `interchange`.
    fn mail(
        interchange: &[u8],
        smime: impl FnOnce(&[u8]) -> Result<Vec<u8>, MailError>,
    ) -> Vec<u8> {
        build_mail_with(
            &Mailbox::new(None, "vnb@mako.test".parse().unwrap()),
            &Mailbox::new(None, "gateway@mako.test".parse().unwrap()),
            interchange,
            "reasons.txt",
            std::time::SystemTime::UNIX_EPOCH,
            smime,
        )
        .unwrap()
    }

    fn signed_by(signer: &Party, to: &Party) -> impl FnOnce(&[u8]) -> Result<Vec<u8>, MailError> {
        let (signer, to) = (identity(signer), cert(to));
        move |entity| {
            sign_then_encrypt(entity, &signer, &to).map_err(|e| MailError::Headers {
                reason: e.to_string(),
            })
        }
    }

    #[tokio::test]
    async fn regression_quarantine_reasons_name_the_problem_and_the_party() {
        let pki = Pki::new();
        let we = pki.issue("we", KeyKind::Brainpool, &subject(OWN, "Lieferant"));
        let vnb = pki.issue("vnb", KeyKind::Brainpool, &subject(VNB, "Netz"));
        // The grid operator's new certificate, not yet in our registry.
        let vnb_renewed = pki.issue("vnb2", KeyKind::Brainpool, &subject(VNB, "Netz"));
        let msb = pki.issue("msb", KeyKind::Brainpool, &subject(MSB, "Messstelle"));
        let stranger = pki.issue(
            "stranger",
            KeyKind::Brainpool,
            &subject("9900000000045", "Fremd"),
        );
        let partner = |id: &str, p: &Party| EmailPartner {
            id: id.parse().unwrap(),
            address: Mailbox::new(None, format!("{id}@mako.test").parse().unwrap()),
            signing_cert: cert(p),
            encryption_cert: cert(p),
        };
        let setup = EmailSetup {
            address: Mailbox::new(None, "gateway@mako.test".parse().unwrap()),
            signing: identity(&we),
            decryption: identity(&we),
            smtp: None,
            imap: None,
            partners: BTreeMap::from([
                (VNB.to_string(), partner(VNB, &vnb)),
                (MSB.to_string(), partner(MSB, &msb)),
            ]),
            warnings: Vec::new(),
        };
        // An interchange encrypted to us as it is, no MIME entity, no signature.
        std::fs::write(pki.path("bare.edi"), interchange(VNB, "R1")).unwrap();
        pki.openssl(&[
            "cms",
            "-encrypt",
            "-binary",
            "-in",
            "bare.edi",
            "-aes-128-gcm",
            "-recip",
            we.cert.to_str().unwrap(),
            "-keyopt",
            "ecdh_kdf_md:sha256",
            "-out",
            "bare.eml",
        ]);
        let bare = [
            b"From: vnb@mako.test\r\nTo: gateway@mako.test\r\nSubject: bare\r\n".as_slice(),
            &std::fs::read(pki.path("bare.eml")).unwrap(),
        ]
        .concat();
        let mut tampered = mail(&interchange(VNB, "R5"), signed_by(&vnb, &we));
        let at = tampered.len() - 200;
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let cases: Vec<(&str, Vec<u8>, Vec<String>)> = vec![
            (
                "bare interchange",
                bare,
                vec!["not signed".into(), "bare interchange".into()],
            ),
            (
                "registered partner, other UNB sender",
                mail(&interchange(VNB, "R2"), signed_by(&msb, &we)),
                vec![format!(
                    "signed by {MSB} (CN=Messstelle EMT.MAK, OU={MSB}), expected {VNB}"
                )],
            ),
            (
                "renewed certificate",
                mail(&interchange(VNB, "R3"), signed_by(&vnb_renewed, &we)),
                vec![
                    format!("signed by {VNB} (CN=Netz EMT.MAK, OU={VNB})"),
                    format!("other than the one registered for {VNB}"),
                ],
            ),
            (
                "stranger",
                mail(&interchange(VNB, "R4"), signed_by(&stranger, &we)),
                vec![
                    "signed by 9900000000045 (CN=Fremd EMT.MAK, OU=9900000000045)".into(),
                    "no e-mail partner's signing certificate".into(),
                ],
            ),
            (
                "tampered",
                tampered,
                vec!["changed after it was encrypted".into()],
            ),
        ];
        let (_dir, store) = super::support::sqlite().await;
        let journal = Journal::new(store.clone());
        for (uid, (case, raw, needles)) in cases.into_iter().enumerate() {
            let handled = handle_mail(
                &store,
                &journal,
                &setup,
                ReceivedMail {
                    uid_validity: 1,
                    uid: uid as u32 + 1,
                    raw,
                },
                mako_gateway::clock::Clock::system().now(),
            )
            .await
            .unwrap();
            let MailHandled::Quarantined { reason, .. } = handled else {
                panic!("{case}: not quarantined: {handled:?}");
            };
            for needle in &needles {
                assert!(
                    reason.contains(needle.as_str()),
                    "{case}: {needle:?} not in {reason:?}"
                );
            }
            for internal in ["OpenSSL error", "error:", ".c:", "not a MIME entity"] {
                assert!(
                    !reason.contains(internal),
                    "{case}: {internal:?} in {reason:?}"
                );
            }
        }
    }
}

/// Issue 15: e-mail partners with no `[email.imap]` would start silently and never have their
/// mail read; `Setup::load` warns, naming them.
#[test]
fn regression_email_partners_without_an_imap_mailbox_are_named_in_a_warning() {
    use mako_gateway::config::Config;
    use mako_gateway::daemon::setup::Setup;
    use pki::{KeyKind, Pki};

    let pki = Pki::new();
    let we = pki.issue(
        "we",
        KeyKind::Brainpool,
        "/C=DE/O=Lieferant/OU=9900000000003/CN=Lieferant EMT.MAK",
    );
    let vnb = pki.issue(
        "vnb",
        KeyKind::Brainpool,
        "/C=DE/O=Netz/OU=9900000000011/CN=Netz EMT.MAK",
    );
    let msb = pki.issue(
        "msb",
        KeyKind::Brainpool,
        "/C=DE/O=Messstelle/OU=9900000000029/CN=Messstelle EMT.MAK",
    );
    let toml = |imap: &str| {
        format!(
            r#"own_id = "9900000000003"
[email]
address = "gateway@mako.test"
signing_key = {we_key:?}
signing_cert = {we_cert:?}
[email.smtp]
host = "127.0.0.1"
tls = "none"
{imap}
[[partners]]
id = "9900000000011"
transport = "email"
email = "vnb@mako.test"
signing_cert = {vnb:?}
encryption_cert = {vnb:?}
[[partners]]
id = "9900000000029"
transport = "email"
email = "msb@mako.test"
signing_cert = {msb:?}
encryption_cert = {msb:?}
[[partners]]
id = "9900000000045"
"#,
            we_key = we.key.display().to_string(),
            we_cert = we.cert.display().to_string(),
            vnb = vnb.cert.display().to_string(),
            msb = msb.cert.display().to_string(),
        )
    };
    let load = |text: &str| {
        let config = Config::load(Some(text), &|_| None).expect("valid configuration");
        Setup::load(&config, &mako_gateway::clock::Clock::system()).expect("valid set-up")
    };
    let setup = load(&toml(""));
    let warning = setup
        .warnings
        .iter()
        .find(|w| w.contains("[email.imap]"))
        .unwrap_or_else(|| panic!("no warning about [email.imap] in {:#?}", setup.warnings));
    for needle in ["9900000000011", "9900000000029", "never read"] {
        assert!(warning.contains(needle), "{needle:?} not in {warning:?}");
    }
    assert!(!warning.contains("9900000000045"), "{warning}");
    let with_imap = load(&toml(
        "[email.imap]\nhost = \"127.0.0.1\"\ntls = \"none\"\nuser = \"gateway\"\npassword = \"x\"",
    ));
    assert!(
        !with_imap
            .warnings
            .iter()
            .any(|w| w.contains("[email.imap]")),
        "{:#?}",
        with_imap.warnings
    );
}

// ---------------------------------------------------------------------------------------------
// Health per transport (issue 15): servers that refuse STARTTLS or do not answer make
// `/health` degraded and `/metrics` say so. The refusing servers are minimal line servers on
// loopback (Postfix and Dovecot of the test set-up offer STARTTLS, so they cannot play this).
// ---------------------------------------------------------------------------------------------

/// A loopback server that greets with `greeting` and answers each line with `answer(line)`;
/// `None` closes the connection. Returns its port.
async fn line_server(
    greeting: &'static str,
    answer: fn(&str) -> Option<String>,
) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                if write.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                while let Ok(Some(line)) = lines.next_line().await {
                    let Some(reply) = answer(&line) else { return };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, task)
}

/// SMTP without STARTTLS in its EHLO answer.
fn smtp_without_starttls(line: &str) -> Option<String> {
    let verb = line
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => Some("250-fake.test\r\n250 8BITMIME\r\n".into()),
        "QUIT" => None,
        _ => Some("502 5.5.1 not implemented\r\n".into()),
    }
}

/// IMAP that refuses STARTTLS.
fn imap_without_starttls(line: &str) -> Option<String> {
    let mut words = line.split_whitespace();
    let tag = words.next().unwrap_or("*");
    match words.next().map(str::to_ascii_uppercase).as_deref() {
        Some("LOGOUT") => None,
        Some("CAPABILITY") => Some(format!("* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n")),
        _ => Some(format!("{tag} BAD command unknown\r\n")),
    }
}

/// A port where nothing listens.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn regression_an_imap_server_refusing_starttls_is_reported_by_the_inbox_loop() {
    let (port, server) = line_server("* OK fake IMAP ready\r\n", imap_without_starttls).await;
    let health = Health::new();
    let mut config = ImapConfig::plain("127.0.0.1", port, "gateway", "secret");
    config.tls = TlsSettings {
        mode: TlsMode::StartTls,
        ..TlsSettings::none()
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(run_inbox(
        config,
        |_mail: ReceivedMail| async { Ok::<(), String>(()) },
        stop_rx,
        Reporter::new(health.clone(), Part::Imap, Clock::system()),
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    let imap = loop {
        let snapshot = health.snapshot();
        if snapshot.parts[0].1.state() == State::Down {
            break snapshot.parts[0].1.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no failure reported: {snapshot:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = imap.last_failure.unwrap().reason;
    assert!(reason.contains("does not offer STARTTLS"), "{reason}");
    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the loop stops when asked")
        .unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_health_is_degraded_and_metrics_say_so_while_imap_is_down_and_smtp_refuses_starttls(
) {
    use pki::{KeyKind, Pki};
    const VNB: &str = "9900000000011";
    let pki = Pki::new();
    let we = pki.issue(
        "we",
        KeyKind::Brainpool,
        "/C=DE/O=Lieferant/OU=9900000000003/CN=Lieferant EMT.MAK",
    );
    let vnb = pki.issue(
        "vnb",
        KeyKind::Brainpool,
        &format!("/C=DE/O=Netz/OU={VNB}/CN=Netz EMT.MAK"),
    );
    let (smtp_port, smtp) = line_server("220 fake.test ESMTP\r\n", smtp_without_starttls).await;
    let imap_port = closed_port().await;
    let data = tempfile::tempdir().unwrap();
    let text = format!(
        r#"own_id = "9900000000003"
data_dir = {data:?}
[api]
addr = "127.0.0.1:0"
[shutdown]
grace_seconds = 2
[poll]
file_drop = "50ms"
outbound = "50ms"
[retry]
base = "1s"
max = "1s"
max_attempts = 100
[email]
address = "gateway@mako.test"
signing_key = {key:?}
signing_cert = {cert:?}
[email.smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "starttls"
timeout = "5s"
[email.imap]
host = "127.0.0.1"
port = {imap_port}
tls = "starttls"
user = "gateway"
password = "secret"
timeout = "5s"
[[partners]]
id = "{VNB}"
transport = "email"
email = "vnb@mako.test"
signing_cert = {vnb_cert:?}
encryption_cert = {vnb_cert:?}
"#,
        data = data.path().display().to_string(),
        key = we.key.display().to_string(),
        cert = we.cert.display().to_string(),
        vnb_cert = vnb.cert.display().to_string(),
    );
    let config = mako_gateway::config::Config::load(Some(&text), &|_| None)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let gw = gateway::Daemon::start(config).await;
    let health = |gw: &gateway::Daemon| {
        let (client, url) = (gw.client.clone(), format!("{}/health", gw.base));
        async move {
            let response = client.get(url).send().await.unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let failing = |body: &serde_json::Value, transport: &str, partner: Option<&str>| {
        body["failing"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["transport"] == transport && f["partner"].as_str() == partner)
            .cloned()
    };
    // IMAP does not answer: degraded, named, with its error; still HTTP 200.
    let body = gw
        .wait("IMAP reported failing", || async {
            let (status, body) = health(&gw).await;
            assert_eq!(status, reqwest::StatusCode::OK, "{body}");
            failing(&body, "imap", None).map(|_| body)
        })
        .await;
    assert_eq!(body["status"], "degraded", "{body}");
    let imap = failing(&body, "imap", None).unwrap();
    assert!(
        imap["error"]
            .as_str()
            .unwrap()
            .contains(&imap_port.to_string()),
        "{imap}"
    );
    assert_eq!(body["transports"]["imap"]["state"], "down", "{body}");
    assert_eq!(body["transports"]["smtp"]["state"], "unused", "{body}");
    // An order to the grid operator: SMTP refuses STARTTLS.
    gw.order("sub-health", "51238696781", VNB).await;
    let body = gw
        .wait("SMTP reported failing", || async {
            let (_, body) = health(&gw).await;
            failing(&body, "smtp", None).map(|_| body)
        })
        .await;
    let smtp_failure = failing(&body, "smtp", None).unwrap();
    assert!(
        smtp_failure["error"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("starttls"),
        "{smtp_failure}"
    );
    assert!(failing(&body, "smtp", Some(VNB)).is_some(), "{body}");
    let metrics = gw
        .client
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "mako_transport_up{transport=\"imap\"} 0",
        "mako_transport_up{transport=\"smtp\"} 0",
        "mako_transport_up{transport=\"file_drop_inbox\"} 1",
        &format!("mako_partner_up{{partner=\"{VNB}\",transport=\"smtp\"}} 0"),
        "mako_file_drop_failed_files 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in\n{metrics}"
        );
    }
    for prefix in [
        "mako_transport_failures_total{transport=\"imap\"} ",
        "mako_transport_last_failure_timestamp_seconds{transport=\"smtp\"} ",
    ] {
        let value: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} not in\n{metrics}"))
            .parse()
            .unwrap();
        assert!(value >= 1.0, "{prefix}{value}");
    }
    gw.stop().await;
    smtp.abort();
}
