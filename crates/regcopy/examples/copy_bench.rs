//! Measures copy throughput between two registries: `copy_bench SRC DST_REGISTRY/REPO
//! RUNS`. Each run copies SRC into a fresh repository (`DST…-run-N-PID`) so every blob
//! moves, and prints MB/s; the last line gives the median and this process's peak
//! resident memory. Plain HTTP, loopback allowed: for benchmarking local registries.

use std::sync::Arc;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arguments: Vec<String> = std::env::args().collect();
    let [_, source, destination, runs] = arguments.as_slice() else {
        return Err("usage: copy_bench HOST:PORT/REPO:TAG HOST:PORT/REPO RUNS".into());
    };
    let runs: usize = runs.parse()?;
    let policy = Arc::new(outbound::Policy::parse(&[
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])?);
    let mut options = regcopy::CopyOptions::new(policy);
    options.source.plain_http = true;
    options.destination.plain_http = true;
    let mut rates = Vec::new();
    for run in 0..runs {
        let target = format!("{destination}-run-{run}-{}", std::process::id());
        let started = Instant::now();
        let report = regcopy::copy_between(source, &target, &options, &|_| {})?;
        let seconds = started.elapsed().as_secs_f64();
        let rate = report.bytes_copied as f64 / 1e6 / seconds;
        println!(
            "run {run}: {} bytes in {seconds:.2} s = {rate:.1} MB/s ({} blobs)",
            report.bytes_copied, report.blobs_copied
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let peak = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .unwrap_or("VmHWM: ?")
        .to_owned();
    println!(
        "median {:.1} MB/s over {runs} runs; peak memory {peak}",
        rates.get(rates.len() / 2).copied().unwrap_or(0.0)
    );
    Ok(())
}
