//! The one rule for text that names or identifies something: no control characters.
//! PostgreSQL cannot store NUL at all, and the others (escape sequences, line breaks in
//! identifiers) corrupt logs, terminals and the audit log's readers; so every edge —
//! JSON bodies, query parameters, path segments, declared resources — refuses them,
//! on both databases alike.

/// The first control character of `text` (C0, DEL, C1), if any. With `free_text`,
/// tabs and line breaks are allowed (prose a person wrote: a reason, a comment).
pub fn control_character(text: &str, free_text: bool) -> Option<char> {
    text.chars()
        .find(|&c| c.is_control() && !(free_text && matches!(c, '\t' | '\n' | '\r')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_found_and_prose_keeps_its_whitespace() {
        for (text, free_text, expected) in [
            ("plain text, ünïcode ✓", false, None),
            ("nul\0", false, Some('\0')),
            ("nul\0", true, Some('\0')),
            ("esc\u{1b}[0m", true, Some('\u{1b}')),
            ("two\nlines", false, Some('\n')),
            ("two\nlines\tand a tab\r\n", true, None),
            ("del\u{7f}", true, Some('\u{7f}')),
            ("c1\u{85}", true, Some('\u{85}')),
        ] {
            assert_eq!(control_character(text, free_text), expected, "{text:?}");
        }
    }
}
