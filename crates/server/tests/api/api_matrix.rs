//! The authorization matrix: every route the server has, called by every kind of
//! caller, answers as the access policy says. Three tables cover the routes:
//!
//! - [`MATRIX`], the JSON API: its routes come from the OpenAPI document the server
//!   generates from its handlers, so a route added without a row fails this test, and
//!   so does a row left behind by a removed route;
//! - [`REGISTRY_MATRIX`], the OCI registry under `/v2`: its rows are keyed by
//!   [`registry::Endpoint::kind`], so an endpoint added to the registry's `Endpoint`
//!   without a row fails this test, and so does a row naming an endpoint it no longer has;
//! - [`OTHER_ROUTES`], health, readiness, metrics and the registry's token endpoint:
//!   nothing lists them, so they are declared by hand.
//!
//! A row names its route, how to call it (fixtures are made fresh for every call that
//! could change them) and who gets what. "Allowed" is asserted as a success (2xx): the
//! fixtures are chosen so that an authorized call succeeds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::body::Body;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{TestApp, TestResponse};

use crate::support::{
    Blob, Image, assert_status, push_blob, push_image, push_manifest, start_upload,
};
use Access::{Open, Public, Users};
use Expect::{Authenticated, Succeeds};
use Who::{Admin, Approver, BuilderA, BuilderB, Promoter, Reader};

/// A pipeline whose staging gate wants one staff approval and whose prod gate wants a
/// staff and a client approval, and two applications that use it.
const RESOURCES: &str = r#"kind: Pipeline
name: standard
stages:
  - name: dev
    auto: true
  - name: staging
    gate:
      approvals: [{ role: staff, count: 1 }]
  - name: prod
    gate:
      approvals: [{ role: staff, count: 1 }, { role: client, count: 1 }]
---
kind: Application
name: web
type: container
repository: acme/web
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { record: {} } }
---
kind: Application
name: api
type: container
repository: acme/api
pipeline: standard
environments:
  dev: { target: { record: {} } }
  staging: { target: { record: {} } }
  prod: { target: { record: {} } }
"#;

/// A user outside the matrix whose tokens the token rows list, issue and revoke.
const BYSTANDER: &str = "bystander";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    /// No `Authorization` header.
    Anonymous,
    /// A user with the global `viewer` role.
    Reader,
    /// A CI identity with `developer@web`, calling with its own static token.
    BuilderA,
    /// A CI identity with `developer@api`, calling with its own static token.
    BuilderB,
    /// A user with `developer@web/staging`.
    Promoter,
    /// A user with `staff@web`.
    Approver,
    /// The bootstrap admin.
    Admin,
    /// A `developer` whose token expired.
    Expired,
    /// A `developer` whose token was revoked.
    Revoked,
}

const EVERYONE: [Who; 9] = [
    Who::Anonymous,
    Who::Reader,
    Who::BuilderA,
    Who::BuilderB,
    Who::Promoter,
    Who::Approver,
    Who::Admin,
    Who::Expired,
    Who::Revoked,
];

impl Who {
    /// Callers that bring no live credentials.
    fn unauthenticated(self) -> bool {
        matches!(self, Who::Anonymous | Who::Expired | Who::Revoked)
    }

    /// Callers that send credentials which no longer hold.
    fn sends_dead_credentials(self) -> bool {
        matches!(self, Who::Expired | Who::Revoked)
    }
}

/// What a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A success (2xx).
    Succeeds,
    /// Anything but `401`, below `500`: the caller is known and the engine's rules
    /// decide (an admin approving their own promotion, say).
    Authenticated,
    /// Exactly `401`.
    Unauthorized,
    /// Exactly `403`.
    Forbidden,
}

impl Expect {
    fn admits(self, status: StatusCode) -> bool {
        match self {
            Expect::Succeeds => status.is_success(),
            Expect::Authenticated => {
                status != StatusCode::UNAUTHORIZED && !status.is_server_error()
            }
            Expect::Unauthorized => status == StatusCode::UNAUTHORIZED,
            Expect::Forbidden => status == StatusCode::FORBIDDEN,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Succeeds => "2xx",
            Expect::Authenticated => "anything but 401 (below 500)",
            Expect::Unauthorized => "401",
            Expect::Forbidden => "403",
        })
    }
}

/// Who gets what on one route.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// Authenticates nobody: every caller gets this, whatever credentials it sends.
    Public(Expect),
    /// Open to anonymous callers, but judges the credentials a caller sends: callers
    /// with expired or revoked ones get `401`, everyone else this.
    Open(Expect),
    /// Needs a live user token: callers without one get `401`, the callers listed get
    /// what they are listed with, every other user `403`.
    Users(&'static [(Who, Expect)]),
}

impl Access {
    fn expect(self, who: Who) -> Expect {
        match self {
            Access::Public(expect) => expect,
            Access::Open(_) if who.sends_dead_credentials() => Expect::Unauthorized,
            Access::Open(expect) => expect,
            Access::Users(_) if who.unauthenticated() => Expect::Unauthorized,
            Access::Users(granted) => granted
                .iter()
                .find(|(listed, _)| *listed == who)
                .map_or(Expect::Forbidden, |(_, expect)| *expect),
        }
    }
}

/// People: every valid user that is not a CI identity. A CI token — static or
/// exchanged for a job's OIDC token — reads nothing but its own applications'
/// repositories.
const PEOPLE: &[(Who, Expect)] = &[
    (Reader, Succeeds),
    (Promoter, Succeeds),
    (Approver, Succeeds),
    (Admin, Succeeds),
];
/// People, and the CI identity building `web`.
const WEB_READERS: &[(Who, Expect)] = &[
    (Reader, Succeeds),
    (BuilderA, Succeeds),
    (Promoter, Succeeds),
    (Approver, Succeeds),
    (Admin, Succeeds),
];
/// People, and the CI identity building `api`.
const API_READERS: &[(Who, Expect)] = &[
    (Reader, Succeeds),
    (BuilderB, Succeeds),
    (Promoter, Succeeds),
    (Approver, Succeeds),
    (Admin, Succeeds),
];
/// Every valid user.
const ANY_USER: &[(Who, Expect)] = &[
    (Reader, Succeeds),
    (BuilderA, Succeeds),
    (BuilderB, Succeeds),
    (Promoter, Succeeds),
    (Approver, Succeeds),
    (Admin, Succeeds),
];
const ADMIN_ONLY: &[(Who, Expect)] = &[(Admin, Succeeds)];
/// Those holding `developer` for the whole of `web` (building feeds every environment,
/// so a grant for one environment does not do).
const WEB_DEVELOPERS: &[(Who, Expect)] = &[(BuilderA, Succeeds), (Admin, Succeeds)];
/// Those holding `developer` for the whole of `api`.
const API_DEVELOPERS: &[(Who, Expect)] = &[(BuilderB, Succeeds), (Admin, Succeeds)];
/// People (not CI identities) holding `developer` for `web/staging`.
const STAGING_DEPLOYERS: &[(Who, Expect)] = &[(Promoter, Succeeds), (Admin, Succeeds)];
/// Those whose role the staging gate asks for. The admin requested the promotion, so
/// the gate's own rules answer them.
const STAGING_DECIDERS: &[(Who, Expect)] = &[(Approver, Succeeds), (Admin, Authenticated)];
/// The promotion's requester (the promoter) and the admin.
const REQUESTER_OR_ADMIN: &[(Who, Expect)] = &[(Promoter, Succeeds), (Admin, Succeeds)];
/// The bystander's own tokens: only the admin of the callers.
const OWNER_OR_ADMIN: &[(Who, Expect)] = &[(Admin, Succeeds)];

