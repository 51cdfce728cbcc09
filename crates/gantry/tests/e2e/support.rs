//! Real processes for end-to-end tests: the `gantry` binary on port 0, the reference
//! registry, and the third-party clients (skopeo, oras) that drive them.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The shared test tools (mkimage.py, start-peer-registry.sh).
pub(crate) fn tools_dir() -> PathBuf {
    match std::env::var_os("GANTRY_SHARED_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/tools"),
    }
}

/// The Python that has `oras` installed (see .ci/run).
pub(crate) fn peer_python() -> String {
    std::env::var("PEER_PYTHON").unwrap_or_else(|_| "/opt/peer-venv/bin/python".to_owned())
}

/// Runs a command, failing the test with its output if it does not succeed.
pub(crate) fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (is it installed? see .ci/run)"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn stdout_of(command: &mut Command) -> String {
    String::from_utf8_lossy(&run(command).stdout).into_owned()
}

/// A `gantry serve` process on a free port, stopped with SIGTERM when dropped.
pub(crate) struct GantryServer {
    child: Option<Child>,
    pub(crate) address: String,
    pub(crate) token: Option<String>,
    pub(crate) stderr_log: PathBuf,
}

impl GantryServer {
    /// Starts `gantry serve --listen 127.0.0.1:0 ARGS…` in `work_dir` with `env`, and
    /// waits until it prints its address (bind happens before that line).
    pub(crate) fn start(work_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> GantryServer {
        let stderr_log = work_dir.join(format!("gantry-{}.log", uuid_like()));
        let stderr = std::fs::File::create(&stderr_log).expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_gantry"));
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .current_dir(work_dir)
            .env_remove("GANTRY_DATABASE_URL")
            .env_remove("GANTRY_BLOB_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn gantry");
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut token = None;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(t) = line.strip_prefix("gantry: admin token: ") {
                    token = Some(t.trim().to_owned());
                }
                if let Some(address) = line.strip_prefix("gantry: listening on http://") {
                    let _ = sender.send((address.trim().to_owned(), token.clone()));
                }
            }
        });
        let (address, token) = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(found) => found,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "gantry did not start; log:\n{}",
                    std::fs::read_to_string(&stderr_log).unwrap_or_default()
                );
            }
        };
        GantryServer {
            child: Some(child),
            address,
            token,
            stderr_log,
        }
    }

    pub(crate) fn token(&self) -> &str {
        self.token
            .as_deref()
            .expect("this server printed an admin token")
    }

    pub(crate) fn creds(&self) -> String {
        format!("admin:{}", self.token())
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub(crate) fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        run(Command::new("kill").args(["-TERM", &child.id().to_string()]));
        child.wait().expect("wait for gantry")
    }

    /// Sends SIGTERM without waiting.
    pub(crate) fn signal_terminate(&self) {
        run(Command::new("kill").args(["-TERM", &self.pid().to_string()]));
    }

    /// Waits (bounded) until the server's log contains `text`.
    pub(crate) fn wait_for_log(&self, text: &str) {
        for _ in 0..500 {
            if self.log().contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the server never logged {text:?}; log:\n{}", self.log());
    }

    /// Waits for the process to exit.
    pub(crate) fn wait(mut self) -> std::process::ExitStatus {
        self.child
            .take()
            .expect("running")
            .wait()
            .expect("wait for gantry")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for GantryServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

/// The reference registry (`docker-registry`), stopped when dropped.
pub(crate) struct PeerRegistry {
    pid: u32,
    pub(crate) address: String,
    root: tempfile::TempDir,
}

impl PeerRegistry {
    pub(crate) fn start() -> PeerRegistry {
        let port = free_port();
        let root = tempfile::tempdir().expect("temporary directory");
        let pid = stdout_of(
            Command::new("bash")
                .arg(tools_dir().join("start-peer-registry.sh"))
                .arg(port.to_string())
                .arg(root.path()),
        );
        let pid = pid
            .trim()
            .parse()
            .expect("start-peer-registry.sh prints the PID");
        PeerRegistry {
            pid,
            address: format!("127.0.0.1:{port}"),
            root,
        }
    }
}

impl PeerRegistry {
    /// Stops the registry, keeping what it stores, and waits until its port is closed.
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&self.address).is_ok() {
            assert!(Instant::now() < deadline, "the registry did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port and storage.
    pub(crate) fn restart(&mut self) {
        let port = self
            .address
            .rsplit_once(':')
            .map(|(_, port)| port.to_owned())
            .expect("HOST:PORT");
        let pid = stdout_of(
            Command::new("bash")
                .arg(tools_dir().join("start-peer-registry.sh"))
                .arg(&port)
                .arg(self.root.path()),
        );
        self.pid = pid
            .trim()
            .parse()
            .expect("start-peer-registry.sh prints the PID");
    }
}

impl Drop for PeerRegistry {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.pid.to_string()).status();
        let _ = &self.root;
    }
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}")
}

