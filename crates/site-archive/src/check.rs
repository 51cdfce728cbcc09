//! Checking a site archive before anything of it is written anywhere: at push, and
//! again before a deployment unpacks it.
//!
//! The zip crate parses the archive (and refuses what it cannot read); this module
//! adds the rules a deployment needs on top: names that cannot escape or collide
//! ([`crate::names`]), only regular files and directories (no links, devices or
//! pipes), no encryption, stored or deflated data only, bounded entry count and
//! expanded size, a bounded compression ratio (zip bombs), no entries sharing bytes
//! (overlapping-entry bombs), local headers that agree with the central directory
//! (two readers must not see two different archives), and finally every file
//! decompressed once to prove that it yields exactly its declared size and CRC.
//!
//! Decompression is driven here rather than through the zip crate's reader so that the
//! declared size bounds what is produced (a lying entry is stopped one byte past it)
//! and each failure is reported as what it is.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};
use zip::CompressionMethod;
use zip::ZipArchive;
use zip::result::ZipError;

use crate::names::{NameError, check_name, folded};

/// Bounds on what an archive may expand to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ArchiveLimits {
    /// Most entries (files and directories) an archive may hold.
    pub max_entries: u64,
    /// Most bytes all files together may expand to.
    pub max_expanded_bytes: u64,
    /// Highest ratio of expanded to compressed size one entry may have...
    pub max_ratio: u64,
    /// ...once it expands to at least this many bytes (small files of repeated bytes
    /// compress very well and are harmless).
    pub ratio_floor_bytes: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_entries: 100_000,
            max_expanded_bytes: 2 << 30,
            max_ratio: 200,
            ratio_floor_bytes: 1 << 20,
        }
    }
}

/// Why an archive is refused. Each variant names the entry at fault where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("cannot read the archive: {0}")]
    Io(#[from] io::Error),
    /// The zip crate could not parse it (no end of central directory, truncated, …).
    #[error("not a readable zip archive: {0}")]
    Unreadable(String),
    #[error("the archive holds {count} entries; at most {limit} are allowed")]
    TooManyEntries { count: u64, limit: u64 },
    #[error("the archive names the same entry twice")]
    DuplicateName,
    #[error("entries of the archive share bytes (an overlapping-entry zip bomb)")]
    OverlappingEntries,
    #[error("the archive's local headers disagree with its central directory: {0}")]
    InconsistentHeaders(String),
    #[error("entry {name:?}: {reason}")]
    Name { name: String, reason: NameError },
    #[error("entry {name:?} is a symbolic link; links are not allowed")]
    Link { name: String },
    #[error("entry {name:?} is not a regular file or directory (mode {mode:o})")]
    SpecialFile { name: String, mode: u32 },
    #[error("entry {name:?} is a directory by its attributes but not by its name, or the reverse")]
    DirectoryMismatch { name: String },
    #[error("entry {name:?} is a directory but holds data")]
    DirectoryWithData { name: String },
    #[error("entry {name:?} is encrypted")]
    Encrypted { name: String },
    #[error("entry {name:?} uses compression method {method}; only stored and deflate are allowed")]
    UnsupportedCompression { name: String, method: String },
    #[error("entries {name:?} and {other:?} differ only in case or Unicode normalization")]
    CaseCollision { name: String, other: String },
    #[error("{name:?} is both a file and a directory")]
    FileDirectoryCollision { name: String },
    #[error("the archive expands to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("entry {name:?} expands {ratio}x; at most {limit}x is allowed")]
    RatioTooHigh {
        name: String,
        ratio: u64,
        limit: u64,
    },
    #[error("entry {name:?} holds more than its declared {declared} bytes")]
    LargerThanDeclared { name: String, declared: u64 },
    #[error("entry {name:?} holds {actual} bytes, not its declared {declared}")]
    SmallerThanDeclared {
        name: String,
        declared: u64,
        actual: u64,
    },
    #[error("entry {name:?} does not match its CRC-32")]
    CrcMismatch { name: String },
    #[error("entry {name:?} has corrupt compressed data: {reason}")]
    CorruptData { name: String, reason: String },
    #[error("entry {name:?} changed between the check and the extraction")]
    Changed { name: String },
    #[error("the staging directory {0} already exists")]
    StagingExists(String),
}

impl ArchiveError {
    fn from_zip(error: ZipError) -> ArchiveError {
        match error {
            ZipError::Io(error) => ArchiveError::Io(error),
            other => ArchiveError::Unreadable(other.to_string()),
        }
    }
}

/// One file of a checked archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    /// Its path inside the site (`assets/app.js`).
    pub name: String,
    pub size: u64,
    /// The SHA-256 of its contents, lowercase hex.
    pub sha256: String,
    /// Where it sits in the archive.
    pub(crate) index: usize,
    pub(crate) method: Method,
    pub(crate) crc32: u32,
}

