//! The part of the server's own environment that programs it starts may see (`PATH`,
//! `HOME`, the locale, the time zone): read once by the `gantry` binary and handed down,
//! so no library reads the process environment and a test decides what its programs
//! get.

use std::ffi::{OsStr, OsString};
use std::sync::Arc;

/// The variables a command target, a CDN-invalidation program or git inherits from the
/// server, besides those each sets itself. Empty by default. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChildEnvironment {
    variables: Arc<[(String, OsString)]>,
}

impl ChildEnvironment {
    /// The names a server passes on when it builds one from its own environment.
    pub const INHERITED: [&'static str; 4] = ["PATH", "HOME", "LANG", "TZ"];

    pub fn new(variables: impl IntoIterator<Item = (String, OsString)>) -> ChildEnvironment {
        ChildEnvironment {
            variables: variables.into_iter().collect(),
        }
    }

    /// The [`ChildEnvironment::INHERITED`] variables `lookup` finds: the caller
    /// decides where they come from (the server passes `std::env::var_os`).
    pub fn inherited(lookup: impl Fn(&str) -> Option<OsString>) -> ChildEnvironment {
        ChildEnvironment::new(
            ChildEnvironment::INHERITED
                .iter()
                .filter_map(|name| lookup(name).map(|value| ((*name).to_owned(), value))),
        )
    }

    /// Every variable, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &OsStr)> {
        self.variables
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_os_str()))
    }

    /// Only the variables named in `names`.
    pub fn only<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = (&'a str, &'a OsStr)> {
        self.iter().filter(move |(name, _)| names.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_variables_are_handed_on() {
        let environment = ChildEnvironment::new([
            ("PATH".to_owned(), OsString::from("/usr/bin")),
            ("HOME".to_owned(), OsString::from("/home/gantry")),
        ]);
        let path: Vec<_> = environment.only(&["PATH"]).collect();
        assert_eq!(path, [("PATH", OsStr::new("/usr/bin"))]);
        assert_eq!(environment.iter().count(), 2);
        assert_eq!(ChildEnvironment::default().iter().count(), 0);
    }
}
