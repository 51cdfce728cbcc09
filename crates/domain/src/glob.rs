//! The one glob dialect of configuration and policies.

/// `*` matches any sequence of characters; everything else matches itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str, expected: bool) {
        assert_eq!(glob_matches(pattern, text), expected, "{pattern} ~ {text}");
    }

    #[test]
    fn globs_match_with_stars_anywhere() {
        check("latest", "latest", true);
        check("latest", "latest2", false);
        check("*", "", true);
        check("*", "a/b", true);
        check("acme/*", "acme/web", true);
        check("acme/*", "acme/team/web", true);
        check("acme/*", "other/web", false);
        check("nightly-*", "nightly-2024", true);
        check("*-rc", "v1-rc", true);
        check("*-rc", "v1-rc2", false);
        check("a*b*c", "aXbYc", true);
        check("a*b*c", "aXcYb", false);
        check("ab*ba", "aba", false);
    }
}
