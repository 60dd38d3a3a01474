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

use std::collections::{BTreeMap, BTreeSet};
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
            // Both parts come from partner data (a reply goes to the UNB sender it answers):
            // checked before they name a file, never trusted to stay inside the folder.
            let name = outbox_file_name(interchange.partner, interchange.interchange_ref)
                .map_err(|e| SendError::permanent(e).for_this_partner_only())?;
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
/// once it is journaled, moves it to `inbox/done/`. A file larger than `max_file_bytes`
/// (`file_drop.max_file_bytes`) is set aside unread. Returns how many were journaled, `None`
/// when there was nothing.
pub async fn pick_up(
    inbox: &Path,
    worker: &str,
    lease: Duration,
    max_file_bytes: u64,
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
    // Read in claim order and journaled together (one group commit, see
    // `worker::receive::Journal`) up to GROUP_BYTES at a time, so that memory stays bounded.
    let mut journaled = 0;
    let mut group: Vec<(Claimed, Vec<u8>)> = Vec::new();
    let mut group_bytes = 0usize;
    for file in claimed {
        // Each file on its own: one that cannot be read or journaled is moved aside with its
        // reason, and the others go on.
        let raw = match read_at_most(&file.path, max_file_bytes).await {
            Ok(raw) => raw,
            Err(reason) => {
                set_aside(inbox, &file.path, &file.name, &reason);
                continue;
            }
        };
        group_bytes += raw.len();
        group.push((file, raw));
        if group_bytes >= GROUP_BYTES {
            journaled += journal_group(inbox, std::mem::take(&mut group), sink, now).await?;
            group_bytes = 0;
        }
    }
    journaled += journal_group(inbox, group, sink, now).await?;
    Ok(Some(journaled))
}

/// Bytes of files read before they are journaled together (a larger file goes alone).
const GROUP_BYTES: usize = 32 * 1024 * 1024;

/// Journals files at once (their `receive` calls queued in claim order, so the journal keeps
/// it), then moves each journaled one to `done/`. A file the store refuses is set aside; when
/// the store is away, the files not journaled stay claimed and come again, and the error is
/// returned once the others are done.
async fn journal_group(
    inbox: &Path,
    group: Vec<(Claimed, Vec<u8>)>,
    sink: &dyn InboundSink,
    now: DateTime<Utc>,
) -> Result<usize, PickupError> {
    let (files, raws): (Vec<Claimed>, Vec<Vec<u8>>) = group.into_iter().unzip();
    let results = futures_util::future::join_all(
        raws.into_iter()
            .map(|raw| sink.receive(raw, Transport::File, now)),
    )
    .await;
    let mut journaled = 0;
    let mut away = None;
    for (file, result) in files.into_iter().zip(results) {
        let inserted = match result {
            Ok(inserted) => inserted,
            // The store is away: the file stays claimed and comes again.
            Err(e) if e.is_transient() => {
                away.get_or_insert(e);
                continue;
            }
            Err(e) => {
                set_aside(
                    inbox,
                    &file.path,
                    &file.name,
                    &format!("cannot be journaled: {e}"),
                );
                continue;
            }
        };
        if let Inserted::Duplicate(id) = &inserted {
            tracing::info!(file = %file.name, journal = %id, "delivered twice: journaled once");
        }
        done(inbox, &file, inserted.journal_id()).map_err(|source| PickupError::Io {
            what: "moving to done",
            path: file.path.clone(),
            source,
        })?;
        journaled += 1;
    }
    match away {
        Some(e) => Err(e.into()),
        None => Ok(journaled),
    }
}

/// Largest file the file drop reads by default (256 MiB, `file_drop.max_file_bytes`): a
/// larger one is set aside unread.
pub const MAX_FILE_BYTES: u64 = crate::config::DEFAULT_MAX_FILE_BYTES;

