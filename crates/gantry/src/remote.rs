//! Where the client commands (`apply`, `resources`) find the server and their token,
//! and how a failed call becomes an exit code and a message that says what to do.
//!
//! Exit codes scripts can rely on: 0 success, 2 invalid resources, 3 conflict,
//! 4 unauthorized or forbidden, 1 anything else (usage errors included).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use client::{Client, ClientError};

/// The server and credentials of a client command. Not `Debug`: it holds the token.
#[derive(Args)]
pub(crate) struct RemoteArgs {
    /// Gantry's URL
    #[arg(long, env = "GANTRY_URL", default_value = "http://127.0.0.1:5000")]
    url: String,
    /// API token (an admin's to apply) [default: the contents of ~/.config/gantry/token, if present]
    #[arg(long, env = "GANTRY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

/// `-o`: for people or for programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// Aligned text for people
    Table,
    /// The server's JSON, pretty-printed
    Json,
}

impl RemoteArgs {
    /// The client for these arguments: `--token`/`GANTRY_TOKEN`, else the login file.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let token = match &self.token {
            Some(token) => Some(token.trim().to_owned()),
            None => read_login_file()?,
        };
        Ok(Client::new(&self.url, token)?)
    }
}

/// `~/.config/gantry/token`, trimmed; `None` when there is no such file.
fn read_login_file() -> anyhow::Result<Option<String>> {
    let Some(home) = std::env::var_os("HOME") else {
        return Ok(None);
    };
    let path = PathBuf::from(home).join(".config/gantry/token");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => {
            Err(error).with_context(|| format!("reading the token in {}", path.display()))
        }
    }
}

/// Prints a command's failure to stderr, with what to do next, and picks its exit code.
pub(crate) fn report(error: &anyhow::Error) -> ExitCode {
    let Some(client_error) = error.downcast_ref::<ClientError>() else {
        eprintln!("gantry: error: {error:#}");
        return ExitCode::FAILURE;
    };
    match client_error {
        ClientError::InvalidResources { message, problems } => {
            eprintln!("gantry: error: {message}; nothing was applied:");
            for problem in problems {
                eprintln!("{problem}");
            }
            ExitCode::from(2)
        }
        ClientError::Conflict(_) => {
            eprintln!("gantry: error: {error:#}");
            eprintln!("gantry: nothing was applied; run the same apply again to see the new diff");
            ExitCode::from(3)
        }
        ClientError::Unauthorized(_) => {
            eprintln!("gantry: error: {error:#}");
            eprintln!(
                "gantry: set GANTRY_TOKEN or pass --token (or put the token in ~/.config/gantry/token)"
            );
            ExitCode::from(4)
        }
        ClientError::Forbidden(_) => {
            eprintln!("gantry: error: {error:#}");
            eprintln!(
                "gantry: use the token of a user who has that permission (an admin's, to apply)"
            );
            ExitCode::from(4)
        }
        ClientError::Unreachable { .. } => {
            eprintln!("gantry: error: {error:#}");
            eprintln!("gantry: is `gantry serve` running there? set GANTRY_URL or pass --url");
            ExitCode::FAILURE
        }
        ClientError::InvalidUrl { .. } => {
            eprintln!("gantry: error: {error:#}");
            eprintln!("gantry: set GANTRY_URL or pass --url, e.g. http://127.0.0.1:5000");
            ExitCode::FAILURE
        }
        ClientError::Api { .. } | ClientError::InvalidResponse { .. } => {
            eprintln!("gantry: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
