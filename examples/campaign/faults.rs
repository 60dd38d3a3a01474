//! What the fault campaign breaks, each owned by the campaign and nothing shared with other
//! users of the machine: a private PostgreSQL cluster (Debian's `initdb`/`pg_ctl`, on its own
//! port, as the `postgres` user when run as root), a small tmpfs for the data folder (a full
//! disk), and a TCP relay in front of the SMTP server (the server going away without touching
//! the machine's Postfix). The AS4 partner's outage is its own listener (see
//! [`super::peers::As4Peer::stop_listening`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// Debian's PostgreSQL 15 programs (`MAKO_CAMPAIGN_PG_BIN` overrides).
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs `program args` as the `postgres` user when we are root (PostgreSQL refuses to run as
/// root), else as ourselves.
fn as_postgres(program: &Path, args: &[&str]) -> Result<String, String> {
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.arg("-u").arg("postgres").arg("--").arg(program);
        c
    } else {
        Command::new(program)
    };
    let out = command
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", program.display()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{} {}: {}{}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A PostgreSQL cluster of the campaign's own, in a folder of its own, on its own port.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
}

impl PgCluster {
    /// `initdb` in a new folder under the system's temporary folder, trust authentication for
    /// local and loopback connections; not started.
    pub fn init() -> Result<PgCluster, String> {
        let bin = PathBuf::from(
            std::env::var("MAKO_CAMPAIGN_PG_BIN").unwrap_or_else(|_| PG_BIN.to_string()),
        );
        if !bin.join("initdb").is_file() {
            return Err(format!(
                "{}/initdb not found (Debian's postgresql-15; MAKO_CAMPAIGN_PG_BIN points elsewhere)",
                bin.display()
            ));
        }
        let dir = tempfile::Builder::new()
            .prefix("mako-fault-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
        if is_root() {
            use std::os::unix::fs::PermissionsExt;
            // The postgres user must reach its folders; the data folder must be its own.
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            let uid = Command::new("id")
                .args(["-u", "postgres"])
                .output()
                .map_err(|e| e.to_string())?;
            let gid = Command::new("id")
                .args(["-g", "postgres"])
                .output()
                .map_err(|e| e.to_string())?;
            let parse = |o: &std::process::Output| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .parse::<u32>()
                    .map_err(|_| "no user postgres".to_string())
            };
            std::os::unix::fs::chown(&data, Some(parse(&uid)?), Some(parse(&gid)?))
                .map_err(|e| format!("chown {}: {e}", data.display()))?;
        }
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        let port = super::world::free_port();
        Ok(PgCluster {
            bin,
            dir,
            data,
            port,
        })
    }

    /// The administrative URL (database `postgres`).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts it and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
            self.port,
            self.data.display()
        );
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-o",
                &options,
                "-l",
                self.data.join("server.log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map(|_| ())
    }

    /// Stops it: `fast` ends every connection at once (sessions are terminated), `immediate`
    /// is a crash of the server (no shutdown checkpoint; recovery at the next start).
    pub fn stop(&self, mode: &str) -> Result<(), String> {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                self.data.to_str().unwrap(),
                "-m",
                mode,
                "-w",
                "-t",
                "60",
                "stop",
            ],
        )
        .map(|_| ())
    }

    /// Stops it (if running) and removes its folder.
    pub fn remove(self) {
        let _ = self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A small tmpfs mounted for the data folder (root only; `None` with the reason otherwise).
#[derive(Debug)]
pub struct Tmpfs {
    /// Where it is mounted.
    pub path: PathBuf,
}

impl Tmpfs {
    /// Mounts `size_mb` MiB at `path` (created).
    pub fn mount(path: &Path, size_mb: u64) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0755"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }

    /// Fills it with a ballast file until no byte is left; returns the file and its size.
    pub fn fill(&self) -> (PathBuf, u64) {
        use std::io::Write;
        let ballast = self.path.join("ballast");
        let mut written = 0u64;
        if let Ok(mut f) = std::fs::File::create(&ballast) {
            let chunk = vec![0u8; 64 * 1024];
            while f.write_all(&chunk).is_ok() {
                written += chunk.len() as u64;
            }
            // The last partial chunk, byte by byte in 4 KiB steps.
            let small = vec![0u8; 4096];
            while f.write_all(&small).is_ok() {
                written += small.len() as u64;
            }
            let _ = f.flush();
        }
        (ballast, written)
    }

    /// Bytes free on it (`df`).
    pub fn free(&self) -> u64 {
        Command::new("df")
            .args(["-B1", "--output=avail"])
            .arg(&self.path)
            .output()
            .ok()
            .and_then(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .nth(1)
                    .and_then(|l| l.trim().parse().ok())
            })
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A TCP relay on loopback in front of a server: while up, every connection is passed
/// through; down, connections are refused and the open ones cut (the server went away).
#[derive(Debug)]
pub struct Relay {
    /// The relay's port.
    pub port: u16,
    target: String,
    running: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Relay {
    /// A relay to `target` (`host:port`), not yet up.
    pub fn new(target: String) -> Relay {
        Relay {
            port: super::world::free_port(),
            target,
            running: Mutex::new(None),
        }
    }

    /// Accepts and relays connections (again).
    pub async fn up(&self) -> Result<(), String> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("relay on {}: {e}", self.port))?;
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
            connections.shutdown().await;
        });
        *self.running.lock().unwrap() = Some(task);
        Ok(())
    }

    /// Stops accepting and cuts the open connections.
    pub async fn down(&self) {
        let task = self.running.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        // The listener is closed with the task; give the kernel a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One answer of `GET /health`: status code and body, or why there was none.
pub async fn health(client: &reqwest::Client, base: &str) -> String {
    match client
        .get(format!("{base}/health"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            format!("{status} {body}")
        }
        Err(e) if e.is_timeout() => "no answer within 3 s".to_string(),
        Err(e) => format!("no answer: {e}"),
    }
}
