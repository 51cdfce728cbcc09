//! `gantry audit verify` and `gantry audit export`: what an auditor runs against a
//! server. Verify exits 5 when the chain is broken, naming the first bad entry.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::remote::RemoteArgs;

mod keyed;

/// The exit code of a verification that found the log altered.
pub(crate) const BROKEN_CHAIN: u8 = 5;

#[derive(Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain on the server; exit 5 naming the first entry that does not verify.
    ///
    /// With --key, the chain is recomputed here from the export and checked against the
    /// signed checkpoints (the server's, or those kept elsewhere with --checkpoints):
    /// a rewrite that recomputed every later hash passes the plain check, but not this.
    Verify {
        /// The server's public key (PEM, `gantry keys list --pem`); repeat for keys
        /// rotated out
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// Checkpoints kept elsewhere (`gantry audit checkpoints -f FILE`) instead of
        /// the server's
        #[arg(long = "checkpoints", requires = "keys")]
        checkpoints: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write the audit log's signed checkpoints, oldest first, as JSON Lines, to keep
    /// them somewhere the database's writers cannot reach.
    Checkpoints {
        /// Write here instead of stdout
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        /// Sign a checkpoint of the head first (admins)
        #[arg(long)]
        now: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Write every entry, oldest first, as JSON Lines (to stdout, or to --file).
    Export {
        /// Write here instead of stdout
        #[arg(short = 'f', long = "file")]
        file: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
}

pub(crate) fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Verify {
            keys,
            checkpoints,
            remote,
        } if !keys.is_empty() => keyed::verify(&remote, &keys, checkpoints.as_deref()),
        AuditCommand::Verify { remote, .. } => {
            let verdict = remote.client()?.audit_verify()?;
            if verdict.intact {
                println!(
                    "audit log intact: {} entries, head {}",
                    verdict.entries,
                    verdict.head.as_deref().unwrap_or("(none)")
                );
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "audit log BROKEN at entry {}: {}",
                verdict
                    .broken_at
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                verdict.reason.as_deref().unwrap_or("no reason given")
            );
            println!("{} entries before it verify", verdict.entries);
            Ok(ExitCode::from(BROKEN_CHAIN))
        }
        AuditCommand::Checkpoints { file, now, remote } => {
            let client = remote.client()?;
            if now {
                client.audit_checkpoint()?;
            }
            let list = client.audit_checkpoints()?;
            let mut text = String::new();
            for checkpoint in &list.checkpoints {
                text.push_str(&serde_json::to_string(checkpoint)?);
                text.push('\n');
            }
            match file {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Export { file, remote } => {
            let client = remote.client()?;
            match file {
                Some(path) => {
                    let mut out = std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    client.audit_export(&mut out)?;
                    out.flush()
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    client.audit_export(&mut out)?;
                    out.flush().context("writing to stdout")?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
