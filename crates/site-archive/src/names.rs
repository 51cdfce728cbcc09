//! What an entry of a site archive may be called. The same rules decide what `pack`
//! puts into an archive and what `check` lets out of one, so an archive Gantry built
//! always passes its own check.
//!
//! A name is a relative path of `/`-separated components that means the same thing on
//! every filesystem and in every object store a site may land in: no absolute paths,
//! no `..` or `.`, no empty components, no backslashes (a separator on Windows), no
//! `:` (drive letters, NTFS streams), no control characters (NUL truncates names in C
//! APIs). `.gantry/` at the root is where a destination keeps its deployment records.

use unicode_normalization::UnicodeNormalization;

/// The directory at a destination's root that holds Gantry's records of it.
pub const RECORDS_DIRECTORY: &str = ".gantry";

/// The longest entry name accepted, in bytes (S3's key limit).
pub const MAX_NAME_BYTES: usize = 1024;

/// The longest component accepted, in bytes (most filesystems' limit).
pub const MAX_COMPONENT_BYTES: usize = 255;

/// Why an entry name is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is not UTF-8, or is non-ASCII without the archive's UTF-8 flag")]
    NotUtf8,
    #[error("the name contains a control character")]
    ControlCharacter,
    #[error("the name contains a backslash")]
    Backslash,
    #[error("the name is absolute")]
    Absolute,
    #[error("the name contains `:` (a drive letter or a stream name)")]
    Colon,
    #[error("the name contains an empty component (`//`)")]
    EmptyComponent,
    #[error("the name contains a `.` component")]
    CurrentDirectory,
    #[error("the name contains a `..` component")]
    ParentDirectory,
    #[error(
        "the name is longer than {MAX_NAME_BYTES} bytes or has a component longer than {MAX_COMPONENT_BYTES}"
    )]
    TooLong,
    #[error("names under `.gantry/` are reserved for deployment records")]
    Reserved,
}

/// Checks the path of an entry (without the trailing `/` of a directory entry).
pub fn check_name(path: &str) -> Result<(), NameError> {
    if path.is_empty() {
        return Err(NameError::Empty);
    }
    if path.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    if path.contains('\\') {
        return Err(NameError::Backslash);
    }
    if path.starts_with('/') {
        return Err(NameError::Absolute);
    }
    if path.contains(':') {
        return Err(NameError::Colon);
    }
    if path.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(NameError::EmptyComponent),
            "." => return Err(NameError::CurrentDirectory),
            ".." => return Err(NameError::ParentDirectory),
            _ if component.len() > MAX_COMPONENT_BYTES => return Err(NameError::TooLong),
            _ => {}
        }
    }
    let first = path.split('/').next().unwrap_or_default();
    if first.eq_ignore_ascii_case(RECORDS_DIRECTORY) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The form two names are compared in for collisions: Unicode-normalized (NFC) and
/// lower-cased, so `Index.html`, `index.html` and a decomposed `é` against a composed
/// one are the same file on case-insensitive or normalizing filesystems (macOS,
/// Windows) and in CDNs that fold case.
pub(crate) fn folded(path: &str) -> String {
    path.nfc().flat_map(char::to_lowercase).nfc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: Result<(), NameError>) {
        assert_eq!(check_name(name), expected, "{name:?}");
    }

    #[test]
    fn names_are_plain_relative_paths() {
        check("index.html", Ok(()));
        check("assets/app.3f2a9c.js", Ok(()));
        check("blog/[slug]/index.html", Ok(()));
        check("héllo wörld.txt", Ok(()));
        check(".well-known/security.txt", Ok(()));
        check("", Err(NameError::Empty));
        check("/etc/passwd", Err(NameError::Absolute));
        check("../x", Err(NameError::ParentDirectory));
        check("a/../../x", Err(NameError::ParentDirectory));
        check("./x", Err(NameError::CurrentDirectory));
        check("a//b", Err(NameError::EmptyComponent));
        check("a/", Err(NameError::EmptyComponent));
        check("..\\x", Err(NameError::Backslash));
        check("C:/x", Err(NameError::Colon));
        check("x:stream", Err(NameError::Colon));
        check("a\0b", Err(NameError::ControlCharacter));
        check("a\nb", Err(NameError::ControlCharacter));
        check(".gantry/deployed.json", Err(NameError::Reserved));
        check(".GANTRY/files.json", Err(NameError::Reserved));
        check(&"a".repeat(256), Err(NameError::TooLong));
        check(&"a/".repeat(600), Err(NameError::TooLong));
    }

    #[test]
    fn folding_joins_case_and_normalization_variants() {
        assert_eq!(folded("Index.HTML"), folded("index.html"));
        assert_eq!(folded("caf\u{65}\u{301}.txt"), folded("caf\u{e9}.txt"));
        assert_ne!(folded("a.txt"), folded("b.txt"));
    }
}
