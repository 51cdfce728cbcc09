//! Garbage collection: `POST /api/v1/gc` runs a pass now, `GET /api/v1/gc` shows the
//! settings, the recent passes and what they removed together.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/gc`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GcRequest {
    /// Report what the pass would delete, changing nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
}

/// One thing a pass removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcItem {
    pub digest: String,
    /// Bytes (blobs and objects; 0 for referrers).
    pub size: u64,
    /// The repository (referrers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Blobs: since when no manifest referenced it; referrers: when it was pushed;
    /// objects: when it was written.
    pub since: String,
}

/// A manifest retention expired (or, dry, would expire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionExpiry {
    pub digest: String,
    pub tags: Vec<String>,
    /// `dev`, `rc` or `release`.
    pub tier: String,
    /// How long it has been in its tier (since its push for `dev`, since its last
    /// successful deployment otherwise), e.g. `12d 3h`.
    pub age: String,
    /// The rule that expires it.
    pub rule: String,
}

/// A manifest the rules would expire that a promotion pin kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionSaved {
    pub digest: String,
    pub tags: Vec<String>,
    pub tier: String,
    pub age: String,
    /// The rule that would have expired it.
    pub rule: String,
    /// What pins it: `prod runs it`, `deployment 12 to staging is within its
    /// rollback window`, `promotion 7 into prod is pending`, …
    pub pins: Vec<String>,
}

/// An expiry refused when it was carried out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionSkipped {
    pub digest: String,
    pub reason: String,
}

/// What retention did (or would do) in one repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetentionView {
    /// The policy governing it: `RetentionPolicy/NAME` or `Application/NAME`.
    pub policy: String,
    pub repository: String,
    /// How many manifests the repository holds.
    pub manifests: u64,
    pub expired: Vec<RetentionExpiry>,
    pub saved: Vec<RetentionSaved>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<RetentionSkipped>,
}

/// What one pass did, or (dry run) would do. Lists stop at 1000 items; the counts
/// count everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcReport {
    pub dry_run: bool,
    pub started_at: String,
    pub duration_ms: i64,
    /// The grace window: how long a blob stays unreferenced before it is deleted.
    pub grace_seconds: u64,
    /// Retention, repository by repository (only those a policy governs).
    #[serde(default)]
    pub retention: Vec<RetentionView>,
    /// Manifests retention expired.
    #[serde(default)]
    pub manifests_expired: u64,
    /// Referrers deleted because their subject is not in their repository.
    pub referrers: Vec<GcItem>,
    #[serde(default)]
    pub referrers_deleted: u64,
    /// Blobs no manifest references, marked deletable now (their window starts).
    pub blobs_marked: u64,
    pub bytes_marked: u64,
    /// Marks cleared because a manifest references the blob again.
    #[serde(default)]
    pub marks_cleared: u64,
    /// Blobs unreferenced for longer than the grace window, deleted.
    pub blobs: Vec<GcItem>,
    pub blobs_deleted: u64,
    /// Objects in the blob store the database had no row for, deleted.
    pub orphans: Vec<GcItem>,
    pub orphans_deleted: u64,
    /// Bytes the deleted blobs and objects held.
    pub bytes_reclaimed: u64,
    /// Expired upload sessions purged with their parts.
    pub uploads_purged: u64,
    /// Steps that failed (the pass went on; the next one retries them).
    pub errors: Vec<String>,
}

/// A recorded pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcPassView {
    pub replica: String,
    pub started_at: String,
    pub duration_ms: i64,
    pub manifests_deleted: i64,
    pub blobs_marked: i64,
    pub blobs_deleted: i64,
    pub bytes_reclaimed: i64,
    pub orphans_deleted: i64,
    pub uploads_purged: i64,
    pub errors: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// `GET /api/v1/gc`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GcStatus {
    /// Seconds between scheduled passes; absent: only passes run by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<u64>,
    pub grace_seconds: u64,
    /// Every recorded pass together.
    pub manifests_deleted: i64,
    pub blobs_deleted: i64,
    pub bytes_reclaimed: i64,
    pub orphans_deleted: i64,
    /// The most recent passes, newest first (quiet ones are kept only while recent).
    pub passes: Vec<GcPassView>,
}
