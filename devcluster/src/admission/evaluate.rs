//! One policy evaluated for one binding and param: match conditions, variables, validations
//! and audit annotations, decided as kube-apiserver's `validating.validator` decides them.

use std::collections::HashMap;
use std::sync::Arc;

use kube_cel::cel::objects::Key;
use kube_cel::cel::{Context, Value as Cel};

use super::environment::{map, reads_variable, Expression};
use super::policy::{FailurePolicy, Named, Policy, Validation};

/// kube-apiserver's `MaxEvaluatedMessageExpressionSizeBytes`.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;

/// A validation the request fails; `reason` is the validation's (default `Invalid`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    pub message: String,
    pub reason: Option<String>,
}

/// What one audit annotation's `valueExpression` produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Annotation {
    Publish {
        key: String,
        value: String,
    },
    /// The expression failed under `failurePolicy: Fail`: the request is denied.
    Error(String),
}

/// The failures of one evaluation with their validation's index, in order.
#[derive(Debug, Default)]
pub(crate) struct Evaluated {
    pub failures: Vec<(usize, Failure)>,
    pub annotations: Vec<Annotation>,
}

/// The failure for an expression that could not be evaluated, unless the policy ignores it.
fn on_error(failure_policy: FailurePolicy, message: String) -> Option<Failure> {
    match failure_policy {
        FailurePolicy::Fail => Some(Failure {
            message,
            reason: None,
        }),
        FailurePolicy::Ignore => None,
    }
}

/// Evaluates `policy` in `authorized`, its scope of this request's variables with
/// `authorizer`; `unauthorized` is the same scope without it, where upstream offers none
/// (`messageExpression`, audit annotations).
pub(crate) fn evaluate(
    policy: &Policy,
    authorized: &Context<'_>,
    unauthorized: &Context<'_>,
) -> Evaluated {
    let mut evaluated = Evaluated::default();
    let (variables, failed_variables) = bind_variables(policy, authorized);
    // why: upstream evaluates variables lazily, so a failed variable only fails the
    // expressions that actually reach it; here it is left out of `variables`, and an
    // expression that then fails is reported with the variable's error.
    let run = |expression: &Expression| -> Result<Cel, String> {
        expression.evaluate(authorized, &variables).map_err(|err| {
            failed_variables
                .iter()
                .find(|(name, _)| reads_variable(&expression.source, name))
                .map_or(err, |(_, cause)| {
                    format!(
                        "expression '{}' resulted in error: {cause}",
                        expression.source.trim()
                    )
                })
        })
    };
    match match_conditions(policy, &run) {
        Ok(true) => {}
        Ok(false) => return evaluated,
        Err(message) => {
            if let Some(failure) = on_error(policy.failure_policy, message) {
                evaluated.failures.push((0, failure));
            }
            return evaluated;
        }
    }
    for (index, validation) in policy.validations.iter().enumerate() {
        let result = run(&validation.expression);
        let failure = match result {
            Ok(Cel::Bool(true)) => continue,
            Ok(Cel::Bool(false)) => Failure {
                message: message_for(validation, unauthorized, &variables),
                reason: validation.reason.clone(),
            },
            Ok(other) => match on_error(
                policy.failure_policy,
                format!(
                    "expression '{}' resulted in error: must evaluate to bool, got {}",
                    validation.expression.source.trim(),
                    other.type_of()
                ),
            ) {
                Some(failure) => failure,
                None => continue,
            },
            Err(err) => match on_error(policy.failure_policy, err) {
                Some(failure) => failure,
                None => continue,
            },
        };
        evaluated.failures.push((index, failure));
    }
    for annotation in &policy.audit_annotations {
        if let Some(annotation) = audit_annotation(policy, annotation, unauthorized, &variables) {
            evaluated.annotations.push(annotation);
        }
    }
    evaluated
}

