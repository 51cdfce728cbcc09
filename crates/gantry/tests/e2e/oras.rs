//! oras (the OCI artifact client) pushes and pulls a non-image artifact, chunked and
//! monolithic, and attaches a referrer.

use std::process::Command;

use crate::support::{GantryServer, peer_python};

#[test]
fn oras_pushes_and_pulls_a_file_artifact_and_attaches_a_referrer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let server = GantryServer::start(dir.path(), &[], &[]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oras_roundtrip.py");
    let output = Command::new(peer_python())
        .arg(&script)
        .args([
            server.address.as_str(),
            "artifacts/site",
            "admin",
            server.token(),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} (install oras into it, see .ci/run): {e}",
                peer_python()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "oras round trip failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        server.log()
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS ")).count(),
        7,
        "{stdout}"
    );
}
