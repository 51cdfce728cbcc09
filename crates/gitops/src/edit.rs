//! Setting values in a YAML file the way a person would: only the scalars that change
//! are rewritten, in place, and every comment, blank line, indentation, key order and
//! quoting style around them stays as it was.
//!
//! The file is edited as a lossless syntax tree (`yaml-edit`, which keeps every byte
//! it does not touch). Each edit is then checked with an independent strict parser
//! (`serde_yaml_ng`): the result must read exactly as the original with the wanted
//! keys set to the wanted values — nothing else changed, nothing mis-quoted — or the
//! edit is refused rather than committed.
//!
//! Typing: integers and booleans are written plain. A string is written in the
//! quotes the old value had (single or double); where the old value was plain (or
//! the key is new) it stays plain when a YAML 1.1 or 1.2 reader would read it back
//! as that same string, and is double-quoted otherwise. A string replacing a plain
//! integer or boolean that reads as one itself (`"5"` over `replicas: 3`) keeps the
//! file's type: release bundles carry strings, and a chart expecting a number must
//! keep getting one.
//!
//! Missing keys are created, with any intermediate mappings (an empty or `null`
//! value on the way counts as missing). A key path running through a scalar or a
//! sequence, or ending at a mapping, a sequence, an alias or a tagged value, is
//! refused.

use std::str::FromStr;

use domain::application::{ConfigValue, KeyPath};
use serde_yaml_ng::Value;
use yaml_edit::{CoreScalarType, Mapping, ScalarValue, YamlFile, YamlNode};

/// One key to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    pub(crate) key: KeyPath,
    pub(crate) value: ConfigValue,
}

/// Why a file could not be edited (or read): each is about the file or the
/// declaration, so trying again will not help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EditError {
    #[error("it is not valid YAML: {0}")]
    NotYaml(String),
    #[error("it does not hold a mapping at the top")]
    NotMapping,
    #[error("`{key}` runs through `{at}`, which holds {found}, not a mapping")]
    Through {
        key: String,
        at: String,
        found: &'static str,
    },
    #[error("`{key}` holds {found}, not a single value")]
    NotScalar { key: String, found: &'static str },
    #[error(
        "setting the keys would change more than they hold (is a value shared through an anchor?): {0}"
    )]
    Unverified(String),
}

/// `text` with every assignment made; the same text when each already holds its value.
pub(crate) fn apply(text: &str, assignments: &[Assignment]) -> Result<String, EditError> {
    let original = strict(text)?;
    if !matches!(original, Value::Mapping(_)) {
        return Err(EditError::NotMapping);
    }
    let file = YamlFile::from_str(text).map_err(|error| EditError::NotYaml(error.to_string()))?;
    let mut documents = file.documents();
    let (Some(document), None) = (documents.next(), documents.next()) else {
        return Err(EditError::NotYaml(
            "it holds more than one document".to_owned(),
        ));
    };
    let root = document.as_mapping().ok_or(EditError::NotMapping)?;
    let mut expected = original;
    for assignment in assignments {
        let written = set(&root, assignment)?;
        set_value(&mut expected, &assignment.key, written);
    }
    let edited = file.to_string();
    let actual = strict(&edited).map_err(|error| EditError::Unverified(error.to_string()))?;
    if actual != expected {
        let keys: Vec<&str> = assignments.iter().map(|a| a.key.as_str()).collect();
        return Err(EditError::Unverified(format!(
            "after setting {} the file does not read as expected",
            keys.join(", ")
        )));
    }
    Ok(edited)
}

/// The scalar at `key`, as text (`None` when the key, or one on its way, is absent).
pub(crate) fn read(text: &str, key: &KeyPath) -> Result<Option<String>, EditError> {
    let mut value = &strict(text)?;
    for (depth, part) in key.as_str().split('.').enumerate() {
        value = match value {
            Value::Mapping(mapping) => match mapping.get(part) {
                Some(value) => value,
                None => return Ok(None),
            },
            Value::Null => return Ok(None),
            other => {
                return Err(EditError::Through {
                    key: key.as_str().to_owned(),
                    at: prefix(key, depth),
                    found: describe(other),
                });
            }
        };
    }
    match value {
        Value::String(text) => Ok(Some(text.clone())),
        Value::Number(number) => Ok(Some(number.to_string())),
        Value::Bool(flag) => Ok(Some(flag.to_string())),
        Value::Null => Ok(None),
        other => Err(EditError::NotScalar {
            key: key.as_str().to_owned(),
            found: describe(other),
        }),
    }
}

