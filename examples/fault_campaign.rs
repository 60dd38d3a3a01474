//! The fault campaign (issue 15): the real `mako-gateway serve` binary at work (orders out
//! and answers in over the file drop, e-mail through Postfix/Dovecot, and AS4) while what it
//! depends on fails for a while:
//!
//! - **postgres**: its PostgreSQL (a private cluster of the campaign's own, never the
//!   machine's shared one) stopped with `pg_ctl -m fast` (every session terminated) and
//!   started again;
//! - **disk**: the data folder and the SQLite file on a small tmpfs, filled up with a ballast
//!   file and freed again (needs root for `mount`; otherwise the phase is skipped and says so);
//! - **as4**: the AS4 partner's endpoint refusing connections;
//! - **smtp**: the SMTP server unreachable (a relay in front of Postfix cut; the machine's
//!   Postfix is not touched).
//!
//! For each it prints and checks: the process stays up; `/health` (its database part) during
//! the fault; what the logs said (WARN/ERROR lines naming the problem); that the other
//! transports kept sending while one partner was away; how long it took to catch up once the
//! fault was gone. At the end of each run the crash campaign's invariants hold: nothing lost,
//! nothing sent twice with different bytes, no transition doubled, nothing left unprocessed.
//!
//! ```text
//! cargo build --bin mako-gateway
//! cargo run --example fault_campaign -- --down-seconds 30
//! cargo run --example fault_campaign -- --phases as4,smtp --down-seconds 5 --transports file,as4,email
//! ```
//!
//! Exit code 0 when no defect was found, 1 otherwise, 2 when the campaign could not run.

#[allow(dead_code)]
mod campaign;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use campaign::driver::Core;
use campaign::faults::{health, PgCluster, Relay, Tmpfs};
use campaign::gateway::{Gateway, Launch, Logs};
use campaign::peers::{As4Peer, Partners};
use campaign::world::{Database, Transport, World};
use campaign::Rng;
use clap::Parser;
use mako_gateway::store::Store;
use sqlx::Row;

/// Break what the gateway depends on, for a while, and check that it copes.
#[derive(Debug, Parser)]
#[command(name = "fault_campaign")]
struct Args {
    /// The faults: postgres, disk, as4, smtp.
    #[arg(long, default_value = "postgres,disk,as4,smtp")]
    phases: String,
    /// How long each fault lasts, in seconds.
    #[arg(long, default_value_t = 20)]
    down_seconds: u64,
    /// Work before the first fault, in seconds.
    #[arg(long, default_value_t = 5)]
    warmup_seconds: u64,
    /// The transports driven: file, email, as4.
    #[arg(long, default_value = "file,email,as4")]
    transports: String,
    /// The seed of the random choices (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// The gateway binary (default: `mako-gateway` beside this example).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// The supplier core creates an order every this many milliseconds while faults last.
    #[arg(long, default_value_t = 400)]
    order_every_ms: u64,
    /// The size of the tmpfs of the disk phase, in MiB.
    #[arg(long, default_value_t = 48)]
    tmpfs_mb: u64,
    /// How long catching up after a fault may take, in seconds.
    #[arg(long, default_value_t = 300)]
    settle_seconds: u64,
    /// Keep the runs' folders also when no defect was found.
    #[arg(long)]
    keep: bool,
}

/// One run: a world, its partners, the core and the gateway process.
struct Run {
    world: World,
    launch: Launch,
    gateway: Gateway,
    store: Store,
    core: Arc<Core>,
    partners: Arc<Partners>,
    as4: Option<Arc<As4Peer>>,
    relay: Option<Relay>,
    ordering: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    logs: Arc<Logs>,
    data_dir: PathBuf,
    client: reqwest::Client,
    defects: Vec<String>,
    /// What is worth saying but breaks no invariant (printed, not counted as defects).
    findings: Vec<String>,
    restarts: usize,
    /// The private PostgreSQL cluster, when the run is on one.
    pg: Option<Arc<PgCluster>>,
}

/// Where a run keeps its data and its database.
enum Storage {
    /// A SQLite file in the run's folder.
    Sqlite,
    /// SQLite, data folder and all, on a tmpfs of this many MiB.
    SqliteOnTmpfs(u64),
    /// A fresh database on this private PostgreSQL cluster.
    Postgres(Arc<PgCluster>),
}

