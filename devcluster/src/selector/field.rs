//! Field selectors: `field=value`, `field==value`, `field!=value` terms over selectable fields.

use serde_json::Value;

use super::{err, FieldSelector, FieldTerm, SelectorError};

/// The fields a kind can be selected on, beyond `metadata.name` and `metadata.namespace`.
fn selectable_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "Event" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ],
        "Secret" => &["type"],
        "Namespace" => &["status.phase"],
        _ => &[],
    }
}

/// Splits on unescaped `sep`, keeping escapes for [`unescape`].
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            current.push(c);
            if let Some(next) = chars.next() {
                current.push(next);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

/// Finds the first unescaped operator in a field term: `!=`, `==` or `=`.
fn split_term(term: &str) -> Option<(&str, &str, bool)> {
    let bytes = term.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], &term[i + 2..], true));
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Some((&term[..i], &term[i + 2..], false));
            }
            b'=' => return Some((&term[..i], &term[i + 1..], false)),
            _ => i += 1,
        }
    }
    None
}

fn unescape(s: &str, whole: &str) -> Result<String, SelectorError> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => out.push(escaped),
                Some(other) => {
                    return Err(err(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )))
                }
                None => {
                    return Err(err(format!(
                        "invalid field selector: unterminated escape sequence in {whole}"
                    )))
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses `field=value`, `field==value` and `field!=value` terms. Supported fields:
    /// `metadata.name`, `metadata.namespace`, and for `kind` `Event` also `involvedObject.*`,
    /// `reason`, `type`, `source`; for `Secret` also `type`. Others are a `SelectorError`.
    ///
    /// Event terms are evaluated against the stored `core/v1` form.
    pub fn parse(s: &str, kind: &str) -> Result<Self, SelectorError> {
        let known = |field: &str| {
            matches!(field, "metadata.name" | "metadata.namespace")
                || selectable_fields(kind).contains(&field)
        };
        Self::parse_with(s, known, |field| {
            match kind {
            "Event" | "Secret" | "Namespace" => format!("field label not supported: {field}"),
            _ => format!(
                "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ),
        }
        })
    }

    /// Parses a selector over a custom resource, as the apiextensions server does: `metadata.name`,
    /// `metadata.namespace` when `namespaced`, and the version's `selectableFields` (given
    /// without their leading `.`, e.g. `spec.owner.name`).
    pub fn parse_custom_resource(
        s: &str,
        selectable: &[String],
        namespaced: bool,
    ) -> Result<Self, SelectorError> {
        let known = |field: &str| {
            field == "metadata.name"
                || (namespaced && field == "metadata.namespace")
                || selectable.iter().any(|declared| declared == field)
        };
        Self::parse_with(s, known, |field| {
            format!("field label not supported: {field}")
        })
    }

    fn parse_with(
        s: &str,
        known: impl Fn(&str) -> bool,
        unsupported: impl Fn(&str) -> String,
    ) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self { terms });
        }
        for part in split_unescaped(s, ',') {
            if part.is_empty() {
                continue;
            }
            let Some((field, value, negated)) = split_term(&part) else {
                return Err(err(format!(
                    "invalid selector: '{s}'; can't understand '{part}'"
                )));
            };
            let field = unescape(field, s)?;
            let value = unescape(value, s)?;
            if !known(&field) {
                return Err(err(unsupported(&field)));
            }
            terms.push(FieldTerm {
                field,
                value,
                negated,
            });
        }
        Ok(Self { terms })
    }

    /// Whether the selector has no terms (matches everything).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether every term holds for `obj`; absent fields compare as the empty string.
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|term| {
            let actual = field_value(obj, &term.field);
            (actual == term.value) != term.negated
        })
    }
}

/// The selectable value of `field`, as the real server's `*ToSelectableFields` computes it.
fn field_value(obj: &Value, field: &str) -> String {
    // why: the real server renders a selectable field with Go's fmt.Sprint: integers and
    // booleans as their digits and words, an absent field as "".
    let text = |pointer: &str| match obj.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Bool(flag)) => flag.to_string(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    };
    match field {
        // why: the real server selects `source` on source.component, falling back to the
        // reporting controller for events written through events.k8s.io/v1.
        "source" => {
            let component = text("/source/component");
            if component.is_empty() {
                text("/reportingComponent")
            } else {
                component
            }
        }
        _ => text(&format!("/{}", field.replace('.', "/"))),
    }
}
