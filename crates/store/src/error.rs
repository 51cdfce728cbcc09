//! What can go wrong in the store, by what the caller can do about it.

/// A store failure. Outcomes a caller is expected to handle (a missing blob, an
/// immutable tag) are not errors: they are variants of each operation's outcome enum.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or failed; the request may be retried.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Bringing the schema up to date failed; the server must not start.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database URL is not one Gantry understands.
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// A row holds a value Gantry did not write (e.g. an unparsable digest).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// Another writer changed the row first; re-read and try again.
    #[error("concurrent update of {0}; try again")]
    Conflict(&'static str),
}

impl StoreError {
    /// Whether the failure is a momentary lack of connections, worth a 503 and a retry.
    pub fn is_busy(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::PoolTimedOut))
    }

    pub(crate) fn corrupt(table: &'static str, detail: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            table,
            detail: detail.to_string(),
        }
    }
}
