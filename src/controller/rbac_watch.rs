//! The slice of RBAC that decides scopes: roles whose rules name `scopes.keywarden.io` (or `*`)
//! and the bindings to them, indexed by subject. It maps an RBAC change to the owners it
//! touches, and digests the view of one owner so a review is repeated only when it changed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject as RbacSubject,
};
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::cached_key::{CachedKey, KeyView};
use crate::api::SCOPES_GROUP;
use crate::sync::lock;

/// How long RBAC changes are gathered before the affected keys are reviewed again.
// why: one `kubectl apply` of a role and its binding is several events; one review covers them.
// It also gives a real API server's authorizer cache time to see what our watch saw.
pub const DEBOUNCE: Duration = Duration::from_millis(500);

/// A Role (`namespace` set) or a ClusterRole.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoleId {
    pub namespace: Option<String>,
    pub name: String,
}

/// A RoleBinding (`namespace` set) or a ClusterRoleBinding.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BindingId {
    pub namespace: Option<String>,
    pub name: String,
}

/// Who a binding grants to: a username (ServiceAccounts as `system:serviceaccount:<ns>:<name>`)
/// or a group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    User(String),
    Group(String),
}

/// What is kept of a binding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub resource_version: String,
    pub role: RoleId,
    pub subjects: Vec<Subject>,
}

/// Owners an RBAC change may have touched: a subject, and the namespace its grant is confined
/// to (`None`: every namespace, a ClusterRoleBinding).
pub type Touched = Vec<(Subject, Option<String>)>;

/// The RBAC that decides scopes, kept from watches.
#[derive(Default)]
pub struct RbacView {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Roles naming the scopes group (or `*`), with their resourceVersion.
    roles: HashMap<RoleId, String>,
    bindings: HashMap<BindingId, Binding>,
    by_subject: HashMap<Subject, HashSet<BindingId>>,
}

impl Inner {
    fn touched_by_role(&self, role: &RoleId) -> Touched {
        self.bindings
            .iter()
            .filter(|(_, b)| &b.role == role)
            .flat_map(|(id, b)| b.subjects.iter().map(|s| (s.clone(), id.namespace.clone())))
            .collect()
    }

    fn set_role(&mut self, role: RoleId, relevant_version: Option<String>) -> Touched {
        let old = match relevant_version {
            Some(version) => self
                .roles
                .insert(role.clone(), version.clone())
                .map(|v| v != version),
            None => self.roles.remove(&role).map(|_| true),
        };
        let newly_relevant = old.is_none() && self.roles.contains_key(&role);
        if old == Some(true) || newly_relevant {
            self.touched_by_role(&role)
        } else {
            Vec::new()
        }
    }

    fn set_binding(&mut self, id: BindingId, binding: Option<Binding>) -> Touched {
        let old = match &binding {
            Some(b) => self.bindings.insert(id.clone(), b.clone()),
            None => self.bindings.remove(&id),
        };
        if old == binding {
            return Vec::new();
        }
        let mut touched = Vec::new();
        if let Some(old) = &old {
            for subject in &old.subjects {
                if let Some(ids) = self.by_subject.get_mut(subject) {
                    ids.remove(&id);
                    if ids.is_empty() {
                        self.by_subject.remove(subject);
                    }
                }
            }
            if self.roles.contains_key(&old.role) {
                touched.extend(
                    old.subjects
                        .iter()
                        .map(|s| (s.clone(), id.namespace.clone())),
                );
            }
        }
        if let Some(new) = &binding {
            for subject in &new.subjects {
                self.by_subject
                    .entry(subject.clone())
                    .or_default()
                    .insert(id.clone());
            }
            if self.roles.contains_key(&new.role) {
                touched.extend(
                    new.subjects
                        .iter()
                        .map(|s| (s.clone(), id.namespace.clone())),
                );
            }
        }
        touched
    }
}

impl RbacView {
    /// Records a Role or ClusterRole (`None`: deleted); returns the owners it may touch.
    pub fn apply_role(&self, role: RoleId, rules: Option<(&[PolicyRule], String)>) -> Touched {
        let relevant = rules.and_then(|(rules, version)| names_scopes(rules).then_some(version));
        lock(&self.inner).set_role(role, relevant)
    }

    /// Records a RoleBinding or ClusterRoleBinding (`None`: deleted); returns the owners it
    /// may touch.
    pub fn apply_binding(&self, id: BindingId, binding: Option<Binding>) -> Touched {
        lock(&self.inner).set_binding(id, binding)
    }

