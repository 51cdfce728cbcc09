//! Who is calling, and may they? Credentials are parsed from the `Authorization`
//! header, resolved to a [`Principal`] through the store, and every handler asks the
//! one [`authorize`] function before it acts. A refusal always names the permission
//! that was missing. People also sign in to the web UI with a password or a token
//! ([`sessions`], [`passwords`]).

mod credentials;
pub mod failures;
pub mod invitations;
pub mod oidc;
pub mod passwords;
pub mod registry_token;
pub mod sessions;
mod tokens;

pub use credentials::Credentials;
pub use failures::{FailureLimiter, FailureLimits, TooManyFailures};
pub use tokens::{
    FreshToken, IssueError, IssuedToken, generate_token, hash_token, issue_token, token_id,
};

use domain::pipeline::{GrantScope, Role, roles_granted};
use domain::{Action, Principal, RepoName, RoleGrant};
use store::{Store, TokenOwner};

/// Settings of the access model that come from configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    /// Whether pulls need no credentials.
    pub anonymous_pull: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No (valid) credentials; the client should authenticate and retry.
    #[error("authentication required: {permission} needs a valid token")]
    Unauthenticated { permission: String },
    /// Valid credentials that lack the permission.
    #[error("{principal} lacks the permission {permission}")]
    Forbidden {
        principal: String,
        permission: String,
    },
    /// Nobody has the permission: release tier repositories are written by
    /// promotions only.
    #[error(
        "{permission} is not granted to anyone: release tier repositories are written by promotions only"
    )]
    Reserved { permission: String },
}

/// Why credentials could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Malformed, unknown, expired or revoked credentials.
    #[error("invalid credentials: {0}")]
    InvalidCredentials(&'static str),
    /// Too many failed checks from this address or for this account: refused without
    /// looking at the credentials.
    #[error("{0}")]
    TooManyFailures(TooManyFailures),
    /// The store failed; try again.
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// Who is presenting credentials, for the limits on failed checks: the client's
/// address and the replica's [`FailureLimiter`].
#[derive(Clone, Copy)]
pub struct Attempt<'a> {
    pub limiter: &'a FailureLimiter,
    pub address: Option<std::net::IpAddr>,
}

impl Attempt<'_> {
    /// Runs the credential check `check` of `authorization` (naming the account
    /// `account` gives, if it does; asked only when a failure is in play) within the
    /// failure limits: refused unchecked while they are spent, and a failure (an `Err`
    /// for which `is_failure` holds) is recorded.
    pub async fn limit<T, E>(
        &self,
        authorization: &str,
        account: impl Fn() -> Option<String>,
        check: impl std::future::Future<Output = Result<T, E>>,
        is_failure: impl Fn(&E) -> bool,
    ) -> Result<Result<T, E>, TooManyFailures> {
        let now = std::time::Instant::now();
        if !self.limiter.quiet() {
            self.limiter
                .admit(self.address, account().as_deref(), now)?;
        }
        let result = check.await;
        if let Err(error) = &result
            && is_failure(error)
        {
            self.limiter
                .failed(self.address, account().as_deref(), authorization, now);
        }
        Ok(result)
    }
}

/// The account `authorization` names: the user of Basic credentials.
pub fn account_of(authorization: &str) -> Option<String> {
    Credentials::parse(authorization).and_then(|c| c.user().map(str::to_owned))
}

/// [`authenticate_token`] within the failure limits of `attempt`: an `Authorization`
/// header is checked only while its address and account have failures to spare, and
/// a failed check spends one. No header (anonymous) is no check at all.
pub async fn authenticate_limited(
    store: &Store,
    attempt: Attempt<'_>,
    authorization: Option<&str>,
    now_millis: i64,
) -> Result<(Principal, Option<String>), AuthError> {
    let Some(header) = authorization else {
        return Ok((Principal::Anonymous, None));
    };
    attempt
        .limit(
            header,
            || account_of(header),
            authenticate_token(store, Some(header), now_millis),
            |error| matches!(error, AuthError::InvalidCredentials(_)),
        )
        .await
        .map_err(AuthError::TooManyFailures)?
}

/// How stale a token's recorded last use may get before a request updates it.
const LAST_USED_RESOLUTION_MILLIS: i64 = 60_000;

/// Resolves the `Authorization` header (if any) to a principal.
pub async fn authenticate(
    store: &Store,
    authorization: Option<&str>,
    now_millis: i64,
) -> Result<Principal, AuthError> {
    Ok(authenticate_token(store, authorization, now_millis)
        .await?
        .0)
}

