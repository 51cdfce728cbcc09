//! Real peers for the copy tests: CNCF distribution (`docker-registry`) processes on
//! loopback ports, a man-in-the-middle HTTP proxy that can tamper with answers or
//! demand credentials, a token service, and images pushed with random content.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::{Digest, DigestAlgorithm, DigestHasher, RepoName, Tag};
use regcopy::{
    ClientOptions, Credentials, Manifest, ManifestReference, OCI_INDEX, OCI_MANIFEST,
    RegistryClient, RegistryEndpoint,
};

/// The outbound policy tests use: the loopback addresses the peers listen on.
pub(crate) fn loopback_policy() -> Arc<outbound::Policy> {
    Arc::new(
        outbound::Policy::parse(&["127.0.0.1".to_owned(), "::1".to_owned()])
            .expect("loopback networks"),
    )
}

pub(crate) fn client_options() -> ClientOptions {
    ClientOptions::new(loopback_policy())
}

pub(crate) fn repo(name: &str) -> RepoName {
    RepoName::parse(name).expect("repository name")
}

pub(crate) fn tag(name: &str) -> Tag {
    Tag::parse(name).expect("tag")
}

/// A plain-HTTP client for a loopback registry.
pub(crate) fn client(registry: &str, credentials: Option<Credentials>) -> RegistryClient {
    RegistryClient::new(
        RegistryEndpoint {
            registry: registry.to_owned(),
            plain_http: true,
            credentials,
        },
        &client_options(),
    )
    .expect("client")
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A `docker-registry` process with its own storage; killed when dropped.
pub(crate) struct PeerRegistry {
    pub(crate) port: u16,
    child: Child,
    _root: tempfile::TempDir,
}

/// bcrypt (cost 4, so tests stay fast) of `s3cret-pass`: docker-registry's htpasswd
/// authentication accepts only bcrypt.
pub(crate) const HTPASSWD_HASH: &str =
    "$2b$04$2a8yuttLjg/WEcw.Npbwce67DvAu7lC.HdOmJ2AnSJNYqLWqs.VCq";

/// Where the Debian package installs the CNCF registry.
const DOCKER_REGISTRY: &str = "/usr/bin/docker-registry";

impl PeerRegistry {
    pub(crate) fn start() -> PeerRegistry {
        PeerRegistry::start_with_auth(None)
    }

    /// A registry requiring Basic authentication as `user` with the bcrypt `hash`.
    pub(crate) fn start_with_htpasswd(user: &str, hash: &str) -> PeerRegistry {
        PeerRegistry::start_with_auth(Some(format!("{user}:{hash}\n")))
    }

    fn start_with_auth(htpasswd: Option<String>) -> PeerRegistry {
        assert!(
            std::path::Path::new(DOCKER_REGISTRY).exists(),
            "{DOCKER_REGISTRY} is missing: apt-get install docker-registry (the copy tests need a real registry)"
        );
        let root = tempfile::tempdir().expect("registry directory");
        let port = free_port();
        let auth = match htpasswd {
            Some(line) => {
                let path = root.path().join("htpasswd");
                std::fs::write(&path, line).expect("htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: test-registry\n    path: {}\n",
                    path.display()
                )
            }
            None => String::new(),
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}health:\n  storagedriver:\n    enabled: false\n",
            root.path().join("data").display()
        );
        let config_path = root.path().join("config.yml");
        std::fs::write(&config_path, config).expect("config");
        let log = std::fs::File::create(root.path().join("registry.log")).expect("log");
        let child = Command::new(DOCKER_REGISTRY)
            .arg("serve")
            .arg(&config_path)
            .env_remove("AWS_CA_BUNDLE")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut registry = PeerRegistry {
            port,
            child,
            _root: root,
        };
        registry.wait_until_listening();
        registry
    }

    /// Waits for the port to accept connections (the process binds it at start).
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self._root.path().join("registry.log"))
                    .unwrap_or_default();
                panic!("docker-registry exited with {status}: {log}");
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "docker-registry did not listen on {} within 20 s",
            self.port
        );
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for PeerRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The digest `skopeo inspect` reports for `reference` on a plain-HTTP registry.
pub(crate) fn skopeo_digest(reference: &str, credentials: Option<&str>) -> String {
    let mut command = Command::new("skopeo");
    command.args(["inspect", "--tls-verify=false"]);
    if let Some(credentials) = credentials {
        command.args(["--creds", credentials]);
    }
    let output = command
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo must be installed (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("skopeo JSON");
    value["Digest"].as_str().expect("Digest").to_owned()
}

/// The raw manifest `skopeo inspect --raw` reads, hashed.
pub(crate) fn skopeo_raw_digest(reference: &str) -> Digest {
    let output = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo must be installed (apt-get install skopeo)");
    assert!(
        output.status.success(),
        "skopeo inspect --raw {reference}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Digest::sha256_of(&output.stdout)
}

/// Deterministic pseudo-random bytes (xorshift), `len` of them, as a stream.
pub(crate) struct RandomBytes {
    state: u64,
    left: u64,
}

impl RandomBytes {
    pub(crate) fn new(seed: u64, len: u64) -> RandomBytes {
        RandomBytes {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            left: len,
        }
    }
}

impl Read for RandomBytes {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let n = buffer
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for chunk in buffer[..n].chunks_mut(8) {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let bytes = self.state.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The digest of a generated blob, computed by streaming it once.
pub(crate) fn random_digest(seed: u64, len: u64) -> Digest {
    let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
    let mut reader = RandomBytes::new(seed, len);
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buffer).expect("generated bytes");
        if n == 0 {
            return hasher.finish();
        }
        hasher.update(&buffer[..n]);
    }
}

/// An image pushed for a test: its manifest and blobs.
#[derive(Debug, Clone)]
pub(crate) struct PushedImage {
    pub(crate) manifest: Manifest,
    pub(crate) blobs: Vec<(Digest, u64)>,
}

/// Pushes an OCI image whose layers are `layer_sizes` bytes of random content (seeded
/// by `seed`, streamed, never held in memory) and tags it.
pub(crate) fn push_image(
    client: &RegistryClient,
    repository: &RepoName,
    reference: Option<&Tag>,
    seed: u64,
    layer_sizes: &[u64],
) -> PushedImage {
    let mut blobs = Vec::new();
    let mut layers = Vec::new();
    for (i, size) in layer_sizes.iter().enumerate() {
        let layer_seed = seed * 1000 + i as u64;
        let digest = random_digest(layer_seed, *size);
        client
            .push_blob(
                repository,
                &digest,
                *size,
                &mut RandomBytes::new(layer_seed, *size),
            )
            .expect("push layer");
        layers.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": digest.to_string(),
            "size": size,
        }));
        blobs.push((digest, *size));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": if seed.is_multiple_of(2) { "amd64" } else { "arm64" },
        "os": "linux",
        "config": { "Labels": { "seed": seed.to_string() } },
        "rootfs": { "type": "layers", "diff_ids": blobs.iter().map(|(d, _)| d.to_string()).collect::<Vec<_>>() },
    }))
    .expect("config JSON");
    let config_digest = Digest::sha256_of(&config);
    client
        .push_blob(
            repository,
            &config_digest,
            config.len() as u64,
            &mut config.as_slice(),
        )
        .expect("push config");
    blobs.push((config_digest.clone(), config.len() as u64));
    let content = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config.len(),
        },
        "layers": layers,
    }))
    .expect("manifest JSON");
    let manifest = Manifest {
        digest: Digest::sha256_of(&content),
        media_type: OCI_MANIFEST.to_owned(),
        content,
    };
    let by = match reference {
        Some(tag) => ManifestReference::Tag(tag.clone()),
        None => ManifestReference::Digest(manifest.digest.clone()),
    };
    client
        .put_manifest(repository, &by, &manifest)
        .expect("push manifest");
    PushedImage { manifest, blobs }
}

