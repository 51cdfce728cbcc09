//! Packing a site build directory into the zip archive that is pushed as the site
//! artifact. The archive is deterministic — entries sorted by name, fixed timestamps
//! and permissions, deflate at a fixed level — so the same build always gives the same
//! digest, whoever packs it and whenever. Links and special files are refused rather
//! than followed or skipped: a build that contains them is not what was reviewed.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use domain::Digest;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::check::{ArchiveError, ArchiveLimits, CheckedArchive, check};
use crate::names::{NameError, check_name};

/// The deflate level: zlib's default, the usual balance of size and speed.
const DEFLATE_LEVEL: i64 = 6;

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0} is a symbolic link; a site archive holds regular files only")]
    Link(PathBuf),
    #[error("{0} is not a regular file or directory")]
    SpecialFile(PathBuf),
    #[error("{0} has a name that is not UTF-8")]
    NotUtf8(PathBuf),
    #[error("{name:?} cannot be packed: {reason}")]
    Name { name: String, reason: NameError },
    #[error("{0} holds no files")]
    Empty(PathBuf),
    #[error("writing the archive: {0}")]
    Zip(String),
    /// The packed archive fails the check a push and a deployment apply (too large,
    /// names colliding by case, …).
    #[error("the packed archive would be refused: {0}")]
    Check(#[from] ArchiveError),
}

/// How far packing has got, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackProgress {
    /// Bytes of file content read so far.
    pub done: u64,
    /// Bytes of file content in the directory.
    pub total: u64,
}

/// A packed site: a temporary archive file (deleted when this is dropped), its size
/// and digest, and what it holds.
#[derive(Debug)]
pub struct PackedSite {
    file: tempfile::NamedTempFile,
    pub size: u64,
    pub digest: Digest,
    pub contents: CheckedArchive,
}

impl PackedSite {
    /// Where the archive is, until this is dropped.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Keeps the archive as a temporary path that is deleted when dropped.
    pub fn into_temp_path(self) -> tempfile::TempPath {
        self.file.into_temp_path()
    }
}

/// Zips the files under `dir` into a temporary file, calling `progress` as content is
/// read, then checks the result against `limits` as a push would.
pub fn pack(
    dir: &Path,
    limits: &ArchiveLimits,
    progress: &mut dyn FnMut(PackProgress),
) -> Result<PackedSite, PackError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PackError::Io { path, source }
    };
    if !std::fs::metadata(dir).map_err(io(dir))?.is_dir() {
        return Err(PackError::NotADirectory(dir.to_owned()));
    }
    let mut files = Vec::new();
    collect(dir, "", &mut files)?;
    if files.is_empty() {
        return Err(PackError::Empty(dir.to_owned()));
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let total = files.iter().map(|file| file.size).sum();

    let archive = tempfile::Builder::new()
        .prefix("gantry-site-")
        .suffix(".zip")
        .tempfile()
        .map_err(io(&std::env::temp_dir()))?;
    let archive_path = archive.path().to_owned();
    let zip_error = |error: zip::result::ZipError| PackError::Zip(error.to_string());
    let mut writer = ZipWriter::new(BufWriter::with_capacity(
        256 << 10,
        archive.reopen().map_err(io(&archive_path))?,
    ));
    let mut done = 0;
    let mut buffer = vec![0u8; 256 << 10];
    progress(PackProgress { done, total });
    for file in &files {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(DEFLATE_LEVEL))
            .last_modified_time(DateTime::default())
            .unix_permissions(0o644)
            .large_file(file.size >= u64::from(u32::MAX));
        writer
            .start_file(file.name.as_str(), options)
            .map_err(zip_error)?;
        let mut source = File::open(&file.path).map_err(io(&file.path))?;
        let mut copied = 0;
        loop {
            let read = source.read(&mut buffer).map_err(io(&file.path))?;
            if read == 0 {
                break;
            }
            writer
                .write_all(&buffer[..read])
                .map_err(io(&archive_path))?;
            copied += read as u64;
            done += read as u64;
            progress(PackProgress { done, total });
        }
        if copied != file.size {
            return Err(PackError::Io {
                path: file.path.clone(),
                source: std::io::Error::other("the file changed size while it was packed"),
            });
        }
    }
    let mut inner = writer.finish().map_err(zip_error)?;
    inner.flush().map_err(io(&archive_path))?;
    drop(inner);

    let (size, digest) = digest_of(&archive_path).map_err(io(&archive_path))?;
    let contents = check(&archive_path, limits)?;
    Ok(PackedSite {
        file: archive,
        size,
        digest,
        contents,
    })
}

/// One file to pack.
struct Source {
    name: String,
    path: PathBuf,
    size: u64,
}

/// Adds the files under `dir` (whose path in the archive is `prefix`) to `files`.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<Source>) -> Result<(), PackError> {
    let io = |source| PackError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            return Err(PackError::NotUtf8(path));
        };
        let name = format!("{prefix}{file_name}");
        check_name(&name).map_err(|reason| PackError::Name {
            name: name.clone(),
            reason,
        })?;
        let metadata = std::fs::symlink_metadata(&path).map_err(|source| PackError::Io {
            path: path.clone(),
            source,
        })?;
        let kind = metadata.file_type();
        if kind.is_symlink() {
            return Err(PackError::Link(path));
        } else if kind.is_dir() {
            collect(&path, &format!("{name}/"), files)?;
        } else if kind.is_file() {
            files.push(Source {
                name,
                path,
                size: metadata.len(),
            });
        } else {
            return Err(PackError::SpecialFile(path));
        }
    }
    Ok(())
}

/// The size and SHA-256 digest of a file.
pub(crate) fn digest_of(path: &Path) -> std::io::Result<(u64, Digest)> {
    let mut file = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    let mut size = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        sha.update(&buffer[..read]);
        size += read as u64;
    }
    let digest = Digest::parse(&format!("sha256:{}", hex::encode(sha.finalize())))
        .map_err(|error| std::io::Error::other(error.to_string()))?;
    Ok((size, digest))
}
