//! All of Gantry's SQL. The [`Store`] facade hides which database is behind it:
//! SQLite (the embedded default: one writer connection and a pool of readers, WAL mode)
//! or PostgreSQL (`postgres://…`) for several replicas.
//!
//! Every query is written once in the SQL both databases understand (numbered `$N`
//! parameters, `ON CONFLICT`, `RETURNING`) and compiled twice by [`with_pool!`], so the
//! two backends cannot drift apart; only the migrations are per backend.
//!
//! The API is split by aggregate: the registry's [`Store::repositories`],
//! [`Store::blobs`], [`Store::manifests`] and [`Store::uploads`]; [`Store::resources`]
//! (declared pipelines, applications and trust policies); [`Store::evidence`] (builds
//! and check reports); [`Store::promotions`] (promotions, approvals, deployments and
//! environments); [`Store::jobs`] (durable deploy jobs, their logs and webhook
//! reports); [`Store::users`] and [`Store::access`] (people, CI identities, tokens,
//! OIDC exchanges, server secrets); [`Store::sessions`] (web UI passwords and
//! sessions); [`Store::collection`] (garbage collection's marks, condemned blobs and
//! passes); [`Store::retention`] (what retention policies read, and their expiries);
//! [`Store::signing_keys`] (the public keys Gantry signs with, current and retired); [`Store::attestations`] (deployments' signed attestations, the audit log's signed checkpoints); and [`Store::audit`], the hash-chained log every
//! change appends to in its own transaction. The backend enum is private to this
//! crate.

mod access;
mod attestations;
mod audit;
mod backend;
mod blobs;
mod collection;
mod deployments;
mod environments;
mod error;
mod evidence;
mod jobs;
mod manifests;
mod promotions;
mod quarantines;
mod repositories;
mod resources;
mod retention;
mod sessions;
mod signing_keys;
mod uploads;
mod users;

pub use access::{Access, ExchangeOutcome, OidcExchange};
pub use attestations::{AttestationRecord, Attestations, Checkpoint, NewAttestation};
pub use audit::{Audit, AuditEntry, AuditFilter, ChainVerdict, NewAuditEntry, canonical_json};
pub(crate) use backend::Backend;
pub use backend::StoreOptions;
pub use blobs::{Blobs, LinkedBlob, Reservation, UnlinkOutcome};
pub use collection::{Collection, CondemnedBlob, DeletableBlob, GcPass, GcTotals, OrphanReferrer};
pub use deployments::{
    Deployment, DeploymentOrder, Deployments, Finished, RollbackRequest, RollbackStarted,
};
pub use domain::RoleGrant;
pub use environments::{EnvironmentState, Environments, Hold, Observation, Observed};
pub use error::StoreError;
pub use evidence::{Build, CheckReport, Evidence, EvidenceOutcome, NewCheck, Provenance};
pub use jobs::{
    ClaimedFollowUp, ClaimedJob, FOLLOW_UP_GRACE_MILLIS, JobCounts, JobState, Jobs, LogLine,
    MAX_LOG_LINE_BYTES, MAX_LOG_LINES,
};
pub use manifests::{
    DeleteManifestOutcome, DeleteTagOutcome, ManifestChild, ManifestRecord, Manifests, NewManifest,
    PutManifestOutcome, Referrer, TagPolicy,
};
pub use promotions::{
    ConfigRevision, Decided, Decider, Decision, DeploymentCount, FlakyPolicy, Promotion,
    PromotionRequest, Promotions, RecordCounts, StagePlan, StoreOutcome, StoredCondition,
};
pub use quarantines::{Quarantine, QuarantineOutcome, QuarantinedRun, Quarantines};
pub use repositories::{InRepository, Repositories, Repository};
pub use resources::{
    ApplicationColumns, ApplicationFilter, AppliedChanges, AppliedResource, ApplyConflict,
    ApplyOutcome, EnvironmentCondition, ResourceChange, ResourceColumns, Resources, StoredResource,
};
pub use retention::{DeployedDigest, Expiry, ExpiryOutcome, PinScope, RetainedManifest, Retention};
pub use sessions::{
    InvitationRecord, NewInvitation, NewSession, PasswordRecord, SessionRecord, Sessions,
};
pub use signing_keys::{SigningKeyRecord, SigningKeys};
pub use uploads::{Append, FinishOutcome, Upload, UploadPart, Uploads};
pub use users::{NewToken, NewUser, TokenOwner, TokenRecord, UserRecord, Users};

