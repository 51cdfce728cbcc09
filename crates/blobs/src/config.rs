//! Where blobs live, as one typed configuration: a local directory, memory (tests),
//! or an S3 bucket (AWS or an S3-compatible store such as SeaweedFS, MinIO or R2),
//! parsed from the `blob_store` setting.

use std::path::PathBuf;

use crate::BlobError;

/// Where blobs live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobStoreConfig {
    /// A local directory, created when absent.
    Local { dir: PathBuf },
    /// Memory: gone when the process ends (tests).
    Memory,
    /// A bucket of an S3-compatible object store.
    S3(S3Location),
}

/// An S3 bucket and where in it, and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// The key prefix every object is stored under (no leading or trailing `/`);
    /// empty: the bucket's root.
    pub prefix: String,
    /// The endpoint URL (`http://127.0.0.1:8333`); AWS's regional endpoint when absent.
    pub endpoint: Option<String>,
    pub region: String,
    /// Address the bucket as `BUCKET.endpoint` instead of `endpoint/BUCKET`.
    pub virtual_hosted_style: bool,
    /// Answer a blob download with a redirect to a presigned URL of the bucket, so
    /// the bytes flow from the store to the client without passing through Gantry.
    pub redirect: bool,
    /// The largest object the store copies server-side (`CopyObject`): S3 and most
    /// compatible stores stop at 5 GiB. A blob received in one part larger than this
    /// is committed by reading it back into a multipart write instead.
    pub copy_limit: u64,
}

/// S3's own limit on `CopyObject`: 5 GiB.
const S3_COPY_LIMIT: u64 = 5 << 30;

impl S3Location {
    /// Whether the endpoint is plain HTTP (a local store); requests are then allowed
    /// without TLS.
    pub fn allows_http(&self) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|endpoint| endpoint.starts_with("http://"))
    }
}

/// The keys S3 requests are signed with. Never logged (`Debug` hides them); without
/// them the store asks the instance's metadata service.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<hidden>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<hidden>"),
            )
            .finish()
    }
}

