//! `serve`: the configuration checked as a whole ([`Setup::load`]) before anything else, then
//! the store, the API and the loops (file-drop pickup, the IMAP mailbox when `[email.imap]` is
//! configured, the AS4 receiver when `[as4]` is, inbound, outbound, webhooks), with graceful
//! shutdown: on SIGTERM/SIGINT no new work is taken, the items in flight are finished within
//! the grace period, and whatever is still running then is abandoned with nothing committed
//! (its lease expires and the item is taken again).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::setup::Setup;
use crate::clock::Clock;
use crate::config::{exit_code_for_config_errors, Config, ConfigError};
use crate::store::{Store, StoreError};
use crate::transport::email::MailHandled;
use crate::transport::health::{Health, Part, RecordingSink, Reporter};
use crate::transport::InboundSink;
use crate::worker::inbound::INBOUND_BATCH;
use crate::worker::receive::Journal;
use crate::worker::WorkerError;

/// Why `serve` stopped or did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration (with the key and certificate files it names) is wrong: nothing was
    /// started.
    #[error("{} configuration error(s): {}", .0.len(), .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Config(Vec<ConfigError>),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A listening socket could not be opened.
    #[error("binding {what} to {addr}: {source}")]
    Bind {
        /// Which listener (`the API`, `the AS4 receiver`).
        what: &'static str,
        /// The address.
        addr: std::net::SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// The webhook client could not be made.
    #[error(transparent)]
    Webhooks(#[from] crate::worker::webhooks::ClientError),
}

impl ServeError {
    /// The process exit code: 64 (EX_USAGE) for configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            ServeError::Config(_) => exit_code_for_config_errors(),
            _ => 1,
        }
    }
}

/// This instance's name in leases and claimed file names: host name and process id.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".into());
    let clean: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{clean}-{}", std::process::id())
}

/// A new API token: 32 random bytes, hex.
pub fn generate_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Raises the soft limit of open file descriptors to the hard limit (every API connection,
/// mail session, inbox file and database connection is one; the common soft default of 1,024
/// is reached by a few hundred idle clients). Returns the limit now in force, `None` where it
/// cannot be read.
pub fn raise_descriptor_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(hard)) = (limit.current, limit.maximum) {
        if current < hard {
            limit.current = Some(hard);
            if setrlimit(Resource::Nofile, limit).is_err() {
                return Some(current);
            }
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The file under the data folder that keeps a generated API token across restarts.
pub const TOKEN_FILE: &str = "api-token";

/// The API token when none is configured: the one kept in `data_dir/api-token` (mode 0600),
/// or a new one written there on the first run (then `true`). A restart never rotates it
/// silently (a crash under `Restart=on-failure` would lock the core system out).
pub fn kept_token(data_dir: &std::path::Path) -> std::io::Result<(String, bool)> {
    let path = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let token = text.trim().to_string();
            if token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok((token, false));
            }
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a token (64 hex digits)", path.display()),
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::store::private_dir(data_dir)?;
            let token = generate_token();
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path)?;
            std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())?;
            file.sync_all()?;
            Ok((token, true))
        }
        Err(e) => Err(e),
    }
}

async fn bind(
    what: &'static str,
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), ServeError> {
    let bind_error = |source| ServeError::Bind { what, addr, source };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    Ok((listener, bound))
}

