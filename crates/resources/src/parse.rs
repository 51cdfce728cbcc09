//! Reading a multi-document YAML file: split it into documents, identify each one by
//! its `kind` and `name`, read it as that kind with the field path tracked, and gather
//! every problem of every document.
//!
//! Each document is read twice. The first pass only looks for `kind` and `name`, and
//! would accept anything else, so a document can be named in its own errors, and
//! duplicate resources found, even when its body is wrong. The second pass reads the
//! document as its kind, from the text, so errors keep their line numbers.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::convert::{self, FieldProblem};
use crate::error::{DocumentLabel, Position, Problem, ResourceError, ResourceErrors};
use crate::set::{Resource, ResourceKind, ResourceSet};
use crate::wire::{
    ApplicationDocument, PipelineDocument, RetentionPolicyDocument, TrustPolicyDocument,
};

/// Reads every resource in `text`, the contents of the file called `path_label` in errors.
///
/// Empty documents (a trailing `---`, a file of comments) are skipped. On failure every
/// problem found is returned, each naming the file, the document and the field.
pub fn parse_file(path_label: &str, text: &str) -> Result<ResourceSet, ResourceErrors> {
    let mut errors = Vec::new();
    let at = |document: &DocumentLabel, field: Option<String>, problem: Problem| ResourceError {
        file: path_label.to_owned(),
        document: Some(document.clone()),
        field,
        position: None,
        problem,
    };

    let mut headers = Vec::new();
    let mut syntax_error = None;
    for (offset, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        match Header::deserialize(document) {
            Ok(header) => headers.push(header),
            Err(error) => {
                // The parser cannot resume after a syntax error: later documents are unknown.
                syntax_error = Some(ResourceError {
                    file: path_label.to_owned(),
                    document: Some(DocumentLabel {
                        index: offset + 1,
                        kind: None,
                        name: None,
                    }),
                    field: None,
                    position: position(&error),
                    problem: Problem::Syntax(bare_message(&error, ".")),
                });
                break;
            }
        }
    }

    let mut first_document: BTreeMap<(ResourceKind, String), usize> = BTreeMap::new();
    let mut entries = Vec::new();
    let documents = serde_yaml_ng::Deserializer::from_str(text);
    for ((offset, header), document) in headers.into_iter().enumerate().zip(documents) {
        let label = DocumentLabel {
            index: offset + 1,
            kind: header.kind.clone(),
            name: header.name.clone(),
        };
        let kind = match declared_kind(&header) {
            Ok(Some(kind)) => kind,
            Ok(None) => continue,
            Err(FieldProblem { field, problem }) => {
                errors.push(at(&label, field, problem));
                continue;
            }
        };
        if let Some(name) = &header.name {
            match first_document.entry((kind, name.clone())) {
                Entry::Vacant(slot) => {
                    slot.insert(label.index);
                }
                Entry::Occupied(slot) => {
                    let problem = Problem::DuplicateResource {
                        kind: kind.as_str().to_owned(),
                        name: name.clone(),
                        first: *slot.get(),
                    };
                    errors.push(at(&label, Some("name".to_owned()), problem));
                }
            }
        }
        let read = match kind {
            ResourceKind::Pipeline => read_as::<PipelineDocument, _>(document, convert::pipeline)
                .map(|result| result.map(Resource::Pipeline)),
            ResourceKind::Application => {
                read_as::<ApplicationDocument, _>(document, convert::application)
                    .map(|result| result.map(Resource::Application))
            }
            ResourceKind::TrustPolicy => {
                read_as::<TrustPolicyDocument, _>(document, convert::trust_policy)
                    .map(|result| result.map(Resource::TrustPolicy))
            }
            ResourceKind::RetentionPolicy => {
                read_as::<RetentionPolicyDocument, _>(document, convert::retention_policy)
                    .map(|result| result.map(Resource::RetentionPolicy))
            }
        };
        match read {
            Ok(Ok(resource)) => entries.push((label, resource)),
            Ok(Err(problems)) => errors.extend(
                problems
                    .into_iter()
                    .map(|FieldProblem { field, problem }| at(&label, field, problem)),
            ),
            Err(error) => {
                let (field, position, problem) = located(error);
                errors.push(ResourceError {
                    position,
                    ..at(&label, field, problem)
                });
            }
        }
    }

    errors.extend(syntax_error);
    if errors.is_empty() {
        for (offset, document) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
            let Ok(value) = serde_yaml_ng::Value::deserialize(document) else {
                break;
            };
            if let Some((field, found)) = control_character(&value, String::new()) {
                let text_of =
                    |key: &str| value.get(key).and_then(|v| v.as_str()).map(str::to_owned);
                let label = DocumentLabel {
                    index: offset + 1,
                    kind: text_of("kind"),
                    name: text_of("name"),
                };
                let field = (!field.is_empty()).then_some(field);
                errors.push(at(
                    &label,
                    field,
                    Problem::ControlCharacter(u32::from(found)),
                ));
            }
        }
    }
    match ResourceErrors::from_vec(errors) {
        Some(errors) => Err(errors),
        None => Ok(ResourceSet::new(path_label.to_owned(), entries)),
    }
}

type PathError = serde_path_to_error::Error<serde_yaml_ng::Error>;

