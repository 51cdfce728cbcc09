//! The CDN-invalidation hook: an HTTP POST through the outbound guard, or a program.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use domain::application::{HttpUrl, InvalidationHook};
use site::{InvalidationRequest, invalidate};

fn request() -> InvalidationRequest {
    InvalidationRequest {
        application: "web".to_owned(),
        environment: "prod".to_owned(),
        digest: format!("sha256:{}", "b".repeat(64)),
        deployment_id: 42,
        destination: "s3://sites/web".to_owned(),
    }
}

/// What a hook program may see of this process's environment, as the server hands it.
fn programs() -> deploy::ChildEnvironment {
    deploy::ChildEnvironment::inherited(|name| std::env::var_os(name))
}

fn loopback_allowed() -> Arc<outbound::Policy> {
    Arc::new(outbound::Policy::parse(&["127.0.0.1".to_owned()]).expect("policy"))
}

/// Serves one request with `status`, returning the request line and body it got.
fn one_shot_server(status: u16) -> (String, std::thread::JoinHandle<(String, String)>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/invalidate", listener.local_addr().expect("addr"));
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut request_line = String::new();
        reader.read_line(&mut request_line).expect("request line");
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).expect("body");
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        )
        .expect("respond");
        (
            request_line.trim().to_owned(),
            String::from_utf8(body).expect("utf-8"),
        )
    });
    (url, handle)
}

#[tokio::test]
async fn an_http_hook_is_posted_the_paths_and_the_deployment() {
    let (url, server) = one_shot_server(202);
    let hook = InvalidationHook::Http(HttpUrl::parse(&url).expect("url"));
    let note = invalidate(
        &hook,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_secs(10),
    )
    .await
    .expect("invalidated");
    assert!(note.contains("202"), "{note}");
    let (request_line, body) = server.join().expect("server");
    assert_eq!(request_line, "POST /invalidate HTTP/1.1");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["paths"], serde_json::json!(["/*"]));
    assert_eq!(body["digest"], serde_json::json!(request().digest));
    assert_eq!(body["deployment_id"], serde_json::json!(42));
    assert_eq!(body["application"], serde_json::json!("web"));
}

#[tokio::test]
async fn a_failing_http_hook_is_transient_on_5xx_and_final_on_4xx() {
    let (url, server) = one_shot_server(503);
    let hook = InvalidationHook::Http(HttpUrl::parse(&url).expect("url"));
    let error = invalidate(
        &hook,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_secs(10),
    )
    .await
    .expect_err("503");
    assert!(error.transient, "{error}");
    server.join().expect("server");

    let (url, server) = one_shot_server(403);
    let hook = InvalidationHook::Http(HttpUrl::parse(&url).expect("url"));
    let error = invalidate(
        &hook,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_secs(10),
    )
    .await
    .expect_err("403");
    assert!(!error.transient, "{error}");
    server.join().expect("server");
}

#[tokio::test]
async fn an_http_hook_on_a_private_address_is_refused_by_the_outbound_guard() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/invalidate", listener.local_addr().expect("addr"));
    let hook = InvalidationHook::Http(HttpUrl::parse(&url).expect("url"));
    let error = invalidate(
        &hook,
        &request(),
        &programs(),
        Arc::new(outbound::Policy::default()),
        Duration::from_secs(10),
    )
    .await
    .expect_err("loopback is not allowed");
    assert!(!error.transient, "{error}");
    assert!(error.message.contains("loopback"), "{error}");
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(
        listener.accept().is_err(),
        "the guard let a connection through"
    );
}

#[tokio::test]
async fn a_command_hook_runs_with_the_deployment_in_its_environment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("seen");
    let hook = InvalidationHook::Command {
        program: "sh".to_owned(),
        args: vec![
            "-c".to_owned(),
            format!(
                "echo \"$GANTRY_APP $GANTRY_ENV $GANTRY_DIGEST $GANTRY_DEPLOYMENT_ID $GANTRY_INVALIDATE_PATHS $GANTRY_DESTINATION ${{DATABASE_URL:-unset}}\" > {}",
                out.display()
            ),
        ],
    };
    invalidate(
        &hook,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_secs(10),
    )
    .await
    .expect("ran");
    assert_eq!(
        std::fs::read_to_string(&out).expect("read").trim(),
        format!("web prod {} 42 /* s3://sites/web unset", request().digest)
    );

    let failing = InvalidationHook::Command {
        program: "sh".to_owned(),
        args: vec!["-c".to_owned(), "echo cdn says no >&2; exit 3".to_owned()],
    };
    let error = invalidate(
        &failing,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_secs(10),
    )
    .await
    .expect_err("exit 3");
    assert!(!error.transient);
    assert!(error.message.contains("cdn says no"), "{error}");
}

#[tokio::test]
async fn a_command_hook_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pid_file = dir.path().join("child.pid");
    let hook = InvalidationHook::Command {
        program: "sh".to_owned(),
        args: vec![
            "-c".to_owned(),
            format!("sleep 60 & echo $! > {}; wait", pid_file.display()),
        ],
    };
    let error = invalidate(
        &hook,
        &request(),
        &programs(),
        loopback_allowed(),
        Duration::from_millis(500),
    )
    .await
    .expect_err("timed out");
    assert!(error.transient, "{error}");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    // The grandchild got SIGKILL with its group; it is gone (or a zombie awaiting its
    // reaper, state Z) once the signal is delivered.
    let dead = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| stat.contains(") Z "))
            .unwrap_or(true)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dead() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(dead(), "the hook's child outlived the timeout");
}
