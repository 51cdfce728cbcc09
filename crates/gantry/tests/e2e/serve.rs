//! `gantry serve` as an operator meets it: zero-config start, configuration layers,
//! logs, health endpoints and graceful shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::support::{GantryServer, start_upload_session, stdout_of};

fn curl_status(args: &[&str]) -> String {
    stdout_of(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args),
    )
}

/// Waits (bounded) until /metrics contains `line`.
pub(crate) fn wait_for_metric(address: &str, line: &str) {
    for _ in 0..500 {
        let metrics =
            stdout_of(Command::new("curl").args(["-s", &format!("http://{address}/metrics")]));
        if metrics.lines().any(|l| l.trim() == line) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("/metrics never showed {line:?}");
}

#[test]
fn a_first_start_creates_the_data_directory_and_prints_the_admin_token_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let first = GantryServer::start(dir.path(), &[], &[]);
    let token = first.token().to_owned();
    assert!(token.starts_with("gnt_"), "{token}");
    assert!(
        dir.path().join("gantry-data/gantry.db").is_file(),
        "SQLite database in ./gantry-data"
    );
    assert!(
        dir.path().join("gantry-data/blobs").is_dir(),
        "blob directory in ./gantry-data"
    );
    assert!(first.terminate().success());

    let second = GantryServer::start(dir.path(), &[], &[]);
    assert_eq!(
        second.token, None,
        "the token is printed on the first start only"
    );
    let url = format!("http://{}/v2/", second.address);
    assert_eq!(
        curl_status(&["-u", &format!("admin:{token}"), &url]),
        "200",
        "the first token still works"
    );
    assert_eq!(curl_status(&["-u", "admin:gnt_wrong", &url]), "401");
    assert_eq!(
        curl_status(&[&url]),
        "401",
        "pulls need credentials by default"
    );
}

#[test]
fn sigterm_lets_an_in_flight_upload_finish_before_exiting() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = GantryServer::start(dir.path(), &[], &[]);
    let creds = server.creds();
    let location = start_upload_session(&server.address, &creds, "acme/app");
    let chunk = vec![7u8; 1 << 20];
    let mut stream = TcpStream::connect(&server.address).expect("connect");
    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&creds)
    };
    write!(
        stream,
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        server.address,
        chunk.len()
    )
    .expect("write head");
    stream
        .write_all(&chunk[..chunk.len() / 2])
        .expect("first half");
    stream.flush().expect("flush");
    let address = server.address.clone();
    // Signal only once the server is inside the request (a connection whose request
    // head was not read yet is closed by a graceful shutdown, by design).
    wait_for_metric(&address, "gantry_uploads_in_flight 1");
    server.signal_terminate();
    server.wait_for_log("shutting down");
    stream
        .write_all(&chunk[chunk.len() / 2..])
        .expect("second half");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the in-flight upload completed: {response}"
    );
    assert!(
        response.to_ascii_lowercase().contains("range: 0-1048575"),
        "{response}"
    );
    let status = server.wait();
    assert!(status.success(), "gantry exits 0 after SIGTERM: {status}");
    assert!(
        TcpStream::connect(&address).is_err(),
        "nothing listens after shutdown"
    );
}

#[test]
fn flags_override_the_environment_which_overrides_the_file() {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join("gantry.toml"),
        "data_dir = \"from-file\"\nanonymous_pull = true\n",
    )
    .expect("write config");
    let from_env = GantryServer::start(dir.path(), &[], &[("GANTRY_DATA_DIR", "from-env")]);
    assert!(
        dir.path().join("from-env/gantry.db").is_file(),
        "the environment beats the file"
    );
    assert!(!dir.path().join("from-file").exists());
    assert_eq!(
        curl_status(&[&format!("http://{}/v2/_catalog", from_env.address)]),
        "200",
        "anonymous_pull came from the file"
    );
    drop(from_env);
    let from_flag = GantryServer::start(
        dir.path(),
        &["--data-dir", "from-flag"],
        &[("GANTRY_DATA_DIR", "from-env")],
    );
    assert!(
        dir.path().join("from-flag/gantry.db").is_file(),
        "the flag beats the environment"
    );
    drop(from_flag);
}

#[test]
fn a_bad_configuration_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "listen_on = 5\n").expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_gantry"))
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .expect("gantry runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("broken.toml") && stderr.contains("listen_on"),
        "{stderr}"
    );
}

#[test]
fn serve_help_documents_every_setting_with_its_environment_variable() {
    let help = stdout_of(Command::new(env!("CARGO_BIN_EXE_gantry")).args(["serve", "--help"]));
    for variable in [
        "GANTRY_CONFIG",
        "GANTRY_LISTEN",
        "GANTRY_DATA_DIR",
        "GANTRY_DATABASE_URL",
        "GANTRY_BLOB_STORE",
        "GANTRY_FSYNC",
        "GANTRY_LOG_FORMAT",
        "GANTRY_ANONYMOUS_PULL",
        "GANTRY_MAX_CONNECTIONS",
        "GANTRY_MAX_MANIFEST_BYTES",
        "GANTRY_MAX_BLOB_BYTES",
        "GANTRY_UPLOAD_TTL_SECONDS",
        "GANTRY_MAINTENANCE_INTERVAL_SECONDS",
        "GANTRY_REPOSITORY_CREATION",
    ] {
        assert!(
            help.contains(variable),
            "--help mentions {variable}:\n{help}"
        );
    }
}

#[test]
fn json_logs_health_readiness_and_metrics_answer_over_http() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = GantryServer::start(dir.path(), &["--log-format", "json"], &[]);
    let base = format!("http://{}", server.address);
    assert_eq!(curl_status(&[&format!("{base}/healthz")]), "200");
    let ready = stdout_of(Command::new("curl").args(["-s", &format!("{base}/readyz")]));
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("readyz JSON");
    assert_eq!(ready["database"]["status"], "ok");
    assert_eq!(ready["database_kind"], "sqlite");
    assert_eq!(ready["blob_store"]["status"], "ok");
    curl_status(&[
        "-u",
        &server.creds(),
        &format!("{base}/v2/acme/app/manifests/missing"),
    ]);
    let metrics = stdout_of(Command::new("curl").args(["-s", &format!("{base}/metrics")]));
    assert!(metrics.contains("gantry_http_requests_total{route=\"registry_manifest\",method=\"GET\",status=\"404\"} 1"), "{metrics}");
    assert!(metrics.contains("gantry_uploads_in_flight"), "{metrics}");
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
    }
}