/// Runs the gateway until `shutdown` completes, reading the time from `clock`. `ready`
/// receives the API's bound address once it listens (tests bind port 0).
pub async fn serve(
    config: Config,
    token: String,
    clock: Clock,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<(), ServeError> {
    // 1. The whole configuration, key material included, before the store is touched.
    let setup = Setup::load(&config, &clock).map_err(ServeError::Config)?;
    for warning in &setup.warnings {
        tracing::warn!("{warning}");
    }
    // 2. The data folder (the file drop's inbox and outbox hold raw interchanges) readable
    // by us alone when we create it, then the store and what works on it.
    if let Err(e) = crate::store::private_dir(&config.data_dir) {
        tracing::warn!(dir = %config.data_dir.display(), error = %e, "cannot create the data folder");
    }
    let store = Store::connect_with(&config.database.url, config.database.max_connections).await?;
    if let Some(as4) = &setup.as4 {
        as4.attach(&store);
    }
    let worker = worker_name();
    // What each transport did last, for /health and /metrics; every received interchange is
    // reported as it is journaled.
    let health = transport_health(&setup);
    let journal: Arc<dyn InboundSink> = Arc::new(RecordingSink::new(
        Arc::new(Journal::new(store.clone())),
        health.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);

    let (listener, addr) = bind("the API", config.api.addr).await?;
    tracing::info!(%addr, worker = %worker, database = ?store.backend(), "listening");
    let app = crate::api::router(
        crate::api::AppState::new(store.clone(), vec![token])
            .with_clock(clock.clone())
            .with_own_id(config.own_id.clone())
            .with_transport_health(health.clone(), config.inbox_dir())
            .with_certificates(watched_certificates(&config))
            .with_console(config.console.token.clone(), config.console.secure_cookie),
    );
    let mut api_stop = stop_rx.clone();
    let limits = config.api.limits;
    let api = tokio::spawn(async move {
        crate::api::server::serve(listener, app, limits, async move {
            let _ = api_stop.wait_for(|s| *s).await;
        })
        .await;
    });
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    let mut tasks = Vec::new();
    let stopped = |stop_rx: &watch::Receiver<bool>| {
        let mut stop = stop_rx.clone();
        async move {
            let _ = stop.wait_for(|s| *s).await;
        }
    };
    // The AS4 receiver: HTTPS with mutual TLS on its own port.
    if let Some(runtime) = setup.as4.clone() {
        let retention = chrono::Duration::from_std(runtime.config.dedup_retention)
            .unwrap_or(chrono::Duration::days(10));
        if let Some(listen) = runtime.config.listen {
            let (listener, bound) = bind("the AS4 receiver", listen).await?;
            tracing::info!(addr = %bound, path = %runtime.config.path, "AS4 receiver listening");
            let (journal, store, stop) = (journal.clone(), store.clone(), stopped(&stop_rx));
            let (health, clock, stopping) = (health.clone(), clock.clone(), stop_rx.clone());
            health.use_part(Part::As4Receiver);
            tasks.push(tokio::spawn(async move {
                runtime.serve(journal, store, listener, stop).await;
                if !*stopping.borrow() {
                    let reason = "the AS4 receiver stopped serving";
                    health.failed(Part::As4Receiver, None, &reason, clock.now());
                    tracing::error!("{reason}");
                }
            }));
        }
        // Received message ids are forgotten after the retention (≥ 7 days), checked hourly.
        let (store, clock) = (store.clone(), clock.clone());
        tasks.push(tokio::spawn(run_loop(
            "as4-dedup-purge",
            stop_rx.clone(),
            Duration::from_secs(3600),
            move || {
                let (store, before) = (store.clone(), clock.now() - retention);
                async move {
                    let purged = store.conn().await?.purge_as4_dedup(before).await?;
                    if purged > 0 {
                        tracing::info!(purged, "old AS4 message ids forgotten");
                    }
                    Ok::<_, WorkerError>(None)
                }
            },
        )));
    }
    // File-drop pickup: journal first, then move the file away.
    {
        let (journal, clock, worker) = (journal.clone(), clock.clone(), worker.clone());
        let inbox = config.inbox_dir();
        let (lease, max_file_bytes) = (config.workers.lease, config.file_drop.max_file_bytes);
        let health = health.clone();
        tasks.push(tokio::spawn(run_loop(
            "file-drop",
            stop_rx.clone(),
            config.poll.file_drop,
            move || {
                let (journal, inbox, worker, health, now) = (
                    journal.clone(),
                    inbox.clone(),
                    worker.clone(),
                    health.clone(),
                    clock.now(),
                );
                async move {
                    let picked = crate::transport::file_drop::pick_up(
                        &inbox,
                        &worker,
                        lease,
                        max_file_bytes,
                        &*journal,
                        now,
                    )
                    .await;
                    match &picked {
                        Ok(_) => health.succeeded(Part::FileDropInbox, None, now),
                        Err(e) => health.failed(Part::FileDropInbox, None, e, now),
                    }
                    picked
                }
            },
        )));
    }
    // The mailbox: every mail journaled raw and handled before it is marked on the server.
    if let Some(setup) = setup.email.clone() {
        if let Some(imap) = setup.imap.clone() {
            let (journal, store, clock) = (journal.clone(), store.clone(), clock.clone());
            let report = Reporter::new(health.clone(), Part::Imap, clock.clone());
            let health = health.clone();
            tracing::info!(mailbox = %setup.mailbox_name(), "reading mail");
            tasks.push(tokio::spawn(crate::transport::email::run_inbox(
                imap,
                move |mail| {
                    let (journal, store, setup, health, now) = (
                        journal.clone(),
                        store.clone(),
                        setup.clone(),
                        health.clone(),
                        clock.now(),
                    );
                    async move {
                        let handled = crate::transport::email::handle_mail(
                            &store, &*journal, &setup, mail, now,
                        )
                        .await?;
                        // A partner's signed mail refused all the same: that partner's failure.
                        if let MailHandled::Quarantined {
                            reason,
                            signed_by: Some(partner),
                            ..
                        } = &handled
                        {
                            let reason = format!("mail quarantined: {reason}");
                            health.partner_failed(Part::Imap, partner, &reason, now);
                        }
                        Ok::<_, StoreError>(())
                    }
                },
                stop_rx.clone(),
                report,
            )));
        }
    }
    for i in 0..config.workers.inbound.max(1) {
        let (inbound, clock) = (
            Arc::new(setup.inbound_worker(&store, &worker)),
            clock.clone(),
        );
        tasks.push(tokio::spawn(run_loop(
            if i == 0 { "inbound" } else { "inbound+" },
            stop_rx.clone(),
            config.poll.inbound,
            move || {
                let (inbound, now) = (inbound.clone(), clock.now());
                async move { inbound.process_batch(now, INBOUND_BATCH).await }
            },
        )));
    }
    for _ in 0..config.workers.outbound.max(1) {
        let (outbound, clock) = (
            Arc::new(
                setup
                    .outbound_worker(&config, &store, &worker)
                    .with_health(health.clone()),
            ),
            clock.clone(),
        );
        tasks.push(tokio::spawn(run_loop(
            "outbound",
            stop_rx.clone(),
            config.poll.outbound,
            move || {
                let (outbound, now) = (outbound.clone(), clock.now());
                async move { outbound.send_next(now).await.map(|r| r.map(|_| 1)) }
            },
        )));
    }
    for _ in 0..config.workers.webhooks.max(1) {
        let (webhooks, clock) = (
            Arc::new(setup.webhook_worker(&config, &store, &worker)?),
            clock.clone(),
        );
        tasks.push(tokio::spawn(run_loop(
            "webhooks",
            stop_rx.clone(),
            config.poll.webhooks,
            move || {
                let (webhooks, now) = (webhooks.clone(), clock.now());
                async move { webhooks.deliver_next(now).await.map(|r| r.map(|_| 1)) }
            },
        )));
    }

    {
        // The answers we wait for: once past due and unmet, marked overdue with a webhook
        // (`*.answer_overdue`); every instance sweeps, each deadline is marked once.
        let (store, clock) = (store.clone(), clock.clone());
        tasks.push(tokio::spawn(run_loop(
            "deadlines",
            stop_rx.clone(),
            config.poll.webhooks.max(Duration::from_secs(1)),
            move || {
                let (store, now) = (store.clone(), clock.now());
                async move {
                    let mut tx = store.begin().await?;
                    let overdue = tx.sweep_overdue(now, DEADLINE_SWEEP).await?;
                    tx.commit().await?;
                    for d in &overdue {
                        tracing::warn!(awaiting = %d.awaiting, partner = %d.partner, reference = %d.reference, due_at = %d.due_at, "answer overdue");
                    }
                    Ok::<_, crate::store::StoreError>(
                        (overdue.len() == DEADLINE_SWEEP as usize).then_some(overdue.len()),
                    )
                }
            },
        )));
    }

    shutdown.await;
    tracing::info!(grace = ?config.shutdown.grace, "shutting down: no new work");
    let _ = stop_tx.send(true);
    let mut aborts: Vec<tokio::task::AbortHandle> =
        tasks.iter().map(|t| t.abort_handle()).collect();
    aborts.push(api.abort_handle());
    let all = async {
        for t in tasks {
            let _ = t.await;
        }
        let _ = api.await;
    };
    if tokio::time::timeout(config.shutdown.grace, all)
        .await
        .is_err()
    {
        // Dropping a task drops its open transaction, which rolls back: nothing half-done is
        // committed, and the item's lease expires so that it is taken again.
        tracing::warn!("grace period over: abandoning work in flight (its leases will expire)");
        for a in &aborts {
            a.abort();
        }
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The health registry with the transports `setup` configures listed as in use (the AS4
/// receiver once it listens, IMAP once its loop starts).
fn transport_health(setup: &Setup) -> Health {
    let health = Health::new();
    health.use_part(Part::FileDropInbox);
    health.use_part(Part::FileDropOutbox);
    if setup.email.as_ref().is_some_and(|e| e.smtp.is_some()) {
        health.use_part(Part::Smtp);
    }
    if setup.as4.is_some() {
        health.use_part(Part::As4Send);
    }
    health
}

/// Overdue answers marked per sweep (one transaction).
const DEADLINE_SWEEP: u32 = 100;

/// Runs `step` until stopped: at once again after work, after `poll` when idle or failed.
async fn run_loop<F, Fut, E>(
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    poll: Duration,
    step: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<usize>, E>>,
    E: std::fmt::Display,
{
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match step().await {
            Ok(Some(_)) => continue,
            Ok(None) => poll,
            Err(e) => {
                tracing::warn!(loop_ = name, error = %e, "step failed; trying again");
                poll.max(Duration::from_millis(200))
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn signals() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_descriptor_limit_is_raised_to_the_hard_one() {
        use rustix::process::{getrlimit, Resource};
        let limit = raise_descriptor_limit().expect("readable on this system");
        let now = getrlimit(Resource::Nofile);
        assert_eq!(now.current, Some(limit));
        if let Some(hard) = now.maximum {
            assert_eq!(limit, hard);
        }
    }

    #[test]
    fn regression_a_generated_token_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (first, new) = kept_token(&data).unwrap();
        assert!(new);
        let (again, new) = kept_token(&data).unwrap();
        assert_eq!((again.as_str(), new), (first.as_str(), false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(TOKEN_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(data.join(TOKEN_FILE), "short").unwrap();
        assert!(kept_token(&data).is_err());
    }
}

/// The certificates of the configuration whose expiry the console's health page watches: our
/// e-mail and AS4 certificates and every partner's. Read after [`Setup::load`] checked them; a
/// file that cannot be read here is left out (setup would have refused it).
fn watched_certificates(config: &Config) -> Vec<crate::api::console::pages::Certificate> {
    let mut files: Vec<(String, &std::path::Path)> = Vec::new();
    if let Some(e) = &config.email {
        files.push(("own e-mail signing".into(), &e.signing_cert));
        if e.decryption_cert != e.signing_cert {
            files.push(("own e-mail decryption".into(), &e.decryption_cert));
        }
    }
    if let Some(a) = &config.as4 {
        files.push(("own AS4 signing".into(), &a.signing_cert));
        files.push(("own AS4 encryption".into(), &a.encryption_cert));
        files.push(("own AS4 TLS".into(), &a.tls_cert));
    }
    for p in &config.partners {
        let id = p.id.as_str();
        if let Some(e) = &p.email {
            files.push((format!("partner {id} e-mail signing"), &e.signing_cert));
            files.push((
                format!("partner {id} e-mail encryption"),
                &e.encryption_cert,
            ));
        }
        if let Some(a) = &p.as4 {
            files.push((format!("partner {id} AS4 signing"), &a.signing_cert));
            files.push((format!("partner {id} AS4 encryption"), &a.encryption_cert));
        }
    }
    files
        .into_iter()
        .filter_map(|(owner, path)| certificate_in(owner, path))
        .collect()
}

/// The first certificate of a PEM file: its subject and expiry, for the console.
fn certificate_in(
    owner: String,
    path: &std::path::Path,
) -> Option<crate::api::console::pages::Certificate> {
    let epoch = openssl::asn1::Asn1Time::from_unix(0).ok()?;
    let pem = std::fs::read(path).ok()?;
    let cert = openssl::x509::X509::from_pem(&pem).ok()?;
    let diff = epoch.diff(cert.not_after()).ok()?;
    let seconds = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    let subject = cert
        .subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(crate::api::console::pages::Certificate {
        owner,
        subject,
        not_after: chrono::DateTime::from_timestamp(seconds, 0)?,
    })
}

#[cfg(test)]
mod certificate_tests {
    use super::certificate_in;

    #[test]
    fn reads_the_subject_and_expiry_of_a_pem_certificate() {
        use openssl::asn1::Asn1Time;
        use openssl::pkey::PKey;
        use openssl::x509::{X509NameBuilder, X509};
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "vnb.example").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(1_700_000_000).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(1_800_000_000).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.pem");
        std::fs::write(&path, b.build().to_pem().unwrap()).unwrap();
        let c = certificate_in("partner".into(), &path).unwrap();
        assert_eq!(c.subject, "CN=vnb.example");
        assert_eq!(c.not_after.timestamp(), 1_800_000_000);
        assert!(certificate_in("x".into(), &dir.path().join("missing.pem")).is_none());
    }
}
