//! The examples in `examples/` cannot rot: every manifest parses into known kinds (keywarden's
//! own into the Rust types, the built-in ones validated against the Kubernetes schemas), the
//! manifests agree with each other and with what keywarden writes, the proxy configurations
//! pass their tools' checks, and the manifests apply cleanly to devcluster.
//!
//! A missing tool (kubernetes-validate, nginx, caddy) skips its test loudly, and fails it when
//! `KEYWARDEN_REQUIRE_TOOLS` is set (as in CI); nginx and caddy also when
//! `KEYWARDEN_REQUIRE_PROXIES` is.

mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use keywarden::api::{AccessKey, AccessKeyPolicy, OwnerKind, SecretType};
use serde::Deserialize;
use serde_json::Value;
use tools::{missing_proxy, missing_tool, on_path, repo_root, run};

/// Every file under `examples/`, each exercised by a test below.
const EXAMPLE_FILES: &[&str] = &[
    "caddy/Caddyfile",
    "envoy/ext-authz.yaml",
    // why: tests/examples_gitops.rs exercises these.
    "gitops/argocd-application.yaml",
    "gitops/flux-kustomization.yaml",
    "gitops/keys/keys.yaml",
    "gitops/keys/kustomization.yaml",
    "gitops/keys/namespace.yaml",
    "gitops/keys/policy.yaml",
    "gitops/keys/workload.yaml",
    "key-personal.yaml",
    "key-service-account.yaml",
    "nginx/nginx.conf",
    "policy-default.yaml",
    "traefik/dynamic.yml",
    "workload-deployment.yaml",
];

/// The kinds the top-level manifests may use.
const KNOWN_KINDS: &[(&str, &str)] = &[
    ("keywarden.io/v1alpha1", "AccessKey"),
    ("keywarden.io/v1alpha1", "AccessKeyPolicy"),
    ("v1", "ServiceAccount"),
    ("v1", "Namespace"),
    ("apps/v1", "Deployment"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
];

/// Data keys keywarden writes into a key's Secret (`username`/`password` only for basic-auth).
const SECRET_DATA_KEYS: &[&str] = &["accessKeyId", "accessKey", "token"];
const BASIC_AUTH_DATA_KEYS: &[&str] = &["username", "password"];

fn examples_dir() -> PathBuf {
    repo_root().join("examples")
}

/// The top-level manifests (what `kubectl apply -f examples/` applies), sorted by file name.
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).expect("readable example");
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| {
            let value = serde_yaml::Value::deserialize(document)
                .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()));
            serde_json::to_value(value).expect("YAML converts to JSON")
        })
        .filter(|value| !value.is_null())
        .collect()
}

fn all_objects() -> Vec<Value> {
    manifest_files()
        .iter()
        .flat_map(|path| documents(path))
        .collect()
}

fn of_kind(objects: &[Value], kind: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .cloned()
        .collect()
}

