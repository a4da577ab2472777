//! Policy evaluation against a store, with an authorizer that answers from a table.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::{decide, AdmissionRequest, Denial, Operation, Verdict};
use crate::auth::{Attributes, Authorizer, Decision, UserInfo};
use crate::registry::ResourceType;
use crate::store::{storage_key, Store, WriteContext};

/// Allows exactly the listed `(user, verb, group, resource, subresource, namespace, name,
/// path)` tuples; records every question.
#[derive(Default)]
struct TableAuthorizer {
    allowed: Vec<Attributes>,
    asked: Mutex<Vec<Attributes>>,
}

impl Authorizer for TableAuthorizer {
    fn authorize(&self, attributes: &Attributes) -> Decision {
        self.asked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(attributes.clone());
        if self.allowed.contains(attributes) {
            Decision::Allow("allowed by the table".into())
        } else {
            Decision::NoOpinion("not in the table".into())
        }
    }
}

fn builtin(kind: &str, group: &str) -> ResourceType {
    crate::builtin::builtin_types()
        .into_iter()
        .find(|rt| rt.kind == kind && rt.group == group)
        .expect("builtin kind")
}

fn alice() -> UserInfo {
    UserInfo {
        username: "alice".into(),
        uid: "alice-uid".into(),
        groups: vec!["team-a".into(), "system:authenticated".into()],
        extra: BTreeMap::from([("scopes".to_string(), vec!["read".to_string()])]),
    }
}

/// A store with namespace `team-a` (labelled `env: prod`) and the given policy and binding.
struct Fixture {
    store: Store,
}

impl Fixture {
    fn new(policy_spec: Value, binding_spec: Value) -> Self {
        let fixture = Self {
            store: Store::new(1000),
        };
        fixture.put(
            "Namespace",
            "",
            json!({ "metadata": { "name": "team-a", "labels": { "env": "prod" } } }),
        );
        fixture.put(
            "ValidatingAdmissionPolicy",
            "admissionregistration.k8s.io",
            json!({ "metadata": { "name": "p" }, "spec": policy_spec }),
        );
        let mut binding_spec = binding_spec;
        binding_spec["policyName"] = json!("p");
        fixture.put(
            "ValidatingAdmissionPolicyBinding",
            "admissionregistration.k8s.io",
            json!({ "metadata": { "name": "b" }, "spec": binding_spec }),
        );
        fixture
    }

    fn put(&self, kind: &str, group: &str, mut obj: Value) {
        let rt = builtin(kind, group);
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let namespace = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ctx = WriteContext {
            now: "2026-01-01T00:00:00Z".into(),
            ..WriteContext::default()
        };
        self.store
            .lock()
            .create(&rt, &storage_key(&rt), &namespace, obj, &ctx)
            .expect("stored");
    }

    /// The verdict on creating `object` of `rt` in `team-a` as `user`.
    fn create(
        &self,
        rt: &ResourceType,
        object: &Value,
        user: &UserInfo,
        authorizer: Arc<dyn Authorizer>,
    ) -> Verdict {
        self.create_in("team-a", rt, object, user, authorizer)
    }

    /// The verdict on creating `object` of `rt` in `namespace` (empty: cluster-scoped).
    fn create_in(
        &self,
        namespace: &str,
        rt: &ResourceType,
        object: &Value,
        user: &UserInfo,
        authorizer: Arc<dyn Authorizer>,
    ) -> Verdict {
        let request = AdmissionRequest {
            operation: Operation::Create,
            rt,
            namespace,
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            subresource: "",
            object: Some(object),
            old_object: None,
            user,
            dry_run: true,
        };
        decide(&self.store.lock(), &authorizer, &request)
    }
}

fn config_maps_rule() -> Value {
    json!({ "resourceRules": [{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"],
    }]})
}

fn config_map(name: &str) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": name, "namespace": "team-a" } })
}

fn deny(message: &str) -> Denial {
    Denial {
        policy: "p".into(),
        binding: Some("b".into()),
        message: message.into(),
        reason: None,
    }
}

fn nobody() -> Arc<dyn Authorizer> {
    Arc::new(TableAuthorizer::default())
}

