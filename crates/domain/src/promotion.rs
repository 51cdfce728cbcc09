//! The states a promotion and a deployment move through, and the names they are
//! stored and shown under.

use std::fmt;

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
