//! The CEL environment of ValidatingAdmissionPolicy expressions: kube-apiserver's variables
//! (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `variables`, `authorizer`)
//! on top of the Kubernetes CEL libraries.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::{Context, Program, Value as Cel};
use kube_cel::KubeCelExt;
use serde_json::Value;

use super::authz;

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

/// The values bound for one evaluation of a policy.
#[derive(Clone)]
pub(crate) struct Bindings {
    pub object: Cel,
    pub old_object: Cel,
    pub request: Cel,
    pub params: Cel,
    pub namespace_object: Cel,
    /// `authorizer` (with `requestResource`); absent where upstream offers none
    /// (`messageExpression`, audit annotations).
    pub authorizer: Option<Cel>,
    pub variables: Cel,
}

/// A compiled expression with its source, or why it did not compile.
pub(crate) struct Expression {
    pub source: String,
    pub program: Result<Program, String>,
    /// The identifiers the source mentions, so that only the variables it reads are bound.
    identifiers: std::collections::HashSet<String>,
}

impl Expression {
    pub fn compile(source: &str) -> Self {
        let identifiers = source
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|word| !word.is_empty())
            .map(str::to_string)
            .collect();
        Self {
            source: source.to_string(),
            program: Program::compile(source).map_err(|err| err.to_string()),
            identifiers,
        }
    }

    fn mentions(&self, identifier: &str) -> bool {
        self.identifiers.contains(identifier)
    }

    /// Evaluates against `bindings`; errors worded as kube-apiserver's evaluator words them.
    pub fn evaluate(&self, bindings: &Bindings) -> Result<Cel, String> {
        let program = self
            .program
            .as_ref()
            .map_err(|err| format!("compilation error: {err}"))?;
        let mut context = BASE.new_inner_scope();
        // why: binding a variable converts its whole value for the evaluator, which cost more
        // than evaluating; an expression that never names a variable cannot read it.
        for (name, value) in [
            ("object", &bindings.object),
            ("oldObject", &bindings.old_object),
            ("request", &bindings.request),
            ("params", &bindings.params),
            ("namespaceObject", &bindings.namespace_object),
            ("variables", &bindings.variables),
        ] {
            if self.mentions(name) {
                context.add_variable_from_value(name, value.clone());
            }
        }
        if let Some(authorizer) = bindings
            .authorizer
            .as_ref()
            .filter(|_| self.mentions("authorizer"))
        {
            context.add_variable_from_value("authorizer", authorizer.clone());
        }
        program.execute(&context).map_err(|err| {
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
