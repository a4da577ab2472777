//! Roles and bindings as RBAC evaluates them, kept current by a store commit hook and indexed by
//! subject, so a request looks only at the bindings that name its user or one of its groups.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use super::rule::PolicyRule;
use crate::auth::{UserInfo, SERVICE_ACCOUNT_PREFIX};
use crate::store::{Change, ChangeType};

pub const ROLES: &str = "roles.rbac.authorization.k8s.io";
pub const CLUSTER_ROLES: &str = "clusterroles.rbac.authorization.k8s.io";
pub const ROLE_BINDINGS: &str = "rolebindings.rbac.authorization.k8s.io";
pub const CLUSTER_ROLE_BINDINGS: &str = "clusterrolebindings.rbac.authorization.k8s.io";

/// A binding's subject, as `describeSubject` prints it in an allow reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    User(String),
    Group(String),
    ServiceAccount { namespace: String, name: String },
}

impl Subject {
    /// The subject of one `subjects` item; `None` for kinds RBAC ignores or a ServiceAccount
    /// without a namespace in a ClusterRoleBinding.
    fn parse(item: &Value, binding_namespace: &str) -> Option<Self> {
        let name = item.get("name").and_then(Value::as_str)?.to_string();
        match item.get("kind").and_then(Value::as_str)? {
            "User" => Some(Subject::User(name)),
            "Group" => Some(Subject::Group(name)),
            "ServiceAccount" => {
                let namespace = item
                    .get("namespace")
                    .and_then(Value::as_str)
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or(binding_namespace);
                (!namespace.is_empty()).then(|| Subject::ServiceAccount {
                    namespace: namespace.to_string(),
                    name,
                })
            }
            _ => None,
        }
    }

    /// Whether this subject is `user` (`appliesToUser`).
    pub fn applies_to(&self, user: &UserInfo) -> bool {
        match self {
            Subject::User(name) => user.username == *name,
            Subject::Group(name) => user.groups.iter().any(|group| group == name),
            Subject::ServiceAccount { namespace, name } => {
                user.service_account() == Some((namespace.as_str(), name.as_str()))
            }
        }
    }

    /// The key this subject is indexed under: a username or a group.
    fn index_key(&self) -> (SubjectKind, String) {
        match self {
            Subject::User(name) => (SubjectKind::User, name.clone()),
            Subject::Group(name) => (SubjectKind::Group, name.clone()),
            Subject::ServiceAccount { namespace, name } => (
                SubjectKind::User,
                format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}"),
            ),
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(name) => write!(f, "User {name:?}"),
            Subject::Group(name) => write!(f, "Group {name:?}"),
            Subject::ServiceAccount { namespace, name } => {
                write!(f, "ServiceAccount {:?}", format!("{name}/{namespace}"))
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SubjectKind {
    User,
    Group,
}

/// What a binding's `roleRef` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleRef {
    pub kind: String,
    pub name: String,
}

impl RoleRef {
    pub fn parse(binding: &Value) -> Self {
        let field = |name: &str| {
            binding
                .pointer(&format!("/roleRef/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            kind: field("kind"),
            name: field("name"),
        }
    }
}

/// A RoleBinding (with its namespace) or a ClusterRoleBinding (empty namespace).
#[derive(Clone, Debug)]
pub struct Binding {
    pub namespace: String,
    pub name: String,
    pub role_ref: RoleRef,
    pub subjects: Vec<Subject>,
    /// The allow reason of each subject, in `subjects` order (see [`Source`]).
    allow_reasons: Vec<Arc<str>>,
}

impl Binding {
    fn parse(object: &Value, namespace: &str) -> Self {
        let mut binding = Self {
            namespace: namespace.to_string(),
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            role_ref: RoleRef::parse(object),
            subjects: object
                .get("subjects")
                .and_then(Value::as_array)
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|item| Subject::parse(item, namespace))
                        .collect()
                })
                .unwrap_or_default(),
            allow_reasons: Vec::new(),
        };
        binding.allow_reasons = binding
            .subjects
            .iter()
            .map(|subject| {
                format!(
                    "RBAC: allowed by {}",
                    Wording {
                        binding: &binding,
                        subject
                    }
                )
                .into()
            })
            .collect();
        binding
    }

    /// The allow reason of the first subject that is `user`, as kube-apiserver's
    /// `appliesTo` finds it; `None` when the binding does not name `user`.
    fn allow_reason_for(&self, user: &UserInfo) -> Option<&Arc<str>> {
        self.subjects
            .iter()
            .zip(&self.allow_reasons)
            .find(|(subject, _)| subject.applies_to(user))
            .map(|(_, reason)| reason)
    }
}

/// Where an allowing rule came from.
pub struct Source<'a> {
    /// kube-apiserver's allow reason for this binding and subject
    /// (`RBAC: allowed by RoleBinding "name/namespace" of Role "r" to User "u"`).
    pub allow_reason: &'a Arc<str>,
}

