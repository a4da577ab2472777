//! The common shapes of policy expressions, evaluated directly on the request: selections
//! from `object`, `oldObject` and `request`, `has()`, `==`, `!=`, `!`, `&&`, `||`, `in`,
//! `startsWith`, `endsWith`, `contains` on strings and
//! `authorizer.group(g).resource(r)...check(verb).allowed()`.
//!
//! why: the `cel` crate converts every bound variable in full into its own representation,
//! copies the map of every field it selects and converts each function's receiver and
//! arguments twice; for the few-field rules most policies are, that cost more than the rest
//! of a write. An expression is compiled here only when it has one of these shapes, and its
//! evaluation gives up (`None`) on anything but strings and booleans where it compares, and
//! on any missing field or wrong type: those go to the `cel` evaluator, which then decides,
//! with its own errors. Where it does decide, it decides as `cel` does (tested against it).

use std::cell::OnceCell;
use std::sync::Arc;

use kube_cel::cel::common::ast::{operators, CallExpr, Expr, IdedExpr, LiteralValue};
use serde_json::Value;

use super::matching::attribute_namespace;
use super::{AdmissionRequest, Operation};
use crate::auth::{Attributes, Authorizer, UserInfo};

/// An expression of a shape evaluated without `cel`.
#[derive(Debug)]
pub(crate) enum Direct {
    Bool(bool),
    Str(String),
    /// A chain of field selections from `object` or `oldObject` (`object.metadata.name`).
    Select {
        root: Root,
        path: Vec<String>,
    },
    /// A field of `request`.
    Request(RequestField),
    /// `has(<select>.field)`.
    Has {
        root: Root,
        path: Vec<String>,
        field: String,
    },
    Not(Box<Direct>),
    And(Box<Direct>, Box<Direct>),
    Or(Box<Direct>, Box<Direct>),
    Equals {
        left: Box<Direct>,
        right: Box<Direct>,
        negated: bool,
    },
    /// `target.startsWith(arg)` and the like.
    Text {
        test: TextTest,
        target: Box<Direct>,
        arg: Box<Direct>,
    },
    /// `item in container` (a list of strings, or a map's keys).
    In {
        item: Box<Direct>,
        container: Box<Direct>,
    },
    /// `authorizer.group(g).resource(r)[.subresource(s)][.namespace(n)][.name(n)].check(v).allowed()`.
    Allowed(Box<Check>),
}

/// The variables with JSON values a [`Direct`] selection starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Root {
    Object,
    OldObject,
}

/// The fields of `request` read directly: those that are the same for every policy (not
/// `kind`/`resource`, which follow the resource a policy matched, nor `uid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestField {
    Namespace,
    Name,
    Operation,
    SubResource,
    DryRun,
    Username,
    Uid,
    Groups,
}