#[test]
fn request_variable_carries_operation_user_and_resource() {
    let checks = [
        "request.operation == 'CREATE'",
        "request.name == 'cm' && request.namespace == 'team-a' && request.subResource == ''",
        "request.userInfo.username == 'alice' && request.userInfo.uid == 'alice-uid'",
        "'team-a' in request.userInfo.groups && request.userInfo.extra.scopes == ['read']",
        "request.dryRun",
        "request.kind.kind == 'ConfigMap' && request.kind.version == 'v1' && request.kind.group == ''",
        "request.resource.resource == 'configmaps' && request.requestResource.resource == 'configmaps'",
        "oldObject == null && object.metadata.name == 'cm'",
        "namespaceObject.metadata.labels.env == 'prod' && !has(namespaceObject.metadata.managedFields)",
        "params == null",
    ];
    let validations: Vec<Value> = checks.iter().map(|c| json!({ "expression": c })).collect();
    let fixture = Fixture::new(
        json!({ "matchConstraints": config_maps_rule(), "validations": validations }),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials, vec![]);
}

#[test]
fn authz_library_asks_with_every_attribute_and_reads_the_decision() {
    let allowed = Attributes {
        user: Arc::new(alice()),
        verb: "get".into(),
        resource_request: true,
        api_group: "apps".into(),
        api_version: "*".into(),
        resource: "deployments".into(),
        subresource: "scale".into(),
        namespace: "prod".into(),
        name: "web".into(),
        path: String::new(),
    };
    let authorizer = Arc::new(TableAuthorizer {
        allowed: vec![allowed.clone()],
        asked: Mutex::default(),
    });
    let fixture = Fixture::new(
        json!({ "matchConstraints": config_maps_rule(), "validations": [
            { "expression": "authorizer.group('apps').resource('deployments').subresource('scale').namespace('prod').name('web').check('get').allowed()" },
            { "expression": "authorizer.group('apps').resource('deployments').check('get').reason() == 'not in the table'" },
            { "expression": "!authorizer.group('apps').resource('deployments').check('get').errored() && authorizer.group('').resource('pods').check('get').error() == ''" },
            { "expression": "!authorizer.requestResource.check('create').allowed()" },
            { "expression": "!authorizer.serviceAccount('team-a', 'robot').path('/healthz').check('get').allowed()" },
        ]}),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        authorizer.clone(),
    );
    assert_eq!(verdict.denials, vec![]);
    let asked = authorizer.asked.lock().unwrap_or_else(|p| p.into_inner());
    assert_eq!(asked[0], allowed);
    let request_resource = asked
        .iter()
        .find(|a| a.verb == "create")
        .expect("requestResource checked");
    assert_eq!(
        (
            request_resource.api_group.as_str(),
            request_resource.resource.as_str(),
            request_resource.namespace.as_str(),
            request_resource.name.as_str()
        ),
        ("", "configmaps", "team-a", "cm")
    );
    let path = asked
        .iter()
        .find(|a| !a.resource_request)
        .expect("path checked");
    assert_eq!(path.path, "/healthz");
    assert_eq!(path.user.username, "system:serviceaccount:team-a:robot");
    assert_eq!(
        path.user.groups,
        vec!["system:serviceaccounts", "system:serviceaccounts:team-a"]
    );
}

#[test]
fn invalid_service_account_names_are_evaluation_errors() {
    let fixture = Fixture::new(
        json!({ "matchConstraints": config_maps_rule(), "validations": [
            { "expression": "authorizer.serviceAccount('team-a', 'Not_Valid').group('').resource('pods').check('get').allowed()" },
        ]}),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials.len(), 1);
    assert!(
        verdict.denials[0]
            .message
            .contains("Invalid service account name"),
        "{}",
        verdict.denials[0].message
    );
}

