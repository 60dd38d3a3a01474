//! Inbound throughput: answers to our orders journaled and processed through the daemon's own
//! path (`worker::receive::Journal`, then `InboundWorker::process_batch` on several workers, as `serve` runs them), on
//! SQLite and on PostgreSQL.
//!
//! ```text
//! cargo bench --bench inbound                          # 10,000 answers, 2 workers, both stores
//! INBOUND_MESSAGES=200 cargo bench --bench inbound     # smoke run (CI)
//! INBOUND_DB=postgres INBOUND_WORKERS=4 cargo bench --bench inbound
//! INBOUND_INSTANCES=1 INBOUND_DB=postgres cargo bench --bench inbound  # one instance
//! INBOUND_SQL_TIMES=1 INBOUND_DB=sqlite cargo bench --bench inbound  # where the SQL time goes
//! ```
//!
//! On PostgreSQL the run is `INBOUND_INSTANCES` (2) gateway instances on one database, as
//! deployed when one machine is not enough: each with its own pool, journal writer and
//! `INBOUND_WORKERS` workers; deliveries go to the instances in turn. SQLite is one instance.
//!
//! Per store it sets up N grid-fee reductions in status `ordered` (inserted through the store,
//! each with its own subscription, market location and ORDERS document number), makes N
//! distinct answers from `samples/inbound` — four in five an ORDRSP 19133 A20 (accepted) naming
//! the order's document, one in five a UTILMD 55218 (billing data: activates the reduction and
//! is answered with a UTILMD 55220) naming its market location — each with its own UNB
//! reference, then:
//!
//! 1. delivers them `INBOUND_IN_FLIGHT` (64) at a time to `Journal::receive`, as transports do
//!    (the file drop's pickup, several AS4 connections; each committed, in a group commit,
//!    before it would be acknowledged), while
//! 2. `INBOUND_WORKERS` inbound workers process alongside, as `serve` runs `workers.inbound`,
//!    each calling `process_batch` until every answer is processed (a failed item is handed
//!    back by the worker and claimed again, as in `serve`);
//! 3. checks that every journal item was processed once, every order accepted or activated,
//!    one history row per answer, and the replies queued; a `FAIL` line and exit 1 if not.
//!
//! It prints messages/s for the journal (until the last is journaled) and end to end (first
//! delivered to last processed), with the targets of issue 16 (≥ 5,000/s on SQLite, ≥ 5,000/s
//! on PostgreSQL with two workers), and the SQL statements per answer: every statement sqlx
//! executes is counted (its `sqlx::query` events, which include `BEGIN`/`COMMIT` where the
//! driver runs them as statements).
//!
//! Then, on the same store, the forward path of issue 13: N MSCONS (a day of quarter-hour values
//! each, ~6 KB) from the grid operator received, journaled, processed and offered in the forward
//! feed (one `messages` row and one `message.received` event each), checked the same way, against
//! the target of at least 5,000 messages/s end to end.
//!
//! SQLite runs on a file in `target/bench-data/` (a real disk, with the store's own settings:
//! WAL, `synchronous = FULL`); PostgreSQL on a fresh database created on the server named by
//! `MAKO_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`) and dropped at
//! the end.

use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use mako_gateway::config::Config;
use mako_gateway::daemon::setup::Setup;
use mako_gateway::ids::lok_check_digit;
use mako_gateway::orders::{
    GridFeeReduction, GridFeeStatus, MeterType, ModuleProduct, ReductionType,
};
use mako_gateway::store::{Inserted, Store, Transport};
use mako_gateway::worker::inbound::{InboundWorker, INBOUND_BATCH};
use mako_gateway::worker::receive::Journal;
use sqlx::{Connection, Executor, Row};

const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Statements sqlx executed so far (see [`CountStatements`]).
static STATEMENTS: AtomicU64 = AtomicU64::new(0);

/// Counts the statements sqlx executes: one `sqlx::query` event per statement.
struct CountStatements;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountStatements {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            STATEMENTS.fetch_add(1, Ordering::Relaxed);
            if let Some(times) = STATEMENT_TIMES.get() {
                let mut seen = StatementSeen::default();
                event.record(&mut seen);
                let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
                let entry = times.entry(seen.statement).or_default();
                entry.0 += 1;
                entry.1 += seen.seconds;
            }
        }
    }
}

