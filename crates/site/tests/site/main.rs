//! The site crate's behaviour, end to end: hostile archives, pack and unpack, syncing
//! to a directory and to S3 (a real SeaweedFS), invalidation hooks, and the
//! `static-site` deployer reading artifacts from a real store.

mod deployer;
mod directory_sync;
mod hostile;
mod invalidation;
mod raw_zip;
mod roundtrip;
mod s3_sync;
mod support;
