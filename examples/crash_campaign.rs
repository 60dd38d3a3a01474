//! The crash campaign (issue 15): the real `mako-gateway serve` binary killed with SIGKILL at
//! random moments while orders go out over the file drop, e-mail (Postfix/Dovecot on loopback)
//! and AS4 (a partner's HTTPS endpoint in this process) and the partners' answers come in over
//! the same transports; restarted each time; at the end one run without kills, then the
//! invariants, from the database and from what the partners received:
//!
//! - every order the supplier core created exists once and made each transition once
//!   (`intended → ordered → rejected`, one history row each);
//! - every answer a partner delivered (some twice) is journaled exactly once, with its bytes,
//!   processed, and acknowledged once;
//! - every outbound interchange reached its partner, and every copy a partner got (a resend
//!   after a crash) has the bytes journaled for that UNB reference, under one AS4 message id;
//! - nothing is left in the outbox, the inbox, the journal or the mail journal; no panic.
//!
//! ```text
//! cargo build --bin mako-gateway
//! cargo run --example crash_campaign -- --kills 500 --database both --seed 42
//! cargo run --example crash_campaign -- --kills 5 --transports file,as4   # no mail servers
//! ```
//!
//! Exit code 0 when no defect was found, 1 otherwise, 2 when the campaign could not run. The
//! seed is printed; the same seed gives the same kill moments and the same choices (the
//! gateway's own timing still varies).

#[allow(dead_code)]
mod campaign;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use campaign::driver::Core;
use campaign::gateway::{Launch, Logs};
use campaign::peers::{As4Peer, Partners};
use campaign::world::{Database, Transport, World, DEFAULT_POSTGRES_URL};
use campaign::Rng;
use clap::Parser;
use mako_gateway::store::Store;
use sqlx::Row;

/// Kill the gateway at random moments and check that nothing is lost or done twice.
#[derive(Debug, Parser)]
#[command(name = "crash_campaign")]
struct Args {
    /// SIGKILLs per database.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// sqlite, postgres or both.
    #[arg(long, default_value = "both")]
    database: String,
    /// The seed of the random choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The gateway binary (default: `mako-gateway` beside this example, i.e. the same
    /// profile's build).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The transports driven: file, email, as4.
    #[arg(long, default_value = "file,email,as4")]
    transports: String,
    /// Earliest kill after the gateway listens, in milliseconds.
    #[arg(long, default_value_t = 20)]
    min_ms: u64,
    /// Latest kill after the gateway listens, in milliseconds.
    #[arg(long, default_value_t = 2500)]
    max_ms: u64,
    /// The supplier core creates an order every this many milliseconds while the gateway runs.
    #[arg(long, default_value_t = 300)]
    order_every_ms: u64,
    /// The share of answers a partner delivers twice.
    #[arg(long, default_value_t = 0.2)]
    duplicate: f64,
    /// The PostgreSQL server (a fresh database is made on it and dropped; default
    /// `MAKO_CAMPAIGN_POSTGRES_URL`, else the machine's test server).
    #[arg(long)]
    postgres_url: Option<String>,
    /// How long the last run (without kills) may take to finish everything, in seconds.
    #[arg(long, default_value_t = 600)]
    settle_seconds: u64,
    /// Keep the run's folder (logs, data, database) also when no defect was found.
    #[arg(long)]
    keep: bool,
}

fn postgres_url(args: &Args) -> String {
    args.postgres_url
        .clone()
        .or_else(|| std::env::var("MAKO_CAMPAIGN_POSTGRES_URL").ok())
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string())
}

/// Counts from the store at one moment.
async fn count(store: &Store, sql: &str) -> i64 {
    match sqlx::query(sql).fetch_one(store.pool()).await {
        Ok(row) => row.get::<i64, _>(0),
        Err(_) => -1,
    }
}

