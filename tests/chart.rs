//! Helm chart tests: `helm lint`, and rendered manifests validated against the Kubernetes schemas
//! (`kubernetes-validate`) and the CRD schemas, and checked for least privilege and high
//! availability. CRD and Dockerfile consistency: tests/chart_crds.rs; installs: chart_install.rs.
//!
//! helm comes from `scripts/ensure-kube-tools.sh` (or `.cache/tools/bin`, or PATH) and
//! kubernetes-validate from `scripts/ensure-chart-tools.sh`; a missing tool skips a test loudly,
//! and fails it when `KEYWARDEN_REQUIRE_TOOLS` is set (as in CI).

mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::{json, Value};
use tools::{helm_binary, kubernetes_validate, missing_tool, repo_root, run};

const RELEASE: &str = "kw";
const NAMESPACE: &str = "keywarden-system";

fn chart_dir() -> PathBuf {
    repo_root().join("charts/keywarden")
}

/// Renders the chart with `helm template` and the given `--set`/`--set-json` arguments.
fn render(helm: &Path, values: &[&str]) -> String {
    let output = run(Command::new(helm)
        .args(["template", RELEASE])
        .arg(chart_dir())
        .args(["--namespace", NAMESPACE])
        .args(values));
    String::from_utf8(output.stdout).expect("helm output is UTF-8")
}

/// Every non-empty YAML document of a multi-document stream, as JSON values.
fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document).expect("valid YAML document");
            serde_json::to_value(value).expect("YAML document converts to JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// Validates every built-in object of a render against the Kubernetes schemas, strictly.
fn assert_schema_valid(validator: &Path, rendered: &str, custom_kinds: &[&str]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("rendered.yaml");
    std::fs::write(&file, rendered).expect("write render");
    let output = run(Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .arg(&file));
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for document in documents(rendered) {
        let kind = document["kind"].as_str().expect("every object has a kind");
        let name = document["metadata"]["name"]
            .as_str()
            .expect("every object has a name");
        if custom_kinds.contains(&kind) {
            continue;
        }
        let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(
            report.contains(&passed),
            "{kind}/{name} was not validated:\n{report}"
        );
    }
    for line in report.lines().filter(|line| line.starts_with("WARN")) {
        assert!(
            custom_kinds
                .iter()
                .any(|kind| line.contains(&format!("kind {kind} "))),
            "unexpected validation warning: {line}"
        );
    }
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("rendered chart has no {kind}/{name}"))
}

fn of_kind<'a>(objects: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    objects.iter().filter(move |object| object["kind"] == kind)
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether any rule of a Role or ClusterRole mentions `resource` (or a wildcard).
fn grants(role: &Value, resource: &str) -> bool {
    role["rules"].as_array().into_iter().flatten().any(|rule| {
        strings(&rule["resources"])
            .iter()
            .any(|r| *r == resource || *r == "*")
    })
}

/// The roles bound to a ServiceAccount of the release, through any binding kind.
fn roles_of<'a>(objects: &'a [Value], service_account: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|binding| {
            matches!(
                binding["kind"].as_str(),
                Some("RoleBinding" | "ClusterRoleBinding")
            ) && binding["subjects"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|subject| subject["name"] == service_account)
        })
        .map(|binding| {
            let kind = binding["roleRef"]["kind"].as_str().expect("roleRef.kind");
            let name = binding["roleRef"]["name"].as_str().expect("roleRef.name");
            let namespace = &binding["metadata"]["namespace"];
            objects
                .iter()
                .find(|role| {
                    role["kind"] == kind
                        && role["metadata"]["name"] == name
                        && (kind == "ClusterRole" || role["metadata"]["namespace"] == *namespace)
                })
                .unwrap_or_else(|| panic!("binding refers to a {kind}/{name} the chart lacks"))
        })
        .collect()
}

fn assert_hardened(deployment: &Value) {
    let name = &deployment["metadata"]["name"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
        "{name}"
    );
    for container in pod["containers"].as_array().expect("containers") {
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(
            strings(&security["capabilities"]["drop"]),
            ["ALL"],
            "{name}"
        );
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        assert!(
            container["resources"]["requests"].is_object(),
            "{name} has no requests"
        );
        assert!(
            container["resources"]["limits"]["memory"].is_string(),
            "{name}: no memory limit"
        );
        for probe in ["livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            let declared = container["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["name"] == *port);
            assert!(declared, "{name}: {probe} targets undeclared port {port}");
        }
    }
}