/// [`authenticate`], with the id of the token presented (`None` for anonymous).
pub async fn authenticate_token(
    store: &Store,
    authorization: Option<&str>,
    now_millis: i64,
) -> Result<(Principal, Option<String>), AuthError> {
    let Some(header) = authorization else {
        return Ok((Principal::Anonymous, None));
    };
    let credentials = Credentials::parse(header).ok_or(AuthError::InvalidCredentials(
        "malformed Authorization header",
    ))?;
    let owner = store
        .users()
        .token_owner(&hash_token(credentials.secret()))
        .await?
        .ok_or(AuthError::InvalidCredentials("unknown token"))?;
    if let Some(user) = credentials.user()
        && user != owner.user_name
    {
        return Err(AuthError::InvalidCredentials(
            "the token belongs to another user",
        ));
    }
    let id = owner.token_id.clone();
    Ok((principal_of(store, owner, now_millis).await?, Some(id)))
}

/// The principal a stored token stands for, by the token's id: how a registry bearer
/// token (which names the token it was issued against) is resolved, so revoking the
/// token ends its registry tokens too.
pub async fn authenticate_token_id(
    store: &Store,
    token_id: &str,
    now_millis: i64,
) -> Result<Principal, AuthError> {
    let owner = store
        .users()
        .token_owner_by_id(token_id)
        .await?
        .ok_or(AuthError::InvalidCredentials("unknown token"))?;
    principal_of(store, owner, now_millis).await
}

/// Why a stored token is no longer valid at `now_millis`, if it is not: the one rule
/// for API requests, registry tokens and web sign-ins.
pub(crate) fn token_refusal(
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    now_millis: i64,
) -> Option<&'static str> {
    if revoked_at.is_some() {
        Some("the token was revoked")
    } else if expires_at.is_some_and(|expiry| expiry <= now_millis) {
        Some("the token has expired")
    } else {
        None
    }
}

async fn principal_of(
    store: &Store,
    owner: TokenOwner,
    now_millis: i64,
) -> Result<Principal, AuthError> {
    if let Some(refusal) = token_refusal(owner.revoked_at, owner.expires_at, now_millis) {
        return Err(AuthError::InvalidCredentials(refusal));
    }
    // Last use is kept to the minute: one write a minute per busy token.
    if owner
        .last_used_at
        .is_none_or(|at| now_millis - at >= LAST_USED_RESOLUTION_MILLIS)
        && let Err(error) = store.users().touch_token(&owner.token_id, now_millis).await
    {
        tracing::warn!(%error, token = owner.token_id, "recording a token's last use failed");
    }
    // A CI identity's own (static) token is limited to the identity's grants, as an
    // exchanged job token is to its policy's: it reads and pulls only what its
    // applications own, never everything a person's token reads.
    let scope = match owner.scope {
        Some(scope) => Some(scope),
        None if owner.ci && !owner.admin => Some(
            store
                .users()
                .get(&owner.user_name)
                .await?
                .map(|user| user.roles)
                .unwrap_or_default(),
        ),
        None => None,
    };
    Ok(Principal::User {
        name: owner.user_name,
        // A scoped token is never an administrator's, whoever it was issued to.
        admin: owner.admin && scope.is_none(),
        scope,
    })
}

/// The roles `user` (or, for a scoped token, the token) holds in `grant_scope` for the
/// application that declares `repository`; empty when no application declares it.
async fn roles_for_repository(
    store: &Store,
    user: &str,
    token_scope: Option<&[RoleGrant]>,
    repository: &RepoName,
    grant_scope: GrantScope<'_>,
) -> Result<std::collections::BTreeSet<Role>, store::StoreError> {
    let Some(application) = store.resources().application_of(repository).await? else {
        return Ok(Default::default());
    };
    if let Some(grants) = token_scope {
        return Ok(roles_granted(grants, false, &application, grant_scope));
    }
    let Some(record) = store.users().get(user).await? else {
        return Ok(Default::default());
    };
    Ok(record.roles_for(&application, grant_scope))
}

