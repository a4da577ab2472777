//! ValidatingAdmissionPolicy seen by the real kubectl: the documentation's example applied from
//! YAML, its denial as kubectl prints it, `Warn` as a `Warning:` line and `Audit` as neither.
//!
//! Needs kubectl (>= 1.27) from `KEYWARDEN_KUBECTL`, `PATH` or `scripts/ensure-kube-tools.sh`.

#[path = "support/kube_tools.rs"]
mod kube_tools;

use kube_tools::Kube;

const REPLICA_LIMIT: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: demo-policy.example.com
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: ["apps"]
      apiVersions: ["v1"]
      operations: ["CREATE", "UPDATE"]
      resources: ["deployments"]
  validations:
  - expression: "object.spec.replicas <= int(params.data.maxReplicas)"
    reason: Invalid
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: demo-binding-test.example.com
spec:
  policyName: demo-policy.example.com
  validationActions: [Deny]
  paramRef:
    name: replica-limit
    namespace: default
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        environment: test
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: replica-limit
  namespace: default
data:
  maxReplicas: "3"
---
apiVersion: v1
kind: Namespace
metadata:
  name: test
  labels:
    environment: test
"#;

fn nginx(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
  namespace: test
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{ app: nginx }}
  template:
    metadata:
      labels: {{ app: nginx }}
    spec:
      containers:
      - name: nginx
        image: nginx
"#
    )
}

#[tokio::test]
async fn kubectl_prints_the_documented_denial_of_too_many_replicas() {
    let kube = Kube::start().await;
    let setup = kube.file("replica-limit.yaml", REPLICA_LIMIT);
    kube.kubectl_ok(&["apply", "-f", &setup]).await;

    let too_many = kube.file("nginx-5.yaml", &nginx(5));
    let output = kube.kubectl(&["apply", "-f", &too_many]).await;
    assert!(!output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains(
            "The deployments \"nginx\" is invalid: : ValidatingAdmissionPolicy 'demo-policy.example.com' with binding 'demo-binding-test.example.com' denied request: failed expression: object.spec.replicas <= int(params.data.maxReplicas)"
        ),
        "{}",
        output.stderr
    );

    let enough = kube.file("nginx-3.yaml", &nginx(3));
    kube.kubectl_ok(&["apply", "-f", &enough]).await;
}

const REQUIRE_OWNER: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: require-owner
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  validations:
  - expression: "has(object.metadata.labels) && 'owner' in object.metadata.labels"
    message: config maps need an owner label
  auditAnnotations:
  - key: creator
    valueExpression: "request.userInfo.username"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: require-owner-binding
spec:
  policyName: require-owner
  validationActions: [ACTIONS]
"#;

#[tokio::test]
async fn warn_actions_reach_kubectl_as_warning_lines() {
    let kube = Kube::start().await;
    let policy = kube.file("warn.yaml", &REQUIRE_OWNER.replace("ACTIONS", "Warn"));
    kube.kubectl_ok(&["apply", "-f", &policy]).await;

    let output = kube
        .kubectl(&["create", "configmap", "settings", "--from-literal=a=b"])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains(
            "Warning: Validation failed for ValidatingAdmissionPolicy 'require-owner' with binding 'require-owner-binding': config maps need an owner label"
        ),
        "{}",
        output.stderr
    );
    kube.kubectl_ok(&["get", "configmap", "settings"]).await;
}

#[tokio::test]
async fn audit_actions_neither_deny_nor_warn() {
    let kube = Kube::start().await;
    let policy = kube.file("audit.yaml", &REQUIRE_OWNER.replace("ACTIONS", "Audit"));
    kube.kubectl_ok(&["apply", "-f", &policy]).await;

    let output = kube
        .kubectl(&["create", "configmap", "settings", "--from-literal=a=b"])
        .await;
    assert!(output.status.success(), "{output:?}");
    assert!(!output.stderr.contains("Warning"), "{}", output.stderr);
}

#[tokio::test]
async fn deny_and_warn_together_refuse_the_request() {
    let kube = Kube::start().await;
    let policy = kube.file("both.yaml", &REQUIRE_OWNER.replace("ACTIONS", "Deny, Warn"));
    kube.kubectl_ok(&["apply", "-f", &policy]).await;

    let output = kube
        .kubectl(&["create", "configmap", "settings", "--from-literal=a=b"])
        .await;
    assert!(!output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains(
            "error: failed to create configmap: configmaps \"settings\" is forbidden: ValidatingAdmissionPolicy 'require-owner' with binding 'require-owner-binding' denied request: config maps need an owner label"
        ),
        "{}",
        output.stderr
    );
}

const TEAM_A_PROD: &str = r#"
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: no-team-a-prod
spec:
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["CREATE"]
      resources: ["configmaps"]
  validations:
  - expression: "!('team-a' in request.userInfo.groups) || !object.metadata.name.startsWith('prod-')"
    messageExpression: "'team-a (here ' + request.userInfo.username + ') may not create prod- config maps'"
    reason: Forbidden
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: no-team-a-prod
spec:
  policyName: no-team-a-prod
  validationActions: [Deny]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: teams-edit
  namespace: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: edit
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: team-a
- apiGroup: rbac.authorization.k8s.io
  kind: Group
  name: team-b
"#;

#[tokio::test]
async fn a_group_policy_denies_impersonated_members_only() {
    let kube = Kube::start().await;
    let setup = kube.file("team-a-prod.yaml", TEAM_A_PROD);
    kube.kubectl_ok(&["apply", "-f", &setup]).await;

    let as_alice = ["--as", "alice", "--as-group", "team-a"];
    let output = kube
        .kubectl(&[&as_alice[..], &["create", "configmap", "prod-settings"]].concat())
        .await;
    assert!(!output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains(
            "error: failed to create configmap: configmaps \"prod-settings\" is forbidden: ValidatingAdmissionPolicy 'no-team-a-prod' with binding 'no-team-a-prod' denied request: team-a (here alice) may not create prod- config maps"
        ),
        "{}",
        output.stderr
    );
    kube.kubectl_ok(&[&as_alice[..], &["create", "configmap", "dev-settings"]].concat())
        .await;
    kube.kubectl_ok(&[
        "--as",
        "bob",
        "--as-group",
        "team-b",
        "create",
        "configmap",
        "prod-settings",
    ])
    .await;
}
