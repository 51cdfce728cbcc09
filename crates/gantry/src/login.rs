//! `gantry login`: save the token the other client commands use
//! (`~/.config/gantry/token`, mode 0600). In CI, no secret is stored: the job's OIDC
//! token is exchanged for a short-lived Gantry token — read from a file or stdin
//! (`--oidc-token FILE|-`), or requested from GitHub Actions itself (`--oidc`). A
//! person pipes an API token in with `--token-stdin`, which is checked first.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use crate::remote::{ClientArgs, InvalidInput, OutputFormat};
use crate::table::json;

#[derive(Args)]
pub(crate) struct LoginArgs {
    /// Exchange this CI job OIDC token (a file, or `-` for stdin) for a Gantry token
    #[arg(long, value_name = "FILE|-", conflicts_with_all = ["oidc", "token_stdin"])]
    oidc_token: Option<String>,
    /// In GitHub Actions: request the job's OIDC token (the workflow needs `permissions:
    /// id-token: write`) and exchange it
    #[arg(long, conflicts_with = "token_stdin")]
    oidc: bool,
    /// The audience to request the job token for, with --oidc; a trust policy must name it
    #[arg(long, default_value = "gantry")]
    audience: String,
    /// Read an API token from stdin, check it with the server, and save it
    #[arg(long)]
    token_stdin: bool,
    /// Print nothing but the token on stdout (for `TOKEN=$(gantry login --oidc --print-token)`)
    #[arg(long)]
    print_token: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Where the other commands read the token from.
fn login_file() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set: cannot save the token")?;
    Ok(PathBuf::from(home).join(".config/gantry/token"))
}

/// Writes the token readable by its owner only: a new file (never following a link
/// someone left there) renamed over the old one.
fn save(token: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = login_file()?;
    let parent = path.parent().context("the login file has no directory")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let temporary = parent.join(format!(".token.{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)
        .with_context(|| format!("writing {}", temporary.display()))?;
    file.write_all(format!("{token}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn read_input(source: &str) -> anyhow::Result<String> {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        text
    } else {
        std::fs::read_to_string(source)
            .map_err(|e| InvalidInput(format!("cannot read {source}: {e}")))?
    };
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(InvalidInput(format!("{source} holds no token")).into());
    }
    Ok(text)
}

/// GitHub Actions' own endpoint for the job's OIDC token.
fn github_actions_token(audience: &str) -> anyhow::Result<String> {
    let (Ok(url), Ok(bearer)) = (
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_URL"),
        std::env::var("ACTIONS_ID_TOKEN_REQUEST_TOKEN"),
    ) else {
        bail!(InvalidInput(
            "--oidc works inside GitHub Actions with `permissions: id-token: write` \
             (ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set); \
             elsewhere pass the job token with --oidc-token FILE|-"
                .to_owned()
        ));
    };
    let mut request_url = url::Url::parse(&url).context("ACTIONS_ID_TOKEN_REQUEST_URL")?;
    request_url
        .query_pairs_mut()
        .append_pair("audience", audience);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(request_url.as_str())
        .header("Authorization", format!("bearer {bearer}"))
        .call()
        .context("requesting the job's OIDC token from GitHub Actions")?;
    if response.status() != 200 {
        bail!(
            "GitHub Actions refused the OIDC token request (HTTP {}); does the workflow grant `id-token: write`?",
            response.status()
        );
    }
    let body: serde_json::Value = response
        .body_mut()
        .read_json()
        .context("reading GitHub Actions' answer")?;
    body.get("value")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .context("GitHub Actions answered without a token")
}

pub(crate) fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let job_token = match (&args.oidc_token, args.oidc) {
        (Some(source), _) => Some(read_input(source)?),
        (None, true) => Some(github_actions_token(&args.audience)?),
        (None, false) => None,
    };
    if let Some(job_token) = job_token {
        let issued = args.client.client()?.exchange_oidc(&job_token)?;
        let path = save(&issued.token)?;
        match (args.print_token, args.client.output) {
            (true, _) => println!("{}", issued.token),
            (false, OutputFormat::Json) => {
                // Everything but the secret, which CI logs must not show: it is in the
                // login file, or printed alone with --print-token.
                let mut shown = serde_json::to_value(&issued)?;
                if let Some(fields) = shown.as_object_mut() {
                    fields.remove("token");
                }
                print!("{}", json(&shown)?)
            }
            (false, OutputFormat::Table) => {}
        }
        eprintln!(
            "gantry: logged in as {} ({}) until {}; token saved in {}",
            issued.user,
            issued.scope.join(", "),
            issued.expires_at,
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !args.token_stdin {
        bail!(InvalidInput(
            "say how to log in: --oidc-token FILE|- or --oidc (CI), or --token-stdin".to_owned()
        ));
    }
    let token = read_input("-")?;
    let checked = client::Client::new(args.client.remote.url(), Some(token.clone()))?;
    let tokens = checked.list_tokens(None)?;
    let path = save(&token)?;
    if args.print_token {
        println!("{token}");
    }
    let user = tokens
        .tokens
        .first()
        .map_or("(unknown)", |token| token.user.as_str());
    eprintln!(
        "gantry: logged in as {user}; token saved in {}",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
