//! Content digests (`algorithm:hex`) as the OCI image spec defines them, restricted to
//! the algorithms Gantry verifies: sha256 (canonical) and sha512.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A hash algorithm Gantry can verify content with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DigestAlgorithm {
    Sha256,
    Sha512,
}

impl DigestAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "sha256",
            DigestAlgorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Sha256 => 64,
            DigestAlgorithm::Sha512 => 128,
        }
    }
}

/// Why a string is not a digest Gantry accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("digest `{0}` is not of the form algorithm:hex")]
    Malformed(String),
    #[error("digest algorithm `{0}` is not supported (use sha256 or sha512)")]
    UnsupportedAlgorithm(String),
    #[error(
        "digest `{0}` has an encoded part of the wrong length or with characters other than lowercase hex"
    )]
    BadEncoding(String),
}

/// A verified-syntax digest such as `sha256:e3b0c4…`. The encoded part is always
/// lowercase hex of the algorithm's exact length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: DigestAlgorithm,
    hex: String,
}

impl Digest {
    /// Parses `algorithm:encoded`, refusing anything but sha256/sha512 in lowercase hex.
    pub fn parse(text: &str) -> Result<Digest, DigestError> {
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| DigestError::Malformed(crate::names::shorten(text)))?;
        let algorithm_grammar_ok = algorithm_is_well_formed(algorithm);
        if !algorithm_grammar_ok || hex.is_empty() {
            return Err(DigestError::Malformed(crate::names::shorten(text)));
        }
        let algorithm = match algorithm {
            "sha256" => DigestAlgorithm::Sha256,
            "sha512" => DigestAlgorithm::Sha512,
            other => {
                return Err(DigestError::UnsupportedAlgorithm(crate::names::shorten(
                    other,
                )));
            }
        };
        if hex.len() != algorithm.hex_len()
            || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::BadEncoding(crate::names::shorten(text)));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// Whether `text` follows the image spec's digest grammar
    /// (`algorithm:encoded`), whether or not Gantry can verify that algorithm.
    pub fn is_well_formed(text: &str) -> bool {
        let Some((algorithm, encoded)) = text.split_once(':') else {
            return false;
        };
        let algorithm_ok = algorithm_is_well_formed(algorithm);
        let encoded_ok = !encoded.is_empty()
            && encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        algorithm_ok && encoded_ok
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        let mut hasher = DigestHasher::new(DigestAlgorithm::Sha256);
        hasher.update(bytes);
        hasher.finish()
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: DigestAlgorithm, bytes: &[u8]) -> Digest {
        let mut hasher = DigestHasher::new(algorithm);
        hasher.update(bytes);
        hasher.finish()
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        self.algorithm
    }

    /// The lowercase hex encoded part, without the algorithm prefix.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// The image spec's algorithm grammar: `[a-z0-9]+([+._-][a-z0-9]+)*`.
