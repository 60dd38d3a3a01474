//! The real binary, started and killed like an operator's service manager would.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long the binary may take to log its address.
const PATIENCE: Duration = Duration::from_secs(20);

/// The real binary, `serve` with a configuration file for the fast polls and the rest from
/// `MAKO_*` environment variables.
pub struct Binary {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>` of its API.
    pub base: String,
}

impl Binary {
    /// Starts `serve` on `url` with `data_dir`, `config_file`, the API `token` and our `own_id`;
    /// returns once it logged its address.
    pub fn start(
        url: &str,
        data_dir: &Path,
        config_file: &Path,
        token: &str,
        own_id: &str,
    ) -> Binary {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_mako-gateway"));
        for (name, _) in std::env::vars() {
            if name.starts_with("MAKO_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config_file)
            .env("MAKO_DATABASE_URL", url)
            .env("MAKO_DATA_DIR", data_dir)
            .env("MAKO_API_ADDR", "127.0.0.1:0")
            .env("MAKO_API_TOKEN", token)
            .env("MAKO_OWN_ID", own_id)
            .env("MAKO_LOG_FORMAT", "json")
            .env("MAKO_LOG_LEVEL", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the binary starts");
        // Read the bound address from the "listening" log line, and keep draining the logs so
        // that the process never blocks on a full pipe.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if v["fields"]["message"] == "listening" {
                        let _ = tx.send(v["fields"]["addr"].as_str().unwrap_or("").to_string());
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(PATIENCE)
            .expect("the binary never logged its address");
        Binary {
            child,
            base: format!("http://{addr}"),
        }
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }
}
