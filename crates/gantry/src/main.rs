//! The `gantry` binary: parses the command line and configuration, wires the crates
//! together, and runs. No product logic lives here.

mod apply;
mod apps;
mod audit;
mod build;
mod check;
mod config;
mod copy;
mod deployments;
mod environments;
mod gc;
mod keys;
mod login;
mod metrics;
mod progress;
mod promotions;
mod push;
mod quarantine;
mod remote;
mod resources;
mod s3_keys;
mod serve;
mod table;
mod users;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;
use crate::remote::Task;

/// Build once, promote everywhere: an OCI registry and release pipeline in one binary.
#[derive(Parser)]
#[command(name = "gantry", version, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: registry and API on one port (default 127.0.0.1:5000, data in ./gantry-data).
    #[command(after_long_help = SETTINGS_HELP)]
    Serve(ServeArgs),
    /// Copy an image or index, with its blobs, from one OCI registry to another and
    /// verify the destination serves the same digest.
    ///
    /// Blobs the destination has are skipped; within one registry they are mounted.
    ///
    /// Exit codes: 0 copied and verified, 2 invalid input, 4 credentials refused,
    /// 5 bytes or the destination's digest did not match (nothing was tagged), 1
    /// anything else (an unreachable registry, a missing source).
    Copy(copy::CopyArgs),
    /// Push a build that is not a container image: `push site DIR --app A --commit SHA`.
    #[command(after_help = CLIENT_HELP)]
    Push(push::PushArgs),
    /// Save the token the other commands use: a CI job's OIDC token exchanged for a
    /// short-lived Gantry token (--oidc-token FILE|-, or --oidc in GitHub Actions), or an
    /// API token from stdin (--token-stdin).
    ///
    /// Exit codes: 0 logged in, 2 no token given or unreadable, 4 the token was
    /// refused (the message says why), 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Login(login::LoginArgs),
    /// Apply a resources file (Pipelines, Applications) to a server; --dry-run shows the diffs.
    ///
    /// Exit codes: 0 success, 2 invalid resources (each problem on its own line) or
    /// another invalid input, 3 conflict (a resource changed meanwhile; nothing
    /// applied), 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Apply(apply::ApplyArgs),
    /// List declared pipelines or applications, or print one's canonical text.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Resources(resources::ResourcesArgs),
    /// Verify or export the server's hash-chained audit log, or its signed checkpoints
    /// (admins); `audit verify --key` checks the chain here against the checkpoints.
    ///
    /// Exit codes: 0 success (verify: the chain is intact), 5 the chain is broken (the
    /// first bad entry is named), 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Audit(audit::AuditArgs),
    /// Tell Gantry about a build CI pushed (`build notify`); an `auto` first stage is promoted into.
    #[command(after_help = CLIENT_HELP)]
    Build(build::BuildArgs),
    /// Report a check on a digest, with a Trivy JSON or SARIF report (`check report`).
    #[command(after_help = CLIENT_HELP)]
    Check(check::CheckArgs),
    /// Request a promotion of a digest into an environment; prints every gate condition.
    ///
    /// The promotion is carried as far as it goes now: deployed when the gate is open,
    /// else waiting for what is missing (approvals, checks, soak, a freeze window).
    ///
    /// Exit codes: 0 deployed (or the gate is open and the deployment on its way),
    /// 6 waiting (its gate is still shut), 7 it ended without deploying (failed,
    /// rejected, cancelled or superseded), 2 invalid input (e.g. the digest is not in
    /// the repository, an idempotency key reused for another request, a bad
    /// --config-file), 3 conflict (e.g. the environment is held or busy), 4 unauthorized
    /// or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Promote(promotions::PromoteArgs),
    /// Approve a promotion; when that opens its gate it is deployed at once.
    ///
    /// Nobody approves their own promotion, nor a build they triggered or committed.
    ///
    /// Exit codes: 0 deployed (or on its way), 6 still waiting (other conditions are
    /// shut), 7 it ended without deploying (the deployment failed), 3 conflict (already
    /// decided, or not waiting), 4 unauthorized or forbidden (e.g. your own promotion,
    /// or a role the gate does not ask for), 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Approve(promotions::ApproveArgs),
    /// Reject a promotion, which ends it with the reason.
    ///
    /// Exit codes: 0 rejected, 3 conflict (already final), 4 unauthorized or forbidden,
    /// 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Reject(promotions::RejectArgs),
    /// Cancel a promotion that is not final yet.
    ///
    /// Exit codes: 0 cancelled, 3 conflict (already final), 4 unauthorized or
    /// forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Cancel(promotions::CancelArgs),
    /// Show one promotion: every gate condition, met or not and why, and every decision.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else (e.g. no
    /// such promotion).
    #[command(after_help = CLIENT_HELP)]
    Promotion(promotions::ShowArgs),
    /// List promotions, newest first, by application, environment or state.
    ///
    /// Exit codes: 0 success, 2 invalid input, 4 unauthorized or forbidden, 1 anything
    /// else.
    #[command(after_help = CLIENT_HELP)]
    Promotions(promotions::ListArgs),
    /// Redeploy the previous successful digest of an environment (or --to one), without new approvals.
    ///
    /// Exit codes: 0 rolled back, 7 the rollback's deployment failed, 2 invalid input
    /// (e.g. --to a digest not in the repository), 3 conflict (nothing earlier to roll
    /// back to, or the environment is busy), 4 unauthorized or forbidden, 1 anything
    /// else.
    #[command(after_help = CLIENT_HELP)]
    Rollback(environments::RollbackArgs),
    /// Hold an environment: auto-promotion stays out until `gantry unhold`.
    ///
    /// Exit codes: 0 held, 3 conflict, 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Hold(environments::HoldArgs),
    /// Release an environment's hold.
    ///
    /// Exit codes: 0 released, 3 conflict, 4 unauthorized or forbidden, 1 anything
    /// else.
    #[command(after_help = CLIENT_HELP)]
    Unhold(environments::UnholdArgs),
    /// List applications with what runs in each of their environments.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    Apps(apps::AppsArgs),
    /// Where an application stands: each environment in pipeline order (digest, commit, age, state, hold, pending).
    ///
    /// Without APP, the same as `gantry apps`.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else (e.g. no
    /// such application).
    #[command(after_help = CLIENT_HELP)]
    Status(apps::StatusArgs),
    /// An application's deployments, newest first.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    #[command(after_help = CLIENT_HELP)]
    History(apps::HistoryArgs),
    /// Everything known about one artifact: provenance, checks and deployments; with
    /// --custody, its chain of custody (`gantry artifact DIGEST --custody`): built,
    /// checked, approved, deployed, and each signed attestation verified now.
    ///
    /// Exit codes: 0 success, 2 invalid input, 4 unauthorized or forbidden, 1 anything else (e.g. not
    /// known).
    #[command(after_help = CLIENT_HELP)]
    Artifact(apps::ArtifactArgs),
    /// One deployment (`show ID`) or its log (`log ID [--follow]`).
    #[command(after_help = CLIENT_HELP)]
    Deployment(deployments::DeploymentArgs),
    /// DORA metrics: deployment frequency, lead time, change failure rate, time to restore.
    ///
    /// Exit codes: 0 success, 2 invalid input, 4 unauthorized or forbidden, 1 anything
    /// else.
    #[command(after_help = CLIENT_HELP)]
    Metrics(metrics::MetricsArgs),
    /// Quarantine a digest of an application, lift its quarantine, or list them.
    ///
    /// A quarantined digest cannot be promoted or rolled back onto (its open promotions
    /// are cancelled), admission denies it everywhere, and the registry refuses to
    /// serve it unless [registry] quarantine = "deny-deployments". Admins, or people
    /// with the platform role for the whole application; both are audited.
    ///
    /// Exit codes: 0 success, 2 invalid input, 4 unauthorized or forbidden, 1 anything
    /// else.
    #[command(after_help = CLIENT_HELP)]
    Quarantine(quarantine::QuarantineArgs),
    /// Run a garbage collection pass now, or a dry run, or show past passes (admins).
    ///
    /// Applies the retention policies (kind: RetentionPolicy, an application's
    /// retention block; a promotion pin overrides every rule), then deletes referrers
    /// whose subject is gone, blobs no manifest referenced for the grace window ([gc]
    /// grace_seconds), objects the database has no record of, and expired upload
    /// sessions, while the registry keeps serving. --dry-run shows what each policy
    /// would expire and why, and the pin that saved each digest.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 a step failed (the next
    /// pass retries it) or anything else.
    #[command(after_help = CLIENT_HELP)]
    Gc(gc::GcArgs),
    /// List or export the public keys the server signs with, or rotate the key (admins).
    ///
    /// The private key is a file outside the database ([signing] key_file); a
    /// rotation replaces it, and the old public key stays listed with the time range
    /// it signed.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    Keys(keys::KeysArgs),
    /// Check, against any registry holding the image and without asking Gantry, that a
    /// deployment of those bytes to an environment was attested with a trusted key.
    ///
    /// `gantry verify HOST/REPO@sha256:… --env prod --key gantry.pub` finds the image's
    /// signed attestations among its OCI referrers, checks each signature, subject and
    /// predicate, and prints the custody chain: built, checked, approved, deployed.
    ///
    /// Exit codes: 0 a valid attestation for the environment exists, 5 none does (the
    /// reasons are printed), 2 invalid input, 4 credentials refused, 1 anything else.
    Verify(verify::VerifyArgs),
    /// Create or list users and CI identities (admins).
    #[command(after_help = CLIENT_HELP)]
    User(users::UserArgs),
    /// Create API tokens (admins).
    #[command(after_help = CLIENT_HELP)]
    Token(users::TokenArgs),
}

