//! The supplier core: creates §14a orders (Modul 1) over the HTTP API, one grid operator per
//! transport in turn, and confirms their subscriptions. A request whose answer was lost (the
//! gateway killed, the database away) is never simply repeated: the core first looks whether
//! the order exists, as a careful client does.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::world::{Transport, TOKEN};
use super::Rng;

/// One order the core wants.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Its subscription (one order each).
    pub subscription: String,
    /// The grid operator.
    pub partner: String,
    /// The market location.
    pub malo: String,
    /// The gateway's id, once known.
    pub id: Option<String>,
    /// A create request went out without an answer: look before creating again.
    pub uncertain: bool,
    /// The subscription's confirmation was answered 200.
    pub confirmed: bool,
    /// The gateway refused the order or its confirmation with a 4xx (reported as a defect:
    /// the requests are valid).
    pub refused: bool,
}

/// The supplier core.
#[derive(Debug)]
pub struct Core {
    /// The orders, in the order they were planned.
    pub orders: Mutex<Vec<Planned>>,
    /// The API of the running gateway (`None` while it is down).
    pub base: Mutex<Option<String>>,
    /// Requests without an answer (connection refused or reset, timeouts).
    pub unanswered: AtomicUsize,
    /// Answers 5xx.
    pub server_errors: AtomicUsize,
    /// Answers 4xx the core did not expect (defects: the requests are valid).
    pub refusals: Mutex<Vec<String>>,
    client: reqwest::Client,
    transports: Vec<Transport>,
    rng: Mutex<Rng>,
    tag: String,
}

/// A market location ID with a valid check digit.
fn malo(rng: &mut Rng) -> String {
    let mut digits: Vec<u32> = (0..10).map(|_| rng.range(0, 10) as u32).collect();
    digits[0] = rng.range(1, 10) as u32;
    let check = mako_gateway::ids::lok_check_digit(&digits);
    digits.push(check);
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap())
        .collect()
}

impl Core {
    /// A core ordering at the grid operators of `transports`; `tag` makes the subscriptions
    /// of a run unique.
    pub fn new(transports: Vec<Transport>, rng: Rng, tag: &str) -> Arc<Core> {
        Arc::new(Core {
            orders: Mutex::default(),
            base: Mutex::default(),
            unanswered: AtomicUsize::new(0),
            server_errors: AtomicUsize::new(0),
            refusals: Mutex::default(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
            transports,
            rng: Mutex::new(rng),
            tag: tag.to_string(),
        })
    }

    /// Plans one more order (round robin over the transports).
    pub fn plan(&self) {
        let mut orders = self.orders.lock().unwrap();
        let n = orders.len();
        let transport = self.transports[n % self.transports.len()];
        let malo = malo(&mut self.rng.lock().unwrap());
        orders.push(Planned {
            subscription: format!("{}-{n:06}", self.tag),
            partner: transport.partner().to_string(),
            malo,
            id: None,
            uncertain: false,
            confirmed: false,
            refused: false,
        });
    }

    /// Whether every planned order exists and is confirmed.
    pub fn settled(&self) -> bool {
        self.orders
            .lock()
            .unwrap()
            .iter()
            .all(|o| o.refused || (o.id.is_some() && o.confirmed))
    }

    async fn request(
        &self,
        base: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Option<(u16, Value)> {
        let mut request = self
            .client
            .request(method, format!("{base}{path}"))
            .bearer_auth(TOKEN);
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(_) => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let status = response.status().as_u16();
        let value = match response.json::<Value>().await {
            Ok(v) => v,
            Err(_) => {
                self.unanswered.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        Some((status, value))
    }

    /// One pass over the orders: create what does not exist, confirm what is not confirmed.
    pub async fn step(&self) {
        let Some(base) = self.base.lock().unwrap().clone() else {
            return;
        };
        let todo: Vec<(usize, Planned)> = self
            .orders
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, o)| !o.refused && (o.id.is_none() || !o.confirmed))
            .map(|(i, o)| (i, o.clone()))
            .collect();
        for (i, order) in todo {
            if order.id.is_none() {
                if order.uncertain {
                    let path = format!(
                        "/grid-fee-reductions?filter[subscription][eq]={}",
                        order.subscription
                    );
                    match self.request(&base, reqwest::Method::GET, &path, None).await {
                        Some((200, page)) => {
                            let found = page["data"]
                                .as_array()
                                .and_then(|d| d.first())
                                .and_then(|o| o["id"].as_str())
                                .map(str::to_string);
                            if let Some(id) = found {
                                self.orders.lock().unwrap()[i].id = Some(id);
                                continue;
                            }
                        }
                        _ => return, // not known yet whether it exists: later
                    }
                }
                let body = json!({"subscription": order.subscription, "type": "enwg-14a-module-1",
                                  "market_location": order.malo, "grid_operator": order.partner,
                                  "meter_type": "smart"});
                match self
                    .request(
                        &base,
                        reqwest::Method::POST,
                        "/grid-fee-reductions",
                        Some(body),
                    )
                    .await
                {
                    Some((201, created)) => {
                        let id = created["id"].as_str().map(str::to_string);
                        let mut orders = self.orders.lock().unwrap();
                        orders[i].id = id;
                        orders[i].uncertain = false;
                    }
                    Some((status, body)) if status < 500 => {
                        self.refusals.lock().unwrap().push(format!(
                            "POST /grid-fee-reductions {}: {status} {body}",
                            order.subscription
                        ));
                        self.orders.lock().unwrap()[i].refused = true;
                        continue;
                    }
                    _ => {
                        self.orders.lock().unwrap()[i].uncertain = true;
                        return;
                    }
                }
            }
            let path = format!("/subscriptions/{}/confirm", order.subscription);
            match self
                .request(&base, reqwest::Method::POST, &path, Some(json!({})))
                .await
            {
                Some((200, _)) => self.orders.lock().unwrap()[i].confirmed = true,
                Some((status, body)) if status < 500 => {
                    self.refusals
                        .lock()
                        .unwrap()
                        .push(format!("POST {path}: {status} {body}"));
                    self.orders.lock().unwrap()[i].refused = true;
                }
                _ => return,
            }
        }
    }

    /// Runs [`Core::step`] until `stop`; plans a new order every `every` while `ordering`.
    pub fn run(
        self: &Arc<Self>,
        every: Duration,
        ordering: Arc<AtomicBool>,
        stop: Arc<AtomicBool>,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut last = Instant::now();
            while !stop.load(Ordering::SeqCst) {
                if ordering.load(Ordering::SeqCst)
                    && this.base.lock().unwrap().is_some()
                    && last.elapsed() >= every
                {
                    this.plan();
                    last = Instant::now();
                }
                this.step().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}