fn container(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]["containers"][0]
}

fn env_value<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|env| env["name"] == name)?["value"]
        .as_str()
}

macro_rules! require {
    ($tool:expr, $name:literal, $hint:literal) => {
        match $tool {
            Some(tool) => tool,
            None => {
                missing_tool($name, $hint);
                return;
            }
        }
    };
}

#[test]
fn chart_passes_helm_lint_with_default_and_custom_values() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    run(Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir()));
    run(Command::new(&helm)
        .args(["lint", "--strict"])
        .arg(chart_dir())
        .args(["--set", "watchNamespaces={team-a,team-b}"])
        .args(["--set", "metrics.serviceMonitor.enabled=true"]));
}

#[test]
fn default_render_is_schema_valid_highly_available_and_least_privilege() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let validator = require!(
        kubernetes_validate(),
        "kubernetes-validate",
        "run scripts/ensure-chart-tools.sh"
    );
    let rendered = render(&helm, &[]);
    assert_schema_valid(validator, &rendered, &["AccessKeyPolicy"]);
    let objects = documents(&rendered);

    let controller = find(&objects, "Deployment", "kw-keywarden-controller");
    let verifier = find(&objects, "Deployment", "kw-keywarden-verifier");
    for deployment in [controller, verifier] {
        assert_eq!(deployment["spec"]["replicas"], 2);
        assert_eq!(deployment["metadata"]["namespace"], NAMESPACE);
        assert_eq!(
            container(deployment)["image"],
            "ghcr.io/keywarden/keywarden:0.1.0"
        );
        assert_hardened(deployment);
    }
    assert_eq!(strings(&container(controller)["args"]), ["controller"]);
    assert_eq!(
        strings(&container(verifier)["args"]),
        ["verifier", "--listen", "0.0.0.0:8080"]
    );
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_VERIFIER_NAMESPACES"),
        None,
        "the verifier watches every namespace"
    );
    let probe_port = &container(controller)["ports"][0];
    assert_eq!(probe_port["name"], "probes");
    assert_eq!(
        env_value(container(controller), "KEYWARDEN_PROBE_ADDR"),
        Some(format!("0.0.0.0:{}", probe_port["containerPort"]).as_str()),
        "the controller serves probes on all interfaces, on the declared port"
    );
    let lease_namespace = container(controller)["env"]
        .as_array()
        .and_then(|env| {
            env.iter()
                .find(|e| e["name"] == "KEYWARDEN_LEADER_ELECTION_NAMESPACE")
        })
        .map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]);
    assert_eq!(
        lease_namespace,
        Some(&json!("metadata.namespace")),
        "the Lease lives in the release namespace, where the controller's lease Role is"
    );

    let verifier_pods = &verifier["spec"]["selector"]["matchLabels"];
    let budget = find(&objects, "PodDisruptionBudget", "kw-keywarden-verifier");
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *verifier_pods);
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    let service = find(&objects, "Service", "kw-keywarden-verifier");
    assert_eq!(service["spec"]["selector"], *verifier_pods);
    assert_ne!(
        verifier_pods,
        &controller["spec"]["selector"]["matchLabels"]
    );

    let verifier_roles = roles_of(&objects, "kw-keywarden-verifier");
    assert!(
        !verifier_roles.is_empty(),
        "the verifier is bound to no role"
    );
    for role in &verifier_roles {
        assert_eq!(role["kind"], "ClusterRole");
        assert!(
            !grants(role, "secrets"),
            "the verifier can touch Secrets: {role:#}"
        );
        assert_eq!(
            role["rules"],
            json!([
                {"apiGroups": ["keywarden.io"], "resources": ["accesskeys"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["keywarden.io"], "resources": ["accesskeys/status"], "verbs": ["patch"]},
            ])
        );
    }

    let controller_roles = roles_of(&objects, "kw-keywarden-controller");
    let secret_roles: Vec<_> = controller_roles
        .iter()
        .filter(|r| grants(r, "secrets"))
        .collect();
    assert_eq!(
        secret_roles.len(),
        1,
        "exactly one role grants the controller Secrets"
    );
    let lease_roles: Vec<_> = controller_roles
        .iter()
        .filter(|r| grants(r, "leases"))
        .collect();
    assert_eq!(lease_roles.len(), 1);
    assert_eq!(
        lease_roles[0]["kind"], "Role",
        "leases only in the release namespace"
    );
    assert_eq!(lease_roles[0]["metadata"]["namespace"], NAMESPACE);
    for resource in ["accesskeys", "accesskeypolicies", "namespaces", "events"] {
        assert!(
            controller_roles.iter().any(|r| grants(r, resource)),
            "no rule for {resource}"
        );
    }
    // Scopes held: reviews created, RBAC only read; nothing more.
    let verbs_on = |resource: &str| -> Vec<&str> {
        controller_roles
            .iter()
            .flat_map(|r| r["rules"].as_array().into_iter().flatten())
            .filter(|rule| strings(&rule["resources"]).contains(&resource))
            .flat_map(|rule| strings(&rule["verbs"]))
            .collect()
    };
    assert_eq!(verbs_on("subjectaccessreviews"), ["create"]);
    for resource in ["clusterroles", "clusterrolebindings"] {
        assert_eq!(verbs_on(resource), ["list", "watch"], "{resource}");
    }
    // Owner access: the per-key Role and RoleBinding, which nothing else writes.
    for resource in ["roles", "rolebindings"] {
        assert_eq!(
            verbs_on(resource),
            ["get", "list", "watch", "create", "update", "delete"],
            "{resource}"
        );
    }
    for role in of_kind(&objects, "ClusterRole").chain(of_kind(&objects, "Role")) {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(!strings(&rule[field]).contains(&"*"), "wildcard in {rule}");
            }
        }
    }

    let policy = find(&objects, "AccessKeyPolicy", "default");
    assert_eq!(
        policy["metadata"]["annotations"]["keywarden.io/default-policy"],
        "true"
    );
    assert_eq!(of_kind(&objects, "ServiceMonitor").count(), 0);
}

