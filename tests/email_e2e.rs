//! The e-mail transport end to end, real parts only: two gateways (`serve()` in-process), ours
//! (supplier 9900000000003) and the grid operator's (9900000000011), each with its own SQLite
//! file and brainpoolP256r1 identity from a test PKI made with the openssl CLI, each with the
//! other's certificates in its partner registry, talking through Postfix and Dovecot on
//! loopback (`scripts/mail-test-server.sh`; see `tests/email.rs` for the coordinates and the
//! skip rule). Our mailbox is `gateway+<tag>`, the partner's `partner+<tag>`: the folder
//! `<tag>` of each account, new per run. Both gateways talk SMTP and IMAP with STARTTLS,
//! trusting the script's test CA (`ca_file`, `MAKO_TEST_MAIL_CA`); the test's own helper
//! mails go plain over loopback.
//!
//! - Our order goes out by SMTP, signed and encrypted; the partner's gateway reads it over
//!   IMAP and journals it as an inbound ORDERS with transport email; `openssl cms` decrypts
//!   and verifies the same mail on its own.
//! - The partner's answer (ORDRSP 19133 A99 with our real document number, signed and
//!   encrypted with the partner's key) is mailed to us and our gateway rejects the order.
//! - A partner whose server refuses the address for good (550) has its order parked with the
//!   server's answer.
//! - Bad mail (unsigned, wrong signer, tampered, encrypted to someone else, two attachments)
//!   lands in the quarantine with its reason; a 10 MB interchange goes through; all mails
//!   are marked on the server, none is lost.
//! - A pass-through UTILMD of the supplier core goes out by mail in our envelope and the grid
//!   operator's mailed APERAK is matched back to it.

#[path = "common/gateway.rs"]
mod gateway;
#[path = "common/pki.rs"]
mod pki;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::{inbound_from, replaced, sample, Daemon, TOKEN};
use mako_gateway::config::Config;
use mako_gateway::store::Store;
use mako_gateway::transport::email::smime::{sign_then_encrypt, Certificate, Identity, SmimeError};
use mako_gateway::transport::email::{
    attachment_entity, build_mail, build_mail_with, send, Address, ImapConfig, Inbox, MailError,
    Mailbox, SmtpConfig,
};
use pki::{KeyKind, Party, Pki};
use sqlx::Row;

const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";
const MSB: &str = "9900000000029";
const MALO: &str = "51238696781";
const MALO_2: &str = "55123678945";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn host_port(value: &str) -> (String, u16) {
    let (host, port) = value.rsplit_once(':').expect("host:port");
    (host.to_string(), port.parse().expect("a port number"))
}

fn account(value: &str) -> (String, String) {
    let (user, password) = value.split_once(':').expect("user:password");
    (user.to_string(), password.to_string())
}

struct Servers {
    smtp: (String, u16),
    imap: (String, u16),
    domain: String,
    gateway: (String, String),
    partner: (String, String),
}

fn servers() -> Option<Servers> {
    let smtp = host_port(&env_or("MAKO_TEST_SMTP", "127.0.0.1:25"));
    let imap = host_port(&env_or("MAKO_TEST_IMAP", "127.0.0.1:143"));
    let up = |(h, p): &(String, u16)| {
        std::net::TcpStream::connect_timeout(
            &format!("{h}:{p}").parse().expect("an IP address"),
            Duration::from_secs(2),
        )
        .is_ok()
    };
    if !(up(&smtp) && up(&imap)) {
        assert!(
            std::env::var_os("CI").is_none(),
            "mail servers not reachable; CI must run scripts/mail-test-server.sh first"
        );
        eprintln!("notice: mail servers not reachable; run scripts/mail-test-server.sh; skipped");
        return None;
    }
    Some(Servers {
        smtp,
        imap,
        domain: env_or("MAKO_TEST_MAIL_DOMAIN", "mako.test"),
        gateway: account(&env_or("MAKO_TEST_MAIL_GATEWAY", "gateway:gateway-secret")),
        partner: account(&env_or("MAKO_TEST_MAIL_PARTNER", "partner:partner-secret")),
    })
}

