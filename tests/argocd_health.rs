//! Argo CD health checks (`integrations/argocd/`), run by a real Lua 5.1 interpreter: every
//! fixture in `health_test.yaml` gets the health it names, the `argocd-cm` snippet is the shipped
//! scripts, and the fixtures are what the controller writes (each state reached on a cluster).
//!
//! `KEYWARDEN_RECORD_ARGOCD_FIXTURES=1` rewrites the recorded fixtures from the live objects.

mod support;
mod tools;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::Resource;
use serde::Deserialize;
use serde_json::Value;

use keywarden::api::conditions::types;
use keywarden::api::{AccessKey, AccessKeyPolicy, Phase};
use support::{condition, KeyBuilder, PolicyBuilder, TestCluster};

const CUSTOMIZATIONS: &str = "integrations/argocd/resource_customizations/keywarden.io";
const KINDS: [&str; 2] = ["AccessKey", "AccessKeyPolicy"];

/// One entry of Argo CD's `health_test.yaml`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

/// What a health script returns.
#[derive(Deserialize, Debug, PartialEq, Eq, Clone)]
struct Health {
    status: String,
    message: String,
}

fn kind_dir(kind: &str) -> PathBuf {
    tools::repo_root().join(CUSTOMIZATIONS).join(kind)
}

fn health_tests(kind: &str) -> Vec<HealthTest> {
    let text = std::fs::read_to_string(kind_dir(kind).join("health_test.yaml")).unwrap();
    serde_yaml::from_str::<HealthTests>(&text).unwrap().tests
}

fn lua() -> Option<PathBuf> {
    let found = tools::on_path("lua5.1");
    if found.is_none() {
        tools::missing_tool("lua5.1", "run scripts/ensure-lua.sh");
    }
    found
}

/// A JSON value as a Lua table constructor, as Argo CD hands objects to its scripts (`null` is
/// `nil`, arrays are 1-based tables).
fn to_lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(to_lua).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), to_lua(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for byte in s.bytes() {
        match byte {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(byte as char);
            }
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\{byte}")),
        }
    }
    out.push('"');
    out
}