#[test]
fn watch_namespaces_render_confines_the_verifier_but_never_the_controller() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let validator = require!(
        kubernetes_validate(),
        "kubernetes-validate",
        "run scripts/ensure-chart-tools.sh"
    );
    let rendered = render(
        &helm,
        &[
            "--set=watchNamespaces={team-a,team-b}",
            "--set=metrics.serviceMonitor.enabled=true",
            "--set=defaultPolicy.create=false",
            "--set=image.tag=v9.9.9",
            "--set=verifier.replicas=3",
            "--set=verifier.podDisruptionBudget.maxUnavailable=2",
        ],
    );
    assert_schema_valid(validator, &rendered, &["ServiceMonitor"]);
    let objects = documents(&rendered);

    let controller = find(&objects, "Deployment", "kw-keywarden-controller");
    let verifier = find(&objects, "Deployment", "kw-keywarden-verifier");
    for deployment in [controller, verifier] {
        assert_eq!(
            container(deployment)["image"],
            "ghcr.io/keywarden/keywarden:v9.9.9"
        );
        assert_hardened(deployment);
    }
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_VERIFIER_NAMESPACES"),
        Some("team-a,team-b"),
        "the verifier watches the listed namespaces"
    );
    let controller_env: Vec<&str> = container(controller)["env"]
        .as_array()
        .expect("controller env")
        .iter()
        .filter_map(|env| env["name"].as_str())
        .collect();
    assert!(
        !controller_env
            .iter()
            .any(|name| name.contains("NAMESPACES")),
        "the controller reads no namespace list, so the chart must not pretend to pass one: \
         {controller_env:?}"
    );
    assert_eq!(verifier["spec"]["replicas"], 3);
    let budget = find(&objects, "PodDisruptionBudget", "kw-keywarden-verifier");
    assert_eq!(budget["spec"]["maxUnavailable"], 2);

    let verifier_roles = roles_of(&objects, "kw-keywarden-verifier");
    let mut verifier_namespaces: Vec<&str> = verifier_roles
        .iter()
        .map(|role| {
            assert_eq!(
                role["kind"], "Role",
                "the verifier is bound cluster-wide: {role:#}"
            );
            assert!(
                !grants(role, "secrets"),
                "the verifier can touch Secrets: {role:#}"
            );
            assert!(grants(role, "accesskeys"), "{role:#}");
            role["metadata"]["namespace"]
                .as_str()
                .expect("Role namespace")
        })
        .collect();
    verifier_namespaces.sort_unstable();
    assert_eq!(verifier_namespaces, ["team-a", "team-b"]);
    // why: the aggregated user roles (view, edit, manage) are bound by no one in the chart;
    // Kubernetes' own view/edit/admin roles pick them up.
    let bound_cluster_roles: Vec<&str> = of_kind(&objects, "ClusterRoleBinding")
        .filter_map(|binding| binding["roleRef"]["name"].as_str())
        .collect();
    let key_readers: Vec<&str> = of_kind(&objects, "ClusterRole")
        .filter(|role| grants(role, "accesskeys"))
        .filter_map(|role| role["metadata"]["name"].as_str())
        .filter(|name| bound_cluster_roles.contains(name))
        .collect();
    assert_eq!(
        key_readers,
        ["kw-keywarden-controller"],
        "only the controller reads AccessKeys cluster-wide"
    );

    let controller_roles = roles_of(&objects, "kw-keywarden-controller");
    let secret_roles: Vec<_> = controller_roles
        .iter()
        .filter(|role| grants(role, "secrets"))
        .collect();
    assert_eq!(secret_roles.len(), 1, "{secret_roles:#?}");
    assert_eq!(
        secret_roles[0]["kind"], "ClusterRole",
        "the controller watches Secrets in every namespace"
    );
    for resource in ["accesskeys", "accesskeys/status", "events"] {
        assert!(
            grants(secret_roles[0], resource),
            "the controller's ClusterRole lacks {resource}"
        );
    }
    assert!(
        of_kind(&objects, "Role").all(|role| !grants(role, "secrets")),
        "no namespaced Role grants Secrets"
    );

    let monitors: Vec<_> = of_kind(&objects, "ServiceMonitor").collect();
    assert_eq!(monitors.len(), 2);
    for monitor in monitors {
        let selected = &monitor["spec"]["selector"]["matchLabels"];
        let port = &monitor["spec"]["endpoints"][0]["port"];
        let service = of_kind(&objects, "Service")
            .find(|service| service["spec"]["selector"] == *selected)
            .unwrap_or_else(|| panic!("no Service matches the ServiceMonitor selector {selected}"));
        let ports = service["spec"]["ports"].as_array().expect("ports");
        assert!(
            ports.iter().any(|p| p["name"] == *port),
            "Service lacks port {port}"
        );
    }
    assert_eq!(of_kind(&objects, "AccessKeyPolicy").count(), 0);
}

