//! The real kubectl against devcluster: reading, creating, explaining and watching.
//!
//! Needs kubectl (>= 1.27) from `KEYWARDEN_KUBECTL`, `PATH` or `scripts/ensure-kube-tools.sh`.

#[path = "support/gadgets.rs"]
mod gadgets;
#[path = "support/kube_tools.rs"]
mod kube_tools;

use std::time::Duration;

use gadgets::{gadget, install_gadget_crd};
use kube_tools::{table_rows, Kube};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test]
async fn get_custom_resources_shows_printer_columns_by_short_name_and_category() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;

    let rows = table_rows(&kube.kubectl_ok(&["get", "gd"]).await);
    assert_eq!(rows[0], ["NAME", "COLOR", "SIZE", "READY", "AGE"]);
    assert_eq!(
        rows[1][..4],
        ["blinky", "red", "3", ""],
        "no Ready condition yet"
    );

    let by_category = table_rows(&kube.kubectl_ok(&["get", "devcluster-test"]).await);
    assert_eq!(by_category[1][..2], ["blinky", "red"]);
    let by_plural = table_rows(
        &kube
            .kubectl_ok(&["get", "gadgets.example.devcluster.io", "blinky"])
            .await,
    );
    assert_eq!(by_plural[1][0], "blinky");
}

#[tokio::test]
async fn get_config_maps_shows_the_built_in_columns() {
    let kube = Kube::start().await;
    kube.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ])
    .await;
    let cms = table_rows(&kube.kubectl_ok(&["get", "cm", "settings"]).await);
    assert_eq!(cms[0], ["NAME", "DATA", "AGE"]);
    assert_eq!(cms[1][..2], ["settings", "2"]);
}

#[tokio::test]
async fn get_secrets_shows_type_and_data_count() {
    let kube = Kube::start().await;
    kube.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
    ])
    .await;
    let secrets = table_rows(&kube.kubectl_ok(&["get", "secrets", "creds"]).await);
    assert_eq!(secrets[0], ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(secrets[1][..3], ["creds", "Opaque", "1"]);
}

#[tokio::test]
async fn missing_objects_report_not_found_with_exit_code_1() {
    let kube = Kube::start().await;
    let output = kube.kubectl(&["get", "configmap", "nope"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        output
            .stderr
            .contains(r#"Error from server (NotFound): configmaps "nope" not found"#),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn output_formats_render_the_stored_object() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;

    let json: Value = serde_json::from_str(
        &kube
            .kubectl_ok(&["get", "gadget", "blinky", "-o", "json"])
            .await,
    )
    .expect("-o json is JSON");
    assert_eq!(json["kind"], "Gadget");
    assert_eq!(json["spec"]["color"], "red");
    assert!(json["metadata"]["uid"]
        .as_str()
        .is_some_and(|uid| !uid.is_empty()));

    let yaml: Value = serde_yaml::from_str(
        &kube
            .kubectl_ok(&["get", "gadget", "blinky", "-o", "yaml"])
            .await,
    )
    .expect("-o yaml is YAML");
    assert_eq!(yaml["spec"]["size"], 3);

    let color = kube
        .kubectl_ok(&["get", "gadget", "blinky", "-o", "jsonpath={.spec.color}"])
        .await;
    assert_eq!(color, "red");

    let list: Value =
        serde_json::from_str(&kube.kubectl_ok(&["get", "gadgets", "-o", "json"]).await)
            .expect("list JSON");
    assert_eq!(list["items"][0]["metadata"]["name"], "blinky");
}

#[tokio::test]
async fn create_namespace_and_generic_secret() {
    let kube = Kube::start().await;
    assert_eq!(
        kube.kubectl_ok(&["create", "namespace", "team-a"])
            .await
            .trim(),
        "namespace/team-a created"
    );
    let namespaces = table_rows(&kube.kubectl_ok(&["get", "namespaces"]).await);
    assert_eq!(namespaces[0], ["NAME", "STATUS", "AGE"]);
    let team = namespaces
        .iter()
        .find(|row| row[0] == "team-a")
        .expect("team-a listed");
    assert_eq!(team[1], "Active");

    let created = kube
        .kubectl_ok(&[
            "create",
            "secret",
            "generic",
            "api",
            "-n",
            "team-a",
            "--from-literal=token=s3cr3t",
        ])
        .await;
    assert_eq!(created.trim(), "secret/api created");
    let token = kube
        .kubectl_ok(&[
            "get",
            "secret",
            "api",
            "-n",
            "team-a",
            "-o",
            "jsonpath={.data.token}",
        ])
        .await;
    assert_eq!(token, "czNjcjN0");

    let again = kube.kubectl(&["create", "namespace", "team-a"]).await;
    assert_eq!(again.status.code(), Some(1));
    assert!(again.stderr.contains("AlreadyExists"), "{}", again.stderr);
}

#[tokio::test]
async fn auth_can_i_answers_yes_for_the_admin() {
    let kube = Kube::start().await;
    let output = kube
        .kubectl_ok(&["auth", "can-i", "create", "secrets", "-n", "default"])
        .await;
    assert_eq!(output.trim(), "yes");
}

#[tokio::test]
async fn explain_describes_custom_resource_fields_from_the_crd_schema() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    let explained = kube.kubectl_ok(&["explain", "gadgets.spec"]).await;
    assert!(explained.contains("KIND:       Gadget"), "{explained}");
    assert!(
        explained.contains("What the gadget looks like."),
        "{explained}"
    );
    assert!(
        explained.contains("color\t<string> -required-"),
        "{explained}"
    );
    assert!(explained.contains("The gadget's color."), "{explained}");

    let secret = kube.kubectl_ok(&["explain", "secret.type"]).await;
    assert!(secret.contains("FIELD: type <string>"), "{secret}");
}

#[tokio::test]
async fn strict_validation_rejects_unknown_fields() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    let manifest = gadget("blinky", "red", 3).replace("size: 3", "colour: blue");
    let output = kube.kubectl_stdin(&["apply", "-f", "-"], &manifest).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        output.stderr.contains(r#"unknown field "spec.colour""#),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn watch_prints_new_and_changed_objects() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("first", "red", 1))
        .await;

    let mut watch = kube.kubectl_command(&["get", "gadgets", "-w"]);
    watch
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = watch.spawn().expect("kubectl get -w starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("watch printed a line within 60 s")
            .expect("read line")
            .expect("watch still running")
    };
    assert!(next_line().await.starts_with("NAME"));
    assert!(next_line().await.starts_with("first "));

    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("second", "blue", 2))
        .await;
    let added = next_line().await;
    assert!(
        added.starts_with("second ") && added.contains("blue"),
        "{added}"
    );

    kube.kubectl_ok(&[
        "patch",
        "gadget",
        "first",
        "--type=merge",
        "-p",
        r#"{"spec":{"color":"green"}}"#,
    ])
    .await;
    let changed = next_line().await;
    assert!(
        changed.starts_with("first ") && changed.contains("green"),
        "{changed}"
    );
    child.kill().await.expect("stop watch");
}