/// Writes an OCI layout with mkimage.py and returns its JSON description lines.
pub(crate) fn make_image(dir: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = stdout_of(
        Command::new("python3")
            .arg(tools_dir().join("mkimage.py"))
            .arg(dir)
            .args(args),
    );
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("mkimage prints JSON"))
        .collect()
}

pub(crate) fn skopeo() -> Command {
    let mut command = Command::new("skopeo");
    command.arg("--insecure-policy");
    command
}

/// The sha256 of the manifest bytes a registry serves for `reference`.
pub(crate) fn served_manifest_digest(reference: &str, creds: Option<&str>) -> String {
    let mut command = skopeo();
    command.args(["inspect", "--raw", "--tls-verify=false"]);
    if let Some(creds) = creds {
        command.args(["--creds", creds]);
    }
    let raw = run(command.arg(format!("docker://{reference}"))).stdout;
    format!("sha256:{}", sha256_hex(&raw))
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Starts an upload session with `POST …/blobs/uploads/` and returns its Location.
pub(crate) fn start_upload_session(address: &str, creds: &str, repository: &str) -> String {
    stdout_of(
        Command::new("curl")
            .args([
                "-s",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "-X",
                "POST",
                "-u",
                creds,
            ])
            .arg(format!("http://{address}/v2/{repository}/blobs/uploads/")),
    )
    .lines()
    .find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("location")
            .then(|| value.trim().to_owned())
    })
    .expect("POST answers with a Location")
}

/// SeaweedFS (`weed mini`) as an S3 store on loopback, started with
/// start-seaweed-s3.sh; its process group is stopped when dropped.
pub(crate) struct Seaweed {
    pid: u32,
    pub(crate) endpoint: String,
    pub(crate) access_key: String,
    pub(crate) secret_key: String,
    data: tempfile::TempDir,
}

impl Seaweed {
    /// Starts SeaweedFS with `buckets` on free ports and waits until the first bucket
    /// accepts writes (checked with boto3 from the peer venv).
    pub(crate) fn start(buckets: &[&str]) -> Seaweed {
        let data = tempfile::tempdir().expect("temporary directory");
        let base = free_port_base();
        let s3_port = base + 7;
        let pid = stdout_of(
            Command::new("bash")
                .arg(tools_dir().join("start-seaweed-s3.sh"))
                .arg(s3_port.to_string())
                .arg(data.path().join("weed"))
                .env("WEED_PORT_BASE", base.to_string())
                .env("S3_BUCKETS", buckets.join(","))
                .env("S3_ACCESS_KEY", "gantrykey")
                .env("S3_SECRET_KEY", "gantrysecret")
                .env_remove("AWS_CA_BUNDLE"),
        );
        let pid = pid
            .trim()
            .parse()
            .expect("start-seaweed-s3.sh prints the PID");
        let seaweed = Seaweed {
            pid,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            access_key: "gantrykey".to_owned(),
            secret_key: "gantrysecret".to_owned(),
            data,
        };
        let bucket = buckets.first().expect("at least one bucket");
        let probe = "import time, sys\n\
                     s3 = S3\n\
                     deadline = time.time() + 60\n\
                     while True:\n\
                     \x20   try:\n\
                     \x20       s3.put_object(Bucket=sys.argv[1], Key='readiness-probe', Body=b'ok')\n\
                     \x20       s3.delete_object(Bucket=sys.argv[1], Key='readiness-probe')\n\
                     \x20       break\n\
                     \x20   except Exception as error:\n\
                     \x20       if time.time() > deadline: raise\n\
                     \x20       time.sleep(0.25)\n";
        seaweed.boto3(probe, &[bucket]);
        seaweed
    }

    /// Runs `script` with the peer venv's Python, where `S3` is a boto3 client of this
    /// store; its stdout.
    pub(crate) fn boto3(&self, script: &str, args: &[&str]) -> String {
        let prelude = format!(
            "import boto3, botocore.config\n\
             S3 = boto3.client('s3', endpoint_url={endpoint:?}, aws_access_key_id={key:?}, \
             aws_secret_access_key={secret:?}, region_name='us-east-1', \
             config=botocore.config.Config(s3={{'addressing_style': 'path'}}))\n",
            endpoint = self.endpoint,
            key = self.access_key,
            secret = self.secret_key,
        );
        stdout_of(
            Command::new(peer_python())
                .arg("-c")
                .arg(format!("{prelude}{script}"))
                .args(args)
                .env_remove("AWS_CA_BUNDLE")
                .env_remove("AWS_PROFILE")
                .env_remove("AWS_CONFIG_FILE"),
        )
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        // start-seaweed-s3.sh starts weed with setsid: its PID is its process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.pid)])
            .status();
        for _ in 0..50 {
            let alive = Command::new("kill")
                .args(["-0", &self.pid.to_string()])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.pid)])
            .stderr(Stdio::null())
            .status();
        let _ = &self.data;
    }
}

