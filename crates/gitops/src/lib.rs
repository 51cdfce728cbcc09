//! The `gitops` deploy target.
