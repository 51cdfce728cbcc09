//! The `gantry` binary: parses the command line and configuration, wires the crates
//! together, and runs. No product logic lives here.

mod apply;
mod audit;
mod config;
mod remote;
mod resources;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

/// Build once, promote everywhere: an OCI registry and release pipeline in one binary.
#[derive(Parser)]
#[command(name = "gantry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: registry and API on one port (default 127.0.0.1:5000, data in ./gantry-data).
    Serve(ServeArgs),
    /// Apply a resources file (Pipelines, Applications) to a server; --dry-run shows the diffs.
    ///
    /// Exit codes: 0 success, 2 invalid resources (each problem on its own line),
    /// 3 conflict (a resource changed meanwhile; nothing applied), 4 unauthorized or
    /// forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Apply(apply::ApplyArgs),
    /// List declared pipelines or applications, or print one's canonical text.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Resources(resources::ResourcesArgs),
    /// Verify or export the server's hash-chained audit log (admins).
    ///
    /// Exit codes: 0 success (verify: the chain is intact), 5 the chain is broken (the
    /// first bad entry is named), 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Audit(audit::AuditArgs),
}

/// How the client commands find the server and their token.
const CLIENT_HELP: &str = "\
The server is --url, else GANTRY_URL, else http://127.0.0.1:5000.
The token is --token, else GANTRY_TOKEN, else the contents of ~/.config/gantry/token
(a file holding only the token, e.g. the admin token `gantry serve` printed once).

Example: GANTRY_TOKEN=gnt_... gantry apply -f gantry.yaml --dry-run";

/// Flags override environment variables, which override `gantry.toml`, which
/// overrides the defaults.
#[derive(Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// Configuration file [default: ./gantry.toml if present]
    #[arg(long, env = "GANTRY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long, env = "GANTRY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded database and blobs [default: ./gantry-data]
    #[arg(long, env = "GANTRY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database: sqlite://PATH or postgres://USER@HOST/DB [default: SQLite in the data directory]
    #[arg(long, env = "GANTRY_DATABASE_URL")]
    database_url: Option<String>,
    /// Blob store: a directory, file:///PATH or memory:// [default: DATA_DIR/blobs]
    #[arg(long, env = "GANTRY_BLOB_STORE")]
    blob_store: Option<String>,
    /// Flush blobs and database commits to disk before acknowledging, to survive power loss [default: false]
    #[arg(long, env = "GANTRY_FSYNC")]
    fsync: Option<bool>,
    /// Log format [default: text]
    #[arg(long, env = "GANTRY_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Allow pulls without credentials [default: false]
    #[arg(long, env = "GANTRY_ANONYMOUS_PULL")]
    anonymous_pull: Option<bool>,
    /// Maximum database connections [default: 16]
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Largest manifest accepted, in bytes [default: 4194304]
    #[arg(long, env = "GANTRY_MAX_MANIFEST_BYTES")]
    max_manifest_bytes: Option<usize>,
    /// Largest blob accepted, in bytes [default: 1 TiB]
    #[arg(long, env = "GANTRY_MAX_BLOB_BYTES")]
    max_blob_bytes: Option<u64>,
    /// Seconds an untouched upload session lives [default: 86400]
    #[arg(long, env = "GANTRY_UPLOAD_TTL_SECONDS")]
    upload_ttl_seconds: Option<u64>,
    /// Seconds between purges of expired uploads [default: 600]
    #[arg(long, env = "GANTRY_MAINTENANCE_INTERVAL_SECONDS")]
    maintenance_interval_seconds: Option<u64>,
    /// Who may create a repository by pushing to a new name [default: admins]
    #[arg(long, env = "GANTRY_REPOSITORY_CREATION", value_enum)]
    repository_creation: Option<crate::config::RepositoryCreation>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors exit 1, not clap's 2: 2 means invalid resources to scripts.
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Apply(args) => apply::run(args),
        Command::Resources(args) => resources::run(args),
        Command::Audit(args) => {
            return audit::run(args).unwrap_or_else(|error| remote::report(&error));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => remote::report(&error),
    }
}