/// Pushes an OCI index over `images` (already pushed) and tags it.
pub(crate) fn push_index(
    client: &RegistryClient,
    repository: &RepoName,
    tag: &Tag,
    images: &[&PushedImage],
) -> Manifest {
    let manifests: Vec<_> = images
        .iter()
        .enumerate()
        .map(|(i, image)| {
            serde_json::json!({
                "mediaType": OCI_MANIFEST,
                "digest": image.manifest.digest.to_string(),
                "size": image.manifest.content.len(),
                "platform": { "os": "linux", "architecture": if i == 0 { "amd64" } else { "arm64" } },
            })
        })
        .collect();
    let content = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    }))
    .expect("index JSON");
    let index = Manifest {
        digest: Digest::sha256_of(&content),
        media_type: OCI_INDEX.to_owned(),
        content,
    };
    client
        .put_manifest(repository, &ManifestReference::Tag(tag.clone()), &index)
        .expect("push index");
    index
}

/// One request a proxy or the token service saw.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) authorization: Option<String>,
}

/// What a proxy does to the traffic it relays.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rules {
    /// Flip one byte in the middle of every blob it serves.
    pub(crate) flip_blob_byte: bool,
    /// Answer `HEAD …/manifests/…` with this `Docker-Content-Digest` instead.
    pub(crate) fake_manifest_digest: Option<String>,
    /// Point `Location` headers at this `host:port` instead.
    pub(crate) relocate_to: Option<String>,
    /// Make `Location` headers relative (path and query only).
    pub(crate) relative_location: bool,
    /// Answer blob downloads with a redirect to this base URL (path kept).
    pub(crate) redirect_blobs_to: Option<String>,
    /// Demand this exact `Authorization` value, answering 401 with the challenge
    /// (a `WWW-Authenticate` value) otherwise; it is not passed upstream.
    pub(crate) require_authorization: Option<(String, String)>,
}

