//! Copying artifacts between OCI registries.