/// Validates every keywarden object of the given files against the chart's CRD schemas, with the
/// `jsonschema` package that kubernetes-validate brings along; prints `valid Kind/name` lines.
const CRD_SCHEMA_CHECK: &str = r#"
import sys, yaml, jsonschema
schemas = {}
for path in sys.argv[1].split(","):
    for crd in yaml.safe_load_all(open(path)):
        for version in crd["spec"]["versions"]:
            key = (crd["spec"]["group"] + "/" + version["name"], crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
errors = 0
for path in sys.argv[2:]:
    for obj in yaml.safe_load_all(open(path)):
        if not obj or (obj["apiVersion"], obj["kind"]) not in schemas:
            continue
        name = obj["kind"] + "/" + obj["metadata"]["name"]
        found = list(jsonschema.Draft7Validator(schemas[(obj["apiVersion"], obj["kind"])]).iter_errors(obj))
        for error in found:
            print(f"{path}: {name}: {'.'.join(map(str, error.absolute_path))}: {error.message}")
        errors += len(found)
        if not found:
            print("valid " + name)
sys.exit(1 if errors else 0)
"#;

#[test]
fn rendered_default_policy_matches_the_crd_schema() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let python = require!(
        tools::chart_tools_python(),
        "the chart tools venv",
        "run scripts/ensure-chart-tools.sh"
    );
    let crds: Vec<String> = std::fs::read_dir(chart_dir().join("crds"))
        .expect("the chart has CRDs")
        .map(|entry| entry.expect("entry").path().display().to_string())
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    for (file, values) in [
        ("default.yaml", vec![]),
        (
            "custom.yaml",
            vec![
                "--set=defaultPolicy.spec.expireAfter=90d",
                "--set=defaultPolicy.spec.rotateBeforeExpiry=7d",
                "--set-json=defaultPolicy.spec.allowedScopes=[\"reports:view\"]",
            ],
        ),
    ] {
        let rendered = dir.path().join(file);
        std::fs::write(&rendered, render(&helm, &values)).expect("write render");
        let output = run(Command::new(&python)
            .args(["-c", CRD_SCHEMA_CHECK, &crds.join(",")])
            .arg(&rendered));
        let report = String::from_utf8_lossy(&output.stdout);
        assert!(
            report
                .lines()
                .any(|line| line == "valid AccessKeyPolicy/default"),
            "{file}: the default policy was not validated:\n{report}"
        );
    }
}

