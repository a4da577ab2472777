//! Every built-in kind typed clients write, encoded with the generated upstream types, POSTed as
//! protobuf and read back as JSON: what kubectl's typed commands and helm's storage do.

#[path = "support/protobuf.rs"]
mod protobuf;

use std::collections::BTreeMap;

use devcluster::DevCluster;
use k8s_pb::api::admissionregistration::v1 as admission;
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::certificates::v1 as certificates;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::api::rbac::v1 as rbac;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{
    DeleteOptions, LabelSelector, MicroTime, Preconditions, Time,
};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use protobuf::{create, envelope, meta, s, send};
use serde_json::json;

async fn cluster() -> (DevCluster, kube::Client) {
    let cluster = DevCluster::start().await.expect("devcluster starts");
    let client = cluster.client().expect("client");
    (cluster, client)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn secrets_and_config_maps_keep_bytes_as_base64_and_string_data() {
    let (_cluster, client) = cluster().await;
    let secret = core::Secret {
        metadata: meta("release.v1", "default"),
        data: [("release".to_string(), b"\x00\x01binary".to_vec())].into(),
        string_data: [("note".to_string(), "plain".to_string())].into(),
        r#type: s("helm.sh/release.v1"),
        immutable: Some(false),
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/secrets",
        envelope("v1", "Secret", &secret),
    )
    .await;
    assert_eq!(created["type"], "helm.sh/release.v1");
    assert_eq!(
        created["data"],
        json!({"release": "AAFiaW5hcnk=", "note": "cGxhaW4="})
    );
    assert_eq!(created["immutable"], false);

    let config_map = core::ConfigMap {
        metadata: meta("settings", "default"),
        data: [("empty".to_string(), String::new())].into(),
        binary_data: [("blob".to_string(), vec![0, 1])].into(),
        immutable: None,
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/configmaps",
        envelope("v1", "ConfigMap", &config_map),
    )
    .await;
    assert_eq!(created["data"], json!({"empty": ""}));
    assert_eq!(created["binaryData"], json!({"blob": "AAE="}));
    assert!(created.get("immutable").is_none(), "{created}");
}

#[tokio::test]
async fn namespaces_and_service_accounts_keep_explicit_false() {
    let (_cluster, client) = cluster().await;
    let namespace = core::Namespace {
        metadata: meta("team-a", ""),
        spec: Some(core::NamespaceSpec::default()),
        status: Some(core::NamespaceStatus::default()),
    };
    let created = create(
        &client,
        "/api/v1/namespaces",
        envelope("v1", "Namespace", &namespace),
    )
    .await;
    assert_eq!(created["metadata"]["name"], "team-a");
    assert_eq!(created["status"]["phase"], "Active");

    let account = core::ServiceAccount {
        metadata: meta("builder", "team-a"),
        automount_service_account_token: Some(false),
        image_pull_secrets: vec![core::LocalObjectReference {
            name: s("registry"),
        }],
        ..Default::default()
    };
    let created = create(
        &client,
        "/api/v1/namespaces/team-a/serviceaccounts",
        envelope("v1", "ServiceAccount", &account),
    )
    .await;
    assert_eq!(created["automountServiceAccountToken"], false);
    assert_eq!(created["imagePullSecrets"], json!([{"name": "registry"}]));
}

#[tokio::test]
async fn services_and_pods_decode_int_or_string_quantities_and_inline_volume_sources() {
    let (_cluster, client) = cluster().await;
    let service = core::Service {
        metadata: meta("web", "default"),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: s("http"),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(1),
                    int_val: Some(0),
                    str_val: s("http-alt"),
                }),
                ..Default::default()
            }],
            selector: labels(&[("app", "web")]),
            r#type: s("ClusterIP"),
            ..Default::default()
        }),
        status: None,
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/services",
        envelope("v1", "Service", &service),
    )
    .await;
    assert_eq!(
        created["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "http-alt"}])
    );
    assert_eq!(created["spec"]["selector"], json!({"app": "web"}));

    let pod = core::Pod {
        metadata: meta("web-0", "default"),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("web"),
                image: s("nginx:1.27"),
                resources: Some(core::ResourceRequirements {
                    limits: [("memory".to_string(), Quantity { string: s("128Mi") })].into(),
                    ..Default::default()
                }),
                security_context: Some(core::SecurityContext {
                    run_as_user: Some(0),
                    ..Default::default()
                }),
                ports: vec![core::ContainerPort {
                    container_port: Some(8080),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            volumes: vec![core::Volume {
                name: s("scratch"),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource::default()),
                    ..Default::default()
                }),
            }],
            ..Default::default()
        }),
        status: None,
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/pods",
        envelope("v1", "Pod", &pod),
    )
    .await;
    let container = &created["spec"]["containers"][0];
    assert_eq!(
        container["resources"],
        json!({"limits": {"memory": "128Mi"}})
    );
    assert_eq!(container["securityContext"], json!({"runAsUser": 0}));
    assert_eq!(container["ports"], json!([{"containerPort": 8080}]));
    assert_eq!(
        created["spec"]["volumes"],
        json!([{"name": "scratch", "emptyDir": {}}])
    );
}