#[test]
fn warn_and_audit_actions_report_without_denying() {
    let fixture = Fixture::new(
        json!({
            "matchConstraints": config_maps_rule(),
            "validations": [
                { "expression": "true" },
                { "expression": "object.metadata.name.size() < 3", "message": "short names only" },
            ],
            "auditAnnotations": [
                { "key": "who", "valueExpression": "request.userInfo.username" },
                { "key": "skipped", "valueExpression": "null" },
            ],
        }),
        json!({ "validationActions": ["Warn", "Audit"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("long"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials, vec![]);
    assert_eq!(
        verdict.warnings,
        vec!["Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': short names only"]
    );
    let failure: Value = serde_json::from_str(&verdict.audit_annotations[0].1).expect("json");
    assert_eq!(
        verdict.audit_annotations[0].0,
        "validation.policy.admission.k8s.io/validation_failure"
    );
    assert_eq!(
        failure,
        json!([{ "message": "short names only", "policy": "p", "binding": "b", "expressionIndex": 1, "validationActions": ["Warn", "Audit"] }])
    );
    assert_eq!(
        verdict.audit_annotations[1],
        ("p/who".to_string(), "alice".to_string())
    );
    assert_eq!(verdict.audit_annotations.len(), 2);
}

#[test]
fn a_failing_variable_fails_only_the_expressions_that_reach_it() {
    let fixture = Fixture::new(
        json!({
            "matchConstraints": config_maps_rule(),
            "variables": [
                { "name": "missing", "expression": "object.data.absent" },
                { "name": "name", "expression": "object.metadata.name" },
            ],
            "validations": [
                { "expression": "variables.name == 'cm'" },
                { "expression": "variables.name == 'cm' || variables.missing == 'x'" },
                { "expression": "variables.missing == 'x'" },
            ],
        }),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials.len(), 1);
    assert!(
        verdict.denials[0].message.starts_with(
            "expression 'variables.missing == 'x'' resulted in error: composited variable \"missing\" fails to evaluate: "
        ),
        "{}",
        verdict.denials[0].message
    );
}

#[test]
fn equivalent_match_policy_matches_the_other_events_api() {
    let rule = json!({ "resourceRules": [{
        "apiGroups": ["events.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["events"],
    }]});
    let event = json!({ "apiVersion": "v1", "kind": "Event", "metadata": { "name": "e", "namespace": "team-a" } });
    for (match_policy, denied) in [("Equivalent", true), ("Exact", false)] {
        let mut constraints = rule.clone();
        constraints["matchPolicy"] = json!(match_policy);
        let fixture = Fixture::new(
            json!({ "matchConstraints": constraints, "validations": [
                { "expression": "request.resource.group == ''", "message": "matched as events.k8s.io" },
            ]}),
            json!({ "validationActions": ["Deny"] }),
        );
        let verdict = fixture.create(&builtin("Event", ""), &event, &alice(), nobody());
        let expected = if denied {
            vec![deny("matched as events.k8s.io")]
        } else {
            vec![]
        };
        assert_eq!(verdict.denials, expected, "{match_policy}");
    }
}

#[test]
fn exclude_rules_and_object_selectors_narrow_the_match() {
    let fixture = Fixture::new(
        json!({
            "matchConstraints": {
                "resourceRules": config_maps_rule()["resourceRules"],
                "excludeResourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"], "operations": ["*"], "resources": ["configmaps"],
                    "resourceNames": ["excluded"],
                }],
                "objectSelector": { "matchExpressions": [{ "key": "tier", "operator": "In", "values": ["web"] }] },
            },
            "validations": [{ "expression": "false" }],
        }),
        json!({ "validationActions": ["Deny"] }),
    );
    let labelled = |name: &str| {
        let mut cm = config_map(name);
        cm["metadata"]["labels"] = json!({ "tier": "web" });
        cm
    };
    let rt = builtin("ConfigMap", "");
    let denied = fixture.create(&rt, &labelled("web"), &alice(), nobody());
    assert_eq!(denied.denials, vec![deny("failed expression: false")]);
    assert!(fixture
        .create(&rt, &labelled("excluded"), &alice(), nobody())
        .denials
        .is_empty());
    assert!(fixture
        .create(&rt, &config_map("unlabelled"), &alice(), nobody())
        .denials
        .is_empty());
}

#[test]
fn match_condition_errors_follow_the_failure_policy() {
    for (failure_policy, denied) in [("Fail", true), ("Ignore", false)] {
        let fixture = Fixture::new(
            json!({
                "failurePolicy": failure_policy,
                "matchConstraints": config_maps_rule(),
                "matchConditions": [{ "name": "broken", "expression": "object.data.absent == 'x'" }],
                "validations": [{ "expression": "true" }],
            }),
            json!({ "validationActions": ["Deny"] }),
        );
        let verdict = fixture.create(
            &builtin("ConfigMap", ""),
            &config_map("cm"),
            &alice(),
            nobody(),
        );
        assert_eq!(
            verdict.denials.len(),
            usize::from(denied),
            "{failure_policy}"
        );
    }
}

#[test]
fn map_macros_iterate_keys_and_in_tests_membership() {
    use super::environment::{map, root, scope, to_cel, Expression};
    let context = scope(
        root(),
        [
            (
                "object",
                to_cel(&json!({ "status": { "lastUsedAt": "t2", "phase": "Active" } })),
            ),
            (
                "oldObject",
                to_cel(&json!({ "status": { "lastUsedAt": "t1", "phase": "Active" } })),
            ),
        ],
    );
    let variables = map(Vec::new());
    let only_last_used_changed = "oldObject.status.all(k, k == 'lastUsedAt' || (k in object.status && object.status[k] == oldObject.status[k])) && object.status.all(k, k == 'lastUsedAt' || k in oldObject.status)";
    assert_eq!(
        Expression::compile(only_last_used_changed).evaluate(&context, &variables),
        Ok(kube_cel::cel::Value::Bool(true))
    );
    let phase_changed = only_last_used_changed.replace("'lastUsedAt'", "'other'");
    assert_eq!(
        Expression::compile(&phase_changed).evaluate(&context, &variables),
        Ok(kube_cel::cel::Value::Bool(false))
    );
}

#[test]
fn params_in_the_wrong_scope_are_binding_configuration_errors() {
    let namespaces_rule = json!({ "resourceRules": [{
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["namespaces"],
    }]});
    let cases = [
        (
            json!({ "apiVersion": "v1", "kind": "ConfigMap" }),
            json!({ "name": "limits", "parameterNotFoundAction": "Deny" }),
            "failed to configure binding: cannot use namespaced paramRef in policy binding that matches cluster-scoped resources",
        ),
        (
            json!({ "apiVersion": "v1", "kind": "Namespace" }),
            json!({ "name": "team-a", "namespace": "team-a", "parameterNotFoundAction": "Deny" }),
            "failed to configure binding: paramRef.namespace must not be provided for a cluster-scoped `paramKind`",
        ),
    ];
    for (param_kind, param_ref, message) in cases {
        let fixture = Fixture::new(
            json!({ "paramKind": param_kind, "matchConstraints": namespaces_rule, "validations": [{ "expression": "true" }] }),
            json!({ "validationActions": ["Deny"], "paramRef": param_ref }),
        );
        let namespace =
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "new" } });
        let verdict = fixture.create_in(
            "",
            &builtin("Namespace", ""),
            &namespace,
            &alice(),
            nobody(),
        );
        assert_eq!(verdict.denials, vec![deny(message)]);
    }
}