impl Run {
    async fn start(
        args: &Args,
        name: &str,
        storage: Storage,
        rng: &mut Rng,
        seed: u64,
        binary: &Path,
    ) -> Result<(Run, Option<Tmpfs>, Database), String> {
        let transports = Transport::parse_list(&args.transports)?;
        let tag = format!("fault{name}{:x}", seed & 0xffff_ffff);
        let dir = tempfile::Builder::new()
            .prefix(&format!("mako-fault-{name}-"))
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let world = World::new(dir.clone(), transports.clone(), &tag)?;
        let pg = match &storage {
            Storage::Postgres(cluster) => Some(cluster.clone()),
            _ => None,
        };
        let (database, tmpfs, data_dir) = match storage {
            Storage::Sqlite => (Database::sqlite(&dir), None, dir.join("data")),
            Storage::SqliteOnTmpfs(mb) => {
                let mount = Tmpfs::mount(&dir.join("mnt"), mb)?;
                let database = Database::sqlite(&mount.path);
                let data = mount.path.join("data");
                (database, Some(mount), data)
            }
            Storage::Postgres(cluster) => (
                Database::postgres(&cluster.admin_url(), &tag).await?,
                None,
                dir.join("data"),
            ),
        };
        let relay = match &world.mail {
            Some(m) if world.drives(Transport::Email) => {
                let relay = Relay::new(format!("{}:{}", m.smtp.0, m.smtp.1));
                relay.up().await?;
                Some(relay)
            }
            _ => None,
        };
        let config = dir.join("gateway.toml");
        std::fs::write(
            &config,
            world.config_text(relay.as_ref().map(|r| r.port), "5s", ""),
        )
        .map_err(|e| e.to_string())?;
        let logs = Logs::new(dir.join("gateway.log"), true);
        let launch = Launch {
            binary: binary.to_path_buf(),
            config,
            database_url: database.url().to_string(),
            data_dir: data_dir.clone(),
            logs: logs.clone(),
        };
        println!(
            "\n== {name}: {} on {}, transports {}, folder {}",
            args.phases,
            database.kind(),
            args.transports,
            dir.display()
        );
        let stop = Arc::new(AtomicBool::new(false));
        let partners = Partners::new(data_dir.join("inbox"), rng.fork(), 0.1);
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
        let gateway = launch.start(0)?;
        *core.base.lock().unwrap() = Some(gateway.base.clone());
        let store = Store::connect(database.url())
            .await
            .map_err(|e| format!("store: {e}"))?;
        Ok((
            Run {
                world,
                launch,
                gateway,
                store,
                core,
                partners,
                as4,
                relay,
                ordering,
                stop,
                logs,
                data_dir,
                client: reqwest::Client::new(),
                defects: Vec::new(),
                findings: Vec::new(),
                restarts: 0,
                pg,
            },
            tmpfs,
            database,
        ))
    }

    /// The gateway is still running; if not (a defect), it is started again.
    fn check_alive(&mut self, when: &str) {
        if let Some(status) = self.gateway.exited() {
            self.defects.push(format!(
                "the gateway exited {when} ({status}): it should keep running"
            ));
            self.restarts += 1;
            match self.launch.start(1000 + self.restarts) {
                Ok(g) => {
                    *self.core.base.lock().unwrap() = Some(g.base.clone());
                    self.gateway = g;
                }
                Err(e) => self.defects.push(format!("restart after the exit: {e}")),
            }
        }
    }

    /// Outbound interchanges journaled as sent over `transport` between `from` and `to`.
    async fn sent_over(&self, transport: &str, from: i64, to: i64) -> i64 {
        sqlx::query(
            "SELECT COUNT(*) FROM journal WHERE direction = 'out' AND transport = $1 \
             AND sent_at >= $2 AND sent_at <= $3",
        )
        .bind(transport.to_string())
        .bind(from)
        .bind(to)
        .fetch_one(self.store.pool())
        .await
        .map(|r| r.get::<i64, _>(0))
        .unwrap_or(-1)
    }

