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

/// A shared string: namespaces, subjects and role names repeat across bindings.
type Name = Arc<str>;

/// A role or binding as the view keys it (`namespace` `None`: cluster-scoped).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Id {
    namespace: Option<Name>,
    name: Name,
}

/// A subject as the view keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Who {
    User(Name),
    Group(Name),
}

/// What the view keeps of a binding.
#[derive(Debug, PartialEq, Eq)]
struct Held {
    resource_version: Box<str>,
    role: Id,
    subjects: Box<[Who]>,
}

/// Which of the four watches an object comes from (see [`Inner::listing`]).
#[derive(Clone, Copy)]
enum Kind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl Kind {
    fn of_role(id: &RoleId) -> Self {
        if id.namespace.is_some() {
            Self::Role
        } else {
            Self::ClusterRole
        }
    }

    fn of_binding(id: &BindingId) -> Self {
        if id.namespace.is_some() {
            Self::RoleBinding
        } else {
            Self::ClusterRoleBinding
        }
    }

    fn holds(self, id: &Id) -> bool {
        match self {
            Self::Role | Self::RoleBinding => id.namespace.is_some(),
            Self::ClusterRole | Self::ClusterRoleBinding => id.namespace.is_none(),
        }
    }
}

// why: per RoleBinding (one per issued key, keywarden's owner access) the view kept ~0.9 KiB:
// its id three times over (as a key, in the subject index, in the watch's list of names),
// strings owned per copy and a hash set per subject. Ids and subjects are now shared strings,
// the subject index a vector, and a relist is told apart by an epoch instead of a name set.
#[derive(Default)]
struct Inner {
    /// Roles naming the scopes group (or `*`): resourceVersion and the list epoch they were
    /// last seen in.
    roles: HashMap<Id, (Box<str>, u32)>,
    /// Every binding, with the list epoch it was last seen in.
    bindings: HashMap<Id, (Held, u32)>,
    by_subject: HashMap<Who, Vec<Id>>,
    /// Shared copies of namespaces and subject names.
    names: HashSet<Name>,
    /// `names` held this many when it was last pruned.
    names_pruned_at: usize,
    /// The list epoch of each kind (see [`RbacView::begin_list`]).
    epochs: [u32; 4],
}

impl Inner {
    fn intern(&mut self, s: &str) -> Name {
        if let Some(name) = self.names.get(s) {
            return name.clone();
        }
        // why: names nobody holds any more (deleted namespaces, gone subjects) are dropped
        // once the set doubled since the last pruning: amortized constant.
        if self.names.len() >= 2 * self.names_pruned_at.max(512) {
            self.names.retain(|name| Arc::strong_count(name) > 1);
            self.names_pruned_at = self.names.len();
        }
        let name: Name = Arc::from(s);
        self.names.insert(name.clone());
        name
    }

    fn role_id(&mut self, role: &RoleId) -> Id {
        Id {
            namespace: role.namespace.as_deref().map(|ns| self.intern(ns)),
            name: Arc::from(role.name.as_str()),
        }
    }

    fn binding_id(&mut self, binding: &BindingId) -> Id {
        Id {
            namespace: binding.namespace.as_deref().map(|ns| self.intern(ns)),
            name: Arc::from(binding.name.as_str()),
        }
    }

    fn who(&mut self, subject: &Subject) -> Who {
        match subject {
            Subject::User(name) => Who::User(self.intern(name)),
            Subject::Group(name) => Who::Group(self.intern(name)),
        }
    }

    /// The compact form of `binding`, with id `id`.
    fn held(&mut self, id: &Id, binding: &Binding) -> Held {
        let role_namespace = binding.role.namespace.as_deref().map(|ns| self.intern(ns));
        // why: keywarden's owner-access binding and its role share their name.
        let role_name = if *id.name == *binding.role.name {
            id.name.clone()
        } else {
            Arc::from(binding.role.name.as_str())
        };
        Held {
            resource_version: binding.resource_version.as_str().into(),
            role: Id {
                namespace: role_namespace,
                name: role_name,
            },
            subjects: binding.subjects.iter().map(|s| self.who(s)).collect(),
        }
    }

    fn touched_by_role(&self, role: &Id) -> Touched {
        self.bindings
            .iter()
            .filter(|(_, (b, _))| &b.role == role)
            .flat_map(|(id, (b, _))| touched_by(id, b))
            .collect()
    }

