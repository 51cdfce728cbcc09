//! Times syncing a 5,000-file site where one file changed, to a directory and
//! (optionally) to an S3-compatible store: pack, unpack, the first full sync, a re-sync
//! with one changed file, and a re-sync with nothing changed.
//!
//! ```text
//! cargo run --release -p site --example sync_bench
//! cargo run --release -p site --example sync_bench -- \
//!     --s3 http://127.0.0.1:8333 BUCKET ACCESS_KEY SECRET_KEY
//! ```

use std::path::Path;
use std::time::Instant;

use site::{
    ArchiveLimits, DEFAULT_CACHE_CONTROL, Destination, S3Settings, SyncOptions, UnpackedSite, pack,
    unpack,
};

const FILES: usize = 5_000;

fn write_site(dir: &Path, version: &str) {
    for index in 0..FILES {
        let (name, content) = match index % 5 {
            0 => (
                format!("pages/{}/index.html", index / 5),
                format!("<!doctype html><title>{index}</title><p>page {index}</p>"),
            ),
            1 => (
                format!(
                    "assets/chunk-{index}.{:08x}.js",
                    index * 2_654_435_761 % 0xffff_ffff
                ),
                format!("export const value{index} = {index};\n").repeat(20),
            ),
            2 => (
                format!(
                    "assets/style-{index}.{:08x}.css",
                    index * 40_503 % 0xffff_ffff
                ),
                format!(".c{index} {{ color: #{:06x} }}\n", index * 97 % 0xff_ffff).repeat(10),
            ),
            3 => (
                format!("data/{index}.json"),
                format!("{{\"id\":{index},\"name\":\"item {index}\"}}"),
            ),
            _ => (format!("img/{index}.svg"), format!("<svg id=\"{index}\"/>")),
        };
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(path, content).expect("write");
    }
    std::fs::write(dir.join("index.html"), format!("<h1>{version}</h1>")).expect("write");
}

fn staged(work: &Path, name: &str, version: &str) -> UnpackedSite {
    let source = work.join(format!("{name}-source"));
    write_site(&source, version);
    let started = Instant::now();
    let packed = pack(&source, &ArchiveLimits::default(), &mut |_| {}).expect("pack");
    let packing = started.elapsed();
    let started = Instant::now();
    let site = unpack(packed.path(), &work.join(name), &ArchiveLimits::default()).expect("unpack");
    println!(
        "{name}: {} files, archive {} KiB; pack (with check) {:.0} ms, unpack (check + extract) {:.0} ms",
        site.files.len(),
        packed.size / 1024,
        packing.as_secs_f64() * 1e3,
        started.elapsed().as_secs_f64() * 1e3
    );
    site
}

async fn measure(
    label: &str,
    destination: &Destination,
    first: &UnpackedSite,
    second: &UnpackedSite,
) {
    let options = SyncOptions {
        default_cache_control: DEFAULT_CACHE_CONTROL.to_owned(),
        concurrency: 16,
    };
    for (step, site) in [
        ("first sync", first),
        ("one file changed", second),
        ("nothing changed", second),
    ] {
        let started = Instant::now();
        let report = destination
            .sync(&site.root, &site.files, &options)
            .await
            .expect("sync");
        println!(
            "{label} {step}: {:.0} ms ({} uploaded, {} unchanged, {} deleted)",
            started.elapsed().as_secs_f64() * 1e3,
            report.uploaded,
            report.unchanged,
            report.deleted
        );
    }
}

#[tokio::main]
async fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let work = tempfile::tempdir().expect("temp dir");
    let first = staged(work.path(), "v1", "v1");
    let second = staged(work.path(), "v2", "v2");

    let directory = Destination::directory(work.path().join("www"));
    measure("directory", &directory, &first, &second).await;

    if let [flag, endpoint, bucket, access_key, secret_key] = arguments.as_slice()
        && flag == "--s3"
    {
        let settings = S3Settings {
            endpoint: Some(endpoint.clone()),
            access_key_id: Some(access_key.clone()),
            allow_http: true,
            ..S3Settings::default()
        };
        let prefix = format!("bench-{}", std::process::id());
        let s3 = Destination::s3(&settings, Some(secret_key.clone()), bucket, &prefix)
            .expect("S3 destination");
        measure("s3", &s3, &first, &second).await;
    }
}
