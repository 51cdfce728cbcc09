//! The YAML shapes platform engineers write, as serde structs. Every struct
//! refuses unknown fields, so a typo is an error rather than a silently ignored
//! setting. Scalars are parsed by their own types while reading ([`Text`]), and each
//! nested shape whose parts must agree (a target names exactly one kind, `key` or
//! `keys`) becomes its model type as soon as it is read ([`model`]), so every refusal
//! carries the path and line of the value it is about.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use domain::RepoName;
use domain::gate::FreezeWindow;
use domain::pipeline::{AppName, CheckName, EnvName, PipelineName, RequiredCheck, Role};
use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::convert::IntoModel;
use crate::text::{RetentionPolicyName, Text, TrustPolicyName};
use domain::application::{
    ConfigValue, GitBranch, GitRepository, HealthCheck, HttpUrl, InvalidationHook, KeyPath,
    RegistryDestination, RepoFilePath, SecretRef, SiteDestination, Target,
};
use domain::retention::MaxAge;

/// Reads a `W` and turns it into its model type, refusing it with the conversion's reason.
fn model<'de, W, D>(deserializer: D) -> Result<W::Model, D::Error>
where
    W: Deserialize<'de> + IntoModel,
    D: Deserializer<'de>,
{
    W::deserialize(deserializer)?
        .into_model()
        .map_err(de::Error::custom)
}

/// [`model`] for an optional field (paired with `#[serde(default)]`).
fn some_model<'de, W, D>(deserializer: D) -> Result<Option<W::Model>, D::Error>
where
    W: Deserialize<'de> + IntoModel,
    D: Deserializer<'de>,
{
    model::<W, D>(deserializer).map(Some)
}

// ---------------------------------------------------------------------------------
// kind: Pipeline

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PipelineDocument {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    pub(crate) name: Text<PipelineName>,
    pub(crate) stages: Vec<StageWire>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StageWire {
    pub(crate) name: Text<EnvName>,
    #[serde(default)]
    pub(crate) auto: bool,
    #[serde(default)]
    pub(crate) tier: TierWire,
    #[serde(default)]
    pub(crate) gate: GateWire,
}

#[derive(Debug, Default, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TierWire {
    #[default]
    Shared,
    Release,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GateWire {
    #[serde(default)]
    pub(crate) checks: Vec<CheckWire>,
    #[serde(default)]
    pub(crate) approvals: Vec<ApprovalWire>,
    #[serde(default)]
    pub(crate) soak: Option<Text<Duration>>,
    #[serde(default)]
    pub(crate) freeze: Vec<Text<FreezeWindow>>,
}

/// A required check: its name alone, or `{ name, max: { critical: 0, … } }`.
#[derive(Debug)]
pub(crate) struct CheckWire(pub(crate) RequiredCheck);

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckWithLimitsWire {
    pub(crate) name: Text<CheckName>,
    #[serde(default)]
    pub(crate) max: SeverityLimitsWire,
}

/// The most findings of each severity the check may report.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeverityLimitsWire {
    pub(crate) critical: Option<u64>,
    pub(crate) high: Option<u64>,
    pub(crate) medium: Option<u64>,
    pub(crate) low: Option<u64>,
    pub(crate) unknown: Option<u64>,
}

impl<'de> Deserialize<'de> for CheckWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CheckVisitor;

        impl<'de> Visitor<'de> for CheckVisitor {
            type Value = CheckWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a check name or `{ name, max }`")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<CheckWire, E> {
                let name = CheckName::parse(text).map_err(E::custom)?;
                Ok(CheckWire(RequiredCheck {
                    name,
                    max: BTreeMap::new(),
                }))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<CheckWire, A::Error> {
                let check = CheckWithLimitsWire::deserialize(MapAccessDeserializer::new(map))?;
                Ok(CheckWire(check.into_model().map_err(de::Error::custom)?))
            }
        }

        deserializer.deserialize_any(CheckVisitor)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApprovalWire {
    pub(crate) role: Text<Role>,
    pub(crate) count: ApprovalCount,
}

