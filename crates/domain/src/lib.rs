//! Gantry's vocabulary: the names, digests and references every other crate speaks,
//! parsed once at the edge into types that cannot hold an invalid value.
//!
//! Nothing here does I/O. Hashing is pure computation, so the streaming
//! [`DigestHasher`] lives here too: the registry and the blob store must agree on it.

pub mod application;
pub mod audit;
mod digest;
pub mod dora;
pub mod findings;
pub mod gate;
mod glob;
mod names;
pub mod oci;
pub mod pipeline;
mod principal;
pub mod promotion;
mod resource;
pub mod retention;
pub mod text;
pub mod trust;

pub use digest::{Digest, DigestAlgorithm, DigestError, DigestHasher};
pub use glob::glob_matches;
pub use names::{NameError, Reference, RepoName, Tag};
pub use principal::{Action, Principal, RoleGrant, check_user_name, same_identity};
pub use resource::ResourceKind;

/// The namespace of release tier repositories (`release/acme/web`): the engine fills
/// them by linking promoted manifests, and nobody pushes to or deletes from them.
pub const RELEASE_NAMESPACE: &str = "release";