/// How a row calls its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    OpenApi,
    OidcExchange,
    Apply,
    ListResources,
    GetResource,
    AuditVerify,
    AuditExport,
    Notify,
    ReportCheck,
    PromoteIntoStaging,
    PromoteIntoProd,
    ListPromotions,
    GetPromotion,
    GetDeployment,
    SiteBuild,
    DeploymentLog,
    DeploymentCallback,
    Approve,
    Reject,
    Cancel,
    ListApps,
    GetApp,
    History,
    Artifact,
    EnvironmentParams,
    ImageParam,
    Rollback,
    Hold,
    Observe,
    Release,
    CreateUser,
    ListUsers,
    CreateToken,
    SetPassword,
    ListUserTokens,
    OwnTokens,
    RevokeToken,
    Dora,
    GcStatus,
    GcDryRun,
    SigningKeys,
    RotateSigningKey,
    AuditCheckpoints,
    Custody,
    AuditCheckpoint,
    ListQuarantines,
    Quarantine,
    LiftQuarantine,
    Admission,
    AdmissionReview,
}

/// One route, how to call it, and who gets what. A route may have several rows.
struct Row {
    method: Method,
    path: &'static str,
    call: Call,
    access: Access,
}

const fn row(method: Method, path: &'static str, call: Call, access: Access) -> Row {
    Row {
        method,
        path,
        call,
        access,
    }
}

