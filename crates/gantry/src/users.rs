//! `gantry user create|list` and `gantry token create`: people and CI identities, their
//! roles, and their API tokens (admins). A new token is printed once, alone on
//! stdout, so `TOKEN=$(gantry token create ci-bot)` works; the server keeps only its
//! hash.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use client::{Client, TokenRequest, TokenResponse, UserList, UserRequest, UserView};

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, json};

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
    /// A role, global (`staff`) or for one application (`client@web-app`): viewer,
    /// developer, staff, client, platform or admin; repeat for more
    #[arg(long = "role", value_name = "ROLE[@APP]")]
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
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn token(args: TokenArgs) -> anyhow::Result<ExitCode> {
    let TokenCommand::Create(args) = args.command;
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