fn strict(text: &str) -> Result<Value, EditError> {
    serde_yaml_ng::from_str::<Value>(text).map_err(|error| EditError::NotYaml(error.to_string()))
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a sequence",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

fn describe_node(node: &YamlNode) -> &'static str {
    match node {
        YamlNode::Scalar(_) => "a scalar",
        YamlNode::Mapping(_) => "a mapping",
        YamlNode::Sequence(_) => "a sequence",
        YamlNode::Alias(_) => "an alias",
        YamlNode::TaggedNode(_) => "a tagged value",
    }
}

/// The first `depth + 1` keys of `key`.
fn prefix(key: &KeyPath, depth: usize) -> String {
    key.as_str()
        .split('.')
        .take(depth + 1)
        .collect::<Vec<_>>()
        .join(".")
}

/// Sets one key in the lossless tree; returns the value a strict reader will see.
fn set(root: &Mapping, assignment: &Assignment) -> Result<Value, EditError> {
    let key = assignment.key.as_str();
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().unwrap_or((&"", &[]));
    let mut mapping = root.clone();
    for (depth, part) in parents.iter().enumerate() {
        mapping = match mapping.get(*part) {
            Some(YamlNode::Mapping(inner)) => inner,
            Some(YamlNode::Scalar(scalar)) if !scalar.is_null() => {
                return Err(EditError::Through {
                    key: key.to_owned(),
                    at: prefix(&assignment.key, depth),
                    found: "a scalar",
                });
            }
            None | Some(YamlNode::Scalar(_)) => {
                mapping.set(*part, Mapping::new());
                mapping
                    .get_mapping(*part)
                    .ok_or_else(|| EditError::Unverified(format!("cannot create `{part}`")))?
            }
            Some(other) => {
                return Err(EditError::Through {
                    key: key.to_owned(),
                    at: prefix(&assignment.key, depth),
                    found: describe_node(&other),
                });
            }
        };
    }
    let existing = match mapping.get(*last) {
        Some(YamlNode::Scalar(scalar)) if !scalar.is_null() => Some(scalar),
        None | Some(YamlNode::Scalar(_)) => None,
        Some(other) => {
            return Err(EditError::NotScalar {
                key: key.to_owned(),
                found: describe_node(&other),
            });
        }
    };
    let (text, reads_as) = render(&assignment.value, existing.as_ref().map(|s| s.value()));
    match existing {
        Some(scalar) => {
            if scalar.value() != text {
                scalar.set_value(&text);
            }
        }
        None => {
            // A new entry is laid out by the tree (indentation of its siblings, flow
            // or block); its text is then exactly the rendered scalar.
            mapping.set(*last, ScalarValue::plain("gantry"));
            match mapping.get(*last) {
                Some(YamlNode::Scalar(scalar)) => scalar.set_value(&text),
                _ => {
                    return Err(EditError::Unverified(format!("cannot create `{key}`")));
                }
            }
        }
    }
    Ok(reads_as)
}

/// The scalar text for `value` where `existing` (raw text) was, and what it reads as.
fn render(value: &ConfigValue, existing: Option<String>) -> (String, Value) {
    match value {
        ConfigValue::Integer(number) => (number.to_string(), Value::Number((*number).into())),
        ConfigValue::Boolean(flag) => (flag.to_string(), Value::Bool(*flag)),
        ConfigValue::String(text) => {
            let as_string = Value::String(text.clone());
            match existing.as_deref() {
                Some(raw) if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') => {
                    (double_quoted(text), as_string)
                }
                Some(raw) if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') => {
                    if text.chars().any(char::is_control) {
                        (double_quoted(text), as_string)
                    } else {
                        (format!("'{}'", text.replace('\'', "''")), as_string)
                    }
                }
                Some(raw) if keeps_plain_type(raw, text) => {
                    let reads_as = match ScalarValue::classify_plain(text) {
                        CoreScalarType::Boolean => {
                            Value::Bool(matches!(text.as_str(), "true" | "True" | "TRUE"))
                        }
                        _ => serde_yaml_ng::from_str::<Value>(text).unwrap_or(as_string),
                    };
                    (text.clone(), reads_as)
                }
                _ if plain_safe(text) => (text.clone(), as_string),
                _ => (double_quoted(text), as_string),
            }
        }
    }
}