    /// Digest of the RBAC that can grant scopes to `username` in `groups` in `namespace`:
    /// every binding naming them (cluster-wide, or in `namespace`) to a role naming scopes,
    /// with both resourceVersions. Equal digests mean an equal view.
    pub fn digest(&self, username: &str, groups: &[String], namespace: &str) -> String {
        let inner = lock(&self.inner);
        let subjects = std::iter::once(Subject::User(username.to_owned()))
            .chain(groups.iter().cloned().map(Subject::Group));
        let bindings: BTreeSet<&BindingId> = subjects
            .filter_map(|s| inner.by_subject.get(&s))
            .flatten()
            .filter(|id| id.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .collect();
        let mut hasher = Sha256::new();
        for id in bindings {
            let Some(binding) = inner.bindings.get(id) else {
                continue;
            };
            let Some(role_version) = inner.roles.get(&binding.role) else {
                continue;
            };
            for part in [
                id.namespace.as_deref().unwrap_or(""),
                &id.name,
                &binding.resource_version,
                binding.role.namespace.as_deref().unwrap_or(""),
                &binding.role.name,
                role_version,
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
        }
        hex(&hasher.finalize()[..16])
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether any rule names the scopes group or every group.
pub fn names_scopes(rules: &[PolicyRule]) -> bool {
    rules.iter().any(|rule| {
        rule.api_groups
            .iter()
            .flatten()
            .any(|group| group == SCOPES_GROUP || group == "*")
    })
}

/// The role a binding in `namespace` (`None`: a ClusterRoleBinding) refers to.
pub fn role_of(namespace: Option<&str>, role_ref: &RoleRef) -> RoleId {
    RoleId {
        namespace: (role_ref.kind == "Role")
            .then(|| namespace.map(str::to_owned))
            .flatten(),
        name: role_ref.name.clone(),
    }
}

/// A binding's subjects as usernames and groups; a ServiceAccount subject without namespace
/// takes the binding's (as Kubernetes does).
pub fn subjects_of(namespace: Option<&str>, subjects: &[RbacSubject]) -> Vec<Subject> {
    subjects
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "User" => Some(Subject::User(s.name.clone())),
            "Group" => Some(Subject::Group(s.name.clone())),
            "ServiceAccount" => {
                let ns = s.namespace.as_deref().or(namespace)?;
                Some(Subject::User(format!(
                    "system:serviceaccount:{ns}:{}",
                    s.name
                )))
            }
            _ => None,
        })
        .collect()
}

/// The keys whose owner `touched` names, in the namespace the grant applies to.
pub fn keys_touched<K: KeyView>(
    keys: &[Arc<K>],
    touched: &Touched,
    owner_groups: impl Fn(&K) -> Vec<String>,
) -> Vec<ObjectRef<K>> {
    if touched.is_empty() {
        return Vec::new();
    }
    keys.iter()
        .filter(|key| {
            let namespace = key.namespace().unwrap_or_default();
            let username = key.key_spec().owner.username(&namespace);
            let groups = owner_groups(key);
            touched.iter().any(|(subject, scope)| {
                scope.as_deref().is_none_or(|ns| ns == namespace)
                    && match subject {
                        Subject::User(name) => *name == username,
                        Subject::Group(group) => groups.contains(group),
                    }
            })
        })
        .map(|key| ObjectRef::from_obj(&**key))
        .collect()
}

/// Sync-mask bits set once each RBAC watch has listed.
pub const ROLES_LISTED: u16 = 8;
pub const CLUSTER_ROLES_LISTED: u16 = 16;
pub const ROLE_BINDINGS_LISTED: u16 = 32;
pub const CLUSTER_ROLE_BINDINGS_LISTED: u16 = 64;

/// Watches the four RBAC kinds into `view` and sends the owners each change touches.
pub fn spawn_watches(
    client: &Client,
    view: Arc<RbacView>,
    synced: Arc<watch::Sender<u16>>,
    touched: mpsc::UnboundedSender<Touched>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let role_id = |r: &Role| RoleId {
        namespace: r.namespace(),
        name: r.name_any(),
    };
    let cluster_role_id = |r: &ClusterRole| RoleId {
        namespace: None,
        name: r.name_any(),
    };
    let binding_id = |namespace: Option<String>, name: String| BindingId { namespace, name };
    vec![
        spawn_watch(
            Api::<Role>::all(client.clone()),
            (view.clone(), synced.clone(), touched.clone(), ROLES_LISTED),
            move |view: &RbacView, role: &Role, deleted| {
                let rules = role.rules.as_deref().unwrap_or_default();
                view.apply_role(
                    role_id(role),
                    (!deleted).then(|| (rules, role.resource_version().unwrap_or_default())),
                )
            },
        ),
        spawn_watch(
            Api::<ClusterRole>::all(client.clone()),
            (
                view.clone(),
                synced.clone(),
                touched.clone(),
                CLUSTER_ROLES_LISTED,
            ),
            move |view: &RbacView, role: &ClusterRole, deleted| {
                let rules = role.rules.as_deref().unwrap_or_default();
                view.apply_role(
                    cluster_role_id(role),
                    (!deleted).then(|| (rules, role.resource_version().unwrap_or_default())),
                )
            },
        ),
        spawn_watch(
            Api::<RoleBinding>::all(client.clone()),
            (
                view.clone(),
                synced.clone(),
                touched.clone(),
                ROLE_BINDINGS_LISTED,
            ),
            move |view: &RbacView, b: &RoleBinding, deleted| {
                let namespace = b.namespace();
                let binding = (!deleted).then(|| Binding {
                    resource_version: b.resource_version().unwrap_or_default(),
                    role: role_of(namespace.as_deref(), &b.role_ref),
                    subjects: subjects_of(
                        namespace.as_deref(),
                        b.subjects.as_deref().unwrap_or_default(),
                    ),
                });
                view.apply_binding(binding_id(namespace, b.name_any()), binding)
            },
        ),
        spawn_watch(
            Api::<ClusterRoleBinding>::all(client.clone()),
            (view, synced, touched, CLUSTER_ROLE_BINDINGS_LISTED),
            move |view: &RbacView, b: &ClusterRoleBinding, deleted| {
                let binding = (!deleted).then(|| Binding {
                    resource_version: b.resource_version().unwrap_or_default(),
                    role: role_of(None, &b.role_ref),
                    subjects: subjects_of(None, b.subjects.as_deref().unwrap_or_default()),
                });
                view.apply_binding(binding_id(None, b.name_any()), binding)
            },
        ),
    ]
}

/// Runs one watch: applies each object to the view (`true`: deleted) and reports what it
/// touched; a relist also removes the objects it no longer lists.
fn spawn_watch<K>(
    api: Api<K>,
    (view, synced, touched, bit): (
        Arc<RbacView>,
        Arc<watch::Sender<u16>>,
        mpsc::UnboundedSender<Touched>,
        u16,
    ),
    apply: impl Fn(&RbacView, &K, bool) -> Touched + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    K: Resource
        + Clone
        + Default
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        // why: names only. Keeping the objects (every Role and RoleBinding of the cluster, one
        // of each per issued key, with managedFields) cost more memory than the key cache.
        let mut known: HashSet<ObjectName> = HashSet::new();
        let mut listed: HashSet<ObjectName> = HashSet::new();
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let changes = match event {
                watcher::Event::Apply(obj) => {
                    known.insert(ObjectName::of(&obj));
                    apply(&view, &obj, false)
                }
                watcher::Event::Delete(obj) => {
                    known.remove(&ObjectName::of(&obj));
                    apply(&view, &obj, true)
                }
                watcher::Event::Init => {
                    listed.clear();
                    Vec::new()
                }
                // why: applied as listed rather than buffered until the list ends; the view
                // only gains what the API now shows, and what the list no longer shows goes
                // at its end, as before.
                watcher::Event::InitApply(obj) => {
                    listed.insert(ObjectName::of(&obj));
                    apply(&view, &obj, false)
                }
                watcher::Event::InitDone => {
                    let mut changes = Vec::new();
                    for gone in known.difference(&listed) {
                        changes.extend(apply(&view, &gone.placeholder::<K>(), true));
                    }
                    known = std::mem::take(&mut listed);
                    synced.send_modify(|mask| *mask |= bit);
                    changes
                }
            };
            if !changes.is_empty() {
                let _ = touched.send(changes);
            }
        }
    })
}

