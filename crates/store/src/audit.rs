//! The audit log: append-only, hash-chained (see [`domain::audit`]). Entries are
//! appended inside the transaction of the change they record, through the
//! [`append_audit!`](crate::append_audit) macro, so a change and its record commit or
//! fail together.
//!
//! On SQLite an entry is chained in that transaction. On PostgreSQL it is committed
//! as pending and chained by a short transaction of its own ([`Audit::chain_pending`],
//! which every replica runs often, and [`Audit::flush`], which every read of the log
//! runs first), so that audited writes never queue behind each other on the head row.
//! At every instant: every committed change has its entry committed, pending or
//! chained; the chained entries form one verifiable chain with a total order (the
//! order of chaining); an entry committed before another was appended is chained
//! before it; and a read of the log shows every entry committed before the read began.

use domain::audit::{AuditFields, ChainWalk, entry_hash};
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

/// Appends `$entry` (a `&NewAuditEntry`) inside transaction `$tx`, so the change and
/// its record commit or fail together. See [`AppendAudit`] for what each backend does.
#[macro_export]
#[doc(hidden)]
macro_rules! append_audit {
    ($tx:ident, $entry:expr) => {{
        let entry: &$crate::NewAuditEntry = $entry;
        $crate::audit::AppendAudit::append_audit(&mut *$tx, entry).await?;
    }};
}

/// How an entry joins the log inside the transaction of the change it records.
pub(crate) trait AppendAudit {
    async fn append_audit(&mut self, entry: &NewAuditEntry) -> Result<(), StoreError>;
}

