//! Connections held by clients that never finish: half-open request heads
//! (slowloris), heads dripped byte by byte, stalled upload bodies, idle keep-alive
//! connections, too many connections from one address, and malformed framing — each
//! against the real binary over real TCP.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{GantryServer, sha256_hex, start_upload_session, stdout_of};

/// Starts a server with `http` as its `[http]` section.
fn start(dir: &Path, http: &str) -> GantryServer {
    let config = dir.join("gantry.toml");
    std::fs::write(&config, format!("[http]\n{http}\n")).expect("write the configuration");
    GantryServer::start(
        dir,
        &["--config", config.to_str().expect("a UTF-8 path")],
        &[],
    )
}

/// A connection to `address` from the loopback address `source` (127.0.0.N).
async fn connect_from(source: [u8; 4], address: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .expect("bind a loopback source address");
    socket
        .connect(address.parse().expect("an address"))
        .await
        .expect("connect")
}

/// Reads until the peer closes the connection (or `within` passes: `None`).
async fn read_to_close(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut answer = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(answer),
        Err(_) => None,
    }
}

/// The HTTP status `curl ARGS` got.
fn curl_status(args: &[&str]) -> String {
    stdout_of(
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(args),
    )
}

/// [`curl_status`] with a one-second budget (`000` if no answer came in time).
fn quick_status(args: &[&str]) -> String {
    let mut all = vec!["--max-time", "1"];
    all.extend_from_slice(args);
    curl_status(&all)
}

