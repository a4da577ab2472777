//! The subset of kubectl JSONPath that `additionalPrinterColumns` use: `.a.b`, `['a.b']`, `[n]`,
//! `[*]` and `[?(@.field=="value")]` filters.

use serde_json::Value;

/// One step of a parsed path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Wildcard,
    Filter {
        path: Vec<Step>,
        equals: Option<String>,
    },
}

/// A parsed JSONPath expression such as `.status.conditions[?(@.type=="Ready")].status`.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    /// Parses a printer-column path (with or without surrounding `{}`); `None` when unsupported.
    pub fn parse(path: &str) -> Option<Self> {
        let trimmed = path.trim();
        let inner = trimmed
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .unwrap_or(trimmed);
        let inner = inner.strip_prefix('$').unwrap_or(inner);
        parse_steps(inner).map(|steps| JsonPath { steps })
    }

    /// Every value the path selects in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        evaluate(&self.steps, root)
    }
}

fn parse_steps(mut rest: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() {
                return None;
            }
            steps.push(if name == "*" {
                Step::Wildcard
            } else {
                Step::Field(name.to_owned())
            });
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix('[') {
            let end = matching_bracket(after)?;
            let content = after[..end].trim();
            rest = &after[end + 1..];
            steps.push(parse_bracket(content)?);
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The index of the `]` closing a bracket whose content starts at `s`, skipping quoted text.
fn matching_bracket(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn parse_bracket(content: &str) -> Option<Step> {
    if content == "*" {
        return Some(Step::Wildcard);
    }
    if let Some(name) = unquote(content) {
        return Some(Step::Field(name.to_owned()));
    }
    if let Some(filter) = content.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (lhs, equals) = match filter.split_once("==") {
            Some((lhs, rhs)) => (
                lhs.trim(),
                Some(unquote(rhs).unwrap_or(rhs.trim()).to_owned()),
            ),
            None => (filter.trim(), None),
        };
        let path = parse_steps(lhs.strip_prefix('@')?)?;
        return Some(Step::Filter { path, equals });
    }
    content.parse().ok().map(Step::Index)
}

fn evaluate<'a>(steps: &[Step], value: &'a Value) -> Vec<&'a Value> {
    let Some((step, rest)) = steps.split_first() else {
        return vec![value];
    };
    let next: Vec<&Value> = match step {
        Step::Field(name) => value.get(name).into_iter().collect(),
        Step::Index(index) => value
            .as_array()
            .and_then(|items| {
                let len = i64::try_from(items.len()).ok()?;
                let at = if *index < 0 { len + index } else { *index };
                items.get(usize::try_from(at).ok()?)
            })
            .into_iter()
            .collect(),
        Step::Wildcard => match value {
            Value::Array(items) => items.iter().collect(),
            Value::Object(map) => map.values().collect(),
            _ => Vec::new(),
        },
        Step::Filter { path, equals } => value
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|item| {
                        let found = evaluate(path, item);
                        match equals {
                            Some(expected) => found.iter().any(|v| scalar_text(v) == *expected),
                            None => !found.is_empty(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default(),
    };
    next.into_iter().flat_map(|v| evaluate(rest, v)).collect()
}

/// How JSONPath prints one value: strings raw, everything else as JSON.
pub fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