/// SQLite has one writer: the transaction already excludes every other, so the entry
/// is chained at once, and the log is never behind.
impl AppendAudit for sqlx::SqliteConnection {
    async fn append_audit(&mut self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        let head = sqlx::query(
            "UPDATE audit_head SET sequence = sequence + 1 WHERE id = 1 RETURNING sequence, hash",
        )
        .fetch_one(&mut *self)
        .await?;
        let sequence: i64 = head.get("sequence");
        let previous_hash: String = head.get("hash");
        let payload = canonical_json(&entry.payload);
        let hash = entry_hash(&AuditFields {
            sequence,
            at: entry.at,
            actor: &entry.actor,
            action: entry.action.as_str(),
            subject: &entry.subject,
            payload: &payload,
            previous_hash: &previous_hash,
        });
        sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
            .bind(&hash)
            .execute(&mut *self)
            .await?;
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
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

/// PostgreSQL runs writers side by side: taking the head row here would make every
/// audited write wait for every other's commit. The entry is inserted as pending
/// instead (its id comes from an identity sequence, which takes no lock a writer
/// waits on), and [`Audit::chain_pending`] chains it in a short transaction of its
/// own.
impl AppendAudit for sqlx::PgConnection {
    async fn append_audit(&mut self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_pending (at, actor, action, subject, payload) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(entry.action.as_str())
        .bind(&entry.subject)
        .bind(canonical_json(&entry.payload))
        .execute(&mut *self)
        .await?;
        Ok(())
    }
}

/// Pending entries chained per transaction at most.
const CHAIN_BATCH: i64 = 1000;

/// Whether [`chain_batch`] waits for the head row or leaves the work to its holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadLock {
    Wait,
    Skip,
}

/// What one [`chain_batch`] chained: how many entries, and the highest pending id
/// among them.
struct Batch {
    count: usize,
    last_id: i64,
}

/// Chains up to [`CHAIN_BATCH`] committed pending entries, lowest id first, in one
/// transaction holding the head row (`None` when `Skip` found the head taken by
/// another chainer).
async fn chain_batch(pool: &sqlx::PgPool, lock: HeadLock) -> Result<Option<Batch>, StoreError> {
    let mut tx = pool.begin().await?;
    // What follows relies on each statement seeing what committed before it began,
    // whatever the server's default isolation is.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *tx)
        .await?;
    let take = match lock {
        HeadLock::Wait => "SELECT sequence, hash FROM audit_head WHERE id = 1 FOR UPDATE",
        HeadLock::Skip => {
            "SELECT sequence, hash FROM audit_head WHERE id = 1 FOR UPDATE SKIP LOCKED"
        }
    };
    let Some(head) = sqlx::query(take).fetch_optional(&mut *tx).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let mut sequence: i64 = head.get("sequence");
    let mut previous_hash: String = head.get("hash");
    // Under READ COMMITTED this statement sees every entry committed before it began,
    // including those a chainer that held the head before us left behind. An entry
    // whose transaction is still open is not seen, and is chained by a later pass
    // (after entries committed before it: the chain's order is the order of chaining).
    let mut rows = sqlx::query(
        "DELETE FROM audit_pending WHERE id IN (SELECT id FROM audit_pending ORDER BY id LIMIT $1) \
         RETURNING id, at, actor, action, subject, payload",
    )
    .bind(CHAIN_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        tx.rollback().await?;
        return Ok(Some(Batch {
            count: 0,
            last_id: 0,
        }));
    }
    rows.sort_by_key(|row| row.get::<i64, _>("id"));
    let count = rows.len();
    let last_id: i64 = rows[count - 1].get("id");
    let mut columns = ChainedColumns::with_capacity(count);
    for row in &rows {
        sequence += 1;
        let at: i64 = row.get("at");
        let actor: String = row.get("actor");
        let action: String = row.get("action");
        let subject: String = row.get("subject");
        let payload: String = row.get("payload");
        let hash = entry_hash(&AuditFields {
            sequence,
            at,
            actor: &actor,
            action: &action,
            subject: &subject,
            payload: &payload,
            previous_hash: &previous_hash,
        });
        columns.sequence.push(sequence);
        columns.at.push(at);
        columns.actor.push(actor);
        columns.action.push(action);
        columns.subject.push(subject);
        columns.payload.push(payload);
        columns
            .previous_hash
            .push(std::mem::replace(&mut previous_hash, hash.clone()));
        columns.hash.push(hash);
    }
    sqlx::query(
        "INSERT INTO audit_log (sequence, at, actor, action, subject, payload, previous_hash, hash) \
         SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
         $6::TEXT[], $7::TEXT[], $8::TEXT[])",
    )
    .bind(&columns.sequence)
    .bind(&columns.at)
    .bind(&columns.actor)
    .bind(&columns.action)
    .bind(&columns.subject)
    .bind(&columns.payload)
    .bind(&columns.previous_hash)
    .bind(&columns.hash)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE audit_head SET sequence = $1, hash = $2 WHERE id = 1")
        .bind(sequence)
        .bind(&previous_hash)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Batch { count, last_id }))
}

/// One batch of chained entries, column by column, for one `INSERT … UNNEST`.
struct ChainedColumns {
    sequence: Vec<i64>,
    at: Vec<i64>,
    actor: Vec<String>,
    action: Vec<String>,
    subject: Vec<String>,
    payload: Vec<String>,
    previous_hash: Vec<String>,
    hash: Vec<String>,
}

impl ChainedColumns {
    fn with_capacity(count: usize) -> Self {
        ChainedColumns {
            sequence: Vec::with_capacity(count),
            at: Vec::with_capacity(count),
            actor: Vec::with_capacity(count),
            action: Vec::with_capacity(count),
            subject: Vec::with_capacity(count),
            payload: Vec::with_capacity(count),
            previous_hash: Vec::with_capacity(count),
            hash: Vec::with_capacity(count),
        }
    }
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
    /// else).
    pub async fn record(&self, entry: &NewAuditEntry) -> Result<(), StoreError> {
        with_pool!(self.backend, write, |pool| {
            let mut tx = pool.begin().await?;
            crate::append_audit!(tx, entry);
            tx.commit().await?;
            Ok(())
        })
    }

