//! `POST /api/v1/gc` (run a garbage collection pass now, or a dry run) and
//! `GET /api/v1/gc` (its settings and record). Admins only (`registry:gc`).

use api_types::{
    GcItem, GcPassView, GcReport, GcRequest, GcStatus, RetentionExpiry, RetentionSaved,
    RetentionSkipped, RetentionView,
};
use axum::Json;
use axum::extract::State;
use domain::retention::render_age;
use registry::{CollectReport, Removed, RepositoryRetention};

use super::error::ApiError;
use super::extract::{Authorized, CollectGarbage};
use super::promotion_types::rfc3339;
use super::types::ErrorBody;
use crate::AppState;

/// How many recorded passes `GET /api/v1/gc` shows.
const PASSES_SHOWN: i64 = 20;

/// Runs one garbage collection pass now, while the registry keeps serving: referrers
/// whose subject is gone, blobs no manifest referenced for the grace window, objects
/// without a database row, expired upload sessions. A dry run changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/gc",
    request_body(content = GcRequest, description = "Optional; `{}` runs a real pass"),
    responses(
        (status = 200, description = "What the pass did (or would do)", body = GcReport),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin (`registry:gc`)", body = ErrorBody),
        (status = 409, description = "Another pass is running (one at a time in the cluster)", body = ErrorBody),
    )
)]
pub(crate) async fn run(
    State(state): State<AppState>,
    _: Authorized<CollectGarbage>,
    body: Result<super::body::OptionalJsonBody<GcRequest>, ApiError>,
) -> Result<Json<GcReport>, ApiError> {
    let super::body::OptionalJsonBody(request) = body?;
    let request = request.unwrap_or_default();
    let failed =
        |error| ApiError::internal("the garbage collection pass failed", &GcFailure(error));
    let Some(report) = state
        .collect_garbage(request.dry_run)
        .await
        .map_err(failed)?
    else {
        let running = state.registry.collecting().await.map_err(failed)?;
        return Err(ApiError::conflict(
            "another garbage collection pass is running; try again when it is done",
            serde_json::json!({ "running": running }),
        ));
    };
    Ok(Json(report_view(&report, state.gc.grace.as_secs())))
}

/// Garbage collection's settings, what every recorded pass removed together, and the
/// most recent passes.
#[utoipa::path(
    get,
    path = "/api/v1/gc",
    responses(
        (status = 200, description = "Settings and record", body = GcStatus),
        (status = 401, description = "No valid credentials", body = ErrorBody),
        (status = 403, description = "Not an admin (`registry:gc`)", body = ErrorBody),
    )
)]
pub(crate) async fn status(
    State(state): State<AppState>,
    _: Authorized<CollectGarbage>,
) -> Result<Json<GcStatus>, ApiError> {
    let totals = state.store.collection().totals().await?;
    let passes = state.store.collection().passes(PASSES_SHOWN).await?;
    Ok(Json(GcStatus {
        interval_seconds: state.gc.interval.map(|every| every.as_secs()),
        grace_seconds: state.gc.grace.as_secs(),
        manifests_deleted: totals.manifests_deleted,
        blobs_deleted: totals.blobs_deleted,
        bytes_reclaimed: totals.bytes_reclaimed,
        orphans_deleted: totals.orphans_deleted,
        passes: passes
            .into_iter()
            .map(|pass| GcPassView {
                replica: pass.replica,
                started_at: rfc3339(pass.started_at),
                duration_ms: pass.finished_at.saturating_sub(pass.started_at),
                manifests_deleted: pass.manifests_deleted,
                blobs_marked: pass.blobs_marked,
                blobs_deleted: pass.blobs_deleted,
                bytes_reclaimed: pass.bytes_reclaimed,
                orphans_deleted: pass.orphans_deleted,
                uploads_purged: pass.uploads_purged,
                errors: pass.errors,
                last_error: pass.last_error,
            })
            .collect(),
    }))
}

fn item(removed: &Removed) -> GcItem {
    GcItem {
        digest: removed.digest.to_string(),
        size: removed.size,
        repository: removed.repository.clone(),
        since: rfc3339(removed.since),
    }
}

fn retention_view(done: &RepositoryRetention) -> RetentionView {
    RetentionView {
        policy: done.policy.clone(),
        repository: done.repository.clone(),
        manifests: done.manifests,
        expired: done
            .expired
            .iter()
            .map(|expired| RetentionExpiry {
                digest: expired.digest.clone(),
                tags: expired.tags.clone(),
                tier: expired.tier.to_string(),
                age: render_age(expired.age),
                rule: expired.rule.clone(),
            })
            .collect(),
        saved: done
            .saved
            .iter()
            .map(|saved| RetentionSaved {
                digest: saved.digest.clone(),
                tags: saved.tags.clone(),
                tier: saved.tier.to_string(),
                age: render_age(saved.age),
                rule: saved.rule.clone(),
                pins: saved.pins.clone(),
            })
            .collect(),
        skipped: done
            .skipped
            .iter()
            .map(|skipped| RetentionSkipped {
                digest: skipped.digest.clone(),
                reason: skipped.reason.clone(),
            })
            .collect(),
    }
}

fn report_view(report: &CollectReport, grace_seconds: u64) -> GcReport {
    GcReport {
        dry_run: report.dry_run,
        started_at: rfc3339(report.started_at),
        duration_ms: report.finished_at.saturating_sub(report.started_at),
        grace_seconds,
        retention: report.retention.iter().map(retention_view).collect(),
        manifests_expired: report.manifests_expired,
        referrers: report.referrers.iter().map(item).collect(),
        referrers_deleted: report.referrers_deleted,
        blobs_marked: report.blobs_marked,
        bytes_marked: report.bytes_marked,
        marks_cleared: report.marks_cleared,
        blobs: report.blobs.iter().map(item).collect(),
        blobs_deleted: report.blobs_deleted,
        orphans: report.orphans.iter().map(item).collect(),
        orphans_deleted: report.orphans_deleted,
        bytes_reclaimed: report.bytes_reclaimed,
        uploads_purged: report.uploads_purged,
        errors: report.errors.clone(),
    }
}

/// A registry error as the cause of a failed pass, for the log.
#[derive(Debug)]
struct GcFailure(registry::RegistryError);

impl std::fmt::Display for GcFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.message())
    }
}

impl std::error::Error for GcFailure {}
