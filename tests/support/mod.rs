//! Real databases for the store and API tests: a SQLite file in a temporary directory, and a
//! fresh PostgreSQL database per test (created on the server named by
//! `MAKO_TEST_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/test`, and dropped at
//! the end), so tests run in parallel and again. Without that variable and with no server
//! answering at the default, PostgreSQL tests print a notice and skip.

#![allow(dead_code)]

pub mod binary;

use std::time::Duration;

use mako_gateway::store::Store;
use sqlx::{Connection, Executor};

/// The default PostgreSQL server of the test machine.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A store on a SQLite file, and the directory that holds it.
pub async fn sqlite() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temporary directory");
    // A nested path: connect creates the parent directories.
    let url = format!("sqlite://{}/nested/dir/gateway.db", dir.path().display());
    let store = Store::connect(&url).await.expect("SQLite store");
    (dir, store)
}

/// A fresh PostgreSQL database for one test.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// The URL of the fresh database.
    pub url: String,
}

impl PgDatabase {
    /// Creates `mako_test_<uuid>`; `None` (with a notice) when no server is configured and the
    /// default one does not answer.
    pub async fn create(test: &str) -> Option<PgDatabase> {
        sqlx::any::install_default_drivers();
        let configured = std::env::var("MAKO_TEST_POSTGRES_URL").ok();
        let admin_url = configured
            .clone()
            .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string());
        let connect = tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::AnyConnection::connect(&admin_url),
        )
        .await;
        let mut admin = match connect {
            Ok(Ok(c)) => c,
            Ok(Err(e)) if configured.is_none() => {
                eprintln!("notice: {test}: PostgreSQL not reachable at the default {DEFAULT_POSTGRES_URL} ({e}); set MAKO_TEST_POSTGRES_URL to run it; skipped");
                return None;
            }
            Err(_) if configured.is_none() => {
                eprintln!(
                    "notice: {test}: PostgreSQL at {DEFAULT_POSTGRES_URL} did not answer; skipped"
                );
                return None;
            }
            Ok(Err(e)) => panic!("MAKO_TEST_POSTGRES_URL is set but PostgreSQL refuses: {e}"),
            Err(_) => panic!("MAKO_TEST_POSTGRES_URL is set but PostgreSQL does not answer"),
        };
        let name = format!(
            "mako_test_{}",
            mako_gateway::ids::new_id("db", mako_gateway::clock::Clock::system().now())
        );
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("CREATE DATABASE");
        let _ = admin.close().await;
        let (base, query) = match admin_url.split_once('?') {
            Some((b, q)) => (b, format!("?{q}")),
            None => (admin_url.as_str(), String::new()),
        };
        let server = base.rsplit_once('/').map_or(base, |(s, _)| s);
        let url = format!("{server}/{name}{query}");
        Some(PgDatabase {
            admin_url,
            name,
            url,
        })
    }

    /// A store on it (each call a separate pool: a separate "gateway instance").
    pub async fn store(&self) -> Store {
        Store::connect(&self.url).await.expect("PostgreSQL store")
    }

    /// Drops the database (call at the end; stores must be closed first).
    pub async fn drop_database(self) {
        let mut admin = sqlx::AnyConnection::connect(&self.admin_url)
            .await
            .expect("admin connection");
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await
            .expect("DROP DATABASE");
        let _ = admin.close().await;
    }
}

/// Runs `case` on a SQLite file store.
pub async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Vec<Store>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (dir, first) = sqlite().await;
    let url = format!("sqlite://{}/nested/dir/gateway.db", dir.path().display());
    let second = Store::connect(&url).await.expect("second SQLite store");
    case(vec![first.clone(), second.clone()]).await;
    first.close().await;
    second.close().await;
}

/// Runs `case` on a fresh PostgreSQL database (two stores = two instances), or skips.
pub async fn on_postgres<F, Fut>(test: &str, case: F)
where
    F: FnOnce(Vec<Store>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let Some(db) = PgDatabase::create(test).await else {
        return;
    };
    let first = db.store().await;
    let second = db.store().await;
    // Run in a task so that a failing case still drops its database before failing the test.
    let outcome = tokio::spawn(case(vec![first.clone(), second.clone()])).await;
    first.close().await;
    second.close().await;
    db.drop_database().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// Declares `<name>::sqlite` and `<name>::postgres` tests running `$case(stores)`.
#[macro_export]
macro_rules! on_both {
    ($($name:ident => $case:ident;)+) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    $crate::support::on_sqlite(super::$case).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    $crate::support::on_postgres(concat!(stringify!($name), "::postgres"), super::$case).await;
                }
            }
        )+
    };
}
