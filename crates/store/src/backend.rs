//! The private backends behind [`crate::Store`] and the macro that runs one query
//! text against whichever is configured.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::StoreError;

/// Connection settings that do not belong in the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Maximum connections to PostgreSQL, or SQLite reader connections.
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// SQLite: flush every commit to disk (`synchronous = FULL`) so it survives power
    /// loss; otherwise commits survive a process crash (`NORMAL`, WAL). PostgreSQL
    /// follows its own server settings.
    pub fsync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(10),
            fsync: false,
        }
    }
}

/// One configured database. SQLite allows one writer at a time, so it gets a
/// single-connection writer pool (no `SQLITE_BUSY` between our own writers) and a
/// separate reader pool that WAL mode lets run beside it.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite {
        writer: SqlitePool,
        reader: SqlitePool,
    },
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the right pool of the configured backend.
/// The body is compiled once per backend, which is what keeps the SQL shared.
#[macro_export]
#[doc(hidden)]
macro_rules! with_pool {
    ($backend:expr, read, |$pool:ident| $body:expr) => {
        match $backend {
            $crate::Backend::Sqlite { reader: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
    ($backend:expr, write, |$pool:ident| $body:expr) => {
        match $backend {
            $crate::Backend::Sqlite { writer: $pool, .. } => $body,
            $crate::Backend::Postgres($pool) => $body,
        }
    };
}

/// Takes the repository's row lock inside a transaction, serializing the writers that
/// must see each other's effects (a manifest push and a blob unlink, say). PostgreSQL
/// runs READ COMMITTED, where two such transactions could otherwise both succeed;
/// SQLite has a single writer, where this costs nothing.
#[macro_export]
#[doc(hidden)]
macro_rules! lock_repository {
    ($tx:ident, $repository_id:expr) => {
        sqlx::query("UPDATE repositories SET name = name WHERE id = $1")
            .bind($repository_id)
            .execute(&mut *$tx)
            .await?
    };
}

/// Records blob `digest` of `size` bytes and links it to the repository, inside a
/// transaction; idempotent. Shared by a direct record and by finishing an upload.
#[macro_export]
#[doc(hidden)]
macro_rules! record_blob {
    ($tx:ident, $repository_id:expr, $digest:expr, $size:expr, $now:expr) => {{
        sqlx::query("INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING")
            .bind($digest.to_string())
            .bind($size)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        sqlx::query(
            "INSERT INTO repository_blobs (repository_id, digest, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (repository_id, digest) DO NOTHING",
        )
        .bind($repository_id)
        .bind($digest.to_string())
        .bind($now)
        .execute(&mut *$tx)
        .await?;
    }};
}

const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "registry",
        include_str!("../migrations/sqlite/0001_registry.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../migrations/sqlite/0002_audit.sql"),
    ),
    (
        3,
        "resources",
        include_str!("../migrations/sqlite/0003_resources.sql"),
    ),
    (
        4,
        "promotion",
        include_str!("../migrations/sqlite/0004_promotion.sql"),
    ),
    (
        5,
        "access",
        include_str!("../migrations/sqlite/0005_access.sql"),
    ),
    (
        6,
        "drift",
        include_str!("../migrations/sqlite/0006_drift.sql"),
    ),
    (
        7,
        "deploy_jobs",
        include_str!("../migrations/sqlite/0007_deploy_jobs.sql"),
    ),
    (
        8,
        "deploy_semantics",
        include_str!("../migrations/sqlite/0008_deploy_semantics.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "registry",
        include_str!("../migrations/postgres/0001_registry.sql"),
    ),
    (
        2,
        "audit",
        include_str!("../migrations/postgres/0002_audit.sql"),
    ),
    (
        3,
        "resources",
        include_str!("../migrations/postgres/0003_resources.sql"),
    ),
    (
        4,
        "promotion",
        include_str!("../migrations/postgres/0004_promotion.sql"),
    ),
    (
        5,
        "access",
        include_str!("../migrations/postgres/0005_access.sql"),
    ),
    (
        6,
        "drift",
        include_str!("../migrations/postgres/0006_drift.sql"),
    ),
    (
        7,
        "deploy_jobs",
        include_str!("../migrations/postgres/0007_deploy_jobs.sql"),
    ),
    (
        8,
        "deploy_semantics",
        include_str!("../migrations/postgres/0008_deploy_semantics.sql"),
    ),
];

fn migrator(list: &'static [(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Backend {
    pub(crate) async fn connect(url: &str, options: &StoreOptions) -> Result<Backend, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            return Ok(Backend::Postgres(pool));
        }
        if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(if options.fsync {
                    SqliteSynchronous::Full
                } else {
                    SqliteSynchronous::Normal
                })
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                // An in-memory database lives as long as its connection; keep it.
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(connect.clone())
                .await?;
            // Readers of an in-memory database would each see their own empty
            // database, so there everything goes through the writer.
            let reader = if in_memory {
                writer.clone()
            } else {
                SqlitePoolOptions::new()
                    .max_connections(options.max_connections.max(1))
                    .min_connections(0)
                    .acquire_timeout(options.acquire_timeout)
                    .connect_with(connect.read_only(true))
                    .await?
            };
            return Ok(Backend::Sqlite { writer, reader });
        }
        Err(StoreError::UnsupportedUrl(redact(url)))
    }

    pub(crate) async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Backend::Sqlite { writer, .. } => migrator(SQLITE_MIGRATIONS).run(writer).await?,
            Backend::Postgres(pool) => migrator(POSTGRES_MIGRATIONS).run(pool).await?,
        }
        Ok(())
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Backend::Sqlite { .. } => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Backend::Sqlite { writer, reader } => {
                reader.close().await;
                writer.close().await;
            }
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// A URL with any password replaced, safe for logs and error messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}://{}:***@{}", &url[..scheme_end], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_appear_in_redacted_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
