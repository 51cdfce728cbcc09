//! `gantry user create|list|passwd` and `gantry token create`: people and CI identities, their
//! roles, and their API tokens (admins). A new token is printed once, alone on
//! stdout, so `TOKEN=$(gantry token create ci-bot)` works; the server keeps only its
//! hash.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use client::{
    Client, TokenList, TokenRequest, TokenResponse, TokenView, UserList, UserRequest, UserView,
};

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, age, json};

#[derive(Args)]
pub(crate) struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user or CI identity with roles (admins).
    ///
    /// Exit codes: 0 created, 2 invalid input (e.g. an unknown role), 3 the user exists,
    /// 4 unauthorized or forbidden, 1 anything else.
    Create(CreateUserArgs),
    /// List users and their roles.
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Set the password a user signs in to the web UI with (admins): at least 12
    /// characters, asked for twice at a terminal (not echoed), else read as the first
    /// line of stdin. Every session the user had ends.
    ///
    /// Exit codes: 0 set, 2 invalid input (too short, a CI identity), 4 unauthorized or
    /// forbidden, 1 anything else (e.g. no such user).
    Passwd {
        /// The user's name
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub(crate) struct CreateUserArgs {
    /// The user's name
    name: String,
    /// May do everything, admin actions included
    #[arg(long)]
    admin: bool,
    /// A CI identity: may push, notify builds and report checks; never approves
    #[arg(long)]
    ci: bool,
    /// A role, global (`staff`), for one application (`client@web-app`) or for one
    /// environment of it (`developer@web-app/staging`): viewer, developer, staff,
    /// client, platform or admin. Repeatable.
    #[arg(long = "role", value_name = "ROLE[@APP[/ENV]]")]
    roles: Vec<String>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user (admins); it is shown this once.
    ///
    /// Exit codes: 0 created, 2 invalid input, 4 unauthorized or forbidden, 1 anything
    /// else (e.g. no such user).
    Create(CreateTokenArgs),
    /// List tokens without their secrets: your own, or a user's (admins).
    ///
    /// Exit codes: 0 success, 4 unauthorized or forbidden, 1 anything else.
    List {
        /// Whose tokens [default: your own]
        user: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a token (your own, or anyone's as an admin); it stops working at once.
    ///
    /// Exit codes: 0 revoked (or already revoked), 4 unauthorized or forbidden, 1
    /// anything else (e.g. no such token).
    Revoke {
        /// The token's id (`tok_…`, from `gantry token list`)
        id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Args)]
pub(crate) struct CreateTokenArgs {
    /// The user the token acts as
    user: String,
    /// What the token is for, for whoever reads the list later
    #[arg(long)]
    description: Option<String>,
    /// Expire after this many days [default: never]
    #[arg(long)]
    expires_in_days: Option<u32>,
    #[command(flatten)]
    client: ClientArgs,
}

pub(crate) fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        UserCommand::Create(args) => {
            let request = UserRequest {
                name: args.name,
                admin: args.admin,
                ci: args.ci,
                roles: args.roles,
            };
            let user = args.client.client()?.create_user(&request)?;
            match args.client.output {
                OutputFormat::Json => print!("{}", json(&user)?),
                OutputFormat::Table => println!("created {}", describe(&user)),
            }
        }
        UserCommand::List { client } => {
            let users = list_all(&client.client()?)?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&users)?),
                OutputFormat::Table => print!("{}", render(&users)),
            }
        }
        UserCommand::Passwd { name, client } => {
            let password = read_new_password(&name)?;
            let user = client.client()?.set_password(&name, &password)?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&user)?),
                OutputFormat::Table => println!("password set for {}", user.name),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A new password: asked twice without echo at a terminal, else stdin's first line.
