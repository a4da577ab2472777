//! The chart grants the controller the rights the rollout opt-in needs only when
//! `rollout.enabled` is set, and then turns the opt-in on.

mod tools;

use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;

fn render(helm: &Path, values: &[&str]) -> Vec<Value> {
    let output = tools::run(
        Command::new(helm)
            .args(["template", "keywarden"])
            .arg(tools::repo_root().join("charts/keywarden"))
            .args(["--namespace", "keywarden-system"])
            .args(values),
    );
    let text = String::from_utf8(output.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde_json::to_value(serde_yaml::Value::deserialize(d).unwrap()).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The controller's ClusterRole rules on API group `apps`, and its `KEYWARDEN_ROLLOUT` value.
fn rollout_rights(objects: &[Value]) -> (Vec<Value>, Option<String>) {
    let role = objects
        .iter()
        .find(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == "keywarden-controller")
        .expect("the controller's ClusterRole");
    let apps = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"].to_string().contains("apps"))
        .cloned()
        .collect();
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == "keywarden-controller")
        .expect("the controller's Deployment");
    let env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "KEYWARDEN_ROLLOUT")
        .map(|e| e["value"].as_str().unwrap().to_string());
    (apps, env)
}

#[test]
fn the_controller_may_restart_workloads_only_when_rollout_is_enabled() {
    let Some(helm) = tools::helm_binary() else {
        tools::missing_tool("helm", "run scripts/ensure-kube-tools.sh");
        return;
    };
    let (apps, env) = rollout_rights(&render(&helm, &[]));
    assert!(apps.is_empty(), "{apps:?}");
    assert_eq!(env, None);

    let (apps, env) = rollout_rights(&render(&helm, &["--set", "rollout.enabled=true"]));
    assert_eq!(
        apps,
        vec![serde_json::json!({
            "apiGroups": ["apps"],
            "resources": ["deployments", "statefulsets", "daemonsets"],
            "verbs": ["get", "list", "patch"],
        })]
    );
    assert_eq!(env.as_deref(), Some("true"));
}