    /// Chains the entries committed but not chained yet (PostgreSQL; on SQLite every
    /// entry is chained in its own transaction and there is nothing to do), unless
    /// another chainer holds the head now: that one, or the next pass, chains them.
    /// Returns how many this call chained. Every replica runs it often; it is cheap
    /// when nothing is pending.
    pub async fn chain_pending(&self) -> Result<usize, StoreError> {
        self.chain(HeadLock::Skip).await
    }

    /// Chains every entry committed before the call, waiting for another chainer if
    /// one is at work: what a reader of the log calls first, so it sees every change
    /// that was acknowledged before it asked.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        self.chain(HeadLock::Wait).await
    }

    async fn chain(&self, lock: HeadLock) -> Result<usize, StoreError> {
        let Backend::Postgres(pool) = self.backend else {
            return Ok(0);
        };
        // Taking the head row writes (a row lock is logged); on a quiet log a plain
        // read says there is nothing to do. Every entry this call must chain (those
        // committed before it began) is visible here, an entry a chainer is moving
        // right now included (until that chainer commits), so its id is at most
        // `target`; batches take the lowest ids first, so once one reaches `target`
        // they are all chained, and entries committed later do not keep a reader here.
        let target: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM audit_pending")
            .fetch_one(pool)
            .await?;
        let Some(target) = target else {
            return Ok(0);
        };
        let mut chained = 0;
        while let Some(batch) = chain_batch(pool, lock).await? {
            chained += batch.count;
            if batch.count < CHAIN_BATCH as usize || batch.last_id >= target {
                break;
            }
        }
        Ok(chained)
    }

    /// The chain's head after chaining what is pending: the last entry's sequence
    /// and hash (0 and the genesis hash for an empty log).
    pub async fn head(&self) -> Result<(i64, String), StoreError> {
        self.flush().await?;
        with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT sequence, hash FROM audit_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok((row.get("sequence"), row.get("hash")))
        })
    }

    /// Entries not chained yet (always 0 on SQLite).
    pub async fn pending(&self) -> Result<i64, StoreError> {
        let Backend::Postgres(pool) = self.backend else {
            return Ok(0);
        };
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM audit_pending")
            .fetch_one(pool)
            .await?)
    }

    /// Entries with a sequence greater than `after`, oldest first, at most `limit`,
    /// after chaining what is pending.
    pub async fn entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        self.flush().await?;
        self.chained_entries(after, limit).await
    }

    /// [`Audit::entries`] without chaining first.
    async fn chained_entries(&self, after: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
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
        self.flush().await?;
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
        self.flush().await?;
        let (head_sequence, head_hash) = with_pool!(self.backend, read, |pool| {
            let row = sqlx::query("SELECT sequence, hash FROM audit_head WHERE id = 1")
                .fetch_one(pool)
                .await?;
            Ok::<(i64, String), StoreError>((row.get("sequence"), row.get("hash")))
        })?;
        let mut walk = ChainWalk::default();
        'pages: while walk.entries() < head_sequence {
            let page = self.chained_entries(walk.entries(), PAGE).await?;
            if page.is_empty() {
                break;
            }
            for entry in &page {
                if entry.sequence > head_sequence {
                    break 'pages;
                }
                let fields = AuditFields {
                    sequence: entry.sequence,
                    at: entry.at,
                    actor: &entry.actor,
                    action: &entry.action,
                    subject: &entry.subject,
                    payload: &entry.payload,
                    previous_hash: &entry.previous_hash,
                };
                if let Err(broken) = walk.step(&fields, &entry.hash) {
                    return Ok(ChainVerdict::Broken {
                        sequence: broken.sequence,
                        reason: broken.reason,
                    });
                }
            }
        }
        let entries = walk.entries();
        if entries != head_sequence || walk.head() != head_hash {
            return Ok(ChainVerdict::Broken {
                sequence: entries + 1,
                reason: format!(
                    "the log ends at entry {entries} but its head records entry {head_sequence}: entries were removed"
                ),
            });
        }
        Ok(ChainVerdict::Intact {
            entries,
            head: walk.head().to_owned(),
        })
    }
}
