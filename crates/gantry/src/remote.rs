//! Where the client commands find the server and their token, and how a failed call
//! becomes an exit code and a message that says what to do.
//!
//! Exit codes scripts can rely on: 0 success, 2 invalid input (invalid resources, a
//! bad value, a digest not in the repository, a reused idempotency key), 3 conflict,
//! 4 unauthorized or forbidden, 5 a broken audit chain, 6 a promotion left waiting on
//! its gate, 7 a promotion or deployment that ended without deploying, 1 anything else
//! (usage errors included).

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

/// What scripts can rely on, in one place.
pub(crate) mod exit {
    /// The server refused the input as it stands, or a file given was not usable.
    pub(crate) const INVALID_INPUT: u8 = 2;
    /// Something changed meanwhile or is in the wrong state; nothing was changed.
    pub(crate) const CONFLICT: u8 = 3;
    /// No valid credentials, or they lack a permission.
    pub(crate) const NOT_ALLOWED: u8 = 4;
    /// The promotion is waiting: its gate is still shut.
    pub(crate) const WAITING: u8 = 6;
    /// The promotion or deployment ended without deploying (rejected, failed, …).
    pub(crate) const NOT_DEPLOYED: u8 = 7;
}

/// The flags every client command shares: the output format and the server.
#[derive(Args)]
pub(crate) struct ClientArgs {
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub(crate) output: OutputFormat,
    #[command(flatten)]
    pub(crate) remote: RemoteArgs,
}

impl ClientArgs {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        self.remote.client()
    }
}

/// Input the user gave that cannot be used (a config file that is not a JSON object,
/// a key given twice): exits [`exit::INVALID_INPUT`].
#[derive(Debug)]
pub(crate) struct InvalidInput(pub(crate) String);

impl std::fmt::Display for InvalidInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidInput {}

/// What the failed command was doing, which picks the advice after its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// `gantry apply`: conflicts and permissions have their own advice.
    Apply,
    /// Every other client command.
    Other,
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
    /// The server's URL as given.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The token these arguments name: `--token`/`GANTRY_TOKEN`, else the login file.
    pub(crate) fn token(&self) -> anyhow::Result<Option<String>> {
        match &self.token {
            Some(token) => Ok(Some(token.trim().to_owned())),
            None => read_login_file(),
        }
    }

    /// The client for these arguments.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.token()?)?)
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

/// The exit code of a failed call.
pub(crate) fn exit_code(error: &ClientError) -> u8 {
    match error {
        ClientError::InvalidResources { .. } | ClientError::InvalidRequest { .. } => {
            exit::INVALID_INPUT
        }
        ClientError::Conflict(_) => exit::CONFLICT,
        ClientError::Unauthorized(_) | ClientError::Forbidden(_) => exit::NOT_ALLOWED,
        ClientError::InvalidUrl { .. }
        | ClientError::Unreachable { .. }
        | ClientError::Api { .. }
        | ClientError::InvalidResponse { .. } => 1,
    }
}

/// What to do next after a failed call, when there is more to say than the message.
fn advice(error: &ClientError, task: Task) -> Option<&'static str> {
    match (error, task) {
        (ClientError::InvalidResources { .. }, _) => None,
        (ClientError::InvalidRequest { body, .. }, _) => match body.code.as_str() {
            "not_an_artifact" => Some(
                "push the artifact to the application's repository first \
                 (e.g. skopeo copy … docker://HOST/REPOSITORY:TAG), then use the digest it printed",
            ),
            "idempotency_key_reused" => Some(
                "that idempotency key was used for a different request; use a new key for this one",
            ),
            _ => None,
        },
        (ClientError::Conflict(_), Task::Apply) => {
            Some("nothing was applied; run the same apply again to see the new diff")
        }
        (ClientError::Conflict(_), Task::Other) => Some(
            "nothing was changed; `gantry promotion ID` or `gantry status APP` shows where things stand",
        ),
        (ClientError::Unauthorized(_), _) => {
            Some("set GANTRY_TOKEN or pass --token (or put the token in ~/.config/gantry/token)")
        }
        (ClientError::Forbidden(_), Task::Apply) => {
            Some("use the token of a user who has that permission (an admin's, to apply)")
        }
        (ClientError::Forbidden(_), Task::Other) => {
            Some("the message says who may do this; use the token of someone who may")
        }
        (ClientError::Unreachable { .. }, _) => {
            Some("is `gantry serve` running there? set GANTRY_URL or pass --url")
        }
        (ClientError::InvalidUrl { .. }, _) => {
            Some("set GANTRY_URL or pass --url, e.g. http://127.0.0.1:5000")
        }
        (ClientError::Api { status: 404, .. }, Task::Other) => {
            Some("check the name or id: `gantry apps` and `gantry promotions` list what there is")
        }
        (ClientError::Api { .. } | ClientError::InvalidResponse { .. }, _) => None,
    }
}

/// Prints a command's failure to stderr, with what to do next, and picks its exit code.
pub(crate) fn report(error: &anyhow::Error, task: Task) -> ExitCode {
    if let Some(invalid) = error.downcast_ref::<InvalidInput>() {
        eprintln!("gantry: error: {invalid}");
        return ExitCode::from(exit::INVALID_INPUT);
    }
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
        }
        _ => eprintln!("gantry: error: {error:#}"),
    }
    if let Some(advice) = advice(client_error, task) {
        eprintln!("gantry: {advice}");
    }
    ExitCode::from(exit_code(client_error))
}

#[cfg(test)]
mod tests {
    use client::ErrorBody;

    use super::*;

    fn envelope(code: &str) -> ErrorBody {
        ErrorBody {
            code: code.to_owned(),
            message: "m".to_owned(),
            detail: serde_json::Value::Null,
        }
    }

    fn check(error: ClientError, expected: u8) {
        assert_eq!(exit_code(&error), expected, "{error:?}");
    }

    #[test]
    fn each_refusal_exits_with_the_code_scripts_rely_on() {
        let invalid = |status, code| ClientError::InvalidRequest {
            status,
            body: envelope(code),
        };
        check(invalid(400, "bad_request"), 2);
        check(invalid(422, "not_an_artifact"), 2);
        check(invalid(422, "idempotency_key_reused"), 2);
        check(
            ClientError::InvalidResources {
                message: "m".to_owned(),
                problems: Vec::new(),
            },
            2,
        );
        check(ClientError::Conflict(envelope("conflict")), 3);
        check(ClientError::Unauthorized(envelope("unauthorized")), 4);
        check(ClientError::Forbidden(envelope("forbidden")), 4);
        let other = |status, code| ClientError::Api {
            status,
            body: envelope(code),
        };
        check(other(404, "not_found"), 1);
        check(other(500, "internal"), 1);
    }

    #[test]
    fn a_digest_missing_from_the_repository_says_to_push_it_first() {
        let error = ClientError::InvalidRequest {
            status: 422,
            body: envelope("not_an_artifact"),
        };
        let said = advice(&error, Task::Other).unwrap_or_default();
        assert!(said.contains("push the artifact"), "{said}");
    }

    #[test]
    fn a_conflict_advises_by_what_the_command_was_doing() {
        let error = ClientError::Conflict(envelope("conflict"));
        let applying = advice(&error, Task::Apply).unwrap_or_default();
        assert!(applying.contains("run the same apply again"), "{applying}");
        let promoting = advice(&error, Task::Other).unwrap_or_default();
        assert!(promoting.contains("gantry status APP"), "{promoting}");
    }
}