/// Whether `text` replacing the plain scalar `raw` should stay plain to keep the
/// file's integer or boolean type.
fn keeps_plain_type(raw: &str, text: &str) -> bool {
    let old = ScalarValue::classify_plain(raw);
    matches!(old, CoreScalarType::Integer | CoreScalarType::Boolean)
        && ScalarValue::classify_plain(text) == old
        && !raw.starts_with(['"', '\'', '|', '>'])
}

/// Whether `text` can be written unquoted, in block or flow context, and be read back
/// as the same string by YAML 1.2 and YAML 1.1 readers alike.
fn plain_safe(text: &str) -> bool {
    const INDICATORS: &str = "-?:,[]{}#&*!|>'\"%@`";
    let Some(first) = text.chars().next() else {
        return false;
    };
    text == text.trim()
        && !text.chars().any(|c| c.is_control() || c == '\u{feff}')
        && !INDICATORS.contains(first)
        && !text.contains(": ")
        && !text.contains(" #")
        && !text.ends_with(':')
        && !text.contains([',', '[', ']', '{', '}'])
        && ScalarValue::classify_plain(text) == CoreScalarType::String
        && !special_in_yaml_1_1(text)
}

/// Strings YAML 1.1 readers (older Helm, PyYAML) take for something else.
fn special_in_yaml_1_1(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null" | "~" | "="
    ) {
        return true;
    }
    let numeric = text.chars().any(|c| c.is_ascii_digit())
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || "_:.+-".contains(c));
    let bytes = text.as_bytes();
    let date = bytes.len() >= 8 && bytes[..4].iter().all(u8::is_ascii_digit) && bytes[4] == b'-';
    (numeric && (text.contains('_') || text.contains(':')))
        || lower.trim_start_matches(['+', '-']).starts_with("0b")
        || lower.trim_start_matches(['+', '-']).starts_with("0x")
        || date
}

