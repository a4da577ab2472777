//! `examples/gitops/`: the Argo CD Application and the Flux Kustomization that deploy a policy,
//! a key and its workload are valid for their tools (the upstream CRD schemas vendored in
//! `tests/schemas/`, unknown fields refused), the built-in objects for Kubernetes, keywarden's
//! for `crds/`, and they point at the directory that holds them.

mod tools;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

use keywarden::api::{AccessKey, AccessKeyPolicy};
use tools::{missing_tool, repo_root, run};

fn gitops_dir() -> PathBuf {
    repo_root().join("examples/gitops")
}

/// Every manifest of `examples/gitops/`, sorted.
fn manifest_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in [gitops_dir(), gitops_dir().join("keys")] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "yaml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|document| serde_json::to_value(serde_yaml::Value::deserialize(document).unwrap()))
        .map(Result::unwrap)
        .filter(|value| !value.is_null())
        .collect()
}

fn objects() -> Vec<(PathBuf, Value)> {
    manifest_files()
        .into_iter()
        .flat_map(|path| documents(&path).into_iter().map(move |o| (path.clone(), o)))
        .collect()
}

fn kind_of(object: &Value) -> (String, String) {
    let field = |name: &str| object[name].as_str().unwrap_or_default().to_string();
    (field("apiVersion"), field("kind"))
}

/// The vendored upstream schemas, by (apiVersion, kind).
const VENDORED: &[(&str, &str, &str)] = &[
    (
        "argoproj.io/v1alpha1",
        "Application",
        "argoproj.io_v1alpha1_Application.json",
    ),
    (
        "kustomize.toolkit.fluxcd.io/v1",
        "Kustomization",
        "kustomize.toolkit.fluxcd.io_v1_Kustomization.json",
    ),
    (
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        "source.toolkit.fluxcd.io_v1_GitRepository.json",
    ),
];

const BUILT_IN: &[(&str, &str)] = &[
    ("v1", "Namespace"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
];

const KEYWARDEN: &[(&str, &str)] = &[
    ("keywarden.io/v1alpha1", "AccessKey"),
    ("keywarden.io/v1alpha1", "AccessKeyPolicy"),
];

/// kustomize's own file, read by Argo CD and Flux, never applied.
const KUSTOMIZE: (&str, &str) = ("kustomize.config.k8s.io/v1beta1", "Kustomization");

/// Validates objects against JSON schemas with `jsonschema`, and refuses fields a schema does
/// not declare (the API server would prune them silently: a typo would pass unnoticed).
/// Arguments: `apiVersion|kind|schema.json` triples joined by commas, then the manifests.
const SCHEMA_CHECK: &str = r#"
import sys, json, yaml, jsonschema
schemas = {}
for entry in sys.argv[1].split(","):
    api_version, kind, path = entry.split("|")
    schemas[(api_version, kind)] = json.load(open(path))
def unknown(obj, schema, at):
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict) and "properties" in schema:
        found = []
        for key, value in obj.items():
            if key in schema["properties"]:
                found += unknown(value, schema["properties"][key], at + [key])
            elif not at and key in ("apiVersion", "kind", "metadata"):
                continue  # implied for every object (kube-rs CRDs leave them out)
            elif not schema.get("additionalProperties"):
                found.append(".".join(at + [key]) + ": unknown field")
        return found
    if isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        return [e for k, v in obj.items() for e in unknown(v, schema["additionalProperties"], at + [k])]
    if isinstance(obj, list) and "items" in schema:
        return [e for i, v in enumerate(obj) for e in unknown(v, schema["items"], at + [str(i)])]
    return []