    fn set_role(&mut self, role: &RoleId, relevant_version: Option<String>) -> Touched {
        let epoch = self.epochs[Kind::of_role(role) as usize];
        let id = self.role_id(role);
        let old = match relevant_version {
            Some(version) => self
                .roles
                .insert(id.clone(), (version.as_str().into(), epoch))
                .map(|(v, _)| *v != *version),
            None => self.roles.remove(&id).map(|_| true),
        };
        let newly_relevant = old.is_none() && self.roles.contains_key(&id);
        if old == Some(true) || newly_relevant {
            self.touched_by_role(&id)
        } else {
            Vec::new()
        }
    }

    fn set_binding(&mut self, binding_id: &BindingId, binding: Option<&Binding>) -> Touched {
        let epoch = self.epochs[Kind::of_binding(binding_id) as usize];
        let id = self.binding_id(binding_id);
        let new = binding.map(|b| self.held(&id, b));
        if let (Some((old, seen)), Some(new)) = (self.bindings.get_mut(&id), &new) {
            if old == new {
                *seen = epoch;
                return Vec::new();
            }
        }
        let old = self.bindings.remove(&id).map(|(old, _)| old);
        self.replace_binding(id, old, new.map(|new| (new, epoch)))
    }

    /// Swaps binding `id`'s old state for its new one in the indexes; the owners touched.
    fn replace_binding(&mut self, id: Id, old: Option<Held>, new: Option<(Held, u32)>) -> Touched {
        let mut touched = Vec::new();
        if let Some(old) = &old {
            for subject in old.subjects.iter() {
                if let Some(ids) = self.by_subject.get_mut(subject) {
                    ids.retain(|held| *held != id);
                    if ids.is_empty() {
                        self.by_subject.remove(subject);
                    } else if ids.capacity() > 2 * ids.len() {
                        ids.shrink_to_fit();
                    }
                }
            }
            if self.roles.contains_key(&old.role) {
                touched.extend(touched_by(&id, old));
            }
        }
        if let Some((new, epoch)) = new {
            for subject in new.subjects.iter() {
                let ids = self.by_subject.entry(subject.clone()).or_default();
                // why: most subjects have one binding; a vector grows to four at once.
                ids.reserve_exact(1);
                ids.push(id.clone());
            }
            if self.roles.contains_key(&new.role) {
                touched.extend(touched_by(&id, &new));
            }
            self.bindings.insert(id, (new, epoch));
        }
        touched
    }

    /// Removes what a completed list of `kind` did not show; the owners touched.
    fn end_list(&mut self, kind: Kind) -> Touched {
        let epoch = self.epochs[kind as usize];
        let mut touched = Vec::new();
        if matches!(kind, Kind::Role | Kind::ClusterRole) {
            let gone: Vec<Id> = self
                .roles
                .iter()
                .filter(|(id, (_, seen))| kind.holds(id) && *seen != epoch)
                .map(|(id, _)| id.clone())
                .collect();
            for id in gone {
                self.roles.remove(&id);
                touched.extend(self.touched_by_role(&id));
            }
            return touched;
        }
        let gone: Vec<Id> = self
            .bindings
            .iter()
            .filter(|(id, (_, seen))| kind.holds(id) && *seen != epoch)
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let old = self.bindings.remove(&id).map(|(old, _)| old);
            touched.extend(self.replace_binding(id, old, None));
        }
        self.bindings.shrink_to_fit();
        self.by_subject.shrink_to_fit();
        touched
    }
}

/// The owners a binding grants to, with the namespace its grant is confined to.
fn touched_by(id: &Id, binding: &Held) -> Touched {
    binding
        .subjects
        .iter()
        .map(|who| {
            let subject = match who {
                Who::User(name) => Subject::User(name.to_string()),
                Who::Group(name) => Subject::Group(name.to_string()),
            };
            (subject, id.namespace.as_deref().map(str::to_owned))
        })
        .collect()
}

impl RbacView {
    /// Records a Role or ClusterRole (`None`: deleted); returns the owners it may touch.
    pub fn apply_role(&self, role: RoleId, rules: Option<(&[PolicyRule], String)>) -> Touched {
        let relevant = rules.and_then(|(rules, version)| names_scopes(rules).then_some(version));
        lock(&self.inner).set_role(&role, relevant)
    }

    /// Records a RoleBinding or ClusterRoleBinding (`None`: deleted); returns the owners it
    /// may touch.
    pub fn apply_binding(&self, id: BindingId, binding: Option<Binding>) -> Touched {
        lock(&self.inner).set_binding(&id, binding.as_ref())
    }

    /// A new list of `kind`'s objects starts: what it does not show is removed at its end.
    fn begin_list(&self, kind: Kind) {
        let mut inner = lock(&self.inner);
        let epoch = &mut inner.epochs[kind as usize];
        *epoch = epoch.wrapping_add(1);
    }

