//! The `keywarden` binary's command line: help texts and failure messages a user sees.

use std::process::{Command, Output};

fn keywarden(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keywarden"))
        .args(args)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("KUBECONFIG", "/nonexistent/keywarden-test-kubeconfig")
        .env("HOME", "/nonexistent")
        .output()
        .unwrap()
}

#[test]
fn help_lists_every_subcommand() {
    let output = keywarden(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for subcommand in ["controller", "verifier", "run", "crdgen", "dev"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(subcommand)),
            "{subcommand} missing from:\n{help}"
        );
    }
    assert!(help.contains("keywarden dev"), "{help}");
}

#[test]
fn run_help_offers_the_verifier_flags_and_logging() {
    let output = keywarden(&["run", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("--listen"), "{help}");
    assert!(help.contains("--log-format"), "{help}");
}

#[test]
fn controller_without_a_cluster_fails_with_a_hint() {
    let output = keywarden(&["controller"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("set KUBECONFIG"), "{stderr}");
}

#[test]
fn unknown_log_format_is_rejected_before_anything_runs() {
    let output = keywarden(&["verifier", "--log-format", "xml"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("xml"));
}