/// [`authorize`] for a repository, completed by roles: a push the bootstrap model
/// refuses is allowed when an application declares the repository and the caller holds
/// `developer` or `platform` for it (or globally) — how CI identities and developers
/// push without being admins — and a scoped token (an OIDC exchange) reaches only the
/// repositories of the applications it names. Deleting stays with admins.
pub async fn authorize_repository(
    store: &Store,
    principal: &Principal,
    action: Action,
    repository: Option<&RepoName>,
    policy: &AccessPolicy,
) -> Result<Result<(), Denied>, store::StoreError> {
    let verdict = authorize(principal, action, repository, policy);
    let (
        Err(denied @ Denied::Forbidden { .. }),
        Principal::User { name, scope, .. },
        Some(repository),
    ) = (&verdict, principal, repository)
    else {
        return Ok(verdict);
    };
    let (wanted, grant_scope): (&[Role], _) = match action {
        // Pushing is building, for the whole application.
        Action::Push => (&Role::DEPLOYING, GrantScope::WholeApplication),
        // Only scoped tokens are refused a pull by the bootstrap model.
        Action::Pull => (&Role::ALL, GrantScope::AnyEnvironment),
        _ => return Ok(verdict),
    };
    let roles =
        roles_for_repository(store, name, scope.as_deref(), repository, grant_scope).await?;
    if roles.iter().any(|role| wanted.contains(role)) {
        Ok(Ok(()))
    } else {
        Ok(Err(denied.clone()))
    }
}

/// What to tell a caller refused a push to `repository` who may push somewhere (holds
/// `developer` or `platform` for a whole application, or globally): how repositories
/// are made, instead of only the permission it lacks. `None` for anyone else, and for
/// a repository that exists (then the missing permission is the whole truth).
///
/// A scoped token (a CI job's) may not see other applications' repositories, so it is
/// told the same whether `repository` exists or not: which repositories it pushes to,
/// and how a new application's repository is declared.
pub async fn push_refusal_hint(
    store: &Store,
    principal: &Principal,
    repository: &RepoName,
) -> Result<Option<String>, store::StoreError> {
    let Principal::User { name, scope, .. } = principal else {
        return Ok(None);
    };
    let builds = |grants: &[RoleGrant]| {
        grants
            .iter()
            .any(|g| Role::DEPLOYING.contains(&g.role) && g.environment.is_none())
    };
    let declare = format!(
        "a repository comes from declaring an Application with `repository: {repository}` \
         and running `gantry apply`"
    );
    match scope {
        Some(grants) => {
            if !builds(grants) {
                return Ok(None);
            }
            let mut own = Vec::new();
            for grant in grants.iter().filter(|g| g.environment.is_none()) {
                if let Some(application) = &grant.application
                    && let Some(repository) = store.resources().repository_of(application).await?
                    && !own.contains(&repository)
                {
                    own.push(repository);
                }
            }
            let pushes_to = if own.is_empty() {
                "no repository".to_owned()
            } else {
                own.join(", ")
            };
            Ok(Some(format!(
                "this token pushes only to the repositories of its applications ({pushes_to}), and \
                 {repository} is not one of them; {declare}, and a trust policy naming the \
                 application lets its CI push"
            )))
        }
        None => {
            let Some(record) = store.users().get(name).await? else {
                return Ok(None);
            };
            if !builds(&record.roles) || store.repositories().get(repository).await?.is_some() {
                return Ok(None);
            }
            Ok(Some(format!(
                "repository {repository} does not exist, and pushing does not create it: \
                 {declare} (an admin can), then push again"
            )))
        }
    }
}

