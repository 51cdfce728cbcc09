//! Zip archives written byte by byte, so tests can build what no well-behaved writer
//! produces: lying sizes and CRCs, links, special files, duplicate or aliased entries,
//! local headers that disagree with the central directory.

use std::io::Write;

/// Unix host in "version made by", with spec version 2.0.
const MADE_BY_UNIX: u16 = (3 << 8) | 20;
/// MS-DOS host.
const MADE_BY_DOS: u16 = 20;
/// Flag bit 11: the name is UTF-8.
pub(crate) const FLAG_UTF8: u16 = 1 << 11;
/// Flag bit 0: encrypted.
pub(crate) const FLAG_ENCRYPTED: u16 = 1;

/// One entry as it will be written.
#[derive(Debug, Clone)]
pub(crate) struct RawEntry {
    pub(crate) name: Vec<u8>,
    /// The name written in the local header, when it differs from the central one.
    pub(crate) local_name: Option<Vec<u8>>,
    pub(crate) method: u16,
    pub(crate) flags: u16,
    /// The bytes written as the entry's data (compressed when `method` is 8).
    pub(crate) data: Vec<u8>,
    pub(crate) crc32: u32,
    pub(crate) uncompressed_size: u32,
    pub(crate) made_by: u16,
    pub(crate) external_attributes: u32,
}

impl RawEntry {
    /// A stored regular file (mode 0644).
    pub(crate) fn stored(name: &str, content: &[u8]) -> RawEntry {
        RawEntry {
            name: name.as_bytes().to_vec(),
            local_name: None,
            method: 0,
            flags: if name.is_ascii() { 0 } else { FLAG_UTF8 },
            data: content.to_vec(),
            crc32: crc32fast::hash(content),
            uncompressed_size: content.len() as u32,
            made_by: MADE_BY_UNIX,
            external_attributes: 0o100_644 << 16,
        }
    }

    /// A deflated regular file (mode 0644).
    pub(crate) fn deflated(name: &str, content: &[u8]) -> RawEntry {
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(content).expect("deflate in memory");
        let data = encoder.finish().expect("deflate in memory");
        RawEntry {
            method: 8,
            data,
            ..RawEntry::stored(name, content)
        }
    }

    /// A directory entry (`name` ends with `/`).
    pub(crate) fn directory(name: &str) -> RawEntry {
        RawEntry {
            external_attributes: (0o040_755 << 16) | 0x10,
            ..RawEntry::stored(name, b"")
        }
    }

    /// The same entry with a raw (possibly non-UTF-8) name.
    pub(crate) fn named(mut self, name: &[u8]) -> RawEntry {
        self.name = name.to_vec();
        self
    }

    /// The same entry with unix mode `mode` (type and permission bits).
    pub(crate) fn mode(mut self, mode: u32) -> RawEntry {
        self.made_by = MADE_BY_UNIX;
        self.external_attributes = mode << 16;
        self
    }

    /// The same entry made on MS-DOS with attributes `attributes`.
    pub(crate) fn dos_attributes(mut self, attributes: u32) -> RawEntry {
        self.made_by = MADE_BY_DOS;
        self.external_attributes = attributes;
        self
    }

    pub(crate) fn declared_size(mut self, size: u32) -> RawEntry {
        self.uncompressed_size = size;
        self
    }

    pub(crate) fn crc(mut self, crc32: u32) -> RawEntry {
        self.crc32 = crc32;
        self
    }

    pub(crate) fn flags(mut self, flags: u16) -> RawEntry {
        self.flags = flags;
        self
    }

    pub(crate) fn method(mut self, method: u16) -> RawEntry {
        self.method = method;
        self
    }

    pub(crate) fn local_name(mut self, name: &str) -> RawEntry {
        self.local_name = Some(name.as_bytes().to_vec());
        self
    }
}

/// An archive of `entries`, plus `aliases`: extra central-directory entries named
/// `.0` that point at the local header of entry `.1` (entries sharing bytes).
pub(crate) fn build_with_aliases(entries: &[RawEntry], aliases: &[(&str, usize)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(out.len() as u32);
        let name = entry.local_name.as_ref().unwrap_or(&entry.name);
        put32(&mut out, 0x0403_4b50);
        put16(&mut out, 20);
        put16(&mut out, entry.flags);
        put16(&mut out, entry.method);
        put16(&mut out, 0); // time
        put16(&mut out, 0x21); // 1980-01-01
        put32(&mut out, entry.crc32);
        put32(&mut out, entry.data.len() as u32);
        put32(&mut out, entry.uncompressed_size);
        put16(&mut out, name.len() as u16);
        put16(&mut out, 0);
        out.extend_from_slice(name);
        out.extend_from_slice(&entry.data);
    }
    let directory_start = out.len() as u32;
    let mut count = 0u16;
    let central = entries
        .iter()
        .zip(offsets.iter().copied())
        .map(|(entry, offset)| (entry.clone(), offset))
        .chain(aliases.iter().map(|(name, target)| {
            let mut alias = entries[*target].clone();
            alias.name = name.as_bytes().to_vec();
            (alias, offsets[*target])
        }))
        .collect::<Vec<_>>();
    for (entry, offset) in &central {
        count += 1;
        put32(&mut out, 0x0201_4b50);
        put16(&mut out, entry.made_by);
        put16(&mut out, 20);
        put16(&mut out, entry.flags);
        put16(&mut out, entry.method);
        put16(&mut out, 0);
        put16(&mut out, 0x21);
        put32(&mut out, entry.crc32);
        put32(&mut out, entry.data.len() as u32);
        put32(&mut out, entry.uncompressed_size);
        put16(&mut out, entry.name.len() as u16);
        put16(&mut out, 0); // extra
        put16(&mut out, 0); // comment
        put16(&mut out, 0); // disk
        put16(&mut out, 0); // internal attributes
        put32(&mut out, entry.external_attributes);
        put32(&mut out, *offset);
        out.extend_from_slice(&entry.name);
    }
    let directory_size = out.len() as u32 - directory_start;
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, directory_size);
    put32(&mut out, directory_start);
    put16(&mut out, 0);
    out
}

/// An archive of `entries`.
pub(crate) fn build(entries: &[RawEntry]) -> Vec<u8> {
    build_with_aliases(entries, &[])
}

fn put16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}