/// How many distinct people must approve: at least one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ApprovalCount(pub(crate) u32);

impl<'de> Deserialize<'de> for ApprovalCount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match u32::deserialize(deserializer)? {
            0 => Err(de::Error::custom(
                "an approval rule needs a count of at least 1 (leave the rule out for none)",
            )),
            count => Ok(ApprovalCount(count)),
        }
    }
}

// ---------------------------------------------------------------------------------
// kind: Application

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ApplicationDocument {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    pub(crate) name: Text<AppName>,
    #[serde(rename = "type")]
    pub(crate) app_type: ApplicationTypeWire,
    pub(crate) repository: Text<RepoName>,
    pub(crate) pipeline: Text<PipelineName>,
    #[serde(default)]
    pub(crate) tech_stack: Option<String>,
    #[serde(default)]
    pub(crate) module: Option<String>,
    pub(crate) environments: UniqueMap<Text<EnvName>, EnvironmentWire>,
    /// Retention for the application's repository; it wins over any `RetentionPolicy`.
    #[serde(default)]
    pub(crate) retention: Option<RetentionRulesWire>,
}

/// What a retention policy keeps: every field optional, defaults filled in by
/// `convert::retention_rules`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionRulesWire {
    #[serde(default)]
    pub(crate) keep_tagged: Option<u32>,
    #[serde(default)]
    pub(crate) expire_untagged_after: Option<Text<MaxAge>>,
    #[serde(default)]
    pub(crate) expire_after: Option<TierAgesWire>,
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) rollback_window: Option<u32>,
}

/// The age limit of each tier (`dev`, `rc`, `release`), each optional.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TierAgesWire {
    #[serde(default)]
    pub(crate) dev: Option<Text<MaxAge>>,
    #[serde(default)]
    pub(crate) rc: Option<Text<MaxAge>>,
    #[serde(default)]
    pub(crate) release: Option<Text<MaxAge>>,
}

// ---------------------------------------------------------------------------------
// kind: RetentionPolicy

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionPolicyDocument {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    pub(crate) name: Text<RetentionPolicyName>,
    pub(crate) repositories: Vec<String>,
    #[serde(default)]
    pub(crate) priority: Option<u32>,
    #[serde(default)]
    pub(crate) keep_tagged: Option<u32>,
    #[serde(default)]
    pub(crate) expire_untagged_after: Option<Text<MaxAge>>,
    #[serde(default)]
    pub(crate) expire_after: Option<TierAgesWire>,
    #[serde(default)]
    pub(crate) tags: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) rollback_window: Option<u32>,
}

impl RetentionPolicyDocument {
    /// The rule fields, as an application's `retention` block holds them.
    pub(crate) fn split(self) -> (String, Vec<String>, Option<u32>, RetentionRulesWire) {
        let rules = RetentionRulesWire {
            keep_tagged: self.keep_tagged,
            expire_untagged_after: self.expire_untagged_after,
            expire_after: self.expire_after,
            tags: self.tags,
            rollback_window: self.rollback_window,
        };
        (self.name.0.0, self.repositories, self.priority, rules)
    }
}

#[derive(Debug, Clone, Copy, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ApplicationTypeWire {
    Container,
    StaticSite,
    Infra,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvironmentWire {
    #[serde(deserialize_with = "model::<TargetWire, _>")]
    pub(crate) target: Target,
    #[serde(default, deserialize_with = "some_model::<HealthCheckWire, _>")]
    pub(crate) health_check: Option<HealthCheck>,
    #[serde(default)]
    pub(crate) auto_rollback: bool,
    #[serde(default)]
    pub(crate) require_attestation: bool,
    #[serde(default)]
    pub(crate) config: UniqueMap<Text<KeyPath>, ConfigValueWire>,
}

