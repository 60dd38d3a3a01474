//! The file-drop transport, the default for every partner without AS4 or e-mail: outbound
//! interchanges are written to `data/outbox/` ([`FileDrop`], the [`Outbound`] of this
//! transport), inbound ones are picked up from `data/inbox/` ([`pick_up`], which hands them to
//! the [`InboundSink`]; complete files only: names starting with `.` or ending in
//! `.tmp`/`.part` are still being written).
//!
//! Pickup is safe with several gateway instances on one inbox: a file is claimed by an atomic
//! rename into `inbox/.claimed/` (only one rename wins), journaled and committed, and only
//! then moved to `inbox/done/`. A crash leaves it in `.claimed/`, from where it is picked up
//! again once its claim is older than the lease; the journal stores it once (sender and UNB
//! reference).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use super::{BoxFuture, InboundSink, Outbound, Outgoing, SendError, Sent};
use crate::store::{Inserted, StoreError, Transport};

/// The outbound side: every interchange becomes `<partner>_<UNB reference>.edi` in one
/// folder, written atomically. Writing the same name again after a crash writes the same bytes.
#[derive(Debug, Clone)]
pub struct FileDrop {
    outbox: PathBuf,
}

impl FileDrop {
    /// Writes into `outbox` (created when needed).
    pub fn new(outbox: PathBuf) -> FileDrop {
        FileDrop { outbox }
    }
}

impl Outbound for FileDrop {
    fn kind(&self) -> Transport {
        Transport::File
    }

    fn send<'a>(&'a self, interchange: Outgoing<'a>) -> BoxFuture<'a, Result<Sent, SendError>> {
        Box::pin(async move {
            let dir = self.outbox.clone();
            let name = format!(
                "{}_{}.edi",
                interchange.partner, interchange.interchange_ref
            );
            let bytes = interchange.bytes.to_vec();
            let path = tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
                .await
                .map_err(SendError::transient)?
                .map_err(SendError::transient)?;
            Ok(Sent {
                description: path.display().to_string(),
            })
        })
    }
}

/// Why a pickup of the inbox stopped.
#[derive(Debug, thiserror::Error)]
pub enum PickupError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Journaling failed (nothing is acknowledged: the file stays claimed and comes again).
    #[error(transparent)]
    Journal(#[from] StoreError),
    /// The blocking file task failed.
    #[error("the inbox task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl PickupError {
    /// True when trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            PickupError::Journal(e) => e.is_transient(),
            PickupError::Io { .. } | PickupError::Task(_) => true,
        }
    }
}

/// Claims the complete files of `inbox` (at most 64) for `worker`, hands each to `sink` and,
/// once it is journaled, moves it to `inbox/done/`. Returns how many were journaled, `None`
/// when there was nothing.
pub async fn pick_up(
    inbox: &Path,
    worker: &str,
    lease: Duration,
    sink: &dyn InboundSink,
    now: DateTime<Utc>,
) -> Result<Option<usize>, PickupError> {
    let dir = inbox.to_path_buf();
    let claimer = worker.to_string();
    let at = SystemTime::from(now);
    let claimed = tokio::task::spawn_blocking(move || claim(&dir, &claimer, lease, 64, at))
        .await?
        .map_err(|source| PickupError::Io {
            what: "reading the inbox",
            path: inbox.to_path_buf(),
            source,
        })?;
    if claimed.is_empty() {
        return Ok(None);
    }
    let count = claimed.len();
    for file in claimed {
        let raw = tokio::fs::read(&file.path)
            .await
            .map_err(|source| PickupError::Io {
                what: "reading",
                path: file.path.clone(),
                source,
            })?;
        let inserted = sink.receive(raw, Transport::File, now).await?;
        if let Inserted::Duplicate(id) = &inserted {
            tracing::info!(file = %file.name, journal = %id, "delivered twice: journaled once");
        }
        done(inbox, &file, inserted.journal_id()).map_err(|source| PickupError::Io {
            what: "moving to done",
            path: file.path.clone(),
            source,
        })?;
    }
    Ok(Some(count))
}

/// Writes `bytes` to `dir/name` atomically (a temporary file, flushed to disk, then renamed):
/// a reader never sees half a file. Returns the path.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let target = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&temporary)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&temporary, &target)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}

