//! The real kubectl against devcluster: apply, patch, edit, delete, wait and describe.
//!
//! Needs kubectl (>= 1.27) from `KEYWARDEN_KUBECTL`, `PATH` or `scripts/ensure-kube-tools.sh`.

#[path = "support/gadgets.rs"]
mod gadgets;
#[path = "support/kube_tools.rs"]
mod kube_tools;

use gadgets::{gadget, install_gadget_crd};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use kube_tools::{table_rows, Kube};
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

async fn get_json(kube: &Kube, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    serde_json::from_str(&kube.kubectl_ok(&args).await).expect("kubectl printed JSON")
}

#[tokio::test]
async fn client_side_apply_creates_configures_and_prunes_removed_fields() {
    let kube = Kube::start().await;
    let first = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"1\"\n  b: \"2\"\n";
    assert_eq!(
        kube.kubectl_stdin_ok(&["apply", "-f", "-"], first)
            .await
            .trim(),
        "configmap/settings created"
    );
    assert_eq!(
        kube.kubectl_stdin_ok(&["apply", "-f", "-"], first)
            .await
            .trim(),
        "configmap/settings unchanged"
    );

    let second =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  a: \"10\"\n";
    assert_eq!(
        kube.kubectl_stdin_ok(&["apply", "-f", "-"], second)
            .await
            .trim(),
        "configmap/settings configured"
    );
    let cm = get_json(&kube, &["get", "configmap", "settings"]).await;
    assert_eq!(
        cm["data"],
        serde_json::json!({"a": "10"}),
        "b was removed by the three-way merge"
    );
    let last_applied = cm["metadata"]["annotations"]
        ["kubectl.kubernetes.io/last-applied-configuration"]
        .as_str()
        .expect("last-applied annotation");
    assert!(last_applied.contains(r#""a":"10""#), "{last_applied}");
}

#[tokio::test]
async fn client_side_apply_of_a_custom_resource_uses_merge_patches() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;
    let changed = kube
        .kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "blue", 3))
        .await;
    assert_eq!(
        changed.trim(),
        "gadget.example.devcluster.io/blinky configured"
    );
    let color = kube
        .kubectl_ok(&["get", "gd", "blinky", "-o", "jsonpath={.spec.color}"])
        .await;
    assert_eq!(color, "blue");
}

#[tokio::test]
async fn server_side_apply_reapplies_and_reports_conflicts_until_forced() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    let applied = kube
        .kubectl_stdin_ok(
            &["apply", "--server-side", "-f", "-"],
            &gadget("blinky", "red", 3),
        )
        .await;
    assert_eq!(
        applied.trim(),
        "gadget.example.devcluster.io/blinky serverside-applied"
    );
    let again = kube
        .kubectl_stdin_ok(
            &["apply", "--server-side", "-f", "-"],
            &gadget("blinky", "red", 4),
        )
        .await;
    assert_eq!(
        again.trim(),
        "gadget.example.devcluster.io/blinky serverside-applied"
    );

    let conflict = kube
        .kubectl_stdin(
            &[
                "apply",
                "--server-side",
                "--field-manager=intruder",
                "-f",
                "-",
            ],
            &gadget("blinky", "green", 4),
        )
        .await;
    assert_eq!(conflict.status.code(), Some(1), "{conflict:?}");
    assert!(conflict.stderr.contains("conflict"), "{}", conflict.stderr);
    assert!(
        conflict.stderr.contains(".spec.color"),
        "{}",
        conflict.stderr
    );

    kube.kubectl_stdin_ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=intruder",
            "--force-conflicts",
            "-f",
            "-",
        ],
        &gadget("blinky", "green", 4),
    )
    .await;
    let obj = get_json(&kube, &["get", "gadget", "blinky", "--show-managed-fields"]).await;
    assert_eq!(obj["spec"]["color"], "green");
    let managers: Vec<&str> = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields")
        .iter()
        .filter_map(|entry| entry["manager"].as_str())
        .collect();
    assert!(
        managers.contains(&"intruder") && managers.contains(&"kubectl"),
        "{managers:?}"
    );
}

