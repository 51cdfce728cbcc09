//! A fresh, isolated database per test.

use sqlx::Connection;
use store::{Store, StoreOptions};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists for one test. A PostgreSQL database is dropped when this
/// value is dropped; a SQLite file disappears with its temporary directory.
pub struct TestDatabase {
    backend: Backend,
    url: String,
    admin_url: Option<String>,
    name: String,
    _directory: Option<tempfile::TempDir>,
}

fn postgres_admin_url() -> String {
    std::env::var("GANTRY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Sqlite => {
                let directory = tempfile::tempdir().expect("temporary directory");
                let url = format!("sqlite://{}", directory.path().join("gantry.db").display());
                TestDatabase {
                    backend,
                    url,
                    admin_url: None,
                    name: String::new(),
                    _directory: Some(directory),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("gantry_test_{}", uuid::Uuid::new_v4().simple());
                let mut connection = sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|error| {
                    panic!("PostgreSQL tests need a server at {admin_url} (set GANTRY_TEST_POSTGRES_URL): {error}")
                });
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut connection)
                    .await
                    .expect("create test database");
                let _ = connection.close().await;
                let url = match admin_url.rfind('/') {
                    Some(slash) => format!("{}/{name}", &admin_url[..slash]),
                    None => panic!("GANTRY_TEST_POSTGRES_URL must end in /DATABASE"),
                };
                TestDatabase {
                    backend,
                    url,
                    admin_url: Some(admin_url),
                    name,
                    _directory: None,
                }
            }
        }
    }

    /// Runs raw SQL behind the store's back, as someone with database access would
    /// (tests of tamper detection).
    pub async fn execute_raw(&self, sql: &'static str) {
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                sqlx::raw_sql(sql).execute(&pool).await.expect("raw SQL");
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                sqlx::raw_sql(sql).execute(&pool).await.expect("raw SQL");
                pool.close().await;
            }
        }
    }

    /// Every row of every table, each table's rows as text in a stable order: two
    /// snapshots are equal when nothing in the database changed.
    pub async fn snapshot(&self) -> Vec<(String, Vec<String>)> {
        let mut tables = Vec::new();
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.url).await.expect("connect");
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
                )
                .fetch_all(&pool)
                .await
                .expect("tables");
                for name in names {
                    let columns: Vec<String> =
                        sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
                            .bind(&name)
                            .fetch_all(&pool)
                            .await
                            .expect("columns");
                    let row = columns
                        .iter()
                        .map(|column| format!("quote(\"{column}\")"))
                        .collect::<Vec<_>>()
                        .join(" || ',' || ");
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT {row} AS r FROM \"{name}\" ORDER BY r"
                    )))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                    tables.push((name, rows));
                }
                pool.close().await;
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.url).await.expect("connect");
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
                )
                .fetch_all(&pool)
                .await
                .expect("tables");
                for name in names {
                    let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                        "SELECT t::text AS r FROM \"{name}\" t ORDER BY r"
                    )))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                    tables.push((name, rows));
                }
                pool.close().await;
            }
        }
        tables
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Opens (and migrates) the database.
    pub async fn store(&self) -> Store {
        Store::open(
            &self.url,
            StoreOptions {
                max_connections: 8,
                ..StoreOptions::default()
            },
        )
        .await
        .expect("open test store")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(admin_url) = self.admin_url.clone() else {
            return;
        };
        let name = self.name.clone();
        // Drop runs inside the test's runtime; a thread with its own runtime avoids
        // blocking it and works whether or not a runtime is current.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut connection = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut connection)
                .await
                .ok()?;
                connection.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}
