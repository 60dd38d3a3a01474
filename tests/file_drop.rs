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