/// A base port such that base..base+8 and their gRPC twins (+10000) are free, for
/// SeaweedFS's several listeners.
fn free_port_base() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let seed = std::process::id() ^ nanos;
    for attempt in 0..200u32 {
        // Below the kernel's ephemeral range (32768 and up), with the +10,000 gRPC
        // ports too: tests holding thousands of client connections take ephemeral
        // ports between this check and SeaweedFS binding them.
        let base = 10_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 1_200) * 10;
        let base = u16::try_from(base).expect("below 65536");
        if (0..8).all(|offset| free(base + offset) && free(base + offset + 10_000)) {
            return base;
        }
    }
    panic!("no free range of ports for SeaweedFS");
}

/// An HTTP answer as curl saw it: status, headers (lowercased names) and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `curl -si ARGS… URL`.
pub(crate) fn curl(url: &str, args: &[&str]) -> Answer {
    let output = run(Command::new("curl").args(["-s", "-i"]).args(args).arg(url));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An application whose only environment deploys until the file `go` exists.
pub(crate) fn slow_app(go: &Path) -> String {
    format!(
        r#"kind: Pipeline
name: slow
stages:
  - name: dev
    auto: true
---
kind: Application
name: slow-app
type: container
repository: acme/slow-app
pipeline: slow
environments:
  dev:
    target:
      command:
        program: sh
        args: ["-c", "while [ ! -e \"$0\" ]; do sleep 0.1; done; echo rolled out", "{}"]
        timeout: 120s
"#,
        go.display()
    )
}

/// Pushes a new image of `layers` (mkimage.py syntax) to `address` as `reference`
/// (`REPOSITORY:TAG`) with skopeo and `creds`: its manifest digest.
pub(crate) fn push_new_image(address: &str, creds: &str, reference: &str, layers: &str) -> String {
    let (output, digest) = skopeo_push_new_image(address, creds, reference, layers);
    assert!(
        output.status.success(),
        "skopeo copy\n{}",
        describe(&output)
    );
    digest
}

/// [`push_new_image`] that reports a failed push instead of failing the test: the
/// manifest's digest when skopeo's push was acknowledged.
pub(crate) fn try_push_new_image(
    address: &str,
    creds: &str,
    reference: &str,
    layers: &str,
) -> Option<String> {
    let (output, digest) = skopeo_push_new_image(address, creds, reference, layers);
    output.status.success().then_some(digest)
}

/// skopeo's answer to pushing a new image, and the image's manifest digest.
fn skopeo_push_new_image(
    address: &str,
    creds: &str,
    reference: &str,
    layers: &str,
) -> (Output, String) {
    let work = tempfile::tempdir().expect("temporary directory");
    let layout = work.path().join("image");
    let tag = reference.rsplit_once(':').map_or("latest", |(_, tag)| tag);
    let image = &make_image(&layout, &["--layers", layers, "--tag", tag])[0];
    let output = skopeo()
        .args(["copy", "--dest-tls-verify=false", "--dest-creds", creds])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{address}/{reference}"))
        .output()
        .expect("run skopeo");
    (
        output,
        image["manifest"].as_str().expect("digest").to_owned(),
    )
}

/// A finished command's status, stdout and stderr, for an assertion's message.
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Builds an image from scratch with buildah in `work` (one file, `commit` as the
/// revision label) and pushes it to `reference` (`HOST:PORT/REPO:TAG`) with `creds`;
/// the pushed manifest's digest, or what buildah said when the push failed.
pub(crate) fn buildah_push(
    work: &Path,
    reference: &str,
    creds: &str,
    commit: &str,
) -> Result<String, String> {
    let root = work.join("buildah");
    let buildah = || {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(root.join("storage"))
            .arg("--runroot")
            .arg(root.join("run"))
            .args(["--storage-driver", "vfs"])
            .current_dir(work);
        command
    };
    let container = stdout_of(buildah().args(["from", "scratch"]));
    let container = container.trim();
    std::fs::write(work.join("hello.txt"), "hello from buildah\n").expect("write hello.txt");
    run(buildah().args(["copy", container, "hello.txt", "/hello.txt"]));
    run(buildah().args([
        "config",
        "--label",
        &format!("org.opencontainers.image.revision={commit}"),
        container,
    ]));
    run(buildah().args(["commit", "--quiet", container, "gantry-test-build"]));
    let digest_file = root.join("digest");
    let output = buildah()
        .args([
            "push",
            "--tls-verify=false",
            "--creds",
            creds,
            "--digestfile",
        ])
        .arg(&digest_file)
        .arg("gantry-test-build")
        .arg(format!("docker://{reference}"))
        .output()
        .expect("run buildah");
    if !output.status.success() {
        return Err(format!("buildah push\n{}", describe(&output)));
    }
    Ok(std::fs::read_to_string(&digest_file)
        .expect("buildah wrote the digest")
        .trim()
        .to_owned())
}
