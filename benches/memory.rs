//! Peak memory of the daemon for one large interchange (issue 16 item 4): the release
//! `mako-gateway serve` as its own process, on SQLite, with one generated MSCONS interchange
//! (`../shared/bench/gen_edifact.py`, 200 MB by default) dropped into its file drop; the run
//! waits until the interchange is journaled and processed (its messages offered in the forward
//! feed: MSCONS is not ours) and reads the process's peak resident set (`VmHWM`).
//!
//! ```text
//! cargo bench --bench memory                   # 200 MB
//! MEMORY_SIZE_MB=20 cargo bench --bench memory # smoke run (CI)
//! ```
//!
//! Prints the figure next to the target (at most twice the interchange plus 50 MiB) and the
//! limit it is compared with (the interchange itself, and the idle daemon's resident set
//! measured in the same run), the time from the drop to processed, and `FAIL` with exit 1 when
//! the interchange is not processed (refused, failed, or not done within the time limit).

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The generator's UNB recipient (`gen_edifact.py`), not a valid market partner ID (its check
/// digit is wrong): rewritten to [`OWN`] when the interchange is staged.
const GENERATED_RECIPIENT: &[u8] = b"+9900000000010:500+";
/// The daemon's own market partner ID in this run.
const OWN: &str = "9900000000028";
const TOKEN: &str = "memory-bench-token-0123456789abcdef";

