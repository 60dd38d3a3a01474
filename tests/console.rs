//! The operator console over real HTTP against a real gateway (`serve()` with the file drop),
//! on a SQLite file and on PostgreSQL: login and the cookie's flags, the session and CSRF
//! checks, the Content-Security-Policy, hostile partner text shown as text, every page with
//! its content, and each action changing state exactly as the API sees it, with its audit
//! entry.

#[path = "common/console.rs"]
mod console;
#[path = "common/gateway.rs"]
mod gateway;
mod support;

use console::{World, CONSOLE_TOKEN, CONTACT, HOSTILE, PARKED, PARKED_BECAUSE};
use gateway::TOKEN;
use reqwest::header::{CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Client, StatusCode};

/// A browser-less operator: no redirects followed, the session cookie kept by hand.
struct Operator {
    client: Client,
    base: String,
    cookie: String,
}

fn client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Operator {
    async fn login(base: &str, name: &str) -> Operator {
        let client = client();
        let response = client
            .post(format!("{base}/ui/login"))
            .form(&[("name", name), ("token", TOKEN)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        let cookie = set.split(';').next().unwrap().to_string();
        Operator {
            client,
            base: base.to_string(),
            cookie,
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()[CONTENT_SECURITY_POLICY],
            mako_gateway::api::console::CSP,
            "{path}"
        );
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    async fn page(&self, path: &str) -> String {
        let (status, body) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    /// The CSRF token written into the forms of `path`.
    async fn csrf(&self, path: &str) -> String {
        let page = self.page(path).await;
        let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
        page[at..at + 64].to_string()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (StatusCode, String, String) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("Cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, location, response.text().await.unwrap())
    }
}

fn assert_escaped(page: &str) {
    assert!(
        !page.contains("<script>alert"),
        "hostile text as markup:\n{page}"
    );
    assert!(!page.contains("<b>Netz</b>"), "hostile contact as markup");
}

/// The console on a gateway whose store is a SQLite file in its data folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_logs_in_shows_every_page_escaped_and_acts_like_the_api_on_sqlite() {
    console_case(None).await;
}

/// The same on a fresh PostgreSQL database (skipped with a notice when none answers at the
/// default address and `MAKO_TEST_POSTGRES_URL` is unset).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_logs_in_shows_every_page_escaped_and_acts_like_the_api_on_postgres() {
    let Some(db) = support::PgDatabase::create("console on PostgreSQL").await else {
        return;
    };
    let url = db.url.clone();
    // In a task so that a failing case still drops its database before failing the test.
    let outcome = tokio::spawn(async move { console_case(Some(&url)).await }).await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn console_case(database_url: Option<&str>) {
    let w = console::world(database_url).await;
    login_session_and_headers(&w).await;
    pages_and_actions(&w).await;
    api_outbox_actions(&w).await;
    w.daemon.stop().await;
}

/// The console's outbox actions are the API's too (`POST /outbox/{id}/retry`, `/give-up`): the
/// same code, audited as `api` with the partner's answer; an item not parked is a 404.
async fn api_outbox_actions(w: &World) {
    let d = &w.daemon;
    let now = mako_gateway::clock::Clock::system()
        .now()
        .timestamp_millis();
    for id in ["obx_api_parked_retry", "obx_api_parked_give_up"] {
        sqlx::query(
            "INSERT INTO outbox (id, kind, order_kind, order_id, partner, state, attempts, \
             next_attempt_at, last_error, created_at) \
             VALUES ($1, 'order', 'grid_fee_reduction', $2, $3, 'parked', 5, $4, $5, $4)",
        )
        .bind(id)
        .bind(&w.rejected)
        .bind(console::VNB)
        .bind(now)
        .bind(PARKED_BECAUSE)
        .execute(d.store.pool())
        .await
        .unwrap();
    }
    let given_up = d
        .post(
            "/outbox/obx_api_parked_give_up/give-up",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(given_up["given_up"], true, "{given_up}");
    let retried = d
        .post("/outbox/obx_api_parked_retry/retry", serde_json::json!({}))
        .await;
    assert_eq!(retried["state"], "pending", "{retried}");
    for (id, action) in [
        ("obx_api_parked_retry", "outbox.retry"),
        ("obx_api_parked_give_up", "outbox.give_up"),
    ] {
        let (actor, note): (String, String) =
            sqlx::query_as("SELECT actor, note FROM audit WHERE target = $1 AND action = $2")
                .bind(id)
                .bind(action)
                .fetch_one(d.store.pool())
                .await
                .unwrap();
        assert_eq!(actor, "api");
        assert!(note.contains(PARKED_BECAUSE), "{note}");
    }
    // Not parked (never was): 404 in the errors[] shape.
    let response = client()
        .post(format!("{}/outbox/obx_nope/retry", d.base))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["errors"].is_array(), "{body}");
}

async fn login_session_and_headers(w: &World) {
    let base = &w.daemon.base;
    let anonymous = client();
    // Without a session: pages redirect to the login, posts are refused.
    let r = anonymous.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/ui/login");
    let r = anonymous
        .post(format!("{base}/ui/clearing/{}/resolve", w.clearing))
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The login page: CSP, no inline script, the static files served with their types.
    let r = anonymous
        .get(format!("{base}/ui/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()[CONTENT_SECURITY_POLICY],
        mako_gateway::api::console::CSP
    );
    assert!(!mako_gateway::api::console::CSP.contains("unsafe-inline"));
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let login = r.text().await.unwrap();
    assert!(login.contains("<script src=\"/ui/static/console.js\" defer></script>"));
    for (path, kind) in [
        ("/ui/static/console.css", "text/css"),
        ("/ui/static/console.js", "text/javascript"),
    ] {
        let r = anonymous.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    // A wrong token, a missing name: no session.
    for (name, token, status) in [
        ("Erika", "guess", StatusCode::UNAUTHORIZED),
        ("", TOKEN, StatusCode::BAD_REQUEST),
    ] {
        let r = anonymous
            .post(format!("{base}/ui/login"))
            .form(&[("name", name), ("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        assert!(r.headers().get(SET_COOKIE).is_none());
    }
    // The cookie: HttpOnly, SameSite=Strict, Path=/ui; Secure only behind TLS.
    let r = anonymous
        .post(format!("{base}/ui/login"))
        .form(&[("name", "Erika"), ("token", TOKEN)])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(cookie.starts_with("mako_console="));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let r = anonymous
        .post(format!("{base}/ui/login"))
        .header("X-Forwarded-Proto", "https")
        .form(&[("name", "Erika"), ("token", TOKEN)])
        .send()
        .await
        .unwrap();
    assert!(r.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
    // The console's own token opens the console, not the API.
    let r = anonymous
        .post(format!("{base}/ui/login"))
        .form(&[("name", "Erika"), ("token", CONSOLE_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = anonymous
        .get(format!("{base}/grid-fee-reductions"))
        .bearer_auth(CONSOLE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Logout ends the session (with its CSRF token).
    let op = Operator::login(base, "Erika").await;
    let csrf = op.csrf("/ui").await;
    let (status, location, _) = op.post("/ui/logout", &[("csrf", &csrf)]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    let (status, _) = op.get("/ui").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "the session is gone");
    // The JSON API is unchanged beside it: a bearer token does not open the console, a
    // console cookie does not open the API.
    let r = anonymous
        .get(format!("{base}/ui"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let op = Operator::login(base, "Erika").await;
    let r = op
        .client
        .get(format!("{base}/grid-fee-reductions"))
        .header("Cookie", &op.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

async fn pages_and_actions(w: &World) {
    let d = &w.daemon;
    let op = Operator::login(&d.base, "Erika Mustermann").await;

    // Overview: counts linking to their lists.
    let overview = op.page("/ui").await;
    for text in [
        "Needs attention",
        "href=\"/ui/clearing\"",
        "href=\"/ui/outbox\"",
        "href=\"/ui/grid-fee-reductions?status=rejected\"",
        "data-refresh=\"30\"",
        "Signed in as <strong>Erika Mustermann</strong>",
    ] {
        assert!(overview.contains(text), "{text} missing in {overview}");
    }

    // The orders list with the API's filter, and the rejected order's page.
    let list = op.page("/ui/grid-fee-reductions?status=rejected").await;
    assert!(list.contains(&w.rejected));
    assert!(!list.contains(&w.intended));
    let (status, _) = op.get("/ui/grid-fee-reductions?status=nonsense").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let detail = op
        .page(&format!("/ui/grid-fee-reductions/{}", w.rejected))
        .await;
    assert_escaped(&detail);
    assert!(
        detail.contains("&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot; &amp; 'single'")
    );
    assert!(
        detail.contains("Kl\u{e4}rung &lt;b&gt;Netz&lt;/b&gt;"),
        "{detail}"
    );
    let _ = CONTACT;
    assert!(detail.contains("e-mail: klaerung@vnb.example"));
    assert!(detail.contains("Ablehnung: Sonstiges (siehe Freitext)"));
    assert!(detail.contains("rejected: other reason (see free text)"));
    assert!(detail.contains("intended</strong>"));
    assert!(detail.contains("ordered → rejected"));
    // Each transition links the message that caused it: the ORDRSP's journal item.
    let rejection_row = &detail[detail.find("ordered → rejected").unwrap()..];
    let at = rejection_row.find("/ui/journal/").unwrap() + 12;
    let journal_id: String = rejection_row[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();

    // The message: raw EDIFACT, the tree with the MIG's names, the download.
    let message = op.page(&format!("/ui/journal/{journal_id}")).await;
    assert_escaped(&message);
    assert!(message.contains("ORDRSP"));
    assert!(message.contains("ol class=\"raw\""));
    assert!(
        message.contains("Ansprechpartner"),
        "CTA named from the MIG"
    );
    assert!(message.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let raw = op
        .client
        .get(format!("{}/ui/journal/{journal_id}/raw", d.base))
        .header("Cookie", &op.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), StatusCode::OK);
    assert_eq!(raw.bytes().await.unwrap().to_vec(), w.answer);
    // The journal search with the API's filters, and by reference.
    let search = op
        .page("/ui/journal?filter[message_type][eq]=ORDRSP&reference=NBREJ0001")
        .await;
    assert!(search.contains(&journal_id));
    assert!(!search.contains("NBCLR0001"));
    let (status, body) = op.get("/ui/journal?filter[pid][eq]=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // CSRF: a POST without the session's token changes nothing.
    let (status, _, _) = op
        .post(
            &format!("/ui/clearing/{}/resolve", w.clearing),
            &[("note", "x")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = op
        .post(
            &format!("/ui/grid-fee-reductions/{}/reorder", w.rejected),
            &[("csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        d.get("/clearing").await["data"].as_array().unwrap().len(),
        1
    );

    let csrf = op.csrf("/ui/clearing").await;
    // Clearing: resolved with a note, as POST /clearing/{id}/resolve would.
    let clearing = op.page("/ui/clearing").await;
    assert!(clearing.contains(&w.clearing));
    let (status, location, _) = op
        .post(
            &format!("/ui/clearing/{}/resolve", w.clearing),
            &[("csrf", &csrf), ("note", "answered by phone")],
        )
        .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/ui/clearing")
    );
    assert!(d.get("/clearing").await["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // Outbox: the parked item with the partner's answer; retried, it goes out.
    let outbox = op.page("/ui/outbox").await;
    assert!(outbox.contains(PARKED));
    assert!(outbox.contains("550 5.1.1 &lt;vnb@example.org&gt;: mailbox unavailable"));
    let (status, _, _) = op
        .post(&format!("/ui/outbox/{PARKED}/retry"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    d.wait_for_status(&format!("/grid-fee-reductions/{}", w.intended), "ordered")
        .await;
    let (status, _, page) = op
        .post(&format!("/ui/outbox/{PARKED}/give-up"), &[("csrf", &csrf)])
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "sent, no longer parked: {page}"
    );

    // Re-order in one click: a new order, the rejected one stays.
    let (status, location, _) = op
        .post(
            &format!("/ui/grid-fee-reductions/{}/reorder", w.rejected),
            &[("csrf", &csrf), ("effective_date", "")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let new_id = location.rsplit('/').next().unwrap().to_string();
    assert_ne!(new_id, w.rejected);
    let orders = d
        .get("/grid-fee-reductions?filter[subscription][eq]=sub-rejected")
        .await;
    let statuses: Vec<(String, String)> = orders["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["id"].as_str().unwrap().to_string(),
                o["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(statuses.contains(&(w.rejected.clone(), "rejected".into())));
    assert!(statuses.iter().any(|(id, _)| *id == new_id));
    // The confirmed subscription's new order goes out like any other.
    d.wait_for_status(&format!("/grid-fee-reductions/{new_id}"), "ordered")
        .await;
    // Re-ordering a second time is refused by the product rules while the new one is active.
    let (status, _, body) = op
        .post(
            &format!("/ui/grid-fee-reductions/{}/reorder", w.rejected),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The audit trail: who, when, what.
    let audit = op.page("/ui/audit").await;
    for text in [
        "clearing.resolve",
        "answered by phone",
        "outbox.retry",
        PARKED_BECAUSE.split(' ').next().unwrap(),
        "grid_fee_reduction.reorder",
        &format!("re-ordered as {new_id}"),
        "Erika Mustermann (console, token ",
    ] {
        assert!(
            audit.contains(text),
            "{text} missing in the audit:\n{audit}"
        );
    }
    let rejected_page = op
        .page(&format!("/ui/grid-fee-reductions/{}", w.rejected))
        .await;
    assert!(rejected_page.contains("Operator actions"));

    // A meter order: its page shows its dates and lifecycle in both languages.
    let meter = d
        .post(
            "/meter-orders",
            serde_json::json!({"subscription": "sub-meter", "market_location": console::MALO,
                   "metering_operator": "9903829000006",
                   "metering_location": "DE0032106765712000000000000000037"}),
        )
        .await;
    let meter_id = meter["id"].as_str().unwrap();
    let page = op.page(&format!("/ui/meter-orders/{meter_id}")).await;
    for text in [
        "Metering location",
        "Messlokation",
        "Wunschtermin",
        "(new) → created",
    ] {
        assert!(page.contains(text), "{text} missing in {page}");
    }
    assert!(op.page("/ui/meter-orders").await.contains(meter_id));

    // The remaining pages answer with their content.
    for (path, text) in [
        ("/ui/meter-orders", "Meter orders"),
        ("/ui/messages", "Forwarded messages"),
        ("/ui/deadlines", "Answers overdue"),
        ("/ui/quarantine", "No mail in quarantine."),
        ("/ui/as4", "AS4 requests"),
        ("/ui/health", "Transports"),
        ("/ui/outbox?given_up=1", "Outbox: given up"),
        (&format!("/ui/journal/{journal_id}"), "CONTRL / APERAK"),
    ] {
        let page = op.page(path).await;
        assert!(page.contains(text), "{path}: {text} missing");
    }
    let (status, _) = op.get("/ui/grid-fee-reductions/gfr_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _ = HOSTILE;
}

on_both! {
    a_parked_pass_through_retried_by_an_operator_is_queued_again => retried_pass_through;
}

/// A pass-through parked by the outbound worker (its messages and journal entry `failed`) and
/// retried through the console's action: everything `queued` again, as a new pass-through.
async fn retried_pass_through(stores: Vec<mako_gateway::store::Store>) {
    use mako_gateway::api::{actions, router, AppState};
    use mako_gateway::store::{OutboxState, PageRequest};
    let store = stores[0].clone();
    let state = AppState::new(store.clone(), vec![TOKEN.to_string()]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let taken = client()
        .post(format!("{base}/interchanges"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"partner": console::VNB, "message": gateway::core_utilmd()}))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), StatusCode::ACCEPTED);
    let taken: serde_json::Value = taken.json().await.unwrap();
    let id = taken["data"][0]["id"].as_str().unwrap().to_string();
    // What the outbound worker does with a permanent error.
    let now = mako_gateway::clock::Clock::system().now();
    let item = store
        .conn()
        .await
        .unwrap()
        .claim_outbox("w", now, std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the pass-through's outbox item");
    let mut tx = store.begin().await.unwrap();
    tx.park_outbox(&item.id, "w", "550 refused").await.unwrap();
    tx.fail_pass_through(&item.id, item.journal_id.as_deref(), "550 refused", now)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let states = |v: &serde_json::Value| vec![v["state"].clone()];
    let get = || async {
        client()
            .get(format!("{base}/interchanges/{id}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };
    let failed = get().await;
    assert!(states(&failed).iter().all(|s| s == "failed"), "{failed}");

    actions::retry_outbox(&state, &item.id, Some("partner fixed its mailbox"), "Erika")
        .await
        .unwrap();
    let queued = get().await;
    assert!(states(&queued).iter().all(|s| s == "queued"), "{queued}");
    let journal = store
        .conn()
        .await
        .unwrap()
        .journal_item(item.journal_id.as_deref().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(journal.state.as_str(), "queued");
    let pending = store
        .conn()
        .await
        .unwrap()
        .list_outbox(
            Some(OutboxState::Pending),
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(pending.items.len(), 1);
    assert_eq!(pending.items[0].attempts, 0);
    let audit = store
        .conn()
        .await
        .unwrap()
        .list_audit(
            Some(&item.id),
            &PageRequest {
                cursor: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        audit.items[0].note.as_deref(),
        Some("partner fixed its mailbox (parked: 550 refused)")
    );
}
