//! The chart ships exactly the repository's CRDs (generated from the Rust types) and runs the
//! image the Dockerfile builds, as the user the Dockerfile sets.

mod tools;

use std::path::{Path, PathBuf};

use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::Value;
use tools::repo_root;

fn chart_dir() -> PathBuf {
    repo_root().join("charts/keywarden")
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

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| object["kind"] == kind && object["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

/// The chart's CRD files, by file name.
fn yaml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(&path).expect("readable CRD file");
            (name, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn chart_crds_are_exact_copies_of_repository_crds() {
    let repository = yaml_files(&repo_root().join("crds"));
    let chart = yaml_files(&chart_dir().join("crds"));
    assert!(
        !repository.is_empty(),
        "crds/ holds no CRD: run `keywarden crdgen`"
    );
    assert!(
        repository == chart,
        "charts/keywarden/crds differs from crds/: run `cp crds/*.yaml charts/keywarden/crds/`"
    );
}

#[test]
fn chart_crds_match_the_rust_types() {
    let chart: Vec<Value> = yaml_files(&chart_dir().join("crds"))
        .iter()
        .flat_map(|(_, text)| documents(text))
        .collect();
    for generated in [
        keywarden::api::AccessKey::crd(),
        keywarden::api::AccessKeyPolicy::crd(),
    ] {
        let name = generated.metadata.name.clone().expect("CRD name");
        let generated = serde_json::to_value(&generated).expect("CRD serializes");
        let shipped = find(&chart, "CustomResourceDefinition", &name);
        assert!(
            *shipped == generated,
            "chart CRD {name} is stale: run `keywarden crdgen` and copy crds/ into the chart"
        );
    }
}

#[test]
fn dockerfile_builds_both_binaries_into_a_non_root_image_the_chart_runs_as() {
    let dockerfile =
        std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile exists");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(
        stages.len(),
        2,
        "a builder stage and a runtime stage: {stages:?}"
    );
    assert!(
        stages[1].contains("distroless"),
        "runtime stage: {}",
        stages[1]
    );
    for binary in ["keywarden", "kubectl-keywarden"] {
        assert!(
            dockerfile.contains(&format!("--bin {binary}")),
            "{binary} is not built"
        );
        assert!(
            dockerfile.contains(&format!("/usr/local/bin/{binary}")),
            "{binary} is not in the image"
        );
    }
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("the image sets a USER");
    let values: Value = serde_yaml::from_str(
        &std::fs::read_to_string(chart_dir().join("values.yaml")).expect("values.yaml"),
    )
    .expect("values.yaml parses");
    let run_as = &values["podSecurityContext"];
    assert_eq!(
        user,
        format!("{}:{}", run_as["runAsUser"], run_as["runAsGroup"]),
        "the chart runs the image as its own non-root user"
    );
    let entrypoint = dockerfile
        .lines()
        .find(|line| line.starts_with("ENTRYPOINT"))
        .expect("ENTRYPOINT");
    assert!(
        entrypoint.contains("/usr/local/bin/keywarden"),
        "the chart's args (`controller`, `verifier`) go to keywarden: {entrypoint}"
    );
}
