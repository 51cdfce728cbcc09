//! The states a promotion and a deployment move through, the names they are stored
//! and shown under, and who may decide on a promotion ([`decision_refusal`]).

use std::collections::BTreeSet;
use std::fmt;

use crate::pipeline::{Gate, Role};

/// Where a promotion stands. `requested` lasts only inside the transaction that
/// creates it; `waiting` holds until its gate opens; the last five are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PromotionState {
    Requested,
    /// The gate is not open yet: see the promotion's conditions.
    Waiting,
    /// The gate opened while another deployment to the environment was in flight; it
    /// deploys when that one finishes.
    Approved,
    Deploying,
    Deployed,
    Failed,
    Rejected,
    Cancelled,
    Superseded,
}

impl PromotionState {
    pub const ALL: [PromotionState; 9] = [
        PromotionState::Requested,
        PromotionState::Waiting,
        PromotionState::Approved,
        PromotionState::Deploying,
        PromotionState::Deployed,
        PromotionState::Failed,
        PromotionState::Rejected,
        PromotionState::Cancelled,
        PromotionState::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PromotionState::Requested => "requested",
            PromotionState::Waiting => "waiting",
            PromotionState::Approved => "approved",
            PromotionState::Deploying => "deploying",
            PromotionState::Deployed => "deployed",
            PromotionState::Failed => "failed",
            PromotionState::Rejected => "rejected",
            PromotionState::Cancelled => "cancelled",
            PromotionState::Superseded => "superseded",
        }
    }

    pub fn parse(text: &str) -> Option<PromotionState> {
        PromotionState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether nothing more can happen to the promotion.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PromotionState::Deployed
                | PromotionState::Failed
                | PromotionState::Rejected
                | PromotionState::Cancelled
                | PromotionState::Superseded
        )
    }

    /// Whether the promotion still waits for a decision (approvals, a rejection).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            PromotionState::Requested | PromotionState::Waiting | PromotionState::Approved
        )
    }
}

impl fmt::Display for PromotionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a deployment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentState {
    Deploying,
    Deployed,
    Failed,
}

impl DeploymentState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Deploying => "deploying",
            DeploymentState::Deployed => "deployed",
            DeploymentState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<DeploymentState> {
        [
            DeploymentState::Deploying,
            DeploymentState::Deployed,
            DeploymentState::Failed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a deployment happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentReason {
    /// A promotion's gate opened.
    Promotion,
    /// Someone rolled the environment back to an earlier digest.
    Rollback,
}

impl DeploymentReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentReason::Promotion => "promotion",
            DeploymentReason::Rollback => "rollback",
        }
    }

    pub fn parse(text: &str) -> Option<DeploymentReason> {
        match text {
            "promotion" => Some(DeploymentReason::Promotion),
            "rollback" => Some(DeploymentReason::Rollback),
            _ => None,
        }
    }
}

/// A deployment the caller must now carry out through the environment's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentOrder {
    pub deployment_id: i64,
    pub application: String,
    pub environment: String,
    pub digest: String,
    pub config: Option<String>,
    pub target: String,
    pub reason: DeploymentReason,
    pub promotion_id: Option<i64>,
    pub requested_by: String,
    /// The tag the build was pushed under, when known (the deployment's record keeps it too).
    pub tag: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_from_their_names() {
        for state in PromotionState::ALL {
            assert_eq!(PromotionState::parse(state.as_str()), Some(state));
        }
        assert_eq!(PromotionState::parse("done"), None);
        assert!(PromotionState::Superseded.is_final());
        assert!(!PromotionState::Deploying.is_final());
        assert!(!PromotionState::Deploying.is_pending());
        assert!(PromotionState::Approved.is_pending());
        for state in ["deploying", "deployed", "failed"] {
            assert_eq!(
                DeploymentState::parse(state).map(|s| s.as_str()),
                Some(state)
            );
        }
        assert_eq!(
            DeploymentReason::parse("rollback"),
            Some(DeploymentReason::Rollback)
        );
        assert_eq!(DeploymentReason::parse("hotfix"), None);
    }
}

/// A person deciding on a promotion, with what judging them needs.
#[derive(Debug, Clone)]
pub struct Decider<'a> {
    pub name: &'a str,
    /// The roles they hold for the promotion's application and environment now.
    pub roles: &'a BTreeSet<Role>,
    pub ci: bool,
    pub admin: bool,
}