/// Pushes one small blob and a manifest using it, each request within a second.
fn quick_push(server: &GantryServer, dir: &Path, seed: &str) {
    let blob = format!("layer of {seed}");
    let blob_path = dir.join(format!("{seed}.blob"));
    std::fs::write(&blob_path, &blob).expect("write the blob");
    let blob_digest = format!("sha256:{}", sha256_hex(blob.as_bytes()));
    let creds = server.creds();
    let base = format!("http://{}/v2/acme/quick", server.address);
    let status = quick_status(&[
        "-u",
        &creds,
        "-X",
        "POST",
        "-H",
        "content-type: application/octet-stream",
        "--data-binary",
        &format!("@{}", blob_path.display()),
        &format!("{base}/blobs/uploads/?digest={blob_digest}"),
    ]);
    assert_eq!(status, "201", "the blob upload answered in time");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/vnd.example.quick",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": blob_digest, "size": blob.len() },
        "layers": [],
    })
    .to_string();
    let status = quick_status(&[
        "-u",
        &creds,
        "-X",
        "PUT",
        "-H",
        "content-type: application/vnd.oci.image.manifest.v1+json",
        "--data-binary",
        &manifest,
        &format!("{base}/manifests/{seed}"),
    ]);
    assert_eq!(status, "201", "the manifest push answered in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_open_connections_leave_health_checks_and_pushes_answering_within_a_second()
 {
    // The test holds 2,000 sockets of its own.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the test's open file limit");
    let dir = tempfile::tempdir().expect("temporary directory");
    // Room for every one of them, so the server really holds 2,000 half-open heads.
    let server = start(
        dir.path(),
        "header_read_timeout_seconds = 3\nmax_connections_per_address = 4096",
    );
    let mut attackers = Vec::new();
    for _ in 0..2_000 {
        let mut stream = connect_from([127, 0, 0, 2], &server.address).await;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gantry\r\nX-Slow: ")
            .await
            .expect("send half a head");
        attackers.push(stream);
    }
    for round in 0..5 {
        assert_eq!(
            quick_status(&[&format!("http://{}/healthz", server.address)]),
            "200",
            "round {round}"
        );
        quick_push(&server, dir.path(), &format!("during-{round}"));
    }
    // Every half-open head is cut once the header read timeout has passed.
    let started = Instant::now();
    for (i, stream) in attackers.iter_mut().enumerate() {
        let answer = read_to_close(stream, Duration::from_secs(30)).await;
        assert!(
            answer.is_some(),
            "connection {i} was still open after {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        quick_status(&[&format!("http://{}/healthz", server.address)]),
        "200"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_connections_than_its_share() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(dir.path(), "max_connections_per_address = 100");
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(connect_from([127, 0, 0, 3], &server.address).await);
    }
    // The server keeps 100 and closes the rest at once.
    let mut reads = tokio::task::JoinSet::new();
    for mut stream in held {
        reads.spawn(async move {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut byte)).await;
            (stream, matches!(read, Ok(Ok(0))))
        });
    }
    let mut held = Vec::new();
    let mut closed = 0;
    while let Some(outcome) = reads.join_next().await {
        let (stream, was_closed) = outcome.expect("a read task");
        if was_closed {
            closed += 1;
        } else {
            held.push(stream);
        }
    }
    assert_eq!(
        closed, 200,
        "exactly the connections beyond the share are closed"
    );
    // Other addresses are served as usual.
    assert_eq!(
        quick_status(&[&format!("http://{}/healthz", server.address)]),
        "200"
    );
    // A held connection is a working one.
    let stream = held.iter_mut().find(|_| true).expect("a held connection");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gantry\r\nConnection: close\r\n\r\n")
        .await
        .expect("send a request");
    let answer = read_to_close(stream, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_dripped_byte_by_byte_is_cut_at_the_header_read_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(dir.path(), "header_read_timeout_seconds = 2");
    let mut stream = connect_from([127, 0, 0, 1], &server.address).await;
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: gantry\r\nX-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut cut = false;
    for byte in head {
        if stream.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        let mut buffer = [0u8; 64];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buffer)).await
        {
            cut = true;
            break;
        }
    }
    assert!(
        cut,
        "a head still unfinished after {:?} was not cut",
        started.elapsed()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "cut before the timeout: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(
        dir.path(),
        "idle_timeout_seconds = 2\nheader_read_timeout_seconds = 30",
    );
    let mut stream = connect_from([127, 0, 0, 1], &server.address).await;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: gantry\r\n\r\n")
        .await
        .expect("send a request");
    let mut buffer = [0u8; 1024];
    let n = stream.read(&mut buffer).await.expect("an answer");
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    let rest = read_to_close(&mut stream, Duration::from_secs(30))
        .await
        .expect("the idle connection was closed");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    // The server counts from when it finished the response, a moment before the
    // client read it.
    assert!(
        idle_from.elapsed() >= Duration::from_millis(1_500),
        "closed long before the idle timeout: {:?}",
        idle_from.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_body_is_cut_and_its_session_resumes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(
        dir.path(),
        "header_read_timeout_seconds = 2\nmin_body_bytes_per_second = 1024",
    );
    let creds = server.creds();
    let location = start_upload_session(&server.address, &creds, "acme/stalled");
    let content = vec![7u8; 100_000];
    let mut stream = connect_from([127, 0, 0, 1], &server.address).await;
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(&creds);
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: gantry\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\nContent-Range: 0-{}\r\n\r\n",
        content.len(),
        content.len() - 1
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    stream
        .write_all(&content[..10])
        .await
        .expect("send the first bytes");
    // Then nothing: the server must answer and cut, not wait.
    let answer = read_to_close(&mut stream, Duration::from_secs(30))
        .await
        .expect("the stalled upload was cut");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("BLOB_UPLOAD_INVALID") && answer.contains("too slowly"),
        "{answer}"
    );
    // The session lost only that chunk: it resumes from the start.
    let url = format!("http://{}{location}", server.address);
    let status = stdout_of(Command::new("curl").args([
        "-s",
        "-D",
        "-",
        "-o",
        "/dev/null",
        "-u",
        &creds,
        &url,
    ]));
    assert!(status.starts_with("HTTP/1.1 204"), "{status}");
    assert!(
        status.to_ascii_lowercase().contains("range: 0-0"),
        "{status}"
    );
    let chunk_path = dir.path().join("chunk");
    std::fs::write(&chunk_path, &content).expect("write the chunk");
    let sent = curl_status(&[
        "-u",
        &creds,
        "-X",
        "PATCH",
        "-H",
        "content-type: application/octet-stream",
        "-H",
        &format!("content-range: 0-{}", content.len() - 1),
        "--data-binary",
        &format!("@{}", chunk_path.display()),
        &url,
    ]);
    assert_eq!(sent, "202");
    let digest = format!("sha256:{}", sha256_hex(&content));
    let separator = if location.contains('?') { '&' } else { '?' };
    let finished = curl_status(&[
        "-u",
        &creds,
        "-X",
        "PUT",
        &format!("{url}{separator}digest={digest}"),
    ]);
    assert_eq!(finished, "201");
}

