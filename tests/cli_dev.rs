//! `keywarden dev` end to end: the real binary starts devcluster, installs the CRDs, runs the
//! controller and verifier, applies example manifests, writes a kubeconfig, and a key it issued
//! is accepted by its verifier; SIGTERM stops everything cleanly.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Upper bound for each wait below; it only bounds waiting, nothing is timed.
const WAIT: Duration = Duration::from_secs(120);

const EXAMPLES: &str = "\
apiVersion: keywarden.io/v1alpha1
kind: AccessKeyPolicy
metadata:
  name: default
  annotations: {keywarden.io/default-policy: \"true\"}
spec:
  maxKeysPerOwner: 3
---
apiVersion: keywarden.io/v1alpha1
kind: AccessKey
metadata: {name: dev-test, namespace: team-dev}
spec:
  owner: {kind: User, name: alice}
";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_issues_example_keys_that_its_verifier_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let examples = dir.path().join("examples");
    std::fs::create_dir(&examples).unwrap();
    std::fs::write(examples.join("keys.yaml"), EXAMPLES).unwrap();
    std::fs::write(examples.join("README.md"), "not a manifest").unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let verifier = format!("127.0.0.1:{}", free_port());

    let mut dev = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(["dev", "--disable-leader-election", "--listen", &verifier])
        .arg("--probe-addr")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--examples")
        .arg(&examples)
        .arg("--kubeconfig-out")
        .arg(&kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let mut lines = BufReader::new(dev.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            printed.push_str(&line);
            printed.push('\n');
            if line.contains("/v1/check") {
                break;
            }
        }
    })
    .await
    .expect("dev printed its next steps");
    assert!(
        printed.contains(&format!("export KUBECONFIG={}", kubeconfig.display())),
        "{printed}"
    );
    assert!(printed.contains("kubectl get ak"), "{printed}");
    assert!(
        printed.contains(&format!("http://{verifier}/v1/check")),
        "{printed}"
    );

    let client = client_from(&kubeconfig).await;
    let secrets: Api<Secret> = Api::namespaced(client, "team-dev");
    let token = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Some(secret)) = secrets.get_opt("dev-test-access-key").await {
                if let Some(token) = secret.data.and_then(|d| d.get("token").cloned()) {
                    return String::from_utf8(token.0).unwrap();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the example key was issued");

    let http = reqwest::Client::new();
    let accepted = tokio::time::timeout(WAIT, async {
        loop {
            let response = http
                .get(format!("http://{verifier}/v1/check"))
                .bearer_auth(&token)
                .send()
                .await;
            if let Ok(response) = response {
                if response.status() == 200 {
                    return response;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the verifier accepted the issued key");
    assert!(accepted.headers().contains_key("x-keywarden-key-id"));

    let refused = http
        .get(format!("http://{verifier}/v1/check"))
        .bearer_auth("kwk_not_a_token")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let pid = dev.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, dev.wait())
        .await
        .expect("dev stopped after SIGTERM")
        .unwrap();
    assert!(status.success(), "dev exited with {status}");
}

/// Starts `keywarden dev` with its stdout already closed (the reader of its pipe is gone, as
/// after `keywarden dev | tee log` and Ctrl-C), waits until its verifier is ready, sends
/// `signal` and expects a clean exit.
async fn dev_with_closed_stdout_stops_on(signal: &str) {
    let dir = tempfile::tempdir().unwrap();
    let probe = format!("127.0.0.1:{}", free_port());
    let mut dev = tokio::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(["dev", "--disable-leader-election", "--no-examples"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--probe-addr")
        .arg(&probe)
        .arg("--kubeconfig-out")
        .arg(dir.path().join("kubeconfig"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    drop(dev.stdout.take());
    let http = reqwest::Client::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let ready = http.get(format!("http://{probe}/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("dev became ready with its stdout closed");
    // why: the next steps are printed once setup is done; give that write time to hit the
    // closed pipe before signalling, which is the order a user's Ctrl-C comes in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = dev.id().unwrap().to_string();
    let signalled = tokio::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .await
        .unwrap();
    assert!(signalled.success());
    let status = tokio::time::timeout(WAIT, dev.wait())
        .await
        .unwrap_or_else(|_| panic!("dev ignored {signal} with its stdout closed"))
        .unwrap();
    assert!(status.success(), "dev exited with {status} after {signal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_closed_stdout_stops_cleanly_on_sigint() {
    dev_with_closed_stdout_stops_on("-INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_closed_stdout_stops_cleanly_on_sigterm() {
    dev_with_closed_stdout_stops_on("-TERM").await;
}