fn read_new_password(name: &str) -> anyhow::Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("New password for {name}: "))?;
        let again = rpassword::prompt_password("Again: ")?;
        if first != again {
            anyhow::bail!("the two passwords differ; nothing was changed");
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let args = match args.command {
        TokenCommand::Create(args) => args,
        TokenCommand::List { user, client } => {
            let list = client.client()?.list_tokens(user.as_deref())?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&list)?),
                OutputFormat::Table => print!("{}", render_tokens(&list, jiff::Timestamp::now())),
            }
            return Ok(ExitCode::SUCCESS);
        }
        TokenCommand::Revoke { id, client } => {
            let token = client.client()?.revoke_token(&id)?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&token)?),
                OutputFormat::Table => println!("revoked {} of {}", token.id, token.user),
            }
            return Ok(ExitCode::SUCCESS);
        }
    };
    let request = TokenRequest {
        description: args.description,
        expires_in_days: args.expires_in_days,
    };
    let created = args.client.client()?.create_token(&args.user, &request)?;
    match args.client.output {
        OutputFormat::Json => print!("{}", json(&created)?),
        OutputFormat::Table => {
            eprintln!("gantry: {}", token_notice(&created));
            println!("{}", created.token);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Every page, as one list whose `next` is `None`.
fn list_all(client: &Client) -> Result<UserList, client::ClientError> {
    let mut all = client.list_users(None)?;
    while let Some(after) = all.next.take() {
        let page = client.list_users(Some(&after))?;
        // A server that does not move on would loop forever; stop at the first repeat.
        if page.users.is_empty() || page.next.as_deref() == Some(after.as_str()) {
            all.users.extend(page.users);
            break;
        }
        all.users.extend(page.users);
        all.next = page.next;
    }
    Ok(all)
}

/// `ci-bot (CI identity; roles developer)`.
fn describe(user: &UserView) -> String {
    let mut kinds = Vec::new();
    if user.admin {
        kinds.push("admin".to_owned());
    }
    if user.ci {
        kinds.push("CI identity".to_owned());
    }
    kinds.push(if user.roles.is_empty() {
        "no roles".to_owned()
    } else {
        format!("roles {}", user.roles.join(", "))
    });
    format!("{} ({})", user.name, kinds.join("; "))
}

fn render(list: &UserList) -> String {
    if list.users.is_empty() {
        return "no users\n".to_owned();
    }
    let yes_no = |flag: bool| if flag { "yes" } else { "no" }.to_owned();
    let mut table = Table::new(&["NAME", "ADMIN", "CI", "ROLES"]);
    for user in &list.users {
        table.row(vec![
            user.name.clone(),
            yes_no(user.admin),
            yes_no(user.ci),
            user.roles.join(", "),
        ]);
    }
    table.render()
}

/// Tokens as a table: id, description, state, created, last used, expiry.
fn render_tokens(list: &TokenList, now: jiff::Timestamp) -> String {
    let mut table = Table::new(&[
        "ID",
        "USER",
        "DESCRIPTION",
        "STATE",
        "CREATED",
        "LAST USED",
        "EXPIRES",
    ]);
    for token in &list.tokens {
        table.row(vec![
            token.id.clone(),
            token.user.clone(),
            token.description.clone(),
            token_state(token).to_owned(),
            format!("{} ago", age(&token.created_at, now)),
            token
                .last_used_at
                .as_deref()
                .map_or_else(|| "never".to_owned(), |at| format!("{} ago", age(at, now))),
            token
                .expires_at
                .clone()
                .unwrap_or_else(|| "never".to_owned()),
        ]);
    }
    table.render()
}

fn token_state(token: &TokenView) -> &'static str {
    match (token.active, token.revoked_at.is_some()) {
        (true, _) => "active",
        (false, true) => "revoked",
        (false, false) => "expired",
    }
}

/// What goes to stderr beside a new token: whose it is, until when, and that it will
/// not be shown again.
fn token_notice(token: &TokenResponse) -> String {
    format!(
        "token {} for {} ({}); it is shown only this once",
        token.id,
        token.user,
        token
            .expires_at
            .as_deref()
            .map_or_else(|| "never expires".to_owned(), |at| format!("expires {at}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, admin: bool, ci: bool, roles: &[&str]) -> UserView {
        UserView {
            name: name.to_owned(),
            admin,
            ci,
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        }
    }

    #[test]
    fn users_are_listed_with_their_kind_and_roles() {
        let list = UserList {
            users: vec![
                user("ci-bot", false, true, &["developer"]),
                user("client-cleo", false, false, &["client@web-app", "viewer"]),
            ],
            next: None,
        };
        assert_eq!(
            render(&list),
            "NAME         ADMIN  CI   ROLES\n\
             ci-bot       no     yes  developer\n\
             client-cleo  no     no   client@web-app, viewer\n"
        );
        assert_eq!(
            describe(&user("ci-bot", false, true, &["developer"])),
            "ci-bot (CI identity; roles developer)"
        );
        assert_eq!(
            describe(&user("root", true, false, &[])),
            "root (admin; no roles)"
        );
    }

    #[test]
    fn tokens_are_listed_with_their_state_and_last_use_and_never_a_secret() {
        let now: jiff::Timestamp = "2026-11-22T12:00:00Z".parse().expect("time");
        let token = |id: &str, active: bool, revoked: Option<&str>, used: Option<&str>| TokenView {
            id: id.to_owned(),
            user: "dana".to_owned(),
            description: "laptop".to_owned(),
            created_at: "2026-11-20T12:00:00Z".to_owned(),
            expires_at: None,
            revoked_at: revoked.map(str::to_owned),
            last_used_at: used.map(str::to_owned),
            active,
        };
        let list = TokenList {
            tokens: vec![
                token("tok_a", true, None, Some("2026-11-22T11:55:00Z")),
                token("tok_b", false, Some("2026-11-21T00:00:00Z"), None),
                token("tok_c", false, None, None),
            ],
        };
        let text = render_tokens(&list, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID"), "{text}");
        assert!(
            lines[1].contains("active") && lines[1].contains("5m ago"),
            "{text}"
        );
        assert!(
            lines[2].contains("revoked") && lines[2].contains("never"),
            "{text}"
        );
        assert!(lines[3].contains("expired"), "{text}");
        assert!(lines[1].contains("2d ago"), "{text}");
    }

    #[test]
    fn a_new_tokens_notice_never_holds_the_secret() {
        let created = TokenResponse {
            id: "t1".to_owned(),
            user: "ci-bot".to_owned(),
            token: "gnt_secret".to_owned(),
            expires_at: Some("2026-04-01T00:00:00Z".to_owned()),
        };
        let notice = token_notice(&created);
        assert_eq!(
            notice,
            "token t1 for ci-bot (expires 2026-04-01T00:00:00Z); it is shown only this once"
        );
    }
}