/// `target: { KIND: { … } }` with exactly one KIND; read as optional fields so an
/// unknown kind is refused with the list of known ones.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TargetWire {
    #[serde(default, deserialize_with = "some_model::<RecordWire, _>")]
    pub(crate) record: Option<Target>,
    #[serde(default, deserialize_with = "some_model::<GitopsWire, _>")]
    pub(crate) gitops: Option<Target>,
    #[serde(
        rename = "static-site",
        default,
        deserialize_with = "some_model::<StaticSiteWire, _>"
    )]
    pub(crate) static_site: Option<Target>,
    #[serde(
        rename = "registry-copy",
        default,
        deserialize_with = "some_model::<RegistryCopyWire, _>"
    )]
    pub(crate) registry_copy: Option<Target>,
    #[serde(default, deserialize_with = "some_model::<WebhookWire, _>")]
    pub(crate) webhook: Option<Target>,
    #[serde(default, deserialize_with = "some_model::<CommandWire, _>")]
    pub(crate) command: Option<Target>,
}

/// `record: {}` (or `record:`): it takes no settings.
#[derive(Debug)]
pub(crate) struct RecordWire;

impl<'de> Deserialize<'de> for RecordWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RecordVisitor;

        impl<'de> Visitor<'de> for RecordVisitor {
            type Value = RecordWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{}`")
            }

            fn visit_unit<E: de::Error>(self) -> Result<RecordWire, E> {
                Ok(RecordWire)
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RecordWire, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(RecordWire),
                    Some(key) => Err(de::Error::custom(format_args!(
                        "unknown field `{key}`: a record target takes no settings"
                    ))),
                }
            }
        }

        deserializer.deserialize_any(RecordVisitor)
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GitopsWire {
    pub(crate) repo: Text<GitRepository>,
    #[serde(default)]
    pub(crate) branch: Option<Text<GitBranch>>,
    pub(crate) file: Text<RepoFilePath>,
    #[serde(default)]
    pub(crate) key: Option<Text<KeyPath>>,
    #[serde(default)]
    pub(crate) keys: Option<ImageKeysWire>,
}

/// The image written as separate keys; the digest is required.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageKeysWire {
    #[serde(default)]
    pub(crate) repository: Option<Text<KeyPath>>,
    #[serde(default)]
    pub(crate) tag: Option<Text<KeyPath>>,
    pub(crate) digest: Text<KeyPath>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StaticSiteWire {
    pub(crate) destination: Text<SiteDestination>,
    #[serde(default)]
    pub(crate) default_cache_control: Option<String>,
    #[serde(default, deserialize_with = "some_model::<InvalidateWire, _>")]
    pub(crate) invalidate: Option<InvalidationHook>,
}

/// `invalidate: { url: … }` or `invalidate: { command: { program, args } }`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct InvalidateWire {
    #[serde(default)]
    pub(crate) url: Option<Text<HttpUrl>>,
    #[serde(default)]
    pub(crate) command: Option<ProgramWire>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgramWire {
    pub(crate) program: String,
    #[serde(default)]
    pub(crate) args: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegistryCopyWire {
    pub(crate) to: Text<RegistryDestination>,
    /// Also point a tag named after the environment at the copy (default true).
    #[serde(default)]
    pub(crate) env_tag: Option<bool>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookWire {
    pub(crate) url: Text<HttpUrl>,
    #[serde(default)]
    pub(crate) secret_ref: Option<Text<SecretRef>>,
    #[serde(default)]
    pub(crate) timeout: Option<Text<Duration>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommandWire {
    pub(crate) program: String,
    #[serde(default)]
    pub(crate) args: Vec<String>,
    #[serde(default)]
    pub(crate) timeout: Option<Text<Duration>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HealthCheckWire {
    pub(crate) url: Text<HttpUrl>,
    #[serde(default)]
    pub(crate) expect_status: Option<StatusCode>,
    #[serde(default)]
    pub(crate) timeout: Option<Text<Duration>>,
    #[serde(default)]
    pub(crate) retries: Option<u32>,
}

/// An HTTP status code, 100–599.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StatusCode(pub(crate) u16);

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HealthCheck::status(u16::deserialize(deserializer)?)
            .map(StatusCode)
            .map_err(de::Error::custom)
    }
}

/// A config value: a string, an integer or a boolean.
#[derive(Debug)]
pub(crate) struct ConfigValueWire(pub(crate) ConfigValue);

impl<'de> Deserialize<'de> for ConfigValueWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ValueVisitor;

        impl Visitor<'_> for ValueVisitor {
            type Value = ConfigValueWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ConfigValueWire, E> {
                Ok(ConfigValueWire(ConfigValue::String(text.to_owned())))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<ConfigValueWire, E> {
                Ok(ConfigValueWire(ConfigValue::Boolean(value)))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ConfigValueWire, E> {
                Ok(ConfigValueWire(ConfigValue::Integer(value)))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ConfigValueWire, E> {
                i64::try_from(value)
                    .map(|value| ConfigValueWire(ConfigValue::Integer(value)))
                    .map_err(|_| E::custom(format_args!("{value} is too large: quote it")))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<ConfigValueWire, E> {
                Err(E::custom(format_args!(
                    "{value} is a decimal number: quote it (\"{value}\") so it is kept exactly"
                )))
            }
        }

        deserializer.deserialize_any(ValueVisitor)
    }
}

// ---------------------------------------------------------------------------------
// kind: TrustPolicy

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TrustPolicyDocument {
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    pub(crate) name: Text<TrustPolicyName>,
    pub(crate) issuer: String,
    pub(crate) audience: String,
    pub(crate) claims: UniqueMap<String, ClaimPatternWire>,
    pub(crate) role: Text<Role>,
    pub(crate) applications: Vec<Text<AppName>>,
    /// Absent: every environment of the applications.
    #[serde(default)]
    pub(crate) environments: Option<Vec<Text<EnvName>>>,
    #[serde(default)]
    pub(crate) max_token_lifetime: Option<Text<Duration>>,
}

/// The glob a claim must match. Claims such as `repository_id` are numbers in the job
/// token and compared by their JSON text, so an integer or a boolean is taken as its
/// text; a decimal would not keep its spelling and must be quoted.
#[derive(Debug)]
pub(crate) struct ClaimPatternWire(pub(crate) String);

impl<'de> Deserialize<'de> for ClaimPatternWire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatternVisitor;

        impl Visitor<'_> for PatternVisitor {
            type Value = ClaimPatternWire;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a glob pattern (`*` matches any run of characters)")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<ClaimPatternWire, E> {
                Ok(ClaimPatternWire(text.to_owned()))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<ClaimPatternWire, E> {
                Ok(ClaimPatternWire(value.to_string()))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<ClaimPatternWire, E> {
                Ok(ClaimPatternWire(value.to_string()))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<ClaimPatternWire, E> {
                Ok(ClaimPatternWire(value.to_string()))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<ClaimPatternWire, E> {
                Err(E::custom(format_args!(
                    "{value} is a decimal number: quote it (\"{value}\") so it is matched as written"
                )))
            }
        }

        deserializer.deserialize_any(PatternVisitor)
    }
}

// ---------------------------------------------------------------------------------
// Shared shapes

/// A mapping whose keys must be distinct (YAML parsers disagree on duplicates; we refuse them).
#[derive(Debug)]
pub(crate) struct UniqueMap<K, V>(pub(crate) BTreeMap<K, V>);

impl<K, V> Default for UniqueMap<K, V> {
    fn default() -> Self {
        UniqueMap(BTreeMap::new())
    }
}

impl<'de, K, V> Deserialize<'de> for UniqueMap<K, V>
where
    K: Deserialize<'de> + Ord + fmt::Display,
    V: Deserialize<'de>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K, V> Visitor<'de> for MapVisitor<K, V>
        where
            K: Deserialize<'de> + Ord + fmt::Display,
            V: Deserialize<'de>,
        {
            type Value = UniqueMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = BTreeMap::new();
                while let Some(key) = map.next_key::<K>()? {
                    let value = map.next_value::<V>()?;
                    match entries.entry(key) {
                        Entry::Vacant(slot) => {
                            slot.insert(value);
                        }
                        Entry::Occupied(slot) => {
                            return Err(de::Error::custom(format_args!(
                                "`{}` appears twice",
                                slot.key()
                            )));
                        }
                    }
                }
                Ok(UniqueMap(entries))
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}