#[tokio::test]
async fn annotate_and_label_change_metadata_and_selectors_find_it() {
    let kube = Kube::start().await;
    for name in ["settings", "other"] {
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: \"1\"\n"
        );
        kube.kubectl_stdin_ok(&["apply", "-f", "-"], &manifest)
            .await;
    }
    assert_eq!(
        kube.kubectl_ok(&["annotate", "cm", "settings", "owner=alice"])
            .await
            .trim(),
        "configmap/settings annotated"
    );
    assert_eq!(
        kube.kubectl_ok(&["label", "cm", "settings", "tier=web"])
            .await
            .trim(),
        "configmap/settings labeled"
    );

    let cm = get_json(&kube, &["get", "cm", "settings"]).await;
    assert_eq!(cm["metadata"]["annotations"]["owner"], "alice");
    assert_eq!(cm["metadata"]["labels"]["tier"], "web");
    let selected = table_rows(
        &kube
            .kubectl_ok(&["get", "cm", "-l", "tier in (web,api)"])
            .await,
    );
    assert_eq!(selected.len(), 2, "{selected:?}");
    assert_eq!(selected[1][0], "settings");
    let bad = kube.kubectl(&["get", "cm", "-l", "tier in web"]).await;
    assert_eq!(bad.status.code(), Some(1));

    let overwrite = kube.kubectl(&["label", "cm", "settings", "tier=api"]).await;
    assert_eq!(overwrite.status.code(), Some(1));
    assert!(
        overwrite.stderr.contains("already has a value (web)"),
        "{}",
        overwrite.stderr
    );
    kube.kubectl_ok(&["label", "cm", "settings", "tier-"]).await;
    assert!(
        get_json(&kube, &["get", "cm", "settings"]).await["metadata"]["labels"]
            .get("tier")
            .is_none()
    );
}

#[tokio::test]
async fn patch_types_merge_and_json_apply_and_strategic_on_custom_resources_is_415() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;

    let merged = kube
        .kubectl_ok(&[
            "patch",
            "gd",
            "blinky",
            "--type=merge",
            "-p",
            r#"{"spec":{"size":5}}"#,
        ])
        .await;
    assert_eq!(merged.trim(), "gadget.example.devcluster.io/blinky patched");
    let json_patched = kube
        .kubectl_ok(&[
            "patch",
            "gd",
            "blinky",
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/color","value":"teal"}]"#,
        ])
        .await;
    assert_eq!(
        json_patched.trim(),
        "gadget.example.devcluster.io/blinky patched"
    );
    let obj = get_json(&kube, &["get", "gd", "blinky"]).await;
    assert_eq!(
        (obj["spec"]["color"].as_str(), obj["spec"]["size"].as_i64()),
        (Some("teal"), Some(5))
    );

    let strategic = kube
        .kubectl(&[
            "patch",
            "gd",
            "blinky",
            "--type=strategic",
            "-p",
            r#"{"spec":{"size":6}}"#,
        ])
        .await;
    assert_eq!(strategic.status.code(), Some(1));
    assert!(
        strategic.stderr.contains("UnsupportedMediaType")
            || strategic
                .stderr
                .contains("the body of the request was in an unknown format"),
        "{}",
        strategic.stderr
    );

    let failed_test = kube
        .kubectl(&[
            "patch",
            "gd",
            "blinky",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/spec/color","value":"red"}]"#,
        ])
        .await;
    assert_eq!(failed_test.status.code(), Some(1), "{failed_test:?}");
}

#[tokio::test]
async fn edit_through_kube_editor_saves_the_change() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;
    let editor = kube.file(
        "editor.sh",
        "#!/bin/sh\nsed -i 's/color: red/color: purple/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut command = kube.kubectl_command(&["edit", "gadget", "blinky"]);
    command.env("KUBE_EDITOR", &editor);
    let output = kube_tools::run(command, None).await;
    kube_tools::assert_success("kubectl edit", &output);
    assert_eq!(
        output.stdout.trim(),
        "gadget.example.devcluster.io/blinky edited"
    );
    assert_eq!(
        kube.kubectl_ok(&["get", "gd", "blinky", "-o", "jsonpath={.spec.color}"])
            .await,
        "purple"
    );
}

