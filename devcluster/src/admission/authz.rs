//! kube-apiserver's CEL authorization library (`k8s.io/apiserver/pkg/cel/library/authz.go`):
//! `authorizer.group(g).resource(r).namespace(ns).name(n).check(verb).allowed()` and friends,
//! answered by devcluster's [`Authorizer`].

use std::fmt;
use std::sync::{Arc, LazyLock};

use kube_cel::cel::extractors::This;
use kube_cel::cel::objects::{Key, Opaque};
use kube_cel::cel::{Context, ExecutionError, FunctionContext, Value as Cel};
use regex::Regex;

use crate::auth::{
    Attributes, Authorizer, UserInfo, SERVICE_ACCOUNTS_GROUP, SERVICE_ACCOUNT_PREFIX,
};

use super::environment::map;

type Result<T, E = ExecutionError> = std::result::Result<T, E>;

/// Who the checks are for and who answers them (`kubernetes.authorization.Authorizer`).
#[derive(Clone)]
pub(crate) struct AuthorizerHandle {
    authorizer: Arc<dyn Authorizer>,
    user: Arc<UserInfo>,
}

impl PartialEq for AuthorizerHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.authorizer, &other.authorizer) && self.user == other.user
    }
}

impl Eq for AuthorizerHandle {}

impl fmt::Debug for AuthorizerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authorizer({})", self.user.username)
    }
}

impl Opaque for AuthorizerHandle {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Authorizer"
    }
}

/// `kubernetes.authorization.PathCheck`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PathCheck {
    handle: AuthorizerHandle,
    path: String,
}

impl Opaque for PathCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.PathCheck"
    }
}

/// `kubernetes.authorization.GroupCheck`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupCheck {
    handle: AuthorizerHandle,
    group: String,
}

impl Opaque for GroupCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.GroupCheck"
    }
}

/// `kubernetes.authorization.ResourceCheck`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ResourceCheck {
    handle: AuthorizerHandle,
    group: String,
    resource: String,
    subresource: String,
    namespace: String,
    name: String,
}

impl Opaque for ResourceCheck {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.ResourceCheck"
    }
}

/// `kubernetes.authorization.Decision`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    reason: Arc<str>,
}

impl Opaque for Decision {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

/// The `authorizer` variable: checks for `user`, with `authorizer.requestResource` set to the
/// resource of the request being admitted.
pub(crate) fn authorizer_variable(
    authorizer: &Arc<dyn Authorizer>,
    user: &UserInfo,
    request: &super::AdmissionRequest<'_>,
) -> Cel {
    let handle = AuthorizerHandle {
        authorizer: authorizer.clone(),
        user: Arc::new(user.clone()),
    };
    let request_resource = ResourceCheck {
        handle,
        group: request.rt.group.clone(),
        resource: request.rt.plural.clone(),
        subresource: request.subresource.to_string(),
        namespace: request.namespace.to_string(),
        name: request.name.to_string(),
    };
    map(vec![(
        "requestResource",
        Cel::Opaque(Arc::new(request_resource)),
    )])
}

/// Registers the library's functions on the root context.
pub(crate) fn register(context: &mut Context<'static>) {
    context.add_function("authorizer.group", authorizer_group);
    context.add_function("authorizer.path", authorizer_path);
    context.add_function("authorizer.serviceAccount", authorizer_service_account);
    context.add_function("group", group);
    context.add_function("path", path);
    context.add_function("serviceAccount", service_account);
    context.add_function("resource", resource);
    context.add_function("subresource", subresource);
    context.add_function("namespace", namespace);
    context.add_function("name", name);
    // why: upstream passes selectors to authorizers that support them; RBAC ignores them.
    context.add_function("fieldSelector", selector);
    context.add_function("labelSelector", selector);
    context.add_function("check", check);
    context.add_function("allowed", allowed);
    context.add_function("reason", reason);
    context.add_function("errored", errored);
    context.add_function("error", error);
}

fn no_overload(ftx: &FunctionContext) -> ExecutionError {
    ftx.error("no such overload")
}

fn opaque<'v, T: 'static>(ftx: &FunctionContext, value: &'v Cel) -> Result<&'v T> {
    match value {
        Cel::Opaque(opaque) => opaque.downcast_ref::<T>().ok_or_else(|| no_overload(ftx)),
        _ => Err(no_overload(ftx)),
    }
}

/// The handle behind the `authorizer` variable, for `authorizer.group(...)` and the like.
fn variable_handle(ftx: &FunctionContext) -> Result<AuthorizerHandle> {
    let variable = ftx
        .ptx
        .get_variable("authorizer")
        .ok_or_else(|| ExecutionError::undeclared_reference("authorizer"))?;
    let Ok(Cel::Map(fields)) = Cel::try_from(variable.as_ref()) else {
        return Err(no_overload(ftx));
    };
    let request_resource = fields
        .map
        .get(&Key::String(Arc::new("requestResource".into())))
        .ok_or_else(|| no_overload(ftx))?;
    Ok(opaque::<ResourceCheck>(ftx, request_resource)?
        .handle
        .clone())
}

fn group_check(handle: AuthorizerHandle, group: &str) -> Cel {
    Cel::Opaque(Arc::new(GroupCheck {
        handle,
        group: group.to_string(),
    }))
}

fn path_check(ftx: &FunctionContext, handle: AuthorizerHandle, path: &str) -> Result<Cel> {
    if path.trim().is_empty() {
        return Err(ftx.error("path must not be empty"));
    }
    Ok(Cel::Opaque(Arc::new(PathCheck {
        handle,
        path: path.to_string(),
    })))
}

static DNS_LABEL: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").ok());
static DNS_SUBDOMAIN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").ok()
});

