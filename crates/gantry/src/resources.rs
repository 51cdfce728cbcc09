//! `gantry resources KIND [NAME]` (`pipelines`, `applications`, `trustpolicies`): lists
//! the declared resources of a kind (every page), or prints one resource's canonical
//! text.

use clap::{Args, ValueEnum};
use client::{Client, ResourceKind, ResourceList};

use crate::remote::{OutputFormat, RemoteArgs};

/// Names per request while listing every page.
const PAGE_SIZE: u32 = 500;

#[derive(Args)]
pub(crate) struct ResourcesArgs {
    /// Which kind of resource
    #[arg(value_enum)]
    kind: KindArg,
    /// Print this resource's canonical text instead of listing
    name: Option<String>,
    /// Output format
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(flatten)]
    remote: RemoteArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum KindArg {
    Pipelines,
    Applications,
    /// Which CI job tokens Gantry exchanges for its own
    #[value(name = "trustpolicies", alias = "trust-policies")]
    TrustPolicies,
    /// What garbage collection keeps in the repositories each matches
    #[value(name = "retentionpolicies", alias = "retention-policies")]
    RetentionPolicies,
}

impl From<KindArg> for ResourceKind {
    fn from(kind: KindArg) -> ResourceKind {
        match kind {
            KindArg::Pipelines => ResourceKind::Pipeline,
            KindArg::Applications => ResourceKind::Application,
            KindArg::TrustPolicies => ResourceKind::TrustPolicy,
            KindArg::RetentionPolicies => ResourceKind::RetentionPolicy,
        }
    }
}

pub(crate) fn run(args: ResourcesArgs) -> anyhow::Result<()> {
    let client = args.remote.client()?;
    let kind = ResourceKind::from(args.kind);
    match (args.name, args.output) {
        (Some(name), OutputFormat::Json) => {
            let detail = client.get_resource(kind, &name)?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
        }
        (Some(name), OutputFormat::Table) => {
            let detail = client.get_resource(kind, &name)?;
            println!("{}", detail.canonical.trim_end());
        }
        (None, OutputFormat::Json) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&list_all(&client, kind)?)?
            );
        }
        (None, OutputFormat::Table) => print!("{}", render(&list_all(&client, kind)?)),
    }
    Ok(())
}

/// Every page, as one list whose `next` is `None`.
fn list_all(client: &Client, kind: ResourceKind) -> Result<ResourceList, client::ClientError> {
    let mut all = client.list_resources(kind, None, Some(PAGE_SIZE))?;
    while let Some(after) = all.next.take() {
        let page = client.list_resources(kind, Some(&after), Some(PAGE_SIZE))?;
        all.items.extend(page.items);
        all.next = page.next;
    }
    Ok(all)
}

/// `NAME  REVISION  UPDATED`, aligned; a sentence when there is nothing.
fn render(list: &ResourceList) -> String {
    if list.items.is_empty() {
        return "no resources of this kind\n".to_owned();
    }
    let width = list
        .items
        .iter()
        .map(|item| item.name.len())
        .max()
        .unwrap_or_default()
        .max("NAME".len());
    let mut out = format!("{:<width$}  REVISION  UPDATED\n", "NAME");
    for item in &list.items {
        out.push_str(&format!(
            "{:<width$}  {:<8}  {}\n",
            item.name, item.revision, item.updated_at
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use client::ResourceSummary;

    use super::*;

    #[test]
    fn trust_policies_are_named_as_the_api_names_them_or_in_kebab_case() {
        for text in ["trustpolicies", "trust-policies"] {
            let kind = KindArg::from_str(text, false).unwrap_or_else(|error| panic!("{error}"));
            assert_eq!(ResourceKind::from(kind).plural(), "trustpolicies");
        }
    }

    #[test]
    fn a_listing_aligns_names_revisions_and_times() {
        let summary = |name: &str, revision| ResourceSummary {
            kind: "Pipeline".to_owned(),
            name: name.to_owned(),
            revision,
            updated_at: "2026-01-01T00:00:00Z".to_owned(),
        };
        let list = ResourceList {
            items: vec![summary("standard", 1), summary("fast", 12)],
            next: None,
        };
        assert_eq!(
            render(&list),
            "NAME      REVISION  UPDATED\n\
             standard  1         2026-01-01T00:00:00Z\n\
             fast      12        2026-01-01T00:00:00Z\n"
        );
        assert_eq!(
            render(&ResourceList {
                items: vec![],
                next: None
            }),
            "no resources of this kind\n"
        );
    }
}
