//! The CEL environment of ValidatingAdmissionPolicy expressions: kube-apiserver's variables
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`, `authorizer`)
//! on top of the Kubernetes CEL libraries.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use kube_cel::KubeCelExt;
use serde_json::Value;

use super::authz;
use super::direct::Direct;

/// The functions every expression sees; variables are bound per evaluation in an inner scope.
static BASE: LazyLock<Context<'static>> = LazyLock::new(|| {
    let mut context = Context::default();
    context.register_all();
    authz::register(&mut context);
    context
});

/// A JSON value as CEL sees it: integral numbers are `int`, others `double`.
pub(crate) fn to_cel(value: &Value) -> Cel {
    match value {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Cel::Int(i),
            (None, Some(u), _) => Cel::UInt(u),
            (_, _, f) => Cel::Float(f.unwrap_or_default()),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(items) => Cel::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(fields) => {
            let entries: HashMap<Key, Cel> = fields
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            Cel::Map(Map::from(entries))
        }
    }
}

/// A CEL map from string keys.
pub(crate) fn map(entries: Vec<(&str, Cel)>) -> Cel {
    let entries: HashMap<Key, Cel> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), v))
        .collect();
    Cel::Map(Map::from(entries))
}

/// The context with every function and no variables, which scopes of variables extend.
pub(crate) fn root() -> &'static Context<'static> {
    &BASE
}

/// A scope of `parent` binding `variables`.
///
/// why: the evaluator converts a bound value in full when it is bound, which costs more than
/// most expressions; a scope binds each value once for every expression evaluated in it.
pub(crate) fn scope<'p>(
    parent: &'p Context<'p>,
    variables: impl IntoIterator<Item = (&'static str, Cel)>,
) -> Context<'p> {
    let mut context = parent.new_inner_scope();
    for (name, value) in variables {
        context.add_variable_from_value(name, value);
    }
    context
}

/// A compiled expression with its source, or why it did not compile.
pub(crate) struct Expression {
    pub source: String,
    pub program: Result<Program, String>,
    /// The identifiers the source mentions, so that only the variables it reads are bound.
    pub identifiers: HashSet<String>,
    /// The expression when it has a shape evaluated without `cel`.
    pub direct: Option<Direct>,
}

impl Expression {
    pub fn compile(source: &str) -> Self {
        let identifiers = source
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .map(str::to_string)
            .collect();
        let program = Program::compile(source).map_err(|err| err.to_string());
        let direct = program
            .as_ref()
            .ok()
            .and_then(|program| Direct::compile(program.expression()));
        Self {
            source: source.to_string(),
            program,
            identifiers,
            direct,
        }
    }

    /// Evaluates in `context`, with `variables` bound when the source names them; errors
    /// worded as kube-apiserver's evaluator words them.
    pub fn evaluate(&self, context: &Context<'_>, variables: &Cel) -> Result<Cel, String> {
        let program = self
            .program
            .as_ref()
            .map_err(|err| format!("compilation error: {err}"))?;
        // why: `variables` grows as they are evaluated; an expression that never names it
        // cannot read it, so only those that do pay for binding it.
        let result = if self.identifiers.contains("variables") {
            program.execute(&scope(context, [("variables", variables.clone())]))
        } else {
            program.execute(context)
        };
        result.map_err(|err| {
            format!(
                "expression '{}' resulted in error: {err}",
                self.source.trim()
            )
        })
    }
}

/// Whether `source` reads `variables.<name>`.
pub(crate) fn reads_variable(source: &str, name: &str) -> bool {
    let needle = format!("variables.{name}");
    source.match_indices(&needle).any(|(at, _)| {
        let rest = &source[at + needle.len()..];
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}
