//! Label and field selectors: parsing, matching and the real server's error wording.

use devcluster::selector::{FieldSelector, LabelSelector};
use serde_json::{json, Value};

fn labelled(labels: Value) -> Value {
    json!({"metadata": {"name": "x", "labels": labels}})
}

fn matches(selector: &str, labels: Value) -> bool {
    LabelSelector::parse(selector)
        .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
        .matches(&labelled(labels))
}

fn label_error(selector: &str) -> String {
    LabelSelector::parse(selector)
        .expect_err("selector should be rejected")
        .0
}

#[test]
fn equality_requirements_match_label_values() {
    assert!(matches("app=web", json!({"app": "web"})));
    assert!(matches("app==web", json!({"app": "web"})));
    assert!(!matches("app=web", json!({"app": "api"})));
    assert!(!matches("app=web", json!({})));
    assert!(matches("app!=web", json!({"app": "api"})));
    assert!(!matches("app!=web", json!({"app": "web"})));
}

#[test]
fn not_equals_and_notin_match_objects_without_the_label() {
    assert!(matches("app!=web", json!({})));
    assert!(matches("tier notin (web,api)", json!({"other": "x"})));
    assert!(!matches("tier notin (web, api)", json!({"tier": "api"})));
}

#[test]
fn set_requirements_match_any_listed_value() {
    assert!(matches("tier in (web, api)", json!({"tier": "api"})));
    assert!(!matches("tier in (web,api)", json!({"tier": "db"})));
    assert!(!matches("tier in (web,api)", json!({})));
}

#[test]
fn existence_requirements_test_presence_only() {
    assert!(matches("app", json!({"app": ""})));
    assert!(!matches("app", json!({"tier": "web"})));
    assert!(matches("!app", json!({"tier": "web"})));
    assert!(!matches("!app", json!({"app": "web"})));
}

#[test]
fn all_comma_separated_requirements_must_hold() {
    let selector = "app=web,!legacy,tier in (a,b),env!=prod";
    assert!(matches(
        selector,
        json!({"app": "web", "tier": "a", "env": "dev"})
    ));
    assert!(!matches(
        selector,
        json!({"app": "web", "tier": "a", "legacy": "y"})
    ));
    assert!(!matches(selector, json!({"app": "web", "tier": "c"})));
}

#[test]
fn empty_selector_matches_everything() {
    let selector = LabelSelector::parse("").expect("empty selector parses");
    assert!(selector.is_empty());
    assert!(selector.matches(&json!({"metadata": {"name": "no-labels"}})));
}

#[test]
fn prefixed_keys_and_empty_values_are_accepted() {
    assert!(matches(
        "app.kubernetes.io/name=keywarden",
        json!({"app.kubernetes.io/name": "keywarden"})
    ));
    assert!(matches("app=", json!({"app": ""})));
    assert!(matches("app in (in, notin)", json!({"app": "notin"})));
}

#[test]
fn numeric_comparisons_need_integer_labels() {
    assert!(matches("replicas>2", json!({"replicas": "3"})));
    assert!(!matches("replicas<2", json!({"replicas": "3"})));
    assert!(!matches("replicas>2", json!({"replicas": "many"})));
}

#[test]
fn malformed_label_selectors_report_the_parser_error() {
    assert_eq!(
        label_error("app=web,"),
        "found '', expected: identifier after ','"
    );
    assert_eq!(
        label_error("tier in web"),
        "unable to parse requirement: found 'web' expected: '('"
    );
    assert_eq!(
        label_error("tier in (web"),
        "unable to parse requirement: found '', expected: ',' or ')'"
    );
    assert_eq!(
        label_error("=web"),
        "found '=', expected: !, identifier, or 'end of string'"
    );
    assert_eq!(
        label_error("app web"),
        "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"
    );
}

#[test]
fn invalid_label_keys_and_values_are_rejected_with_validation_messages() {
    let key = label_error("-app=web");
    assert!(
        key.starts_with("unable to parse requirement: key: Invalid value: \"-app\": name part must consist of alphanumeric characters"),
        "{key}"
    );
    let value = label_error("app=we$b");
    assert!(
        value.contains("Invalid value: \"we$b\": a valid label must be an empty string"),
        "{value}"
    );
}

fn event() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "web.1", "namespace": "team-a"},
        "involvedObject": {"kind": "AccessKey", "name": "web", "namespace": "team-a", "uid": "u-1"},
        "reason": "Issued",
        "type": "Normal",
        "source": {},
        "reportingComponent": "keywarden",
    })
}

