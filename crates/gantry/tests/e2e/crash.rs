//! A crash (kill -9) in the middle of uploads loses nothing that was acknowledged and
//! leaves nothing partial to be served.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::support::{GantryServer, run, sha256_hex, start_upload_session, stdout_of};

fn basic(creds: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(creds)
}

/// Uploads `content` monolithically and returns its digest (the server acknowledged it).
fn upload(address: &str, creds: &str, repository: &str, content: &[u8]) -> String {
    let digest = format!("sha256:{}", sha256_hex(content));
    let path = std::env::temp_dir().join(format!("gantry-crash-{}", &digest[7..19]));
    std::fs::write(&path, content).expect("write temp file");
    let status = stdout_of(
        Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-u",
                creds,
                "-X",
                "POST",
            ])
            .arg("--data-binary")
            .arg(format!("@{}", path.display()))
            .arg(format!(
                "http://{address}/v2/{repository}/blobs/uploads/?digest={digest}"
            )),
    );
    let _ = std::fs::remove_file(&path);
    assert_eq!(status, "201", "upload of {digest} acknowledged");
    digest
}

fn blob_status(address: &str, creds: &str, repository: &str, digest: &str) -> String {
    stdout_of(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", creds])
            .arg(format!("http://{address}/v2/{repository}/blobs/{digest}")),
    )
}

#[test]
fn a_kill_during_uploads_keeps_acknowledged_blobs_and_serves_nothing_partial() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = GantryServer::start(dir.path(), &[], &[]);
    let creds = server.creds();
    let address = server.address.clone();
    let acknowledged: Vec<(Vec<u8>, String)> = (0..5u8)
        .map(|n| {
            let content = vec![n; 256 << 10];
            let digest = upload(&address, &creds, "acme/app", &content);
            (content, digest)
        })
        .collect();

    // Two uploads in flight when the process dies: a monolithic one and a chunked one.
    let unfinished = vec![9u8; 4 << 20];
    let unfinished_digest = format!("sha256:{}", sha256_hex(&unfinished));
    let mut monolithic = TcpStream::connect(&address).expect("connect");
    write!(
        monolithic,
        "POST /v2/acme/app/blobs/uploads/?digest={unfinished_digest} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
        basic(&creds),
        unfinished.len()
    )
    .expect("head");
    monolithic
        .write_all(&unfinished[..unfinished.len() / 2])
        .expect("half the body");
    let location = start_upload_session(&address, &creds, "acme/app");
    let mut chunked = TcpStream::connect(&address).expect("connect");
    write!(
        chunked,
        "PATCH {location} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Basic {}\r\nContent-Length: {}\r\n\r\n",
        basic(&creds),
        unfinished.len()
    )
    .expect("head");
    chunked
        .write_all(&unfinished[..1 << 20])
        .expect("part of the chunk");
    crate::serve::wait_for_metric(&address, "gantry_uploads_in_flight 2");

    run(Command::new("kill").args(["-KILL", &server.pid().to_string()]));
    let status = server.wait();
    assert!(!status.success(), "the server was killed");
    let mut rest = Vec::new();
    let _ = monolithic.read_to_end(&mut rest);

    let restarted = GantryServer::start(dir.path(), &[], &[]);
    for (content, digest) in &acknowledged {
        let body = run(Command::new("curl")
            .args(["-s", "-f", "-u", &creds])
            .arg(format!(
                "http://{}/v2/acme/app/blobs/{digest}",
                restarted.address
            )))
        .stdout;
        assert_eq!(&body, content, "acknowledged blob {digest} survives intact");
    }
    assert_eq!(
        blob_status(&restarted.address, &creds, "acme/app", &unfinished_digest),
        "404",
        "the interrupted blob is not served"
    );
    let session = stdout_of(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-u", &creds])
            .arg(format!("http://{}{location}", restarted.address)),
    );
    assert_eq!(session, "204", "the interrupted session can be resumed");
    let range = stdout_of(
        Command::new("curl")
            .args(["-s", "-D", "-", "-o", "/dev/null", "-u", &creds])
            .arg(format!("http://{}{location}", restarted.address)),
    );
    assert!(
        range.to_ascii_lowercase().contains("range: 0-0"),
        "no byte of the interrupted chunk was recorded: {range}"
    );
}
