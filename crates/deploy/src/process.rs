//! The one way Gantry runs a program (a command target, a CDN-invalidation hook, git):
//! in a process group of its own, with what it prints kept within a bound (the end of
//! each stream), its input written and closed, and past its timeout the whole group
//! killed — so neither a chatty program nor one that hangs or forks can grow the
//! server's memory or outlive its deployment.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long a program may run and how much of each stream is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub timeout: Duration,
    /// At most this many bytes of stdout are kept: its end.
    pub stdout_bytes: usize,
    /// At most this many bytes of stderr are kept: its end.
    pub stderr_bytes: usize,
}

/// A program that ran to its end.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// The end of what it printed on stdout (all of it unless `stdout_cut`).
    pub stdout: Vec<u8>,
    pub stdout_cut: bool,
    /// The end of what it printed on stderr.
    pub stderr: Vec<u8>,
}

/// Why a program did not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run it: {0}")]
    Spawn(std::io::Error),
    #[error("waiting for it failed: {0}")]
    Wait(std::io::Error),
    /// It ran past its timeout: its process group was killed.
    #[error("it did not finish within {} s; its process group was killed", .0.as_secs())]
    TimedOut(Duration),
}

impl RunError {
    /// The error said of `program`: `cannot run PROGRAM: …`, `waiting for PROGRAM: …`,
    /// `PROGRAM did not finish within N s; its process group was killed`.
    pub fn about(&self, program: &str) -> String {
        match self {
            RunError::Spawn(error) => format!("cannot run {program}: {error}"),
            RunError::Wait(error) => format!("waiting for {program}: {error}"),
            RunError::TimedOut(timeout) => format!(
                "{program} did not finish within {} s; its process group was killed",
                timeout.as_secs()
            ),
        }
    }
}

/// Runs `command` (its program, arguments, environment and directory already set)
/// within `bounds`, with `input` on its stdin (closed after) or none.
pub async fn run(
    command: &mut tokio::process::Command,
    input: Option<&[u8]>,
    bounds: Bounds,
) -> Result<Finished, RunError> {
    command
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends everything it started.
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let group = child.id().map(|id| Pid::from_raw(id.cast_signed()));
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let outcome = tokio::time::timeout(bounds.timeout, async {
        let write = async {
            if let (Some(input), Some(mut stdin)) = (input, stdin) {
                // A program that exits before reading its input answers for itself.
                let _ = stdin.write_all(input).await;
            }
        };
        let ((), (stdout, stdout_cut), (stderr, _), status) = tokio::join!(
            write,
            tail(stdout, bounds.stdout_bytes),
            tail(stderr, bounds.stderr_bytes),
            child.wait()
        );
        (status, stdout, stdout_cut, stderr)
    })
    .await;
    match outcome {
        Ok((Ok(status), stdout, stdout_cut, stderr)) => Ok(Finished {
            status,
            stdout,
            stdout_cut,
            stderr,
        }),
        Ok((Err(error), ..)) => Err(RunError::Wait(error)),
        Err(_) => {
            if let Some(group) = group {
                // The group may be gone already; either way nothing of it is left.
                let _ = killpg(group, Signal::SIGKILL);
            }
            let _ = child.wait().await;
            Err(RunError::TimedOut(bounds.timeout))
        }
    }
}

/// Reads a stream to its end, keeping its last `limit` bytes; whether any were dropped.
async fn tail(stream: Option<impl AsyncRead + Unpin>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut stream) = stream else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return (kept, cut),
            Ok(read) => {
                kept.extend_from_slice(&buffer[..read]);
                if kept.len() > limit {
                    kept.drain(..kept.len() - limit);
                    cut = true;
                }
            }
        }
    }
}

/// The end of `text`, at most `limit` bytes, cut at a character boundary and marked
/// with `…` when cut.
pub fn text_tail(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(timeout: Duration, bytes: usize) -> Bounds {
        Bounds {
            timeout,
            stdout_bytes: bytes,
            stderr_bytes: bytes,
        }
    }

    #[tokio::test]
    async fn output_is_kept_within_its_bound_and_input_reaches_the_program() {
        let mut command = tokio::process::Command::new("/bin/sh");
        command.args([
            "-c",
            "cat; head -c 100000 /dev/zero | tr '\\0' x; echo oops >&2",
        ]);
        let finished = run(
            &mut command,
            Some(b"hello "),
            bounds(Duration::from_secs(10), 1000),
        )
        .await
        .expect("it runs");
        assert!(finished.status.success());
        assert_eq!(finished.stdout.len(), 1000);
        assert!(finished.stdout_cut);
        assert!(finished.stdout.iter().all(|byte| *byte == b'x'));
        assert_eq!(finished.stderr, b"oops\n");
    }

    #[tokio::test]
    async fn past_its_timeout_the_whole_group_is_killed() {
        let dir = tempfile::tempdir().expect("dir");
        let marker = dir.path().join("survived");
        let mut command = tokio::process::Command::new("/bin/sh");
        command.args([
            "-c",
            &format!("(sleep 1; touch {}) & sleep 30", marker.display()),
        ]);
        let started = std::time::Instant::now();
        let error = run(&mut command, None, bounds(Duration::from_millis(200), 100))
            .await
            .expect_err("timed out");
        assert!(matches!(error, RunError::TimedOut(_)), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !marker.exists(),
            "a child of the program outlived the timeout"
        );
    }

    #[test]
    fn a_text_tail_is_cut_at_a_character_boundary() {
        assert_eq!(text_tail("short", 10), "short");
        assert_eq!(text_tail("ééé", 3), "…é");
    }
}
