//! End-to-end tests: the real `gantry` binary on 127.0.0.1:0, driven by real clients
//! (skopeo, oras, the reference registry, plain TCP, and the `gantry` command line
//! itself). These need the peers that `.ci/run` installs; a missing peer fails the
//! test, it never skips it.

mod access;
mod browser;
mod cli;
mod connections;
mod crash;
mod deploy;
mod gc;
mod oras;
mod promotion;
mod replicas;
mod serve;
mod skopeo;
mod support;
mod web_sessions;
mod webhook_drift;
