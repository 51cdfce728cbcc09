//! A web UI session is a row in the shared database: with two replicas of `gantry
//! serve` on one PostgreSQL database, a person who signs in on one is served by the
//! other; signing out on one, or revoking the token a session was opened with through
//! the other, ends the session on both at their next request.

use std::process::Command;

use serde_json::Value;

use crate::support::{Answer, GantryServer, curl};

const PASSWORD: &str = "a long staff password";

/// The `name=value` of the session cookie an answer set.
fn session_cookie(answer: &Answer) -> String {
    answer
        .header("set-cookie")
        .and_then(|cookie| cookie.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

/// Whether `cookie` is a live session on `server` (its board answers 200, not a
/// redirect to sign in).
fn signed_in(server: &GantryServer, cookie: &str) -> bool {
    let answer = curl(
        &format!("http://{}/", server.address),
        &["-H", &format!("cookie: {cookie}")],
    );
    match answer.status {
        200 => true,
        303 => false,
        other => panic!("the board answered {other}: {}", answer.body),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ended_on_one_replica_is_refused_by_the_other() {
    let database = testkit::TestDatabase::create(testkit::Backend::Postgres).await;
    let url = database.url().to_owned();
    tokio::task::spawn_blocking(move || {
        let (dir_a, dir_b) = (
            tempfile::tempdir().expect("directory"),
            tempfile::tempdir().expect("directory"),
        );
        let a = GantryServer::start(dir_a.path(), &["--database-url", &url], &[]);
        let b = GantryServer::start(dir_b.path(), &["--database-url", &url], &[]);
        let admin = a.token().to_owned();
        let gantry = |args: &[&str], stdin: &str| {
            let mut child = Command::new(env!("CARGO_BIN_EXE_gantry"))
                .args(args)
                .current_dir(dir_a.path())
                .env("HOME", dir_a.path())
                .env("GANTRY_URL", format!("http://{}", a.address))
                .env("GANTRY_TOKEN", &admin)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("run gantry");
            std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin.as_bytes())
                .expect("write stdin");
            let output = child.wait_with_output().expect("gantry finishes");
            assert!(output.status.success(), "gantry {args:?}: {output:?}");
            String::from_utf8_lossy(&output.stdout).trim().to_owned()
        };
        gantry(&["user", "create", "sam", "--role", "staff"], "");
        gantry(&["user", "passwd", "sam"], &format!("{PASSWORD}\n"));

        // Signed in on A, served by B; signed out on B, refused by A.
        let answer = curl(
            &format!("http://{}/sign-in", a.address),
            &[
                "--data-urlencode",
                "user=sam",
                "--data-urlencode",
                &format!("password={PASSWORD}"),
            ],
        );
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = session_cookie(&answer);
        assert!(signed_in(&b, &cookie), "B serves A's session");
        let board = curl(
            &format!("http://{}/", b.address),
            &["-H", &format!("cookie: {cookie}")],
        );
        let marker = "name=\"csrf\" value=\"";
        let start = board.body.find(marker).expect("a CSRF token") + marker.len();
        let csrf = board.body[start..]
            .split('"')
            .next()
            .expect("token")
            .to_owned();
        let answer = curl(
            &format!("http://{}/sign-out", b.address),
            &[
                "-H",
                &format!("cookie: {cookie}"),
                "--data-urlencode",
                &format!("csrf={csrf}"),
            ],
        );
        assert_eq!(answer.status, 303, "{}", answer.body);
        assert!(!signed_in(&a, &cookie), "A refuses the session B ended");
        assert!(!signed_in(&b, &cookie));

        // Signed in on B with a token; revoking the token through A ends it on both.
        let token = gantry(&["token", "create", "sam"], "");
        let answer = curl(
            &format!("http://{}/sign-in", b.address),
            &[
                "--data-urlencode",
                "with=token",
                "--data-urlencode",
                &format!("token={token}"),
            ],
        );
        assert_eq!(answer.status, 303, "{}", answer.body);
        let cookie = session_cookie(&answer);
        assert!(signed_in(&a, &cookie) && signed_in(&b, &cookie));
        let bearer = format!("authorization: Bearer {admin}");
        let tokens = curl(
            &format!("http://{}/api/v1/users/sam/tokens", a.address),
            &["-H", &bearer],
        );
        let tokens: Value = serde_json::from_str(&tokens.body).expect("JSON");
        let id = tokens["tokens"][0]["id"]
            .as_str()
            .expect("token id")
            .to_owned();
        let answer = curl(
            &format!("http://{}/api/v1/tokens/{id}", a.address),
            &["-X", "DELETE", "-H", &bearer],
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(
            !signed_in(&b, &cookie),
            "B refuses the session of a token revoked through A"
        );
        assert!(!signed_in(&a, &cookie));
    })
    .await
    .expect("the test ran");
}
