//! Which file in a checkout a deployment may edit: a regular file inside the
//! repository, reached without following any symbolic link and outside git's own
//! directory. A declaration that names anything else (`.git/config`, a link to
//! `/etc/passwd`, a path through a linked directory) is refused, never followed.

use std::path::{Path, PathBuf};

use domain::application::RepoFilePath;

/// The file `file` in the checkout at `checkout`, after checking it is safe to edit.
pub(crate) fn checked_file(checkout: &Path, file: &RepoFilePath) -> Result<PathBuf, String> {
    let shown = file.as_str();
    let mut path = checkout.to_path_buf();
    let parts: Vec<&str> = shown.split('/').collect();
    for (index, part) in parts.iter().enumerate() {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('\\') {
            return Err(format!(
                "`{shown}` is not a plain path inside the repository"
            ));
        }
        if is_git_dir_name(part) {
            return Err(format!(
                "`{shown}` is inside a `.git` directory: only files of the repository may be edited"
            ));
        }
        path.push(part);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "`{shown}` does not exist in the repository (the deployer edits files, it does not create them)"
                ));
            }
            Err(error) => return Err(format!("cannot inspect `{shown}`: {error}")),
        };
        let last = index + 1 == parts.len();
        if metadata.file_type().is_symlink() {
            let what = if last { "is" } else { "runs through" };
            return Err(format!(
                "`{shown}` {what} a symbolic link (`{}`): links are not followed",
                parts[..=index].join("/")
            ));
        }
        if last && !metadata.is_file() {
            return Err(format!("`{shown}` is not a regular file"));
        }
        if !last && !metadata.is_dir() {
            return Err(format!(
                "`{shown}` runs through `{}`, which is not a directory",
                parts[..=index].join("/")
            ));
        }
    }
    // Belt and braces: with no links on the way the file resolves inside the checkout.
    let root = checkout
        .canonicalize()
        .map_err(|error| format!("cannot resolve the checkout: {error}"))?;
    let resolved = path
        .canonicalize()
        .map_err(|error| format!("cannot resolve `{shown}`: {error}"))?;
    if !resolved.starts_with(&root) || resolved.starts_with(root.join(".git")) {
        return Err(format!("`{shown}` resolves outside the repository"));
    }
    Ok(path)
}

/// `.git` in any case, and the spellings file systems fold into it (trailing dots
/// and spaces on Windows, the 8.3 short name).
fn is_git_dir_name(part: &str) -> bool {
    let folded = part.trim_end_matches(['.', ' ']).to_ascii_lowercase();
    folded == ".git" || folded == "git~1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(text: &str) -> RepoFilePath {
        RepoFilePath::parse(text).expect("a repository path")
    }

    #[test]
    fn only_regular_files_reached_without_links_and_outside_git_are_editable() {
        let checkout = tempfile::tempdir().expect("checkout");
        let root = checkout.path();
        std::fs::create_dir_all(root.join("apps/web")).expect("dirs");
        std::fs::create_dir_all(root.join(".git")).expect("git dir");
        std::fs::write(root.join(".git/config"), "[core]\n").expect("config");
        std::fs::write(root.join("apps/web/values.yaml"), "a: 1\n").expect("file");
        std::os::unix::fs::symlink(root.join("apps/web/values.yaml"), root.join("linked.yaml"))
            .expect("file link");
        std::os::unix::fs::symlink(root.join("apps"), root.join("linked-dir")).expect("dir link");
        std::os::unix::fs::symlink("/etc", root.join("etc")).expect("outside link");

        assert_eq!(
            checked_file(root, &path("apps/web/values.yaml")),
            Ok(root.join("apps/web/values.yaml"))
        );
        for (file, fragment) in [
            (".git/config", "`.git`"),
            (".GIT/config", "`.git`"),
            ("apps/.Git/config", "`.git`"),
            ("linked.yaml", "is a symbolic link"),
            (
                "linked-dir/web/values.yaml",
                "runs through a symbolic link (`linked-dir`)",
            ),
            ("etc/passwd", "runs through a symbolic link"),
            ("apps/web/missing.yaml", "does not exist"),
            ("apps/web", "not a regular file"),
            ("apps/web/values.yaml/x", "not a directory"),
        ] {
            let refused = checked_file(root, &path(file)).expect_err(file);
            assert!(refused.contains(fragment), "{file}: {refused}");
        }
    }
}