/// Evaluates `variables` in order; returns the `variables` map of those that succeeded and
/// those that failed with why.
fn bind_variables(policy: &Policy, context: &Context<'_>) -> (Cel, Vec<(String, String)>) {
    let mut variables = map(Vec::new());
    let mut failed = Vec::new();
    for variable in &policy.variables {
        let Named { name, expression } = variable;
        let result = match &expression.program {
            Err(err) => Err(format!(
                "composited variable \"{name}\" fails to compile: {err}"
            )),
            Ok(_) => expression.evaluate(context, &variables).map_err(|err| {
                let failed_dependency = failed.iter().find(|(other, _): &&(String, String)| {
                    reads_variable(&expression.source, other)
                });
                let cause = match failed_dependency {
                    Some((_, cause)) => cause.as_str(),
                    None => err
                        .split_once(" resulted in error: ")
                        .map_or(err.as_str(), |(_, cause)| cause),
                };
                format!("composited variable \"{name}\" fails to evaluate: {cause}")
            }),
        };
        match result {
            Ok(value) => {
                if let Cel::Map(bound) = &mut variables {
                    // why: no evaluation keeps `variables` itself, so the map is ours alone
                    // and grows in place instead of being copied per variable.
                    Arc::make_mut(&mut bound.map)
                        .insert(Key::String(Arc::new(name.clone())), value);
                }
            }
            Err(err) => failed.push((name.clone(), err)),
        }
    }
    (variables, failed)
}

/// Whether every match condition holds; errors only count when no condition is false.
fn match_conditions(
    policy: &Policy,
    run: &dyn Fn(&Expression) -> Result<Cel, String>,
) -> Result<bool, String> {
    let mut errors = Vec::new();
    for condition in &policy.match_conditions {
        let result = run(&condition.expression);
        match result {
            Ok(Cel::Bool(false)) => return Ok(false),
            Ok(Cel::Bool(true)) => {}
            Ok(other) => errors.push(format!(
                "expression '{}' resulted in error: must evaluate to bool, got {}",
                condition.expression.source.trim(),
                other.type_of()
            )),
            Err(err) => errors.push(err),
        }
    }
    match errors.len() {
        0 => Ok(true),
        1 => Err(errors.remove(0)),
        _ => Err(format!("[{}]", errors.join(", "))),
    }
}

/// The message of a failed validation: `messageExpression`, else `message`, else the
/// expression itself.
fn message_for(validation: &Validation, context: &Context<'_>, variables: &Cel) -> String {
    let evaluated = validation
        .message_expression
        .as_ref()
        .and_then(|expression| match expression.evaluate(context, variables) {
            Ok(Cel::String(text)) => Some(text.trim().to_string()),
            Ok(_) => None,
            Err(err) => {
                tracing::debug!(%err, "error while evaluating messageExpression");
                None
            }
        })
        .filter(|text| !text.is_empty() && text.len() <= MAX_MESSAGE_BYTES && !text.contains('\n'));
    evaluated
        .or_else(|| {
            validation
                .message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("failed expression: {}", validation.expression.source.trim()))
}

fn audit_annotation(
    policy: &Policy,
    annotation: &Named,
    context: &Context<'_>,
    variables: &Cel,
) -> Option<Annotation> {
    match annotation.expression.evaluate(context, variables) {
        Ok(Cel::String(value)) => {
            let value = value.trim();
            (!value.is_empty()).then(|| Annotation::Publish {
                key: annotation.name.clone(),
                value: value.to_string(),
            })
        }
        Ok(Cel::Null) => None,
        Ok(other) => Some(Annotation::Error(format!(
            "valueExpression '{}' resulted in unsupported return type: {}. Return type must be either string or null.",
            annotation.expression.source,
            other.type_of()
        ))),
        Err(err) => match policy.failure_policy {
            FailurePolicy::Fail => Some(Annotation::Error(err)),
            FailurePolicy::Ignore => None,
        },
    }
}

/// Audit annotations of one policy across its bindings: duplicates dropped, distinct values of
/// one key joined by `, `, keys prefixed with the policy name.
pub(crate) fn collect_annotations(
    policy: &str,
    published: &[(String, String)],
) -> Vec<(String, String)> {
    let mut by_key: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for (key, value) in published {
        let values = by_key.entry(key).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        if !values.contains(&value.as_str()) {
            values.push(value);
        }
    }
    order
        .into_iter()
        .map(|key| (format!("{policy}/{key}"), by_key[key].join(", ")))
        .collect()
}
