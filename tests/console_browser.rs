//! The operator console in a real browser: Debian's `chromium` driven by `chromedriver` over
//! WebDriver (the `fantoccini` crate), against a real gateway (`serve()`, file drop, SQLite).
//! An operator logs in, finds the rejected order from the overview, follows it from
//! `intended` through the grid operator's answer to the raw EDIFACT, resolves a clearing
//! entry, retries a parked outbox item and re-orders; the hostile partner text shows as text
//! and runs no script. Every page is screenshotted to `target/console-screenshots/` (artefacts,
//! not compared; the main ones are copied by hand into `docs/console/` for the README).
//!
//! Without `chromedriver` (PATH, `/usr/bin/chromedriver`, or `CHROMEDRIVER`) the test prints
//! a notice and passes, except under CI (`CI` set), where it fails: `.ci/run` installs
//! `chromium` and `chromium-driver`.

#[path = "common/console.rs"]
mod console;
#[path = "common/gateway.rs"]
mod gateway;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use console::{HOSTILE, PARKED};
use fantoccini::{Client, ClientBuilder, Locator};
use gateway::TOKEN;
use serde_json::json;

/// A chromedriver child, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_chromedriver() -> Option<PathBuf> {
    // Named explicitly: that one or none (so a wrong name is noticed, not replaced).
    if let Some(p) = std::env::var_os("CHROMEDRIVER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("chromedriver"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let debian = PathBuf::from("/usr/bin/chromedriver");
        debian.exists().then_some(debian)
    })
}

