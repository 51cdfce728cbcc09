//! The release board: a page of applications, each with where every environment of
//! its pipeline stands, and which pending promotions the person looking may decide
//! on. Read in a fixed number of queries per page whatever its size (applications,
//! their pipelines, environments, deployments, pending promotions with their
//! decisions, builds), never one per application or per cell.

use std::collections::{BTreeMap, BTreeSet};

use domain::ResourceKind;
use domain::pipeline::{Gate, GrantScope};
use domain::promotion::{DecidedOn, Decider, PromotionState, decision_refusal};
use resources::DeclaredPipeline;
use store::{Build, Deployment, Promotion};

use crate::queries::{ApplicationStatus, EnvironmentStatus, Page, summary_of};
use crate::{Actor, Engine, EngineError};

/// Which applications a board page shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BoardQuery {
    /// Which applications: by name, namespace and the state of an environment.
    pub filter: store::ApplicationFilter,
    /// The page begins after this application name.
    pub after: Option<String>,
    pub limit: i64,
}

/// One application on the board.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardRow {
    pub status: ApplicationStatus,
    /// The pending promotions (by id) the person looking may approve now.
    pub awaiting_viewer: BTreeSet<i64>,
}

impl Engine {
    /// A page of the board as `viewer` sees it.
    pub async fn board(
        &self,
        viewer: &Actor,
        query: &BoardQuery,
    ) -> Result<Page<BoardRow, String>, EngineError> {
        let stored = self
            .store
            .resources()
            .applications_matching(query.after.as_deref(), query.limit + 1, &query.filter)
            .await?;
        let page = Page::from_one_more(stored, query.limit, |resource| resource.name.clone());
        let mut applications = Vec::with_capacity(page.items.len());
        let mut pipelines: BTreeMap<String, Option<DeclaredPipeline>> = BTreeMap::new();
        for resource in &page.items {
            let application = resources::application_from_canonical(&resource.canonical)
                .map_err(|errors| EngineError::Corrupt(errors.to_string()))?;
            pipelines.insert(application.pipeline.to_string(), None);
            applications.push(application);
        }
        for (name, declared) in &mut pipelines {
            if let Some(stored) = self
                .store
                .resources()
                .get(ResourceKind::Pipeline, name)
                .await?
            {
                *declared = Some(
                    DeclaredPipeline::from_canonical(&stored.canonical)
                        .map_err(|errors| EngineError::Corrupt(errors.to_string()))?,
                );
            }
        }
        let names: Vec<String> = applications.iter().map(|a| a.name.to_string()).collect();
        let mut states: BTreeMap<(String, String), store::EnvironmentState> = self
            .store
            .environments()
            .of_many(&names)
            .await?
            .into_iter()
            .map(|state| {
                (
                    (state.application.clone(), state.environment.clone()),
                    state,
                )
            })
            .collect();
        let pending = self.store.promotions().pending_of_many(&names).await?;
        let mut artifacts: BTreeSet<(String, String)> = BTreeSet::new();
        for state in states.values() {
            for deployment in [
                &state.current,
                &state.deploying,
                &state.previous,
                &state.failed,
            ]
            .into_iter()
            .flatten()
            {
                artifacts.insert((deployment.application.clone(), deployment.digest.clone()));
            }
        }
        for promotion in &pending {
            artifacts.insert((promotion.application.clone(), promotion.digest.clone()));
        }
        let builds: BTreeMap<(String, String), Build> = self
            .store
            .evidence()
            .builds_of(&artifacts.into_iter().collect::<Vec<_>>())
            .await?
            .into_iter()
            .map(|build| ((build.application.clone(), build.digest.clone()), build))
            .collect();
        let summary = |deployment: Option<Deployment>| {
            deployment.map(|deployment| summary_of(deployment, &builds))
        };
        let mut quarantined = self.quarantined_runs().await?;
        let mut rows = Vec::with_capacity(applications.len());
        for application in applications {
            let name = application.name.to_string();
            let Some(Some(pipeline)) = pipelines.get(application.pipeline.as_str()) else {
                return Err(EngineError::Corrupt(format!(
                    "application {name} names pipeline {} which is not applied",
                    application.pipeline
                )));
            };
            let mut environments = Vec::new();
            let mut awaiting_viewer = BTreeSet::new();
            for stage in pipeline.pipeline().stages() {
                let environment = stage.environment.to_string();
                let state = states.remove(&(name.clone(), environment.clone()));
                let state =
                    state.unwrap_or_else(|| store::EnvironmentState::empty(&name, &environment));
                let waiting: Vec<Promotion> = pending
                    .iter()
                    .filter(|p| p.application == name && p.environment == environment)
                    .cloned()
                    .collect();
                for promotion in &waiting {
                    let build = builds.get(&(name.clone(), promotion.digest.clone()));
                    if self
                        .approval_refusal(viewer, promotion, &stage.gate, build)
                        .is_none()
                    {
                        awaiting_viewer.insert(promotion.id);
                    }
                }
                let quarantine = quarantined.remove(&(name.clone(), environment.clone()));
                environments.push(EnvironmentStatus {
                    name: environment,
                    auto: stage.auto,
                    target: application
                        .environments
                        .get(&stage.environment)
                        .map_or("record", |spec| spec.target.kind_name())
                        .to_owned(),
                    current: summary(state.current),
                    deploying: summary(state.deploying),
                    previous: summary(state.previous),
                    failed: summary(state.failed),
                    hold: state.hold,
                    observed: state.observed,
                    drift_since: state.drift_since,
                    pending: waiting,
                    quarantined: quarantine,
                });
            }
            rows.push(BoardRow {
                status: ApplicationStatus {
                    name,
                    app_type: application.app_type.as_str().to_owned(),
                    repository: application.repository.to_string(),
                    pipeline: application.pipeline.to_string(),
                    environments,
                },
                awaiting_viewer,
            });
        }
        Ok(Page {
            items: rows,
            next: page.next,
        })
    }

