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
}

impl Expression {
    pub fn compile(source: &str) -> Self {
        Self {
            source: source.to_string(),
            program: Program::compile(source).map_err(|err| err.to_string()),
        }
    }

    /// Evaluates against `bindings`; errors worded as kube-apiserver's evaluator words them.
    pub fn evaluate(&self, bindings: &Bindings) -> Result<Cel, String> {
        let program = self
            .program
            .as_ref()
            .map_err(|err| format!("compilation error: {err}"))?;
        let mut context = BASE.new_inner_scope();
        context.add_variable_from_value("object", bindings.object.clone());
        context.add_variable_from_value("oldObject", bindings.old_object.clone());
        context.add_variable_from_value("request", bindings.request.clone());
        context.add_variable_from_value("params", bindings.params.clone());
        context.add_variable_from_value("namespaceObject", bindings.namespace_object.clone());
        context.add_variable_from_value("variables", bindings.variables.clone());
        if let Some(authorizer) = &bindings.authorizer {
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