    /// The list of `kind` is complete: removes what it did not show; the owners touched.
    fn end_list(&self, kind: Kind) -> Touched {
        lock(&self.inner).end_list(kind)
    }

    /// Digest of the RBAC that can grant scopes to `username` in `groups` in `namespace`:
    /// every binding naming them (cluster-wide, or in `namespace`) to a role naming scopes,
    /// with both resourceVersions. Equal digests mean an equal view.
    pub fn digest(&self, username: &str, groups: &[String], namespace: &str) -> String {
        let inner = lock(&self.inner);
        let subjects = std::iter::once(Who::User(Arc::from(username)))
            .chain(groups.iter().map(|g| Who::Group(Arc::from(g.as_str()))));
        let bindings: BTreeSet<&Id> = subjects
            .filter_map(|s| inner.by_subject.get(&s))
            .flatten()
            .filter(|id| id.namespace.as_deref().is_none_or(|ns| ns == namespace))
            .collect();
        let mut hasher = Sha256::new();
        for id in bindings {
            let Some((binding, _)) = inner.bindings.get(id) else {
                continue;
            };
            let Some((role_version, _)) = inner.roles.get(&binding.role) else {
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
// why: hash lookups per key, not a pass over `touched` per key: the first list after a restart
// touches every owner, and 10,000 keys against 10,000 touched subjects were 10^8 comparisons.
pub fn keys_touched<K: KeyView>(
    keys: &[Arc<K>],
    touched: &Touched,
    owner_groups: impl Fn(&K) -> Vec<String>,
) -> Vec<ObjectRef<K>> {
    if touched.is_empty() {
        return Vec::new();
    }
    let touched: HashSet<(&Subject, Option<&str>)> = touched
        .iter()
        .map(|(subject, scope)| (subject, scope.as_deref()))
        .collect();
    let names = |subject: &Subject, namespace: &str| {
        touched.contains(&(subject, None)) || touched.contains(&(subject, Some(namespace)))
    };
    let any_group = touched
        .iter()
        .any(|(subject, _)| matches!(subject, Subject::Group(_)));
    keys.iter()
        .filter(|key| {
            let namespace = key.namespace().unwrap_or_default();
            let user = Subject::User(key.owner().username(&namespace));
            names(&user, &namespace)
                || (any_group
                    && owner_groups(key)
                        .into_iter()
                        .any(|group| names(&Subject::Group(group), &namespace)))
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
            Kind::Role,
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
            Kind::ClusterRole,
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
            Kind::RoleBinding,
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
            Kind::ClusterRoleBinding,
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
/// touched; a relist also removes the objects of `kind` it no longer lists.
fn spawn_watch<K>(
    api: Api<K>,
    (view, synced, touched, bit): (
        Arc<RbacView>,
        Arc<watch::Sender<u16>>,
        mpsc::UnboundedSender<Touched>,
        u16,
    ),
    kind: Kind,
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
        let mut first_list = true;
        let mut stream = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            let changes = match event {
                watcher::Event::Apply(obj) => apply(&view, &obj, false),
                watcher::Event::Delete(obj) => apply(&view, &obj, true),
                watcher::Event::Init => {
                    view.begin_list(kind);
                    Vec::new()
                }
                // why: applied as listed rather than buffered until the list ends; the view
                // only gains what the API now shows, and what the list no longer shows goes
                // at its end, as before.
                watcher::Event::InitApply(obj) => {
                    let changes = apply(&view, &obj, false);
                    // why: before the first list ends no key has been reconciled (reconciles
                    // wait for every cache), so what the first list adds touches nobody yet;
                    // at 100,000 keys it would otherwise re-trigger every key once more.
                    if first_list {
                        Vec::new()
                    } else {
                        changes
                    }
                }
                watcher::Event::InitDone => {
                    let changes = view.end_list(kind);
                    first_list = false;
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
    fn touched_owners_select_their_keys_by_user_group_and_namespace() {
        use crate::api::OwnerKind;
        let key = |name: &str, namespace: &str, kind: OwnerKind, owner: &str, groups: &[&str]| {
            let mut key = crate::controller::tests::key();
            key.metadata.name = Some(name.into());
            key.metadata.namespace = Some(namespace.into());
            key.spec.owner.kind = kind;
            key.spec.owner.name = owner.into();
            key.spec.owner_groups = groups.iter().map(|g| g.to_string()).collect();
            Arc::new(key)
        };
        let keys = [
            key("alice-a", "team-a", OwnerKind::User, "alice", &["devs"]),
            key("alice-b", "team-b", OwnerKind::User, "alice", &[]),
            key("bob-a", "team-a", OwnerKind::User, "bob", &["ops"]),
            key("ci-a", "team-a", OwnerKind::ServiceAccount, "ci", &[]),
        ];
        let selected = |touched: Touched| {
            let mut names: Vec<String> = keys_touched(
                &keys,
                &touched,
                crate::controller::scopes_held::owner_groups,
            )
            .into_iter()
            .map(|r| r.name)
            .collect();
            names.sort();
            names
        };
        let user = |name: &str| Subject::User(name.into());
        let group = |name: &str| Subject::Group(name.into());
        assert_eq!(
            selected(vec![(user("alice"), None)]),
            ["alice-a", "alice-b"]
        );
        assert_eq!(
            selected(vec![(user("alice"), Some("team-b".into()))]),
            ["alice-b"]
        );
        assert_eq!(selected(vec![(group("devs"), None)]), ["alice-a"]);
        assert_eq!(
            selected(vec![(group("devs"), Some("team-b".into()))]),
            Vec::<String>::new()
        );
        assert_eq!(
            selected(vec![(
                user("system:serviceaccount:team-a:ci"),
                Some("team-a".into())
            )]),
            ["ci-a"]
        );
        assert_eq!(
            selected(vec![(group("system:serviceaccounts:team-a"), None)]),
            ["ci-a"]
        );
        assert_eq!(
            selected(vec![(group("system:authenticated"), Some("team-a".into()))]),
            ["alice-a", "bob-a", "ci-a"]
        );
        assert_eq!(selected(vec![(user("carol"), None)]), Vec::<String>::new());
        assert_eq!(selected(Vec::new()), Vec::<String>::new());
    }

    #[test]
    fn a_relist_removes_what_it_no_longer_shows_and_touches_its_subjects() {
        let view = RbacView::default();
        let role = cluster_role("logs-viewer");
        let alice = Subject::User("alice".into());
        view.begin_list(Kind::ClusterRole);
        view.apply_role(role.clone(), Some((&[rule(&[SCOPES_GROUP])], "1".into())));
        assert!(view.end_list(Kind::ClusterRole).is_empty());
        view.begin_list(Kind::RoleBinding);
        let (id, b) = binding(
            Some("team-a"),
            role.clone(),
            std::slice::from_ref(&alice),
            "2",
        );
        view.apply_binding(id.clone(), Some(b.clone()));
        let (other, b2) = binding(
            Some("team-b"),
            role.clone(),
            std::slice::from_ref(&alice),
            "3",
        );
        view.apply_binding(other.clone(), Some(b2.clone()));
        assert!(view.end_list(Kind::RoleBinding).is_empty());
        let granted = view.digest("alice", &[], "team-a");

        view.begin_list(Kind::RoleBinding);
        view.apply_binding(other, Some(b2));
        assert_eq!(
            view.end_list(Kind::RoleBinding),
            vec![(alice.clone(), Some("team-a".to_string()))],
            "the binding the relist no longer shows is gone, and its subject touched"
        );
        assert_ne!(view.digest("alice", &[], "team-a"), granted);
        assert!(
            view.digest("alice", &[], "team-b")
                != RbacView::default().digest("alice", &[], "team-b")
        );

        view.begin_list(Kind::ClusterRoleBinding);
        assert!(
            view.end_list(Kind::ClusterRoleBinding).is_empty(),
            "another kind's list removes no RoleBinding"
        );
        view.begin_list(Kind::ClusterRole);
        assert_eq!(
            view.end_list(Kind::ClusterRole),
            vec![(alice, Some("team-b".to_string()))],
            "a role gone from the list touches its bindings' subjects"
        );
        assert_eq!(
            view.digest("alice", &[], "team-b"),
            RbacView::default().digest("alice", &[], "team-b")
        );
    }

    #[test]
    fn an_unchanged_binding_relisted_touches_nobody_and_stays() {
        let view = RbacView::default();
        let role = cluster_role("logs-viewer");
        view.apply_role(role.clone(), Some((&[rule(&[SCOPES_GROUP])], "1".into())));
        let (id, b) = binding(None, role, &[Subject::Group("team".into())], "2");
        view.apply_binding(id.clone(), Some(b.clone()));
        let digest = view.digest("alice", &["team".into()], "team-a");
        view.begin_list(Kind::ClusterRoleBinding);
        assert!(view.apply_binding(id, Some(b)).is_empty());
        assert!(view.end_list(Kind::ClusterRoleBinding).is_empty());
        assert_eq!(view.digest("alice", &["team".into()], "team-a"), digest);
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