    /// Every waiting promotion `actor` may approve now, newest first, at most `limit`
    /// (the waiting promotions are read a hundred at a time, their gates once per
    /// environment and their builds once per batch).
    pub async fn awaiting_approval(
        &self,
        actor: &Actor,
        limit: usize,
    ) -> Result<Vec<Promotion>, EngineError> {
        const BATCH: i64 = 100;
        let mut found = Vec::new();
        let mut gates: BTreeMap<(String, String), Option<Gate>> = BTreeMap::new();
        let mut before = None;
        loop {
            let batch = self
                .store
                .promotions()
                .list(None, None, Some(PromotionState::Waiting), before, BATCH)
                .await?;
            let Some(last) = batch.last() else { break };
            before = Some(last.id);
            let artifacts: Vec<(String, String)> = batch
                .iter()
                .map(|p| (p.application.clone(), p.digest.clone()))
                .collect();
            let builds: BTreeMap<(String, String), Build> = self
                .store
                .evidence()
                .builds_of(&artifacts)
                .await?
                .into_iter()
                .map(|build| ((build.application.clone(), build.digest.clone()), build))
                .collect();
            for promotion in &batch {
                let key = (promotion.application.clone(), promotion.environment.clone());
                if !gates.contains_key(&key) {
                    // An application or stage removed since stays out of the list.
                    let gate = self.gate_of(&key.0, &key.1).await.ok();
                    gates.insert(key.clone(), gate);
                }
                let Some(Some(gate)) = gates.get(&key) else {
                    continue;
                };
                let build = builds.get(&(promotion.application.clone(), promotion.digest.clone()));
                if self
                    .approval_refusal(actor, promotion, gate, build)
                    .is_none()
                {
                    found.push(promotion.clone());
                }
            }
            if i64::try_from(batch.len()).unwrap_or(0) < BATCH || found.len() >= limit {
                break;
            }
        }
        found.truncate(limit);
        Ok(found)
    }

    /// Why `actor` may not approve `promotion` now (under the stage's `gate`, whose
    /// artifact `build` made), or `None` if they may: it must wait on approvals, they
    /// must not have decided on it already, and the engine's rule of who decides must
    /// let them ([`decision_refusal`]). What the board's "waiting on you" and the
    /// pages' approve buttons show; the engine judges again when they press it.
    pub fn approval_refusal(
        &self,
        actor: &Actor,
        promotion: &Promotion,
        gate: &Gate,
        build: Option<&Build>,
    ) -> Option<String> {
        if promotion.state != PromotionState::Waiting {
            return Some(format!(
                "promotion {} is {}, not waiting",
                promotion.id,
                promotion.state.as_str()
            ));
        }
        if promotion
            .decisions
            .iter()
            .any(|decision| domain::same_identity(&decision.approver, &actor.name))
        {
            return Some(format!(
                "{} has decided on promotion {} already",
                actor.name, promotion.id
            ));
        }
        let roles = actor.roles_for(
            &promotion.application,
            GrantScope::Environment(&promotion.environment),
        );
        let build_actors: Vec<String> = build.map(Build::actors).unwrap_or_default();
        decision_refusal(
            &Decider {
                name: &actor.name,
                roles: &roles,
                ci: actor.ci,
                admin: actor.admin,
            },
            &DecidedOn {
                id: promotion.id,
                application: &promotion.application,
                environment: &promotion.environment,
                digest: &promotion.digest,
                requested_by: &promotion.requested_by,
                build_actors: &build_actors,
            },
            gate,
            true,
        )
    }

    /// The gate of `environment` in `application`'s pipeline as declared now.
    async fn gate_of(&self, application: &str, environment: &str) -> Result<Gate, EngineError> {
        let loaded = self.load(application).await?;
        Ok(self.plan(&loaded, environment)?.gate)
    }

    /// [`Engine::approval_refusal`] for each of `promotions` of `application`, in their
    /// order: the declaration read once, the builds in one query.
    pub async fn approval_refusals(
        &self,
        actor: &Actor,
        application: &str,
        promotions: &[Promotion],
    ) -> Result<Vec<Option<String>>, EngineError> {
        let loaded = self.load(application).await?;
        let artifacts: Vec<(String, String)> = promotions
            .iter()
            .map(|p| (p.application.clone(), p.digest.clone()))
            .collect();
        let builds: BTreeMap<String, Build> = self
            .store
            .evidence()
            .builds_of(&artifacts)
            .await?
            .into_iter()
            .map(|build| (build.digest.clone(), build))
            .collect();
        promotions
            .iter()
            .map(|promotion| {
                let gate = self.plan(&loaded, &promotion.environment)?.gate;
                Ok(self.approval_refusal(actor, promotion, &gate, builds.get(&promotion.digest)))
            })
            .collect()
    }
}
