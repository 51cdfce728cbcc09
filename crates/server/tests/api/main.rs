//! The OCI Distribution v1.1 registry, the `/api/v1` JSON API, health and metrics, driven in-process through
//! `server::router` over a real store and blob store. Every test runs twice: on SQLite
//! and on PostgreSQL (modules `sqlite` and `postgres` of each file).

#[macro_use]
mod support;

mod api_apply;
mod api_attestations;
mod api_audit;
mod api_keys;
mod api_matrix;
mod api_oidc;
mod api_promotions;
mod api_tokens;
mod api_trust;
mod builds;
mod deploy_command;
mod deploy_health;
mod deploy_jobs;
mod deploy_reconcile;
mod deploy_semantics;
mod deploy_webhook;
mod hardening;
mod health_and_metrics;
mod registry_auth;
mod registry_base;
mod registry_blobs;
mod registry_creation;
mod registry_gc;
mod registry_listing;
mod registry_manifests;
mod registry_names;
mod registry_referrers;
mod registry_retention;
mod registry_sites;
mod registry_token;
mod registry_uploads;
mod web_ui;