    /// One fault: `inject`, `down` long (probing `/health`), `lift`; then the checks.
    async fn phase(&mut self, args: &Args, name: &str, tmpfs: Option<&Tmpfs>) {
        let down = Duration::from_secs(args.down_seconds);
        println!("  -- {name}: down for {down:?}");
        self.ordering.store(true, Ordering::SeqCst);
        let mark = self.logs.mark();
        let t0 = mako_gateway::clock::Clock::system()
            .now()
            .timestamp_millis();
        let started = Instant::now();
        let mut ballast = None;
        match name {
            "postgres" => {
                if let Err(e) = self.pg_stop() {
                    self.defects.push(format!("stopping PostgreSQL: {e}"));
                }
            }
            "disk" => {
                let t = tmpfs.expect("the disk phase runs on a tmpfs");
                let (file, bytes) = t.fill();
                println!("     ballast {} MiB, {} bytes left", bytes >> 20, t.free());
                ballast = Some(file);
            }
            "as4" => {
                if let Some(peer) = &self.as4 {
                    peer.stop_listening().await;
                }
            }
            "smtp" => {
                if let Some(relay) = &self.relay {
                    relay.down().await;
                }
            }
            _ => unreachable!(),
        }
        let mut answers: Vec<(String, usize)> = Vec::new();
        while started.elapsed() < down {
            let base = self.gateway.base.clone();
            let answer = health(&self.client, &base).await;
            match answers.iter_mut().find(|(a, _)| *a == answer) {
                Some((_, n)) => *n += 1,
                None => answers.push((answer, 1)),
            }
            self.check_alive(&format!("during the {name} fault"));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        match name {
            "postgres" => {
                if let Err(e) = self.pg_start() {
                    self.defects.push(format!("starting PostgreSQL again: {e}"));
                }
            }
            "disk" => {
                if let Some(f) = &ballast {
                    let _ = std::fs::remove_file(f);
                }
            }
            "as4" => {
                if let Some(peer) = &self.as4 {
                    if let Err(e) = peer.listen().await {
                        self.defects.push(e);
                    }
                }
            }
            "smtp" => {
                if let Some(relay) = &self.relay {
                    if let Err(e) = relay.up().await {
                        self.defects.push(e);
                    }
                }
            }
            _ => {}
        }
        let t1 = mako_gateway::clock::Clock::system()
            .now()
            .timestamp_millis();
        println!("     /health during the fault (answer ×count):");
        for (answer, n) in &answers {
            println!("       {n:>3} × {answer}");
        }
        self.ordering.store(false, Ordering::SeqCst);
        let caught_up = campaign::check::wait_settled(
            &self.store,
            &self.core,
            &self.partners,
            &self.data_dir,
            Duration::from_secs(args.settle_seconds),
        )
        .await;
        self.check_alive(&format!("after the {name} fault"));
        match &caught_up {
            Ok(took) => println!(
                "     caught up {:.1} s after the fault ended",
                took.as_secs_f64()
            ),
            Err(e) => self.defects.push(format!("{name}: {e}")),
        }

        // What the logs said.
        let warnings = self.logs.matching_since(mark, &["\"level\":\"WARN\""]);
        let errors = self.logs.matching_since(mark, &["\"level\":\"ERROR\""]);
        let naming: Vec<String> = match name {
            "postgres" => warnings
                .iter()
                .chain(&errors)
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("database")
                        || l.contains("connection")
                        || l.contains("pool")
                        || l.contains("terminat")
                })
                .cloned()
                .collect(),
            "disk" => warnings
                .iter()
                .chain(&errors)
                .filter(|l| {
                    let l = l.to_ascii_lowercase();
                    l.contains("full") || l.contains("no space")
                })
                .cloned()
                .collect(),
            "as4" => self
                .logs
                .matching_since(mark, &["retried later", "AS4 message"]),
            "smtp" => self.logs.matching_since(mark, &["retried later", "SMTP"]),
            _ => Vec::new(),
        };
        println!(
            "     logs during and after: {} WARN, {} ERROR; {} naming the problem",
            warnings.len(),
            errors.len(),
            naming.len()
        );
        // What an alert on WARN/ERROR would see: for AS4 also asx-rs's "delivery
        // indeterminate" (it names no cause); for the database only sqlx's own lines.
        let alerting: Vec<&String> = warnings
            .iter()
            .chain(&errors)
            .filter(|l| match name {
                "as4" => l.contains("delivery indeterminate") || l.contains("AS4"),
                "smtp" => l.contains("SMTP") || l.contains("mail"),
                _ => naming.contains(l),
            })
            .collect();
        if let Some(first) = naming.first() {
            println!("       e.g. {}", shorten(first));
            if alerting.is_empty() {
                self.findings.push(format!(
                    "{name}: the {} lines naming the problem are INFO; no WARN/ERROR line says \
                     it (an alert on WARN/ERROR does not see it)",
                    naming.len()
                ));
            } else if alerting
                .iter()
                .all(|l| !l.contains("\"target\":\"mako_gateway"))
            {
                self.findings.push(format!(
                    "{name}: only the libraries' own lines are WARN/ERROR ({} of them, e.g. {}); \
                     the gateway's own lines about it are INFO or absent",
                    alerting.len(),
                    shorten(alerting[0])
                ));
            }
        } else {
            self.defects
                .push(format!("{name}: no log line names the problem"));
        }
        if name != "postgres" && answers.iter().all(|(a, _)| a.starts_with("200")) {
            self.findings.push(format!(
                "{name}: /health answered 200 ok throughout (its database part is fine; it has no \
                 part for {})",
                if name == "disk" {
                    "the disk"
                } else {
                    "the transports"
                }
            ));
        }
        // Health: the database part must say when the database is away.
        if name == "postgres" {
            if answers.iter().any(|(a, _)| a.starts_with("no answer")) {
                self.defects.push(format!(
                    "postgres: /health did not answer while the database was down: {answers:?}"
                ));
            }
            if !answers
                .iter()
                .any(|(a, _)| a.starts_with("503") && a.contains("unavailable"))
            {
                self.defects.push(format!(
                    "postgres: /health never said the database is unavailable: {answers:?}"
                ));
            }
        }
        // The other transports kept going while one partner was away.
        let others: &[&str] = match name {
            "as4" => &["file", "email"],
            "smtp" => &["file", "as4"],
            _ => &[],
        };
        for other in others {
            let driven = match *other {
                "file" => self.world.drives(Transport::File),
                "email" => self.world.drives(Transport::Email),
                _ => self.world.drives(Transport::As4),
            };
            if !driven {
                continue;
            }
            let n = self.sent_over(other, t0, t1).await;
            println!("     sent over {other} during the fault: {n}");
            if n == 0 {
                self.defects.push(format!(
                    "{name}: nothing went out over {other} while only {name} was away"
                ));
            }
        }
        self.ordering.store(true, Ordering::SeqCst);
    }

    fn pg_stop(&self) -> Result<(), String> {
        match &self.pg {
            Some(cluster) => cluster.stop("fast"),
            None => Err("the postgres phase needs the private cluster".into()),
        }
    }

    fn pg_start(&self) -> Result<(), String> {
        match &self.pg {
            Some(cluster) => cluster.start(),
            None => Err("the postgres phase needs the private cluster".into()),
        }
    }

    /// The end of a run: no new orders, everything caught up, SIGTERM, the invariants.
    async fn finish(mut self, args: &Args, database: Database, tmpfs: Option<Tmpfs>) -> usize {
        self.ordering.store(false, Ordering::SeqCst);
        if let Err(e) = campaign::check::wait_settled(
            &self.store,
            &self.core,
            &self.partners,
            &self.data_dir,
            Duration::from_secs(args.settle_seconds),
        )
        .await
        {
            self.defects.push(format!("at the end: {e}"));
        }
        match self.gateway.terminate(Duration::from_secs(10)) {
            Ok(status) if status.success() => {}
            Ok(status) => self
                .defects
                .push(format!("stopped with {status} on SIGTERM")),
            Err(e) => self.defects.push(e),
        }
        self.stop.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(1)).await;
        campaign::peers::sweep_outbox(&self.partners, &self.data_dir.join("outbox"));
        if let Some(peer) = &self.as4 {
            peer.stop_listening().await;
        }
        if let Some(relay) = &self.relay {
            relay.down().await;
        }
        let mut report = campaign::check::invariants(
            &self.store,
            &self.core,
            &self.partners,
            &self.data_dir,
            &self.logs,
        )
        .await;
        for d in self.defects.drain(..) {
            report.defects.insert(0, d);
        }
        self.store.close().await;
        report.print(40);
        for f in &self.findings {
            println!("  finding: {f}");
        }
        let warnings = self.logs.warnings();
        if !warnings.is_empty() {
            println!("  gateway warnings and errors by message (count):");
            for (level, message, n, _) in warnings.iter().take(30) {
                println!("    {level:<5} {n:>6}  {message}");
            }
        }
        let defects = report.defects.len();
        let dir = self.world.dir.clone();
        drop(tmpfs);
        if defects == 0 && !args.keep {
            database.drop_database().await;
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            println!(
                "  kept: {} (gateway.log, data/) and the database {}",
                dir.display(),
                database.url()
            );
        }
        defects
    }
}