/// A binding and subject worded as kube-apiserver's allow reasons.
struct Wording<'a> {
    binding: &'a Binding,
    subject: &'a Subject,
}

impl fmt::Display for Wording<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let binding = self.binding;
        if binding.namespace.is_empty() {
            write!(f, "ClusterRoleBinding {:?}", binding.name)?;
        } else {
            write!(
                f,
                "RoleBinding {:?}",
                format!("{}/{}", binding.name, binding.namespace)
            )?;
        }
        write!(
            f,
            " of {} {:?} to {}",
            binding.role_ref.kind, binding.role_ref.name, self.subject
        )
    }
}

/// Binding names by the users and groups they name.
#[derive(Default)]
struct SubjectIndex {
    users: HashMap<String, BTreeSet<String>>,
    groups: HashMap<String, BTreeSet<String>>,
}

impl SubjectIndex {
    fn names_mut(&mut self, kind: SubjectKind) -> &mut HashMap<String, BTreeSet<String>> {
        match kind {
            SubjectKind::User => &mut self.users,
            SubjectKind::Group => &mut self.groups,
        }
    }

    fn add(&mut self, binding: &Binding) {
        for subject in &binding.subjects {
            let (kind, key) = subject.index_key();
            self.names_mut(kind)
                .entry(key)
                .or_default()
                .insert(binding.name.clone());
        }
    }

