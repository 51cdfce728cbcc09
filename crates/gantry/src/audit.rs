//! `gantry audit verify` and `gantry audit export`: what an auditor runs against a
//! server. Verify exits 5 when the chain is broken, naming the first bad entry.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::remote::RemoteArgs;

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
    Verify {
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
        AuditCommand::Verify { remote } => {
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