/// The bytes of a claimed file, when it has at most `max` of them; else why not, in words for
/// its reason file. The size is checked on the opened file before anything is read, and the
/// read stops after `max + 1` bytes, so a file that grows meanwhile is refused too and never
/// read whole.
async fn read_at_most(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use tokio::io::AsyncReadExt;
    let too_big = |n: String| {
        format!("{n} bytes, more than the {max} bytes a file may have (file_drop.max_file_bytes)")
    };
    let cannot = |e: std::io::Error| format!("cannot be read: {e}");
    let file = tokio::fs::File::open(path).await.map_err(cannot)?;
    let len = file.metadata().await.map_err(cannot)?.len();
    if len > max {
        return Err(too_big(len.to_string()));
    }
    let mut raw = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut raw)
        .await
        .map_err(cannot)?;
    if raw.len() as u64 > max {
        return Err(format!(
            "grew to more than the {max} bytes a file may have while it was read \
             (file_drop.max_file_bytes)"
        ));
    }
    Ok(raw)
}

/// A file the file drop set aside in `inbox/failed/`, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedFile {
    /// Its name (not valid UTF-8 shown with replacement characters).
    pub name: String,
    /// Its size in bytes (of the link itself for a symbolic link).
    pub size: u64,
    /// `file`, `symbolic link`, `folder` or `other` (FIFO, socket, device).
    pub kind: &'static str,
    /// The text of `<name>.reason.txt` (at most [`MAX_REASON_BYTES`]), `None` without one.
    pub reason: Option<String>,
    /// When it was set aside: the reason file's time, else the entry's own.
    pub set_aside_at: Option<DateTime<Utc>>,
}

/// Most bytes of a reason file shown (ours are one line; anything longer is not ours).
pub const MAX_REASON_BYTES: u64 = 4096;

/// The reason file's name of a set-aside entry named `name`: `<name>.reason.txt`, the name cut
/// where the whole would exceed a file name's 255 bytes (as [`set_aside`] writes it).
fn reason_file_name(name: &str) -> String {
    let mut stem = name;
    while stem.len() > 240 {
        let mut cut = 240.min(stem.len() - 1);
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem = &stem[..cut];
    }
    format!("{stem}.reason.txt")
}

/// Entries of `inbox/failed/`: the name as shown (replacement characters where not UTF-8)
/// and the real one, for the file system.
type Entries = BTreeMap<String, std::ffi::OsString>;

/// The entries of `inbox/failed/`, split into the set-aside entries and their reason files.
/// Empty when the folder does not exist.
fn failed_entries(inbox: &Path) -> std::io::Result<(Entries, Entries)> {
    let entries = match std::fs::read_dir(inbox.join("failed")) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => return Err(e),
    };
    let mut names = BTreeMap::new();
    for entry in entries {
        let name = entry?.file_name();
        names.insert(name.to_string_lossy().into_owned(), name);
    }
    let reason_names: BTreeSet<String> = names
        .keys()
        .map(|n| reason_file_name(n))
        .filter(|r| names.contains_key(r))
        .collect();
    let (reasons, set_aside): (BTreeMap<_, _>, BTreeMap<_, _>) = names
        .into_iter()
        .partition(|(shown, _)| reason_names.contains(shown));
    Ok((set_aside, reasons))
}

