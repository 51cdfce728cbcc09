//! The audit log: append-only, hash-chained (see [`domain::audit`]). Entries are
//! appended inside the transaction of the change they record, through the
//! [`append_audit!`](crate::append_audit) macro, so a change and its record commit or
//! fail together.

use domain::audit::{AuditFields, GENESIS_HASH, entry_hash};
use sqlx::Row;

use crate::{Backend, StoreError, with_pool};

/// An entry to append. `payload` is any JSON value; it is stored in canonical form.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: domain::audit::AuditAction,
    pub subject: String,
    pub payload: serde_json::Value,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub sequence: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    /// Canonical JSON text, exactly as hashed.
    pub payload: String,
    pub previous_hash: String,
    pub hash: String,
}

/// The outcome of recomputing the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainVerdict {
    /// Every entry's hash is right and links to the one before; the head matches.
    Intact { entries: i64, head: String },
    /// The first entry where the chain breaks, and why.
    Broken { sequence: i64, reason: String },
}

/// JSON with object keys sorted at every level and no insignificant whitespace,
/// whatever map type serde_json was built with.
pub fn canonical_json(value: &serde_json::Value) -> String {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String((*key).clone()).to_string());
                    out.push(':');
                    write(&map[*key], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

/// Appends `$entry` (a `&NewAuditEntry`) inside transaction `$tx`; evaluates to the
/// entry's sequence number. Taking the head row first serializes appenders on every
/// backend, so the chain never forks.
#[macro_export]
#[doc(hidden)]
macro_rules! append_audit {
    ($tx:ident, $entry:expr) => {{
        use sqlx::Row as _;
        let entry: &$crate::NewAuditEntry = $entry;
        let head = sqlx::query("UPDATE audit_head SET sequence = sequence + 1 WHERE id = 1 RETURNING sequence, hash")
            .fetch_one(&mut *$tx)
            .await?;
        let sequence: i64 = head.get("sequence");
        let previous_hash: String = head.get("hash");
        let payload = $crate::canonical_json(&entry.payload);
        let hash = domain::audit::entry_hash(&domain::audit::AuditFields {
            sequence,
            at: entry.at,
            actor: &entry.actor,
            action: entry.action.as_str(),
            subject: &entry.subject,
            payload: &payload,
            previous_hash: &previous_hash,
        });
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1").bind(&hash).execute(&mut *$tx).await?;
        sqlx::query(
            "INSERT INTO audit_log (sequence, at, actor, action, subject, payload, previous_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(sequence)
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(entry.action.as_str())
        .bind(&entry.subject)
        .bind(&payload)
        .bind(&previous_hash)
        .bind(&hash)
        .execute(&mut *$tx)
        .await?;
        sequence
    }};
}

/// Access to the audit log.
pub struct Audit<'a> {
    pub(crate) backend: &'a Backend,
}

const PAGE: i64 = 1000;

fn entry_from(row: &impl RowLike) -> AuditEntry {
    row.entry()
}

/// Reads an entry out of either backend's row type.
trait RowLike {
    fn entry(&self) -> AuditEntry;
}

macro_rules! row_like {
    ($row:ty) => {
        impl RowLike for $row {
            fn entry(&self) -> AuditEntry {
                AuditEntry {
                    sequence: self.get("sequence"),
                    at: self.get("at"),
                    actor: self.get("actor"),
                    action: self.get("action"),
                    subject: self.get("subject"),
                    payload: self.get("payload"),
                    previous_hash: self.get("previous_hash"),
                    hash: self.get("hash"),
                }
            }
        }
    };
}
row_like!(sqlx::sqlite::SqliteRow);
row_like!(sqlx::postgres::PgRow);

/// What [`Audit::search`] keeps; `None` keeps every entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    pub actor: Option<&'a str>,
    pub action: Option<&'a str>,
    /// A subject and those under it (an application's entries are `APP` and `APP/…`).
    pub subject: Option<&'a str>,
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Audit<'_> {
    /// Appends one entry in a transaction of its own (for events that change nothing
    /// else). Returns its sequence number.
    pub async fn record(&self, entry: &NewAuditEntry) -> Result<i64, StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            let sequence = crate::append_audit!(tx, entry);
            tx.commit().await?;
            Ok(sequence)
        })
    }

    /// Entries with a sequence greater than `after`, oldest first, at most `limit`.
    pub async fn entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT sequence, at, actor, action, subject, payload, previous_hash, hash FROM audit_log \
                 WHERE sequence > $1 ORDER BY sequence LIMIT $2",
            )
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(entry_from).collect())
        })
    }

    /// Entries newest first with a sequence below `before`, at most `limit`, those
    /// matching every filter given: the actor and the action exactly, the subject and
    /// what lies under it (`web` finds `web` and `web/dev`, not `webshop`), the time from `since` (inclusive) to
    /// `until` (exclusive), in milliseconds. One query.
    pub async fn search(
        &self,
        filter: &AuditFilter<'_>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let subject = filter.subject.map(|subject| {
            let mut pattern = String::with_capacity(subject.len() + 1);
            for c in subject.chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push_str("/%");
            pattern
        });
        with_pool!(self.backend, read, |pool| {
            let rows = sqlx::query(
                "SELECT sequence, at, actor, action, subject, payload, previous_hash, hash FROM audit_log \
                 WHERE sequence < $1 AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
                 AND ($4 IS NULL OR subject = $4 OR subject LIKE $5 ESCAPE '\\') AND at >= $6 \
                 AND at < $7 ORDER BY sequence DESC LIMIT $8",
            )
            .bind(before.unwrap_or(i64::MAX))
            .bind(filter.actor)
            .bind(filter.action)
            .bind(filter.subject)
            .bind(subject)
            .bind(filter.since.unwrap_or(i64::MIN))
            .bind(filter.until.unwrap_or(i64::MAX))
            .bind(limit)
            .fetch_all(pool)
            .await?;
            Ok(rows.iter().map(entry_from).collect())
        })
    }

    /// Recomputes the chain up to the head as it stands when verification starts (later
    /// appends are left for the next run) and names the first entry that does not verify.
    pub async fn verify(&self) -> Result<ChainVerdict, StoreError> {
        let (head_sequence, head_hash) = with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT sequence, hash FROM audit_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok::<(i64, String), StoreError>((row.get("sequence"), row.get("hash")))
        })?;
        let mut expected_previous = GENESIS_HASH.to_owned();
        let mut expected_sequence = 1;
        'pages: while expected_sequence <= head_sequence {
            let page = self.entries(expected_sequence - 1, PAGE).await?;
            if page.is_empty() {
                break;
            }
            for entry in &page {
                if entry.sequence > head_sequence {
                    break 'pages;
                }
                if entry.sequence != expected_sequence {
                    return Ok(ChainVerdict::Broken {
                        sequence: expected_sequence,
                        reason: format!(
                            "entry {expected_sequence} is missing (next is {})",
                            entry.sequence
                        ),
                    });
                }
                if entry.previous_hash != expected_previous {
                    return Ok(ChainVerdict::Broken {
                        sequence: entry.sequence,
                        reason: "its previous-hash does not match the entry before it".to_owned(),
                    });
                }
                let recomputed = entry_hash(&AuditFields {
                    sequence: entry.sequence,
                    at: entry.at,
                    actor: &entry.actor,
                    action: &entry.action,
                    subject: &entry.subject,
                    payload: &entry.payload,
                    previous_hash: &entry.previous_hash,
                });
                if recomputed != entry.hash {
                    return Ok(ChainVerdict::Broken {
                        sequence: entry.sequence,
                        reason: "its content does not match its hash (the entry was altered)"
                            .to_owned(),
                    });
                }
                expected_previous = entry.hash.clone();
                expected_sequence += 1;
            }
        }
        let entries = expected_sequence - 1;
        if entries != head_sequence || expected_previous != head_hash {
            return Ok(ChainVerdict::Broken {
                sequence: entries + 1,
                reason: format!(
                    "the log ends at entry {entries} but its head records entry {head_sequence}: entries were removed"
                ),
            });
        }
        Ok(ChainVerdict::Intact {
            entries,
            head: expected_previous,
        })
    }
}
