//! Finds the real `kubectl` and `helm` binaries and runs them against a `DevCluster`.
//!
//! Binaries come from `KEYWARDEN_KUBECTL` / `KEYWARDEN_HELM`, else `PATH`, else the repository's
//! `.cache/tools/bin` (filled by `scripts/ensure-kube-tools.sh`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use devcluster::DevCluster;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Locates `tool` as described in the module documentation.
pub fn find_tool(tool: &str, env_var: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var) {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|candidate| candidate.is_file())
    });
    let cached = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/tools/bin")
        .join(tool);
    on_path
        .or_else(|| cached.is_file().then_some(cached))
        .unwrap_or_else(|| {
            panic!("{tool} not found: set {env_var}, put it on PATH, or run scripts/ensure-kube-tools.sh")
        })
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running `DevCluster` with a kubeconfig and per-test caches for kubectl and helm.
pub struct Kube {
    pub cluster: DevCluster,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// Generous bound on one command; only limits waiting, never asserts speed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

impl Kube {
    pub async fn start() -> Kube {
        let cluster = DevCluster::start().await.expect("devcluster starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Kube {
            cluster,
            dir,
            kubeconfig,
        }
    }

    /// Wraps an already started `cluster` (custom `Options`) with a kubeconfig and caches.
    pub async fn with_cluster(cluster: DevCluster) -> Kube {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Kube {
            cluster,
            dir,
            kubeconfig,
        }
    }

    /// Writes `contents` to a file in the test's directory and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path.display().to_string()
    }

    /// A kubectl command with this test's kubeconfig and cache dir.
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(find_tool("kubectl", "KEYWARDEN_KUBECTL"));
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.path().join("kube-cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        command
    }

    /// A helm command with this test's kubeconfig and its own cache, config and data dirs.
    pub fn helm_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(find_tool("helm", "KEYWARDEN_HELM"));
        let home = self.dir.path();
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", home)
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        command
    }

    pub async fn kubectl(&self, args: &[&str]) -> Output {
        run(self.kubectl_command(args), None).await
    }

    pub async fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        run(self.kubectl_command(args), Some(stdin)).await
    }

    pub async fn helm(&self, args: &[&str]) -> Output {
        run(self.helm_command(args), None).await
    }

    /// Runs kubectl, asserts it succeeded, returns its stdout.
    pub async fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args).await;
        assert_success(&format!("kubectl {}", args.join(" ")), &output);
        output.stdout
    }

    /// Runs kubectl with `stdin`, asserts it succeeded, returns its stdout.
    pub async fn kubectl_stdin_ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.kubectl_stdin(args, stdin).await;
        assert_success(&format!("kubectl {}", args.join(" ")), &output);
        output.stdout
    }

    /// Runs helm, asserts it succeeded, returns its stdout.
    pub async fn helm_ok(&self, args: &[&str]) -> String {
        let output = self.helm(args).await;
        assert_success(&format!("helm {}", args.join(" ")), &output);
        output.stdout
    }
}

pub fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        output.stdout,
        output.stderr
    );
}

pub async fn run(mut command: Command, stdin: Option<&str>) -> Output {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("command starts");
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("command finished within the timeout")
        .expect("command output");
    Output {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Splits kubectl's table output into rows of cells (header first), cutting each line at the
/// header's column offsets so that empty cells and headers with spaces (`LAST SEEN`) survive.
pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    let mut lines = stdout.lines().filter(|line| !line.trim().is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    // why: kubectl's tabwriter separates columns by at least three spaces, while header names
    // contain at most single spaces.
    let mut starts = vec![0];
    let bytes = header.as_bytes();
    for i in 1..bytes.len() {
        if bytes[i] != b' ' && i >= 2 && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
            starts.push(i);
        }
    }
    let cut = |line: &str| -> Vec<String> {
        starts
            .iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = starts
                    .get(n + 1)
                    .copied()
                    .unwrap_or(line.len())
                    .min(line.len());
                line.get(start.min(line.len())..end)
                    .unwrap_or("")
                    .trim()
                    .to_owned()
            })
            .collect()
    };
    std::iter::once(cut(header)).chain(lines.map(cut)).collect()
}