/// The first string (or key) of `value` holding a control character other than a tab
/// or line break, with its field path.
fn control_character(value: &serde_yaml_ng::Value, path: String) -> Option<(String, char)> {
    use serde_yaml_ng::Value;
    match value {
        Value::String(text) => domain::text::control_character(text, true).map(|c| (path, c)),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| control_character(item, format!("{path}[{i}]"))),
        Value::Mapping(map) => map.iter().find_map(|(key, item)| {
            let name = match key {
                Value::String(text) => text.clone(),
                other => serde_yaml_ng::to_string(other)
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            };
            let field = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if let Some(found) = domain::text::control_character(&name, true) {
                return Some((field, found));
            }
            control_character(item, field)
        }),
        Value::Tagged(tagged) => control_character(&tagged.value, path),
        Value::Null | Value::Bool(_) | Value::Number(_) => None,
    }
}

/// The kind a document declares, `None` for an empty document.
fn declared_kind(header: &Header) -> Result<Option<ResourceKind>, FieldProblem> {
    let refused = |field: Option<&str>, problem| FieldProblem {
        field: field.map(str::to_owned),
        problem,
    };
    match (&header.shape, header.kind.as_deref()) {
        (Shape::Empty, _) => Ok(None),
        (Shape::Other(what), _) => Err(refused(None, Problem::NotAMapping(what))),
        (Shape::Mapping, None) => Err(refused(None, Problem::MissingKind)),
        (Shape::Mapping, Some(text)) => match ResourceKind::parse(text) {
            Some(kind) => Ok(Some(kind)),
            None => Err(refused(Some("kind"), Problem::UnknownKind(text.to_owned()))),
        },
    }
}

/// The field path, position and problem of an error met while reading a document.
fn located(error: PathError) -> (Option<String>, Option<Position>, Problem) {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let problem = Problem::InvalidField(bare_message(&inner, &path));
    let field = (path != ".").then_some(path);
    (field, position(&inner), problem)
}

/// Reads one document as `W` (tracking the field path), then converts it.
fn read_as<'de, W, M>(
    document: serde_yaml_ng::Deserializer<'de>,
    convert: fn(W) -> Result<M, Vec<FieldProblem>>,
) -> Result<Result<M, Vec<FieldProblem>>, PathError>
where
    W: Deserialize<'de>,
{
    serde_path_to_error::deserialize(document).map(convert)
}

fn position(error: &serde_yaml_ng::Error) -> Option<Position> {
    error.location().map(|location| Position {
        line: location.line(),
        column: location.column(),
    })
}

/// The parser's message without what the error already says elsewhere: its position
/// (` at line L column C`) and its own, coarser, path prefix (`stages[1]: …`), which is
/// always a leading part of the tracked `path`.
fn bare_message(error: &serde_yaml_ng::Error, path: &str) -> String {
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let at = format!(" at line {} column {}", location.line(), location.column());
        message = message.replacen(&at, "", 1);
    }
    let prefixes = path
        .char_indices()
        .filter(|(_, c)| matches!(c, '.' | '['))
        .map(|(index, _)| &path[..index])
        .chain([path]);
    let longest_prefix = prefixes
        .filter(|prefix| !prefix.is_empty() && *prefix != ".")
        .filter_map(|prefix| message.strip_prefix(prefix)?.strip_prefix(": "))
        .min_by_key(|rest| rest.len());
    match longest_prefix {
        Some(rest) => rest.to_owned(),
        None => message,
    }
}

/// What the first pass learns about a document.
struct Header {
    shape: Shape,
    kind: Option<String>,
    name: Option<String>,
}

enum Shape {
    /// Nothing but comments, or `~`.
    Empty,
    Mapping,
    /// A sequence or a scalar: not a resource.
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Header {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(HeaderVisitor)
    }
}

struct HeaderVisitor;

impl HeaderVisitor {
    fn other<E>(what: &'static str) -> Result<Header, E> {
        Ok(Header {
            shape: Shape::Other(what),
            kind: None,
            name: None,
        })
    }
}

impl<'de> Visitor<'de> for HeaderVisitor {
    type Value = Header;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML document")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Header, E> {
        Ok(Header {
            shape: Shape::Empty,
            kind: None,
            name: None,
        })
    }

    fn visit_none<E: de::Error>(self) -> Result<Header, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Header, E> {
        Self::other("a boolean")
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Header, E> {
        Self::other("a number")
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Header, E> {
        Self::other("a number")
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Header, E> {
        Self::other("a number")
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Header, E> {
        Self::other("a string")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Header, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Self::other("a sequence")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header, A::Error> {
        let mut header = Header {
            shape: Shape::Mapping,
            kind: None,
            name: None,
        };
        while let Some(key) = map.next_key::<Scalar>()? {
            let value = map.next_value::<Scalar>()?;
            // Duplicated keys are the second pass's to report; the first one names the document.
            match key.0.as_deref() {
                Some("kind") if header.kind.is_none() => header.kind = value.0,
                Some("name") if header.name.is_none() => header.name = value.0,
                _ => {}
            }
        }
        Ok(header)
    }
}

/// Any YAML value, kept as text when it is a scalar other than null.
struct Scalar(Option<String>);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;

        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }

            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(None))
            }

            fn visit_bool<E: de::Error>(self, value: bool) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }

            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_string())))
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Scalar, E> {
                Ok(Scalar(Some(value.to_owned())))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar(None))
            }
        }

        deserializer.deserialize_any(ScalarVisitor)
    }
}