/// How the client commands find the server and their token.
pub(crate) const CLIENT_HELP: &str = "\
The server is --url, else GANTRY_URL, else http://127.0.0.1:5000.
The token is --token, else GANTRY_TOKEN, else the contents of ~/.config/gantry/token
(a file holding only the token, e.g. the admin token `gantry serve` printed once).

Example: GANTRY_TOKEN=gnt_... gantry apply -f gantry.yaml --dry-run";

/// Every key of the configuration file, shown by `gantry serve --help` after the flags:
/// the same annotated file as the README's "Configure it" section (a test keeps them
/// one).
const SETTINGS_HELP: &str = concat!(
    "Every setting of the configuration file (gantry.toml, or --config / GANTRY_CONFIG), with its\n",
    "default or an example value; the flags above override the file's keys of the same name:\n\n",
    include_str!("settings.toml")
);

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
    /// The base URL clients reach Gantry at, named in registry token challenges, image
    /// references handed to deploy targets and webhook callbacks [default: each
    /// request's Host for challenges; the listening address for the others]
    #[arg(long, env = "GANTRY_EXTERNAL_URL")]
    external_url: Option<String>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors exit 1, not clap's 2: 2 means invalid input to scripts.
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let task = match cli.command {
        Command::Apply(_) => Task::Apply,
        _ => Task::Other,
    };
    let outcome = match cli.command {
        Command::Serve(args) => serve::run(args).map(|()| ExitCode::SUCCESS),
        Command::Apply(args) => apply::run(args).map(|()| ExitCode::SUCCESS),
        Command::Resources(args) => resources::run(args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit::run(args),
        Command::Build(args) => build::run(args),
        Command::Check(args) => check::run(args),
        Command::Promote(args) => promotions::promote(args),
        Command::Approve(args) => promotions::approve(args),
        Command::Reject(args) => promotions::reject(args),
        Command::Cancel(args) => promotions::cancel(args),
        Command::Promotion(args) => promotions::promotion(args),
        Command::Promotions(args) => promotions::promotions(args),
        Command::Rollback(args) => environments::rollback(args),
        Command::Hold(args) => environments::hold(args),
        Command::Unhold(args) => environments::unhold(args),
        Command::Apps(args) => apps::apps(args),
        Command::Status(args) => apps::status(args),
        Command::History(args) => apps::history(args),
        Command::Artifact(args) => apps::artifact(args),
        Command::Deployment(args) => deployments::run(args),
        Command::Metrics(args) => metrics::run(args),
        Command::Gc(args) => gc::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Quarantine(args) => quarantine::run(args),
        Command::User(args) => users::user(args),
        Command::Token(args) => users::token(args),
        Command::Login(args) => login::login(args),
        Command::Copy(args) => copy::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Push(args) => push::run(args),
    };
    outcome.unwrap_or_else(|error| remote::report(&error, task))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Clap checks a command line's definition only when it is parsed; this parses
    /// every subcommand's, so two flags with one name fail here, not in a user's hands.
    #[test]
    fn every_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
