//! Who is acting, as every handler sees it. The full access model (roles per
//! application, CI identities) grows from here; what the registry needs today is
//! whether a caller is anonymous or an authenticated user with admin rights.

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials were presented.
    Anonymous,
    /// A user identified by a valid token.
    User { name: String, admin: bool },
}

impl Principal {
    /// The name used in logs and records.
    pub fn display_name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { name, .. } => name,
        }
    }
}

/// What a caller wants to do: to a repository, or to the declared resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// List all repositories.
    Catalog,
    /// Read declared pipelines and applications.
    ReadResources,
    /// Create or change declared pipelines and applications (`gantry apply`).
    ApplyResources,
    /// Read, verify and export the audit log.
    ReadAudit,
    /// Create users and issue tokens for them.
    ManageUsers,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "catalog",
            Action::ReadResources => "read",
            Action::ApplyResources => "apply",
            Action::ReadAudit => "read",
            Action::ManageUsers => "manage",
        }
    }
}