/// The metadata store. Cheap to clone; all clones share the connection pools.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

impl Store {
    /// Connects to `database_url` (`sqlite://PATH`, `sqlite::memory:`, or
    /// `postgres://…`) and brings its schema up to date.
    pub async fn open(database_url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        let backend = Backend::connect(database_url, &options).await?;
        backend.migrate().await?;
        Ok(Store { backend })
    }

    /// Which kind of database this is, for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// Round-trips a trivial query; used by readiness checks.
    pub async fn ping(&self) -> Result<(), StoreError> {
        with_pool!(&self.backend, read, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        })
    }

    pub fn audit(&self) -> Audit<'_> {
        Audit {
            backend: &self.backend,
        }
    }

    pub fn repositories(&self) -> Repositories<'_> {
        Repositories {
            backend: &self.backend,
        }
    }

    pub fn resources(&self) -> Resources<'_> {
        Resources {
            backend: &self.backend,
        }
    }

    pub fn blobs(&self) -> Blobs<'_> {
        Blobs {
            backend: &self.backend,
        }
    }

    /// Garbage collection's state: deletable and condemned blobs, passes.
    pub fn collection(&self) -> Collection<'_> {
        Collection {
            backend: &self.backend,
        }
    }

    pub fn manifests(&self) -> Manifests<'_> {
        Manifests {
            backend: &self.backend,
        }
    }

    pub fn uploads(&self) -> Uploads<'_> {
        Uploads {
            backend: &self.backend,
        }
    }

    pub fn evidence(&self) -> Evidence<'_> {
        Evidence {
            backend: &self.backend,
        }
    }

    pub fn promotions(&self) -> Promotions<'_> {
        Promotions {
            backend: &self.backend,
        }
    }

    /// What retention reads (manifests, pins, deployments) and its expiries.
    pub fn retention(&self) -> Retention<'_> {
        Retention {
            backend: &self.backend,
        }
    }

    /// Deployments' signed attestations, and the audit log's signed checkpoints.
    pub fn attestations(&self) -> Attestations<'_> {
        Attestations {
            backend: &self.backend,
        }
    }

    /// The public halves of the keys Gantry signs with.
    pub fn signing_keys(&self) -> SigningKeys<'_> {
        SigningKeys {
            backend: &self.backend,
        }
    }

    /// Quarantined digests.
    pub fn quarantines(&self) -> Quarantines<'_> {
        Quarantines {
            backend: &self.backend,
        }
    }

    /// Deployments: finishing one, rolling back, and reading them back.
    pub fn deployments(&self) -> Deployments<'_> {
        Deployments {
            backend: &self.backend,
        }
    }

    /// Environments: what each runs and should run, holds, drift.
    pub fn environments(&self) -> Environments<'_> {
        Environments {
            backend: &self.backend,
        }
    }

    pub fn jobs(&self) -> Jobs<'_> {
        Jobs {
            backend: &self.backend,
        }
    }

    pub fn access(&self) -> Access<'_> {
        Access {
            backend: &self.backend,
        }
    }

    pub fn users(&self) -> Users<'_> {
        Users {
            backend: &self.backend,
        }
    }

    /// People's web UI passwords and sessions.
    pub fn sessions(&self) -> Sessions<'_> {
        Sessions {
            backend: &self.backend,
        }
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.backend.close().await;
    }
}

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