/// A man-in-the-middle HTTP/1.1 proxy in front of a registry, one request per
/// connection, recording every request it sees.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    pub(crate) fn start(upstream_port: u16, rules: Rules) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let rules = Arc::new(rules);
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { continue };
                let log = log.clone();
                let rules = rules.clone();
                std::thread::spawn(move || {
                    let _ = relay(connection, upstream_port, &rules, &log);
                });
            }
        });
        Proxy { port, seen }
    }

    pub(crate) fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

struct Head {
    first_line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn remove(&mut self, name: &str) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
    }

    fn set(&mut self, name: &str, value: String) {
        self.remove(name);
        self.headers.push((name.to_owned(), value));
    }

    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut text = format!("{}\r\n", self.first_line);
        for (key, value) in &self.headers {
            text.push_str(&format!("{key}: {value}\r\n"));
        }
        text.push_str("\r\n");
        out.write_all(text.as_bytes())
    }
}

fn read_head(reader: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let mut first_line = String::new();
    if reader.read_line(&mut first_line)? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(Some(Head {
        first_line: first_line.trim_end().to_owned(),
        headers,
    }))
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut text = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (key, value) in headers {
        text.push_str(&format!("{key}: {value}\r\n"));
    }
    text.push_str("\r\n");
    out.write_all(text.as_bytes())?;
    out.write_all(body)
}