fn algorithm_is_well_formed(algorithm: &str) -> bool {
    !algorithm.is_empty()
        && algorithm.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.as_str(), self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

/// An incremental hasher for one algorithm, fed as bytes arrive.
#[derive(Clone)]
pub enum DigestHasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl DigestHasher {
    pub fn new(algorithm: DigestAlgorithm) -> DigestHasher {
        match algorithm {
            DigestAlgorithm::Sha256 => DigestHasher::Sha256(sha2::Sha256::new()),
            DigestAlgorithm::Sha512 => DigestHasher::Sha512(sha2::Sha512::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            DigestHasher::Sha256(h) => h.update(bytes),
            DigestHasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The hasher's state after the bytes fed so far, to resume later (possibly in another
    /// process): an upload's chunks may arrive at different replicas.
    pub fn save_state(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        let (tag, state) = match self {
            DigestHasher::Sha256(h) => (1u8, h.serialize().as_slice().to_vec()),
            DigestHasher::Sha512(h) => (2u8, h.serialize().as_slice().to_vec()),
        };
        let mut out = Vec::with_capacity(state.len() + 1);
        out.push(tag);
        out.extend_from_slice(&state);
        out
    }

    /// Resumes a hasher saved by [`DigestHasher::save_state`]; `None` if the bytes are not one.
    pub fn restore_state(saved: &[u8]) -> Option<DigestHasher> {
        use sha2::digest::common::hazmat::SerializableState;
        let (tag, state) = saved.split_first()?;
        match tag {
            1 => sha2::Sha256::deserialize(state.try_into().ok()?)
                .ok()
                .map(DigestHasher::Sha256),
            2 => sha2::Sha512::deserialize(state.try_into().ok()?)
                .ok()
                .map(DigestHasher::Sha512),
            _ => None,
        }
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            DigestHasher::Sha256(_) => DigestAlgorithm::Sha256,
            DigestHasher::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, hex) = match self {
            DigestHasher::Sha256(h) => (DigestAlgorithm::Sha256, hex::encode(h.finalize())),
            DigestHasher::Sha512(h) => (DigestAlgorithm::Sha512, hex::encode(h.finalize())),
        };
        Digest { algorithm, hex }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<&str, &str>) {
        let got = Digest::parse(input)
            .map(|d| d.to_string())
            .map_err(|e| match e {
                DigestError::Malformed(_) => "malformed",
                DigestError::UnsupportedAlgorithm(_) => "unsupported",
                DigestError::BadEncoding(_) => "encoding",
            });
        assert_eq!(got.as_deref().map_err(|e| *e), expected, "input {input:?}");
    }

    const E3: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn digests_parse_only_in_canonical_form() {
        check(E3, Ok(E3));
        check(
            &format!("sha512:{}", "a".repeat(128)),
            Ok(&format!("sha512:{}", "a".repeat(128))),
        );
        check(
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            Err("encoding"),
        );
        check("sha256:e3b0", Err("encoding"));
        check(&format!("sha512:{}", "a".repeat(64)), Err("encoding"));
        check("md5:d41d8cd98f00b204e9800998ecf8427e", Err("unsupported"));
        check("sha256+b64u:abc", Err("unsupported"));
        check("sha256", Err("malformed"));
        check(":abc", Err("malformed"));
        check("SHA256:abc", Err("malformed"));
        check("sha256:", Err("malformed"));
        check("", Err("malformed"));
        check("sha256:../../etc/passwd", Err("encoding"));
    }

    #[test]
    fn the_digest_grammar_admits_algorithms_gantry_cannot_verify() {
        assert!(Digest::is_well_formed(E3));
        assert!(Digest::is_well_formed("blake3:abcDEF0123"));
        assert!(Digest::is_well_formed(
            "sha256+b64u:LCa0a2j_xo_5m0U8HTBBNBNCLXBkg7-g-YpeiGJm564"
        ));
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:a/b",
            "sha--256:a",
        ] {
            assert!(!Digest::is_well_formed(bad), "{bad:?}");
        }
    }

    #[test]
    fn hashing_the_empty_input_gives_the_well_known_digest() {
        assert_eq!(Digest::sha256_of(b"").to_string(), E3);
        let mut h = DigestHasher::new(DigestAlgorithm::Sha256);
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finish(), Digest::sha256_of(b"abc"));
        assert_eq!(Digest::of(DigestAlgorithm::Sha512, b"").hex().len(), 128);
    }

    #[test]
    fn a_saved_hasher_resumes_where_it_stopped() {
        for algorithm in [DigestAlgorithm::Sha256, DigestAlgorithm::Sha512] {
            let mut first = DigestHasher::new(algorithm);
            first.update(&[7u8; 1000]);
            let saved = first.save_state();
            let mut resumed = DigestHasher::restore_state(&saved).expect("state restores");
            resumed.update(b"tail");
            let mut whole = vec![7u8; 1000];
            whole.extend_from_slice(b"tail");
            assert_eq!(resumed.finish(), Digest::of(algorithm, &whole));
        }
        assert!(DigestHasher::restore_state(b"").is_none());
        assert!(DigestHasher::restore_state(&[1, 2, 3]).is_none());
        assert!(DigestHasher::restore_state(&[9; 41]).is_none());
    }
}