errors = 0
for path in sys.argv[2:]:
    for obj in yaml.safe_load_all(open(path)):
        if not obj or (obj["apiVersion"], obj["kind"]) not in schemas:
            continue
        name = obj["kind"] + "/" + obj["metadata"]["name"]
        schema = schemas[(obj["apiVersion"], obj["kind"])]
        found = [".".join(map(str, e.absolute_path)) + ": " + e.message
                 for e in jsonschema.Draft7Validator(schema).iter_errors(obj)]
        found += unknown(obj, schema, [])
        for error in found:
            print(f"{path}: {name}: {error}")
        errors += len(found)
        if not found:
            print("valid " + name)
sys.exit(1 if errors else 0)
"#;

fn schema_check(python: &Path, schemas: &[(String, String, PathBuf)], files: &[PathBuf]) -> String {
    let schemas: Vec<String> = schemas
        .iter()
        .map(|(v, k, p)| format!("{v}|{k}|{}", p.display()))
        .collect();
    let output = run(Command::new(python)
        .args(["-c", SCHEMA_CHECK, &schemas.join(",")])
        .args(files));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn crd_schemas(dir: &Path) -> Vec<(String, String, PathBuf)> {
    let mut schemas = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        for crd in documents(&path) {
            let group = crd["spec"]["group"].as_str().unwrap();
            let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
            for version in crd["spec"]["versions"].as_array().unwrap() {
                let schema = &version["schema"]["openAPIV3Schema"];
                let out = std::env::temp_dir().join(format!(
                    "keywarden-crd-{}-{group}-{kind}-{}.json",
                    std::process::id(),
                    version["name"].as_str().unwrap()
                ));
                std::fs::write(&out, serde_json::to_vec(schema).unwrap()).unwrap();
                let api_version = format!("{group}/{}", version["name"].as_str().unwrap());
                schemas.push((api_version, kind.to_string(), out));
            }
        }
    }
    schemas
}

fn assert_all_valid(report: &str, kinds: &[(&str, &str)]) {
    for (_, object) in objects() {
        let (api_version, kind) = kind_of(&object);
        if kinds.contains(&(api_version.as_str(), kind.as_str())) {
            let name = object["metadata"]["name"].as_str().unwrap();
            assert!(
                report.lines().any(|l| l == format!("valid {kind}/{name}")),
                "{kind}/{name} not validated:\n{report}"
            );
        }
    }
}

#[test]
fn every_object_is_of_a_kind_the_gitops_examples_may_use() {
    let objects = objects();
    let kinds: BTreeSet<(String, String)> = objects.iter().map(|(_, o)| kind_of(o)).collect();
    for (api_version, kind) in &kinds {
        let known = VENDORED
            .iter()
            .any(|(v, k, _)| (v, k) == (&api_version.as_str(), &kind.as_str()))
            || BUILT_IN.contains(&(api_version.as_str(), kind.as_str()))
            || KEYWARDEN.contains(&(api_version.as_str(), kind.as_str()))
            || (api_version.as_str(), kind.as_str()) == KUSTOMIZE;
        assert!(
            known,
            "{kind} ({api_version}) is not a kind the examples may use"
        );
    }
    for (api_version, kind, _) in VENDORED {
        assert!(
            kinds.contains(&(api_version.to_string(), kind.to_string())),
            "no {kind} example"
        );
    }
    for (path, object) in &objects {
        match kind_of(object).1.as_str() {
            "AccessKey" => {
                let key: AccessKey = serde_json::from_value(object.clone()).unwrap();
                // why: these belong to `kubectl keywarden`; set in Git, a sync would undo the
                // plugin's rotations and deactivations.
                for field in ["rotateGeneration", "active", "reactivateGeneration"] {
                    assert!(
                        object["spec"].get(field).is_none(),
                        "{}: {field} belongs out of Git",
                        path.display()
                    );
                }
                assert!(key.metadata.namespace.is_some());
            }
            "AccessKeyPolicy" => {
                serde_json::from_value::<AccessKeyPolicy>(object.clone()).unwrap();
            }
            "Secret" => panic!("{}: the controller writes key Secrets", path.display()),
            _ => {}
        }
    }
}

