//! `serve`: the store, the API and the loops (file-drop pickup, the IMAP mailbox when
//! `[email.imap]` is configured, inbound, outbound, webhooks),
//! with graceful shutdown: on SIGTERM/SIGINT no new work is taken, the items in flight are
//! finished within the grace period, and whatever is still running then is abandoned with
//! nothing committed (its lease expires and the item is taken again).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::gateway::{DaemonError, Gateway};
use crate::config::Config;
use crate::store::{Inserted, Store, Transport};

/// Inbound items processed per transaction by one worker (one commit per batch).
pub const INBOUND_BATCH: u32 = 32;

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

/// Runs the gateway until `shutdown` completes. `ready` receives the API's bound address
/// once it listens (tests bind port 0).
pub async fn serve(
    config: Config,
    token: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<std::net::SocketAddr>>,
) -> Result<(), DaemonError> {
    let store = Store::connect_with(&config.database.url, config.database.max_connections).await?;
    let worker = worker_name();
    let email = super::email::EmailSetup::load(&config)
        .map_err(config_errors)?
        .map(Arc::new);
    if let Some(setup) = &email {
        for warning in &setup.warnings {
            tracing::warn!("{warning}");
        }
    }
    let clock = crate::clock::Clock::system();
    let as4 =
        super::as4::As4Runtime::load(&config, &store, clock.clone()).map_err(config_errors)?;
    let mut gateway =
        Gateway::new(store.clone(), &config, worker.clone())?.with_clock(clock.clone());
    if let Some(setup) = &email {
        gateway = gateway.with_email(setup.clone());
    }
    if let Some(runtime) = &as4 {
        gateway = gateway.with_as4(runtime.endpoint.clone());
    }
    let gateway = Arc::new(gateway);
    let (stop_tx, stop_rx) = watch::channel(false);

    let listener = tokio::net::TcpListener::bind(config.api.addr)
        .await
        .map_err(|e| DaemonError::Io {
            what: "binding the API to",
            path: config.api.addr.to_string(),
            source: e,
        })?;
    let addr = listener.local_addr().map_err(|e| DaemonError::Io {
        what: "reading the address of",
        path: config.api.addr.to_string(),
        source: e,
    })?;
    tracing::info!(%addr, worker = %worker, database = ?store.backend(), "listening");
    let app = crate::api::router(crate::api::AppState::new(store.clone(), vec![token]));
    let mut api_stop = stop_rx.clone();
    let api = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = api_stop.wait_for(|s| *s).await;
            })
            .await;
    });
    if let Some(ready) = ready {
        let _ = ready.send(addr);
    }

    let mut tasks = Vec::new();
    // The AS4 receiver: HTTPS with mutual TLS on its own port.
    if let Some(runtime) = as4.clone() {
        if let Some(listen) = runtime.config.listen {
            let listener =
                tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| DaemonError::Io {
                        what: "binding the AS4 receiver to",
                        path: listen.to_string(),
                        source: e,
                    })?;
            let bound = listener.local_addr().map_err(|e| DaemonError::Io {
                what: "reading the address of",
                path: listen.to_string(),
                source: e,
            })?;
            tracing::info!(addr = %bound, path = %runtime.config.path, "AS4 receiver listening");
            let mut stop = stop_rx.clone();
            let gateway = gateway.clone();
            tasks.push(tokio::spawn(async move {
                runtime
                    .serve(gateway, listener, async move {
                        let _ = stop.wait_for(|s| *s).await;
                    })
                    .await;
            }));
        }
        // Received message ids are forgotten after the retention (≥ 7 days), checked hourly.
        let store = store.clone();
        let purge_clock = clock.clone();
        let retention = as4
            .as_ref()
            .map(|r| r.config.dedup_retention)
            .unwrap_or(Duration::from_secs(10 * 86_400));
        tasks.push(tokio::spawn(run_loop(
            "as4-dedup-purge",
            stop_rx.clone(),
            Duration::from_secs(3600),
            move || {
                let store = store.clone();
                let now = purge_clock.now();
                async move {
                    let before = now
                        - chrono::Duration::from_std(retention)
                            .unwrap_or(chrono::Duration::days(10));
                    let purged = store.conn().await?.purge_as4_dedup(before).await?;
                    if purged > 0 {
                        tracing::info!(purged, "old AS4 message ids forgotten");
                    }
                    Ok(None)
                }
            },
        )));
    }
    // File-drop pickup: journal first, then move the file away.
    {
        let gateway = gateway.clone();
        let inbox = config.inbox_dir();
        let poll = config.poll.file_drop;
        let lease = config.workers.lease;
        tasks.push(tokio::spawn(run_loop(
            "file-drop",
            stop_rx.clone(),
            poll,
            move || {
                let gateway = gateway.clone();
                let inbox = inbox.clone();
                async move { pick_up_files(&gateway, &inbox, lease).await }
            },
        )));
    }
    // The mailbox: every mail journaled raw and handled before it is marked on the server.
    if let Some(setup) = email.clone() {
        if let Some(imap) = setup.imap.clone() {
            let gateway = gateway.clone();
            tracing::info!(mailbox = %setup.mailbox_name(), "reading mail");
            tasks.push(tokio::spawn(crate::transport::email::run_inbox(
                imap,
                move |mail| {
                    let gateway = gateway.clone();
                    let setup = setup.clone();
                    async move {
                        super::email::handle_mail(&gateway, &setup, mail, gateway.clock.now())
                            .await
                            .map(|_| ())
                    }
                },
                stop_rx.clone(),
            )));
        }
    }
    for i in 0..config.workers.inbound.max(1) {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(run_loop(
            if i == 0 { "inbound" } else { "inbound+" },
            stop_rx.clone(),
            config.poll.inbound,
            move || {
                let gateway = gateway.clone();
                async move {
                    gateway
                        .process_inbound_batch(gateway.clock.now(), INBOUND_BATCH)
                        .await
                }
            },
        )));
    }
    for _ in 0..config.workers.outbound.max(1) {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(run_loop(
            "outbound",
            stop_rx.clone(),
            config.poll.outbound,
            move || {
                let gateway = gateway.clone();
                async move {
                    gateway
                        .send_next_outbox(gateway.clock.now())
                        .await
                        .map(|r| r.map(|_| 1))
                }
            },
        )));
    }
    for _ in 0..config.workers.webhooks.max(1) {
        let gateway = gateway.clone();
        tasks.push(tokio::spawn(run_loop(
            "webhooks",
            stop_rx.clone(),
            config.poll.webhooks,
            move || {
                let gateway = gateway.clone();
                async move {
                    gateway
                        .deliver_next_webhook(gateway.clock.now())
                        .await
                        .map(|r| r.map(|_| 1))
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

/// The errors of a transport's set-up, all in one (`serve` exits with the config exit code).
fn config_errors(errors: Vec<crate::config::ConfigError>) -> DaemonError {
    DaemonError::Config(
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

/// Claims and journals the complete files of the inbox; returns how many were journaled.
pub async fn pick_up_files(
    gateway: &Gateway,
    inbox: &std::path::Path,
    lease: Duration,
) -> Result<Option<usize>, DaemonError> {
    let worker = gateway.worker.clone();
    let dir = inbox.to_path_buf();
    let now = std::time::SystemTime::from(gateway.clock.now());
    let claimed =
        tokio::task::spawn_blocking(move || super::filedrop::claim(&dir, &worker, lease, 64, now))
            .await
            .map_err(|e| DaemonError::Config(e.to_string()))?
            .map_err(|e| DaemonError::Io {
                what: "reading the inbox",
                path: inbox.display().to_string(),
                source: e,
            })?;
    if claimed.is_empty() {
        return Ok(None);
    }
    let count = claimed.len();
    for file in claimed {
        let raw = tokio::fs::read(&file.path)
            .await
            .map_err(|e| DaemonError::Io {
                what: "reading",
                path: file.path.display().to_string(),
                source: e,
            })?;
        let inserted = gateway
            .receive(raw, Transport::File, gateway.clock.now())
            .await?;
        if let Inserted::Duplicate(id) = &inserted {
            tracing::info!(file = %file.name, journal = %id, "delivered twice: journaled once");
        }
        super::filedrop::done(inbox, &file, inserted.journal_id()).map_err(|e| {
            DaemonError::Io {
                what: "moving to done",
                path: file.path.display().to_string(),
                source: e,
            }
        })?;
    }
    Ok(Some(count))
}

/// Runs `step` until stopped: at once again after work, after `poll` when idle or failed.
async fn run_loop<F, Fut>(
    name: &'static str,
    mut stop: watch::Receiver<bool>,
    poll: Duration,
    step: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Option<usize>, DaemonError>>,
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
