//! Tidy: architecture invariants that a reader of ARCHITECTURE.md is promised, checked
//! over the source tree so that breaking one fails the build's tests, not a review.
//!
//! - `sqlx` appears only in `store` (and in `testkit`, which creates test databases);
//! - the process environment is read only by `gantry` (the binary) and `testkit`:
//!   libraries get what they need (`PATH` for child processes, the host name) as
//!   parameters;
//! - OCI and Docker media-type strings are written only in `domain::oci`;
//! - nothing is ignored, left to do or left in for debugging;
//! - ARCHITECTURE.md's code map names every crate, and every file it names exists.

use std::path::{Path, PathBuf};

/// Crates that may use `sqlx`.
const SQLX_CRATES: [&str; 2] = ["store", "testkit"];
/// Crates that may read the process environment.
const ENVIRONMENT_CRATES: [&str; 2] = ["gantry", "testkit"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The workspace's crates: (name, directory).
fn crates() -> Vec<(String, PathBuf)> {
    let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| path.join("Cargo.toml").is_file())
        .map(|path| {
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .expect("a UTF-8 name")
                .to_owned();
            (name, path)
        })
        .collect();
    crates.sort();
    crates
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The lines of a library file that ship: everything before its `#[cfg(test)]`
/// module (tests sit at the end of a file, by convention here).
fn shipped_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("a readable file");
    text.lines()
        .take_while(|line| line.trim() != "#[cfg(test)]")
        .enumerate()
        .map(|(n, line)| (n + 1, line.to_owned()))
        .collect()
}

fn shown(path: &Path, line: usize) -> String {
    format!(
        "{}:{line}",
        path.strip_prefix(root()).unwrap_or(path).display()
    )
}

#[test]
fn sqlx_is_used_only_by_the_store() {
    let mut offenders = Vec::new();
    for (name, dir) in crates() {
        if SQLX_CRATES.contains(&name.as_str()) {
            continue;
        }
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        if manifest
            .lines()
            .any(|line| line.trim_start().starts_with("sqlx"))
        {
            offenders.push(format!("crates/{name}/Cargo.toml depends on sqlx"));
        }
        for file in rust_files(&dir.join("src")) {
            for (n, line) in shipped_lines(&file) {
                if line.contains("sqlx::") || line.contains("use sqlx") {
                    offenders.push(format!("{}: {}", shown(&file, n), line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only {SQLX_CRATES:?} use sqlx:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn only_the_binary_reads_the_process_environment() {
    let reads = ["env::var(", "env::var_os(", "env::vars(", "env::vars_os("];
    let mut offenders = Vec::new();
    for (name, dir) in crates() {
        if ENVIRONMENT_CRATES.contains(&name.as_str()) {
            continue;
        }
        for file in rust_files(&dir.join("src")) {
            for (n, line) in shipped_lines(&file) {
                if reads.iter().any(|read| line.contains(read)) {
                    offenders.push(format!("{}: {}", shown(&file, n), line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only {ENVIRONMENT_CRATES:?} read the process environment; pass what a library needs as a parameter:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn oci_media_types_are_named_only_in_the_oci_module() {
    let home = root().join("crates/domain/src/oci.rs");
    // Spelled in pieces, so this file does not find itself.
    let prefixes = [
        concat!("\"application/vnd.", "oci."),
        concat!("\"application/vnd.", "docker."),
    ];
    let mut offenders = Vec::new();
    for (_, dir) in crates() {
        for file in rust_files(&dir.join("src")) {
            if file == home {
                continue;
            }
            for (n, line) in shipped_lines(&file) {
                if prefixes.iter().any(|prefix| line.contains(prefix)) {
                    offenders.push(format!("{}: {}", shown(&file, n), line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "name media types through domain::oci:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn nothing_is_ignored_left_to_do_or_left_in_for_debugging() {
    // Spelled in pieces, so this file does not find itself.
    let banned = [
        concat!("#[", "ignore"),
        concat!("to", "do!("),
        concat!("unimpl", "emented!("),
        concat!("db", "g!("),
    ];
    let mut offenders = Vec::new();
    for (_, dir) in crates() {
        for file in rust_files(&dir) {
            let text = std::fs::read_to_string(&file).expect("a readable file");
            for (n, line) in text.lines().enumerate() {
                if banned.iter().any(|banned| line.contains(banned)) {
                    offenders.push(format!("{}: {}", shown(&file, n + 1), line.trim()));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

#[test]
fn the_code_map_names_every_crate_and_every_file_it_names_exists() {
    let architecture =
        std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut problems = Vec::new();
    let crates = crates();
    for (name, _) in &crates {
        if !architecture.contains(&format!("`crates/{name}`")) {
            problems.push(format!("crate {name} is not in the code map"));
        }
    }
    // Each crate's entry runs from its `crates/NAME` bullet to the next bullet of the
    // map; a file named there (`jobs.rs`, `api/mod.rs`) must exist in that crate.
    let bullets: Vec<(usize, &str)> = architecture
        .match_indices("- `crates/")
        .map(|(at, _)| at)
        .map(|at| {
            let name_start = at + "- `crates/".len();
            let name_end = architecture[name_start..]
                .find('`')
                .map_or(name_start, |end| name_start + end);
            (at, &architecture[name_start..name_end])
        })
        .collect();
    for (index, (at, name)) in bullets.iter().enumerate() {
        // An entry ends at the next bullet, or at the next heading for the last one.
        let heading = architecture[*at..]
            .find("\n## ")
            .map_or(architecture.len(), |offset| at + offset);
        let end = bullets
            .get(index + 1)
            .map_or(heading, |(next, _)| (*next).min(heading));
        let section = &architecture[*at..end];
        let Some((_, dir)) = crates.iter().find(|(crate_name, _)| crate_name == name) else {
            problems.push(format!(
                "the code map names crates/{name}, which does not exist"
            ));
            continue;
        };
        let files: Vec<String> = rust_files(dir)
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        for quoted in section.split('`').skip(1).step_by(2) {
            let named = quoted.trim_start_matches("crates/");
            if !named.ends_with(".rs") || named.contains(' ') {
                continue;
            }
            // `server/src/api/error.rs` names another crate's file; `jobs.rs` this one's.
            let exists = if named.contains("/src/") || named.contains("/tests/") {
                root().join("crates").join(named).is_file()
            } else {
                files
                    .iter()
                    .any(|file| file.ends_with(&format!("/{named}")))
            };
            if !exists {
                problems.push(format!(
                    "crates/{name}'s entry names `{quoted}`, which does not exist"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
