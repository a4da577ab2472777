//! The external tools the chart and example suites drive (kubectl, helm, kubernetes-validate and
//! its Python, nginx, caddy): where to find them, how a missing one is reported, and running them.
//!
//! A missing tool skips its test loudly, and fails it when `KEYWARDEN_REQUIRE_TOOLS` is set (as in
//! CI). kubectl and helm come from `scripts/ensure-kube-tools.sh`, kubernetes-validate from
//! `scripts/ensure-chart-tools.sh`.
// why: each test binary that says `mod tools;` uses only some of these helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// Makes a missing tool a test failure instead of a skip.
const REQUIRE_TOOLS: &str = "KEYWARDEN_REQUIRE_TOOLS";
/// Makes a missing proxy (nginx, caddy) a test failure; CI sets it with `REQUIRE_TOOLS`.
const REQUIRE_PROXIES: &str = "KEYWARDEN_REQUIRE_PROXIES";

/// The repository's root directory.
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Reports a missing tool: a loud skip, or a failure when `KEYWARDEN_REQUIRE_TOOLS` is set.
pub fn missing_tool(tool: &str, hint: &str) {
    report_missing(tool, hint, &[REQUIRE_TOOLS]);
}

/// Reports a missing proxy binary: like [`missing_tool`], and also a failure when
/// `KEYWARDEN_REQUIRE_PROXIES` is set.
pub fn missing_proxy(tool: &str, hint: &str) {
    report_missing(tool, hint, &[REQUIRE_TOOLS, REQUIRE_PROXIES]);
}

fn report_missing(tool: &str, hint: &str, requiring: &[&str]) {
    if let Some(variable) = requiring
        .iter()
        .find(|variable| std::env::var_os(variable).is_some())
    {
        panic!("{tool} is required ({variable} is set) but missing: {hint}");
    }
    eprintln!("SKIPPED: {tool} not found ({hint}); set {REQUIRE_TOOLS}=1 to fail instead");
}

/// `path` when it is a file.
pub fn executable(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// The first `name` on `PATH`, then in `/usr/sbin` and `/usr/local/sbin`.
// why: Debian installs nginx into /usr/sbin, which a non-root PATH often lacks.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(sbin)
        .find_map(|dir| executable(dir.join(name)))
}

/// Directory printed (last line) by `scripts/ensure-kube-tools.sh`, when that script exists and
/// succeeds; it installs kubectl and helm when they are missing. Run once per test binary.
pub fn kube_tools_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = executable(repo_root().join("scripts/ensure-kube-tools.sh"))?;
        let output = Command::new("bash").arg(&script).output().ok()?;
        if !output.status.success() {
            eprintln!(
                "{} failed: {}",
                script.display(),
                String::from_utf8_lossy(&output.stderr)
            );
            return None;
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        stdout.lines().last().map(|line| PathBuf::from(line.trim()))
    })
    .as_ref()
}

/// Finds kubectl: `KEYWARDEN_KUBECTL`, the kube tools directory, `.cache/tools/bin`, then PATH.
pub fn kubectl_binary() -> Option<PathBuf> {
    kube_tool("kubectl", "KEYWARDEN_KUBECTL")
}

/// Finds helm: `KEYWARDEN_HELM`, the kube tools directory, `.cache/tools/bin`, then PATH.
pub fn helm_binary() -> Option<PathBuf> {
    kube_tool("helm", "KEYWARDEN_HELM")
}

fn kube_tool(name: &str, variable: &str) -> Option<PathBuf> {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .and_then(executable)
        .or_else(|| kube_tools_dir().and_then(|dir| executable(dir.join(name))))
        .or_else(|| executable(repo_root().join(".cache/tools/bin").join(name)))
        .or_else(|| on_path(name))
}

/// Finds kubernetes-validate (`.cache/chart-venv`, then PATH), installing it into `.cache/` with
/// `scripts/ensure-chart-tools.sh` when it is nowhere.
pub fn kubernetes_validate() -> Option<&'static PathBuf> {
    static TOOL: OnceLock<Option<PathBuf>> = OnceLock::new();
    TOOL.get_or_init(|| {
        let installed = repo_root().join(".cache/chart-venv/bin/kubernetes-validate");
        if let Some(tool) = executable(installed.clone()).or_else(|| on_path("kubernetes-validate"))
        {
            return Some(tool);
        }
        let script = repo_root().join("scripts/ensure-chart-tools.sh");
        let status = Command::new("bash").arg(script).status().ok()?;
        status.success().then_some(installed).and_then(executable)
    })
    .as_ref()
}

/// The Python of kubernetes-validate's virtualenv, which also has `yaml` and `jsonschema`.
pub fn chart_tools_python() -> Option<PathBuf> {
    executable(kubernetes_validate()?.with_file_name("python"))
}

/// Runs `command` and asserts it succeeds; returns its output.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}