#[tokio::test]
async fn events_and_leases_render_times_and_micro_times() {
    let (_cluster, client) = cluster().await;
    let event = core::Event {
        metadata: meta("web.1", "default"),
        involved_object: Some(core::ObjectReference {
            kind: s("Pod"),
            name: s("web-0"),
            namespace: s("default"),
            ..Default::default()
        }),
        reason: s("Started"),
        first_timestamp: Some(Time {
            seconds: Some(1_767_225_600),
            nanos: Some(0),
        }),
        event_time: Some(MicroTime {
            seconds: Some(1_767_225_600),
            nanos: Some(123_456_000),
        }),
        last_timestamp: Some(Time::default()),
        count: Some(2),
        r#type: s("Normal"),
        ..Default::default()
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/events",
        envelope("v1", "Event", &event),
    )
    .await;
    assert_eq!(created["firstTimestamp"], "2026-01-01T00:00:00Z");
    assert_eq!(created["eventTime"], "2026-01-01T00:00:00.123456Z");
    assert!(created.get("lastTimestamp").is_none(), "{created}");
    assert_eq!(created["count"], 2);

    let lease = coordination::Lease {
        metadata: meta("leader", "default"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("pod-a"),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime {
                seconds: Some(1_767_225_600),
                nanos: Some(0),
            }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    let created = create(
        &client,
        "/apis/coordination.k8s.io/v1/namespaces/default/leases",
        envelope("coordination.k8s.io/v1", "Lease", &lease),
    )
    .await;
    assert_eq!(
        created["spec"],
        json!({
            "holderIdentity": "pod-a",
            "leaseDurationSeconds": 15,
            "renewTime": "2026-01-01T00:00:00.000000Z",
            "leaseTransitions": 0,
        })
    );
}

#[tokio::test]
async fn rbac_kinds_keep_the_core_group_as_an_empty_string() {
    let (_cluster, client) = cluster().await;
    let rule = rbac::PolicyRule {
        verbs: vec!["get".into(), "list".into()],
        api_groups: vec![String::new()],
        resources: vec!["pods".into()],
        resource_names: vec![],
        non_resource_ur_ls: vec![],
    };
    let role = rbac::Role {
        metadata: meta("reader", "default"),
        rules: vec![rule.clone()],
    };
    let created = create(
        &client,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        envelope("rbac.authorization.k8s.io/v1", "Role", &role),
    )
    .await;
    assert_eq!(
        created["rules"],
        json!([{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}])
    );
    let cluster_role = rbac::ClusterRole {
        metadata: meta("metrics", ""),
        rules: vec![rbac::PolicyRule {
            verbs: vec!["get".into()],
            non_resource_ur_ls: vec!["/metrics".into()],
            ..Default::default()
        }],
        aggregation_rule: None,
    };
    let created = create(
        &client,
        "/apis/rbac.authorization.k8s.io/v1/clusterroles",
        envelope("rbac.authorization.k8s.io/v1", "ClusterRole", &cluster_role),
    )
    .await;
    assert_eq!(
        created["rules"],
        json!([{"verbs": ["get"], "nonResourceURLs": ["/metrics"]}])
    );

    let subject = rbac::Subject {
        kind: s("User"),
        api_group: s("rbac.authorization.k8s.io"),
        name: s("alice"),
        namespace: None,
    };
    let role_ref = |kind: &str, name: &str| {
        Some(rbac::RoleRef {
            api_group: s("rbac.authorization.k8s.io"),
            kind: s(kind),
            name: s(name),
        })
    };
    let binding = rbac::RoleBinding {
        metadata: meta("alice-reads", "default"),
        subjects: vec![subject.clone()],
        role_ref: role_ref("Role", "reader"),
    };
    let created = create(
        &client,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        envelope("rbac.authorization.k8s.io/v1", "RoleBinding", &binding),
    )
    .await;
    assert_eq!(
        created["subjects"],
        json!([{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "alice"}])
    );
    assert_eq!(
        created["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"})
    );
    let cluster_binding = rbac::ClusterRoleBinding {
        metadata: meta("alice-metrics", ""),
        subjects: vec![subject],
        role_ref: role_ref("ClusterRole", "metrics"),
    };
    let created = create(
        &client,
        "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
        envelope(
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            &cluster_binding,
        ),
    )
    .await;
    assert_eq!(created["roleRef"]["name"], "metrics");
}

#[tokio::test]
async fn deployments_keep_zero_replicas_and_pdbs_keep_percentages() {
    let (_cluster, client) = cluster().await;
    let selector = Some(LabelSelector {
        match_labels: labels(&[("app", "web")]),
        match_expressions: vec![],
    });
    let deployment = apps::Deployment {
        metadata: meta("web", "default"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            selector: selector.clone(),
            template: Some(core::PodTemplateSpec {
                metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    labels: labels(&[("app", "web")]),
                    creation_timestamp: Some(Time::default()),
                    ..Default::default()
                }),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: s("web"),
                        image: s("nginx"),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: None,
    };
    let created = create(
        &client,
        "/apis/apps/v1/namespaces/default/deployments",
        envelope("apps/v1", "Deployment", &deployment),
    )
    .await;
    assert_eq!(created["spec"]["replicas"], 0);
    assert_eq!(
        created["spec"]["template"]["metadata"],
        json!({"labels": {"app": "web"}})
    );

    let budget = policy::PodDisruptionBudget {
        metadata: meta("web", "default"),
        spec: Some(policy::PodDisruptionBudgetSpec {
            min_available: Some(IntOrString {
                r#type: Some(1),
                int_val: None,
                str_val: s("50%"),
            }),
            max_unavailable: None,
            selector,
            unhealthy_pod_eviction_policy: None,
        }),
        status: None,
    };
    let created = create(
        &client,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        envelope("policy/v1", "PodDisruptionBudget", &budget),
    )
    .await;
    assert_eq!(created["spec"]["minAvailable"], "50%");
    assert_eq!(
        created["spec"]["selector"],
        json!({"matchLabels": {"app": "web"}})
    );
}

#[tokio::test]
async fn certificate_signing_requests_decode_the_request_bytes() {
    let (_cluster, client) = cluster().await;
    let request = certificates::CertificateSigningRequest {
        metadata: meta("alice", ""),
        spec: Some(certificates::CertificateSigningRequestSpec {
            request: Some(b"-----BEGIN CERTIFICATE REQUEST-----".to_vec()),
            signer_name: s("kubernetes.io/kube-apiserver-client"),
            expiration_seconds: Some(3600),
            usages: vec!["client auth".into()],
            ..Default::default()
        }),
        status: None,
    };
    let created = create(
        &client,
        "/apis/certificates.k8s.io/v1/certificatesigningrequests",
        envelope(
            "certificates.k8s.io/v1",
            "CertificateSigningRequest",
            &request,
        ),
    )
    .await;
    assert_eq!(
        created["spec"]["request"],
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0="
    );
    assert_eq!(
        created["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client"
    );
    assert_eq!(created["spec"]["expirationSeconds"], 3600);
    assert_eq!(created["spec"]["usages"], json!(["client auth"]));
}

#[tokio::test]
async fn admission_policies_and_bindings_inline_their_rules() {
    let (_cluster, client) = cluster().await;
    let policy = admission::ValidatingAdmissionPolicy {
        metadata: meta("replica-limit", ""),
        spec: Some(admission::ValidatingAdmissionPolicySpec {
            match_constraints: Some(admission::MatchResources {
                resource_rules: vec![admission::NamedRuleWithOperations {
                    resource_names: vec![],
                    rule_with_operations: Some(admission::RuleWithOperations {
                        operations: vec!["CREATE".into(), "UPDATE".into()],
                        rule: Some(admission::Rule {
                            api_groups: vec!["apps".into()],
                            api_versions: vec!["v1".into()],
                            resources: vec!["deployments".into()],
                            scope: None,
                        }),
                    }),
                }],
                ..Default::default()
            }),
            validations: vec![admission::Validation {
                expression: s("object.spec.replicas <= 5"),
                message: s("too many replicas"),
                ..Default::default()
            }],
            failure_policy: s("Fail"),
            ..Default::default()
        }),
        status: None,
    };
    let created = create(
        &client,
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies",
        envelope(
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicy",
            &policy,
        ),
    )
    .await;
    assert_eq!(
        created["spec"]["matchConstraints"]["resourceRules"],
        json!([{
            "operations": ["CREATE", "UPDATE"],
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "resources": ["deployments"],
        }])
    );
    assert_eq!(
        created["spec"]["validations"],
        json!([{"expression": "object.spec.replicas <= 5", "message": "too many replicas"}])
    );

    let binding = admission::ValidatingAdmissionPolicyBinding {
        metadata: meta("replica-limit", ""),
        spec: Some(admission::ValidatingAdmissionPolicyBindingSpec {
            policy_name: s("replica-limit"),
            validation_actions: vec!["Deny".into()],
            ..Default::default()
        }),
    };
    let created = create(
        &client,
        "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings",
        envelope(
            "admissionregistration.k8s.io/v1",
            "ValidatingAdmissionPolicyBinding",
            &binding,
        ),
    )
    .await;
    assert_eq!(
        created["spec"],
        json!({"policyName": "replica-limit", "validationActions": ["Deny"]})
    );
}

#[tokio::test]
async fn delete_options_in_protobuf_are_honoured() {
    let (_cluster, client) = cluster().await;
    let config_map = core::ConfigMap {
        metadata: meta("doomed", "default"),
        ..Default::default()
    };
    let created = create(
        &client,
        "/api/v1/namespaces/default/configmaps",
        envelope("v1", "ConfigMap", &config_map),
    )
    .await;
    let wrong_uid = DeleteOptions {
        preconditions: Some(Preconditions {
            uid: s("not-the-uid"),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = send(
        &client,
        http::Method::DELETE,
        "/api/v1/namespaces/default/configmaps/doomed",
        envelope("v1", "DeleteOptions", &wrong_uid),
    )
    .await
    .expect_err("a wrong uid precondition fails");
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));

    let right_uid = DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: created["metadata"]["uid"].as_str().map(str::to_string),
            resource_version: None,
        }),
        propagation_policy: s("Background"),
        ..Default::default()
    };
    let deleted = send(
        &client,
        http::Method::DELETE,
        "/api/v1/namespaces/default/configmaps/doomed",
        envelope("meta.k8s.io/v1", "DeleteOptions", &right_uid),
    )
    .await
    .expect("deleted");
    assert_eq!(deleted["status"], "Success", "{deleted}");
}