#[test]
fn only_the_paths_expressions_reach_are_bound_and_any_other_use_binds_all() {
    use super::reads::{collect, Reads};
    use std::collections::{BTreeMap, HashMap};
    fn fields<const N: usize>(entries: [(&str, Reads); N]) -> Reads {
        Reads::Fields(
            entries
                .into_iter()
                .map(|(name, reads)| (name.to_string(), reads))
                .collect::<BTreeMap<_, _>>(),
        )
    }
    let cases = [
        (
            "request.userInfo.username == 'x' && request.namespace == 'y'",
            "request",
            fields([
                ("namespace", Reads::All),
                ("userInfo", fields([("username", Reads::All)])),
            ]),
        ),
        (
            "has(object.spec) && object.spec.size() > 0",
            "object",
            fields([("spec", Reads::All)]),
        ),
        (
            "has(object.spec.owner) && has(object.metadata.labels)",
            "object",
            fields([
                ("metadata", fields([("labels", Reads::Presence)])),
                ("spec", fields([("owner", Reads::Presence)])),
            ]),
        ),
        (
            "object.metadata.labels['app'] == 'x'",
            "object",
            fields([("metadata", fields([("labels", Reads::All)]))]),
        ),
        (
            "objects.size() > 0 && x.object.y == 1",
            "object",
            Reads::Nothing,
        ),
        ("'object' == 'request'", "object", Reads::Nothing),
        ("request['name'] == 'x'", "request", Reads::All),
        (
            "size(object.spec) > 0",
            "object",
            fields([("spec", Reads::All)]),
        ),
        ("'dryRun' in request", "request", Reads::All),
        ("[object].all(o, o.spec == 1)", "object", Reads::All),
        (
            "object.spec.items.all(i, i.name != object.metadata.name)",
            "object",
            fields([
                ("metadata", fields([("name", Reads::All)])),
                ("spec", fields([("items", Reads::All)])),
            ]),
        ),
        (
            "cel.bind(spec, object.spec, spec.a == spec.b)",
            "object",
            fields([("spec", Reads::All)]),
        ),
    ];
    for (source, variable, expected) in cases {
        let program = kube_cel::cel::Program::compile(source).expect(source);
        let mut reads = HashMap::new();
        collect(program.expression(), &["object", "request"], &mut reads);
        let found = reads.remove(variable).unwrap_or_default();
        assert_eq!(found, expected, "{source}");
    }
}

