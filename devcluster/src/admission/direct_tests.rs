//! Expressions evaluated without `cel` decide as `cel` does, or leave the decision to it.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube_cel::cel::Value as Cel;
use serde_json::{json, Value};

use super::direct::{Direct, Env};
use super::environment::{map, root, scope, to_cel, Expression};
use super::matching::Matched;
use super::reads::Reads;
use super::{authz, messages, AdmissionRequest, Operation};
use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::ResourceType;

/// Allows `create` of ConfigMaps in `team-a` for group `team-a`, and nothing else.
struct TeamWriter;

impl Authorizer for TeamWriter {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        let allowed = attributes.user.groups.iter().any(|group| group == "team-a")
            && attributes.verb == "create"
            && attributes.api_group.is_empty()
            && attributes.resource == "configmaps"
            && attributes.subresource.is_empty()
            && attributes.namespace == "team-a";
        match allowed {
            true => Decision::Allow("team writer".into()),
            false => Decision::NoOpinion("".into()),
        }
    }
}

fn config_maps() -> ResourceType {
    crate::builtin::builtin_types()
        .into_iter()
        .find(|rt| rt.kind == "ConfigMap" && rt.group.is_empty())
        .expect("ConfigMaps are built in")
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        username: name.into(),
        uid: format!("{name}-uid"),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        extra: BTreeMap::new(),
    }
}

fn config_map(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": name, "namespace": "team-a",
            "labels": { "env": "prod" }, "finalizers": ["keep", "audit"],
        },
        "data": { "key": "value" },
    })
}

/// What `cel` gives for `source` on `request`, with every variable bound whole.
fn by_cel(
    source: &str,
    request: &AdmissionRequest<'_>,
    authorizer: &Arc<dyn Authorizer>,
) -> Result<Cel, String> {
    let requested = Matched::of(request.rt);
    let variables = [
        ("object", request.object.map_or(Cel::Null, to_cel)),
        ("oldObject", request.old_object.map_or(Cel::Null, to_cel)),
        (
            "request",
            messages::request_value(request, &requested, "uid", &Reads::All),
        ),
        (
            "authorizer",
            authz::authorizer_variable(authorizer, request.user, request),
        ),
    ];
    let context = scope(root(), variables);
    Expression::compile(source).evaluate(&context, &map(Vec::new()))
}

/// What the direct evaluation gives, `None` when the source has no direct shape or the
/// evaluation leaves it to `cel`.
fn directly(
    source: &str,
    request: &AdmissionRequest<'_>,
    authorizer: &Arc<dyn Authorizer>,
) -> Option<bool> {
    let expression = Expression::compile(source);
    let direct: &Direct = expression.direct.as_ref()?;
    direct.decide(&Env::new(request, authorizer))
}

/// (source, whether it is decided directly on the create of `cm` by `alice` in team-a)
const CASES: &[(&str, bool)] = &[
    // devcluster bench's policies
    ("!object.metadata.name.startsWith('forbidden-')", true),
    ("request.userInfo.username != 'system:anonymous'", true),
    (
        "authorizer.group('').resource('configmaps').namespace(request.namespace).check('create').allowed()",
        true,
    ),
    (
        "authorizer.group('').resource('configmaps').namespace('other').namespace(request.namespace).check('create').allowed()",
        true,
    ),
    (
        "authorizer.group('').resource('configmaps').subresource('status').namespace('team-a').name('cm').check('create').allowed()",
        true,
    ),
    ("authorizer.group('').resource(' ').check('create').allowed()", false),
    ("authorizer.group('').resource('configmaps').check(1).allowed()", false),
    ("has(object.metadata.labels) && object.metadata.labels.env == 'prod'", true),
    ("has(object.spec)", true),
    ("'env' in object.metadata.labels", true),
    ("'audit' in object.metadata.finalizers", true),
    ("'team-a' in request.userInfo.groups", true),
    ("object.data.key.contains('al') || object.data.key.endsWith('ue')", true),
    ("object.data.key.startsWith('x') == false", true),
    ("request.operation == 'CREATE' && request.name == 'cm' && request.subResource == ''", true),
    ("request.dryRun == false && request.userInfo.uid != ''", true),
    ("false && object.metadata.missing == 'x'", true),
    ("true || object.metadata.missing == 'x'", true),
    ("!(object.metadata.name == 'cm') || false", true),
    ("object.metadata.name == oldObject.metadata.name", false),
    ("!has(oldObject.data) || !('locked' in oldObject.data)", true),
    ("has(oldObject.metadata)", true),
    ("has(object.metadata.name.x)", true),
    ("object.metadata.name.x == false", true),
    ("oldObject.metadata.name == 'cm'", false),
    ("!has(object.data) || !('locked' in object.data)", true),
    ("object.metadata.missing == 'x'", false),
    ("object.metadata.missing == 'x' || true", false),
    ("object.metadata.name == 1", false),
    ("object.metadata.name", false),
    ("object.metadata.name.size() > 1", false),
    ("request.kind.kind == 'ConfigMap'", false),
    ("request.userInfo.extra == {}", false),
    ("object.metadata.labels.exists(k, k == 'env')", false),
    ("!object.metadata.name", false),
];

#[test]
fn direct_evaluation_agrees_with_cel_or_leaves_it_to_cel() {
    let rt = config_maps();
    let authorizer: Arc<dyn Authorizer> = Arc::new(TeamWriter);
    let users = [
        user("alice", &["team-a", "system:authenticated"]),
        user("system:anonymous", &["system:unauthenticated"]),
    ];
    let objects = [config_map("cm"), config_map("forbidden-cm")];
    let old = config_map("cm");
    for (source, decided_on_first) in CASES {
        for (u, user) in users.iter().enumerate() {
            for (o, object) in objects.iter().enumerate() {
                for operation in [Operation::Create, Operation::Update] {
                    let request = AdmissionRequest {
                        operation,
                        rt: &rt,
                        namespace: "team-a",
                        name: object["metadata"]["name"].as_str().unwrap_or_default(),
                        subresource: "",
                        object: Some(object),
                        old_object: (operation == Operation::Update).then_some(&old),
                        user,
                        dry_run: false,
                    };
                    let direct = directly(source, &request, &authorizer);
                    let first = u == 0 && o == 0 && operation == Operation::Create;
                    if first {
                        assert_eq!(
                            direct.is_some(),
                            *decided_on_first,
                            "{source}: decided directly"
                        );
                    }
                    if let Some(decided) = direct {
                        assert_eq!(
                            by_cel(source, &request, &authorizer),
                            Ok(Cel::Bool(decided)),
                            "{source} as {} on {} ({operation:?})",
                            user.username,
                            request.name
                        );
                    }
                }
            }
        }
    }
}