fn matches(pattern: &LazyLock<Option<Regex>>, text: &str, max: usize) -> bool {
    text.len() <= max && pattern.as_ref().is_some_and(|re| re.is_match(text))
}

/// The handle of the ServiceAccount `namespace/name`, as its token would authenticate.
fn service_account_handle(
    ftx: &FunctionContext,
    handle: &AuthorizerHandle,
    namespace: &str,
    name: &str,
) -> Result<Cel> {
    if !matches(&DNS_SUBDOMAIN, name, 253) {
        return Err(ftx.error("Invalid service account name"));
    }
    if !matches(&DNS_LABEL, namespace, 63) {
        return Err(ftx.error("Invalid service account namespace"));
    }
    let user = UserInfo {
        username: format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
        uid: String::new(),
        groups: vec![
            SERVICE_ACCOUNTS_GROUP.to_string(),
            format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
        ],
        extra: Default::default(),
    };
    Ok(Cel::Opaque(Arc::new(AuthorizerHandle {
        authorizer: handle.authorizer.clone(),
        user: Arc::new(user),
    })))
}

fn authorizer_group(ftx: &FunctionContext, group: Arc<String>) -> Result<Cel> {
    Ok(group_check(variable_handle(ftx)?, &group))
}

fn authorizer_path(ftx: &FunctionContext, path: Arc<String>) -> Result<Cel> {
    path_check(ftx, variable_handle(ftx)?, &path)
}

fn authorizer_service_account(
    ftx: &FunctionContext,
    namespace: Arc<String>,
    name: Arc<String>,
) -> Result<Cel> {
    service_account_handle(ftx, &variable_handle(ftx)?, &namespace, &name)
}

fn group(ftx: &FunctionContext, This(this): This<Cel>, group: Arc<String>) -> Result<Cel> {
    let handle = opaque::<AuthorizerHandle>(ftx, &this)?;
    Ok(group_check(handle.clone(), &group))
}

fn path(ftx: &FunctionContext, This(this): This<Cel>, path: Arc<String>) -> Result<Cel> {
    let handle = opaque::<AuthorizerHandle>(ftx, &this)?;
    path_check(ftx, handle.clone(), &path)
}

fn service_account(
    ftx: &FunctionContext,
    This(this): This<Cel>,
    namespace: Arc<String>,
    name: Arc<String>,
) -> Result<Cel> {
    let handle = opaque::<AuthorizerHandle>(ftx, &this)?;
    service_account_handle(ftx, handle, &namespace, &name)
}