/// Everything the file drop set aside in `inbox/failed/`, newest first (by the time set
/// aside, then name); nothing when the folder does not exist. Nothing is followed or
/// opened except the reason files, and those only when they are regular files.
pub fn failed_files(inbox: &Path) -> std::io::Result<Vec<FailedFile>> {
    let failed = inbox.join("failed");
    let (set_aside, reasons) = failed_entries(inbox)?;
    let mut out = Vec::new();
    for (name, real) in set_aside {
        // Gone since the listing (moved away by an operator): skipped.
        let Ok(meta) = std::fs::symlink_metadata(failed.join(&real)) else {
            continue;
        };
        let kind = if meta.file_type().is_symlink() {
            "symbolic link"
        } else if meta.is_dir() {
            "folder"
        } else if meta.is_file() {
            "file"
        } else {
            "other"
        };
        let (reason, reason_time) = match reasons.get(&reason_file_name(&name)) {
            Some(reason_file) => read_reason(&failed.join(reason_file)),
            None => (None, None),
        };
        out.push(FailedFile {
            name,
            size: meta.len(),
            kind,
            reason,
            set_aside_at: reason_time
                .or_else(|| meta.modified().ok())
                .map(DateTime::<Utc>::from),
        });
    }
    out.sort_by(|a, b| {
        b.set_aside_at
            .cmp(&a.set_aside_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    Ok(out)
}

/// How many entries the file drop set aside in `inbox/failed/` (reason files not counted;
/// nothing is opened).
pub fn count_failed_files(inbox: &Path) -> std::io::Result<usize> {
    failed_entries(inbox).map(|(set_aside, _)| set_aside.len())
}

/// A reason file's text and time, when it is a regular file (never a link or a FIFO, whose
/// open could block: the type is checked on the opened file too).
fn read_reason(path: &Path) -> (Option<String>, Option<SystemTime>) {
    use std::io::Read;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return (None, None);
    };
    if !meta.is_file() {
        return (None, None);
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    let Ok(file) = options.open(path) else {
        return (None, meta.modified().ok());
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return (None, meta.modified().ok());
    }
    let mut bytes = Vec::new();
    let _ = file.take(MAX_REASON_BYTES).read_to_end(&mut bytes);
    (
        Some(String::from_utf8_lossy(&bytes).trim_end().to_string()),
        meta.modified().ok(),
    )
}

/// Moves a file the file drop cannot take to `inbox/failed/<name>` with `<name>.reason.txt`
/// beside it, and says so in the log; never fails (a file that cannot even be moved stays
/// where it is and is logged).
pub fn set_aside(inbox: &Path, path: &Path, name: &str, reason: &str) {
    let failed = inbox.join("failed");
    let moved =
        std::fs::create_dir_all(&failed).and_then(|()| std::fs::rename(path, failed.join(name)));
    match moved {
        Ok(()) => {
            let _ = std::fs::write(failed.join(reason_file_name(name)), reason);
            tracing::warn!(file = %name, reason, "inbox file set aside in inbox/failed/");
        }
        Err(e) => {
            tracing::error!(file = %name, reason, error = %e, "inbox file cannot be taken nor set aside");
        }
    }
}

/// Longest part of an outbox file name: a market partner ID has 13 characters, a UNB
/// reference (DE0020) at most 14; some room for other schemes.
const MAX_NAME_PART: usize = 35;

/// Why an interchange cannot be written to the outbox folder under its partner and reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} cannot name a file: only ASCII letters, digits and '-', 1 to {MAX_NAME_PART} characters")]
pub struct UnsafeFileName {
    /// Which part.
    pub what: &'static str,
    /// The value as given (shown escaped).
    pub value: String,
}

/// True for a part of a file name made only of ASCII letters, digits and `-` (so no path
/// separator, no `.` or `..`, no control character), 1 to 35 characters.
pub fn is_safe_name_part(part: &str) -> bool {
    (1..=MAX_NAME_PART).contains(&part.len())
        && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `<partner>_<reference>.edi`, when both parts are safe ([`is_safe_name_part`]).
pub fn outbox_file_name(partner: &str, reference: &str) -> Result<String, UnsafeFileName> {
    for (what, value) in [("partner", partner), ("UNB reference", reference)] {
        if !is_safe_name_part(value) {
            return Err(UnsafeFileName {
                what,
                value: value.chars().take(80).collect(),
            });
        }
    }
    Ok(format!("{partner}_{reference}.edi"))
}

/// Writes `bytes` to `dir/name` atomically (a temporary file, flushed to disk, then renamed):
/// a reader never sees half a file. Returns the path. A `name` that is not one plain file name
/// inside `dir` (a separator, `.` or `..`, a leading `.`, a NUL) is refused.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).components().count() == 1;
    if !plain {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{name:?} is not a plain file name inside the folder"),
        ));
    }
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
        let kind = entry.file_type()?;
        if kind.is_file() {
            if is_complete(&name) {
                names.push((entry.path(), name));
            }
        } else if is_complete(&name) && !matches!(name.as_str(), "done" | "failed") {
            // A symlink, FIFO, socket or folder is never read (a link could point anywhere, a
            // FIFO would block): set aside with its reason instead of staying unseen.
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else if kind.is_dir() {
                "a folder"
            } else {
                "not a regular file (FIFO, socket or device)"
            };
            set_aside(inbox, &entry.path(), &name, &format!("{what}: not read"));
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
            // This file cannot be claimed (a name too long for the claim prefix, …): set
            // aside, the others are claimed.
            Err(e) => set_aside(inbox, &path, &name, &format!("cannot be claimed: {e}")),
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
    fn regression_a_unb_sender_never_names_a_file_outside_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = dir.path().join("outbox");
        let escape = dir.path().join("escape");
        let hostile = format!("./../../../..{}", escape.display());
        // The name is refused before anything is written…
        let e = outbox_file_name(&hostile, "R1").unwrap_err();
        assert_eq!(e.what, "partner");
        for bad in [
            "",
            "..",
            "a/b",
            "a\\b",
            "9900000000003\0",
            "x.edi",
            &"9".repeat(36),
        ] {
            assert!(outbox_file_name(bad, "R1").is_err(), "{bad:?}");
            assert!(outbox_file_name("9900000000003", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            outbox_file_name("9900000000003", "MG0000000042").unwrap(),
            "9900000000003_MG0000000042.edi"
        );
        // …and the writer refuses any name that is not a plain file name in its folder.
        for bad in ["../x.edi", "a/b.edi", ".hidden", "", "x\0y"] {
            let e = write_atomically(&outbox, bad, b"UNA").unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
        }
        assert!(!escape.exists());
        assert!(std::fs::read_dir(dir.path())
            .unwrap()
            .all(|e| e.unwrap().file_name() != "escape_R1.edi"));
    }

    #[tokio::test]
    async fn regression_a_reply_to_a_hostile_sender_is_refused_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let drop = FileDrop::new(dir.path().join("outbox"));
        let escape = dir.path().join("escape");
        let partner = format!("./../{}", escape.display());
        let e = drop
            .send(Outgoing {
                outbox_id: "obx_1",
                partner: &partner,
                interchange_ref: "R1",
                bytes: b"UNA",
                now: crate::clock::Clock::system().now(),
            })
            .await
            .unwrap_err();
        assert!(!e.is_transient(), "{e}");
        assert!(!escape.exists());
        assert!(!dir.path().join("outbox").exists());
    }

    #[test]
    fn set_aside_entries_are_listed_with_their_reasons_whatever_their_names_and_kinds() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let inbox = dir.path();
        write_atomically(inbox, "a-big.edi", b"UNA").unwrap();
        set_aside(inbox, &inbox.join("a-big.edi"), "a-big.edi", "too big");
        let long = format!("{}.edi", "l".repeat(250));
        std::fs::create_dir_all(inbox.join("failed")).unwrap();
        std::fs::write(inbox.join("failed").join(&long), b"x").unwrap();
        std::fs::write(
            inbox.join("failed").join(reason_file_name(&long)),
            "cannot be claimed",
        )
        .unwrap();
        // A name that is not UTF-8, put there by hand.
        let odd = std::ffi::OsStr::from_bytes(b"odd-\xff.edi");
        std::fs::write(inbox.join("failed").join(odd), b"xy").unwrap();
        // A FIFO where a reason file would be: never opened (it would block).
        std::fs::write(inbox.join("failed").join("p.edi"), b"x").unwrap();
        mkfifo(&inbox.join("failed").join("p.edi.reason.txt"));
        let files = failed_files(inbox).unwrap();
        let shown = |name: &str| files.iter().find(|f| f.name == name).cloned().unwrap();
        assert_eq!(files.len(), 4, "{files:?}");
        assert_eq!(count_failed_files(inbox).unwrap(), 4);
        assert_eq!(shown("a-big.edi").reason.as_deref(), Some("too big"));
        assert_eq!(shown("a-big.edi").kind, "file");
        assert_eq!(shown(&long).reason.as_deref(), Some("cannot be claimed"));
        assert_eq!(shown("odd-\u{fffd}.edi").size, 2);
        assert_eq!(shown("p.edi").reason, None);
        assert!(files.iter().all(|f| f.set_aside_at.is_some()));
    }

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    }

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