#[test]
fn argo_cd_and_flux_objects_match_their_upstream_schemas() {
    let Some(python) = tools::chart_tools_python() else {
        missing_tool("the chart tools venv", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let schemas: Vec<(String, String, PathBuf)> = VENDORED
        .iter()
        .map(|(v, k, file)| {
            let path = repo_root().join("tests/schemas").join(file);
            (v.to_string(), k.to_string(), path)
        })
        .collect();
    let report = schema_check(&python, &schemas, &manifest_files());
    let vendored: Vec<(&str, &str)> = VENDORED.iter().map(|(v, k, _)| (*v, *k)).collect();
    assert_all_valid(&report, &vendored);
}

#[test]
fn a_typo_in_an_argo_cd_application_is_refused() {
    let Some(python) = tools::chart_tools_python() else {
        missing_tool("the chart tools venv", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let original = std::fs::read_to_string(gitops_dir().join("argocd-application.yaml")).unwrap();
    let typo = original.replace("syncOptions:", "syncOption:");
    assert_ne!(typo, original);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("application.yaml");
    std::fs::write(&file, typo).unwrap();
    let schema = repo_root().join("tests/schemas/argoproj.io_v1alpha1_Application.json");
    let output = Command::new(python)
        .args([
            "-c",
            SCHEMA_CHECK,
            &format!("argoproj.io/v1alpha1|Application|{}", schema.display()),
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("syncOption: unknown field"));
}

#[test]
fn keywarden_objects_match_the_crd_schemas() {
    let Some(python) = tools::chart_tools_python() else {
        missing_tool("the chart tools venv", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let schemas = crd_schemas(&repo_root().join("crds"));
    let report = schema_check(&python, &schemas, &manifest_files());
    for (_, _, path) in schemas {
        let _ = std::fs::remove_file(path);
    }
    assert_all_valid(&report, KEYWARDEN);
}

#[test]
fn built_in_objects_are_schema_valid() {
    let Some(validator) = tools::kubernetes_validate() else {
        missing_tool("kubernetes-validate", "run scripts/ensure-chart-tools.sh");
        return;
    };
    let files: Vec<PathBuf> = manifest_files()
        .into_iter()
        .filter(|path| {
            documents(path)
                .iter()
                .any(|o| BUILT_IN.contains(&(kind_of(o).0.as_str(), kind_of(o).1.as_str())))
        })
        .collect();
    let output = run(Command::new(validator)
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(&files));
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for (_, object) in objects() {
        let (api_version, kind) = kind_of(&object);
        if BUILT_IN.contains(&(api_version.as_str(), kind.as_str())) {
            let name = object["metadata"]["name"].as_str().unwrap();
            let passed = format!("passed for resource {}/{name}", kind.to_lowercase());
            assert!(report.contains(&passed), "{kind}/{name}:\n{report}");
        }
    }
}

#[test]
fn argo_cd_and_flux_deploy_the_kustomization_that_lists_every_manifest() {
    let keys_dir = gitops_dir().join("keys");
    let kustomization = &documents(&keys_dir.join("kustomization.yaml"))[0];
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(&keys_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);

    let mut paths = Vec::new();
    for (_, object) in objects() {
        match kind_of(&object).1.as_str() {
            "Application" => {
                paths.push(
                    object["spec"]["source"]["path"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                );
                let options = object["spec"]["syncPolicy"]["syncOptions"].to_string();
                assert!(options.contains("ServerSideApply=true"), "{options}");
            }
            "Kustomization" if object["apiVersion"] != KUSTOMIZE.0 => {
                paths.push(object["spec"]["path"].as_str().unwrap().to_string());
                assert_eq!(object["spec"]["wait"], true);
            }
            _ => {}
        }
    }
    assert_eq!(paths.len(), 2, "{paths:?}");
    for path in paths {
        let dir = repo_root().join(path.trim_start_matches("./"));
        assert_eq!(dir, keys_dir, "{path}");
    }
}