/// Sends `request` on a fresh connection and reads the answer until the server closes.
async fn exchange(address: &str, request: &[u8]) -> String {
    let mut stream = connect_from([127, 0, 0, 1], address).await;
    stream.write_all(request).await.expect("send the request");
    let answer = read_to_close(&mut stream, Duration::from_secs(30))
        .await
        .expect("the server answered and closed");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_framing_is_answered_in_the_protocols_envelope_where_the_server_sees_it() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(dir.path(), "");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(server.creds());
    // A chunk size that is not hexadecimal, mid-upload: the handler sees a broken body.
    let digest = format!("sha256:{}", sha256_hex(b"whatever"));
    let request = format!(
        "POST /v2/acme/framing/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: gantry\r\n\
         Authorization: Basic {basic}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
         4\r\nwhat\r\nzz\r\never\r\n0\r\n\r\n"
    );
    let answer = exchange(&server.address, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("\"code\":\"BLOB_UPLOAD_INVALID\""),
        "{answer}"
    );
    // Too many header fields: 431 in each protocol's own envelope.
    let many: String = (0..150).map(|i| format!("X-Filler-{i}: 1\r\n")).collect();
    let answer = exchange(
        &server.address,
        format!("GET /v2/ HTTP/1.1\r\nHost: gantry\r\n{many}Connection: close\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("\"errors\":[{\"code\":\"UNSUPPORTED\""),
        "{answer}"
    );
    let answer = exchange(
        &server.address,
        format!("GET /api/v1/apps HTTP/1.1\r\nHost: gantry\r\n{many}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains("\"code\":\"headers_too_large\""),
        "{answer}"
    );
    // Lengths the HTTP parser itself refuses: a plain 400 and the connection closed,
    // before any handler runs (nothing is stored).
    for length in ["abc", "-5", "5\r\nContent-Length: 6"] {
        let answer = exchange(
            &server.address,
            format!("POST /v2/acme/framing/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: gantry\r\nAuthorization: Basic {basic}\r\nContent-Length: {length}\r\n\r\nwhatever").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{length:?}: {answer}");
    }
    let catalog = stdout_of(Command::new("curl").args([
        "-s",
        "-u",
        &server.creds(),
        &format!("http://{}/v2/_catalog", server.address),
    ]));
    assert_eq!(
        catalog.trim(),
        "{\"repositories\":[]}",
        "nothing was created"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_given_before_the_body_was_read_reaches_a_client_still_sending_it() {
    // A proxy forwards a request body whole before it reads the answer; a server that
    // answers early and closes with the body unread resets the connection, and the
    // answer is lost. The body is read to its end and discarded instead.
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = start(dir.path(), "");
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(server.creds());
    let body = vec![1u8; 32 << 20];
    let head = format!(
        "PUT /v2/acme/app/blobs/uploads/0123456789abcdef0123456789abcdef?digest=sha256:{} HTTP/1.1\r\n\
         Host: gantry\r\nAuthorization: Basic {basic}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        "a".repeat(64),
        body.len()
    );
    let mut stream = connect_from([127, 0, 0, 1], &server.address).await;
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    for chunk in body.chunks(64 << 10) {
        stream
            .write_all(chunk)
            .await
            .expect("the whole body is taken, not reset");
    }
    let mut answer = vec![0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("an answer within 10 s")
        .expect("the answer is read");
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(answer.contains("BLOB_UPLOAD_UNKNOWN"), "{answer}");
}