fn relay(
    client: TcpStream,
    upstream_port: u16,
    rules: &Rules,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let mut out = client.try_clone()?;
    let mut reader = BufReader::new(client);
    let Some(mut request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = request.first_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    log.lock().expect("log").push(Seen {
        method: method.clone(),
        target: target.clone(),
        authorization: request.get("authorization").map(str::to_owned),
    });
    let length: u64 = request
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if let Some((expected, challenge)) = &rules.require_authorization {
        if request.get("authorization") != Some(expected.as_str()) {
            std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink())?;
            return respond(
                &mut out,
                "401 Unauthorized",
                &[
                    ("WWW-Authenticate", challenge.clone()),
                    ("Content-Type", "application/json".to_owned()),
                ],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
        request.remove("authorization");
    }
    let is_blob_get = method == "GET" && target.contains("/blobs/sha256:");
    if let Some(base) = &rules.redirect_blobs_to
        && is_blob_get
    {
        return respond(
            &mut out,
            "307 Temporary Redirect",
            &[("Location", format!("{base}{target}"))],
            b"",
        );
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    request.set("Connection", "close".to_owned());
    request.write(&mut upstream)?;
    std::io::copy(&mut (&mut reader).take(length), &mut upstream)?;
    let mut upstream_reader = BufReader::new(upstream);
    let Some(mut response) = read_head(&mut upstream_reader)? else {
        return Ok(());
    };
    if let Some(location) = response.get("location").map(str::to_owned) {
        let path = match location.strip_prefix("http://") {
            Some(rest) => rest
                .find('/')
                .map_or("/", |slash| &rest[slash..])
                .to_owned(),
            None => location.clone(),
        };
        if let Some(authority) = &rules.relocate_to {
            response.set("Location", format!("http://{authority}{path}"));
        } else if rules.relative_location {
            response.set("Location", path);
        }
    }
    let is_manifest_head = method == "HEAD" && target.contains("/manifests/");
    if let Some(fake) = &rules.fake_manifest_digest
        && is_manifest_head
    {
        response.set("Docker-Content-Digest", fake.clone());
    }
    response.set("Connection", "close".to_owned());
    response.write(&mut out)?;
    if method == "HEAD" {
        return Ok(());
    }
    let body_length: Option<u64> = response.get("content-length").and_then(|v| v.parse().ok());
    match body_length {
        Some(body_length) if rules.flip_blob_byte && is_blob_get && body_length > 0 => {
            let middle = body_length / 2;
            std::io::copy(&mut (&mut upstream_reader).take(middle), &mut out)?;
            let mut byte = [0u8; 1];
            upstream_reader.read_exact(&mut byte)?;
            byte[0] ^= 0x01;
            out.write_all(&byte)?;
            std::io::copy(&mut upstream_reader, &mut out)?;
        }
        _ => {
            std::io::copy(&mut upstream_reader, &mut out)?;
        }
    }
    Ok(())
}

/// A token service for the Bearer flow: hands out `token` to `username:password`
/// (Basic), and records each request.
pub(crate) struct TokenService {
    pub(crate) port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl TokenService {
    pub(crate) fn start(credentials: Credentials, token: &str) -> TokenService {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token service");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let expected = basic(&credentials);
        let token = token.to_owned();
        std::thread::spawn(move || {
            for connection in listener.incoming() {
                let Ok(connection) = connection else { continue };
                let Ok(mut out) = connection.try_clone() else {
                    continue;
                };
                let mut reader = BufReader::new(connection);
                let Ok(Some(request)) = read_head(&mut reader) else {
                    continue;
                };
                let target = request
                    .first_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_owned();
                let authorization = request.get("authorization").map(str::to_owned);
                log.lock().expect("log").push(Seen {
                    method: "GET".to_owned(),
                    target,
                    authorization: authorization.clone(),
                });
                let _ = if authorization.as_deref() == Some(expected.as_str()) {
                    respond(
                        &mut out,
                        "200 OK",
                        &[("Content-Type", "application/json".to_owned())],
                        format!(r#"{{"token":"{token}","expires_in":300}}"#).as_bytes(),
                    )
                } else {
                    respond(&mut out, "401 Unauthorized", &[], b"{}")
                };
            }
        });
        TokenService { port, seen }
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("log").clone()
    }
}

/// The `Authorization` value of Basic credentials.
pub(crate) fn basic(credentials: &Credentials) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", credentials.username, credentials.password))
    )
}

/// Peak resident memory of this process (VmHWM), in bytes.
pub(crate) fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("VmHWM value");
    kib * 1024
}

/// Writes an OCI layout with `mkimage.py` and pushes it with skopeo; returns the
/// manifest digest mkimage reports.
pub(crate) fn mkimage_and_push(reference: &str, layers: &str) -> String {
    let layout = tempfile::tempdir().expect("layout directory");
    let script = PathBuf::from("/work/shared/tools/mkimage.py");
    assert!(script.exists(), "{} is missing", script.display());
    let output = Command::new("python3")
        .arg(&script)
        .arg(layout.path())
        .args(["--layers", layers, "--tag", "v1"])
        .output()
        .expect("python3 must be installed");
    assert!(
        output.status.success(),
        "mkimage.py: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&output.stdout).expect("mkimage JSON");
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:v1", layout.path().display()))
        .arg(format!("docker://{reference}"))
        .status()
        .expect("skopeo must be installed");
    assert!(status.success(), "skopeo copy to {reference} failed");
    info["manifest"]
        .as_str()
        .expect("manifest digest")
        .to_owned()
}
