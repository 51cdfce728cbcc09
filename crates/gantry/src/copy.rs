//! `gantry copy SRC DST`: copies an image or index (with all its children) and its
//! blobs from one OCI registry to another, as the `registry-copy` target does: blobs
//! the destination has are skipped, blobs within one registry are mounted, bytes are
//! streamed and hashed on the way, and the copy succeeds only when the destination
//! serves the source's digest.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use regcopy::{CopyError, CopyOptions, Credentials, Progress, ProgressEvent};

use crate::remote::OutputFormat;

#[derive(Args)]
pub(crate) struct CopyArgs {
    /// What to copy: `HOST[:PORT]/REPOSITORY:TAG` or `…@sha256:…`
    source: String,
    /// Where to: `HOST[:PORT]/REPOSITORY[:TAG]` (the source's tag when none is given)
    destination: String,
    /// Credentials for the source registry, `USER:PASSWORD`
    #[arg(long = "src-creds", env = "GANTRY_SRC_CREDS", hide_env_values = true)]
    source_credentials: Option<String>,
    /// Credentials for the destination registry, `USER:PASSWORD`
    #[arg(long = "dest-creds", env = "GANTRY_DEST_CREDS", hide_env_values = true)]
    destination_credentials: Option<String>,
    /// Reach the source over plain HTTP (a registry on a trusted network only)
    #[arg(long = "src-plain-http")]
    source_plain_http: bool,
    /// Reach the destination over plain HTTP (a registry on a trusted network only)
    #[arg(long = "dest-plain-http")]
    destination_plain_http: bool,
    /// Blobs moved at the same time
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// `table` (text for people) or `json`, as every other command takes it
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    /// The same as `-o json` (kept for scripts written before `-o`)
    #[arg(long, hide = true)]
    json: bool,
}

impl CopyArgs {
    fn json(&self) -> bool {
        self.json || self.output == OutputFormat::Json
    }
}

/// Exit codes: 0 copied and verified, 2 invalid input, 4 refused credentials,
/// 5 the bytes or the destination's digest did not match (nothing was tagged),
/// 1 anything else (unreachable registries, a missing source).
pub(crate) fn run(args: CopyArgs) -> anyhow::Result<ExitCode> {
    if args.parallel == 0 {
        eprintln!("gantry: --parallel must be at least 1");
        return Ok(ExitCode::from(2));
    }
    // The person running the CLI names both registries: no address is off limits.
    let policy = outbound::Policy::unrestricted();
    let mut options = CopyOptions::new(Arc::new(policy));
    options.source.credentials = credentials(args.source_credentials.as_deref(), "--src-creds")?;
    options.source.plain_http = args.source_plain_http;
    options.destination.credentials =
        credentials(args.destination_credentials.as_deref(), "--dest-creds")?;
    options.destination.plain_http = args.destination_plain_http;
    options.copy.parallel_blobs = args.parallel;
    let bar = Bar::new(std::io::stderr().is_terminal() && !args.json());
    let started = Instant::now();
    let outcome = regcopy::copy_between(&args.source, &args.destination, &options, &|progress| {
        bar.show(progress)
    });
    bar.finish();
    match outcome {
        Ok(report) => {
            let seconds = started.elapsed().as_secs_f64();
            if args.json() {
                let value = serde_json::json!({
                    "digest": report.digest.to_string(),
                    "media_type": report.media_type,
                    "destination": report.destination,
                    "tag": report.tags.first().map(|tag| tag.as_str().to_owned()),
                    "manifests": report.manifests,
                    "blobs": {
                        "total": report.blobs_total,
                        "copied": report.blobs_copied,
                        "mounted": report.blobs_mounted,
                        "present": report.blobs_present,
                    },
                    "bytes_copied": report.bytes_copied,
                    "bytes_total": report.bytes_total,
                    "seconds": seconds,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!(
                    "copied {} to {}{}",
                    report.digest,
                    report.destination,
                    report
                        .tags
                        .first()
                        .map(|tag| format!(" (tag {})", tag.as_str()))
                        .unwrap_or_default()
                );
                println!(
                    "{} manifest(s); blobs: {} copied, {} mounted, {} already there; {} in {:.1} s; digest verified at the destination",
                    report.manifests,
                    report.blobs_copied,
                    report.blobs_mounted,
                    report.blobs_present,
                    crate::progress::human_bytes(report.bytes_copied),
                    seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("gantry: copy failed: {error}");
            Ok(ExitCode::from(match error {
                CopyError::Invalid(_) | CopyError::InvalidManifest(_) => 2,
                CopyError::Unauthorized { .. } => 4,
                CopyError::DigestMismatch { .. }
                | CopyError::SizeMismatch { .. }
                | CopyError::VerificationFailed { .. } => 5,
                _ => 1,
            }))
        }
    }
}

/// `USER:PASSWORD`, split at the first colon.
fn credentials(text: Option<&str>, flag: &str) -> anyhow::Result<Option<Credentials>> {
    text.map(|text| {
        let (user, password) = text
            .split_once(':')
            .with_context(|| format!("{flag} takes USER:PASSWORD"))?;
        Ok(Credentials::new(user, password))
    })
    .transpose()
}

/// A one-line progress bar on a terminal's stderr; silent elsewhere.
struct Bar {
    enabled: bool,
    last: Mutex<Option<Instant>>,
}

impl Bar {
    fn new(enabled: bool) -> Bar {
        Bar {
            enabled,
            last: Mutex::new(None),
        }
    }

    fn show(&self, progress: &Progress) {
        if !self.enabled {
            return;
        }
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let now = Instant::now();
        let due = last.is_none_or(|at| now.duration_since(at).as_millis() >= 100)
            || !matches!(progress.event, ProgressEvent::Bytes);
        if !due {
            return;
        }
        *last = Some(now);
        crate::progress::draw(
            "copying",
            progress.bytes_done,
            progress.bytes_total,
            &format!("blobs {}/{}", progress.blobs_done, progress.blobs_total),
        );
    }

    fn finish(&self) {
        if self.enabled {
            eprintln!();
        }
    }
}