/// With `INBOUND_SQL_TIMES=1`: per statement (its first 110 characters), how often it ran and
/// the time sqlx measured executing it (`elapsed_secs` of its `sqlx::query` event).
static STATEMENT_TIMES: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, (u64, f64)>>,
> = std::sync::OnceLock::new();

#[derive(Default)]
struct StatementSeen {
    statement: String,
    seconds: f64,
}

impl tracing::field::Visit for StatementSeen {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "db.statement" {
            let flat: String = value.split_whitespace().collect::<Vec<_>>().join(" ");
            self.statement = flat.chars().take(110).collect();
        }
    }
    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        if field.name() == "elapsed_secs" {
            self.seconds = value;
        }
    }
    fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
}

/// Prints and clears the statement times collected since the last call (`INBOUND_SQL_TIMES`).
fn print_statement_times() {
    let Some(times) = STATEMENT_TIMES.get() else {
        return;
    };
    let mut times = times.lock().unwrap_or_else(|p| p.into_inner());
    let mut rows: Vec<(String, (u64, f64))> = times.drain().collect();
    rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    println!("sql time     statement (count, seconds executing, summed over connections)");
    for (statement, (count, seconds)) in rows.iter().take(12) {
        println!("  {seconds:>8.3} s {count:>7}  {statement}");
    }
}

fn count_statements() {
    if std::env::var_os("INBOUND_SQL_TIMES").is_some() {
        let _ = STATEMENT_TIMES.set(Default::default());
    }
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;
    let only_queries = tracing_subscriber::filter::Targets::new()
        .with_target("sqlx::query", tracing::Level::TRACE);
    let subscriber = tracing_subscriber::registry().with(CountStatements.with_filter(only_queries));
    tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
}

fn statements() -> u64 {
    STATEMENTS.load(Ordering::Relaxed)
}

/// Every fifth answer is a UTILMD 55218 (the rest ORDRSP 19133 A20): acceptances are what a
/// grid operator sends for every order, billing data follow for some of them later.
const BILLING_DATA_EVERY: usize = 5;

/// Orders inserted per transaction during set-up (set-up is not timed).
const SETUP_BATCH: usize = 500;

/// The grid operator of the samples (UNB sender).
const GRID_OPERATOR: &str = "9900000000011";

/// The targets of issue 16 (issue 5 asked 2,000/s on SQLite), in messages per second end to
/// end.
const TARGET_SQLITE: f64 = 5_000.0;
const TARGET_POSTGRES: f64 = 5_000.0;

fn main() {
    count_statements();
    let messages: usize = env_number("INBOUND_MESSAGES", 10_000).max(1);
    let workers: usize = env_number("INBOUND_WORKERS", 2).max(1);
    let db = std::env::var("INBOUND_DB").unwrap_or_else(|_| "both".into());
    let backends: Vec<&str> = match db.as_str() {
        "sqlite" => vec!["sqlite"],
        "postgres" => vec!["postgres"],
        "both" => vec!["sqlite", "postgres"],
        other => {
            eprintln!("INBOUND_DB={other:?}: use sqlite, postgres or both");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "# inbound benchmark: {messages} answers ({} ORDRSP 19133 A20, {} UTILMD 55218), {workers} workers, {} cores",
        messages - messages / BILLING_DATA_EVERY,
        messages / BILLING_DATA_EVERY,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let mut failed = false;
    for backend in backends {
        let ok = runtime.block_on(async {
            match backend {
                "sqlite" => run_sqlite(messages, workers).await,
                _ => run_postgres(messages, workers).await,
            }
        });
        failed |= !ok;
    }
    if failed {
        std::process::exit(1);
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The fixed "now" of the run: the samples are dated May/June 2026.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 16, 9, 0, 0).unwrap()
}

async fn run_sqlite(messages: usize, workers: usize) -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&dir).expect("create target/bench-data");
    let file = dir.join(format!("inbound-{}.db", std::process::id()));
    let url = format!("sqlite://{}", file.display());
    let store = Store::connect(&url).await.expect("SQLite store");
    // One instance: SQLite is the embedded store of one gateway.
    let stores = [store.clone()];
    let ok = run("sqlite", &stores, messages, workers, TARGET_SQLITE).await
        & run_forward("sqlite", &stores, messages, workers, TARGET_POSTGRES).await;
    store.close().await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
    ok
}