#[tokio::test]
async fn delete_waits_for_finalizers_and_wait_for_delete_returns_once_gone() {
    let kube = Kube::start().await;
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guarded\n  finalizers: [example.devcluster.io/hold]\n";
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], manifest).await;

    let deleted = kube
        .kubectl_ok(&["delete", "cm", "guarded", "--wait=false"])
        .await;
    assert_eq!(deleted.trim(), r#"configmap "guarded" deleted"#);
    let held = get_json(&kube, &["get", "cm", "guarded"]).await;
    assert!(
        held["metadata"]["deletionTimestamp"].is_string(),
        "still present while finalized: {held}"
    );

    let timed_out = kube
        .kubectl(&["wait", "--for=delete", "cm/guarded", "--timeout=1s"])
        .await;
    assert_ne!(
        timed_out.status.code(),
        Some(0),
        "the finalizer still holds the object"
    );

    let waiter = tokio::spawn({
        let command =
            kube.kubectl_command(&["wait", "--for=delete", "cm/guarded", "--timeout=60s"]);
        kube_tools::run(command, None)
    });
    kube.kubectl_ok(&[
        "patch",
        "cm",
        "guarded",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    let waited = waiter.await.expect("wait task");
    kube_tools::assert_success("kubectl wait --for=delete", &waited);
    // why: when the finalizer is gone before kubectl starts watching, kubectl finds nothing to
    // wait for and succeeds silently; otherwise it reports the condition.
    assert!(
        waited.stdout.is_empty() || waited.stdout.contains("condition met"),
        "{}",
        waited.stdout
    );
    let gone = kube.kubectl(&["get", "cm", "guarded"]).await;
    assert_eq!(gone.status.code(), Some(1));
}

#[tokio::test]
async fn wait_for_condition_ready_returns_when_status_reports_it() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;
    let waiter = tokio::spawn({
        let command = kube.kubectl_command(&[
            "wait",
            "--for=condition=Ready",
            "gadget/blinky",
            "--timeout=60s",
        ]);
        kube_tools::run(command, None)
    });
    kube.kubectl_ok(&[
        "patch",
        "gadget",
        "blinky",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Built"}]}}"#,
    ])
    .await;
    let waited = waiter.await.expect("wait task");
    kube_tools::assert_success("kubectl wait --for=condition=Ready", &waited);
    assert_eq!(
        waited.stdout.trim(),
        "gadget.example.devcluster.io/blinky condition met"
    );
    let rows = table_rows(&kube.kubectl_ok(&["get", "gd", "blinky"]).await);
    assert_eq!(rows[1][3], "True");
}

#[tokio::test]
async fn describe_and_get_events_show_events_written_through_events_v1() {
    let kube = Kube::start().await;
    install_gadget_crd(&kube).await;
    kube.kubectl_stdin_ok(&["apply", "-f", "-"], &gadget("blinky", "red", 3))
        .await;
    let uid = kube
        .kubectl_ok(&["get", "gd", "blinky", "-o", "jsonpath={.metadata.uid}"])
        .await;

    let events: Api<Event> = Api::namespaced(kube.cluster.client().expect("client"), "default");
    let event = Event {
        metadata: ObjectMeta {
            name: Some("blinky.1".into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        reporting_controller: Some("example.devcluster.io/painter".into()),
        reporting_instance: Some("painter-0".into()),
        action: Some("Paint".into()),
        reason: Some("Painted".into()),
        note: Some("painted the gadget red".into()),
        type_: Some("Normal".into()),
        regarding: Some(k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some("example.devcluster.io/v1".into()),
            kind: Some("Gadget".into()),
            name: Some("blinky".into()),
            namespace: Some("default".into()),
            uid: Some(uid),
            ..Default::default()
        }),
        ..Event::default()
    };
    events
        .create(&PostParams::default(), &event)
        .await
        .expect("event created");

    let described = kube.kubectl_ok(&["describe", "gadget", "blinky"]).await;
    assert!(described.contains("Events:"), "{described}");
    let event_line = described
        .lines()
        .find(|line| line.contains("Painted"))
        .unwrap_or_else(|| panic!("event missing from describe:\n{described}"));
    assert!(
        event_line.contains("Normal") && event_line.contains("painted the gadget red"),
        "{event_line}"
    );

    let listed = kube
        .kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=blinky",
        ])
        .await;
    assert!(listed.starts_with("LAST SEEN"), "{listed}");
    assert!(
        listed.contains("gadget/blinky") && listed.contains("Painted"),
        "{listed}"
    );
    let unrelated = kube
        .kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=other",
        ])
        .await;
    assert!(!unrelated.contains("Painted"), "{unrelated}");
}