/// How an entry's data is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Stored,
    Deflated,
}

/// What a checked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedArchive {
    /// The files, sorted by name.
    pub files: Vec<CheckedFile>,
    /// Directories named by their own entries (without the trailing `/`), sorted.
    pub directories: Vec<String>,
    /// What all files expand to.
    pub expanded_bytes: u64,
}

/// What one entry is, by its attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Directory,
}

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const DOS_DIRECTORY: u32 = 0x10;
const DOS_REPARSE_POINT: u32 = 0x400;
/// General-purpose flag bit 11: the name is UTF-8.
const FLAG_UTF8: u16 = 1 << 11;

/// Checks the archive at `path` against every rule, decompressing each file once
/// (into nothing). Writes nothing anywhere.
pub fn check(path: &Path, limits: &ArchiveLimits) -> Result<CheckedArchive, ArchiveError> {
    let mut archive = open(path)?;
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            count,
            limit: limits.max_entries,
        });
    }
    if archive.has_duplicate_names() {
        return Err(ArchiveError::DuplicateName);
    }
    if archive
        .has_overlapping_entries()
        .map_err(ArchiveError::from_zip)?
    {
        return Err(ArchiveError::OverlappingEntries);
    }
    archive
        .validate_header_consistency()
        .map_err(|error| match error {
            ZipError::Io(error) => ArchiveError::Io(error),
            other => ArchiveError::InconsistentHeaders(other.to_string()),
        })?;

    let mut files = Vec::new();
    let mut directories = Vec::new();
    let mut seen = Seen::default();
    let mut expanded: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(ArchiveError::from_zip)?;
        let raw = entry.name_raw();
        let shown = String::from_utf8_lossy(raw).into_owned();
        if entry.encrypted() {
            return Err(ArchiveError::Encrypted { name: shown });
        }
        let name = std::str::from_utf8(raw)
            .ok()
            .filter(|name| name.is_ascii() || entry.flags().as_u16() & FLAG_UTF8 != 0)
            .ok_or(ArchiveError::Name {
                name: shown.clone(),
                reason: NameError::NotUtf8,
            })?;
        let kind = kind_of(name, entry.external_attributes())?;
        let path = match kind {
            Kind::Directory => name.strip_suffix('/').unwrap_or(name),
            Kind::File => name,
        };
        check_name(path).map_err(|reason| ArchiveError::Name {
            name: shown.clone(),
            reason,
        })?;
        let method = match entry.compression() {
            CompressionMethod::Stored => Method::Stored,
            CompressionMethod::Deflated => Method::Deflated,
            other => {
                return Err(ArchiveError::UnsupportedCompression {
                    name: shown,
                    method: format!("{other:?}"),
                });
            }
        };
        let (size, compressed) = (entry.size(), entry.compressed_size());
        match kind {
            Kind::Directory => {
                if size > 0 {
                    return Err(ArchiveError::DirectoryWithData { name: shown });
                }
                seen.directory(path)?;
                directories.push(path.to_owned());
            }
            Kind::File => {
                if method == Method::Stored && compressed != size {
                    return Err(if compressed > size {
                        ArchiveError::LargerThanDeclared {
                            name: shown,
                            declared: size,
                        }
                    } else {
                        ArchiveError::SmallerThanDeclared {
                            name: shown,
                            declared: size,
                            actual: compressed,
                        }
                    });
                }
                if size >= limits.ratio_floor_bytes
                    && size > compressed.saturating_mul(limits.max_ratio)
                {
                    return Err(ArchiveError::RatioTooHigh {
                        name: shown,
                        ratio: size / compressed.max(1),
                        limit: limits.max_ratio,
                    });
                }
                expanded = expanded.saturating_add(size);
                if expanded > limits.max_expanded_bytes {
                    return Err(ArchiveError::TooLarge {
                        limit: limits.max_expanded_bytes,
                    });
                }
                seen.file(path)?;
                files.push(CheckedFile {
                    name: path.to_owned(),
                    size,
                    sha256: String::new(),
                    index,
                    method,
                    crc32: entry.crc32(),
                });
            }
        }
    }

    // Archive order reads the file front to back.
    for file in &mut files {
        file.sha256 = decode(&mut archive, file, &mut io::sink())?;
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    directories.sort();
    Ok(CheckedArchive {
        files,
        directories,
        expanded_bytes: expanded,
    })
}

pub(crate) fn open(path: &Path) -> Result<ZipArchive<BufReader<File>>, ArchiveError> {
    let file = File::open(path)?;
    ZipArchive::new(BufReader::with_capacity(64 << 10, file)).map_err(ArchiveError::from_zip)
}

