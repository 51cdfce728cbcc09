//! The `command` target: a program the platform team declares (a deploy script, a
//! `kubectl`, a CLI of another system) run for each deployment. It gets what to deploy
//! in `GANTRY_*` environment variables and nothing else of the server's environment
//! (which holds database URLs) beyond `PATH`, `HOME` and the locale; its exit status
//! decides; the tail of its output is kept in the deployment's record; past the
//! target's timeout its whole process group is killed, so helpers it started do not
//! outlive it.

use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use resources::Target;
use store::DeploymentOrder;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::ChildEnvironment;
use crate::deployer::{DeployContext, DeployError, DeployFuture, Deployer};

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
                .envs(variables(order, image))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                // Its own process group, so a timeout can end everything it started.
                .process_group(0)
                .kill_on_drop(true);
            let mut child = command
                .spawn()
                .map_err(|e| DeployError::Failed(format!("cannot run {}: {e}", target.program)))?;
            let group = child.id().map(|id| Pid::from_raw(id.cast_signed()));
            let stdout = child.stdout.take();
            let stderr = child.stderr.take();
            let output = async { tokio::join!(tail(stdout), tail(stderr)) };
            let outcome = tokio::time::timeout(target.timeout, async {
                let (status, output) = tokio::join!(child.wait(), output);
                (status, output)
            })
            .await;
            match outcome {
                Ok((Ok(status), (stdout, stderr))) => {
                    let output = describe_output(&stdout, &stderr);
                    for line in output.lines().filter(|line| !line.is_empty()) {
                        job.log.line(line);
                    }
                    if status.success() {
                        Ok(format!("{} exited 0{output}", target.program))
                    } else {
                        Err(DeployError::Failed(format!(
                            "{} {status}{output}",
                            target.program
                        )))
                    }
                }
                Ok((Err(error), _)) => Err(DeployError::Failed(format!(
                    "waiting for {}: {error}",
                    target.program
                ))),
                Err(_) => {
                    if let Some(group) = group {
                        // The group may be gone already; either way nothing of it is left.
                        let _ = killpg(group, Signal::SIGKILL);
                    }
                    let _ = child.wait().await;
                    Err(DeployError::Failed(format!(
                        "{} did not finish within {} s; its process group was killed",
                        target.program,
                        target.timeout.as_secs()
                    )))
                }
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

/// Reads a stream to its end, keeping its last [`OUTPUT_TAIL_BYTES`].
async fn tail(stream: Option<impl AsyncRead + Unpin>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return kept,
            Ok(read) => {
                kept.extend_from_slice(&buffer[..read]);
                if kept.len() > OUTPUT_TAIL_BYTES {
                    kept.drain(..kept.len() - OUTPUT_TAIL_BYTES);
                }
            }
        }
    }
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