async fn run_postgres(messages: usize, workers: usize) -> bool {
    sqlx::any::install_default_drivers();
    let admin_url =
        std::env::var("MAKO_BENCH_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into());
    let mut admin = match tokio::time::timeout(
        Duration::from_secs(5),
        sqlx::AnyConnection::connect(&admin_url),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            println!(
                "\nFAIL postgres: cannot connect to {admin_url} ({e}); set MAKO_BENCH_POSTGRES_URL"
            );
            return false;
        }
        Err(_) => {
            println!("\nFAIL postgres: {admin_url} did not answer within 5 s");
            return false;
        }
    };
    let name = format!(
        "mako_bench_{}",
        mako_gateway::ids::new_id("db", mako_gateway::clock::Clock::system().now())
    );
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .expect("CREATE DATABASE");
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (admin_url.as_str(), String::new()),
    };
    let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
    let url = format!("{server}/{name}{query}");
    // Several gateway instances on one database, as deployed when one machine is not enough:
    // each with its own pool, its own journal writer and its own workers.
    let instances = env_number("INBOUND_INSTANCES", 2).max(1);
    let mut stores = Vec::new();
    for _ in 0..instances {
        stores.push(Store::connect(&url).await.expect("PostgreSQL store"));
    }
    // In a task, so that a panic still drops the database.
    let outcome = {
        let stores = stores.clone();
        tokio::spawn(async move {
            run("postgres", &stores, messages, workers, TARGET_POSTGRES).await
                & run_forward("postgres", &stores, messages, workers, TARGET_POSTGRES).await
        })
        .await
    };
    for store in stores {
        store.close().await;
    }
    admin
        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
        .await
        .expect("DROP DATABASE");
    let _ = admin.close().await;
    match outcome {
        Ok(ok) => ok,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// One order of the run.
struct Case {
    market_location: String,
    document: String,
    billing_data: bool,
}

fn cases(n: usize) -> Vec<Case> {
    (0..n)
        .map(|i| {
            // 11 digits, not starting with 0, with the check digit of the ID.
            let payload = format!("5{i:09}");
            let digits: Vec<u32> = payload.bytes().map(|b| u32::from(b - b'0')).collect();
            Case {
                market_location: format!("{payload}{}", lok_check_digit(&digits)),
                document: format!("MGB{i:010}"),
                billing_data: i % BILLING_DATA_EVERY == BILLING_DATA_EVERY - 1,
            }
        })
        .collect()
}

fn sample(name: &str) -> String {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .expect("sample");
    // Latin-1 (the UTILMD sample has umlauts): one char per byte, back to the same bytes.
    bytes.iter().map(|&b| b as char).collect()
}

fn latin1(text: &str) -> Vec<u8> {
    text.chars().map(|c| c as u8).collect()
}

/// The answers, one per case, each with its own UNB reference (`NB` and ten digits).
fn answers(cases: &[Case]) -> Vec<Vec<u8>> {
    let ordrsp = sample("ordrsp_19133_a20_accepted.edi");
    let utilmd = sample("utilmd_55218_billing_data.edi");
    assert!(ordrsp.contains("NB0000000002") && ordrsp.contains("RFF+ON:MG10000000001'"));
    assert!(utilmd.contains("NB0000000006") && utilmd.contains("LOC+Z16+51238696781'"));
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let reference = format!("NB{:010}", 1_000_000 + i);
            let text = if c.billing_data {
                utilmd
                    .replace("NB0000000006", &reference)
                    .replace("51238696781", &c.market_location)
            } else {
                ordrsp
                    .replace("NB0000000002", &reference)
                    .replace("MG10000000001", &c.document)
            };
            latin1(&text)
        })
        .collect()
}

