//! The file drop's inbox with files that cannot be taken, on a real SQLite store: each file is
//! handled on its own, a bad one is set aside in `inbox/failed/` with its reason, the others are
//! journaled (issue 15 defect 2).

mod support;

use std::time::Duration;

use mako_gateway::clock::Clock;
use mako_gateway::transport::file_drop::{pick_up, write_atomically, MAX_FILE_BYTES};
use mako_gateway::worker::receive::Journal;

fn interchange(reference: &str) -> Vec<u8> {
    format!(
        "UNA:+.? 'UNB+UNOC:3+9900000000011:500+9900000000003:500+261001:0815+{reference}'\
         UNH+1+MSCONS:D:04B:UN:2.4c'BGM+7+D1+9'UNT+3+1'UNZ+1+{reference}'"
    )
    .into_bytes()
}

#[tokio::test]
async fn regression_one_bad_file_never_stops_the_others() {
    let (_dir, store) = support::sqlite().await;
    let data = tempfile::tempdir().unwrap();
    let inbox = data.path().join("inbox");
    write_atomically(&inbox, "a-good.edi", &interchange("R1")).unwrap();
    // A name that fits the inbox but not with the claim prefix ("<worker>--").
    let long = format!("{}.edi", "b".repeat(245));
    write_atomically(&inbox, &long, &interchange("R2")).unwrap();
    // A file over the limit, sparse (not read, not even in part).
    let big = std::fs::File::create(inbox.join("c-big.edi")).unwrap();
    big.set_len(MAX_FILE_BYTES + 1).unwrap();
    drop(big);
    write_atomically(&inbox, "d-good.edi", &interchange("R3")).unwrap();
    // Issue 15 defect 11: a link and a folder are never read, and never left unseen.
    std::os::unix::fs::symlink("/etc/passwd", inbox.join("e-link.edi")).unwrap();
    std::fs::create_dir(inbox.join("f-folder")).unwrap();

    let sink = Journal::new(store.clone());
    let now = Clock::system().now();
    let mut journaled = 0;
    while let Some(n) = pick_up(
        &inbox,
        "worker-with-a-long-name",
        Duration::from_secs(30),
        MAX_FILE_BYTES,
        &sink,
        now,
    )
    .await
    .unwrap()
    {
        journaled += n;
        if n == 0 {
            break;
        }
    }
    assert_eq!(journaled, 2);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM journal WHERE direction = 'in'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 2);
    let failed = inbox.join("failed");
    let reasons: Vec<String> = std::fs::read_dir(&failed)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".reason.txt"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("symbolic link")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("a folder")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("cannot be claimed")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("more than")),
        "{reasons:?}"
    );
    assert!(failed.join(&long).exists() && failed.join("c-big.edi").exists());
    // Nothing is left waiting or half-claimed.
    let left: Vec<_> = std::fs::read_dir(&inbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !matches!(n.as_str(), ".claimed" | "done" | "failed"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        std::fs::read_dir(inbox.join(".claimed")).unwrap().count(),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Issue 15: what the file drop sets aside is visible (GET /inbox/failed, the metric
// mako_file_drop_failed_files), the size cap is `file_drop.max_file_bytes`, and a file drop
// that cannot read its inbox or write its outbox makes /health degraded.
// ---------------------------------------------------------------------------------------------

#[path = "common/gateway.rs"]
mod gateway;

fn config(data: &std::path::Path, extra: &str) -> mako_gateway::config::Config {
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
{extra}
"#,
        data = data.display().to_string()
    );
    mako_gateway::config::Config::load(Some(&text), &|_| None)
        .unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

async fn metrics(gw: &gateway::Daemon) -> String {
    gw.client
        .get(format!("{}/metrics", gw.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_set_aside_files_are_listed_and_counted_and_the_size_cap_is_configured() {
    let data = tempfile::tempdir().unwrap();
    let inbox = data.path().join("inbox");
    write_atomically(&inbox, "a-good.edi", &interchange("R1")).unwrap();
    write_atomically(&inbox, "b-big.edi", &vec![b'x'; 4096]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", inbox.join("c-link.edi")).unwrap();
    let gw =
        gateway::Daemon::start(config(data.path(), "[file_drop]\nmax_file_bytes = 2048")).await;
    let listed = gw
        .wait("two files set aside", || async {
            let page = gw.get("/inbox/failed").await;
            let data = page["data"].as_array().unwrap().clone();
            (data.len() == 2).then_some(data)
        })
        .await;
    let by_name = |name: &str| {
        listed
            .iter()
            .find(|f| f["name"] == name)
            .unwrap_or_else(|| panic!("{name} not in {listed:?}"))
            .clone()
    };
    let big = by_name("b-big.edi");
    assert_eq!(big["object"], "failed_file");
    assert_eq!(big["size"], 4096);
    assert_eq!(big["kind"], "file");
    assert!(
        big["reason"]
            .as_str()
            .unwrap()
            .contains("4096 bytes, more than the 2048 bytes"),
        "{big}"
    );
    assert!(
        big["set_aside_at"].as_str().unwrap().ends_with('Z'),
        "{big}"
    );
    let link = by_name("c-link.edi");
    assert_eq!(link["kind"], "symbolic link");
    assert!(
        link["reason"].as_str().unwrap().contains("symbolic link"),
        "{link}"
    );
    // The good one went through.
    gw.wait("the good file journaled", || async {
        let page = gw.get("/journal?filter[direction][eq]=in").await;
        (page["data"].as_array().unwrap().len() == 1).then_some(())
    })
    .await;
    // Pages of one, with a cursor, cover both once.
    let first = gw.get("/inbox/failed?limit=1").await;
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_string();
    let second = gw
        .get(&format!("/inbox/failed?limit=1&cursor={cursor}"))
        .await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let mut names = vec![
        first["data"][0]["name"].as_str().unwrap().to_string(),
        second["data"][0]["name"].as_str().unwrap().to_string(),
    ];
    names.sort();
    assert_eq!(names, ["b-big.edi", "c-link.edi"]);
    // A cursor no page gave is a 400; the listing needs the token.
    let response = gw
        .client
        .get(format!("{}/inbox/failed?cursor=ff_x", gw.base))
        .bearer_auth(gateway::TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST);
    let response = gw
        .client
        .get(format!("{}/inbox/failed", gw.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
    let text = metrics(&gw).await;
    assert!(
        text.lines().any(|l| l == "mako_file_drop_failed_files 2"),
        "{text}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn regression_a_file_drop_that_cannot_read_its_inbox_or_write_its_outbox_is_reported() {
    let data = tempfile::tempdir().unwrap();
    // Both folders are regular files: the inbox cannot be read, the outbox not written.
    std::fs::write(data.path().join("inbox"), b"not a folder").unwrap();
    std::fs::write(data.path().join("outbox"), b"not a folder").unwrap();
    let gw = gateway::Daemon::start(config(data.path(), "")).await;
    gw.order("sub-file-health", "51238696781", "9900000000011")
        .await;
    let body = gw
        .wait("both file-drop parts failing", || async {
            let response = gw
                .client
                .get(format!("{}/health", gw.base))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            let body: serde_json::Value = response.json().await.unwrap();
            let failing = body["failing"].as_array()?.clone();
            let named = |t: &str, p: Option<&str>| {
                failing
                    .iter()
                    .any(|f| f["transport"] == t && f["partner"].as_str() == p)
            };
            (named("file_drop_inbox", None)
                && named("file_drop_outbox", None)
                && named("file_drop_outbox", Some("9900000000011")))
            .then_some(body)
        })
        .await;
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["transports"]["file_drop_inbox"]["last_failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("reading the inbox"),
        "{body}"
    );
    let text = metrics(&gw).await;
    for line in [
        "mako_transport_up{transport=\"file_drop_inbox\"} 0",
        "mako_transport_up{transport=\"file_drop_outbox\"} 0",
        "mako_partner_up{partner=\"9900000000011\",transport=\"file_drop_outbox\"} 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    gw.stop().await;
}

/// Issue 16: the files of one pickup are journaled together (one group commit) and keep their
/// claim order (oldest name first) in the journal, which processing follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pickup_journals_its_files_together_in_claim_order() {
    let (_dir, store) = support::sqlite().await;
    let data = tempfile::tempdir().unwrap();
    let inbox = data.path().join("inbox");
    for i in 0..50 {
        write_atomically(
            &inbox,
            &format!("f{i:03}.edi"),
            &interchange(&format!("O{i:03}")),
        )
        .unwrap();
    }
    let sink = Journal::new(store.clone());
    let now = Clock::system().now();
    let n = pick_up(
        &inbox,
        "w",
        Duration::from_secs(30),
        MAX_FILE_BYTES,
        &sink,
        now,
    )
    .await
    .unwrap();
    assert_eq!(n, Some(50));
    let refs: Vec<String> = sqlx::query_scalar(
        "SELECT interchange_ref FROM journal WHERE direction = 'in' ORDER BY id",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    let expected: Vec<String> = (0..50).map(|i| format!("O{i:03}")).collect();
    assert_eq!(refs, expected);
    assert_eq!(std::fs::read_dir(inbox.join("done")).unwrap().count(), 50);
}
