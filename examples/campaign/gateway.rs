//! The real binary as an operator's service manager runs it: `mako-gateway serve --config
//! FILE` as a child process, JSON logs on stderr kept in a file and watched (the address it
//! listens on, panics, warnings and errors by message), killed with SIGKILL or stopped with
//! SIGTERM.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the binary may take to say where it listens (a debug build on a loaded machine).
const STARTUP: Duration = Duration::from_secs(60);

/// Everything the gateway processes of a run logged: the full text in a file, and counts.
#[derive(Debug)]
pub struct Logs {
    file: Mutex<std::fs::File>,
    /// Where the log file is.
    pub path: PathBuf,
    state: Mutex<LogState>,
}

#[derive(Debug, Default)]
struct LogState {
    /// `(level, message)` → how often, with the first line seen.
    by_message: BTreeMap<(String, String), (usize, String)>,
    /// Lines that report a panic (Rust prints them as plain text).
    panics: Vec<String>,
    /// The last lines (for a start that fails).
    tail: std::collections::VecDeque<String>,
    /// Every line, once it is asked for by a search (kept only when `keep_lines`).
    lines: Vec<String>,
    keep_lines: bool,
}

impl Logs {
    /// Logs into `path`; `keep_lines` keeps every line in memory for [`Logs::matching`].
    pub fn new(path: PathBuf, keep_lines: bool) -> Arc<Logs> {
        let file = std::fs::File::create(&path).expect("log file");
        Arc::new(Logs {
            file: Mutex::new(file),
            path,
            state: Mutex::new(LogState {
                keep_lines,
                ..LogState::default()
            }),
        })
    }

    fn take(&self, run: usize, line: &str) {
        let _ = writeln!(self.file.lock().unwrap(), "[{run}] {line}");
        let mut state = self.state.lock().unwrap();
        if line.contains("panicked at") || line.contains("RUST_BACKTRACE") {
            state.panics.push(format!("[{run}] {line}"));
        }
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            let level = v["level"].as_str().unwrap_or("?").to_string();
            let message = v["fields"]["message"].as_str().unwrap_or("").to_string();
            let entry = state
                .by_message
                .entry((level, message))
                .or_insert_with(|| (0, line.to_string()));
            entry.0 += 1;
        }
        state.tail.push_back(line.to_string());
        if state.tail.len() > 30 {
            state.tail.pop_front();
        }
        if state.keep_lines {
            state.lines.push(line.to_string());
        }
    }

    /// Lines that reported a panic.
    pub fn panics(&self) -> Vec<String> {
        self.state.lock().unwrap().panics.clone()
    }

    /// `(level, message, count, first line)` of every WARN and ERROR message.
    pub fn warnings(&self) -> Vec<(String, String, usize, String)> {
        self.state
            .lock()
            .unwrap()
            .by_message
            .iter()
            .filter(|((level, _), _)| level == "WARN" || level == "ERROR")
            .map(|((l, m), (n, first))| (l.clone(), m.clone(), *n, first.clone()))
            .collect()
    }

    /// The kept lines (see [`Logs::new`]) that contain every one of `words`.
    pub fn matching(&self, words: &[&str]) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .lines
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .cloned()
            .collect()
    }

    /// How many lines were kept so far (a mark for [`Logs::matching_since`]).
    pub fn mark(&self) -> usize {
        self.state.lock().unwrap().lines.len()
    }

    /// [`Logs::matching`] among the lines after `mark`.
    pub fn matching_since(&self, mark: usize, words: &[&str]) -> Vec<String> {
        self.state.lock().unwrap().lines[mark..]
            .iter()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .cloned()
            .collect()
    }

    fn tail(&self) -> String {
        let state = self.state.lock().unwrap();
        state.tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

/// How a gateway process is started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary.
    pub binary: PathBuf,
    /// `serve --config` this.
    pub config: PathBuf,
    /// `MAKO_DATABASE_URL`.
    pub database_url: String,
    /// `MAKO_DATA_DIR`.
    pub data_dir: PathBuf,
    /// Where the logs go.
    pub logs: Arc<Logs>,
}

/// One running gateway process.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:<port>` of its API.
    pub base: String,
    /// Its number in the run (restarts count up).
    pub run: usize,
}

impl Launch {
    /// Starts `serve` and returns once it logged the address of its API; an error (with the
    /// last log lines) when it exits or says nothing in time.
    pub fn start(&self, run: usize) -> Result<Gateway, String> {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars() {
            if name.starts_with("MAKO_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env("MAKO_DATABASE_URL", &self.database_url)
            .env("MAKO_DATA_DIR", &self.data_dir)
            .env("MAKO_API_ADDR", "127.0.0.1:0")
            .env("MAKO_API_TOKEN", super::world::TOKEN)
            .env("MAKO_OWN_ID", super::world::OWN)
            .env("MAKO_LOG_FORMAT", "json")
            .env("MAKO_LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let logs = self.logs.clone();
        // Reads every line (the process never blocks on a full pipe) until the process is gone.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("\"listening\"") {
                    if let Ok(v) = serde_json::from_str::<Value>(&line) {
                        if v["fields"]["message"] == "listening" {
                            let addr = v["fields"]["addr"].as_str().unwrap_or("").to_string();
                            let _ = tx.send(addr);
                        }
                    }
                }
                logs.take(run, &line);
            }
        });
        let started = Instant::now();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(addr) => {
                    return Ok(Gateway {
                        child,
                        base: format!("http://{addr}"),
                        run,
                    })
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!(
                    "the gateway exited at start ({status}); last log lines:\n{}",
                    self.logs.tail()
                ));
            }
            if started.elapsed() > STARTUP {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the gateway did not listen within {STARTUP:?}; last log lines:\n{}",
                    self.logs.tail()
                ));
            }
        }
    }
}

impl Gateway {
    /// SIGKILL. An error if the process had already exited on its own (a crash of the
    /// gateway, which the campaign counts as a defect).
    pub fn kill_9(&mut self) -> Result<(), String> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Err(format!(
                "run {}: the gateway had exited by itself ({status})",
                self.run
            ));
        }
        self.child.kill().map_err(|e| format!("kill: {e}"))?; // SIGKILL on Unix
        self.child.wait().map_err(|e| format!("wait: {e}"))?;
        Ok(())
    }

    /// SIGTERM, and the exit status once it stopped (SIGKILL after `within`: an error).
    pub fn terminate(&mut self, within: Duration) -> Result<ExitStatus, String> {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)
            .map_err(|e| format!("SIGTERM: {e}"))?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if started.elapsed() > within {
                let _ = self.kill_9();
                return Err(format!(
                    "run {}: no stop within {within:?} of SIGTERM",
                    self.run
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status when the process is gone.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

/// The files directly in `dir` (no folders), sorted; empty when it does not exist.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
