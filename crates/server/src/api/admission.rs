//! Admission over HTTP: `GET /api/v1/admission` answers for one image, and
//! `POST /api/v1/admission/review` answers a Kubernetes `AdmissionReview` (v1) for
//! every container image of the object under review. The decision is the engine's.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde_json::{Value, json};

use super::error::ApiError;
use super::extract::{Authorized, ReadResources};
use super::promotion_types::{AdmissionQuery, AdmissionView, ReviewQuery};
use super::types::ErrorBody;
use crate::AppState;

/// Most images one review may carry.
const MAX_IMAGES: usize = 256;

fn view(admission: engine::Admission) -> AdmissionView {
    AdmissionView {
        image: admission.image,
        allowed: admission.allowed,
        reason: admission.reason,
        digest: admission.digest,
    }
}

/// May an image run in an environment? Only digests promoted there pass; a tag is
/// judged by the digest it names now.
#[utoipa::path(
    get,
    path = "/api/v1/admission",
    params(AdmissionQuery),
    responses(
        (status = 200, description = "The decision, allowed or not, with the reason", body = AdmissionView),
        (status = 400, description = "Missing or malformed parameters", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
    )
)]
pub(crate) async fn admission(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    query: Result<Query<AdmissionQuery>, QueryRejection>,
) -> Result<Json<AdmissionView>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    Ok(Json(view(
        state.engine.admit(&query.env, &query.image).await?,
    )))
}

/// Every container image of a Pod, or of a workload's pod template.
fn images(object: &Value) -> Vec<String> {
    let mut images = Vec::new();
    for spec in [
        &object["spec"],
        &object["spec"]["template"]["spec"],
        &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    ] {
        for list in ["initContainers", "containers", "ephemeralContainers"] {
            if let Some(containers) = spec[list].as_array() {
                images.extend(
                    containers
                        .iter()
                        .filter_map(|c| c["image"].as_str().map(str::to_owned)),
                );
            }
        }
    }
    images
}

/// Answers a Kubernetes `AdmissionReview` (`admission.k8s.io/v1`) for environment
/// `env`: allowed only when every container image is.
#[utoipa::path(
    post,
    path = "/api/v1/admission/review",
    params(ReviewQuery),
    request_body(content = Object, description = "An AdmissionReview (admission.k8s.io/v1)"),
    responses(
        (status = 200, description = "The AdmissionReview with its response", content_type = "application/json"),
        (status = 400, description = "Not an AdmissionReview v1 request", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
    )
)]
pub(crate) async fn review(
    State(state): State<AppState>,
    _: Authorized<ReadResources>,
    query: Result<Query<ReviewQuery>, QueryRejection>,
    body: Result<super::body::ForeignJson, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|r| ApiError::bad_request(r.body_text()))?;
    let super::body::ForeignJson(review) = body?;
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(ApiError::bad_request(
            "expected an AdmissionReview of apiVersion admission.k8s.io/v1",
        ));
    }
    let Some(uid) = review["request"]["uid"].as_str() else {
        return Err(ApiError::bad_request(
            "the AdmissionReview has no request.uid",
        ));
    };
    let images = images(&review["request"]["object"]);
    if images.len() > MAX_IMAGES {
        return Err(ApiError::bad_request(format!(
            "the object names {} images; at most {MAX_IMAGES} are judged",
            images.len()
        )));
    }
    let mut denials = Vec::new();
    for image in &images {
        let admission = state.engine.admit(&query.env, image).await?;
        if !admission.allowed {
            denials.push(admission.reason);
        }
    }
    let response = if denials.is_empty() {
        json!({ "uid": uid, "allowed": true })
    } else {
        json!({
            "uid": uid,
            "allowed": false,
            "status": { "code": 403, "message": format!("gantry: {}", denials.join("; ")) },
        })
    };
    Ok(Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })))
}