fn shorten(line: &str) -> String {
    if line.len() > 300 {
        let mut end = 300;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    } else {
        line.to_string()
    }
}

async fn campaign(args: &Args, seed: u64, binary: &Path) -> Result<usize, String> {
    let phases: Vec<&str> = args
        .phases
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    for p in &phases {
        if !["postgres", "disk", "as4", "smtp"].contains(p) {
            return Err(format!("unknown phase {p:?} (postgres, disk, as4, smtp)"));
        }
    }
    let mut rng = Rng::new(seed);
    let mut defects = 0;
    // Run 1: PostgreSQL (a private cluster) with its restart, the partner outages.
    let first: Vec<&str> = phases.iter().copied().filter(|p| *p != "disk").collect();
    if !first.is_empty() {
        let cluster = if first.contains(&"postgres") {
            let cluster = PgCluster::init()?;
            if let Err(e) = cluster.start() {
                cluster.remove();
                return Err(e);
            }
            println!(
                "private PostgreSQL cluster on 127.0.0.1:{} (initdb/pg_ctl of {})",
                cluster.port,
                campaign::faults::PG_BIN
            );
            Some(Arc::new(cluster))
        } else {
            None
        };
        let storage = match &cluster {
            Some(c) => Storage::Postgres(c.clone()),
            None => Storage::Sqlite,
        };
        let started = Run::start(args, "services", storage, &mut rng, seed, binary).await;
        let outcome = match started {
            Ok((mut run, tmpfs, database)) => {
                tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
                for phase in &first {
                    run.phase(args, phase, None).await;
                }
                Ok(run.finish(args, database, tmpfs).await)
            }
            Err(e) => Err(e),
        };
        if let Some(cluster) = cluster.and_then(|c| Arc::try_unwrap(c).ok()) {
            cluster.remove();
        }
        defects += outcome?;
    }
    // Run 2: SQLite and the data folder on a small tmpfs, filled up.
    if phases.contains(&"disk") {
        match Run::start(
            args,
            "disk",
            Storage::SqliteOnTmpfs(args.tmpfs_mb),
            &mut rng,
            seed,
            binary,
        )
        .await
        {
            Ok((mut run, tmpfs, database)) => {
                tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
                run.phase(args, "disk", tmpfs.as_ref()).await;
                defects += run.finish(args, database, tmpfs).await;
            }
            Err(e) if e.starts_with("mount") => {
                println!("\n== disk: skipped: {e} (mounting a tmpfs needs root; no honest substitute here)");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(defects)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(campaign::seed_from_clock);
    let binary = match campaign::binary(args.binary.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("fault_campaign: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "fault campaign: seed {seed}, binary {}, phases {}, {} s down each",
        binary.display(),
        args.phases,
        args.down_seconds
    );
    let started = Instant::now();
    match campaign(&args, seed, &binary).await {
        Ok(defects) => {
            println!(
                "\nfault campaign: seed {seed}: {defects} defects, {:.0} s",
                started.elapsed().as_secs_f64()
            );
            std::process::exit(if defects == 0 { 0 } else { 1 });
        }
        Err(e) => {
            eprintln!("fault_campaign: {e}");
            std::process::exit(2);
        }
    }
}