fn field_matches(selector: &str, kind: &str, obj: &Value) -> bool {
    FieldSelector::parse(selector, kind)
        .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
        .matches(obj)
}

#[test]
fn field_selectors_match_metadata_of_any_kind() {
    let obj = json!({"metadata": {"name": "a", "namespace": "ns"}});
    assert!(field_matches("metadata.name=a", "ConfigMap", &obj));
    assert!(field_matches(
        "metadata.name==a,metadata.namespace=ns",
        "AccessKey",
        &obj
    ));
    assert!(!field_matches("metadata.name!=a", "ConfigMap", &obj));
    assert!(field_matches(
        "metadata.namespace!=other",
        "ConfigMap",
        &obj
    ));
}

#[test]
fn event_field_selectors_follow_involved_object_and_reason() {
    let event = event();
    assert!(field_matches(
        "involvedObject.name=web,involvedObject.kind=AccessKey,involvedObject.uid=u-1",
        "Event",
        &event
    ));
    assert!(field_matches("reason=Issued,type=Normal", "Event", &event));
    assert!(!field_matches("involvedObject.name=api", "Event", &event));
    assert!(field_matches("involvedObject.fieldPath=", "Event", &event));
}

#[test]
fn event_source_falls_back_to_the_reporting_controller() {
    let mut event = event();
    assert!(field_matches("source=keywarden", "Event", &event));
    event["source"] = json!({"component": "kubelet"});
    assert!(field_matches("source=kubelet", "Event", &event));
}

#[test]
fn secrets_are_selectable_by_type() {
    let secret = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth"});
    assert!(field_matches(
        "type=kubernetes.io/basic-auth",
        "Secret",
        &secret
    ));
    assert!(!field_matches("type=Opaque", "Secret", &secret));
}

#[test]
fn escaped_separators_are_part_of_the_value() {
    let obj = json!({"metadata": {"name": "a,b=c"}});
    assert!(field_matches(r"metadata.name=a\,b\=c", "ConfigMap", &obj));
}

fn custom_matches(selector: &str, selectable: &[&str], obj: &Value) -> bool {
    let selectable: Vec<String> = selectable.iter().map(|f| (*f).to_owned()).collect();
    FieldSelector::parse_custom_resource(selector, &selectable, true)
        .unwrap_or_else(|e| panic!("{selector:?} should parse: {e}"))
        .matches(obj)
}

#[test]
fn custom_resources_are_selectable_on_their_declared_fields() {
    let key = json!({"metadata": {"name": "k", "namespace": "ns"},
                     "spec": {"owner": {"name": "alice"}, "rotateGeneration": 3, "active": true}});
    let declared = [
        "spec.owner.name",
        "spec.rotateGeneration",
        "spec.active",
        "spec.policyName",
    ];
    assert!(custom_matches("spec.owner.name=alice", &declared, &key));
    assert!(!custom_matches("spec.owner.name=bob", &declared, &key));
    assert!(custom_matches(
        "spec.owner.name!=bob,metadata.namespace=ns",
        &declared,
        &key
    ));
    // why: the real server renders integers and booleans with fmt.Sprint, absent fields as "".
    assert!(custom_matches("spec.rotateGeneration=3", &declared, &key));
    assert!(custom_matches("spec.active=true", &declared, &key));
    assert!(custom_matches("spec.policyName=", &declared, &key));
}

#[test]
fn custom_resources_refuse_undeclared_fields_as_the_apiextensions_server_does() {
    let declared = vec!["spec.owner.name".to_owned()];
    let undeclared = FieldSelector::parse_custom_resource("spec.owner.kind=User", &declared, true)
        .expect_err("not declared");
    assert_eq!(undeclared.0, "field label not supported: spec.owner.kind");
    let cluster_scoped =
        FieldSelector::parse_custom_resource("metadata.namespace=a", &declared, false)
            .expect_err("a cluster-scoped resource has no namespace field");
    assert_eq!(
        cluster_scoped.0,
        "field label not supported: metadata.namespace"
    );
}

#[test]
fn unsupported_fields_are_rejected_with_the_real_messages() {
    let custom = FieldSelector::parse("spec.owner=alice", "ConfigMap").expect_err("unknown field");
    assert_eq!(
        custom.0,
        r#""spec.owner" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    let core =
        FieldSelector::parse("reason=x", "Secret").expect_err("reason is not a Secret field");
    assert_eq!(core.0, "field label not supported: reason");
    let malformed = FieldSelector::parse("metadata.name", "ConfigMap").expect_err("no operator");
    assert_eq!(
        malformed.0,
        "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    );
}