fn resource(ftx: &FunctionContext, This(this): This<Cel>, resource: Arc<String>) -> Result<Cel> {
    let group = opaque::<GroupCheck>(ftx, &this)?;
    if resource.trim().is_empty() {
        return Err(ftx.error("resource must not be empty"));
    }
    Ok(Cel::Opaque(Arc::new(ResourceCheck {
        handle: group.handle.clone(),
        group: group.group.clone(),
        resource: resource.to_string(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
    })))
}

/// A copy of the receiving ResourceCheck with one field changed.
fn with_field(
    ftx: &FunctionContext,
    this: &Cel,
    change: impl FnOnce(&mut ResourceCheck),
) -> Result<Cel> {
    let mut check = opaque::<ResourceCheck>(ftx, this)?.clone();
    change(&mut check);
    Ok(Cel::Opaque(Arc::new(check)))
}

fn subresource(ftx: &FunctionContext, This(this): This<Cel>, value: Arc<String>) -> Result<Cel> {
    with_field(ftx, &this, |check| check.subresource = value.to_string())
}

fn namespace(ftx: &FunctionContext, This(this): This<Cel>, value: Arc<String>) -> Result<Cel> {
    with_field(ftx, &this, |check| check.namespace = value.to_string())
}

fn name(ftx: &FunctionContext, This(this): This<Cel>, value: Arc<String>) -> Result<Cel> {
    with_field(ftx, &this, |check| check.name = value.to_string())
}

fn selector(ftx: &FunctionContext, This(this): This<Cel>, _selector: Arc<String>) -> Result<Cel> {
    with_field(ftx, &this, |_| {})
}

fn check(ftx: &FunctionContext, This(this): This<Cel>, verb: Arc<String>) -> Result<Cel> {
    let Cel::Opaque(target) = &this else {
        return Err(no_overload(ftx));
    };
    let (handle, attributes) = if let Some(check) = target.downcast_ref::<ResourceCheck>() {
        let attributes = Attributes {
            user: check.handle.user.clone(),
            verb: verb.to_string(),
            resource_request: true,
            api_group: check.group.clone(),
            api_version: "*".into(),
            resource: check.resource.clone(),
            subresource: check.subresource.clone(),
            namespace: check.namespace.clone(),
            name: check.name.clone(),
            path: String::new(),
        };
        (&check.handle, attributes)
    } else if let Some(check) = target.downcast_ref::<PathCheck>() {
        let attributes = Attributes {
            user: check.handle.user.clone(),
            verb: verb.to_string(),
            path: check.path.clone(),
            ..Attributes::default()
        };
        (&check.handle, attributes)
    } else {
        return Err(no_overload(ftx));
    };
    let decision = handle.authorizer.authorize(&attributes);
    Ok(Cel::Opaque(Arc::new(Decision {
        allowed: decision.allowed(),
        reason: match decision {
            crate::auth::Decision::Allow(reason)
            | crate::auth::Decision::Deny(reason)
            | crate::auth::Decision::NoOpinion(reason) => reason,
        },
    })))
}

fn allowed(ftx: &FunctionContext, This(this): This<Cel>) -> Result<Cel> {
    Ok(Cel::Bool(opaque::<Decision>(ftx, &this)?.allowed))
}

fn reason(ftx: &FunctionContext, This(this): This<Cel>) -> Result<Cel> {
    Ok(Cel::String(Arc::new(
        opaque::<Decision>(ftx, &this)?.reason.to_string(),
    )))
}

/// devcluster's authorizers never fail, so no decision is an error.
fn errored(ftx: &FunctionContext, This(this): This<Cel>) -> Result<Cel> {
    opaque::<Decision>(ftx, &this)?;
    Ok(Cel::Bool(false))
}

fn error(ftx: &FunctionContext, This(this): This<Cel>) -> Result<Cel> {
    opaque::<Decision>(ftx, &this)?;
    Ok(Cel::String(Arc::new(String::new())))
}