fn main() {
    let size_mb = env_number("MEMORY_SIZE_MB", 200);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("target/bench-data");
    std::fs::create_dir_all(&data).expect("create target/bench-data");
    let file = data.join(format!("mscons_{size_mb}mb.edi"));
    if !file.exists() {
        let generator = std::env::var_os("MAKO_BENCH_GEN")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("../shared/bench/gen_edifact.py"));
        let status = Command::new("python3")
            .arg(&generator)
            .args([
                "--kind",
                "mscons",
                "--size-mb",
                &size_mb.to_string(),
                "--out",
            ])
            .arg(&file)
            .status()
            .expect("run python3 for the generator");
        assert!(status.success(), "generator failed");
    }
    let bytes = std::fs::metadata(&file).expect("interchange").len();
    let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
    println!(
        "# memory benchmark: one MSCONS interchange of {:.1} MiB through `serve` (SQLite, file drop)",
        mib(bytes)
    );

    let dir = data.join(format!("memory-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    let port = free_port();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"own_id = "{OWN}"
data_dir = {data_dir:?}
[database]
url = {url:?}
[api]
addr = "127.0.0.1:{port}"
token = "{TOKEN}"
[poll]
file_drop = "50ms"
inbound = "50ms"
[file_drop]
max_file_bytes = {max}
"#,
            data_dir = dir.join("data").display().to_string(),
            url = format!("sqlite://{}/gateway.db", dir.display()),
            max = bytes + 1024,
        ),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
    // `MEMORY_EXEC_PREFIX=heaptrack` (with `--features system-allocator`: heaptrack watches
    // malloc) runs the daemon under a profiler to see where the memory goes (the peak printed
    // is then the wrapper's, not the daemon's).
    // Under a wrapper, the wrapper and the daemon in a process group of their own, killed
    // together: killing the wrapper alone left the daemon running after the bench (and
    // loading the next runs). Without one, the daemon stays in ours (Ctrl-C reaches it).
    let (mut command, group) = match std::env::var("MEMORY_EXEC_PREFIX") {
        Ok(prefix) if !prefix.is_empty() => {
            let mut c = Command::new(prefix);
            c.arg(env!("CARGO_BIN_EXE_mako-gateway"));
            std::os::unix::process::CommandExt::process_group(&mut c, 0);
            (c, true)
        }
        _ => (Command::new(env!("CARGO_BIN_EXE_mako-gateway")), false),
    };
    let mut daemon = Gateway {
        group,
        child: command
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start mako-gateway serve"),
    };
    let base = format!("127.0.0.1:{port}");
    wait_for(Duration::from_secs(60), || {
        if let Ok(Some(status)) = daemon.child.try_wait() {
            fail(
                &dir,
                &format!("the daemon ended at start ({status})"),
                &mut daemon,
            );
        }
        http_get(&base, "/health").map(|_| ())
    })
    .unwrap_or_else(|| {
        fail(
            &dir,
            "the daemon did not answer /health within 60 s",
            &mut daemon,
        )
    });
    let idle = status_kib(daemon.child.id(), "VmRSS:").unwrap_or(0) * 1024;

    // Dropped as a writer does it: written beside the inbox, then renamed into it.
    let inbox = dir.join("data/inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let staged = dir.join("data/staged.edi");
    let mut interchange = std::fs::read(&file).expect("read the interchange");
    let head = &mut interchange[..GENERATED_RECIPIENT.len() + 200];
    let at = head
        .windows(GENERATED_RECIPIENT.len())
        .position(|w| w == GENERATED_RECIPIENT)
        .expect("the generator's UNB recipient");
    head[at + 1..at + 14].copy_from_slice(OWN.as_bytes());
    std::fs::write(&staged, &interchange).expect("stage the interchange");
    drop(interchange);
    let started = Instant::now();
    std::fs::rename(&staged, inbox.join("large_mscons.edi")).expect("drop the interchange");
    // The peak until the interchange shows in the journal (read and journaled), then the
    // peak until it is processed (read back, parsed, validated, planned, committed).
    let mut journaled: Option<(Duration, u64)> = None;
    let done = wait_for(Duration::from_secs(1800), || {
        let body = http_get(&base, "/journal?filter[direction][eq]=in")?;
        if body.contains("\"failed\"") {
            fail(
                &dir,
                &format!("the interchange failed: {body}"),
                &mut daemon,
            );
        }
        if journaled.is_none() && body.contains("\"jrn_") {
            let peak = status_kib(daemon.child.id(), "VmHWM:").unwrap_or(0) * 1024;
            journaled = Some((started.elapsed(), peak));
        }
        body.contains("\"processed\"").then_some(())
    });
    let elapsed = started.elapsed();
    let peak = status_kib(daemon.child.id(), "VmHWM:").unwrap_or(0) * 1024;
    if done.is_none() {
        fail(
            &dir,
            "the interchange was not processed within 30 minutes",
            &mut daemon,
        );
    }
    let target = 2 * bytes + (50 << 20);
    println!(
        "processed    {:.1} s from the drop to processed ({:.1} MB/s)",
        elapsed.as_secs_f64(),
        bytes as f64 / 1e6 / elapsed.as_secs_f64()
    );
    if let Some((at, peak)) = journaled {
        println!(
            "journaled    after {:.1} s, peak RSS until then {:.0} MiB",
            at.as_secs_f64(),
            mib(peak)
        );
    }
    println!(
        "peak RSS     {:.0} MiB  (idle daemon {:.0} MiB, interchange {:.0} MiB: {:.2}x the interchange)",
        mib(peak),
        mib(idle),
        mib(bytes),
        peak as f64 / bytes as f64
    );
    println!(
        "target       peak RSS {:.0} MiB (target <= 2 x interchange + 50 MiB = {:.0} MiB: {}; limit: the interchange, {:.0} MiB)",
        mib(peak),
        mib(target),
        if peak <= target { "met" } else { "MISSED" },
        mib(bytes)
    );
    drop(daemon);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The daemon (or its wrapper, the leader of a process group of their own), killed when the
/// bench ends or fails.
struct Gateway {
    child: Child,
    /// Whether `child` leads a process group to kill with it.
    group: bool,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Gateway {
    fn stop(&mut self) {
        // Once reaped, its id may be another process's.
        let running = matches!(self.child.try_wait(), Ok(None));
        if self.group && running {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prints why the run failed and exits 1, the daemon stopped first (`exit` runs no `Drop`).
fn fail(dir: &Path, why: &str, daemon: &mut Gateway) -> ! {
    println!("FAIL {why} (log: {})", dir.join("gateway.log").display());
    daemon.stop();
    std::process::exit(1);
}

fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(v) = check() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// A `GET` with the token over HTTP/1.0 (no chunked body to undo): the body when 200.
fn http_get(authority: &str, path: &str) -> Option<String> {
    use std::io::Write as _;
    let mut stream = std::net::TcpStream::connect(authority).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    if status.starts_with('4') {
        // A request of ours the gateway refuses: waiting longer would not help.
        println!("FAIL GET {path}: {status} {body}");
        std::process::exit(1);
    }
    (status == "200").then(|| body.to_string())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `kB` line of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