impl RequestField {
    fn at(path: &[String]) -> Option<Self> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        Some(match path.as_slice() {
            ["namespace"] => RequestField::Namespace,
            ["name"] => RequestField::Name,
            ["operation"] => RequestField::Operation,
            ["subResource"] | ["requestSubResource"] => RequestField::SubResource,
            ["dryRun"] => RequestField::DryRun,
            ["userInfo", "username"] => RequestField::Username,
            ["userInfo", "uid"] => RequestField::Uid,
            ["userInfo", "groups"] => RequestField::Groups,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TextTest {
    StartsWith,
    EndsWith,
    Contains,
}

/// The arguments of one authorizer check; each is an expression that must give a string.
#[derive(Debug)]
pub(crate) struct Check {
    group: Direct,
    resource: Direct,
    subresource: Option<Direct>,
    namespace: Option<Direct>,
    name: Option<Direct>,
    verb: Direct,
}

impl Direct {
    /// `expression` when it has one of the shapes evaluated directly.
    pub fn compile(expression: &IdedExpr) -> Option<Self> {
        match &expression.expr {
            Expr::Literal(LiteralValue::Boolean(value)) => Some(Direct::Bool(*value.inner())),
            Expr::Literal(LiteralValue::String(value)) => {
                Some(Direct::Str(value.inner().to_string()))
            }
            Expr::Ident(_) | Expr::Select(_) => selection(expression),
            Expr::Call(call) => Self::compile_call(call),
            _ => None,
        }
    }

    fn compile_call(call: &CallExpr) -> Option<Self> {
        let boxed = |expression: &IdedExpr| Self::compile(expression).map(Box::new);
        match (call.func_name.as_str(), &call.target, call.args.as_slice()) {
            (operators::LOGICAL_NOT, None, [operand]) => Some(Direct::Not(boxed(operand)?)),
            (operators::LOGICAL_AND, None, [left, right]) => {
                Some(Direct::And(boxed(left)?, boxed(right)?))
            }
            (operators::LOGICAL_OR, None, [left, right]) => {
                Some(Direct::Or(boxed(left)?, boxed(right)?))
            }
            (operators::EQUALS | operators::NOT_EQUALS, None, [left, right]) => {
                Some(Direct::Equals {
                    left: boxed(left)?,
                    right: boxed(right)?,
                    negated: call.func_name == operators::NOT_EQUALS,
                })
            }
            (operators::IN, None, [item, container]) => Some(Direct::In {
                item: boxed(item)?,
                container: boxed(container)?,
            }),
            ("startsWith" | "endsWith" | "contains", Some(target), [arg]) => {
                let test = match call.func_name.as_str() {
                    "startsWith" => TextTest::StartsWith,
                    "endsWith" => TextTest::EndsWith,
                    _ => TextTest::Contains,
                };
                Some(Direct::Text {
                    test,
                    target: boxed(target)?,
                    arg: boxed(arg)?,
                })
            }
            ("allowed", Some(target), []) => {
                Check::compile(target).map(|c| Direct::Allowed(c.into()))
            }
            _ => None,
        }
    }
}

/// A chain of selections from a variable, or `has()` of one.
fn selection(expression: &IdedExpr) -> Option<Direct> {
    let mut path = Vec::new();
    let mut test = false;
    let mut operand = expression;
    while let Expr::Select(select) = &operand.expr {
        if select.test {
            // why: only the outermost selection can be `has()`; one inside is a value.
            if !path.is_empty() {
                return None;
            }
            test = true;
        }
        path.push(select.field.clone());
        operand = &select.operand;
    }
    let Expr::Ident(name) = &operand.expr else {
        return None;
    };
    path.reverse();
    let root = match name.as_str() {
        "object" => Root::Object,
        "oldObject" => Root::OldObject,
        "request" if !test => return RequestField::at(&path).map(Direct::Request),
        _ => return None,
    };
    if test {
        let field = path.pop()?;
        return Some(Direct::Has { root, path, field });
    }
    Some(Direct::Select { root, path })
}

impl Check {
    /// The check of `check(verb)` being `target`.
    fn compile(target: &IdedExpr) -> Option<Self> {
        let Expr::Call(call) = &target.expr else {
            return None;
        };
        let ("check", Some(mut receiver), [verb]) = (
            call.func_name.as_str(),
            call.target.as_deref(),
            call.args.as_slice(),
        ) else {
            return None;
        };
        let verb = Direct::compile(verb)?;
        let (mut subresource, mut namespace, mut name) = (None, None, None);
        // why: walking from `check` inwards meets the last call of each setter first, and the
        // last one is what upstream's builder keeps.
        loop {
            let Expr::Call(call) = &receiver.expr else {
                return None;
            };
            let (Some(inner), [arg]) = (call.target.as_deref(), call.args.as_slice()) else {
                return None;
            };
            let slot = match call.func_name.as_str() {
                "subresource" => &mut subresource,
                "namespace" => &mut namespace,
                "name" => &mut name,
                "resource" => {
                    let resource = Direct::compile(arg)?;
                    let group = authorizer_group(inner)?;
                    return Some(Check {
                        group,
                        resource,
                        subresource,
                        namespace,
                        name,
                        verb,
                    });
                }
                _ => return None,
            };
            if slot.is_none() {
                *slot = Some(Direct::compile(arg)?);
            }
            receiver = inner;
        }
    }
}

/// The argument of `authorizer.group(arg)`.
fn authorizer_group(expression: &IdedExpr) -> Option<Direct> {
    let Expr::Call(call) = &expression.expr else {
        return None;
    };
    match (
        call.func_name.as_str(),
        call.target.as_deref(),
        call.args.as_slice(),
    ) {
        (
            "group",
            Some(IdedExpr {
                expr: Expr::Ident(name),
                ..
            }),
            [group],
        ) if name == "authorizer" => Direct::compile(group),
        _ => None,
    }
}

/// A value met while evaluating.
#[derive(Clone, Copy, Debug)]
enum Found<'r> {
    Bool(bool),
    Str(&'r str),
    Strs(&'r [String]),
    /// A JSON value that is neither a string nor a boolean.
    Json(&'r Value),
}

impl<'r> Found<'r> {
    fn of(value: &'r Value) -> Self {
        match value {
            Value::String(text) => Found::Str(text),
            Value::Bool(value) => Found::Bool(*value),
            other => Found::Json(other),
        }
    }

    fn bool(self) -> Option<bool> {
        match self {
            Found::Bool(value) => Some(value),
            _ => None,
        }
    }

    fn str(self) -> Option<&'r str> {
        match self {
            Found::Str(text) => Some(text),
            _ => None,
        }
    }
}

/// One request as the expressions see it, with the authorizer their checks ask.
pub(crate) struct Env<'r> {
    request: &'r AdmissionRequest<'r>,
    authorizer: &'r Arc<dyn Authorizer>,
    /// The user as checks pass it, made for the first check.
    user: OnceCell<Arc<UserInfo>>,
}

impl<'r> Env<'r> {
    pub fn new(request: &'r AdmissionRequest<'r>, authorizer: &'r Arc<dyn Authorizer>) -> Self {
        Self {
            request,
            authorizer,
            user: OnceCell::new(),
        }
    }

    /// The variable's value; `None` when it is null.
    fn root(&self, root: Root) -> Option<&'r Value> {
        match root {
            Root::Object => self.request.object,
            Root::OldObject => self.request.old_object,
        }
    }

    fn request_field(&self, field: RequestField) -> Found<'r> {
        let request = self.request;
        let user = request.user;
        match field {
            RequestField::Namespace => Found::Str(attribute_namespace(request)),
            RequestField::Name => Found::Str(request.name),
            RequestField::Operation => Found::Str(match request.operation {
                Operation::Create => "CREATE",
                Operation::Update => "UPDATE",
                Operation::Delete => "DELETE",
            }),
            RequestField::SubResource => Found::Str(request.subresource),
            RequestField::DryRun => Found::Bool(request.dry_run),
            RequestField::Username => Found::Str(&user.username),
            RequestField::Uid => Found::Str(&user.uid),
            RequestField::Groups => Found::Strs(&user.groups),
        }
    }
}

/// The value `cel` selects at `path` from `root` (`None`: null): `None` for a missing field
/// (an error `cel` words).
///
/// why: `cel` gives `false` for a selection (and `has()`) from anything but a map, null
/// included, rather than an error; so does this, to decide as it does.
fn select<'r>(root: Option<&'r Value>, path: &[String]) -> Option<Found<'r>> {
    static NULL: Value = Value::Null;
    let Some(mut value) = root else {
        return Some(match path {
            [] => Found::Json(&NULL),
            _ => Found::Bool(false),
        });
    };
    for field in path {
        match value {
            Value::Object(map) => value = map.get(field)?,
            _ => return Some(Found::Bool(false)),
        }
    }
    Some(Found::of(value))
}

