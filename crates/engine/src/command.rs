//! The `command` target: a program the platform team declares (a deploy script, a
//! `kubectl`, a CLI of another system) run for each deployment. It gets what to deploy
//! in `GANTRY_*` environment variables and nothing else of the server's environment
//! (which holds database URLs) beyond `PATH`, `HOME` and the locale; its exit status
//! decides; the tail of its output is kept in the deployment's record; past the
//! target's timeout its whole process group is killed, so helpers it started do not
//! outlive it.

use resources::Target;
use store::DeploymentOrder;

use crate::ChildEnvironment;
use deploy::{DeployContext, DeployError, DeployFuture, Deployer};

/// How much of a command's output (each of stdout and stderr) the record keeps: the end.
const OUTPUT_TAIL_BYTES: usize = 16 * 1024;

/// Runs the declared program for each deployment, with `environment` (the part of
/// the server's environment programs may see) and the deployment's `GANTRY_*`
/// variables.
pub struct CommandDeployer {
    environment: ChildEnvironment,
}

impl CommandDeployer {
    pub fn new(environment: ChildEnvironment) -> CommandDeployer {
        CommandDeployer { environment }
    }
}

impl Deployer for CommandDeployer {
    fn kind(&self) -> &'static str {
        "command"
    }

    fn deploy<'a>(&'a self, job: &'a DeployContext<'a>) -> DeployFuture<'a> {
        Box::pin(async move {
            let (order, image) = (job.order, job.image);
            let Target::Command(target) = &job.environment.target else {
                return Err(DeployError::Failed(
                    "the environment's target is not a command".to_owned(),
                ));
            };
            job.log.line(format!(
                "running {} {}",
                target.program,
                target.args.join(" ")
            ));
            let mut command = tokio::process::Command::new(&target.program);
            command
                .args(&target.args)
                .env_clear()
                .envs(self.environment.iter())
                .envs(variables(order, image));
            let bounds = deploy::process::Bounds {
                timeout: target.timeout,
                stdout_bytes: OUTPUT_TAIL_BYTES,
                stderr_bytes: OUTPUT_TAIL_BYTES,
            };
            match deploy::process::run(&mut command, None, bounds).await {
                Ok(finished) => {
                    let output = describe_output(&finished.stdout, &finished.stderr);
                    for line in output.lines().filter(|line| !line.is_empty()) {
                        job.log.line(line);
                    }
                    if finished.status.success() {
                        Ok(format!("{} exited 0{output}", target.program))
                    } else {
                        Err(DeployError::Failed(format!(
                            "{} {}{output}",
                            target.program, finished.status
                        )))
                    }
                }
                Err(error) => Err(DeployError::Failed(error.about(&target.program))),
            }
        })
    }
}

/// What the program is told about the deployment.
fn variables(order: &DeploymentOrder, image: &str) -> Vec<(&'static str, String)> {
    let mut variables = vec![
        ("GANTRY_APP", order.application.clone()),
        ("GANTRY_ENV", order.environment.clone()),
        ("GANTRY_DIGEST", order.digest.clone()),
        ("GANTRY_IMAGE", image.to_owned()),
        ("GANTRY_DEPLOYMENT_ID", order.deployment_id.to_string()),
        ("GANTRY_REASON", order.reason.as_str().to_owned()),
        ("GANTRY_REQUESTED_BY", order.requested_by.clone()),
        (
            "GANTRY_CONFIG",
            order.config.clone().unwrap_or_else(|| "{}".to_owned()),
        ),
    ];
    if let Some(promotion) = order.promotion_id {
        variables.push(("GANTRY_PROMOTION_ID", promotion.to_string()));
    }
    if let Some(tag) = &order.tag {
        variables.push(("GANTRY_TAG", tag.clone()));
    }
    variables
}

/// `; output: …` for the record, empty when the program said nothing.
fn describe_output(stdout: &[u8], stderr: &[u8]) -> String {
    let mut text = String::new();
    for (name, bytes) in [("stdout", stdout), ("stderr", stderr)] {
        let shown = String::from_utf8_lossy(bytes);
        let shown = shown.trim_end();
        if !shown.is_empty() {
            text.push_str(&format!("\n{name}:\n{shown}"));
        }
    }
    text
}
