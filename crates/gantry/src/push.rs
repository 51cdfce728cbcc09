//! `gantry push site DIR --app A --commit SHA`: packs a static-site build into a
//! checked, deterministic zip and pushes it to the application's repository as an OCI
//! artifact (`artifactType application/vnd.gantry.site.v1+zip`) tagged with the
//! commit, through Gantry's own registry API.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use domain::{Digest, RepoName, Tag};
use regcopy::{
    ClientOptions, Credentials, Manifest, ManifestReference, RegistryClient, RegistryEndpoint,
};

use crate::remote::{ClientArgs, OutputFormat, exit};

#[derive(Args)]
pub(crate) struct PushArgs {
    #[command(subcommand)]
    command: PushCommand,
}

#[derive(Subcommand)]
enum PushCommand {
    /// Zip a static-site build directory and push it, tagged with the commit.
    ///
    /// The archive is checked before it is pushed (no links, no `..`, no duplicate or
    /// case-colliding names, bounded size) and is byte-for-byte the same for the same
    /// files, so pushing a build twice gives the same digest.
    ///
    /// Exit codes: 0 pushed, 2 invalid input (the directory cannot be packed, the
    /// application is not a static site, a bad commit), 4 unauthorized or forbidden,
    /// 1 anything else.
    Site(SiteArgs),
}

#[derive(Args)]
struct SiteArgs {
    /// The build directory (e.g. `dist`)
    directory: PathBuf,
    /// The application it is a build of
    #[arg(long = "app")]
    application: String,
    /// The commit it was built from; the artifact's tag
    #[arg(long)]
    commit: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PushCommand::Site(args) => site(args),
    }
}

fn site(args: SiteArgs) -> anyhow::Result<ExitCode> {
    let Ok(tag) = Tag::parse(&args.commit) else {
        eprintln!(
            "gantry: --commit `{}` cannot be a tag: use the commit SHA (letters, digits, `.`, `_`, `-`, at most 128)",
            args.commit
        );
        return Ok(ExitCode::from(exit::INVALID_INPUT));
    };
    let client = args.client.client()?;
    let status = client.app_status(&args.application)?;
    if status.app_type != "static-site" {
        eprintln!(
            "gantry: {} is a `{}` application; `push site` is for `static-site` ones",
            args.application, status.app_type
        );
        return Ok(ExitCode::from(exit::INVALID_INPUT));
    }
    let repository = RepoName::parse(&status.repository)
        .map_err(|e| anyhow::anyhow!("the server named repository {}: {e}", status.repository))?;
    let show = std::io::stderr().is_terminal() && args.client.output == OutputFormat::Table;
    let started = Instant::now();
    let packed = match site::pack(&args.directory, &site::ArchiveLimits::default(), &mut |p| {
        if show {
            crate::progress::draw("packing", p.done, p.total, "");
        }
    }) {
        Ok(packed) => packed,
        Err(error) => {
            if show {
                eprintln!();
            }
            eprintln!("gantry: cannot pack {}: {error}", args.directory.display());
            return Ok(ExitCode::from(exit::INVALID_INPUT));
        }
    };
    if show {
        eprintln!();
    }
    let registry = registry_client(args.client.remote.url(), args.client.remote.token()?)?;
    let config_digest = Digest::parse(site::EMPTY_CONFIG_DIGEST)
        .map_err(|e| anyhow::anyhow!("the empty config's digest: {e}"))?;
    registry
        .push_blob(
            &repository,
            &config_digest,
            site::EMPTY_CONFIG.len() as u64,
            &mut &site::EMPTY_CONFIG[..],
        )
        .map_err(|e| anyhow::anyhow!("pushing the empty config: {e}"))?;
    let mut archive = Progressed {
        inner: std::fs::File::open(packed.path()).context("reopening the packed archive")?,
        done: 0,
        total: packed.size,
        show,
    };
    registry
        .push_blob(&repository, &packed.digest, packed.size, &mut archive)
        .map_err(|e| anyhow::anyhow!("pushing the archive: {e}"))?;
    if show {
        eprintln!();
    }
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.revision".to_owned(),
            args.commit.clone(),
        ),
        (
            "org.opencontainers.image.title".to_owned(),
            args.application.clone(),
        ),
    ]);
    let content = site::site_manifest(&packed.digest, packed.size, &annotations);
    let manifest = Manifest {
        digest: Digest::sha256_of(&content),
        media_type: site::OCI_IMAGE_MANIFEST.to_owned(),
        content,
    };
    registry
        .put_manifest(&repository, &ManifestReference::Tag(tag.clone()), &manifest)
        .map_err(|e| anyhow::anyhow!("pushing the manifest: {e}"))?;
    let files = packed.contents.files.len();
    match args.client.output {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "application": args.application,
                "repository": repository.as_str(),
                "tag": tag.as_str(),
                "digest": manifest.digest.to_string(),
                "archive_digest": packed.digest.to_string(),
                "archive_bytes": packed.size,
                "files": files,
            }))?
        ),
        OutputFormat::Table => {
            println!(
                "pushed {}:{} {}",
                repository.as_str(),
                tag.as_str(),
                manifest.digest
            );
            println!(
                "{files} files, {} bytes zipped, in {:.1} s; promote it with: gantry build notify --app {} --digest {}",
                packed.size,
                started.elapsed().as_secs_f64(),
                args.application,
                manifest.digest
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A registry client for the server at `url`, presenting the API token.
fn registry_client(url: &str, token: Option<String>) -> anyhow::Result<RegistryClient> {
    let parsed = url::Url::parse(url).with_context(|| format!("--url {url} is not a URL"))?;
    let host = parsed
        .host_str()
        .with_context(|| format!("--url {url} names no host"))?;
    let registry = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    // The user named this server: no address is off limits.
    let policy = outbound::Policy::unrestricted();
    RegistryClient::new(
        RegistryEndpoint {
            registry,
            plain_http: parsed.scheme() == "http",
            // Gantry takes a token as the password of any (here: no) user name.
            credentials: token.map(|token| Credentials::new("", token)),
        },
        &ClientOptions::new(Arc::new(policy)),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Reads a file, drawing the upload's progress.
struct Progressed {
    inner: std::fs::File,
    done: u64,
    total: u64,
    show: bool,
}

impl std::io::Read for Progressed {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.done += read as u64;
        if self.show {
            crate::progress::draw("pushing", self.done, self.total, "");
        }
        Ok(read)
    }
}