/// True for names of files that are complete.
pub fn is_complete(name: &str) -> bool {
    !(name.starts_with('.') || name.ends_with(".tmp") || name.ends_with(".part"))
}

/// A file claimed for pickup.
#[derive(Debug)]
pub struct Claimed {
    /// Where it is now (`inbox/.claimed/…`).
    pub path: PathBuf,
    /// Its original name.
    pub name: String,
}

/// Claims the complete files of `inbox` (and claims in `.claimed/` older than `stale` at
/// `now`, left by a crashed instance), oldest name first, at most `limit`.
pub fn claim(
    inbox: &Path,
    worker: &str,
    stale: Duration,
    limit: usize,
    now: SystemTime,
) -> std::io::Result<Vec<Claimed>> {
    let claimed_dir = inbox.join(".claimed");
    std::fs::create_dir_all(&claimed_dir)?;
    std::fs::create_dir_all(inbox.join("done"))?;
    let mut out = Vec::new();
    let mut names: Vec<(PathBuf, String)> = Vec::new();
    for entry in std::fs::read_dir(inbox)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && is_complete(&name) {
            names.push((entry.path(), name));
        }
    }
    // Stale claims: "<worker>--<name>" older than the lease.
    for entry in std::fs::read_dir(&claimed_dir)? {
        let entry = entry?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let modified = entry.metadata()?.modified()?;
        let old = now.duration_since(modified).unwrap_or_default() > stale;
        let mine = file.starts_with(&format!("{worker}--"));
        if let (true, Some((_, name))) = (old || mine, file.split_once("--")) {
            names.push((entry.path(), name.to_string()));
        }
    }
    names.sort_by(|a, b| a.1.cmp(&b.1));
    for (path, name) in names.into_iter().take(limit) {
        let target = claimed_dir.join(format!("{worker}--{name}"));
        if path == target {
            out.push(Claimed { path, name });
            continue;
        }
        match std::fs::rename(&path, &target) {
            Ok(()) => {
                // Touch the claim so that it is not stale for the others.
                if let Ok(f) = std::fs::File::options().append(true).open(&target) {
                    let _ = f.set_modified(now);
                }
                out.push(Claimed { path: target, name });
            }
            // Another instance was faster.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Moves a journaled file to `inbox/done/<journal id>--<name>` (the acknowledgement of the
/// file-drop transport). A file already gone (another instance moved it) is fine.
pub fn done(inbox: &Path, claimed: &Claimed, journal_id: &str) -> std::io::Result<PathBuf> {
    let target = inbox
        .join("done")
        .join(format!("{journal_id}--{}", claimed.name));
    match std::fs::rename(&claimed.path, &target) {
        Ok(()) => Ok(target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(target),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_files_are_claimed_and_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path();
        write_atomically(inbox, "a.edi", b"UNA").unwrap();
        std::fs::write(inbox.join("b.edi.part"), b"half").unwrap();
        std::fs::write(inbox.join(".c.edi.tmp"), b"half").unwrap();
        let first = claim(
            inbox,
            "w1",
            Duration::from_secs(60),
            10,
            SystemTime::from(crate::clock::Clock::system().now()),
        )
        .unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].name, "a.edi");
        // A second instance finds nothing: the claim is fresh and not its own.
        assert!(claim(
            inbox,
            "w2",
            Duration::from_secs(60),
            10,
            SystemTime::from(crate::clock::Clock::system().now())
        )
        .unwrap()
        .is_empty());
        // After a crash the same worker (or anyone once it is stale) takes it again.
        let again = claim(
            inbox,
            "w1",
            Duration::from_secs(60),
            10,
            SystemTime::from(crate::clock::Clock::system().now()),
        )
        .unwrap();
        assert_eq!(again.len(), 1);
        let stolen = claim(
            inbox,
            "w2",
            Duration::ZERO,
            10,
            SystemTime::from(crate::clock::Clock::system().now()),
        )
        .unwrap();
        assert_eq!(stolen.len(), 1);
        let moved = done(inbox, &stolen[0], "jrn_1").unwrap();
        assert_eq!(std::fs::read(moved).unwrap(), b"UNA");
        // Done twice (the slower instance): no error.
        done(inbox, &stolen[0], "jrn_1").unwrap();
    }
}