#[test]
fn deploy_access_control_is_the_charts_rendering() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("access-control.yaml");
    run(Command::new(repo_root().join("scripts/render-deploy.sh"))
        .arg(&rendered)
        .env("KEYWARDEN_HELM", &helm));
    let committed = std::fs::read_to_string(repo_root().join("deploy/access-control.yaml"))
        .expect("deploy/access-control.yaml");
    assert!(
        std::fs::read_to_string(&rendered).unwrap() == committed,
        "deploy/access-control.yaml differs from the chart; run scripts/render-deploy.sh"
    );
}

#[test]
fn admission_policies_bind_the_release_service_accounts() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let objects = documents(&render(&helm, &[]));
    let status = find(
        &objects,
        "ValidatingAdmissionPolicy",
        "kw-keywarden-access-key-status",
    );
    let rule = status["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    assert!(
        rule.contains("'system:serviceaccount:keywarden-system:kw-keywarden-controller'"),
        "{rule}"
    );
    assert!(
        rule.contains("'system:serviceaccount:keywarden-system:kw-keywarden-verifier'"),
        "{rule}"
    );
    for name in [
        "kw-keywarden-access-key-ownership",
        "kw-keywarden-access-key-status",
    ] {
        let binding = find(&objects, "ValidatingAdmissionPolicyBinding", name);
        assert_eq!(binding["spec"]["policyName"], name);
        assert_eq!(binding["spec"]["validationActions"], json!(["Deny"]));
    }
    for (role, label) in [
        (
            "kw-keywarden-view",
            "rbac.authorization.k8s.io/aggregate-to-view",
        ),
        (
            "kw-keywarden-edit",
            "rbac.authorization.k8s.io/aggregate-to-edit",
        ),
        (
            "kw-keywarden-manage",
            "rbac.authorization.k8s.io/aggregate-to-admin",
        ),
    ] {
        let role = find(&objects, "ClusterRole", role);
        assert_eq!(role["metadata"]["labels"][label], "true");
    }
}

#[test]
fn the_staleness_bounds_and_the_verifiers_stale_policy_reach_their_flags() {
    let helm = require!(helm_binary(), "helm", "run scripts/ensure-kube-tools.sh");
    let defaults = documents(&render(&helm, &[]));
    let verifier = find(&defaults, "Deployment", "kw-keywarden-verifier");
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_MAX_STALENESS"),
        Some("5m")
    );
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_WHEN_STALE"),
        Some("refuse")
    );
    let set = documents(&render(
        &helm,
        &[
            "--set=verifier.maxStaleness=30s",
            "--set=verifier.whenStale=serve",
        ],
    ));
    let verifier = find(&set, "Deployment", "kw-keywarden-verifier");
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_MAX_STALENESS"),
        Some("30s")
    );
    assert_eq!(
        env_value(container(verifier), "KEYWARDEN_WHEN_STALE"),
        Some("serve")
    );
    let controller = find(&defaults, "Deployment", "kw-keywarden-controller");
    assert_eq!(
        env_value(container(controller), "KEYWARDEN_MAX_API_SILENCE"),
        Some("1m")
    );
    let refused = Command::new(&helm)
        .args(["template", RELEASE])
        .arg(chart_dir())
        .arg("--set=verifier.whenStale=sometimes")
        .output()
        .expect("helm runs");
    assert!(!refused.status.success(), "an unknown whenStale renders");
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("verifier.whenStale must be refuse or serve"));
}
