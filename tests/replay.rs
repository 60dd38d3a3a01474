//! `mako-gateway replay` as a process against a real SQLite file: a dry run prints what a
//! saved answer would do and writes nothing; a real replay of an answer that matches nothing
//! lands in the clearing list and exits 1; a directory (more than three files) goes through
//! the progress bar path and ends with the summary line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mako_gateway::config::Config;
use mako_gateway::daemon::setup::Setup;
use mako_gateway::orders::{GridFeeReduction, GridFeeStatus, MeterType, ReductionType};
use mako_gateway::store::{new_id, NewOutboxItem, OrderKind, PageRequest, Store};
use sqlx::Row;

const OWN: &str = "9900000000003";
const VNB: &str = "9900000000011";

fn inbound_samples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/inbound")
}

/// `replay ARGS…` in `dir`, with no `MAKO_*` variable of the caller's environment.
fn replay(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mako-gateway"));
    for (name, _) in std::env::vars() {
        if name.starts_with("MAKO_") {
            command.env_remove(name);
        }
    }
    let Output {
        status,
        stdout,
        stderr,
    } = command
        .arg("replay")
        .args(args)
        .env("MAKO_OWN_ID", OWN)
        .current_dir(dir)
        .output()
        .expect("the binary runs");
    (
        status.code().expect("exited"),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

async fn count(store: &Store, statement: &str) -> i64 {
    sqlx::query(statement)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .get::<i64, _>(0)
}

/// A SQLite store with one §14a Modul 1 reduction sent to the grid operator by the real
/// outbound step; returns the URL, the reduction's id and its order document number.
async fn store_with_an_ordered_reduction(dir: &Path) -> (String, String, String) {
    let url = format!("sqlite://{}/gateway.db", dir.display());
    let store = Store::connect(&url).await.unwrap();
    let config = Config::load(
        Some(&format!(
            "own_id = \"{OWN}\"\ndata_dir = {:?}\n[database]\nurl = {url:?}\n",
            dir.join("data").display().to_string()
        )),
        &|_| None,
    )
    .unwrap();
    let now = mako_gateway::clock::Clock::system().now();
    let order = GridFeeReduction {
        id: new_id("gfr", mako_gateway::clock::Clock::system().now()),
        subscription: "sub-replay".into(),
        reduction_type: ReductionType::Module1,
        market_location: "51238696781".parse().unwrap(),
        grid_operator: VNB.parse().unwrap(),
        meter_type: MeterType::Smart,
        status: GridFeeStatus::Intended,
        product: None,
        order_document: None,
        accepted: false,
        valid_from: None,
        valid_until: None,
        rejection: None,
    };
    let mut tx = store.begin().await.unwrap();
    tx.insert_grid_fee(&order, None, now).await.unwrap();
    tx.add_outbox(
        &NewOutboxItem::order(OrderKind::GridFeeReduction, &order.id, VNB),
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let setup = Setup::load(&config, &mako_gateway::clock::Clock::fixed(now)).unwrap();
    let outbound = setup.outbound_worker(&config, &store, "replay-test");
    let sent = outbound.send_next(now).await.unwrap().unwrap();
    assert!(sent.outcome.starts_with("sent"), "{sent:?}");
    let record = store
        .conn()
        .await
        .unwrap()
        .grid_fee(&order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.order.status, GridFeeStatus::Ordered);
    store.close().await;
    (url, order.id, record.order.order_document.unwrap())
}

#[tokio::test]
async fn a_dry_run_prints_the_match_and_transition_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (url, id, doc) = store_with_an_ordered_reduction(dir.path()).await;
    let sample = std::fs::read(inbound_samples().join("ordrsp_19133_a99_rejected.edi")).unwrap();
    let answer = String::from_utf8_lossy(&sample).contains("MG10000000001");
    assert!(answer, "the sample names the document MG10000000001");
    let templated: Vec<u8> = {
        // Byte-wise: the sample is ISO 8859-1.
        let (from, to) = (b"MG10000000001".as_slice(), doc.as_bytes());
        let mut out = Vec::new();
        let mut i = 0;
        while i < sample.len() {
            if sample[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(sample[i]);
                i += 1;
            }
        }
        out
    };
    let file = dir.path().join("rejection.edi");
    std::fs::write(&file, templated).unwrap();
    let file_arg = file.display().to_string();

    let (code, stdout, stderr) = replay(dir.path(), &[&file_arg, "--dry-run", "--db", &url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "grid-fee reduction {id} ordered -> rejected (event grid_fee_reduction.rejected)"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("back to the partner: APERAK"), "{stdout}");
    assert!(
        stdout.contains("replayed 1 file(s) (dry run: nothing written): 1 processed, 0 unmatched"),
        "{stdout}"
    );

    let store = Store::connect(&url).await.unwrap();
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM journal WHERE direction = 'in'"
        )
        .await,
        0,
        "nothing journaled"
    );
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM outbox WHERE kind = 'ack'").await,
        0,
        "no APERAK queued"
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM clearing").await, 0);
    let record = store
        .conn()
        .await
        .unwrap()
        .grid_fee(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.order.status, GridFeeStatus::Ordered, "not applied");
    let history_before = store
        .conn()
        .await
        .unwrap()
        .history(&id)
        .await
        .unwrap()
        .len();

    // The same file for real: journaled as a replay, applied, and only once.
    store.close().await;
    let (code, stdout, stderr) = replay(dir.path(), &[&file_arg, "--db", &url]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, again, stderr) = replay(dir.path(), &[&file_arg, "--db", &url]);
    assert_eq!(code, 0, "{again}{stderr}");
    assert!(
        again.contains("already journaled") && again.contains("1 already journaled"),
        "{again}"
    );
    let store = Store::connect(&url).await.unwrap();
    let record = store
        .conn()
        .await
        .unwrap()
        .grid_fee(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.order.status, GridFeeStatus::Rejected, "{stdout}");
    assert_eq!(
        store
            .conn()
            .await
            .unwrap()
            .history(&id)
            .await
            .unwrap()
            .len(),
        history_before + 1
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM journal WHERE direction = 'in' AND transport = 'replay' AND state = 'processed'"
        )
        .await,
        1
    );
    store.close().await;
}

