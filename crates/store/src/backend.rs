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

/// `$FIRST, $FIRST+1, …` for `count` bound values: the list of an `IN (…)`.
pub(crate) fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
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
/// transaction; idempotent. A row a collection pass has marked deletable is touched
/// (the mark cleared); a condemned one (its object being deleted) is left alone, and
/// the macro evaluates to `false`, linking nothing. Shared by a direct record and a
/// mount.
#[macro_export]
#[doc(hidden)]
macro_rules! record_blob {
    ($tx:ident, $repository_id:expr, $digest:expr, $size:expr, $now:expr) => {{
        let live = sqlx::query(
            "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (digest) DO UPDATE SET deletable_since = NULL \
             WHERE blobs.deleting_since IS NULL RETURNING digest",
        )
        .bind($digest.to_string())
        .bind($size)
        .bind($now)
        .fetch_optional(&mut *$tx)
        .await?
        .is_some();
        if live {
            $crate::link_blob!($tx, $repository_id, $digest, $now);
        }
        live
    }};
}

/// Links blob `digest` (whose row is live) to the repository, inside a transaction.
#[macro_export]
#[doc(hidden)]
macro_rules! link_blob {
    ($tx:ident, $repository_id:expr, $digest:expr, $now:expr) => {{
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

/// Touches the row of blob `digest` reserved with `generation` (its `created_at`),
/// inside a transaction: clears a deletable mark and evaluates to whether the row is
/// still that live one (not condemned, not collected and recreated since).
#[macro_export]
#[doc(hidden)]
macro_rules! touch_reserved {
    ($tx:ident, $digest:expr, $generation:expr) => {{
        sqlx::query(
            "UPDATE blobs SET deletable_since = NULL \
             WHERE digest = $1 AND created_at = $2 AND deleting_since IS NULL",
        )
        .bind($digest.to_string())
        .bind($generation)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
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
    (
        9,
        "web_sessions",
        include_str!("../migrations/sqlite/0009_web_sessions.sql"),
    ),
    (
        10,
        "invitations",
        include_str!("../migrations/sqlite/0010_invitations.sql"),
    ),
    (
        12,
        "upload_writers",
        include_str!("../migrations/sqlite/0012_upload_writers.sql"),
    ),
    (
        13,
        "garbage_collection",
        include_str!("../migrations/sqlite/0013_garbage_collection.sql"),
    ),
    (
        14,
        "quarantine",
        include_str!("../migrations/sqlite/0014_quarantine.sql"),
    ),
    (
        15,
        "signing_keys",
        include_str!("../migrations/sqlite/0015_signing_keys.sql"),
    ),
    (
        16,
        "attestations",
        include_str!("../migrations/sqlite/0016_attestations.sql"),
    ),
    (
        17,
        "decision_roles",
        include_str!("../migrations/sqlite/0017_decision_roles.sql"),
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
    (
        9,
        "web_sessions",
        include_str!("../migrations/postgres/0009_web_sessions.sql"),
    ),
    (
        10,
        "invitations",
        include_str!("../migrations/postgres/0010_invitations.sql"),
    ),
    (
        11,
        "audit_pending",
        include_str!("../migrations/postgres/0011_audit_pending.sql"),
    ),
    (
        12,
        "upload_writers",
        include_str!("../migrations/postgres/0012_upload_writers.sql"),
    ),
    (
        13,
        "garbage_collection",
        include_str!("../migrations/postgres/0013_garbage_collection.sql"),
    ),
    (
        14,
        "quarantine",
        include_str!("../migrations/postgres/0014_quarantine.sql"),
    ),
    (
        15,
        "signing_keys",
        include_str!("../migrations/postgres/0015_signing_keys.sql"),
    ),
    (
        16,
        "attestations",
        include_str!("../migrations/postgres/0016_attestations.sql"),
    ),
    (
        17,
        "decision_roles",
        include_str!("../migrations/postgres/0017_decision_roles.sql"),
    ),
];

/// The newest migration `migrations/sqlite/baseline.sql` stands for: a new SQLite
/// database is created from it and those migrations are recorded as applied.
const SQLITE_BASELINE_VERSION: i64 = 10;
const SQLITE_BASELINE: &str = include_str!("../migrations/sqlite/baseline.sql");

/// Creates a new, empty SQLite database's schema from the baseline in one
/// transaction and records migrations up to [`SQLITE_BASELINE_VERSION`] as applied
/// (with their checksums, so the migrator finds nothing to do or to complain about).
/// A database that holds anything at all is left to the migrations.
async fn create_from_baseline(writer: &SqlitePool, migrator: &Migrator) -> Result<(), StoreError> {
    // IMMEDIATE: a second process opening the same new file waits here, then finds the
    // schema made.
    let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
    let objects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
        .fetch_one(&mut *tx)
        .await?;
    if objects > 0 {
        return Ok(());
    }
    sqlx::raw_sql(SQLITE_BASELINE).execute(&mut *tx).await?;
    migrator
        .skip(&mut *tx, Some(SQLITE_BASELINE_VERSION))
        .await?;
    tx.commit().await?;
    Ok(())
}

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
            Backend::Sqlite { writer, .. } => {
                let migrator = migrator(SQLITE_MIGRATIONS);
                create_from_baseline(writer, &migrator).await?;
                migrator.run(writer).await?
            }
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
    use sqlx::sqlite::SqlitePool;

    use super::{SQLITE_MIGRATIONS, create_from_baseline, migrator};

    /// One row of `pragma_foreign_key_list`: id, seq, table, from, to, on update, on
    /// delete.
    type ForeignKey = (i64, i64, String, String, Option<String>, String, String);

    /// Everything a schema is made of, as SQLite reports it: per table its columns
    /// (order, type, nullability, default, key), foreign keys, indexes (columns,
    /// uniqueness, origin, partial; the names of those not made by SQLite, and their
    /// SQL, which carries expressions and WHERE clauses), CHECK constraints and rows.
    async fn shape(pool: &SqlitePool) -> Vec<String> {
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table' ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .expect("the test database answers");
        let mut shape = Vec::new();
        for (table, sql) in tables {
            let columns: Vec<(i64, String, String, i64, Option<String>, i64)> = sqlx::query_as(
                "SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info($1)",
            )
            .bind(&table)
            .fetch_all(pool)
            .await
            .expect("the test database answers");
            shape.push(format!("{table} columns {columns:?}"));
            let keys: Vec<ForeignKey> = sqlx::query_as(
                "SELECT id, seq, \"table\", \"from\", \"to\", on_update, on_delete \
                     FROM pragma_foreign_key_list($1)",
            )
            .bind(&table)
            .fetch_all(pool)
            .await
            .expect("the test database answers");
            shape.push(format!("{table} foreign keys {keys:?}"));
            let indexes: Vec<(String, i64, String, i64, Option<String>)> = sqlx::query_as(
                "SELECT l.name, l.\"unique\", l.origin, l.partial, m.sql \
                 FROM pragma_index_list($1) l LEFT JOIN sqlite_master m ON m.name = l.name",
            )
            .bind(&table)
            .fetch_all(pool)
            .await
            .expect("the test database answers");
            let mut described = Vec::new();
            for (name, unique, origin, partial, sql) in indexes {
                let columns: Vec<(i64, i64, Option<String>, i64, String, i64)> = sqlx::query_as(
                    "SELECT seqno, cid, name, \"desc\", coll, \"key\" FROM pragma_index_xinfo($1)",
                )
                .bind(&name)
                .fetch_all(pool)
                .await
                .expect("the test database answers");
                let name = if name.starts_with("sqlite_autoindex_") {
                    String::new()
                } else {
                    name
                };
                described.push(format!(
                    "{name} unique={unique} origin={origin} partial={partial} {columns:?} {sql:?}"
                ));
            }
            described.sort();
            shape.push(format!("{table} indexes {described:?}"));
            shape.push(format!("{table} checks {:?}", checks(&sql)));
            if table == "_sqlx_migrations" {
                // Times of installation differ; the versions are compared by the test.
                continue;
            }
            let values = columns
                .iter()
                .map(|column| format!("quote(\"{}\")", column.1))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let rows: Vec<(String,)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {values} FROM \"{table}\" ORDER BY 1"
            )))
            .fetch_all(pool)
            .await
            .expect("the test database answers");
            shape.push(format!("{table} rows {rows:?}"));
        }
        let others: Vec<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT type, name, sql FROM sqlite_master WHERE type IN ('view', 'trigger') ORDER BY name",
        )
        .fetch_all(pool)
        .await
        .expect("the test database answers");
        shape.push(format!("views and triggers {others:?}"));
        shape
    }

    /// The CHECK constraints in a CREATE TABLE statement, comments dropped and
    /// whitespace collapsed.
    fn checks(sql: &str) -> Vec<String> {
        let text = sql
            .lines()
            .map(|line| line.split("--").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        let words = text.replace('(', " ( ").replace(')', " ) ");
        let words: Vec<&str> = words.split_whitespace().collect();
        let mut found = Vec::new();
        for (at, word) in words.iter().enumerate() {
            if !word.eq_ignore_ascii_case("check") || words.get(at + 1) != Some(&"(") {
                continue;
            }
            let mut depth = 0;
            let mut clause = Vec::new();
            for word in &words[at + 1..] {
                clause.push(*word);
                match *word {
                    "(" => depth += 1,
                    ")" => depth -= 1,
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
            found.push(clause.join(" "));
        }
        found.sort();
        found
    }

    async fn new_database() -> SqlitePool {
        SqlitePool::connect("sqlite::memory:")
            .await
            .expect("the test database answers")
    }

    #[tokio::test]
    async fn a_new_database_made_from_the_baseline_matches_one_made_by_every_migration() {
        let replayed = new_database().await;
        migrator(SQLITE_MIGRATIONS)
            .run(&replayed)
            .await
            .expect("the test database answers");

        let from_baseline = new_database().await;
        let migrations = migrator(SQLITE_MIGRATIONS);
        create_from_baseline(&from_baseline, &migrations)
            .await
            .expect("the test database answers");
        // The migrator accepts what the baseline recorded (checksums included) and
        // runs whatever came after it.
        migrations
            .run(&from_baseline)
            .await
            .expect("the test database answers");

        let expected = shape(&replayed).await;
        // The comparison sees constraints and seeded rows, not only names.
        assert!(
            expected
                .iter()
                .any(|line| line.starts_with("approvals checks [\"("))
        );
        assert!(
            expected
                .iter()
                .any(|line| line.starts_with("audit_head rows [(\"1,0,"))
        );
        let made = shape(&from_baseline).await;
        for (replayed, made) in expected.iter().zip(&made) {
            assert_eq!(made, replayed, "the baseline differs from the migrations");
        }
        assert_eq!(made.len(), expected.len());
        let recorded: Vec<(i64, bool)> =
            sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&from_baseline)
                .await
                .expect("the test database answers");
        let all: Vec<(i64, bool)> = SQLITE_MIGRATIONS.iter().map(|m| (m.0, true)).collect();
        assert_eq!(recorded, all);
    }

    #[tokio::test]
    async fn a_database_that_holds_anything_is_left_to_the_migrations() {
        let pool = new_database().await;
        sqlx::query("CREATE TABLE unrelated (x INTEGER)")
            .execute(&pool)
            .await
            .expect("the test database answers");
        let migrations = migrator(SQLITE_MIGRATIONS);
        create_from_baseline(&pool, &migrations)
            .await
            .expect("the test database answers");
        let objects: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&pool)
            .await
            .expect("the test database answers");
        assert_eq!(
            objects, 1,
            "the baseline ran on a database that was not new"
        );
    }

    #[test]
    fn passwords_never_appear_in_redacted_urls() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("sqlite://x.db"), "sqlite://x.db");
    }
}