/// What an entry is by its name and attributes; links and special files are refused.
/// The high 16 bits of the external attributes hold a Unix mode whatever the host
/// byte claims (7-Zip writes one from Windows hosts too), so they are read whenever
/// they are set: a link does not get through by claiming to come from MS-DOS.
fn kind_of(name: &str, attributes: u32) -> Result<Kind, ArchiveError> {
    let named_directory = name.ends_with('/');
    let shown = || name.to_owned();
    let mode = attributes >> 16;
    let mode_directory = match mode & S_IFMT {
        _ if mode == 0 => None,
        S_IFLNK => return Err(ArchiveError::Link { name: shown() }),
        S_IFDIR => Some(true),
        S_IFREG => Some(false),
        // Some writers set permission bits without a file type.
        0 => None,
        _ => {
            return Err(ArchiveError::SpecialFile {
                name: shown(),
                mode,
            });
        }
    };
    // The DOS attributes in the low bits apply to every host.
    if attributes & DOS_REPARSE_POINT != 0 {
        return Err(ArchiveError::Link { name: shown() });
    }
    let dos_directory = attributes & DOS_DIRECTORY != 0;
    let consistent = match mode_directory {
        Some(directory) => directory == named_directory,
        None => named_directory || !dos_directory,
    };
    if !consistent || (dos_directory && !named_directory) {
        return Err(ArchiveError::DirectoryMismatch { name: shown() });
    }
    Ok(if named_directory {
        Kind::Directory
    } else {
        Kind::File
    })
}

/// Names met so far, folded, to find collisions between files and directories, in
/// exact spelling or up to case and normalization.
#[derive(Default)]
struct Seen {
    by_folded: BTreeMap<String, (String, Kind)>,
}

impl Seen {
    fn file(&mut self, path: &str) -> Result<(), ArchiveError> {
        self.parents(path)?;
        self.insert(path, Kind::File)
    }

    fn directory(&mut self, path: &str) -> Result<(), ArchiveError> {
        self.parents(path)?;
        self.insert(path, Kind::Directory)
    }

    fn parents(&mut self, path: &str) -> Result<(), ArchiveError> {
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            self.insert(&path[..end], Kind::Directory)?;
            end += 1;
        }
        Ok(())
    }

    fn insert(&mut self, path: &str, kind: Kind) -> Result<(), ArchiveError> {
        match self.by_folded.get(&folded(path)) {
            None => {
                self.by_folded.insert(folded(path), (path.to_owned(), kind));
                Ok(())
            }
            Some((existing, existing_kind)) if existing == path => match (existing_kind, kind) {
                (Kind::Directory, Kind::Directory) => Ok(()),
                (Kind::File, Kind::File) => Err(ArchiveError::DuplicateName),
                _ => Err(ArchiveError::FileDirectoryCollision {
                    name: path.to_owned(),
                }),
            },
            Some((existing, _)) => Err(ArchiveError::CaseCollision {
                name: path.to_owned(),
                other: existing.clone(),
            }),
        }
    }
}

/// Decompresses one checked file into `sink`, proving that it yields exactly its
/// declared size and CRC-32; returns the SHA-256 of what it yielded.
pub(crate) fn decode(
    archive: &mut ZipArchive<BufReader<File>>,
    file: &CheckedFile,
    sink: &mut dyn Write,
) -> Result<String, ArchiveError> {
    let name = || file.name.clone();
    let raw = archive
        .by_index_raw(file.index)
        .map_err(ArchiveError::from_zip)?;
    let reader: Box<dyn Read + '_> = match file.method {
        Method::Stored => Box::new(raw),
        Method::Deflated => Box::new(flate2::read::DeflateDecoder::new(raw)),
    };
    // One byte past the declared size is enough to know that it lies.
    let mut limited = reader.take(file.size.saturating_add(1));
    let mut buffer = vec![0u8; 64 << 10];
    let mut crc = crc32fast::Hasher::new();
    let mut sha = Sha256::new();
    let mut produced: u64 = 0;
    loop {
        let read = match limited.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::InvalidInput
                        | io::ErrorKind::InvalidData
                        | io::ErrorKind::UnexpectedEof
                ) =>
            {
                return Err(ArchiveError::CorruptData {
                    name: name(),
                    reason: error.to_string(),
                });
            }
            Err(error) => return Err(ArchiveError::Io(error)),
        };
        produced += read as u64;
        if produced > file.size {
            return Err(ArchiveError::LargerThanDeclared {
                name: name(),
                declared: file.size,
            });
        }
        let chunk = &buffer[..read];
        crc.update(chunk);
        sha.update(chunk);
        sink.write_all(chunk)?;
    }
    if produced < file.size {
        return Err(ArchiveError::SmallerThanDeclared {
            name: name(),
            declared: file.size,
            actual: produced,
        });
    }
    if crc.finalize() != file.crc32 {
        return Err(ArchiveError::CrcMismatch { name: name() });
    }
    Ok(hex::encode(sha.finalize()))
}