impl Direct {
    /// The boolean this expression gives on `env`'s request; `None` when it is not a
    /// boolean or is left to `cel`.
    pub fn decide(&self, env: &Env<'_>) -> Option<bool> {
        self.eval(env)?.bool()
    }

    fn eval<'r>(&'r self, env: &Env<'r>) -> Option<Found<'r>> {
        match self {
            Direct::Bool(value) => Some(Found::Bool(*value)),
            Direct::Str(text) => Some(Found::Str(text)),
            Direct::Select { root, path } => select(env.root(*root), path),
            Direct::Request(field) => Some(env.request_field(*field)),
            Direct::Has { root, path, field } => {
                Some(Found::Bool(match select(env.root(*root), path)? {
                    Found::Json(Value::Object(map)) => map.contains_key(field),
                    _ => false,
                }))
            }
            Direct::Not(operand) => Some(Found::Bool(!operand.eval(env)?.bool()?)),
            // why: `cel` ignores an error on one side when the other decides; giving up on
            // any error and letting `cel` evaluate again keeps that.
            Direct::And(left, right) => match left.eval(env)?.bool()? {
                false => Some(Found::Bool(false)),
                true => Some(Found::Bool(right.eval(env)?.bool()?)),
            },
            Direct::Or(left, right) => match left.eval(env)?.bool()? {
                true => Some(Found::Bool(true)),
                false => Some(Found::Bool(right.eval(env)?.bool()?)),
            },
            Direct::Equals {
                left,
                right,
                negated,
            } => {
                let equal = match (left.eval(env)?, right.eval(env)?) {
                    (Found::Str(left), Found::Str(right)) => left == right,
                    (Found::Bool(left), Found::Bool(right)) => left == right,
                    _ => return None,
                };
                Some(Found::Bool(equal != *negated))
            }
            Direct::Text { test, target, arg } => {
                let (target, arg) = (target.eval(env)?.str()?, arg.eval(env)?.str()?);
                Some(Found::Bool(match test {
                    TextTest::StartsWith => target.starts_with(arg),
                    TextTest::EndsWith => target.ends_with(arg),
                    TextTest::Contains => target.contains(arg),
                }))
            }
            Direct::In { item, container } => {
                let item = item.eval(env)?.str()?;
                let found = match container.eval(env)? {
                    Found::Strs(list) => list.iter().any(|entry| entry == item),
                    Found::Json(Value::Object(map)) => map.contains_key(item),
                    Found::Json(Value::Array(list)) => {
                        let mut found = false;
                        for entry in list {
                            found |= entry.as_str()? == item;
                        }
                        found
                    }
                    _ => return None,
                };
                Some(Found::Bool(found))
            }
            Direct::Allowed(check) => check.allowed(env).map(Found::Bool),
        }
    }
}

impl Check {
    fn allowed(&self, env: &Env<'_>) -> Option<bool> {
        let text = |direct: &Direct| direct.eval(env)?.str().map(str::to_string);
        let optional = |direct: &Option<Direct>| match direct {
            Some(direct) => text(direct),
            None => Some(String::new()),
        };
        let resource = text(&self.resource)?;
        // why: upstream refuses an empty resource with an error; `cel` words it.
        if resource.trim().is_empty() {
            return None;
        }
        let attributes = Attributes {
            user: env
                .user
                .get_or_init(|| Arc::new(env.request.user.clone()))
                .clone(),
            verb: text(&self.verb)?,
            resource_request: true,
            api_group: text(&self.group)?,
            api_version: "*".into(),
            resource,
            subresource: optional(&self.subresource)?,
            namespace: optional(&self.namespace)?,
            name: optional(&self.name)?,
            path: String::new(),
        };
        Some(env.authorizer.authorize(&attributes).allowed())
    }
}
