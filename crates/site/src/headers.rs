//! The HTTP headers a site's files are served with: `Content-Type` by extension and
//! `Cache-Control` by what the file is. Fingerprinted assets (`app.3f2a9c.js`: the name
//! changes whenever the content does) are cached for a year as immutable; HTML and JSON
//! (the entry points that name those assets, and data that changes in place) must be
//! revalidated on every request; everything else gets the target's default.

/// `Cache-Control` of fingerprinted assets.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of HTML and JSON.
pub const REVALIDATE: &str = "max-age=0, must-revalidate";
/// `Cache-Control` of other files when neither the target nor the server says.
pub const DEFAULT_CACHE_CONTROL: &str = "public, max-age=300";

/// Content types by lowercase extension.
const CONTENT_TYPES: &[(&str, &str)] = &[
    ("html", "text/html; charset=utf-8"),
    ("htm", "text/html; charset=utf-8"),
    ("css", "text/css; charset=utf-8"),
    ("js", "text/javascript; charset=utf-8"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("cjs", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("map", "application/json"),
    ("webmanifest", "application/manifest+json"),
    ("xml", "application/xml"),
    ("rss", "application/rss+xml"),
    ("atom", "application/atom+xml"),
    ("txt", "text/plain; charset=utf-8"),
    ("md", "text/markdown; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("png", "image/png"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("avif", "image/avif"),
    ("ico", "image/x-icon"),
    ("bmp", "image/bmp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("ttf", "font/ttf"),
    ("otf", "font/otf"),
    ("eot", "application/vnd.ms-fontobject"),
    ("wasm", "application/wasm"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("gz", "application/gzip"),
    ("mp4", "video/mp4"),
    ("webm", "video/webm"),
    ("mp3", "audio/mpeg"),
    ("ogg", "audio/ogg"),
    ("wav", "audio/wav"),
];

/// The headers one file is served with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileHeaders {
    pub content_type: String,
    pub cache_control: String,
}

impl FileHeaders {
    /// The headers of the file at `path` (`assets/app.3f2a9c.js`), with
    /// `default_cache_control` for files that are neither fingerprinted nor HTML/JSON.
    pub fn for_path(path: &str, default_cache_control: &str) -> FileHeaders {
        FileHeaders {
            content_type: content_type(path).to_owned(),
            cache_control: cache_control(path, default_cache_control).to_owned(),
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn extension(path: &str) -> Option<String> {
    let name = file_name(path);
    let (stem, extension) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| extension.to_ascii_lowercase())
}

/// The `Content-Type` of a file by its extension; `application/octet-stream` for
/// extensions not in the table.
pub fn content_type(path: &str) -> &'static str {
    extension(path)
        .and_then(|extension| {
            CONTENT_TYPES
                .iter()
                .find(|(known, _)| *known == extension)
                .map(|(_, content_type)| *content_type)
        })
        .unwrap_or("application/octet-stream")
}

/// Whether the file is an HTML page.
pub fn is_html(path: &str) -> bool {
    matches!(extension(path).as_deref(), Some("html" | "htm"))
}

/// The `Cache-Control` of a file.
pub fn cache_control<'a>(path: &str, default_cache_control: &'a str) -> &'a str {
    if is_html(path) {
        REVALIDATE
    } else if is_fingerprinted(path) {
        IMMUTABLE
    } else if matches!(extension(path).as_deref(), Some("json" | "webmanifest")) {
        REVALIDATE
    } else {
        default_cache_control
    }
}

/// Whether a file's name carries a hash of its content: a segment after the base name
/// (separated by `.`, `-` or `_`, before the extension) that looks like a hash rather
/// than a word or a version —
/// - 6 or more hex digits mixing digits and letters (`app.3f2a9c.js`, `main-5b8c1e2f.css`),
/// - 8 or more base-36 characters of one case mixing digits and letters
///   (`chunk-LQ3KUVGO.js`, `app.k3j9x2m1.js`),
/// - exactly 8 base-62 characters mixing digits, upper and lower case (`index-Bq3x9YkT.js`).
///
/// Missing a fingerprint only costs caching; claiming one wrongly would pin a changing
/// file in caches for a year, so words like `bundle` or `es2015` do not count.
pub fn is_fingerprinted(path: &str) -> bool {
    let name = file_name(path);
    let Some((stem, _extension)) = name.rsplit_once('.') else {
        return false;
    };
    stem.split(['.', '-', '_']).skip(1).any(looks_like_hash)
}

fn looks_like_hash(segment: &str) -> bool {
    let digits = segment.bytes().filter(u8::is_ascii_digit).count();
    let lower = segment.bytes().filter(u8::is_ascii_lowercase).count();
    let upper = segment.bytes().filter(u8::is_ascii_uppercase).count();
    let alphanumeric = digits + lower + upper == segment.len();
    if !alphanumeric || digits == 0 || digits == segment.len() {
        return false;
    }
    let hex = segment
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let one_case = lower == 0 || upper == 0;
    (hex && segment.len() >= 6)
        || (one_case && segment.len() >= 8)
        || (lower > 0 && upper > 0 && segment.len() == 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, content_type_expected: &str, cache_expected: &str) {
        let headers = FileHeaders::for_path(path, DEFAULT_CACHE_CONTROL);
        assert_eq!(headers.content_type, content_type_expected, "{path}");
        assert_eq!(headers.cache_control, cache_expected, "{path}");
    }

    #[test]
    fn headers_follow_the_kind_of_file() {
        check("index.html", "text/html; charset=utf-8", REVALIDATE);
        check("blog/post.HTM", "text/html; charset=utf-8", REVALIDATE);
        check(
            "assets/app.3f2a9c.js",
            "text/javascript; charset=utf-8",
            IMMUTABLE,
        );
        check(
            "assets/main-5b8c1e2f.css",
            "text/css; charset=utf-8",
            IMMUTABLE,
        );
        check(
            "assets/index-Bq3x9YkT.js",
            "text/javascript; charset=utf-8",
            IMMUTABLE,
        );
        check(
            "chunk-LQ3KUVGO.mjs",
            "text/javascript; charset=utf-8",
            IMMUTABLE,
        );
        check(
            "app.3f2a9c.min.js",
            "text/javascript; charset=utf-8",
            IMMUTABLE,
        );
        check("data/stats.3f2a9c.json", "application/json", IMMUTABLE);
        check("data/stats.json", "application/json", REVALIDATE);
        check(
            "manifest.webmanifest",
            "application/manifest+json",
            REVALIDATE,
        );
        check(
            "app-bundle.js",
            "text/javascript; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check(
            "polyfills-es2015.js",
            "text/javascript; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check(
            "jquery-3.7.1.min.js",
            "text/javascript; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check(
            "build.20240101.js",
            "text/javascript; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check(
            "3f2a9c1b.js",
            "text/javascript; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check("logo.svg", "image/svg+xml", DEFAULT_CACHE_CONTROL);
        check("img/photo.JPG", "image/jpeg", DEFAULT_CACHE_CONTROL);
        check("fonts/inter.woff2", "font/woff2", DEFAULT_CACHE_CONTROL);
        check("app.wasm", "application/wasm", DEFAULT_CACHE_CONTROL);
        check("app.js.map", "application/json", DEFAULT_CACHE_CONTROL);
        check(
            "robots.txt",
            "text/plain; charset=utf-8",
            DEFAULT_CACHE_CONTROL,
        );
        check("favicon.ico", "image/x-icon", DEFAULT_CACHE_CONTROL);
        check("doc.pdf", "application/pdf", DEFAULT_CACHE_CONTROL);
        check("LICENSE", "application/octet-stream", DEFAULT_CACHE_CONTROL);
        check(
            ".htaccess",
            "application/octet-stream",
            DEFAULT_CACHE_CONTROL,
        );
        check(
            "data.bin",
            "application/octet-stream",
            DEFAULT_CACHE_CONTROL,
        );
    }

    #[test]
    fn the_target_default_applies_to_other_files_only() {
        assert_eq!(
            cache_control("logo.png", "public, max-age=60"),
            "public, max-age=60"
        );
        assert_eq!(
            cache_control("index.html", "public, max-age=60"),
            REVALIDATE
        );
        assert_eq!(
            cache_control("a.3f2a9c.png", "public, max-age=60"),
            IMMUTABLE
        );
    }
}