    fn remove(&mut self, binding: &Binding) {
        for subject in &binding.subjects {
            let (kind, key) = subject.index_key();
            let index = self.names_mut(kind);
            if let Some(names) = index.get_mut(&key) {
                names.remove(&binding.name);
                if names.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }

    /// Names of the bindings that may apply to `user`, in name order.
    fn candidates(&self, user: &UserInfo) -> BTreeSet<&str> {
        let by_user = self.users.get(&user.username).into_iter();
        let by_group = user
            .groups
            .iter()
            .filter_map(|group| self.groups.get(group));
        by_user
            .chain(by_group)
            .flat_map(|names| names.iter().map(String::as_str))
            .collect()
    }
}

/// One step of [`Index::visit_rules_for`]: a rule with its source, or a resolution error.
pub enum Visit<'a> {
    Rule(&'a PolicyRule, Source<'a>),
    Error(String),
}

/// Every role and binding, indexed for evaluation.
#[derive(Default)]
pub struct Index {
    roles: HashMap<(String, String), Arc<[PolicyRule]>>,
    cluster_roles: HashMap<String, Arc<[PolicyRule]>>,
    role_bindings: HashMap<(String, String), Binding>,
    cluster_role_bindings: HashMap<String, Binding>,
    role_binding_subjects: HashMap<String, SubjectIndex>,
    cluster_role_binding_subjects: SubjectIndex,
}

fn name_of(object: &Value) -> String {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl Index {
    /// Applies one committed change of a role or binding.
    pub fn apply(&mut self, change: &Change) {
        let object = &change.object;
        let name = name_of(object);
        let namespace = change.namespace.clone();
        let removed = change.change_type == ChangeType::Deleted;
        match &*change.key {
            ROLES => {
                let key = (namespace, name);
                if removed {
                    self.roles.remove(&key);
                } else {
                    self.roles
                        .insert(key, PolicyRule::from_object(object).into());
                }
            }
            CLUSTER_ROLES => {
                if removed {
                    self.cluster_roles.remove(&name);
                } else {
                    self.cluster_roles
                        .insert(name, PolicyRule::from_object(object).into());
                }
            }
            ROLE_BINDINGS => {
                let subjects = self
                    .role_binding_subjects
                    .entry(namespace.clone())
                    .or_default();
                let key = (namespace, name);
                if let Some(old) = self.role_bindings.remove(&key) {
                    subjects.remove(&old);
                }
                if !removed {
                    let binding = Binding::parse(object, &key.0);
                    subjects.add(&binding);
                    self.role_bindings.insert(key, binding);
                }
            }
            CLUSTER_ROLE_BINDINGS => {
                if let Some(old) = self.cluster_role_bindings.remove(&name) {
                    self.cluster_role_binding_subjects.remove(&old);
                }
                if !removed {
                    let binding = Binding::parse(object, "");
                    self.cluster_role_binding_subjects.add(&binding);
                    self.cluster_role_bindings.insert(name, binding);
                }
            }
            _ => {}
        }
    }

    /// The rules a roleRef grants in `namespace` (empty for a ClusterRoleBinding), or the error
    /// kube-apiserver reports for it (`GetRoleReferenceRules`).
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone()))
                .ok_or("role"),
            "ClusterRole" => self.cluster_roles.get(&role_ref.name).ok_or("clusterrole"),
            other => return Err(format!("unsupported role reference kind: {other:?}")),
        };
        found.map(|rules| &**rules).map_err(|resource| {
            format!(
                "{resource}.rbac.authorization.k8s.io {:?} not found",
                role_ref.name
            )
        })
    }

    /// Calls `visit` with every rule that applies to `user` in `namespace` (ClusterRoleBindings
    /// first, then the namespace's RoleBindings) and every error resolving them, until it
    /// returns false (`VisitRulesFor`).
    pub fn visit_rules_for<'a>(
        &'a self,
        user: &'a UserInfo,
        namespace: &str,
        mut visit: impl FnMut(Visit<'a>) -> bool,
    ) {
        let cluster = self
            .cluster_role_binding_subjects
            .candidates(user)
            .into_iter()
            .filter_map(|name| self.cluster_role_bindings.get(name));
        let local: Vec<&Binding> = match self.role_binding_subjects.get(namespace) {
            Some(subjects) if !namespace.is_empty() => subjects
                .candidates(user)
                .into_iter()
                .filter_map(|name| {
                    self.role_bindings
                        .get(&(namespace.to_string(), name.to_string()))
                })
                .collect(),
            _ => Vec::new(),
        };
        for binding in cluster.chain(local) {
            let Some(allow_reason) = binding.allow_reason_for(user) else {
                continue;
            };
            match self.role_rules(&binding.role_ref, &binding.namespace) {
                Err(err) => {
                    if !visit(Visit::Error(err)) {
                        return;
                    }
                }
                Ok(rules) => {
                    for rule in rules {
                        if !visit(Visit::Rule(rule, Source { allow_reason })) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Every rule that applies to `user` in `namespace`, and the resolution errors (`RulesFor`).
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit_rules_for(user, namespace, |visit| {
            match visit {
                Visit::Rule(rule, _) => rules.push(rule.clone()),
                Visit::Error(err) => errors.push(err),
            }
            true
        });
        (rules, errors)
    }
}

/// kube's `utilerrors.NewAggregate(errs).Error()`: one message alone, several as `[a, b]`
/// without repeats.
pub fn aggregate(errors: &[String]) -> String {
    if let [only] = errors {
        return only.clone();
    }
    let mut seen: Vec<&str> = Vec::new();
    for err in errors {
        if !seen.contains(&err.as_str()) {
            seen.push(err);
        }
    }
    match seen.as_slice() {
        [only] => (*only).to_string(),
        _ => format!("[{}]", seen.join(", ")),
    }
}
