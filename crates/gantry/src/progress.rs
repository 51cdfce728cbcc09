//! The progress bar of uploads and copies: one line on a terminal's stderr, redrawn
//! in place.

use std::io::Write;

const WIDTH: u64 = 30;

/// Redraws `LABEL [#####     ] DONE / TOTAL EXTRA`.
pub(crate) fn draw(label: &str, done: u64, total: u64, extra: &str) {
    let filled = done
        .saturating_mul(WIDTH)
        .checked_div(total)
        .unwrap_or(WIDTH)
        .min(WIDTH);
    let filled = usize::try_from(filled).unwrap_or(0);
    let empty = usize::try_from(WIDTH).unwrap_or(0) - filled;
    let mut stderr = std::io::stderr().lock();
    let _ = write!(
        stderr,
        "\r{label:8} [{}{}] {} / {} {extra}",
        "#".repeat(filled),
        " ".repeat(empty),
        human_bytes(done),
        human_bytes(total)
    );
    let _ = stderr.flush();
}

/// `1.5 MiB`, `512 B`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::human_bytes;

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 << 30), "5.0 GiB");
    }
}