/// The authorization matrix: one row per (method, path) of the OpenAPI document.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    row(Method::GET,    "/api/v1/openapi.json",                            Call::OpenApi,            Public(Succeeds)),
    row(Method::POST,   "/api/v1/auth/oidc",                               Call::OidcExchange,       Public(Expect::Unauthorized)),
    row(Method::POST,   "/api/v1/apply",                                   Call::Apply,              Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/resources/{kind}",                        Call::ListResources,      Users(PEOPLE)),
    row(Method::GET,    "/api/v1/resources/{kind}/{name}",                 Call::GetResource,        Users(PEOPLE)),
    row(Method::GET,    "/api/v1/audit/verify",                            Call::AuditVerify,        Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/audit/export",                            Call::AuditExport,        Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/audit/checkpoints",                       Call::AuditCheckpoints,   Users(ADMIN_ONLY)),
    row(Method::POST,   "/api/v1/audit/checkpoints",                       Call::AuditCheckpoint,    Users(ADMIN_ONLY)),
    row(Method::POST,   "/api/v1/builds",                                  Call::Notify,             Users(WEB_DEVELOPERS)),
    row(Method::POST,   "/api/v1/checks",                                  Call::ReportCheck,        Users(WEB_DEVELOPERS)),
    row(Method::POST,   "/api/v1/promotions",                              Call::PromoteIntoStaging, Users(STAGING_DEPLOYERS)),
    row(Method::POST,   "/api/v1/promotions",                              Call::PromoteIntoProd,    Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/promotions",                              Call::ListPromotions,     Users(PEOPLE)),
    row(Method::GET,    "/api/v1/promotions/{id}",                         Call::GetPromotion,       Users(PEOPLE)),
    row(Method::GET,    "/api/v1/deployments/{id}",                        Call::GetDeployment,      Users(PEOPLE)),
    row(Method::GET,    "/api/v1/deployments/{id}/log",                    Call::DeploymentLog,      Users(PEOPLE)),
    // Only the deployment's one-time callback token is accepted, never a user's.
    row(Method::POST,   "/api/v1/deployments/{id}/callback",               Call::DeploymentCallback, Public(Expect::Unauthorized)),
    row(Method::POST,   "/api/v1/promotions/{id}/approve",                 Call::Approve,            Users(STAGING_DECIDERS)),
    row(Method::POST,   "/api/v1/promotions/{id}/reject",                  Call::Reject,             Users(STAGING_DECIDERS)),
    row(Method::POST,   "/api/v1/promotions/{id}/cancel",                  Call::Cancel,             Users(REQUESTER_OR_ADMIN)),
    row(Method::GET,    "/api/v1/apps",                                    Call::ListApps,           Users(PEOPLE)),
    row(Method::GET,    "/api/v1/apps/{app}",                              Call::GetApp,             Users(PEOPLE)),
    row(Method::GET,    "/api/v1/apps/{app}/history",                      Call::History,            Users(PEOPLE)),
    row(Method::GET,    "/api/v1/apps/{app}/artifacts/{digest}",           Call::Artifact,           Users(PEOPLE)),
    row(Method::GET,    "/api/v1/artifacts/{digest}/custody",              Call::Custody,            Users(PEOPLE)),
    row(Method::GET,    "/api/v1/apps/{app}/environments/{env}",           Call::EnvironmentParams,  Users(PEOPLE)),
    row(Method::GET,    "/params/{app}/{env}/image",                       Call::ImageParam,         Users(PEOPLE)),
    // Reading a site build needs what pulling its repository needs.
    row(Method::GET,    "/builds/{app}/{file}",                            Call::SiteBuild,          Users(WEB_READERS)),
    row(Method::POST,   "/api/v1/apps/{app}/environments/{env}/rollback",  Call::Rollback,           Users(STAGING_DEPLOYERS)),
    row(Method::PUT,    "/api/v1/apps/{app}/environments/{env}/hold",      Call::Hold,               Users(STAGING_DEPLOYERS)),
    row(Method::POST,   "/api/v1/apps/{app}/environments/{env}/observed",  Call::Observe,            Users(STAGING_DEPLOYERS)),
    row(Method::DELETE, "/api/v1/apps/{app}/environments/{env}/hold",      Call::Release,            Users(STAGING_DEPLOYERS)),
    row(Method::POST,   "/api/v1/users",                                   Call::CreateUser,         Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/users",                                   Call::ListUsers,          Users(ADMIN_ONLY)),
    row(Method::POST,   "/api/v1/users/{name}/tokens",                     Call::CreateToken,        Users(ADMIN_ONLY)),
    row(Method::PUT,    "/api/v1/users/{name}/password",                   Call::SetPassword,        Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/users/{name}/tokens",                     Call::ListUserTokens,     Users(OWNER_OR_ADMIN)),
    row(Method::GET,    "/api/v1/tokens",                                  Call::OwnTokens,          Users(ANY_USER)),
    row(Method::DELETE, "/api/v1/tokens/{id}",                             Call::RevokeToken,        Users(OWNER_OR_ADMIN)),
    row(Method::GET,    "/api/v1/metrics/dora",                            Call::Dora,               Users(PEOPLE)),
    row(Method::GET,    "/api/v1/apps/{app}/quarantines",                  Call::ListQuarantines,    Users(PEOPLE)),
    row(Method::PUT,    "/api/v1/apps/{app}/quarantines/{digest}",         Call::Quarantine,         Users(ADMIN_ONLY)),
    row(Method::POST,   "/api/v1/apps/{app}/quarantines/{digest}/lift",    Call::LiftQuarantine,     Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/gc",                                      Call::GcStatus,           Users(ADMIN_ONLY)),
    row(Method::POST,   "/api/v1/gc",                                      Call::GcDryRun,           Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/keys",                                    Call::SigningKeys,        Public(Succeeds)),
    row(Method::POST,   "/api/v1/keys/rotate",                             Call::RotateSigningKey,   Users(ADMIN_ONLY)),
    row(Method::GET,    "/api/v1/admission",                               Call::Admission,          Users(PEOPLE)),
    row(Method::POST,   "/api/v1/admission/review",                        Call::AdmissionReview,    Users(PEOPLE)),
];

/// A repository of the registry rows: each application's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repo {
    /// `acme/web`, the repository of `web`.
    Web,
    /// `acme/api`, the repository of `api`.
    Api,
}

impl Repo {
    fn name(self) -> &'static str {
        match self {
            Repo::Web => "acme/web",
            Repo::Api => "acme/api",
        }
    }
}

/// How a registry row calls its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegistryCall {
    Base,
    Catalog,
    /// The manifest of the image pushed while setting up, by digest.
    Manifest(Repo),
    /// The layer of the image pushed while setting up.
    Blob(Repo),
    Tags(Repo),
    /// What refers to the image pushed while setting up.
    Referrers(Repo),
    /// A new upload session.
    NewUpload(Repo),
    /// An upload session the admin opened.
    Session(Repo),
    /// An upload session the admin opened, and a chunk for it.
    Chunk(Repo),
    /// An upload session the admin opened, and the whole of a fresh blob to finish it.
    Completion(Repo),
    /// The manifest of a fresh image whose blobs the admin pushed, by digest.
    NewManifest(Repo),
    /// A fresh image the admin pushed by digest: untagged, never promoted.
    UnusedManifest(Repo),
    /// A fresh blob the admin pushed that no manifest uses.
    UnusedBlob(Repo),
}

/// One registry endpoint, named by its [`registry::Endpoint::kind`], how to call it, and
/// who gets what. An endpoint may have several rows (methods, repositories).
struct RegistryRow {
    kind: &'static str,
    method: Method,
    call: RegistryCall,
    access: Access,
}

const fn endpoint(
    kind: &'static str,
    method: Method,
    call: RegistryCall,
    access: Access,
) -> RegistryRow {
    RegistryRow {
        kind,
        method,
        call,
        access,
    }
}

/// The registry's authorization matrix: at least one row per endpoint kind. Pulling is
/// for people, and for a CI identity from its own applications' repositories only;
/// pushing is building, so it needs `developer` for the whole of the
/// repository's application; deleting is for admins.
#[rustfmt::skip]
const REGISTRY_MATRIX: &[RegistryRow] = &[
    endpoint("Base",           Method::GET,    RegistryCall::Base,                      Users(ANY_USER)),
    endpoint("Catalog",        Method::GET,    RegistryCall::Catalog,                   Users(PEOPLE)),
    endpoint("GetManifest",    Method::GET,    RegistryCall::Manifest(Repo::Web),       Users(WEB_READERS)),
    endpoint("GetManifest",    Method::HEAD,   RegistryCall::Manifest(Repo::Web),       Users(WEB_READERS)),
    endpoint("GetManifest",    Method::GET,    RegistryCall::Manifest(Repo::Api),       Users(API_READERS)),
    endpoint("GetBlob",        Method::GET,    RegistryCall::Blob(Repo::Web),           Users(WEB_READERS)),
    endpoint("GetBlob",        Method::HEAD,   RegistryCall::Blob(Repo::Web),           Users(WEB_READERS)),
    endpoint("GetBlob",        Method::GET,    RegistryCall::Blob(Repo::Api),           Users(API_READERS)),
    endpoint("ListTags",       Method::GET,    RegistryCall::Tags(Repo::Web),           Users(WEB_READERS)),
    endpoint("ListTags",       Method::GET,    RegistryCall::Tags(Repo::Api),           Users(API_READERS)),
    endpoint("Referrers",      Method::GET,    RegistryCall::Referrers(Repo::Web),      Users(WEB_READERS)),
    endpoint("StartUpload",    Method::POST,   RegistryCall::NewUpload(Repo::Web),      Users(WEB_DEVELOPERS)),
    endpoint("StartUpload",    Method::POST,   RegistryCall::NewUpload(Repo::Api),      Users(API_DEVELOPERS)),
    endpoint("UploadStatus",   Method::GET,    RegistryCall::Session(Repo::Web),        Users(WEB_DEVELOPERS)),
    endpoint("UploadStatus",   Method::GET,    RegistryCall::Session(Repo::Api),        Users(API_DEVELOPERS)),
    endpoint("PatchUpload",    Method::PATCH,  RegistryCall::Chunk(Repo::Web),          Users(WEB_DEVELOPERS)),
    endpoint("PatchUpload",    Method::PATCH,  RegistryCall::Chunk(Repo::Api),          Users(API_DEVELOPERS)),
    endpoint("FinishUpload",   Method::PUT,    RegistryCall::Completion(Repo::Web),     Users(WEB_DEVELOPERS)),
    endpoint("FinishUpload",   Method::PUT,    RegistryCall::Completion(Repo::Api),     Users(API_DEVELOPERS)),
    endpoint("CancelUpload",   Method::DELETE, RegistryCall::Session(Repo::Web),        Users(WEB_DEVELOPERS)),
    endpoint("CancelUpload",   Method::DELETE, RegistryCall::Session(Repo::Api),        Users(API_DEVELOPERS)),
    endpoint("PutManifest",    Method::PUT,    RegistryCall::NewManifest(Repo::Web),    Users(WEB_DEVELOPERS)),
    endpoint("PutManifest",    Method::PUT,    RegistryCall::NewManifest(Repo::Api),    Users(API_DEVELOPERS)),
    endpoint("DeleteManifest", Method::DELETE, RegistryCall::UnusedManifest(Repo::Web), Users(ADMIN_ONLY)),
    endpoint("DeleteManifest", Method::DELETE, RegistryCall::UnusedManifest(Repo::Api), Users(ADMIN_ONLY)),
    endpoint("DeleteBlob",     Method::DELETE, RegistryCall::UnusedBlob(Repo::Web),     Users(ADMIN_ONLY)),
    endpoint("DeleteBlob",     Method::DELETE, RegistryCall::UnusedBlob(Repo::Api),     Users(ADMIN_ONLY)),
];

/// A route that neither the OpenAPI document nor the registry's endpoints list.
struct FixedRow {
    method: Method,
    uri: &'static str,
    access: Access,
}

const fn fixed(method: Method, uri: &'static str, access: Access) -> FixedRow {
    FixedRow {
        method,
        uri,
        access,
    }
}

/// The routes no table lists, declared by hand: liveness, readiness and metrics, which
/// authenticate nobody, and the registry's token endpoint, where anonymous callers get
/// a token granting nothing (see the end of the test).
#[rustfmt::skip]
const OTHER_ROUTES: &[FixedRow] = &[
    fixed(Method::GET, "/healthz",                                                Public(Succeeds)),
    fixed(Method::GET, "/readyz",                                                 Public(Succeeds)),
    fixed(Method::GET, "/metrics",                                                Public(Succeeds)),
    fixed(Method::GET, "/token?service=localhost&scope=repository:acme/web:pull", Open(Succeeds)),
];

/// A request body.
enum Payload {
    Empty,
    Json(Value),
    Yaml(String),
    /// Raw bytes of a media type, sent with their length.
    Bytes(&'static str, Vec<u8>),
}

/// A request ready to send: its URI (path and query) and body.
struct Prepared {
    uri: String,
    payload: Payload,
}

impl Prepared {
    fn new(uri: impl Into<String>, payload: Payload) -> Prepared {
        Prepared {
            uri: uri.into(),
            payload,
        }
    }
}

/// The application with its callers and the fixtures every row shares.
struct World<'a> {
    app: &'a TestApp,
    /// The `Authorization` value of each caller that sends one.
    authorizations: BTreeMap<Who, String>,
    /// An artifact of `web`, notified and deployed in dev and staging.
    digest: String,
    /// Its promotion into dev.
    promotion: i64,
    /// The layer of that artifact.
    layer: String,
    /// The manifest and layer of an image of `api` (the push created its repository).
    api_digest: String,
    api_layer: String,
    seeds: AtomicU32,
}

impl<'a> World<'a> {
    /// Applies the resources, creates the callers and a notified artifact, and deploys
    /// two artifacts into `web/staging` so that it has something to roll back to.
    async fn set_up(app: &'a TestApp) -> World<'a> {
        let mut world = World {
            app,
            authorizations: BTreeMap::from([(Who::Admin, app.admin_basic())]),
            digest: String::new(),
            promotion: 0,
            layer: String::new(),
            api_digest: String::new(),
            api_layer: String::new(),
            seeds: AtomicU32::new(0),
        };
        let response = world
            .send(
                Who::Admin,
                Method::POST,
                "/api/v1/apply",
                Payload::Yaml(RESOURCES.to_owned()),
            )
            .await;
        assert_status(&response, StatusCode::OK);
        for (who, name, ci, roles) in [
            (Who::Reader, "reader", false, "viewer"),
            (Who::BuilderA, "builder-a", true, "developer@web"),
            (Who::BuilderB, "builder-b", true, "developer@api"),
            (Who::Promoter, "promoter", false, "developer@web/staging"),
            (Who::Approver, "approver", false, "staff@web"),
        ] {
            world.create_user(name, ci, roles).await;
            let (_, secret) = world.issue_token(name).await;
            world.authorizations.insert(who, format!("Bearer {secret}"));
        }
        world.create_user(BYSTANDER, false, "developer").await;

        world.create_user("expired", false, "developer").await;
        let secret = auth::generate_token().expect("random token");
        app.store
            .users()
            .create_token(store::NewToken {
                id: "tok_expired",
                user_name: "expired",
                description: "expired an hour ago",
                token_hash: &auth::hash_token(&secret),
                expires_at: Some(store::now_millis() - 60 * 60 * 1000),
                scope: None,
            })
            .await
            .expect("create token");
        world
            .authorizations
            .insert(Who::Expired, format!("Bearer {secret}"));

        world.create_user("revoked", false, "developer").await;
        let (id, secret) = world.issue_token("revoked").await;
        let response = world
            .send(
                Who::Admin,
                Method::DELETE,
                &format!("/api/v1/tokens/{id}"),
                Payload::Empty,
            )
            .await;
        assert_status(&response, StatusCode::OK);
        world
            .authorizations
            .insert(Who::Revoked, format!("Bearer {secret}"));

        let image = push_image(app, "acme/web", "base", "base").await;
        world.digest = image.manifest.digest;
        world.layer = image.layer.digest;
        let image = push_image(app, Repo::Api.name(), "base", "api-base").await;
        world.api_digest = image.manifest.digest;
        world.api_layer = image.layer.digest;
        let response = world.notify(&world.digest).await;
        world.promotion = response.json()["promotion"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("notify promoted into dev: {}", response.text()));
        world.deploy_to_staging(&world.digest).await;
        let second = world.fresh_build().await;
        world.deploy_to_staging(&second).await;
        world
    }

    /// Sends a request as `who`.
    async fn send(&self, who: Who, method: Method, uri: &str, payload: Payload) -> TestResponse {
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(authorization) = self.authorizations.get(&who) {
            headers.push(("authorization", authorization.clone()));
        }
        let body = match payload {
            Payload::Empty => Body::empty(),
            Payload::Json(value) => {
                headers.push(("content-type", "application/json".to_owned()));
                Body::from(value.to_string())
            }
            Payload::Yaml(text) => {
                headers.push(("content-type", "application/yaml".to_owned()));
                Body::from(text)
            }
            Payload::Bytes(media_type, bytes) => {
                headers.push(("content-type", media_type.to_owned()));
                headers.push(("content-length", bytes.len().to_string()));
                Body::from(bytes)
            }
        };
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (*name, value.as_str()))
            .collect();
        self.app.send(method, uri, &headers, body).await
    }

    /// Sends `prepared` as `who`; says how the answer disagrees with `expect`, if it does.
    async fn judge(
        &self,
        who: Who,
        method: &Method,
        prepared: Prepared,
        expect: Expect,
    ) -> Result<(), String> {
        let response = self
            .send(who, method.clone(), &prepared.uri, prepared.payload)
            .await;
        if expect.admits(response.status) {
            Ok(())
        } else {
            Err(format!(
                "expected {expect}, got {}: {}",
                response.status,
                excerpt(&response)
            ))
        }
    }

    /// A name never used before, for fresh fixtures.
    fn fresh(&self, what: &str) -> String {
        format!(
            "matrix-{what}-{}",
            self.seeds.fetch_add(1, Ordering::Relaxed)
        )
    }

    async fn create_user(&self, name: &str, ci: bool, role: &str) {
        let body = json!({ "name": name, "ci": ci, "roles": [role] });
        let response = self
            .send(
                Who::Admin,
                Method::POST,
                "/api/v1/users",
                Payload::Json(body),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
    }

    /// Issues a token for `user` as the admin: (id, secret).
    async fn issue_token(&self, user: &str) -> (String, String) {
        let uri = format!("/api/v1/users/{user}/tokens");
        let body = json!({ "description": "authorization matrix" });
        let response = self
            .send(Who::Admin, Method::POST, &uri, Payload::Json(body))
            .await;
        assert_status(&response, StatusCode::CREATED);
        let body = response.json();
        (
            body["id"].as_str().expect("a token id").to_owned(),
            body["token"].as_str().expect("a token").to_owned(),
        )
    }

    /// Notifies a build of `web` as the admin.
    async fn notify(&self, digest: &str) -> TestResponse {
        let body = json!({ "application": "web", "digest": digest, "commit": "abc1234" });
        let response = self
            .send(
                Who::Admin,
                Method::POST,
                "/api/v1/builds",
                Payload::Json(body),
            )
            .await;
        assert_status(&response, StatusCode::CREATED);
        response
    }

    /// Pushes an artifact of `web` never seen before and notifies it (which deploys it
    /// into dev); returns its digest.
    async fn fresh_build(&self) -> String {
        let seed = format!("matrix-{}", self.seeds.fetch_add(1, Ordering::Relaxed));
        let image = push_image(self.app, "acme/web", &seed, &seed).await;
        self.notify(&image.manifest.digest).await;
        image.manifest.digest
    }

    /// Requests a promotion of `web` into `environment` as `who`.
    async fn promote(&self, who: Who, environment: &str, digest: &str) -> TestResponse {
        let body = json!({ "application": "web", "environment": environment, "digest": digest });
        self.send(who, Method::POST, "/api/v1/promotions", Payload::Json(body))
            .await
    }

    /// A fresh artifact's promotion into `web/staging`, requested by `requester` and
    /// waiting for its staff approval.
    async fn pending_staging_promotion(&self, requester: Who) -> i64 {
        let digest = self.fresh_build().await;
        let response = self.promote(requester, "staging", &digest).await;
        assert_status(&response, StatusCode::CREATED);
        assert_eq!(response.json()["state"], "waiting", "{}", response.text());
        response.json()["id"].as_i64().expect("a promotion id")
    }

    /// Promotes `digest` into `web/staging` as the admin and approves it as the approver.
    async fn deploy_to_staging(&self, digest: &str) {
        let response = self.promote(Who::Admin, "staging", digest).await;
        assert_status(&response, StatusCode::CREATED);
        let id = response.json()["id"].as_i64().expect("a promotion id");
        let uri = format!("/api/v1/promotions/{id}/approve");
        let response = self
            .send(Who::Approver, Method::POST, &uri, Payload::Json(json!({})))
            .await;
        assert_status(&response, StatusCode::OK);
        assert_eq!(response.json()["state"], "deployed", "{}", response.text());
    }

    /// The request `call` makes, with fixtures of its own where a call changes them.
    async fn prepare(&self, call: Call) -> Prepared {
        let digest = &self.digest;
        let image = format!("acme/web@{digest}");
        match call {
            Call::OpenApi => Prepared::new("/api/v1/openapi.json", Payload::Empty),
            Call::OidcExchange => Prepared::new(
                "/api/v1/auth/oidc",
                Payload::Json(json!({ "token": "not.a.jwt" })),
            ),
            Call::Apply => Prepared::new("/api/v1/apply", Payload::Yaml(RESOURCES.to_owned())),
            Call::ListResources => Prepared::new("/api/v1/resources/applications", Payload::Empty),
            Call::GetResource => {
                Prepared::new("/api/v1/resources/applications/web", Payload::Empty)
            }
            Call::AuditVerify => Prepared::new("/api/v1/audit/verify", Payload::Empty),
            Call::AuditExport => Prepared::new("/api/v1/audit/export", Payload::Empty),
            Call::AuditCheckpoints => Prepared::new("/api/v1/audit/checkpoints", Payload::Empty),
            Call::AuditCheckpoint => Prepared::new("/api/v1/audit/checkpoints", Payload::Empty),
            Call::Notify => Prepared::new(
                "/api/v1/builds",
                Payload::Json(
                    json!({ "application": "web", "digest": digest, "commit": "abc1234" }),
                ),
            ),
            Call::ReportCheck => Prepared::new(
                "/api/v1/checks",
                Payload::Json(
                    json!({ "application": "web", "digest": digest, "name": "unit", "status": "passed" }),
                ),
            ),
            Call::PromoteIntoStaging | Call::PromoteIntoProd => {
                let environment = if call == Call::PromoteIntoProd {
                    "prod"
                } else {
                    "staging"
                };
                let digest = self.fresh_build().await;
                Prepared::new(
                    "/api/v1/promotions",
                    Payload::Json(
                        json!({ "application": "web", "environment": environment, "digest": digest }),
                    ),
                )
            }
            Call::ListPromotions => Prepared::new("/api/v1/promotions", Payload::Empty),
            Call::GetPromotion => Prepared::new(
                format!("/api/v1/promotions/{}", self.promotion),
                Payload::Empty,
            ),
            // The world's first deployment: its promotion into dev.
            Call::GetDeployment => Prepared::new("/api/v1/deployments/1", Payload::Empty),
            Call::DeploymentLog => Prepared::new("/api/v1/deployments/1/log", Payload::Empty),
            Call::DeploymentCallback => Prepared::new(
                "/api/v1/deployments/1/callback",
                Payload::Json(json!({ "state": "succeeded" })),
            ),
            Call::Approve => {
                let id = self.pending_staging_promotion(Who::Admin).await;
                Prepared::new(
                    format!("/api/v1/promotions/{id}/approve"),
                    Payload::Json(json!({ "comment": "looks good" })),
                )
            }
            Call::Reject => {
                let id = self.pending_staging_promotion(Who::Admin).await;
                Prepared::new(
                    format!("/api/v1/promotions/{id}/reject"),
                    Payload::Json(json!({ "reason": "not this one" })),
                )
            }
            Call::Cancel => {
                let id = self.pending_staging_promotion(Who::Promoter).await;
                Prepared::new(
                    format!("/api/v1/promotions/{id}/cancel"),
                    Payload::Json(json!({ "comment": "withdrawn" })),
                )
            }
            Call::ListApps => Prepared::new("/api/v1/apps", Payload::Empty),
            Call::GetApp => Prepared::new("/api/v1/apps/web", Payload::Empty),
            Call::History => Prepared::new("/api/v1/apps/web/history", Payload::Empty),
            Call::EnvironmentParams => {
                Prepared::new("/api/v1/apps/web/environments/staging", Payload::Empty)
            }
            Call::ImageParam => Prepared::new("/params/web/staging/image", Payload::Empty),
            Call::SiteBuild => {
                crate::support::push_site(
                    self.app,
                    "acme/web",
                    "site-build",
                    &[("index.html", b"<p>hi</p>")],
                )
                .await;
                Prepared::new("/builds/web/site-build.zip", Payload::Empty)
            }
            Call::Custody => Prepared::new(
                format!("/api/v1/artifacts/{digest}/custody"),
                Payload::Empty,
            ),
            Call::Artifact => Prepared::new(
                format!("/api/v1/apps/web/artifacts/{digest}"),
                Payload::Empty,
            ),
            // Staging ran two artifacts: each rollback returns to the other.
            Call::Rollback => Prepared::new(
                "/api/v1/apps/web/environments/staging/rollback",
                Payload::Json(json!({ "reason": "authorization matrix" })),
            ),
            Call::Hold => Prepared::new(
                "/api/v1/apps/web/environments/staging/hold",
                Payload::Json(json!({ "reason": "authorization matrix" })),
            ),
            Call::Observe => Prepared::new(
                "/api/v1/apps/web/environments/staging/observed",
                Payload::Json(json!({ "digest": self.digest })),
            ),
            Call::Release => {
                Prepared::new("/api/v1/apps/web/environments/staging/hold", Payload::Empty)
            }
            Call::CreateUser => {
                let name = format!("matrix-user-{}", self.seeds.fetch_add(1, Ordering::Relaxed));
                Prepared::new(
                    "/api/v1/users",
                    Payload::Json(json!({ "name": name, "roles": ["viewer"] })),
                )
            }
            Call::ListUsers => Prepared::new("/api/v1/users", Payload::Empty),
            Call::CreateToken => Prepared::new(
                format!("/api/v1/users/{BYSTANDER}/tokens"),
                Payload::Json(
                    json!({ "description": "authorization matrix", "expires_in_days": 1 }),
                ),
            ),
            Call::ListUserTokens => {
                Prepared::new(format!("/api/v1/users/{BYSTANDER}/tokens"), Payload::Empty)
            }
            Call::SetPassword => Prepared::new(
                format!("/api/v1/users/{BYSTANDER}/password"),
                Payload::Json(json!({ "password": "an authorization matrix password" })),
            ),
            Call::OwnTokens => Prepared::new("/api/v1/tokens", Payload::Empty),
            Call::RevokeToken => {
                let (id, _) = self.issue_token(BYSTANDER).await;
                Prepared::new(format!("/api/v1/tokens/{id}"), Payload::Empty)
            }
            Call::Dora => Prepared::new("/api/v1/metrics/dora", Payload::Empty),
            Call::ListQuarantines => Prepared::new("/api/v1/apps/web/quarantines", Payload::Empty),
            // Each caller quarantines a digest of its own, then lifts one quarantined for it.
            Call::Quarantine => {
                let seed = format!("q-{}", unique());
                let digest = crate::support::push_image(self.app, "acme/web", &seed, &seed)
                    .await
                    .manifest
                    .digest;
                Prepared::new(
                    format!("/api/v1/apps/web/quarantines/{digest}"),
                    Payload::Json(json!({ "reason": "authorization matrix" })),
                )
            }
            Call::LiftQuarantine => {
                let seed = format!("l-{}", unique());
                let digest = crate::support::push_image(self.app, "acme/web", &seed, &seed)
                    .await
                    .manifest
                    .digest;
                let uri = format!("/api/v1/apps/web/quarantines/{digest}");
                let body = json!({ "reason": "authorization matrix" });
                let response = self
                    .send(Who::Admin, Method::PUT, &uri, Payload::Json(body))
                    .await;
                assert_status(&response, StatusCode::CREATED);
                Prepared::new(
                    format!("{uri}/lift"),
                    Payload::Json(json!({ "reason": "authorization matrix" })),
                )
            }
            Call::GcStatus => Prepared::new("/api/v1/gc", Payload::Empty),
            Call::SigningKeys => Prepared::new("/api/v1/keys", Payload::Empty),
            Call::RotateSigningKey => Prepared::new("/api/v1/keys/rotate", Payload::Empty),
            Call::GcDryRun => {
                Prepared::new("/api/v1/gc", Payload::Json(json!({ "dry_run": true })))
            }
            Call::Admission => Prepared::new(
                format!("/api/v1/admission?env=dev&image={}", encode(&image)),
                Payload::Empty,
            ),
            Call::AdmissionReview => Prepared::new(
                "/api/v1/admission/review?env=dev",
                Payload::Json(json!({
                    "apiVersion": "admission.k8s.io/v1",
                    "kind": "AdmissionReview",
                    "request": {
                        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                        "object": { "kind": "Pod", "spec": { "containers": [{ "name": "web", "image": image }] } },
                    },
                })),
            ),
        }
    }
}

impl World<'_> {
    /// The manifest and layer digests of the image pushed to `repo` while setting up.
    fn pushed(&self, repo: Repo) -> (&str, &str) {
        match repo {
            Repo::Web => (&self.digest, &self.layer),
            Repo::Api => (&self.api_digest, &self.api_layer),
        }
    }

    /// The request a registry `call` makes, with fixtures of its own where a call
    /// changes them or needs a session.
    async fn prepare_registry(&self, call: RegistryCall) -> Prepared {
        const OCTETS: &str = "application/octet-stream";
        match call {
            RegistryCall::Base => Prepared::new("/v2/", Payload::Empty),
            RegistryCall::Catalog => Prepared::new("/v2/_catalog", Payload::Empty),
            RegistryCall::Manifest(repo) => Prepared::new(
                format!("/v2/{}/manifests/{}", repo.name(), self.pushed(repo).0),
                Payload::Empty,
            ),
            RegistryCall::Blob(repo) => Prepared::new(
                format!("/v2/{}/blobs/{}", repo.name(), self.pushed(repo).1),
                Payload::Empty,
            ),
            RegistryCall::Tags(repo) => {
                Prepared::new(format!("/v2/{}/tags/list", repo.name()), Payload::Empty)
            }
            RegistryCall::Referrers(repo) => Prepared::new(
                format!("/v2/{}/referrers/{}", repo.name(), self.pushed(repo).0),
                Payload::Empty,
            ),
            RegistryCall::NewUpload(repo) => Prepared::new(
                format!("/v2/{}/blobs/uploads/", repo.name()),
                Payload::Empty,
            ),
            RegistryCall::Session(repo) => {
                Prepared::new(start_upload(self.app, repo.name()).await, Payload::Empty)
            }
            RegistryCall::Chunk(repo) => Prepared::new(
                start_upload(self.app, repo.name()).await,
                Payload::Bytes(OCTETS, b"a chunk".to_vec()),
            ),
            RegistryCall::Completion(repo) => {
                let session = start_upload(self.app, repo.name()).await;
                let blob = Blob::new(self.fresh("blob"));
                Prepared::new(
                    format!("{session}?digest={}", blob.digest),
                    Payload::Bytes(OCTETS, blob.bytes),
                )
            }
            RegistryCall::NewManifest(repo) => {
                let image = Image::new(&self.fresh("image"));
                image.push_blobs(self.app, repo.name()).await;
                Prepared::new(
                    format!("/v2/{}/manifests/{}", repo.name(), image.manifest.digest),
                    Payload::Bytes(registry::OCI_MANIFEST, image.manifest.bytes),
                )
            }
            RegistryCall::UnusedManifest(repo) => {
                let image = Image::new(&self.fresh("image"));
                image.push_blobs(self.app, repo.name()).await;
                let digest = &image.manifest.digest;
                push_manifest(self.app, repo.name(), digest, &image.manifest).await;
                Prepared::new(
                    format!("/v2/{}/manifests/{digest}", repo.name()),
                    Payload::Empty,
                )
            }
            RegistryCall::UnusedBlob(repo) => {
                let blob = Blob::new(self.fresh("blob"));
                push_blob(self.app, repo.name(), &blob).await;
                Prepared::new(
                    format!("/v2/{}/blobs/{}", repo.name(), blob.digest),
                    Payload::Empty,
                )
            }
        }
    }
}

/// The access list of a registry token: its signed payload, decoded.
fn granted(token: &str) -> Value {
    use base64::Engine;
    let payload = token
        .strip_prefix("gnr.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("not a registry token: {token}"));
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the token's payload is base64");
    let claims: Value = serde_json::from_slice(&payload).expect("the token's payload is JSON");
    claims["access"].clone()
}

/// Percent-encodes the characters of an image reference that a query value may not hold.
fn encode(text: &str) -> String {
    text.replace(':', "%3A")
        .replace('@', "%40")
        .replace('/', "%2F")
}

/// Does `uri` (path and query) address `template`, whose `{…}` segments match any one
/// segment?
fn addresses(template: &str, uri: &str) -> bool {
    let path = uri.split_once('?').map_or(uri, |(path, _)| path);
    let wanted: Vec<&str> = template.split('/').collect();
    let got: Vec<&str> = path.split('/').collect();
    wanted.len() == got.len()
        && wanted.iter().zip(&got).all(|(wanted, got)| {
            wanted == got || (wanted.starts_with('{') && wanted.ends_with('}') && !got.is_empty())
        })
}

/// Every (method, path template) of the OpenAPI document the server serves.
async fn documented_routes(app: &TestApp) -> BTreeSet<(String, String)> {
    let response = app
        .send(Method::GET, "/api/v1/openapi.json", &[], Body::empty())
        .await;
    assert_status(&response, StatusCode::OK);
    let document = response.json();
    let paths = document["paths"]
        .as_object()
        .expect("the OpenAPI document has paths");
    let mut routes = BTreeSet::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for method in [
            "get", "put", "post", "delete", "options", "head", "patch", "trace",
        ] {
            if item.contains_key(method) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// The first part of a response body, for a failure message.
fn excerpt(response: &TestResponse) -> String {
    let text = response.text();
    match text.char_indices().nth(300) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

registry_tests! {
    async fn every_route_answers_every_kind_of_caller_as_the_authorization_matrix_says(app) {
        let documented = documented_routes(&app).await;
        let tabled: BTreeSet<(String, String)> = MATRIX
            .iter()
            .map(|row| (row.method.to_string(), row.path.to_owned()))
            .collect();
        let mut problems: Vec<String> = Vec::new();
        for (method, path) in documented.difference(&tabled) {
            problems.push(format!("route {method} {path} has no row in the authorization matrix: add one"));
        }
        for (method, path) in tabled.difference(&documented) {
            problems.push(format!("the authorization matrix has a row for {method} {path}, which the OpenAPI document no longer has: remove it"));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));

        let world = World::set_up(&app).await;
        let mut calls = 0;
        for row in MATRIX {
            for who in EVERYONE {
                let prepared = world.prepare(row.call).await;
                assert!(
                    addresses(row.path, &prepared.uri),
                    "the row {} {} sends {}, another route",
                    row.method, row.path, prepared.uri
                );
                let expect = row.access.expect(who);
                if let Err(mismatch) = world.judge(who, &row.method, prepared, expect).await {
                    problems.push(format!("{} {} ({:?}) as {who:?}: {mismatch}", row.method, row.path, row.call));
                }
                calls += 1;
            }
        }
        assert_eq!(calls, MATRIX.len() * EVERYONE.len());
        assert!(
            problems.is_empty(),
            "{} of {calls} calls disagree with the authorization matrix:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    async fn every_registry_endpoint_answers_every_kind_of_caller_as_the_authorization_matrix_says(app) {
        let kinds: BTreeSet<&str> = registry::Endpoint::KINDS.into_iter().collect();
        let tabled: BTreeSet<&str> = REGISTRY_MATRIX.iter().map(|row| row.kind).collect();
        let mut problems: Vec<String> = Vec::new();
        for kind in kinds.difference(&tabled) {
            problems.push(format!("registry endpoint {kind} has no row in the authorization matrix: add one"));
        }
        for kind in tabled.difference(&kinds) {
            problems.push(format!("the authorization matrix has a row for registry endpoint {kind}, which the registry does not have: remove it"));
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));

        let world = World::set_up(&app).await;
        let mut calls = 0;
        for row in REGISTRY_MATRIX {
            for who in EVERYONE {
                let prepared = world.prepare_registry(row.call).await;
                let path = prepared.uri.split_once('?').map_or(prepared.uri.as_str(), |(path, _)| path);
                let parsed = registry::Endpoint::parse(&row.method, path).map(|endpoint| endpoint.kind()).ok();
                assert!(
                    parsed == Some(row.kind),
                    "the row {} {} ({:?}) sends {}, another endpoint",
                    row.kind, row.method, row.call, prepared.uri
                );
                let expect = row.access.expect(who);
                if let Err(mismatch) = world.judge(who, &row.method, prepared, expect).await {
                    problems.push(format!("{} {} ({:?}) as {who:?}: {mismatch}", row.kind, row.method, row.call));
                }
                calls += 1;
            }
        }
        assert_eq!(calls, REGISTRY_MATRIX.len() * EVERYONE.len());
        assert!(
            problems.is_empty(),
            "{} of {calls} calls disagree with the registry's authorization matrix:\n{}",
            problems.len(),
            problems.join("\n")
        );
    }

    async fn every_other_route_answers_every_kind_of_caller_as_the_authorization_matrix_says(app) {
        let world = World::set_up(&app).await;
        let mut problems: Vec<String> = Vec::new();
        for row in OTHER_ROUTES {
            for who in EVERYONE {
                let prepared = Prepared::new(row.uri, Payload::Empty);
                let expect = row.access.expect(who);
                if let Err(mismatch) = world.judge(who, &row.method, prepared, expect).await {
                    problems.push(format!("{} {} as {who:?}: {mismatch}", row.method, row.uri));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "{} of {} calls disagree with the authorization matrix:\n{}",
            problems.len(),
            OTHER_ROUTES.len() * EVERYONE.len(),
            problems.join("\n")
        );

        // The token endpoint answers anonymous callers with a token granting nothing,
        // and users with what they may do.
        let token_uri = "/token?service=localhost&scope=repository:acme/web:pull";
        let response = world.send(Who::Anonymous, Method::GET, token_uri, Payload::Empty).await;
        assert_status(&response, StatusCode::OK);
        let token = response.json()["token"].as_str().expect("a token").to_owned();
        assert_eq!(granted(&token), json!([]), "an anonymous caller is granted nothing");
        let response = world.send(Who::Reader, Method::GET, token_uri, Payload::Empty).await;
        assert_status(&response, StatusCode::OK);
        let token = response.json()["token"].as_str().expect("a token").to_owned();
        assert_eq!(
            granted(&token),
            json!([{ "type": "repository", "name": "acme/web", "actions": ["pull"] }]),
            "a reader is granted the pull they asked for"
        );
    }

    async fn every_api_string_field_query_parameter_and_path_segment_refuses_control_characters(app) {
        let document = app
            .send(Method::GET, "/api/v1/openapi.json", &[], Body::empty())
            .await
            .json();
        let world = World::set_up(&app).await;
        let mut problems: Vec<String> = Vec::new();
        let mut checked = 0;
        for row in MATRIX {
            let method = row.method.as_str().to_lowercase();
            let operation = &document["paths"][row.path][&method];
            assert!(operation.is_object(), "{} {} is in the OpenAPI document", row.method, row.path);
            // Path segments, named by the route's parameters.
            for segment in row.path.split('/') {
                let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                    continue;
                };
                let before = audit_length(&app).await;
                let uri = with_poisoned_segment(row.path, name);
                let response = world.send(Who::Admin, row.method.clone(), &uri, Payload::Empty).await;
                let changed = audit_length(&app).await != before;
                if let Some(problem) = refusal_problem(&response, name, changed) {
                    problems.push(format!("{} {uri}: {problem}", row.method));
                }
                checked += 1;
            }
            // Query parameters, as the document lists them.
            for name in query_parameters(operation) {
                let before = audit_length(&app).await;
                let uri = format!("{}?{name}=a%00b", with_poisoned_segment(row.path, ""));
                let response = world.send(Who::Admin, row.method.clone(), &uri, Payload::Empty).await;
                let changed = audit_length(&app).await != before;
                if let Some(problem) = refusal_problem(&response, &name, changed) {
                    problems.push(format!("{} {uri}: {problem}", row.method));
                }
                checked += 1;
            }
            // String fields of the body: those the row sends, and every other one the
            // document declares.
            let prepared = world.prepare(row.call).await;
            let Payload::Json(valid) = &prepared.payload else { continue };
            let mut fields = Vec::new();
            string_paths(valid, String::new(), &mut fields);
            for declared in body_string_properties(&document, operation) {
                if !fields.contains(&declared) {
                    fields.push(declared);
                }
            }
            // Where the admin is let through, the body is judged: a 400 naming the
            // field. Elsewhere (a callback token, a token exchange, a foreign document)
            // the answer may differ, but never a 5xx, and nothing changes.
            let judged = matches!(row.access.expect(Who::Admin), Expect::Succeeds | Expect::Authenticated)
                && row.call != Call::AdmissionReview;
            for field in fields {
                let prepared = world.prepare(row.call).await;
                let before = audit_length(&app).await;
                let body = poisoned(valid, &field);
                let response = world.send(Who::Admin, row.method.clone(), &prepared.uri, Payload::Json(body)).await;
                let changed = audit_length(&app).await != before;
                let problem = if judged {
                    refusal_problem(&response, &field, changed)
                } else if response.status.is_server_error() || response.status.is_success() && changed {
                    Some(format!("got {}: {}", response.status, excerpt(&response)))
                } else {
                    None
                };
                if let Some(problem) = problem {
                    problems.push(format!("{} {} body field `{field}`: {problem}", row.method, prepared.uri));
                }
                checked += 1;
            }
        }
        // Declared resources are text too.
        let before = audit_length(&app).await;
        let yaml = RESOURCES.replacen(
            "dev: { target: { record: {} } }",
            "dev: { target: { record: {} }, config: { note: \"a\\0b\" } }",
            1,
        );
        assert_ne!(yaml, RESOURCES);
        let response = world.send(Who::Admin, Method::POST, "/api/v1/apply", Payload::Yaml(yaml)).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{}", response.text());
        assert!(response.text().contains("environments.dev.config.note") && response.text().contains("control character"), "{}", response.text());
        assert_eq!(audit_length(&app).await, before, "a refused apply changes nothing");
        assert!(checked > 60, "only {checked} fields were checked");
        assert!(problems.is_empty(), "{} of {checked} poisoned requests were not refused cleanly:\n{}", problems.len(), problems.join("\n"));
    }

    async fn every_route_with_a_body_refuses_one_it_cannot_read_as_declared_json_in_the_api_envelope(app) {
        let document = app
            .send(Method::GET, "/api/v1/openapi.json", &[], Body::empty())
            .await
            .json();
        let world = World::set_up(&app).await;
        let mut problems: Vec<String> = Vec::new();
        let mut checked = 0;
        for row in MATRIX {
            let operation = &document["paths"][row.path][row.method.as_str().to_lowercase()];
            let takes_json = operation.pointer("/requestBody/content/application~1json").is_some();
            if !takes_json || !matches!(row.access.expect(Who::Admin), Expect::Succeeds | Expect::Authenticated) {
                continue;
            }
            let prepared = world.prepare(row.call).await;
            let valid = match &prepared.payload {
                Payload::Json(value) => value.to_string(),
                _ => "{}".to_owned(),
            };
            let authorization = world.authorizations[&Who::Admin].clone();
            for (content_type, body, status) in [
                // A body without Content-Type is never read as if it were absent.
                (None, valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
                (Some("text/plain"), valid.clone(), StatusCode::UNSUPPORTED_MEDIA_TYPE),
                (Some("application/json"), "{\"unterminated".to_owned(), StatusCode::BAD_REQUEST),
                (Some("application/json"), "[1, 2]".to_owned(), StatusCode::BAD_REQUEST),
            ] {
                let mut headers = vec![("authorization", authorization.as_str())];
                if let Some(content_type) = content_type {
                    headers.push(("content-type", content_type));
                }
                let before = audit_length(&app).await;
                let response = app.send(row.method.clone(), &prepared.uri, &headers, Body::from(body.clone())).await;
                let envelope = serde_json::from_slice::<Value>(&response.body)
                    .ok()
                    .is_some_and(|value| value["code"].is_string() && value["message"].is_string());
                if response.status != status || !envelope || audit_length(&app).await != before {
                    problems.push(format!(
                        "{} {} with {content_type:?} {body:?}: expected {status} in the envelope, changing nothing; got {}: {}",
                        row.method, prepared.uri, response.status, excerpt(&response)
                    ));
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "only {checked} requests were checked");
        assert!(problems.is_empty(), "{} of {checked} bad bodies were not refused cleanly:\n{}", problems.len(), problems.join("\n"));
    }

    async fn a_route_that_needs_a_user_refuses_a_caller_without_credentials_before_judging_the_request(app) {
        // Every path parameter is `x` (not a number where an id is wanted, no such
        // application) and the body is broken JSON: a caller without credentials
        // learns nothing from which of them is wrong, only that it must authenticate.
        let mut problems: Vec<String> = Vec::new();
        let mut checked = 0;
        for row in MATRIX {
            if !matches!(row.access, Access::Users(_)) {
                continue;
            }
            let uri = with_poisoned_segment(row.path, "");
            let headers = [("content-type", "application/json")];
            let response = app.send(row.method.clone(), &uri, &headers, Body::from("{\"unterminated")).await;
            let envelope = serde_json::from_slice::<Value>(&response.body)
                .ok()
                .is_some_and(|value| value["code"] == "unauthorized");
            if response.status != StatusCode::UNAUTHORIZED || !envelope || response.header("www-authenticate").is_none() {
                problems.push(format!("{} {uri}: expected 401 with a challenge, got {}: {}", row.method, response.status, excerpt(&response)));
            }
            checked += 1;
        }
        assert!(checked >= 30, "only {checked} routes were checked");
        assert!(problems.is_empty(), "{} of {checked} routes judged the request before the caller:\n{}", problems.len(), problems.join("\n"));
    }

    async fn every_registry_path_segment_and_query_parameter_refuses_control_characters(app) {
        let world = World::set_up(&app).await;
        let catalog_before = get_json(&world, "/v2/_catalog").await;
        let mut problems: Vec<String> = Vec::new();
        let mut checked = 0;
        for kind in registry::Endpoint::KINDS {
            let row = REGISTRY_MATRIX.iter().find(|row| row.kind == kind).expect("every kind has a row");
            let prepared = world.prepare_registry(row.call).await;
            let (path, query) = prepared.uri.split_once('?').unwrap_or((prepared.uri.as_str(), ""));
            // Each path segment after /v2/ in turn.
            let segments: Vec<&str> = path.split('/').collect();
            for i in 2..segments.len() {
                if segments[i].is_empty() {
                    continue;
                }
                let mut poisoned_segments = segments.clone();
                let poisoned_segment = format!("{}%00", segments[i]);
                poisoned_segments[i] = &poisoned_segment;
                let uri = poisoned_segments.join("/");
                let before = audit_length(&app).await;
                let response = world.send(Who::Admin, row.method.clone(), &uri, Payload::Empty).await;
                if !response.status.is_client_error() || audit_length(&app).await != before {
                    problems.push(format!("{kind} {} {uri}: got {}: {}", row.method, response.status, excerpt(&response)));
                }
                checked += 1;
            }
            // Each query parameter the endpoint reads.
            let parameters = REGISTRY_QUERY.iter().find(|(k, _)| *k == kind).map_or(&[][..], |(_, p)| *p);
            for name in parameters {
                let prepared = world.prepare_registry(row.call).await;
                let (path, _) = prepared.uri.split_once('?').unwrap_or((prepared.uri.as_str(), ""));
                let kept: Vec<&str> = query.split('&').filter(|p| !p.is_empty() && !p.starts_with(&format!("{name}="))).collect();
                let mut pairs = kept.join("&");
                if !pairs.is_empty() {
                    pairs.push('&');
                }
                let uri = format!("{path}?{pairs}{name}=a%00b");
                let before = audit_length(&app).await;
                let response = world.send(Who::Admin, row.method.clone(), &uri, prepared.payload).await;
                let message = response.json()["errors"][0]["message"].as_str().unwrap_or_default().to_owned();
                if response.status != StatusCode::BAD_REQUEST || !message.contains(name) || audit_length(&app).await != before {
                    problems.push(format!("{kind} {} {uri}: expected 400 naming `{name}`, got {}: {}", row.method, response.status, excerpt(&response)));
                }
                checked += 1;
            }
        }
        assert_eq!(get_json(&world, "/v2/_catalog").await, catalog_before, "no repository was created");
        assert!(checked > 40, "only {checked} segments and parameters were checked");
        assert!(problems.is_empty(), "{} of {checked} poisoned requests were not refused cleanly:\n{}", problems.len(), problems.join("\n"));
    }
}

/// The number of entries in the audit log: every change appends one, so a request that
/// leaves it alone changed nothing.
async fn audit_length(app: &TestApp) -> usize {
    app.store
        .audit()
        .entries(0, i64::MAX)
        .await
        .expect("the audit log")
        .len()
}

/// `template` with every `{param}` set to `x`, except `poisoned`, set to `a%00b`.
fn with_poisoned_segment(template: &str, poisoned: &str) -> String {
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) if name == poisoned => "a%00b",
                Some(_) => "x",
                None => segment,
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The `in: query` parameters of an operation of the OpenAPI document.
fn query_parameters(operation: &Value) -> Vec<String> {
    operation["parameters"]
        .as_array()
        .map(|parameters| {
            parameters
                .iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The string properties of an operation's JSON request body, by the OpenAPI document.
fn body_string_properties(document: &Value, operation: &Value) -> Vec<String> {
    let Some(reference) = operation
        .pointer("/requestBody/content/application~1json/schema/$ref")
        .and_then(Value::as_str)
    else {
        return Vec::new();
    };
    let name = reference.rsplit('/').next().unwrap_or_default();
    let is_string = |schema: &Value| match &schema["type"] {
        Value::String(kind) => kind == "string",
        Value::Array(kinds) => kinds.iter().any(|k| k == "string"),
        _ => false,
    };
    document["components"]["schemas"][name]["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .filter(|(_, schema)| is_string(schema))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The path (`a.b[2]`) of every string in `value`.
fn string_paths(value: &Value, path: String, found: &mut Vec<String>) {
    match value {
        Value::String(_) => found.push(path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                string_paths(item, format!("{path}[{i}]"), found);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let field = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                string_paths(item, field, found);
            }
        }
        _ => {}
    }
}

/// `value` with the string at `path` (or a new field of that top-level name) set to
/// text holding NUL.
fn poisoned(value: &Value, path: &str) -> Value {
    let mut value = value.clone();
    let pointer = format!("/{}", path.replace(['.', '['], "/").replace(']', ""));
    match value.pointer_mut(&pointer) {
        Some(slot) => *slot = json!("a\u{0}b"),
        None => value[path] = json!("a\u{0}b"),
    }
    value
}

/// Says how a refused request's answer falls short: a 400 naming `field`, the audit
/// log unchanged.
fn refusal_problem(response: &TestResponse, field: &str, changed: bool) -> Option<String> {
    let body = response.json();
    let named = body["detail"]["field"]
        .as_str()
        .is_some_and(|f| f.contains(field))
        || body["message"].as_str().is_some_and(|m| m.contains(field));
    if response.status != StatusCode::BAD_REQUEST || !named {
        Some(format!(
            "expected 400 naming `{field}`, got {}: {}",
            response.status,
            excerpt(response)
        ))
    } else if changed {
        Some("refused, yet the audit log grew".to_owned())
    } else {
        None
    }
}

/// The query parameters each registry endpoint reads.
const REGISTRY_QUERY: &[(&str, &[&str])] = &[
    ("Catalog", &["n", "last"]),
    ("ListTags", &["n", "last"]),
    ("Referrers", &["artifactType"]),
    ("StartUpload", &["digest", "mount", "from"]),
    ("FinishUpload", &["digest"]),
];

async fn get_json(world: &World<'_>, uri: &str) -> Value {
    let response = world
        .send(Who::Admin, Method::GET, uri, Payload::Empty)
        .await;
    assert_status(&response, StatusCode::OK);
    response.json()
}

/// A string no other call of this process returns.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string()
}
