//! The commit message of a deployment: a subject a person reads in `git log`, a body
//! saying what changed, and trailers (`Gantry-Deployment: 42`) that tools and people
//! can search for (`git log --grep 'Gantry-Deployment: 42'`,
//! `git interpret-trailers --parse`).

use deploy::DeployContext;
use domain::application::ConfigValue;
use domain::promotion::DeploymentReason;

use crate::edit::Assignment;

/// The message for `job`'s commit, which sets `assignments` in `file`.
pub(crate) fn commit_message(
    job: &DeployContext<'_>,
    file: &str,
    assignments: &[Assignment],
) -> String {
    let order = job.order;
    let (application, environment) = (one_line(&order.application), one_line(&order.environment));
    let hex = order
        .digest
        .split_once(':')
        .map_or(order.digest.as_str(), |(_, hex)| hex);
    let short: String = hex.chars().take(12).collect();
    let mut message = format!(
        "Deploy {application} {} to {environment}\n\n",
        one_line(&short)
    );
    let what = match (order.reason, order.promotion_id) {
        (DeploymentReason::Rollback, _) => "Rollback".to_owned(),
        (DeploymentReason::Promotion, Some(promotion)) => format!("Promotion {promotion}"),
        (DeploymentReason::Promotion, None) => "Promotion".to_owned(),
    };
    message.push_str(&format!(
        "{what} of {} into {application}/{environment}, requested by {}",
        one_line(job.image),
        one_line(&order.requested_by)
    ));
    if !job.approvers.is_empty() {
        let approvers: Vec<String> = job.approvers.iter().map(|a| one_line(a)).collect();
        message.push_str(&format!(", approved by {}", approvers.join(", ")));
    }
    message.push_str(&format!(".\n\n{}:\n", one_line(file)));
    for assignment in assignments {
        let value = match &assignment.value {
            ConfigValue::String(text) => one_line(text),
            ConfigValue::Integer(number) => number.to_string(),
            ConfigValue::Boolean(flag) => flag.to_string(),
        };
        message.push_str(&format!("  {} = {value}\n", assignment.key.as_str()));
    }
    message.push('\n');
    let mut trailers = vec![
        ("Gantry-Application", application.clone()),
        ("Gantry-Environment", environment.clone()),
        ("Gantry-Digest", one_line(&order.digest)),
        ("Gantry-Deployment", order.deployment_id.to_string()),
    ];
    if let Some(promotion) = order.promotion_id {
        trailers.push(("Gantry-Promotion", promotion.to_string()));
    }
    trailers.push(("Gantry-Requested-By", one_line(&order.requested_by)));
    for approver in job.approvers {
        trailers.push(("Gantry-Approved-By", one_line(approver)));
    }
    for (key, value) in trailers {
        message.push_str(&format!("{key}: {value}\n"));
    }
    message
}

/// `text` on one line, so a name cannot forge another trailer or a second paragraph.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}
