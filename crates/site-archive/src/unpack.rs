//! Unpacking a site archive into a fresh staging directory. The whole archive is
//! checked first ([`crate::check`]) and nothing is written unless every entry passes;
//! extraction then decodes each file again, re-verifying its size, CRC and SHA-256
//! against what the check saw, into files created exclusively (never through an
//! existing file or link). If anything fails, the staging directory is removed.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::check::{ArchiveError, ArchiveLimits, CheckedFile, check, decode, open};

/// A site unpacked into a staging directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedSite {
    /// The staging directory the files are under.
    pub root: PathBuf,
    /// The files, sorted by name, with their sizes and SHA-256 digests.
    pub files: Vec<CheckedFile>,
    pub expanded_bytes: u64,
}

/// Checks the archive at `archive`, then extracts it into `staging`, which must not
/// exist yet (its parent must).
pub fn unpack(
    archive: &Path,
    staging: &Path,
    limits: &ArchiveLimits,
) -> Result<UnpackedSite, ArchiveError> {
    let checked = check(archive, limits)?;
    match std::fs::create_dir(staging) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ArchiveError::StagingExists(staging.display().to_string()));
        }
        Err(error) => return Err(error.into()),
    }
    let extracted = extract(archive, staging, &checked.directories, &checked.files);
    if let Err(error) = extracted {
        // Best effort: a partly written staging directory is of no use to anyone.
        let _ = std::fs::remove_dir_all(staging);
        return Err(error);
    }
    Ok(UnpackedSite {
        root: staging.to_owned(),
        files: checked.files,
        expanded_bytes: checked.expanded_bytes,
    })
}

/// Extracts `files` — entries of an archive that passed [`check`], with the sizes and
/// digests the check found — into `staging`, creating it if needed; each file is
/// written new and verified again while it is written. For syncs that need only the
/// files that changed.
pub fn extract_files(
    archive: &Path,
    staging: &Path,
    files: &[CheckedFile],
) -> Result<(), ArchiveError> {
    std::fs::create_dir_all(staging)?;
    extract(archive, staging, &[], files)
}

fn extract(
    archive: &Path,
    staging: &Path,
    directories: &[String],
    files: &[CheckedFile],
) -> Result<(), ArchiveError> {
    let mut reader = open(archive)?;
    for directory in directories {
        std::fs::create_dir_all(staging.join(directory))?;
    }
    for file in files {
        let path = staging.join(&file.name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let output: File = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut output = BufWriter::with_capacity(64 << 10, output);
        let sha256 = decode(&mut reader, file, &mut output)?;
        output.flush()?;
        if sha256 != file.sha256 {
            return Err(ArchiveError::Changed {
                name: file.name.clone(),
            });
        }
    }
    Ok(())
}