/// `text` as a double-quoted YAML scalar.
fn double_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            '\r' => quoted.push_str("\\r"),
            c if c.is_control() || c == '\u{feff}' => {
                quoted.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// Sets `key` in a strict reading, creating mappings on the way (as [`set`] does).
fn set_value(document: &mut Value, key: &KeyPath, value: Value) {
    let mut current = document;
    for part in key.as_str().split('.') {
        if !matches!(current, Value::Mapping(_)) {
            *current = Value::Mapping(serde_yaml_ng::Mapping::new());
        }
        let Value::Mapping(mapping) = current else {
            return;
        };
        current = mapping
            .entry(Value::String(part.to_owned()))
            .or_insert(Value::Null);
    }
    *current = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> KeyPath {
        KeyPath::parse(text).expect("key path")
    }

    fn assign(path: &str, value: ConfigValue) -> Assignment {
        Assignment {
            key: key(path),
            value,
        }
    }

    fn string(text: &str) -> ConfigValue {
        ConfigValue::String(text.to_owned())
    }

    fn check(before: &str, assignments: &[Assignment], after: &str) {
        assert_eq!(
            apply(before, assignments).as_deref(),
            Ok(after),
            "editing {before:?}"
        );
    }

    #[test]
    fn values_change_in_place_keeping_quotes_comments_and_layout() {
        check(
            "# top\nimage:\n   repository: \"acme/web\"   # quoted\n   tag: 'v1'\n   digest: sha256:aa\n",
            &[
                assign("image.repository", string("other/web")),
                assign("image.tag", string("it's")),
                assign("image.digest", string("sha256:bb")),
            ],
            "# top\nimage:\n   repository: \"other/web\"   # quoted\n   tag: 'it''s'\n   digest: sha256:bb\n",
        );
        check(
            "env: {LOG: info, DEBUG: \"false\"}\nports: [80, 443]\n",
            &[
                assign("env.DEBUG", string("true")),
                assign("env.LOG", string("a, b")),
            ],
            "env: {LOG: \"a, b\", DEBUG: \"true\"}\nports: [80, 443]\n",
        );
    }

    #[test]
    fn scalar_types_are_kept() {
        for (before, value, after) in [
            ("replicas: 2\n", ConfigValue::Integer(3), "replicas: 3\n"),
            ("replicas: 2\n", string("5"), "replicas: 5\n"),
            ("replicas: \"2\"\n", string("5"), "replicas: \"5\"\n"),
            ("replicas: 2\n", string("five"), "replicas: five\n"),
            (
                "enabled: true\n",
                ConfigValue::Boolean(false),
                "enabled: false\n",
            ),
            ("enabled: true\n", string("false"), "enabled: false\n"),
            ("enabled: yes-please\n", string("no"), "enabled: \"no\"\n"),
            ("version: v1\n", string("1.10"), "version: \"1.10\"\n"),
            ("version: v1\n", string("1.2.3"), "version: 1.2.3\n"),
            ("when: x\n", string("2026-01-02"), "when: \"2026-01-02\"\n"),
            ("note: x\n", string("a: b"), "note: \"a: b\"\n"),
            (
                "note: x\n",
                string("line\nbreak"),
                "note: \"line\\nbreak\"\n",
            ),
            ("note: 'x'\n", string("tab\there"), "note: \"tab\\there\"\n"),
            ("note: x\n", string(""), "note: \"\"\n"),
            (
                "note: x\n",
                string("#not-a-comment"),
                "note: \"#not-a-comment\"\n",
            ),
        ] {
            check(
                before,
                &[assign(before.split(':').next().expect("key"), value)],
                after,
            );
        }
    }

    #[test]
    fn missing_keys_are_created_with_their_mappings() {
        check(
            "top:\n    deep: 1\n",
            &[assign("top.image.digest", string("sha256:aa"))],
            "top:\n    deep: 1\n    image:\n      digest: sha256:aa\n",
        );
        check(
            "image:\nother: 1\n",
            &[assign("image.digest", string("sha256:aa"))],
            "image:\n  digest: sha256:aa\nother: 1\n",
        );
        check(
            "a: ~ # none\n",
            &[assign("a", ConfigValue::Integer(1))],
            "a: 1 # none\n",
        );
    }

    #[test]
    fn unchanged_values_leave_the_text_as_it_was() {
        let text = "image:\n  digest: sha256:aa # pinned\nreplicas: 3\n";
        check(
            text,
            &[
                assign("image.digest", string("sha256:aa")),
                assign("replicas", string("3")),
            ],
            text,
        );
    }

    #[test]
    fn key_paths_through_values_or_onto_collections_are_refused() {
        let refused = |text: &str, path: &str| {
            apply(text, &[assign(path, string("x"))]).expect_err("refused")
        };
        assert!(matches!(
            refused("image: nginx\n", "image.digest"),
            EditError::Through {
                found: "a scalar",
                ..
            }
        ));
        assert!(matches!(
            refused("image:\n  - a\n", "image.digest"),
            EditError::Through {
                found: "a sequence",
                ..
            }
        ));
        assert!(matches!(
            refused("image:\n  digest: {a: 1}\n", "image.digest"),
            EditError::NotScalar {
                found: "a mapping",
                ..
            }
        ));
        assert!(matches!(refused("a: [1, 2\n", "a"), EditError::NotYaml(_)));
        assert!(matches!(
            refused("a: 1\na: 2\n", "a"),
            EditError::NotYaml(_)
        ));
        assert!(matches!(refused("- a\n", "a"), EditError::NotMapping));
        assert!(matches!(refused("", "a"), EditError::NotMapping));
        assert!(matches!(
            refused("a: 1\n---\nb: 2\n", "a"),
            EditError::NotYaml(_)
        ));
        assert!(matches!(
            refused("base: &d sha256:aa\ncopy: *d\n", "base"),
            EditError::Unverified(_)
        ));
    }

    #[test]
    fn values_are_read_as_text() {
        let text = "image:\n  digest: \"sha256:aa\"\nreplicas: 3\nempty:\n";
        assert_eq!(
            read(text, &key("image.digest")),
            Ok(Some("sha256:aa".to_owned()))
        );
        assert_eq!(read(text, &key("replicas")), Ok(Some("3".to_owned())));
        assert_eq!(read(text, &key("empty")), Ok(None));
        assert_eq!(read(text, &key("missing.deeper")), Ok(None));
        assert!(read(text, &key("image")).is_err());
        assert!(read(text, &key("replicas.x")).is_err());
    }
}