#[tokio::test]
async fn replaying_an_answer_that_matches_nothing_exits_1_and_lands_in_clearing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gateway.db", dir.path().display());
    let file = inbound_samples().join("ordrsp_19005_e0250_a02_confirmed.edi");
    let (code, stdout, stderr) = replay(dir.path(), &[&file.display().to_string(), "--db", &url]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(stdout.contains("UNMATCHED, to clearing"), "{stdout}");
    assert!(stdout.contains("1 processed, 1 unmatched"), "{stdout}");

    let store = Store::connect(&url).await.unwrap();
    let clearing = store
        .conn()
        .await
        .unwrap()
        .list_clearing(
            false,
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(clearing.items.len(), 1, "{clearing:?}");
    let item = &clearing.items[0];
    assert_eq!(item.partner.as_deref(), Some("9900000000029"));
    assert_eq!(item.interchange_ref.as_deref(), Some("MS0000000001"));
    assert!(item.reason.contains("MG00000007"), "{}", item.reason);
    let journal = store
        .conn()
        .await
        .unwrap()
        .journal_item(&item.journal_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        journal.raw,
        std::fs::read(&file).unwrap(),
        "the journal keeps the bytes"
    );
    store.close().await;
}

#[tokio::test]
async fn a_directory_goes_through_the_progress_bar_and_ends_with_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/gateway.db", dir.path().display());
    let files = std::fs::read_dir(inbound_samples())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            !name.to_string_lossy().starts_with('.')
        })
        .count();
    assert!(files > 3, "the progress bar needs more than three files");
    let samples = inbound_samples().display().to_string();
    let (code, stdout, stderr) = replay(dir.path(), &[&samples, "--dry-run", "--db", &url]);
    // Against an empty store every answer is unmatched.
    assert_eq!(code, 1, "{stdout}{stderr}");
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with(&format!(
            "replayed {files} file(s) (dry run: nothing written): {files} processed"
        )),
        "{stdout}"
    );
    assert!(summary.ends_with("0 failed"), "{summary}");
    let store = Store::connect(&url).await.unwrap();
    assert_eq!(count(&store, "SELECT COUNT(*) FROM journal").await, 0);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM clearing").await, 0);
    store.close().await;
}