impl BlobStoreConfig {
    /// Reads a `blob_store` setting: a directory path, `file:///PATH`, `memory://`, or
    /// `s3://BUCKET[/PREFIX][?endpoint=URL&region=REGION&addressing=virtual|path&redirect=true&copy_limit=BYTES]`.
    pub fn parse(url: &str) -> Result<BlobStoreConfig, BlobError> {
        let unsupported = |why: &str| BlobError::UnsupportedUrl {
            url: url.to_owned(),
            why: why.to_owned(),
        };
        if url == "memory://" || url == "memory:" {
            return Ok(BlobStoreConfig::Memory);
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
            let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
            if bucket.is_empty()
                || !bucket
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            {
                return Err(unsupported(
                    "the bucket name must be lowercase letters, digits, `-` and `.`",
                ));
            }
            let mut location = S3Location {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint: None,
                region: "us-east-1".to_owned(),
                virtual_hosted_style: false,
                redirect: false,
                copy_limit: S3_COPY_LIMIT,
            };
            for pair in query.split('&').filter(|pair| !pair.is_empty()) {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                match key {
                    "endpoint" if value.starts_with("http://") || value.starts_with("https://") => {
                        location.endpoint = Some(value.trim_end_matches('/').to_owned());
                    }
                    "endpoint" => {
                        return Err(unsupported("endpoint must be an http:// or https:// URL"));
                    }
                    "region" if !value.is_empty() => location.region = value.to_owned(),
                    "addressing" if value == "virtual" => location.virtual_hosted_style = true,
                    "addressing" if value == "path" => location.virtual_hosted_style = false,
                    "redirect" if value == "true" => location.redirect = true,
                    "redirect" if value == "false" => location.redirect = false,
                    "copy_limit" => {
                        location.copy_limit = value.parse().map_err(|_| {
                            unsupported("copy_limit must be a number of bytes (S3: 5368709120)")
                        })?;
                    }
                    _ => {
                        return Err(unsupported(&format!(
                            "unknown or empty parameter `{key}` (use endpoint, region, addressing=virtual|path, redirect=true|false, copy_limit=BYTES)"
                        )));
                    }
                }
            }
            return Ok(BlobStoreConfig::S3(location));
        }
        match url.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Ok(BlobStoreConfig::Local {
                dir: PathBuf::from(path),
            }),
            None if !url.is_empty() && !url.contains("://") => Ok(BlobStoreConfig::Local {
                dir: PathBuf::from(url),
            }),
            _ => Err(unsupported(
                "use a directory path, file:///PATH, memory:// or s3://BUCKET/PREFIX?endpoint=…&region=…",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_blob_store_parses_and_nonsense_is_refused() {
        assert_eq!(
            BlobStoreConfig::parse("/srv/blobs").expect("a path"),
            BlobStoreConfig::Local {
                dir: "/srv/blobs".into()
            }
        );
        assert_eq!(
            BlobStoreConfig::parse("file:///srv/blobs").expect("a file URL"),
            BlobStoreConfig::Local {
                dir: "/srv/blobs".into()
            }
        );
        assert_eq!(
            BlobStoreConfig::parse("memory://").expect("memory"),
            BlobStoreConfig::Memory
        );
        let BlobStoreConfig::S3(location) = BlobStoreConfig::parse(
            "s3://gantry-blobs/prod/registry/?endpoint=http://127.0.0.1:8333/&region=eu-west-1",
        )
        .expect("an S3 URL") else {
            panic!("not S3");
        };
        assert_eq!(location.bucket, "gantry-blobs");
        assert_eq!(location.prefix, "prod/registry");
        assert_eq!(location.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(location.region, "eu-west-1");
        assert!(location.allows_http() && !location.virtual_hosted_style && !location.redirect);
        let BlobStoreConfig::S3(location) =
            BlobStoreConfig::parse("s3://b/p?redirect=true").expect("an S3 URL")
        else {
            panic!("not S3");
        };
        assert!(location.redirect);
        assert_eq!(location.copy_limit, 5 << 30, "S3's own limit unless told");
        let BlobStoreConfig::S3(location) =
            BlobStoreConfig::parse("s3://b/p?copy_limit=1048576").expect("an S3 URL")
        else {
            panic!("not S3");
        };
        assert_eq!(location.copy_limit, 1 << 20);
        let BlobStoreConfig::S3(location) =
            BlobStoreConfig::parse("s3://b?addressing=virtual").expect("an S3 URL")
        else {
            panic!("not S3");
        };
        assert_eq!(
            (location.prefix.as_str(), location.region.as_str()),
            ("", "us-east-1")
        );
        assert!(location.virtual_hosted_style && !location.allows_http());
        for bad in [
            "s3://",
            "s3://Upper/x",
            "s3://b?endpoint=ftp://x",
            "s3://b?token=secret",
            "s3://b?region=",
            "s3://b?redirect=yes",
            "s3://b?copy_limit=5GiB",
            "s3://b?copy_limit=-1",
            "gs://bucket",
            "file://",
            "",
        ] {
            let error = BlobStoreConfig::parse(bad).expect_err(bad);
            assert!(
                matches!(error, BlobError::UnsupportedUrl { .. }),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn credentials_never_show_their_secret() {
        let credentials = S3Credentials {
            access_key_id: "AKIDEXAMPLE".to_owned(),
            secret_access_key: "wJalrXUtnFEMI".to_owned(),
            session_token: Some("FwoGZXIvYXdzE".to_owned()),
        };
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AKIDEXAMPLE"), "{shown}");
        assert!(
            !shown.contains("wJalrXUtnFEMI") && !shown.contains("FwoGZXIvYXdzE"),
            "{shown}"
        );
    }
}
