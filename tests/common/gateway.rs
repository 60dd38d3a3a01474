//! A gateway run in-process by an end-to-end test: `serve()` with a configuration, its API
//! over real HTTP with the test token, its store, and patience for what happens in the
//! background; plus the samples the tests template.

#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use mako_gateway::config::Config;
use mako_gateway::daemon::serve::serve;
use mako_gateway::daemon::serve::ServeError;
use mako_gateway::store::Store;
use serde_json::{json, Value};
use sqlx::Row;

/// The API token of the test gateways.
pub const TOKEN: &str = "end-to-end-test-token-0123456789";
/// How long a step may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub struct Daemon {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ServeError>>,
}

impl Daemon {
    pub async fn start(config: Config) -> Daemon {
        let url = config.database.url.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            config,
            TOKEN.to_string(),
            mako_gateway::clock::Clock::system(),
            async move {
                let _ = stop_rx.await;
            },
            Some(ready_tx),
        ));
        let addr = ready_rx.await.expect("serve() did not start");
        Daemon {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            store: Store::connect(&url).await.unwrap(),
            stop: Some(stop_tx),
            task,
        }
    }

    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("serve() did not return")
            .expect("serve() panicked")
            .expect("serve() failed");
        self.store.close().await;
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Waits until `probe` returns something.
    pub async fn wait<T, F, Fut>(&self, what: &str, probe: F) -> T
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let started = Instant::now();
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            assert!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_status(&self, path: &str, status: &str) -> Value {
        self.wait(&format!("{path} to become {status}"), || async {
            let r = self.get(path).await;
            (r["status"] == status).then_some(r)
        })
        .await
    }

    /// Orders a §14a reduction at `grid_operator` and confirms it.
    pub async fn order(&self, subscription: &str, malo: &str, grid_operator: &str) -> String {
        let created = self
            .post(
                "/grid-fee-reductions",
                json!({"subscription": subscription, "type": "enwg-14a-module-1",
                       "market_location": malo, "grid_operator": grid_operator,
                       "meter_type": "smart"}),
            )
            .await;
        self.post(&format!("/subscriptions/{subscription}/confirm"), json!({}))
            .await;
        created["id"].as_str().unwrap().to_string()
    }

    pub async fn quarantine(&self) -> Vec<Value> {
        self.get("/quarantine?limit=100").await["data"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Inbound journal rows `(transport, pids, raw)` from `partner` (the bytes joined from their
/// parts by the store).
pub async fn inbound_from(store: &Store, partner: &str) -> Vec<(String, String, Vec<u8>)> {
    let rows = sqlx::query(
        "SELECT id, transport, pids FROM journal WHERE direction = 'in' AND partner = $1 ORDER BY id",
    )
    .bind(partner)
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: String = r.get(0);
        let raw = store
            .conn()
            .await
            .unwrap()
            .journal_raw(&id)
            .await
            .unwrap()
            .unwrap_or_default();
        out.push((r.get(1), r.get(2), raw));
    }
    out
}

pub fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/inbound")
            .join(name),
    )
    .unwrap()
}

pub fn replaced(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = bytes
        .windows(from.len())
        .position(|w| w == from.as_bytes())
        .unwrap_or_else(|| panic!("{from} not found"));
    let mut out = bytes[..text].to_vec();
    out.extend_from_slice(to.as_bytes());
    out.extend_from_slice(&bytes[text + from.len()..]);
    out
}

/// The document number the supplier core gives the message of [`core_utilmd`].
pub const CORE_DOCUMENT: &str = "CORE000001";

/// A message as the supplier core hands it over for pass-through: the UTILMD 55220 of
/// `samples/outbound/` from UNH to UNT, with the core's own document numbers (the sample's are
/// of the gateway's reference shape, which a pass-through may not use).
pub fn core_utilmd() -> String {
    let sample = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("samples/outbound/utilmd_55220_billing_data_answer.edi"),
    )
    .unwrap();
    let from = sample.find("UNH+").unwrap();
    let to = sample.find("UNZ+").unwrap();
    sample[from..to]
        .replace("MG0000000V", CORE_DOCUMENT)
        .replace("MG0000000W", "CORE000001T")
}

/// The grid operator's APERAK 313 (ERC Z29, FTX "Segment 12 LOC: Marktlokation fehlt",
/// `samples/inbound/aperak_313_z29.edi`) about our interchange `interchange_ref` and the
/// message [`CORE_DOCUMENT`], under the grid operator's UNB reference `reference`.
pub fn partner_aperak(interchange_ref: &str, reference: &str) -> Vec<u8> {
    String::from_utf8(sample("aperak_313_z29.edi"))
        .unwrap()
        .replace("ACE:MG10000000001", &format!("ACE:{interchange_ref}"))
        .replace("AGO:MG10000000001", &format!("AGO:{CORE_DOCUMENT}"))
        .replace("NB0000000003'", &format!("{reference}'"))
        .into_bytes()
}