fn sm_pki_subject(id: &str, name: &str) -> String {
    format!("/C=DE/O={name}/OU={id}/CN={name}.EMT.MAK")
}

/// The configuration of one side: fast loops, e-mail to `peers` (ID, address, party).
#[allow(clippy::too_many_arguments)]
fn config(
    dir: &Path,
    own_id: &str,
    me: &Party,
    address: &str,
    (imap_user, imap_password): &(String, String),
    tag: &str,
    s: &Servers,
    peers: &[(&str, String, &Party)],
) -> Config {
    let mut text = format!(
        r#"
own_id = "{own_id}"
data_dir = {data_dir:?}
[api]
addr = "127.0.0.1:0"
token = "{TOKEN}"
[workers]
lease = "5s"
[shutdown]
grace_seconds = 2
[poll]
file_drop = "50ms"
inbound = "50ms"
outbound = "50ms"
webhooks = "1s"
[retry]
base = "1s"
max = "2s"
max_attempts = 3
[email]
address = "{address}"
signing_key = {key:?}
signing_cert = {cert:?}
[email.smtp]
host = "{smtp_host}"
port = {smtp_port}
timeout = "30s"
tls = "starttls"
ca_file = {ca_file:?}
[email.imap]
host = "{imap_host}"
port = {imap_port}
tls = "starttls"
ca_file = {ca_file:?}
user = "{imap_user}"
password = "{imap_password}"
mailbox = "{tag}"
poll_interval = "1s"
timeout = "60s"
"#,
        data_dir = dir.display().to_string(),
        key = me.key.display().to_string(),
        cert = me.cert.display().to_string(),
        smtp_host = s.smtp.0,
        smtp_port = s.smtp.1,
        imap_host = s.imap.0,
        imap_port = s.imap.1,
        ca_file = env_or("MAKO_TEST_MAIL_CA", "/etc/mako-test-mail/ca.pem"),
    );
    for (id, address, party) in peers {
        text.push_str(&format!(
            "[[partners]]\nid = \"{id}\"\ntransport = \"email\"\nemail = \"{address}\"\n\
             signing_cert = {c:?}\nencryption_cert = {c:?}\n",
            c = party.cert.display().to_string()
        ));
    }
    Config::load(Some(&text), &|_| None).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

/// The raw mails the mail journal holds.
async fn journaled_mails(store: &Store) -> Vec<(String, Vec<u8>)> {
    sqlx::query("SELECT outcome, raw FROM mail_journal ORDER BY id")
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Signs and encrypts `entity` with `signer` to `recipient` and mails it to `to`.
async fn mail_entity(
    s: &Servers,
    from: &Address,
    to: &Address,
    subject: &str,
    entity: &[u8],
    signer: &Identity,
    recipient: &Certificate,
) {
    let mail = build_mail_with(
        &Mailbox::new(None, from.clone()),
        &Mailbox::new(None, to.clone()),
        b"",
        subject,
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
        |_| {
            sign_then_encrypt(entity, signer, recipient).map_err(|e: SmimeError| {
                MailError::Headers {
                    reason: e.to_string(),
                }
            })
        },
    )
    .unwrap();
    send_raw(s, from, to, &mail).await;
}

async fn send_raw(s: &Servers, from: &Address, to: &Address, mail: &[u8]) {
    let mut smtp = SmtpConfig::plain(s.smtp.0.clone(), s.smtp.1);
    smtp.timeout = Duration::from_secs(60);
    send(&smtp, from, std::slice::from_ref(to), mail)
        .await
        .expect("the test mail is sent");
}

fn identity(p: &Party) -> Identity {
    Identity::from_pem_files(&p.key, &p.cert).unwrap()
}

fn cert(p: &Party) -> Certificate {
    Certificate::from_pem_file(&p.cert).unwrap()
}

fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_order_goes_out_by_mail_and_the_mailed_answer_is_mapped_bad_mail_is_quarantined() {
    let Some(s) = servers() else { return };
    let tag = format!("e2e-{:08x}", rand::random::<u32>());
    let pki = Pki::new();
    let we = pki.issue("we", KeyKind::Brainpool, &sm_pki_subject(OWN, "Supplier"));
    let vnb = pki.issue("vnb", KeyKind::Brainpool, &sm_pki_subject(VNB, "Grid"));
    // The metering operator on RSA: the other algorithm family, here as the wrong signer.
    let msb = pki.issue("msb", KeyKind::Rsa(2048), &sm_pki_subject(MSB, "Meter"));
    let stranger = pki.issue("x", KeyKind::Brainpool, &sm_pki_subject(MSB, "Stranger"));
    let our_address: Address = format!("{}+{tag}@{}", s.gateway.0, s.domain)
        .parse()
        .unwrap();
    let vnb_address: Address = format!("{}+{tag}@{}", s.partner.0, s.domain)
        .parse()
        .unwrap();
    // The metering operator's address is unknown to the server: a permanent 550.
    let nobody = format!("nobody-{tag}@{}", s.domain);

    let ours_dir = tempfile::tempdir().unwrap();
    let theirs_dir = tempfile::tempdir().unwrap();
    let ours = Daemon::start(config(
        ours_dir.path(),
        OWN,
        &we,
        our_address.as_ref(),
        &s.gateway,
        &tag,
        &s,
        &[(VNB, vnb_address.to_string(), &vnb), (MSB, nobody, &msb)],
    ))
    .await;
    let theirs = Daemon::start(config(
        theirs_dir.path(),
        VNB,
        &vnb,
        vnb_address.as_ref(),
        &s.partner,
        &tag,
        &s,
        &[(OWN, our_address.to_string(), &we)],
    ))
    .await;

    // 1. Our order by SMTP; the partner's gateway journals it from IMAP.
    let id = ours.order("sub-mail", MALO, VNB).await;
    let path = format!("/grid-fee-reductions/{id}");
    let ordered = ours.wait_for_status(&path, "ordered").await;
    let doc = ordered["order_document"].as_str().unwrap().to_string();
    let out_transport: String =
        sqlx::query("SELECT transport FROM journal WHERE direction = 'out' AND partner = $1")
            .bind(VNB)
            .fetch_one(ours.store.pool())
            .await
            .unwrap()
            .get(0);
    assert_eq!(out_transport, "email");
    let (transport, pids, orders) = theirs
        .wait("the ORDERS in the partner's journal", || async {
            inbound_from(&theirs.store, OWN).await.into_iter().next()
        })
        .await;
    assert_eq!(transport, "email");
    assert!(pids.contains("17133"), "{pids}");
    assert!(orders.starts_with(b"UNA") || orders.starts_with(b"UNB"));
    assert!(
        String::from_utf8_lossy(&orders).contains(&doc),
        "the ORDERS carries our document number {doc}"
    );

    // 2. openssl cms decrypts and verifies the mail as the partner received it.
    // The mail's record is marked once its interchange is journaled: wait for it, not race it.
    let (outcome, raw) = theirs
        .wait("the partner's mail marked journaled", || async {
            journaled_mails(&theirs.store)
                .await
                .into_iter()
                .find(|(outcome, _)| outcome == "journaled")
        })
        .await;
    assert_eq!(outcome, "journaled");
    let work = tempfile::tempdir().unwrap();
    let mail_file = put(work.path(), "orders.eml", &raw);
    let inner = work.path().join("inner.eml");
    let content = work.path().join("content.eml");
    let ca = pki.ca();
    let args = |a: &[&Path]| {
        a.iter()
            .map(|p| p.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    let p = args(&[&mail_file, &vnb.cert, &vnb.key, &inner, &ca, &content]);
    pki.openssl(&[
        "cms", "-decrypt", "-in", &p[0], "-recip", &p[1], "-inkey", &p[2], "-out", &p[3],
    ]);
    pki.openssl(&[
        "cms", "-verify", "-in", &p[3], "-CAfile", &p[4], "-out", &p[5],
    ]);
    let verified = std::fs::read(&content).unwrap();
    let attachment = mako_gateway::transport::email::extract_single_attachment(&verified).unwrap();
    assert_eq!(
        attachment.bytes, orders,
        "openssl's content is the journaled ORDERS"
    );

    // 3. The partner's answer, mailed to us signed and encrypted as the partner: rejected.
    let answer = replaced(
        &replaced(
            &sample("ordrsp_19133_a99_rejected.edi"),
            "MG10000000001",
            &doc,
        ),
        "NB0000000001'",
        "NBMAIL000001'",
    );
    let answer = replaced(&answer, "NB0000000001'", "NBMAIL000001'");
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "ORDRSP__9900000000011_9900000000003_20260512_NBMAIL000001.txt",
        &attachment_entity(&answer, "ORDRSP.txt"),
        &identity(&vnb),
        &cert(&we),
    )
    .await;
    let rejected = ours.wait_for_status(&path, "rejected").await;
    assert_eq!(rejected["rejection"]["code"], "A99", "{rejected}");

    // 3b. Meter values for the supplier core, mailed the same way: not one of our workflows, so
    // forwarded into the feed (MSCONS 2.4c: we hold no grammar, it goes unchecked), never
    // rejected.
    let mscons = format!(
        "UNA:+.? 'UNB+UNOC:3+{VNB}:500+{OWN}:500+260512:0930+NBMAIL000002'\
         UNH+M1+MSCONS:D:04B:UN:2.4c'BGM+7+MSMAIL1+9'DTM+137:202605120930?+00:303'\
         RFF+Z13:13017'UNT+5+M1'UNZ+1+NBMAIL000002'"
    );
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "MSCONS__9900000000011_9900000000003_20260512_NBMAIL000002.txt",
        &attachment_entity(mscons.as_bytes(), "MSCONS.txt"),
        &identity(&vnb),
        &cert(&we),
    )
    .await;
    let forwarded = ours
        .wait("the mailed MSCONS in the forward feed", || async {
            let page = ours
                .get("/messages?filter[state][eq]=new&filter[type][eq]=MSCONS")
                .await;
            page["data"].as_array().and_then(|d| d.first().cloned())
        })
        .await;
    assert_eq!(forwarded["partner"], VNB);
    assert_eq!(forwarded["checked"], false);
    let detail = ours
        .get(&format!("/messages/{}", forwarded["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail["transport"], "email", "{detail}");
    assert_eq!(detail["document_number"], "MSMAIL1");

    // 4. A permanent SMTP refusal parks the order with the server's answer.
    ours.order("sub-parked", MALO_2, MSB).await;
    let parked = ours
        .wait("a parked outbox item", || async {
            let list = ours.get("/outbox?filter[state][eq]=parked").await;
            list["data"].as_array().unwrap().first().cloned()
        })
        .await;
    let error = parked["last_error"].to_string();
    assert!(error.contains("550") || error.contains("5.1.1"), "{parked}");

    // 5. Bad mail, each to our mailbox.
    let interchange = |reference: &str| {
        format!(
            "UNA:+.? 'UNB+UNOC:3+{VNB}:500+{OWN}:500+260512:0930+{reference}'\
             UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+X'UNT+2+1'UNZ+1+{reference}'"
        )
        .into_bytes()
    };
    // Unsigned and unencrypted.
    let plain = build_mail(
        &Mailbox::new(None, vnb_address.clone()),
        &Mailbox::new(None, our_address.clone()),
        &interchange("BAD1"),
        "unsigned.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
    )
    .unwrap();
    send_raw(&s, &vnb_address, &our_address, &plain).await;
    // Signed by the metering operator (a registered partner), claiming the grid operator.
    let entity = attachment_entity(&interchange("BAD2"), "wrong-signer.txt");
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "wrong signer",
        &entity,
        &identity(&msb),
        &cert(&we),
    )
    .await;
    // Encrypted to someone else.
    let entity = attachment_entity(&interchange("BAD3"), "not-for-us.txt");
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "not for us",
        &entity,
        &identity(&vnb),
        &cert(&stranger),
    )
    .await;
    // Two attachments.
    let two = format!(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=a.txt\r\n\r\n{}\r\n--b\r\n\
         Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=b.txt\r\n\r\n{}\r\n--b--\r\n",
        String::from_utf8(interchange("BAD4")).unwrap(),
        String::from_utf8(interchange("BAD5")).unwrap()
    );
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "two",
        two.as_bytes(),
        &identity(&vnb),
        &cert(&we),
    )
    .await;
    // Tampered: one base64 character of the encrypted body changed.
    let good = build_mail_with(
        &Mailbox::new(None, vnb_address.clone()),
        &Mailbox::new(None, our_address.clone()),
        &interchange("BAD6"),
        "tampered.txt",
        std::time::SystemTime::from(mako_gateway::clock::Clock::system().now()),
        |e| {
            sign_then_encrypt(e, &identity(&vnb), &cert(&we)).map_err(|e| MailError::Headers {
                reason: e.to_string(),
            })
        },
    )
    .unwrap();
    let mut tampered = good.clone();
    let at = tampered.len() - 200;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    send_raw(&s, &vnb_address, &our_address, &tampered).await;
    // 10 MB goes through.
    let mut big = format!("UNA:+.? 'UNB+UNOC:3+{VNB}:500+{OWN}:500+260512:0930+BIG1'UNH+1+ORDRSP:D:10A:UN:1.4b'BGM+Z91+BIG'FTX+AAP+++").into_bytes();
    big.extend(std::iter::repeat_n(b'X', 10 * 1024 * 1024));
    big.extend_from_slice(b"'UNT+3+1'UNZ+1+BIG1'");
    let entity = attachment_entity(&big, "big.txt");
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "big",
        &entity,
        &identity(&vnb),
        &cert(&we),
    )
    .await;

    let quarantined = ours
        .wait("five quarantined mails", || async {
            let q = ours.quarantine().await;
            (q.len() >= 5).then_some(q)
        })
        .await;
    let reasons: Vec<String> = quarantined
        .iter()
        .map(|q| format!("{}: {}", q["subject"], q["reason"]))
        .collect();
    let has = |subject: &str, needle: &str| {
        assert!(
            reasons
                .iter()
                .any(|r| r.contains(subject) && r.contains(needle)),
            "no {subject:?} with {needle:?} in {reasons:#?}"
        );
    };
    has("unsigned", "S/MIME");
    has("wrong signer", "signed by 9900000000029");
    // Issue 15: the reasons in words, naming the party.
    has("wrong signer", &format!("expected {VNB}"));
    has("not for us", "S/MIME");
    has("two", "2 attachments");
    has("tampered", "changed after it was encrypted");
    assert_eq!(quarantined.len(), 5, "{reasons:#?}");
    ours.wait("the 10 MB interchange journaled", || async {
        let rows = inbound_from(&ours.store, VNB).await;
        rows.into_iter()
            .find(|(t, _, raw)| t == "email" && raw.len() > 10 * 1024 * 1024)
    })
    .await;
    // Nothing lost: every mail of our folder is in our mail journal, handled, and marked on
    // the server (the partner's CONTRL/APERAK may still be arriving: wait for quiet).
    let mut imap = ImapConfig::plain(
        s.imap.0.clone(),
        s.imap.1,
        s.gateway.0.clone(),
        s.gateway.1.clone(),
    );
    imap.mailbox = tag.clone();
    ours.wait("every mail handled and marked", || async {
        let mails = journaled_mails(&ours.store).await;
        let mut inbox = Inbox::connect(imap.clone()).await.ok()?;
        let unmarked = inbox.pending().await.ok()?;
        inbox.logout().await;
        (unmarked.is_empty() && mails.iter().all(|(o, _)| o != "pending")).then_some(())
    })
    .await;

    ours.stop().await;
    theirs.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pass_through_goes_out_by_mail_and_the_partners_mailed_aperak_is_matched_back() {
    let Some(s) = servers() else { return };
    let tag = format!("e2e-pt-{:08x}", rand::random::<u32>());
    let pki = Pki::new();
    let we = pki.issue("we", KeyKind::Brainpool, &sm_pki_subject(OWN, "Supplier"));
    let vnb = pki.issue("vnb", KeyKind::Brainpool, &sm_pki_subject(VNB, "Grid"));
    let our_address: Address = format!("{}+{tag}@{}", s.gateway.0, s.domain)
        .parse()
        .unwrap();
    let vnb_address: Address = format!("{}+{tag}@{}", s.partner.0, s.domain)
        .parse()
        .unwrap();
    let ours_dir = tempfile::tempdir().unwrap();
    let theirs_dir = tempfile::tempdir().unwrap();
    let ours = Daemon::start(config(
        ours_dir.path(),
        OWN,
        &we,
        our_address.as_ref(),
        &s.gateway,
        &tag,
        &s,
        &[(VNB, vnb_address.to_string(), &vnb)],
    ))
    .await;
    let theirs = Daemon::start(config(
        theirs_dir.path(),
        VNB,
        &vnb,
        vnb_address.as_ref(),
        &s.partner,
        &tag,
        &s,
        &[(OWN, our_address.to_string(), &we)],
    ))
    .await;

    // 1. The core's UTILMD in through the API, out by mail in our envelope; the partner's
    //    gateway journals it as sent.
    let created = ours
        .post(
            "/interchanges",
            serde_json::json!({"partner": VNB, "message": gateway::core_utilmd()}),
        )
        .await;
    let id = created["data"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/interchanges/{id}");
    let sent = ours
        .wait("the pass-through sent by mail", || async {
            let m = ours.get(&path).await;
            m["sent_at"].is_string().then_some(m)
        })
        .await;
    assert_eq!(sent["transport"], "email", "{sent}");
    let reference = sent["interchange_ref"].as_str().unwrap().to_string();
    let (transport, pids, journaled) = theirs
        .wait("the UTILMD in the partner's journal", || async {
            inbound_from(&theirs.store, OWN).await.into_iter().next()
        })
        .await;
    assert_eq!(transport, "email");
    assert!(pids.contains("55220"), "{pids}");
    assert!(String::from_utf8_lossy(&journaled).contains(&reference));

    // 2. The grid operator's APERAK 313, mailed to us signed and encrypted as the grid
    //    operator: matched back, the message rejected with the code and text (whatever the
    //    partner's gateway answered on its own before).
    let aperak = gateway::partner_aperak(&reference, "NBMAILPT001");
    mail_entity(
        &s,
        &vnb_address,
        &our_address,
        "APERAK__9900000000011_9900000000003_20260602_NBMAILPT001.txt",
        &attachment_entity(&aperak, "APERAK.txt"),
        &identity(&vnb),
        &cert(&we),
    )
    .await;
    let rejected = ours
        .wait("the pass-through rejected", || async {
            let m = ours.get(&path).await;
            (m["state"] == "rejected").then_some(m)
        })
        .await;
    assert_eq!(
        rejected["answer"]["codes"],
        serde_json::json!(["Z29"]),
        "{rejected}"
    );
    assert_eq!(
        rejected["answer"]["acknowledgement"]["errors"][0]["text"][0],
        "Segment 12 LOC: Marktlokation fehlt"
    );

    ours.stop().await;
    theirs.stop().await;
}