fn relative_files(dir: &Path, base: &Path, files: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).expect("readable directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            relative_files(&path, base, files);
        } else {
            let relative = path.strip_prefix(base).expect("under examples/");
            files.insert(relative.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_example_file_is_exercised_by_a_test() {
    let mut files = BTreeSet::new();
    relative_files(&examples_dir(), &examples_dir(), &mut files);
    let expected: BTreeSet<String> = EXAMPLE_FILES.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        files, expected,
        "examples/ changed: give every new example a test and list it in EXAMPLE_FILES"
    );
}

#[test]
fn example_manifests_use_known_kinds_and_keywarden_types() {
    let objects = all_objects();
    assert!(
        objects.len() >= 5,
        "examples hold too few objects: {objects:#?}"
    );
    for object in &objects {
        let api_version = object["apiVersion"].as_str().expect("apiVersion");
        let kind = object["kind"].as_str().expect("kind");
        let name = object["metadata"]["name"].as_str().expect("metadata.name");
        assert!(
            KNOWN_KINDS.contains(&(api_version, kind)),
            "{kind}/{name} ({api_version}) is not a kind the examples may use"
        );
        match kind {
            "AccessKey" => {
                let key: AccessKey = serde_json::from_value(object.clone())
                    .unwrap_or_else(|error| panic!("AccessKey {name}: {error}"));
                assert_eq!(key.metadata.namespace.as_deref(), Some("default"));
            }
            "AccessKeyPolicy" => {
                serde_json::from_value::<AccessKeyPolicy>(object.clone())
                    .unwrap_or_else(|error| panic!("AccessKeyPolicy {name}: {error}"));
            }
            _ => {}
        }
    }
}

#[test]
fn the_example_service_account_holds_its_keys_scopes_through_the_example_role() {
    let objects = all_objects();
    let of_kind = |kind: &'static str| objects.iter().filter(move |o| o["kind"] == kind);
    let key: AccessKey = of_kind("AccessKey")
        .filter_map(|o| serde_json::from_value::<AccessKey>(o.clone()).ok())
        .find(|k| k.spec.owner.kind == OwnerKind::ServiceAccount)
        .expect("a ServiceAccount key");
    let binding =
        of_kind("RoleBinding")
            .find(|b| {
                b["subjects"].as_array().into_iter().flatten().any(|s| {
                    s["kind"] == "ServiceAccount" && s["name"] == key.spec.owner.name.as_str()
                })
            })
            .expect("a RoleBinding for the key's ServiceAccount");
    let role = of_kind("Role")
        .find(|r| r["metadata"]["name"] == binding["roleRef"]["name"])
        .expect("the bound Role");
    let mut granted: Vec<String> = role["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|rule| rule["apiGroups"][0] == "scopes.keywarden.io")
        .flat_map(|rule| {
            let resources = rule["resources"].as_array().cloned().unwrap_or_default();
            let verbs = rule["verbs"].as_array().cloned().unwrap_or_default();
            resources.into_iter().flat_map(move |r| {
                verbs
                    .clone()
                    .into_iter()
                    .map(move |v| format!("{}:{}", r.as_str().unwrap(), v.as_str().unwrap()))
            })
        })
        .collect();
    granted.sort();
    let mut scopes = key.spec.scopes.clone();
    scopes.sort();
    assert_eq!(granted, scopes);
}

#[test]
fn example_builtin_objects_are_schema_valid() {
    let Some(validator) = tools::kubernetes_validate() else {
        missing_tool("kubernetes-validate", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let output = run(Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(manifest_files()));
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for object in all_objects() {
        let kind = object["kind"].as_str().expect("kind");
        if object["apiVersion"] == "keywarden.io/v1alpha1" {
            continue;
        }
        let name = object["metadata"]["name"].as_str().expect("name");
        let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
        assert!(
            report.contains(&passed),
            "{kind}/{name} not validated:\n{report}"
        );
    }
}

/// Validates every keywarden object of the given files against the `crds/` schemas, with the
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
fn example_custom_resources_match_the_crd_schemas() {
    let Some(python) = tools::chart_tools_python() else {
        missing_tool("the chart tools venv", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let crds = repo_root().join("crds");
    let crds: Vec<String> = std::fs::read_dir(crds)
        .expect("crds/ exists")
        .map(|entry| entry.expect("entry").path().display().to_string())
        .collect();
    let output = run(Command::new(python)
        .args(["-c", CRD_SCHEMA_CHECK, &crds.join(",")])
        .args(manifest_files()));
    let report = String::from_utf8_lossy(&output.stdout);
    for object in all_objects() {
        if object["apiVersion"] == "keywarden.io/v1alpha1" {
            let kind = object["kind"].as_str().expect("kind");
            let name = object["metadata"]["name"].as_str().expect("name");
            let valid = format!("valid {kind}/{name}");
            assert!(
                report.lines().any(|line| line == valid),
                "{kind}/{name} not validated:\n{report}"
            );
        }
    }
}

#[test]
fn example_manifests_agree_with_each_other_and_with_keywarden_secrets() {
    let objects = all_objects();
    let keys: Vec<AccessKey> = of_kind(&objects, "AccessKey")
        .into_iter()
        .map(|key| serde_json::from_value(key).expect("AccessKey"))
        .collect();
    let policies: Vec<AccessKeyPolicy> = of_kind(&objects, "AccessKeyPolicy")
        .into_iter()
        .map(|policy| serde_json::from_value(policy).expect("AccessKeyPolicy"))
        .collect();
    let service_accounts: BTreeSet<String> = of_kind(&objects, "ServiceAccount")
        .iter()
        .map(|sa| sa["metadata"]["name"].as_str().expect("name").to_owned())
        .collect();

    let defaults: Vec<_> = policies
        .iter()
        .filter(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(keywarden::api::DEFAULT_POLICY_ANNOTATION))
                .is_some_and(|value| value == "true")
        })
        .collect();
    assert_eq!(
        defaults.len(),
        1,
        "exactly one example policy is the default"
    );

    let owners: BTreeSet<OwnerKind> = keys.iter().map(|k| k.spec.owner.kind).collect();
    assert_eq!(
        owners.len(),
        2,
        "examples show a User key and a ServiceAccount key"
    );
    for key in &keys {
        let name = key.metadata.name.as_deref().expect("name");
        if key.spec.owner.kind == OwnerKind::ServiceAccount {
            assert!(
                service_accounts.contains(&key.spec.owner.name),
                "{name}'s owner ServiceAccount is not in the examples"
            );
            assert!(!key.spec.scopes.is_empty(), "{name} shows scopes");
            assert!(
                !key.spec.allowed_origins.is_empty(),
                "{name} shows allowedOrigins"
            );
        }
        if let Some(policy) = &key.spec.policy_name {
            assert!(
                policies
                    .iter()
                    .any(|p| p.metadata.name.as_ref() == Some(policy)),
                "{name} names policy {policy}, which the examples lack"
            );
        }
    }

    let deployments = of_kind(&objects, "Deployment");
    assert_eq!(deployments.len(), 1);
    let pod = &deployments[0]["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    assert!(
        service_accounts.contains(account),
        "workload runs as unknown {account}"
    );

    let mut mounted = false;
    for volume in pod["volumes"].as_array().expect("volumes") {
        if let Some(secret) = volume["secret"]["secretName"].as_str() {
            secret_of(&keys, secret);
            mounted = true;
        }
    }
    assert!(mounted, "the workload mounts the key's Secret as files");

    let mut env_refs = 0;
    for container in pod["containers"].as_array().expect("containers") {
        for env in container["env"].as_array().into_iter().flatten() {
            let reference = &env["valueFrom"]["secretKeyRef"];
            let Some(secret) = reference["name"].as_str() else {
                continue;
            };
            let key = secret_of(&keys, secret);
            let data_key = reference["key"].as_str().expect("secretKeyRef.key");
            let basic_auth = key.spec.secret.type_ == SecretType::BasicAuth;
            assert!(
                SECRET_DATA_KEYS.contains(&data_key)
                    || (basic_auth && BASIC_AUTH_DATA_KEYS.contains(&data_key)),
                "the workload reads `{data_key}`, which keywarden does not write into {secret}"
            );
            env_refs += 1;
        }
    }
    assert!(
        env_refs > 0,
        "the workload also shows the environment-variable way"
    );
}

/// The AccessKey whose credentials go to the Secret `secret`.
fn secret_of<'a>(keys: &'a [AccessKey], secret: &str) -> &'a AccessKey {
    keys.iter()
        .find(|key| {
            let name = key.metadata.name.clone().expect("name");
            let written = key
                .spec
                .secret
                .name
                .clone()
                .unwrap_or(format!("{name}-access-key"));
            written == secret
        })
        .unwrap_or_else(|| panic!("no example AccessKey writes the Secret {secret}"))
}

#[test]
fn envoy_example_checks_every_request_with_the_verifier() {
    let config = documents(&examples_dir().join("envoy/ext-authz.yaml"));
    let config = &config[0];
    let listener = &config["static_resources"]["listeners"][0];
    let manager = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    let filters = manager["http_filters"].as_array().expect("http_filters");
    let names: Vec<_> = filters.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "keywarden.strip",
            "keywarden.check.view",
            "keywarden.check.manage",
            "envoy.filters.http.router"
        ],
        "client headers are stripped, then checked, before the router"
    );
    let clusters = config["static_resources"]["clusters"]
        .as_array()
        .expect("clusters");
    for filter in &filters[1..3] {
        let authz = &filter["typed_config"];
        assert_eq!(
            authz["failure_mode_allow"], false,
            "a verifier outage must deny"
        );
        let service = &authz["http_service"];
        assert_eq!(service["path_prefix"], "/v1/check");
        let cluster = service["server_uri"]["cluster"].as_str().expect("cluster");
        let verifier = clusters
            .iter()
            .find(|c| c["name"] == cluster)
            .expect("the verifier cluster is defined");
        let address = &verifier["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(address["address"], "127.0.0.1");
        assert_eq!(address["port_value"], 8080);

        let request = &service["authorization_request"];
        let forwarded: Vec<_> = request["allowed_headers"]["patterns"]
            .as_array()
            .expect("allowed_headers")
            .iter()
            .filter_map(|p| p["exact"].as_str())
            .collect();
        assert!(forwarded.contains(&"authorization") && forwarded.contains(&"origin"));
        assert!(
            !forwarded.contains(&"x-keywarden-required-scope"),
            "clients must not choose the required scope"
        );
        let added = request["headers_to_add"]
            .as_array()
            .expect("headers_to_add");
        assert!(added
            .iter()
            .any(|h| h["key"] == "x-keywarden-required-scope"));
    }
    // why: what reaches the verifier and the API is checked against the real verifier in
    // tests/verifier_contracts.rs.
}

#[test]
fn nginx_example_passes_nginx_configuration_test() {
    let Some(nginx) = on_path("nginx") else {
        missing_proxy("nginx", "apt-get install nginx-light");
        return;
    };
    let prefix = tempfile::tempdir().expect("temp dir");
    let pid = prefix.path().join("nginx.pid");
    run(Command::new(nginx)
        .arg("-t")
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg(examples_dir().join("nginx/nginx.conf"))
        .arg("-g")
        .arg(format!("pid {}; error_log stderr;", pid.display())));
}

#[test]
fn caddyfile_example_adapts_to_a_valid_caddy_config() {
    let Some(caddy) = on_path("caddy") else {
        missing_proxy("caddy", "apt-get install caddy");
        return;
    };
    let output = run(Command::new(caddy)
        .args(["adapt", "--validate", "--adapter", "caddyfile", "--config"])
        .arg(examples_dir().join("caddy/Caddyfile")));
    let config: Value = serde_json::from_slice(&output.stdout).expect("caddy adapt prints JSON");
    let text = config.to_string();
    assert!(
        text.contains("\"uri\":\"/v1/check\""),
        "forward_auth asks /v1/check: {text}"
    );
    assert!(
        text.contains("127.0.0.1:8080"),
        "forward_auth targets the verifier: {text}"
    );
}
