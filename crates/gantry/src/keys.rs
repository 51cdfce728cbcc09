//! `gantry keys list` prints the public keys the server signs and signed with (each
//! key id, whether current, the time range it signed, and its PEM with `--pem`);
//! `gantry keys rotate` makes a new one (admins).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use client::SigningKeyView;

use crate::remote::{ClientArgs, OutputFormat};
use crate::table::{Table, json};

#[derive(Args)]
pub(crate) struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the public keys (no credentials needed)
    List {
        /// Print each key's PEM (what `gantry verify --key` and `cosign --key` read)
        #[arg(long)]
        pem: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write every public key, the current one first, as PEM: the file `gantry verify
    /// --key` and `gantry audit verify --key` read (no credentials needed)
    Export {
        /// Write here instead of stdout
        #[arg(short = 'f', long = "file")]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make a new signing key; the old one stays listed for verification (admins)
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub(crate) fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        KeysCommand::List { pem, client } => {
            let list = client.client()?.signing_keys()?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&list)?),
                OutputFormat::Table => print!("{}", render(&list.keys, pem)),
            }
        }
        KeysCommand::Export { file, client } => {
            let list = client.client()?.signing_keys()?;
            let text: String = list
                .keys
                .iter()
                .map(|key| {
                    format!(
                        "# {} ({})\n{}",
                        key.key_id,
                        if key.current { "current" } else { "retired" },
                        key.public_key
                    )
                })
                .collect();
            match file {
                Some(path) => std::fs::write(&path, text)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?,
                None => print!("{text}"),
            }
        }
        KeysCommand::Rotate { client } => {
            let key = client.client()?.rotate_signing_key()?;
            match client.output {
                OutputFormat::Json => print!("{}", json(&key)?),
                OutputFormat::Table => print!(
                    "the current signing key is now {}; the previous one stays listed for verifying what it signed\n{}",
                    key.key_id, key.public_key
                ),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(keys: &[SigningKeyView], pem: bool) -> String {
    if keys.is_empty() {
        return "no signing key yet\n".to_owned();
    }
    let mut table = Table::new(&[
        "KEY ID",
        "ALGORITHM",
        "CURRENT",
        "SIGNED FROM",
        "SIGNED UNTIL",
    ]);
    for key in keys {
        table.row(vec![
            key.key_id.clone(),
            key.algorithm.clone(),
            if key.current { "yes" } else { "no" }.to_owned(),
            key.signed_from.clone(),
            key.signed_until.clone().unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let mut text = table.render();
    if pem {
        for key in keys {
            text.push_str(&format!("\n# {}\n{}", key.key_id, key.public_key));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str, current: bool) -> SigningKeyView {
        SigningKeyView {
            key_id: id.to_owned(),
            algorithm: "ecdsa-p256-sha256".to_owned(),
            public_key: format!("-----BEGIN PUBLIC KEY-----\n{id}\n-----END PUBLIC KEY-----\n"),
            jwk: serde_json::json!({}),
            current,
            signed_from: "2026-12-01T00:00:00Z".to_owned(),
            signed_until: (!current).then(|| "2026-12-05T00:00:00Z".to_owned()),
        }
    }

    #[test]
    fn keys_list_with_the_time_range_each_signed_and_their_pem_on_request() {
        let keys = [key("new", true), key("old", false)];
        let text = render(&keys, false);
        let new = text.lines().find(|l| l.starts_with("new")).expect("new");
        assert!(
            new.contains("yes") && new.trim_end().ends_with('-'),
            "{new}"
        );
        let old = text.lines().find(|l| l.starts_with("old")).expect("old");
        assert!(
            old.contains("no") && old.contains("2026-12-05T00:00:00Z"),
            "{old}"
        );
        assert!(!text.contains("BEGIN PUBLIC KEY"));
        assert!(render(&keys, true).contains("# old\n-----BEGIN PUBLIC KEY-----"));
        assert_eq!(render(&[], false), "no signing key yet\n");
    }
}