/// Runs `kind`'s health.lua on `obj` with the Lua interpreter, as Argo CD runs it (`obj` global).
fn health(lua: &Path, kind: &str, obj: &Value) -> Health {
    let script = std::fs::read_to_string(kind_dir(kind).join("health.lua")).unwrap();
    let program = format!(
        "obj = {}\nlocal function health()\n{script}\nend\nlocal hs = health()\n\
         io.write(hs.status, \"\\n\", hs.message)\n",
        to_lua(obj)
    );
    let mut child = Command::new(lua)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(program.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let (status, message) = stdout.split_once('\n').expect("status and message");
    Health {
        status: status.into(),
        message: message.into(),
    }
}

fn fixture(kind: &str, input_path: &str) -> Value {
    let text = std::fs::read_to_string(kind_dir(kind).join(input_path)).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn every_fixture_gets_the_health_its_test_names() {
    let Some(lua) = lua() else { return };
    for kind in KINDS {
        let tests = health_tests(kind);
        let mut listed = BTreeSet::new();
        for test in &tests {
            let got = health(&lua, kind, &fixture(kind, &test.input_path));
            assert_eq!(got, test.health_status, "{kind} {}", test.input_path);
            listed.insert(test.input_path.clone());
        }
        let on_disk: BTreeSet<String> = std::fs::read_dir(kind_dir(kind).join("testdata"))
            .unwrap()
            .map(|e| format!("testdata/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        assert_eq!(listed, on_disk, "{kind}: every fixture has a test");
        let statuses: BTreeSet<&str> = tests
            .iter()
            .map(|t| t.health_status.status.as_str())
            .collect();
        for expected in ["Healthy", "Progressing", "Degraded"] {
            assert!(statuses.contains(expected), "{kind} has no {expected} case");
        }
    }
}

#[test]
fn the_argocd_cm_snippet_is_the_shipped_health_checks() {
    let path = tools::repo_root().join("integrations/argocd/argocd-cm.yaml");
    let cm: Value = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    for kind in KINDS {
        let script = std::fs::read_to_string(kind_dir(kind).join("health.lua")).unwrap();
        let key = format!("resource.customizations.health.keywarden.io_{kind}");
        assert_eq!(cm["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
}

/// The conditions of an object as (type, status, reason), what its health is decided from.
fn condition_states(obj: &Value) -> BTreeSet<(String, String, String)> {
    obj["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            let field = |name: &str| c[name].as_str().unwrap_or_default().to_string();
            (field("type"), field("status"), field("reason"))
        })
        .collect()
}

/// Where live objects are compared with the recorded fixtures.
struct Fixtures {
    lua: PathBuf,
    /// Test-specific names and what the recorded fixtures call them instead.
    renames: Vec<(String, String)>,
}

impl Fixtures {
    /// Compares a live object with the fixture recorded for its state (or records it).
    fn assert_live(&self, kind: &str, input_path: &str, live: Value) {
        assert_fixture_is_live(&self.lua, &self.renames, kind, input_path, live);
    }
}

fn assert_fixture_is_live(
    lua: &Path,
    renames: &[(String, String)],
    kind: &str,
    input_path: &str,
    mut live: Value,
) {
    if let Some(meta) = live["metadata"].as_object_mut() {
        meta.remove("managedFields");
    }
    let path = kind_dir(kind).join(input_path);
    if std::env::var_os("KEYWARDEN_RECORD_ARGOCD_FIXTURES").is_some() {
        let mut text = serde_yaml::to_string(&live).unwrap();
        for (from, to) in renames {
            text = text.replace(from, to);
        }
        std::fs::write(&path, text).unwrap();
    }
    let recorded = fixture(kind, input_path);
    let expected = health_tests(kind)
        .into_iter()
        .find(|t| t.input_path == input_path)
        .unwrap_or_else(|| panic!("{input_path} is not in {kind}'s health_test.yaml"));
    assert_eq!(
        health(lua, kind, &live).status,
        expected.health_status.status,
        "{kind} {input_path}: the live object's health; live object: {live:#}"
    );
    assert_eq!(
        condition_states(&live),
        condition_states(&recorded),
        "{kind} {input_path}: the fixture's conditions are not what the controller writes"
    );
}

async fn live_key(cluster: &TestCluster, name: &str) -> Value {
    serde_json::to_value(cluster.keys().get(name).await.unwrap()).unwrap()
}

fn stalled_is_true(key: &AccessKey) -> bool {
    condition(key, types::STALLED).is_some_and(|(status, _)| status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fixtures_are_the_objects_the_controller_writes_in_each_state() {
    let Some(lua) = lua() else { return };
    let cluster = TestCluster::start().await;
    let suffix = support::random_suffix();
    let single = format!("single-{suffix}");
    let short = format!("short-{suffix}");
    let narrow = format!("narrow-{suffix}");
    let missing = format!("missing-{suffix}");
    let fixtures = Fixtures {
        lua,
        renames: vec![
            (cluster.namespace.clone(), "team-a".into()),
            (suffix.clone(), "example".into()),
        ],
    };
    cluster
        .create_policy(&PolicyBuilder::new(&single).max_keys(1).build())
        .await;
    cluster
        .create_policy(&PolicyBuilder::new(&short).expire_after("2s").build())
        .await;
    cluster
        .create_policy(
            &PolicyBuilder::new(&narrow)
                .allowed_scopes(&["logs:view"])
                .build(),
        )
        .await;
    cluster
        .create_key(&KeyBuilder::new("ci", "alice").policy(&single).build())
        .await;
    let policies = cluster.policies();
    let unobserved = serde_json::to_value(policies.get(&single).await.unwrap()).unwrap();
    fixtures.assert_live(
        "AccessKeyPolicy",
        "testdata/progressing_noStatus.yaml",
        unobserved,
    );
    fixtures.assert_live(
        "AccessKey",
        "testdata/progressing_noStatus.yaml",
        live_key(&cluster, "ci").await,
    );

    let _controller = cluster.start_controller();
    cluster.wait_phase("ci", Phase::Active).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/healthy_active.yaml",
        live_key(&cluster, "ci").await,
    );
    let accepted = support::wait_for(&policies, &single, "Accepted", |p: &AccessKeyPolicy| {
        p.status.as_ref().and_then(|s| s.observed_generation) == p.meta().generation
    })
    .await;
    fixtures.assert_live(
        "AccessKeyPolicy",
        "testdata/healthy_accepted.yaml",
        serde_json::to_value(accepted).unwrap(),
    );

    cluster
        .create_key(&KeyBuilder::new("second", "alice").policy(&single).build())
        .await;
    cluster.wait_phase("second", Phase::Rejected).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/degraded_limitExceeded.yaml",
        live_key(&cluster, "second").await,
    );

    cluster
        .keys()
        .patch(
            "ci",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"active": false}})),
        )
        .await
        .unwrap();
    cluster.wait_phase("ci", Phase::Inactive).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/suspended_deactivated.yaml",
        live_key(&cluster, "ci").await,
    );

    cluster
        .create_key(&KeyBuilder::new("orphan", "bob").policy(&missing).build())
        .await;
    cluster.wait_key("orphan", "Stalled", stalled_is_true).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/degraded_policyNotFound.yaml",
        live_key(&cluster, "orphan").await,
    );

    cluster
        .create_key(
            &KeyBuilder::new("greedy", "bob")
                .policy(&narrow)
                .scopes(&["collectors:manage"])
                .build(),
        )
        .await;
    cluster.wait_key("greedy", "Stalled", stalled_is_true).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/degraded_scopeNotAllowed.yaml",
        live_key(&cluster, "greedy").await,
    );

    cluster
        .create_key(&KeyBuilder::new("lost", "carol").build())
        .await;
    cluster.wait_phase("lost", Phase::Active).await;
    Api::<Secret>::namespaced(cluster.client.clone(), &cluster.namespace)
        .delete("lost-access-key", &DeleteParams::default())
        .await
        .unwrap();
    cluster.wait_key("lost", "Stalled", stalled_is_true).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/degraded_secretMissing.yaml",
        live_key(&cluster, "lost").await,
    );

    cluster
        .create_key(&KeyBuilder::new("brief", "dave").policy(&short).build())
        .await;
    cluster.wait_phase("brief", Phase::Expired).await;
    fixtures.assert_live(
        "AccessKey",
        "testdata/degraded_expired.yaml",
        live_key(&cluster, "brief").await,
    );

    for policy in [&single, &short, &narrow] {
        let _ = policies.delete(policy, &DeleteParams::default()).await;
    }
}