async fn set_up_orders(store: &Store, cases: &[Case]) {
    for chunk in cases.chunks(SETUP_BATCH) {
        let mut tx = store.begin().await.expect("begin");
        for c in chunk {
            let order = GridFeeReduction {
                id: mako_gateway::store::new_id("gfr", now()),
                subscription: format!("sub_{}", c.document),
                reduction_type: ReductionType::Module1,
                market_location: c.market_location.parse().expect("market location"),
                grid_operator: GRID_OPERATOR.parse().expect("grid operator"),
                meter_type: MeterType::Smart,
                status: GridFeeStatus::Ordered,
                product: Some(ModuleProduct::Module1),
                order_document: Some(c.document.clone()),
                accepted: false,
                valid_from: None,
                valid_until: None,
                rejection: None,
            };
            tx.insert_grid_fee(&order, None, now())
                .await
                .expect("insert order");
        }
        tx.commit().await.expect("commit orders");
    }
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The gateway instances of a run, one per store (pool): each with its journal writer and its
/// inbound worker.
struct Instances {
    sinks: Vec<Journal>,
    gateways: Vec<Arc<InboundWorker>>,
}

impl Instances {
    fn new(stores: &[Store], name: &str) -> Instances {
        let config = Config::load(None, &|_| None).expect("default configuration");
        let setup = Setup::load(&config, &mako_gateway::clock::Clock::fixed(now())).expect("setup");
        Instances {
            sinks: stores.iter().map(|s| Journal::new(s.clone())).collect(),
            gateways: stores
                .iter()
                .enumerate()
                .map(|(i, s)| Arc::new(setup.inbound_worker(s, &format!("{name}-{i}"))))
                .collect(),
        }
    }

    fn describe(&self, workers: usize) -> String {
        match self.gateways.len() {
            1 => format!("{workers} workers"),
            k => format!("{k} instances with {workers} workers each"),
        }
    }
}

async fn run(backend: &str, stores: &[Store], n: usize, workers: usize, target: f64) -> bool {
    let store = &stores[0];
    let instances = Instances::new(stores, &format!("bench-{backend}"));
    println!("\n## {backend} ({})", instances.describe(workers));
    let cases = cases(n);
    let raw = answers(&cases);
    set_up_orders(store, &cases).await;

    // As `serve` runs: transports deliver (IN_FLIGHT at once, as the file drop's pickup of 64
    // files or as many AS4 connections) while the workers process what is journaled.
    let in_flight = env_number("INBOUND_IN_FLIGHT", 64).max(1);
    let s0 = statements();
    if let Some(times) = STATEMENT_TIMES.get() {
        times.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
    let t0 = Instant::now();
    let journaling = tokio::spawn(journal_all(instances.sinks.clone(), raw, in_flight));
    let phase = process_all(&instances.gateways, workers, n).await;
    let journal = journaling.await.expect("journal task");
    let all = t0.elapsed();
    let (processed, errors, first_error) = (phase.processed, phase.errors, phase.first_error);
    let all_workers = workers * instances.gateways.len();

    let end_to_end = rate(n, all);
    println!(
        "journal      {:>8.0} msgs/s  ({n} in {:.2} s, Journal::receive, {in_flight} in flight, group commit)",
        rate(n, journal),
        journal.as_secs_f64()
    );
    println!(
        "processing   {processed} processed by {all_workers} workers alongside ({errors} retried after an error)"
    );
    if let Some(e) = first_error {
        println!("             first error: {e}");
    }
    println!(
        "end to end   {end_to_end:>8.0} msgs/s  (first delivered to last processed: {:.2} s, overlapped as in serve)",
        all.as_secs_f64()
    );
    let total_statements = statements() - s0;
    println!(
        "statements   {:>8.2} per answer, journal and processing ({total_statements} in all)",
        total_statements as f64 / n as f64,
    );
    print_statement_times();
    let problems = check(store, &cases, processed).await;
    for p in &problems {
        println!("FAIL {backend}: {p}");
    }
    println!(
        "target       {backend} end to end {end_to_end:.0} msgs/s with {} (target >= {target:.0}/s: {}; limit: the journal alone, {:.0}/s, in this run)",
        instances.describe(workers),
        if end_to_end >= target { "met" } else { "MISSED" },
        rate(n, journal)
    );
    problems.is_empty()
}

/// Delivers every interchange with `in_flight` deliveries at a time, as transports do; returns
/// the time until the last is journaled.
async fn journal_all(sinks: Vec<Journal>, raw: Vec<Vec<u8>>, in_flight: usize) -> Duration {
    use futures_util::stream::{self, StreamExt};
    let t0 = Instant::now();
    // Spread over the instances as a load balancer would: in turn.
    let mut deliveries = stream::iter(raw.into_iter().enumerate())
        .map(|(i, bytes)| {
            let sink = sinks[i % sinks.len()].clone();
            async move { sink.receive(bytes, Transport::File, now()).await }
        })
        .buffer_unordered(in_flight);
    while let Some(result) = deliveries.next().await {
        match result {
            Ok(Inserted::New(_)) => {}
            Ok(Inserted::Duplicate(id)) => panic!("interchange journaled twice as {id}"),
            Err(e) => panic!("journaling failed: {e}"),
        }
    }
    t0.elapsed()
}

/// What phase 2 did.
struct Processing {
    processed: usize,
    errors: usize,
    first_error: Option<String>,
}

/// `workers` tasks process until `total` items are processed (while they are still being
/// journaled, a worker finding nothing waits 1 ms, as `serve`'s loop waits for its wake-up).
async fn process_all(gateways: &[Arc<InboundWorker>], workers: usize, total: usize) -> Processing {
    let processed = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut tasks = Vec::new();
    for gateway in gateways
        .iter()
        .flat_map(|g| std::iter::repeat_n(g, workers))
    {
        let (gateway, processed, errors, first_error) = (
            Arc::clone(gateway),
            Arc::clone(&processed),
            Arc::clone(&errors),
            Arc::clone(&first_error),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                // As `serve` runs it: batches of INBOUND_BATCH per transaction.
                match gateway.process_batch(now(), INBOUND_BATCH).await {
                    Ok(Some(n)) => {
                        processed.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok(None) if processed.load(Ordering::Relaxed) >= total => break,
                    Ok(None) => tokio::time::sleep(Duration::from_millis(1)).await,
                    // Handed back by the worker; claimed again by the next call.
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .expect("not poisoned")
                            .get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let first_error = first_error.lock().expect("not poisoned").take();
    Processing {
        processed: processed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
    }
}

/// One day of quarter-hour values of one market location, as a grid operator sends them (MSCONS
/// 13017-like: 96 QTY with their intervals), with UNB reference `reference`: about 6 KB.
fn meter_values(reference: &str, i: usize) -> Vec<u8> {
    let mut body = format!(
        "UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+MV{i:010}+9'DTM+137:202606160600?+00:303'\
         RFF+Z13:13017'NAD+MS+{GRID_OPERATOR}::293'NAD+MR+9900000000003::293'UNS+D'NAD+DP'\
         LOC+172+DE00{i:029}'LIN+1'PIA+5+1-1?:1.29.0:SRW'"
    );
    let mut segments = 11;
    for q in 0..96u32 {
        let (from, to) = (q * 15, q * 15 + 15);
        body.push_str(&format!(
            "QTY+220:{}.{:03}'DTM+163:20260615{:02}{:02}?+00:303'DTM+164:20260615{:02}{:02}?+00:303'",
            (i + q as usize) % 7,
            q,
            from / 60 % 24,
            from % 60,
            to / 60 % 24,
            to % 60
        ));
        segments += 3;
    }
    body.push_str(&format!("UNT+{}+1'", segments + 1));
    format!(
        "UNA:+.? 'UNB+UNOC:3+{GRID_OPERATOR}:500+9900000000003:500+260616:0600+{reference}'{body}UNZ+1+{reference}'"
    )
    .into_bytes()
}

/// The forward path: `n` MSCONS received → journaled → processed → offered in the feed.
async fn run_forward(
    backend: &str,
    stores: &[Store],
    n: usize,
    workers: usize,
    target: f64,
) -> bool {
    let store = &stores[0];
    let instances = Instances::new(stores, &format!("bench-forward-{backend}"));
    println!(
        "\n## {backend}, forwarding (MSCONS 13017 to the supplier core; {})",
        instances.describe(workers)
    );
    let raw: Vec<Vec<u8>> = (0..n)
        .map(|i| meter_values(&format!("MV{:010}", 2_000_000 + i), i))
        .collect();
    let bytes: usize = raw.iter().map(Vec::len).sum();
    let in_flight = env_number("INBOUND_IN_FLIGHT", 64).max(1);
    let s0 = statements();
    let t0 = Instant::now();
    let journaling = tokio::spawn(journal_all(instances.sinks.clone(), raw, in_flight));
    let phase = process_all(&instances.gateways, workers, n).await;
    let journal = journaling.await.expect("journal task");
    let all = t0.elapsed();
    let end_to_end = rate(n, all);
    println!(
        "journal      {:>8.0} msgs/s  ({n} in {:.2} s, {:.1} MB, {in_flight} in flight, group commit)",
        rate(n, journal),
        journal.as_secs_f64(),
        bytes as f64 / 1e6
    );
    println!(
        "offered      {} processed by {} workers alongside ({} retried after an error)",
        phase.processed,
        workers * instances.gateways.len(),
        phase.errors
    );
    if let Some(e) = phase.first_error {
        println!("             first error: {e}");
    }
    println!(
        "end to end   {end_to_end:>8.0} msgs/s  (received -> journaled -> offered in the feed, overlapped: {:.2} s)",
        all.as_secs_f64()
    );
    println!(
        "statements   {:>8.2} per message, journal and processing",
        (statements() - s0) as f64 / n as f64,
    );
    let count = |sql: &'static str| async move {
        sqlx::query(sql)
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .try_get::<i64, _>("n")
            .expect("count")
    };
    let mut problems = Vec::new();
    for (what, sql, expected) in [
        (
            "messages offered (new)",
            "SELECT COUNT(*) AS n FROM messages WHERE direction = 'in' AND state = 'new' AND pid = 13017",
            n as i64,
        ),
        (
            "journal items offered twice",
            "SELECT COUNT(*) AS n FROM (SELECT journal_id FROM messages GROUP BY journal_id HAVING COUNT(*) > 1) d",
            0,
        ),
        (
            "message.received events",
            "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE topic = 'message.received'",
            n as i64,
        ),
    ] {
        let found = count(sql).await;
        if found != expected {
            problems.push(format!("{what}: {found}, expected {expected}"));
        }
    }
    for p in &problems {
        println!("FAIL {backend} forwarding: {p}");
    }
    println!(
        "target       {backend} forwarding end to end {end_to_end:.0} msgs/s (target >= {target:.0}/s: {}; limit: the journal alone, {:.0}/s, in this run)",
        if end_to_end >= target { "met" } else { "MISSED" },
        rate(n, journal)
    );
    problems.is_empty()
}

/// What the database says after the run; every difference from the expected is one line.
async fn check(store: &Store, cases: &[Case], processed: usize) -> Vec<String> {
    let n = cases.len() as i64;
    let billing = cases.iter().filter(|c| c.billing_data).count() as i64;
    let mut problems = Vec::new();
    if processed != cases.len() {
        problems.push(format!(
            "{processed} items processed by the workers, expected {n}"
        ));
    }
    let count = |sql: &'static str| async move {
        let row = sqlx::query(sql)
            .fetch_one(store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        row.try_get::<i64, _>("n").expect("count")
    };
    let mut expect = |what: &str, found: i64, expected: i64| {
        if found != expected {
            problems.push(format!("{what}: {found}, expected {expected}"));
        }
    };
    expect(
        "inbound journal items processed",
        count("SELECT COUNT(*) AS n FROM journal WHERE direction = 'in' AND state = 'processed'")
            .await,
        n,
    );
    // An item handed back after an error is claimed again: that is allowed, doing its work
    // twice is not (one history row per order below).
    expect(
        "reductions changed other than exactly once",
        count(
            "SELECT COUNT(*) AS n FROM grid_fee_reductions r WHERE \
             (SELECT COUNT(*) FROM status_history h WHERE h.order_id = r.id) <> 1",
        )
        .await,
        0,
    );
    expect(
        "reductions activated",
        count("SELECT COUNT(*) AS n FROM grid_fee_reductions WHERE status = 'activated'").await,
        billing,
    );
    let mut accepted = 0;
    let rows = sqlx::query("SELECT body FROM grid_fee_reductions WHERE status = 'ordered'")
        .fetch_all(store.pool())
        .await
        .expect("reductions");
    for row in rows {
        let body: String = row.try_get("body").expect("body");
        let order: GridFeeReduction = serde_json::from_str(&body).expect("order JSON");
        if order.accepted {
            accepted += 1;
        }
    }
    expect("reductions ordered and accepted", accepted, n - billing);
    expect(
        "status history rows",
        count("SELECT COUNT(*) AS n FROM status_history").await,
        n,
    );
    expect(
        "webhook events (grid_fee_reduction.activated)",
        count("SELECT COUNT(*) AS n FROM webhook_deliveries").await,
        billing,
    );
    // An APERAK for every answer, a UTILMD 55220 for every 55218.
    expect(
        "replies in the outbox",
        count("SELECT COUNT(*) AS n FROM outbox").await,
        n + billing,
    );
    expect(
        "clearing entries",
        count("SELECT COUNT(*) AS n FROM clearing").await,
        0,
    );
    problems
}
