//! `kubectl keywarden` next to a GitOps tool (devcluster, or `KEYWARDEN_TEST_KUBECONFIG`): the
//! GitOps applier is `kubectl apply --server-side --force-conflicts` under its own field manager,
//! as Argo CD and Flux apply; the plugin binary rotates and deactivates between its syncs, and
//! the controller acts on every rotation.

mod support;
mod tools;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keywarden::api::{AccessKey, Phase};
use support::TestCluster;

/// The field manager of the simulated GitOps tool.
const GITOPS_MANAGER: &str = "gitops-sync";

struct Tools {
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    dir: PathBuf,
}

impl Tools {
    /// A GitOps sync of `manifest`.
    fn sync(&self, manifest: &str) {
        let file = self.dir.join("key.yaml");
        std::fs::write(&file, manifest).unwrap();
        tools::run(
            Command::new(&self.kubectl)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(["apply", "--server-side", "--force-conflicts"])
                .arg(format!("--field-manager={GITOPS_MANAGER}"))
                .args(["-n", &self.namespace, "-f"])
                .arg(&file),
        );
    }

    fn plugin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kubectl-keywarden"))
            .args(args)
            .args(["-n", &self.namespace, "--kubeconfig"])
            .arg(&self.kubeconfig)
            .output()
            .unwrap()
    }

    fn plugin_ok(&self, args: &[&str]) -> String {
        let output = self.plugin(args);
        assert!(
            output.status.success(),
            "kubectl keywarden {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

fn manifest(extra_spec: &str) -> String {
    format!(
        "apiVersion: keywarden.io/v1alpha1\nkind: AccessKey\nmetadata:\n  name: ci\nspec:\n  \
         owner: {{kind: User, name: alice}}\n  displayName: CI\n{extra_spec}"
    )
}

fn observed_rotation(key: &AccessKey) -> Option<i64> {
    key.status.as_ref()?.observed_rotate_generation
}

fn access_id(key: &AccessKey) -> String {
    key.status
        .as_ref()
        .and_then(|s| s.access_key_id.clone())
        .unwrap()
}

async fn rotated_to(cluster: &TestCluster, generation: i64) -> AccessKey {
    cluster
        .wait_key("ci", &format!("rotation {generation}"), |k| {
            observed_rotation(k) == Some(generation) && k.status.as_ref().unwrap().phase.is_some()
        })
        .await
}

fn kubeconfig(cluster: &TestCluster, dir: &Path) -> PathBuf {
    cluster.write_kubeconfig(dir).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("KEYWARDEN_TEST_KUBECONFIG").expect("a cluster"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_fields_survive_gitops_syncs_and_git_wins_where_it_sets_them() {
    let Some(kubectl) = tools::kubectl_binary() else {
        tools::missing_tool("kubectl", "run scripts/ensure-kube-tools.sh");
        return;
    };
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let tools = Tools {
        kubectl,
        kubeconfig: kubeconfig(&cluster, dir.path()),
        namespace: cluster.namespace.clone(),
        dir: dir.path().to_path_buf(),
    };
    let _controller = cluster.start_controller();
    let in_git = manifest("");
    tools.sync(&in_git);
    let issued = cluster.wait_phase("ci", Phase::Active).await;
    let mut seen = vec![access_id(&issued)];

    // Several rotations in a row, each followed by a sync of a manifest that leaves the field out.
    for generation in 1..=3 {
        let out = tools.plugin_ok(&["rotate", "ci"]);
        assert!(
            out.contains(&format!("rotateGeneration={generation}")),
            "{out}"
        );
        tools.sync(&in_git);
        let key = rotated_to(&cluster, generation).await;
        assert_eq!(key.spec.rotate_generation, generation, "the sync kept it");
        assert!(
            !seen.contains(&access_id(&key)),
            "rotation {generation} issued anew"
        );
        seen.push(access_id(&key));
    }

    // A deactivation survives the sync, and the next rotation re-applies it.
    tools.plugin_ok(&["deactivate", "ci"]);
    tools.sync(&in_git);
    cluster.wait_phase("ci", Phase::Inactive).await;
    tools.plugin_ok(&["rotate", "ci"]);
    tools.sync(&in_git);
    let key = rotated_to(&cluster, 4).await;
    assert!(!key.spec.active, "the rotation released spec.active");
    assert_eq!(key.status.unwrap().phase, Some(Phase::Inactive));

    // Git sets rotateGeneration: Git wins, and the plugin says so instead of forcing.
    tools.sync(&manifest("  rotateGeneration: 6\n"));
    rotated_to(&cluster, 6).await;
    let refused = tools.plugin(&["rotate", "ci"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("spec.rotateGeneration") && stderr.contains(GITOPS_MANAGER),
        "{stderr}"
    );
    assert_eq!(
        cluster
            .keys()
            .get("ci")
            .await
            .unwrap()
            .spec
            .rotate_generation,
        6
    );

    // Git drops the field again: it falls back to 0, and the next bump still rotates.
    tools.sync(&in_git);
    let released = cluster
        .wait_key("ci", "rotateGeneration released", |k| {
            k.spec.rotate_generation == 0
        })
        .await;
    assert_eq!(observed_rotation(&released), Some(6));
    let out = tools.plugin_ok(&["rotate", "ci"]);
    assert!(out.contains("rotateGeneration=7"), "{out}");
    tools.sync(&in_git);
    let key = rotated_to(&cluster, 7).await;
    assert!(!seen.contains(&access_id(&key)));

    tools.plugin_ok(&["activate", "ci"]);
    tools.sync(&in_git);
    cluster.wait_phase("ci", Phase::Active).await;
}