/// What a decision is about: the promotion and who made its build.
#[derive(Debug, Clone)]
pub struct DecidedOn<'a> {
    pub id: i64,
    pub application: &'a str,
    pub environment: &'a str,
    pub digest: &'a str,
    pub requested_by: &'a str,
    /// Who notified, triggered or committed the build.
    pub build_actors: &'a [String],
}

/// Why `decider` may not approve (`approving`) or reject the promotion under `gate`,
/// if they may not: CI identities never decide; nobody approves their own promotion
/// or build (identities compared without case); a gate without approval rules has
/// nothing to decide; a decider needs a role the gate asks for (admins excepted).
pub fn decision_refusal(
    decider: &Decider<'_>,
    promotion: &DecidedOn<'_>,
    gate: &Gate,
    approving: bool,
) -> Option<String> {
    if decider.ci {
        return Some(format!(
            "{} is a CI identity: CI identities never approve or reject promotions",
            decider.name
        ));
    }
    if approving && crate::same_identity(decider.name, promotion.requested_by) {
        return Some(format!(
            "{} requested promotion {}: nobody approves their own promotion",
            decider.name, promotion.id
        ));
    }
    if approving
        && promotion
            .build_actors
            .iter()
            .any(|actor| crate::same_identity(actor, decider.name))
    {
        return Some(format!(
            "{} triggered or committed the build of {}: nobody approves their own build",
            decider.name, promotion.digest
        ));
    }
    let wanted: BTreeSet<Role> = gate.approvals.iter().map(|rule| rule.role).collect();
    if wanted.is_empty() {
        return Some(format!(
            "the gate of {} needs no approvals; nothing to {}",
            promotion.environment,
            if approving { "approve" } else { "reject" }
        ));
    }
    if !decider.admin && wanted.is_disjoint(decider.roles) {
        let names: Vec<&str> = wanted.iter().map(|role| role.as_str()).collect();
        return Some(format!(
            "{} holds none of the roles that approve {} ({}) for {}",
            decider.name,
            promotion.environment,
            names.join(", "),
            promotion.application
        ));
    }
    None
}

#[cfg(test)]
mod decision_tests {
    use super::*;
    use crate::pipeline::ApprovalRule;

    #[test]
    fn who_may_decide_on_a_promotion() {
        let staff_gate = Gate {
            approvals: vec![ApprovalRule {
                role: Role::Staff,
                count: 1,
            }],
            ..Gate::default()
        };
        let staff: BTreeSet<Role> = [Role::Staff].into();
        let developer: BTreeSet<Role> = [Role::Developer].into();
        let none = BTreeSet::new();
        let actors = ["dana".to_owned(), "Carl".to_owned()];
        let on = DecidedOn {
            id: 7,
            application: "web",
            environment: "prod",
            digest: "sha256:aa",
            requested_by: "Rita",
            build_actors: &actors,
        };
        // (name, roles, ci, admin, gate has rules, approving) → refused because of …
        type Case<'a> = (
            &'a str,
            &'a BTreeSet<Role>,
            bool,
            bool,
            bool,
            bool,
            Option<&'a str>,
        );
        let cases: [Case<'_>; 10] = [
            ("sam", &staff, false, false, true, true, None),
            ("sam", &staff, false, false, true, false, None),
            ("bot", &staff, true, false, true, true, Some("CI identity")),
            ("bot", &staff, true, false, true, false, Some("CI identity")),
            (
                "rita",
                &staff,
                false,
                false,
                true,
                true,
                Some("their own promotion"),
            ),
            ("rita", &staff, false, false, true, false, None),
            (
                "carl",
                &staff,
                false,
                false,
                true,
                true,
                Some("their own build"),
            ),
            (
                "dev",
                &developer,
                false,
                false,
                true,
                true,
                Some("holds none of the roles"),
            ),
            ("root", &none, false, true, true, true, None),
            (
                "sam",
                &staff,
                false,
                false,
                false,
                true,
                Some("needs no approvals"),
            ),
        ];
        for (name, roles, ci, admin, rules, approving, expected) in cases {
            let decider = Decider {
                name,
                roles,
                ci,
                admin,
            };
            let gate = if rules {
                staff_gate.clone()
            } else {
                Gate::default()
            };
            let refusal = decision_refusal(&decider, &on, &gate, approving);
            match expected {
                None => assert_eq!(refusal, None, "{name} approving={approving}"),
                Some(reason) => assert!(
                    refusal.as_deref().is_some_and(|text| text.contains(reason)),
                    "{name} approving={approving}: {refusal:?}"
                ),
            }
        }
    }
}
