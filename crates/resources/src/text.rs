//! Scalars written as one YAML string and parsed by their type's own constructor
//! (`EnvName::parse`, `FreezeWindow::parse`, `RepoName::parse`, …) while the document
//! is being read, so a refusal carries the field path and line of the value.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use domain::RepoName;
use domain::gate::FreezeWindow;
use domain::pipeline::{AppName, CheckName, EnvName, PipelineError, PipelineName, Role};
use domain::retention::MaxAge;
use serde::de::{self, Deserialize, Deserializer, Visitor};

use domain::application::{
    GitBranch, GitRepository, HttpUrl, KeyPath, RegistryDestination, RepoFilePath, SecretRef,
    SiteDestination,
};

/// A type read from a string by a fallible constructor.
pub(crate) trait FromText: Sized {
    /// Completes "expected …" in type errors.
    const EXPECTING: &'static str;

    fn from_text(text: &str) -> Result<Self, String>;
}

/// A `T` deserialized from a YAML string through [`FromText`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text<T>(pub(crate) T);

impl<'de, T: FromText> Deserialize<'de> for Text<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<T>(PhantomData<T>);

        impl<T: FromText> Visitor<'_> for TextVisitor<T> {
            type Value = Text<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::EXPECTING)
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Text<T>, E> {
                T::from_text(text).map(Text).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

impl<T: fmt::Display> fmt::Display for Text<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

macro_rules! from_text {
    ($type:ty, $expecting:literal, $parse:expr) => {
        impl FromText for $type {
            const EXPECTING: &'static str = $expecting;

            fn from_text(text: &str) -> Result<Self, String> {
                $parse(text).map_err(|error| error.to_string())
            }
        }
    };
}

from_text!(AppName, "an application name", AppName::parse);
from_text!(EnvName, "an environment name", EnvName::parse);
from_text!(PipelineName, "a pipeline name", PipelineName::parse);
from_text!(CheckName, "a check name", CheckName::parse);
from_text!(Role, "a role", Role::parse);
from_text!(RepoName, "a repository name", RepoName::parse);
from_text!(FreezeWindow, "a freeze window", FreezeWindow::parse);
from_text!(GitRepository, "a git repository", GitRepository::parse);
from_text!(GitBranch, "a git branch", GitBranch::parse);
from_text!(RepoFilePath, "a file path", RepoFilePath::parse);
from_text!(KeyPath, "a YAML key path", KeyPath::parse);
from_text!(SecretRef, "a secret reference", SecretRef::parse);
from_text!(HttpUrl, "an http(s) URL", HttpUrl::parse);
from_text!(
    RegistryDestination,
    "a registry destination",
    RegistryDestination::parse
);
from_text!(
    SiteDestination,
    "a site destination",
    SiteDestination::parse
);
from_text!(Duration, "a duration such as 30m", parse_duration);
from_text!(MaxAge, "an age such as 7d, 36h or forever", MaxAge::parse);
from_text!(
    RetentionPolicyName,
    "a retention policy name",
    RetentionPolicyName::parse
);
from_text!(
    TrustPolicyName,
    "a trust policy name",
    TrustPolicyName::parse
);

/// A trust policy's name. `domain::trust::TrustPolicy` keeps it as plain text, so the
/// rule every other resource name follows (a DNS label, as `PipelineName` checks it)
/// is applied here, where the name is read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TrustPolicyName(pub(crate) String);

impl TrustPolicyName {
    fn parse(text: &str) -> Result<TrustPolicyName, PipelineError> {
        PipelineName::parse(text).map(|name| TrustPolicyName(name.as_str().to_owned()))
    }
}

/// A retention policy's name, a DNS label like every other resource name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RetentionPolicyName(pub(crate) String);

impl RetentionPolicyName {
    fn parse(text: &str) -> Result<RetentionPolicyName, PipelineError> {
        PipelineName::parse(text).map(|name| RetentionPolicyName(name.as_str().to_owned()))
    }
}

/// Parses `45s`, `30m`, `2h`, `1h30m` (or `1h 30m`, `90 minutes`) into a positive duration.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let refused = || format!("`{text}` is not a duration: use e.g. 45s, 30m, 2h or 1h30m");
    let signed: jiff::SignedDuration = text.trim().parse().map_err(|_| refused())?;
    if signed.is_negative() || signed.is_zero() {
        return Err(refused());
    }
    Duration::try_from(signed).map_err(|_| refused())
}

/// Renders a duration the way [`parse_duration`] reads it: `1h 30m`.
pub(crate) fn render_duration(duration: Duration) -> String {
    match jiff::SignedDuration::try_from(duration) {
        Ok(signed) => format!("{signed:#}"),
        Err(_) => format!("{}s", duration.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<u64>) {
        assert_eq!(
            parse_duration(text).ok(),
            expected.map(Duration::from_secs),
            "{text:?}"
        );
    }

    #[test]
    fn durations_are_written_with_units() {
        check("45s", Some(45));
        check("30m", Some(30 * 60));
        check("2h", Some(2 * 3600));
        check("1h30m", Some(90 * 60));
        check("1h 30m", Some(90 * 60));
        check("90 minutes", Some(90 * 60));
        check("30", None);
        check("-30m", None);
        check("0s", None);
        check("1d", None);
        check("soon", None);
        check("", None);
    }

    #[test]
    fn durations_render_in_the_form_they_are_read() {
        for text in ["45s", "30m", "2h", "1h 30m"] {
            let duration = parse_duration(text).expect("valid");
            assert_eq!(render_duration(duration), text);
        }
    }
}
