//! How the client commands print for people: aligned tables, short digests and
//! commits, ages and durations. Pure functions of what they are given (the current
//! time included), so every rendering is testable.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde::Serialize;

/// Columns separated by two spaces, each as wide as its widest cell; the last column
/// is not padded, so no line ends in spaces.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|cell| (*cell).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn render(&self) -> String {
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for line in std::iter::once(&self.header).chain(&self.rows) {
            for (width, cell) in widths.iter_mut().zip(line) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (index, (cell, width)) in line.iter().zip(&widths).enumerate() {
                if index > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if index + 1 < columns {
                    let padding = width.saturating_sub(cell.chars().count());
                    text.extend(std::iter::repeat_n(' ', padding));
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The server's JSON, pretty-printed, for `-o json`.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<String> {
    Ok(format!("{}\n", serde_json::to_string_pretty(value)?))
}

/// The first 12 hex digits of a digest, as `docker images` shows them.
pub(crate) fn short_digest(digest: &str) -> String {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.chars().take(12).collect()
}

/// A commit SHA as `git log --oneline` shows it; anything else (a tag, a version)
/// as it is.
pub(crate) fn short_commit(commit: &str) -> String {
    if commit.len() > 7 && commit.chars().all(|c| c.is_ascii_hexdigit()) {
        commit.chars().take(7).collect()
    } else {
        commit.to_owned()
    }
}

/// `text` cut to at most `max` characters, ending in `…` when cut, with every digest
/// in it shortened first (a hold's reason often names one): table cells stay short;
/// `-o json` keeps the whole text.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let words: Vec<String> = text
        .split(' ')
        .map(|word| match word.find("sha256:") {
            Some(at) if word.len() > at + 7 + 12 => {
                format!("{}{}", &word[..at], short_digest(&word[at..]))
            }
            _ => word.to_owned(),
        })
        .collect();
    let text = words.join(" ");
    if text.chars().count() <= max {
        return text;
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `-` for nothing.
pub(crate) fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// How long ago an RFC 3339 time was, in its largest unit (`40s`, `12m`, `5h`, `3d`);
/// the text as it came when it is not a time.
pub(crate) fn age(time: &str, now: Timestamp) -> String {
    match time.parse::<Timestamp>() {
        Ok(then) => {
            let seconds = now.as_second().saturating_sub(then.as_second()).max(0);
            largest_unit(seconds)
        }
        Err(_) => time.to_owned(),
    }
}

fn largest_unit(seconds: i64) -> String {
    match seconds {
        ..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A duration in its two largest units (`45s`, `12m 5s`, `3h 20m`, `2d 4h`).
pub(crate) fn duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = units.iter().position(|(size, _)| seconds >= *size) else {
        return "0s".to_owned();
    };
    let (size, unit) = units[first];
    let mut out = format!("{}{unit}", seconds / size);
    if let Some((next_size, next_unit)) = units.get(first + 1) {
        let rest = (seconds % size) / next_size;
        if rest > 0 {
            let _ = write!(out, " {rest}{next_unit}");
        }
    }
    out
}

/// `✓` or `✗`.
pub(crate) fn mark(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_by_characters_and_leaves_no_trailing_spaces() {
        let mut table = Table::new(&["CONDITION", "MET", "WHY"]);
        table.row(vec!["check trivy".into(), "✗".into(), "1 high".into()]);
        table.row(vec!["order".into(), "✓".into(), "".into()]);
        assert_eq!(
            table.render(),
            "CONDITION    MET  WHY\n\
             check trivy  ✗    1 high\n\
             order        ✓\n"
        );
    }

    fn check_age(time: &str, expected: &str) {
        let now: Timestamp = "2026-03-10T12:00:00Z".parse().expect("a time");
        assert_eq!(age(time, now), expected, "{time}");
    }

    #[test]
    fn an_age_is_told_in_its_largest_unit() {
        check_age("2026-03-10T11:59:20Z", "40s");
        check_age("2026-03-10T11:48:00Z", "12m");
        check_age("2026-03-10T07:00:00Z", "5h");
        check_age("2026-03-07T11:00:00Z", "3d");
        check_age("2026-03-10T12:00:05Z", "0s");
        check_age("yesterday", "yesterday");
    }

    fn check_duration(seconds: i64, expected: &str) {
        assert_eq!(duration(seconds), expected, "{seconds}");
    }

    #[test]
    fn a_duration_is_told_in_its_two_largest_units() {
        check_duration(0, "0s");
        check_duration(45, "45s");
        check_duration(725, "12m 5s");
        check_duration(3_600, "1h");
        check_duration(12_000, "3h 20m");
        check_duration(187_200, "2d 4h");
    }

    #[test]
    fn digests_and_commits_are_shortened_the_way_docker_and_git_show_them() {
        assert_eq!(
            short_digest("sha256:0123456789abcdef0123456789abcdef"),
            "0123456789ab"
        );
        assert_eq!(
            short_commit("abc1234def5678abc1234def5678abc1234def56"),
            "abc1234"
        );
        assert_eq!(short_commit("v1.2.3"), "v1.2.3");
    }
}