/// Work the gateway has in hand: unprocessed inbound, unsent outbox items, unhandled mails.
async fn in_hand(store: &Store) -> (i64, i64, i64) {
    (
        count(
            store,
            "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND state <> 'processed'",
        )
        .await,
        count(store, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'").await,
        count(
            store,
            "SELECT COUNT(*) FROM mail_journal WHERE outcome = 'pending'",
        )
        .await,
    )
}

struct Outcome {
    kills: usize,
    mid_work: usize,
    defects: usize,
}

async fn run_one(
    args: &Args,
    kind: &str,
    binary: &std::path::Path,
    rng: &mut Rng,
    seed: u64,
) -> Result<Outcome, String> {
    let started = Instant::now();
    let transports = Transport::parse_list(&args.transports)?;
    if transports.is_empty() {
        return Err("no transport to drive".into());
    }
    let tag = format!("crash{}{:x}", &kind[..2], seed & 0xffff_ffff);
    let dir = tempfile::Builder::new()
        .prefix(&format!("mako-crash-{kind}-"))
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let world = World::new(dir.clone(), transports.clone(), &tag)?;
    let database = match kind {
        "sqlite" => Database::sqlite(&dir),
        _ => Database::postgres(&postgres_url(args), &tag).await?,
    };
    let data_dir = dir.join("data");
    let config = dir.join("gateway.toml");
    std::fs::write(&config, world.config_text(None, "2s", "")).map_err(|e| e.to_string())?;
    let logs = Logs::new(dir.join("gateway.log"), false);
    let launch = Launch {
        binary: binary.to_path_buf(),
        config,
        database_url: database.url().to_string(),
        data_dir: data_dir.clone(),
        logs: logs.clone(),
    };
    println!(
        "\n== {kind}: {} kills, transports {}, folder {}",
        args.kills,
        args.transports,
        dir.display()
    );

    // The partners and the supplier core.
    let stop = Arc::new(AtomicBool::new(false));
    let partners = Partners::new(data_dir.join("inbox"), rng.fork(), args.duplicate);
    campaign::peers::run_file_partner(partners.clone(), data_dir.join("outbox"), stop.clone());
    if let Some(m) = &world.mail {
        campaign::peers::create_mailbox(&m.imap, &m.gateway, &world.mail_tag).await?;
        campaign::peers::create_mailbox(&m.imap, &m.partner, &world.mail_tag).await?;
        campaign::peers::run_mail_partner(partners.clone(), &world, stop.clone());
    }
    let as4 = if world.drives(Transport::As4) {
        let peer = As4Peer::new(&world, partners.clone());
        peer.listen().await?;
        peer.run_sender(2, stop.clone());
        Some(peer)
    } else {
        None
    };
    let core = Core::new(transports, rng.fork(), &tag);
    let ordering = Arc::new(AtomicBool::new(true));
    core.run(
        Duration::from_millis(args.order_every_ms),
        ordering.clone(),
        stop.clone(),
    );

    // The first start makes the schema; the campaign reads the store beside the gateway.
    let mut gateway = launch.start(0)?;
    let store = Store::connect(database.url())
        .await
        .map_err(|e| format!("store: {e}"))?;
    let mut defects = Vec::new();
    let mut mid_work = 0;
    let mut kills = 0;
    while kills < args.kills {
        *core.base.lock().unwrap() = Some(gateway.base.clone());
        let wait = rng.range(args.min_ms, args.max_ms + 1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let (inbound, outbox, mails) = in_hand(&store).await;
        let deliveries = partners.pending();
        if let Err(e) = gateway.kill_9() {
            defects.push(e);
        }
        *core.base.lock().unwrap() = None;
        kills += 1;
        if inbound > 0 || outbox > 0 || mails > 0 || deliveries > 0 {
            mid_work += 1;
        }
        if kills % 25 == 0 || kills == args.kills {
            println!(
                "  {kills:>5} kills ({:.0} s): {} orders, {} answers, {} copies received; at the \
                 last kill {inbound} inbound, {outbox} outbox, {mails} mails, {deliveries} answers \
                 in hand",
                started.elapsed().as_secs_f64(),
                core.orders.lock().unwrap().len(),
                partners.answers.lock().unwrap().len(),
                partners.received.lock().unwrap().len(),
            );
        }
        gateway = launch.start(kills)?;
    }

    // The last run, without kills, until everything is done.
    ordering.store(false, Ordering::SeqCst);
    *core.base.lock().unwrap() = Some(gateway.base.clone());
    if let Err(e) = campaign::check::wait_settled(
        &store,
        &core,
        &partners,
        &data_dir,
        Duration::from_secs(args.settle_seconds),
    )
    .await
    {
        defects.push(format!("without kills: {e}"));
    }
    match gateway.terminate(Duration::from_secs(10)) {
        Ok(status) if status.success() => {}
        Ok(status) => defects.push(format!("the last run stopped with {status} on SIGTERM")),
        Err(e) => defects.push(e),
    }
    stop.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    campaign::peers::sweep_outbox(&partners, &data_dir.join("outbox"));
    if let Some(peer) = &as4 {
        peer.stop_listening().await;
    }

    let mut report = campaign::check::invariants(&store, &core, &partners, &data_dir, &logs).await;
    for d in defects {
        report.defects.insert(0, d);
    }
    store.close().await;
    println!(
        "  {kind}: {kills} kills in {:.0} s ({mid_work} with work in hand), {} unanswered API \
         requests, {} API 5xx",
        started.elapsed().as_secs_f64(),
        core.unanswered.load(Ordering::Relaxed),
        core.server_errors.load(Ordering::Relaxed),
    );
    report.print(40);
    let warnings = logs.warnings();
    if !warnings.is_empty() {
        println!("  gateway warnings and errors by message (count):");
        for (level, message, n, _) in warnings.iter().take(30) {
            println!("    {level:<5} {n:>6}  {message}");
        }
    }
    let defect_count = report.defects.len();
    println!("  {kind}: {defect_count} defects");
    if defect_count == 0 && !args.keep {
        database.drop_database().await;
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!(
            "  kept: {} (gateway.log, data/, db/) and the database {}",
            dir.display(),
            database.url()
        );
    }
    Ok(Outcome {
        kills,
        mid_work,
        defects: defect_count,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(campaign::seed_from_clock);
    let binary = match campaign::binary(args.binary.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("crash_campaign: {e}");
            std::process::exit(2);
        }
    };
    let kinds: Vec<&str> = match args.database.as_str() {
        "both" => vec!["sqlite", "postgres"],
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        other => {
            eprintln!("crash_campaign: --database {other}: sqlite, postgres or both");
            std::process::exit(2);
        }
    };
    println!(
        "crash campaign: seed {seed}, binary {}, {} kills per database, kill {}–{} ms after start",
        binary.display(),
        args.kills,
        args.min_ms,
        args.max_ms
    );
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let (mut kills, mut mid, mut defects) = (0, 0, 0);
    for kind in kinds {
        match run_one(&args, kind, &binary, &mut rng, seed).await {
            Ok(o) => {
                kills += o.kills;
                mid += o.mid_work;
                defects += o.defects;
            }
            Err(e) => {
                eprintln!("crash_campaign: {kind}: {e}");
                std::process::exit(2);
            }
        }
    }
    println!(
        "\ncrash campaign: seed {seed}: {kills} kills ({mid} with work in hand), {defects} defects, \
         {:.0} s",
        started.elapsed().as_secs_f64()
    );
    std::process::exit(if defects == 0 { 0 } else { 1 });
}