/// The permission check every handler uses: may `principal` do `action` on
/// `repository` (`None` for registry-wide actions such as the catalog, and for the
/// declared resources, whose permissions are `resources:read` and `resources:apply`)?
pub fn authorize(
    principal: &Principal,
    action: Action,
    repository: Option<&RepoName>,
    policy: &AccessPolicy,
) -> Result<(), Denied> {
    let resources = matches!(action, Action::ReadResources | Action::ApplyResources);
    let permission = match repository {
        _ if action == Action::ReadAudit => "audit:read".to_owned(),
        _ if action == Action::ManageUsers => "users:manage".to_owned(),
        _ if action == Action::CollectGarbage => "registry:gc".to_owned(),
        _ if action == Action::ManageKeys => "keys:manage".to_owned(),
        _ if resources => format!("resources:{}", action.as_str()),
        Some(name) => format!("repository:{name}:{}", action.as_str()),
        None => format!("registry:{}", action.as_str()),
    };
    // Listing the catalog reads no more than pulling does, so it is allowed to the same
    // callers. Anonymous pulls open the registry only: declared resources always need
    // a user, and changing them needs an admin.
    let writes = matches!(action, Action::Push | Action::Delete);
    if writes
        && repository.is_some_and(|name| {
            name.as_str()
                .strip_prefix(domain::RELEASE_NAMESPACE)
                .is_some_and(|rest| rest.starts_with('/'))
        })
    {
        return Err(Denied::Reserved { permission });
    }
    let anonymous_read = matches!(action, Action::Pull | Action::Catalog);
    let user_read = anonymous_read || action == Action::ReadResources;
    match principal {
        Principal::User { admin: true, .. } => Ok(()),
        _ if anonymous_read && policy.anonymous_pull => Ok(()),
        Principal::Anonymous => Err(Denied::Unauthenticated { permission }),
        // The registry's base endpoint (`/v2/`, a pull of no repository) only asks
        // whether the credentials are valid.
        Principal::User { .. } if action == Action::Pull && repository.is_none() => Ok(()),
        // A scoped token reads nothing else by default: its repositories are allowed by
        // `authorize_repository`, its application actions by the engine.
        Principal::User { scope: None, .. } if user_read => Ok(()),
        Principal::User { name, .. } => Err(Denied::Forbidden {
            principal: name.clone(),
            permission,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        principal: &Principal,
        action: Action,
        anonymous_pull: bool,
        expected: Result<(), &str>,
    ) {
        let repo = RepoName::parse("acme/app").expect("valid name");
        let got = authorize(
            principal,
            action,
            Some(&repo),
            &AccessPolicy { anonymous_pull },
        );
        let got = got.map_err(|denied| match denied {
            Denied::Unauthenticated { .. } => "unauthenticated",
            Denied::Forbidden { .. } | Denied::Reserved { .. } => "forbidden",
        });
        assert_eq!(
            got, expected,
            "{principal:?} {action:?} anonymous_pull={anonymous_pull}"
        );
    }

    #[test]
    fn permissions_follow_the_bootstrap_access_model() {
        let admin = Principal::user("admin", true);
        let user = Principal::user("dev", false);
        let anonymous = Principal::Anonymous;
        for action in [Action::Pull, Action::Push, Action::Delete] {
            check(&admin, action, false, Ok(()));
        }
        check(&user, Action::Pull, false, Ok(()));
        check(&user, Action::Push, false, Err("forbidden"));
        check(&user, Action::Delete, true, Err("forbidden"));
        check(&anonymous, Action::Pull, false, Err("unauthenticated"));
        check(&anonymous, Action::Pull, true, Ok(()));
        check(&anonymous, Action::Push, true, Err("unauthenticated"));
        check(&anonymous, Action::Delete, true, Err("unauthenticated"));
        check(&anonymous, Action::Catalog, false, Err("unauthenticated"));
        check(&anonymous, Action::Catalog, true, Ok(()));
        check(&user, Action::Catalog, false, Ok(()));
        check(&admin, Action::ApplyResources, false, Ok(()));
        check(&user, Action::ApplyResources, false, Err("forbidden"));
        check(
            &anonymous,
            Action::ApplyResources,
            true,
            Err("unauthenticated"),
        );
        check(&user, Action::ReadResources, false, Ok(()));
        check(&user, Action::ReadAudit, false, Err("forbidden"));
        check(&admin, Action::ReadAudit, false, Ok(()));
        let tier = RepoName::parse("release/acme/app").expect("valid name");
        for action in [Action::Push, Action::Delete] {
            let denied = authorize(&admin, action, Some(&tier), &AccessPolicy::default());
            assert!(matches!(denied, Err(Denied::Reserved { .. })), "{action:?}");
        }
        assert_eq!(
            authorize(&user, Action::Pull, Some(&tier), &AccessPolicy::default()),
            Ok(())
        );
        check(&anonymous, Action::ReadAudit, true, Err("unauthenticated"));
        check(&user, Action::ManageUsers, false, Err("forbidden"));
        check(&admin, Action::ManageUsers, false, Ok(()));
        check(
            &anonymous,
            Action::ManageUsers,
            true,
            Err("unauthenticated"),
        );
        check(
            &anonymous,
            Action::ReadResources,
            true,
            Err("unauthenticated"),
        );
    }

    #[test]
    fn a_refusal_names_the_missing_permission() {
        let repo = RepoName::parse("acme/app").expect("valid name");
        let denied = authorize(
            &Principal::Anonymous,
            Action::Push,
            Some(&repo),
            &AccessPolicy::default(),
        )
        .expect_err("anonymous push is refused");
        assert!(
            denied.to_string().contains("repository:acme/app:push"),
            "{denied}"
        );
        let user = Principal::user("dev", false);
        let denied = authorize(
            &user,
            Action::ApplyResources,
            None,
            &AccessPolicy::default(),
        )
        .expect_err("a user may not apply resources");
        assert!(denied.to_string().contains("resources:apply"), "{denied}");
    }
}
