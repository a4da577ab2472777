//! The committed CRD manifests in `crds/` are exactly what `keywarden crdgen` generates.

use std::path::Path;
use std::process::Command;

use keywarden::cli::crdgen::{manifests, stale_manifests};

fn crds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/crds"))
}

#[test]
fn committed_crds_match_the_rust_types() {
    let stale = stale_manifests(crds_dir()).unwrap();
    assert!(
        stale.is_empty(),
        "out of date in crds/: {stale:?}; run `cargo run -- crdgen` and commit the result"
    );
}

#[test]
fn crdgen_writes_one_manifest_per_kind() {
    let names: Vec<String> = manifests()
        .unwrap()
        .into_iter()
        .map(|m| m.file_name)
        .collect();
    assert_eq!(
        names,
        [
            "accesskeys.keywarden.io.yaml",
            "accesskeypolicies.keywarden.io.yaml"
        ]
    );
}

#[test]
fn crdgen_check_fails_on_a_stale_file_and_passes_after_regenerating() {
    let dir = tempfile::tempdir().unwrap();
    let crdgen = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .arg("crdgen")
            .arg("--out-dir")
            .arg(dir.path())
            .args(extra)
            .output()
            .unwrap()
    };

    let missing = crdgen(&["--check"]);
    assert!(!missing.status.success(), "check passed with no files");

    assert!(crdgen(&[]).status.success());
    assert!(crdgen(&["--check"]).status.success());

    let policy = dir.path().join("accesskeypolicies.keywarden.io.yaml");
    let edited = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("maximum: 1000", "maximum: 9");
    std::fs::write(&policy, edited).unwrap();
    let stale = crdgen(&["--check"]);
    assert!(!stale.status.success(), "check passed with an edited file");
    assert!(String::from_utf8_lossy(&stale.stderr).contains("accesskeypolicies.keywarden.io.yaml"));
}