/// Namespace and name of a watched object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ObjectName {
    namespace: Option<String>,
    name: Option<String>,
}

impl ObjectName {
    fn of<K: Resource>(obj: &K) -> Self {
        Self {
            namespace: obj.meta().namespace.clone(),
            name: obj.meta().name.clone(),
        }
    }

    /// An object with only this name, to report its deletion (which reads nothing else).
    fn placeholder<K: Resource + Default>(&self) -> K {
        let mut obj = K::default();
        obj.meta_mut().namespace.clone_from(&self.namespace);
        obj.meta_mut().name.clone_from(&self.name);
        obj
    }
}

/// Gathers touched owners for [`DEBOUNCE`], then asks for a reconcile of each of their keys.
pub async fn retrigger_touched_keys(
    mut touched: mpsc::UnboundedReceiver<Touched>,
    keys: kube::runtime::reflector::Store<CachedKey>,
    owner_groups: fn(&CachedKey) -> Vec<String>,
    retrigger: mpsc::UnboundedSender<ObjectRef<CachedKey>>,
) {
    while let Some(first) = touched.recv().await {
        tokio::time::sleep(DEBOUNCE).await;
        let mut all = first;
        while let Ok(more) = touched.try_recv() {
            all.extend(more);
        }
        all.sort();
        all.dedup();
        for key in keys_touched(&keys.state(), &all, owner_groups) {
            let _ = retrigger.send(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(groups: &[&str]) -> PolicyRule {
        PolicyRule {
            api_groups: Some(groups.iter().map(|g| g.to_string()).collect()),
            resources: Some(vec!["logs".into()]),
            verbs: vec!["view".into()],
            ..PolicyRule::default()
        }
    }

    fn cluster_role(name: &str) -> RoleId {
        RoleId {
            namespace: None,
            name: name.into(),
        }
    }

    fn binding(
        ns: Option<&str>,
        role: RoleId,
        subjects: &[Subject],
        version: &str,
    ) -> (BindingId, Binding) {
        (
            BindingId {
                namespace: ns.map(str::to_owned),
                name: "b".into(),
            },
            Binding {
                resource_version: version.into(),
                role,
                subjects: subjects.to_vec(),
            },
        )
    }

    #[test]
    fn a_relisted_object_is_remembered_by_name_and_removed_by_a_placeholder() {
        let listed = RoleBinding {
            metadata: kube::api::ObjectMeta {
                namespace: Some("team-a".into()),
                name: Some("keywarden-owner-ci".into()),
                resource_version: Some("7".into()),
                ..Default::default()
            },
            subjects: Some(vec![RbacSubject {
                kind: "User".into(),
                name: "alice".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let name = ObjectName::of(&listed);
        let gone: RoleBinding = name.placeholder();
        assert_eq!(gone.namespace().as_deref(), Some("team-a"));
        assert_eq!(gone.name_any(), "keywarden-owner-ci");
        assert_eq!(ObjectName::of(&gone), name);
        assert!(gone.subjects.is_none() && gone.resource_version().is_none());
    }

    #[test]
    fn only_rules_naming_the_scopes_group_or_every_group_matter() {
        assert!(names_scopes(&[rule(&["scopes.keywarden.io"])]));
        assert!(names_scopes(&[rule(&["*"])]));
        assert!(!names_scopes(&[rule(&["apps", ""])]));
    }

    #[test]
    fn a_binding_to_a_scope_role_touches_its_subjects_in_its_namespace() {
        let view = RbacView::default();
        let role = cluster_role("logs-viewer");
        assert!(view
            .apply_role(role.clone(), Some((&[rule(&[SCOPES_GROUP])], "1".into())))
            .is_empty());
        let alice = Subject::User("alice".into());
        let (id, b) = binding(Some("team-a"), role, std::slice::from_ref(&alice), "2");
        assert_eq!(
            view.apply_binding(id, Some(b)),
            vec![(alice, Some("team-a".to_string()))]
        );
    }

    #[test]
    fn a_binding_to_an_unrelated_role_touches_nobody() {
        let view = RbacView::default();
        let role = cluster_role("pod-reader");
        view.apply_role(role.clone(), Some((&[rule(&[""])], "1".into())));
        let (id, b) = binding(None, role, &[Subject::User("alice".into())], "2");
        assert!(view.apply_binding(id, Some(b)).is_empty());
    }

    #[test]
    fn the_digest_changes_with_the_owners_grants_only() {
        let view = RbacView::default();
        let role = cluster_role("logs-viewer");
        view.apply_role(role.clone(), Some((&[rule(&[SCOPES_GROUP])], "1".into())));
        let groups = vec!["team".to_string()];
        let before = view.digest("alice", &groups, "team-a");
        let (id, b) = binding(None, role.clone(), &[Subject::User("bob".into())], "2");
        view.apply_binding(id, Some(b));
        assert_eq!(
            view.digest("alice", &groups, "team-a"),
            before,
            "bob's binding"
        );
        let (id, b) = binding(
            Some("team-a"),
            role.clone(),
            &[Subject::Group("team".into())],
            "3",
        );
        view.apply_binding(id.clone(), Some(b));
        let granted = view.digest("alice", &groups, "team-a");
        assert_ne!(granted, before, "a binding of alice's group");
        assert_eq!(
            view.digest("alice", &groups, "team-b"),
            before,
            "another namespace"
        );
        view.apply_role(role, Some((&[rule(&[SCOPES_GROUP])], "4".into())));
        assert_ne!(
            view.digest("alice", &groups, "team-a"),
            granted,
            "the role changed"
        );
        view.apply_binding(id, None);
        assert_eq!(view.digest("alice", &groups, "team-a"), before);
    }

    #[test]
    fn service_account_subjects_are_their_usernames() {
        let subject = RbacSubject {
            kind: "ServiceAccount".into(),
            name: "ci".into(),
            ..RbacSubject::default()
        };
        assert_eq!(
            subjects_of(Some("team-a"), &[subject]),
            vec![Subject::User("system:serviceaccount:team-a:ci".into())]
        );
    }
}