#[test]
fn has_on_a_field_only_tested_sees_it_present_whatever_it_holds() {
    let fixture = Fixture::new(
        json!({ "matchConstraints": config_maps_rule(), "validations": [
            { "expression": "has(object.metadata.namespace) && !has(object.metadata.labels) && has(object.metadata.name)" },
            { "expression": "object.metadata.name == 'cm' && !has(object.data)" },
            { "expression": "has(request.userInfo) && request.userInfo.username == 'alice'" },
        ] }),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials, vec![]);
}

#[test]
fn a_variable_used_whole_by_one_policy_is_whole_for_every_policy() {
    let fixture = Fixture::new(
        json!({ "matchConstraints": config_maps_rule(), "validations": [
            { "expression": "request.userInfo.username == 'alice'" },
            { "expression": "'options' in request && size(request) == 13" },
            { "expression": "object.metadata.name == 'cm' && object.all(k, k in ['apiVersion', 'kind', 'metadata'])" },
            { "expression": "size(object) == 3" },
        ] }),
        json!({ "validationActions": ["Deny"] }),
    );
    let verdict = fixture.create(
        &builtin("ConfigMap", ""),
        &config_map("cm"),
        &alice(),
        nobody(),
    );
    assert_eq!(verdict.denials, vec![]);
}

#[test]
fn a_written_policy_or_binding_applies_to_the_next_request() {
    let policy = |expression: &str| json!({ "matchConstraints": config_maps_rule(), "validations": [{ "expression": expression }] });
    let fixture = Fixture::new(policy("true"), json!({ "validationActions": ["Deny"] }));
    let rt = builtin("ConfigMap", "");
    let verdict = || fixture.create(&rt, &config_map("cm"), &alice(), nobody());
    assert_eq!(verdict().denials, vec![]);

    let policies = builtin("ValidatingAdmissionPolicy", "admissionregistration.k8s.io");
    let mut updated = (**fixture
        .store
        .lock()
        .get(&storage_key(&policies), "", "p")
        .expect("stored"))
    .clone();
    updated["spec"] = policy("object.metadata.name != 'cm'");
    let ctx = WriteContext {
        now: "2026-01-01T00:00:00Z".into(),
        ..WriteContext::default()
    };
    fixture
        .store
        .lock()
        .update(&policies, &storage_key(&policies), "", "p", updated, &ctx)
        .expect("updated");
    assert_eq!(
        verdict().denials,
        vec![deny("failed expression: object.metadata.name != 'cm'")],
        "the updated policy decides"
    );

    let bindings = builtin(
        "ValidatingAdmissionPolicyBinding",
        "admissionregistration.k8s.io",
    );
    fixture
        .store
        .lock()
        .delete(
            &bindings,
            &storage_key(&bindings),
            "",
            "b",
            &Default::default(),
        )
        .expect("deleted");
    assert_eq!(verdict().denials, vec![], "no binding, no policy");
}
