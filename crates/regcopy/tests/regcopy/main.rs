//! Copying between real registries (`docker-registry` processes on loopback ports),
//! checked with skopeo; tampering and credential handling through in-test proxies.

mod auth;
mod copying;
mod deploying;
mod support;
mod tampering;