fn chromium_binary() -> Option<String> {
    std::env::var("CHROMIUM").ok().or_else(|| {
        ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .find(|p| Path::new(p).exists())
            .map(|p| p.to_string())
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver(path: &Path) -> (Driver, String) {
    let port = free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
    let driver = Driver(child);
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not listen"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (driver, format!("http://127.0.0.1:{port}"))
}

async fn browser(webdriver: &str) -> Client {
    let mut options = json!({
        "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1366,1000", "--lang=en-GB",
        ],
    });
    if let Some(binary) = chromium_binary() {
        options["binary"] = json!(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("browserName".into(), json!("chrome"));
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a chromium session")
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).unwrap();
}

/// The page's text, trimmed, of the first element matching `css`.
async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_follows_a_rejected_order_and_acts_in_a_real_browser() {
    let Some(chromedriver) = find_chromedriver() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but chromedriver is missing: .ci/run installs chromium and chromium-driver"
        );
        eprintln!(
            "notice: console_browser: chromedriver not found (apt-get install chromium chromium-driver, \
             or set CHROMEDRIVER); skipped"
        );
        return;
    };
    let w = console::world(None).await;
    let (_driver, webdriver) = start_driver(&chromedriver).await;
    let c = browser(&webdriver).await;
    let base = w.daemon.base.clone();
    let outcome = run(&c, &w, &base).await;
    let _ = c.close().await;
    w.daemon.stop().await;
    outcome.unwrap();
}

async fn run(
    c: &Client,
    w: &console::World,
    base: &str,
) -> Result<(), fantoccini::error::CmdError> {
    // Log in: the console sends an anonymous visitor to its login form.
    c.goto(&format!("{base}/ui")).await?;
    assert!(c.current_url().await?.path().ends_with("/ui/login"));
    shot(c, "01-login").await;
    c.find(Locator::Id("name"))
        .await?
        .send_keys("Erika Mustermann")
        .await?;
    c.find(Locator::Id("token")).await?.send_keys(TOKEN).await?;
    c.find(Locator::Css("form.login button"))
        .await?
        .click()
        .await?;
    c.wait().for_element(Locator::Id("attention")).await?;
    assert_eq!(c.current_url().await?.path(), "/ui");
    // The page's script loaded under the policy (no inline script is allowed).
    let refresh = c
        .execute(
            "return document.getElementById('main').dataset.refresh;",
            vec![],
        )
        .await?;
    assert_eq!(refresh, json!("30"));
    shot(c, "02-overview").await;

    // Find the order: from the overview's count of rejected reductions to its page.
    c.find(Locator::Css(
        "a[href='/ui/grid-fee-reductions?status=rejected']",
    ))
    .await?
    .click()
    .await?;
    c.wait()
        .for_element(Locator::Css(&format!(
            "a[href='/ui/grid-fee-reductions/{}']",
            w.rejected
        )))
        .await?
        .click()
        .await?;
    c.wait().for_element(Locator::Id("rejection")).await?;
    // The hostile text is shown as the text it is, and nothing of it ran.
    assert_eq!(
        text_of(c, "section.rejection dd.partner-text").await,
        HOSTILE
    );
    assert!(c.get_alert_text().await.is_err(), "no alert may be open");
    let scripts = c.find_all(Locator::Css("script")).await?;
    assert_eq!(scripts.len(), 1, "only the console's own script");
    let timeline = text_of(c, "ol.timeline").await;
    assert!(timeline.contains("(new) → intended"), "{timeline}");
    assert!(timeline.contains("intended → ordered"), "{timeline}");
    assert!(timeline.contains("ordered → rejected"), "{timeline}");
    shot(c, "03-order-rejected").await;

    // From the rejection to the answer that caused it, and to its raw EDIFACT.
    c.find(Locator::XPath(
        "//ol[@class='timeline']/li[contains(., 'ordered → rejected')]/a",
    ))
    .await?
    .click()
    .await?;
    c.wait().for_element(Locator::Css("ol.raw")).await?;
    let raw = text_of(c, "ol.raw").await;
    assert!(raw.contains("AJT+A99+E_0595"), "{raw}");
    assert!(
        raw.contains("<script>alert(1)</script>"),
        "shown as text: {raw}"
    );
    assert!(c.get_alert_text().await.is_err());
    shot(c, "04-message-raw-edifact").await;

    // Resolve the clearing entry with a note.
    c.goto(&format!("{base}/ui/clearing")).await?;
    shot(c, "05-clearing").await;
    c.find(Locator::Id(&format!("note-{}", w.clearing)))
        .await?
        .send_keys("answered by phone")
        .await?;
    c.find(Locator::Css(&format!("tr[id='{}'] button", w.clearing)))
        .await?
        .click()
        .await?;
    c.wait()
        .for_element(Locator::XPath("//td[contains(., 'No open entry.')]"))
        .await?;
    assert!(w.daemon.get("/clearing").await["data"]
        .as_array()
        .unwrap()
        .is_empty());

    // Retry the parked outbox item: its order goes out.
    c.goto(&format!("{base}/ui/outbox")).await?;
    shot(c, "06-outbox-parked").await;
    c.find(Locator::Css(&format!(
        "form[action='/ui/outbox/{PARKED}/retry'] button"
    )))
    .await?
    .click()
    .await?;
    w.daemon
        .wait_for_status(&format!("/grid-fee-reductions/{}", w.intended), "ordered")
        .await;

    // Re-order the rejected reduction in one click.
    c.goto(&format!("{base}/ui/grid-fee-reductions/{}", w.rejected))
        .await?;
    let rejected_page = format!("/ui/grid-fee-reductions/{}", w.rejected);
    c.find(Locator::Css("section[aria-labelledby='reorder'] button"))
        .await?
        .click()
        .await?;
    // The old page has a timeline too: wait for the new order's address.
    let started = Instant::now();
    let new_order = loop {
        let path = c.current_url().await?.path().to_string();
        if path != rejected_page {
            break path;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no new order page"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        new_order.starts_with("/ui/grid-fee-reductions/gfr_"),
        "{new_order}"
    );
    c.wait().for_element(Locator::Id("timeline")).await?;
    shot(c, "07-reordered").await;

    // The journal's filters apply without a page load (the script), and the address follows.
    c.goto(&format!("{base}/ui/journal")).await?;
    c.execute("window.consoleMarker = 'still here';", vec![])
        .await?;
    c.find(Locator::Id("message_type"))
        .await?
        .send_keys("CONTRL")
        .await?;
    c.find(Locator::Css("form.filters button"))
        .await?
        .click()
        .await?;
    let started = Instant::now();
    while !c.current_url().await?.as_str().contains("CONTRL") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the filter did not apply"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marker = c.execute("return window.consoleMarker;", vec![]).await?;
    assert_eq!(marker, json!("still here"), "the page was not reloaded");
    let rows = text_of(c, "main table").await;
    assert!(!rows.contains("ORDRSP"), "only CONTRL listed: {rows}");

    // The other pages, for the record.
    for (path, name) in [
        ("/ui/journal", "08-journal"),
        ("/ui/audit", "09-audit"),
        ("/ui/health", "10-health"),
        ("/ui/quarantine", "11-quarantine"),
        ("/ui/as4", "12-as4-requests"),
        ("/ui/meter-orders", "13-meter-orders"),
    ] {
        c.goto(&format!("{base}{path}")).await?;
        c.wait().for_element(Locator::Css("main h1")).await?;
        shot(c, name).await;
    }
    let audit = {
        c.goto(&format!("{base}/ui/audit")).await?;
        text_of(c, "main table").await
    };
    for what in [
        "clearing.resolve",
        "outbox.retry",
        "grid_fee_reduction.reorder",
    ] {
        assert!(audit.contains(what), "{what} not in the audit:\n{audit}");
    }
    assert!(audit.contains("Erika Mustermann (console, token "));
    Ok(())
}
