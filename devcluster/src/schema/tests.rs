//! Admission of keywarden-like custom resources.

use serde_json::{json, Value};

use super::*;

fn access_key_schema() -> Value {
    json!({
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "required": ["owner"],
                "properties": {
                    "owner": {
                        "type": "object",
                        "required": ["kind", "name"],
                        "properties": {
                            "kind": {"type": "string", "enum": ["User", "ServiceAccount"]},
                            "name": {"type": "string", "minLength": 1, "maxLength": 253}
                        },
                        "x-kubernetes-validations": [
                            {"rule": "self == oldSelf", "message": "owner is immutable"}
                        ]
                    },
                    "displayName": {"type": "string", "maxLength": 10},
                    "scopes": {
                        "type": "array",
                        "maxItems": 2,
                        "x-kubernetes-list-type": "set",
                        "items": {"type": "string", "pattern": "^[a-z][a-z0-9-]*:(view|manage)$"}
                    },
                    "active": {"type": "boolean", "default": true},
                    "rotateGeneration": {"type": "integer", "format": "int64", "minimum": 0, "default": 0},
                    "expiresAt": {"type": "string", "format": "date-time", "nullable": true},
                    "port": {"x-kubernetes-int-or-string": true},
                    "secret": {
                        "type": "object",
                        "default": {},
                        "properties": {
                            "type": {"type": "string", "enum": ["Opaque", "kubernetes.io/basic-auth"], "default": "Opaque"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                        }
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                },
                "x-kubernetes-validations": [{
                    "rule": "self.rotateGeneration >= oldSelf.rotateGeneration",
                    "messageExpression": "'rotateGeneration may not decrease below ' + string(oldSelf.rotateGeneration)",
                    "fieldPath": ".rotateGeneration",
                    "reason": "FieldValueForbidden"
                }]
            },
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }
    })
}

fn access_key(spec: Value) -> Value {
    json!({
        "apiVersion": "keywarden.io/v1alpha1",
        "kind": "AccessKey",
        "metadata": {"name": "ci", "namespace": "team-a"},
        "spec": spec
    })
}

fn admit(
    obj: &mut Value,
    old: Option<&Value>,
    mode: FieldValidation,
) -> Result<Vec<String>, AdmissionError> {
    admit_custom_resource(&Schema::new(access_key_schema()), obj, old, mode)
}

fn causes(result: Result<Vec<String>, AdmissionError>) -> Vec<(String, String, String)> {
    match result {
        Err(AdmissionError::Invalid(causes)) => causes
            .into_iter()
            .map(|c| (c.reason, c.field, c.message))
            .collect(),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn cause(reason: &str, field: &str, message: &str) -> (String, String, String) {
    (reason.into(), field.into(), message.into())
}

fn owner() -> Value {
    json!({"kind": "User", "name": "alice"})
}

#[test]
fn defaults_fill_absent_fields_including_inside_defaulted_objects() {
    let mut key = access_key(json!({"owner": owner()}));
    assert_eq!(admit(&mut key, None, FieldValidation::Strict), Ok(vec![]));
    assert_eq!(
        key["spec"],
        json!({"owner": owner(), "active": true, "rotateGeneration": 0, "secret": {"type": "Opaque"}})
    );
}

#[test]
fn present_values_are_not_defaulted_and_disallowed_nulls_are() {
    let mut key = access_key(
        json!({"owner": owner(), "active": false, "rotateGeneration": null, "expiresAt": null}),
    );
    admit(&mut key, None, FieldValidation::Strict).unwrap();
    assert_eq!(key["spec"]["active"], false);
    assert_eq!(key["spec"]["rotateGeneration"], 0);
    assert_eq!(key["spec"]["expiresAt"], Value::Null);
}

#[test]
fn strict_field_validation_names_every_unknown_field() {
    let mut key =
        access_key(json!({"owner": {"kind": "User", "name": "a", "team": "x"}, "foo": 1}));
    key["metadata"]["bogus"] = json!(true);
    let err = admit(&mut key, None, FieldValidation::Strict).unwrap_err();
    assert_eq!(
        err,
        AdmissionError::UnknownFields(
            "strict decoding error: unknown field \"metadata.bogus\", unknown field \"spec.foo\", \
             unknown field \"spec.owner.team\""
                .into()
        )
    );
}

#[test]
fn warn_prunes_and_reports_and_ignore_prunes_silently() {
    let spec = json!({"owner": owner(), "foo": 1, "extra": {"anything": {"goes": true}}});
    let mut warned = access_key(spec.clone());
    assert_eq!(
        admit(&mut warned, None, FieldValidation::Warn),
        Ok(vec!["unknown field \"spec.foo\"".to_string()])
    );
    assert!(warned["spec"].get("foo").is_none());
    assert_eq!(warned["spec"]["extra"], json!({"anything": {"goes": true}}));

    let mut ignored = access_key(spec);
    assert_eq!(
        admit(&mut ignored, None, FieldValidation::Ignore),
        Ok(vec![])
    );
    assert!(ignored["spec"].get("foo").is_none());
}

#[test]
fn enum_required_and_pattern_failures_are_worded_like_the_api_server() {
    let mut key = access_key(json!({
        "owner": {"kind": "Robot"},
        "scopes": ["logs:view", "Logs"],
    }));
    assert_eq!(
        causes(admit(&mut key, None, FieldValidation::Strict)),
        [
            cause("FieldValueRequired", "spec.owner.name", "Required value"),
            cause(
                "FieldValueNotSupported",
                "spec.owner.kind",
                "Unsupported value: \"Robot\": supported values: \"User\", \"ServiceAccount\""
            ),
            cause(
                "FieldValueInvalid",
                "spec.scopes[1]",
                "Invalid value: \"Logs\": spec.scopes[1] in body should match '^[a-z][a-z0-9-]*:(view|manage)$'"
            ),
            cause(
                "FieldValueInvalid",
                "<nil>",
                "Invalid value: \"null\": some validation rules were not checked because the object \
                 was invalid; correct the existing errors to complete validation"
            ),
        ]
    );
}

#[test]
fn types_lengths_items_minimum_and_formats_are_checked() {
    let mut key = access_key(json!({
        "owner": {"kind": "User", "name": ""},
        "displayName": "far too long a name",
        "scopes": ["a:view", "b:view", "a:view"],
        "rotateGeneration": -1,
        "expiresAt": "tomorrow",
        "port": 8080,
    }));
    assert_eq!(
        causes(admit(&mut key, None, FieldValidation::Strict)),
        [
            cause("FieldValueTooLong", "spec.displayName", "Too long: may not be more than 10 bytes"),
            cause(
                "FieldValueInvalid",
                "spec.expiresAt",
                "Invalid value: \"tomorrow\": spec.expiresAt in body must be of type date-time: \"tomorrow\""
            ),
            cause(
                "FieldValueInvalid",
                "spec.owner.name",
                "Invalid value: \"\": spec.owner.name in body should be at least 1 chars long"
            ),
            cause(
                "FieldValueInvalid",
                "spec.rotateGeneration",
                "Invalid value: -1: spec.rotateGeneration in body should be greater than or equal to 0"
            ),
            cause("FieldValueTooMany", "spec.scopes", "Too many: 3: must have at most 2 items"),
            cause("FieldValueDuplicate", "spec.scopes[2]", "Duplicate value: \"a:view\""),
        ]
    );

    let mut wrong_type = access_key(json!({"owner": owner(), "active": "yes", "port": true}));
    let found = causes(admit(&mut wrong_type, None, FieldValidation::Strict));
    assert_eq!(
        found[..2],
        [
            cause(
                "FieldValueTypeInvalid",
                "spec.active",
                "Invalid value: \"string\": spec.active in body must be of type boolean: \"string\""
            ),
            cause(
                "FieldValueTypeInvalid",
                "spec.port",
                "Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\""
            ),
        ]
    );
}

#[test]
fn a_missing_required_spec_is_reported() {
    let mut key = json!({"apiVersion": "keywarden.io/v1alpha1", "kind": "AccessKey", "metadata": {"name": "x"}});
    assert_eq!(
        causes(admit(&mut key, None, FieldValidation::Strict)),
        [cause("FieldValueRequired", "spec", "Required value")]
    );
}

#[test]
fn immutable_owner_rule_runs_only_on_updates() {
    let old = {
        let mut old = access_key(json!({"owner": owner()}));
        admit(&mut old, None, FieldValidation::Strict).unwrap();
        old
    };
    let mut same = access_key(json!({"owner": owner(), "displayName": "CI"}));
    assert!(admit(&mut same, Some(&old), FieldValidation::Strict).is_ok());

    let mut changed = access_key(json!({"owner": {"kind": "User", "name": "mallory"}}));
    assert_eq!(
        causes(admit(&mut changed, Some(&old), FieldValidation::Strict)),
        [cause(
            "FieldValueInvalid",
            "spec.owner",
            "Invalid value: \"object\": owner is immutable"
        )]
    );
}

#[test]
fn rule_reason_field_path_and_message_expression_are_honoured() {
    let old = {
        let mut old = access_key(json!({"owner": owner(), "rotateGeneration": 3}));
        admit(&mut old, None, FieldValidation::Strict).unwrap();
        old
    };
    let mut lowered = access_key(json!({"owner": owner(), "rotateGeneration": 1}));
    assert_eq!(
        causes(admit(&mut lowered, Some(&old), FieldValidation::Strict)),
        [cause(
            "FieldValueForbidden",
            "spec.rotateGeneration",
            "Forbidden: rotateGeneration may not decrease below 3"
        )]
    );
}

/// keywarden's own root rule: `spec.secret.name` may not change once set.
#[test]
fn root_transition_rule_with_field_path_reports_the_declaring_type() {
    let mut schema = access_key_schema();
    schema["properties"]["spec"]["properties"]["secret"]["properties"]["name"] =
        json!({"type": "string"});
    schema["x-kubernetes-validations"] = json!([{
        "rule": "(has(self.spec.secret) && has(self.spec.secret.name) ? self.spec.secret.name : '') == (has(oldSelf.spec.secret) && has(oldSelf.spec.secret.name) ? oldSelf.spec.secret.name : '')",
        "message": "spec.secret.name is immutable",
        "fieldPath": ".spec.secret.name"
    }]);
    let schema = Schema::new(schema);
    let with_secret = |name: &str| access_key(json!({"owner": owner(), "secret": {"name": name}}));
    let mut old = with_secret("creds");
    admit_custom_resource(&schema, &mut old, None, FieldValidation::Strict).unwrap();

    let mut same = with_secret("creds");
    assert!(admit_custom_resource(&schema, &mut same, Some(&old), FieldValidation::Strict).is_ok());
    let mut renamed = with_secret("other");
    assert_eq!(
        causes(admit_custom_resource(
            &schema,
            &mut renamed,
            Some(&old),
            FieldValidation::Strict
        )),
        [cause(
            "FieldValueInvalid",
            "spec.secret.name",
            "Invalid value: \"object\": spec.secret.name is immutable"
        )]
    );
}

#[test]
fn preserve_unknown_fields_at_the_root_and_embedded_resources_keep_their_fields() {
    let schema = json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "properties": {
            "spec": {"type": "object", "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}}
                }
            }}
        }
    });
    let schema = Schema::new(schema);
    let mut object = json!({
        "apiVersion": "example.io/v1", "kind": "Wrapper", "metadata": {"name": "w"},
        "anything": {"goes": 1},
        "spec": {"template": {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "inner"},
            "data": {"a": "b"}, "junk": true
        }}
    });
    let result = admit_custom_resource(&schema, &mut object, None, FieldValidation::Warn);
    assert_eq!(
        result,
        Ok(vec!["unknown field \"spec.template.junk\"".to_string()])
    );
    assert_eq!(object["anything"], json!({"goes": 1}));
    assert_eq!(object["spec"]["template"]["kind"], "ConfigMap");
    assert_eq!(
        object["spec"]["template"]["metadata"],
        json!({"name": "inner"})
    );
}

#[test]
fn bounds_properties_counts_and_numeric_formats_are_checked() {
    let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 1, "exclusiveMaximum": true},
        "step": {"type": "integer", "multipleOf": 5},
        "small": {"type": "integer", "format": "int32"},
        "labels": {"type": "object", "minProperties": 1, "maxProperties": 2,
                   "additionalProperties": {"type": "string"}},
        "hosts": {"type": "array", "minItems": 1, "items": {"type": "string"}},
        "blob": {"type": "string", "format": "byte"},
        "note": {"type": "string", "nullable": true}
    }}}});
    let schema = Schema::new(schema);
    let wrapper = |spec: Value| json!({"apiVersion": "example.io/v1", "kind": "W", "metadata": {"name": "w"}, "spec": spec});
    let mut bad = wrapper(json!({
        "ratio": 1, "step": 7, "small": 3_000_000_000_i64,
        "labels": {"a": "1", "b": "2", "c": "3"}, "hosts": [], "blob": "not base64!", "note": null
    }));
    let found = causes(admit_custom_resource(
        &schema,
        &mut bad,
        None,
        FieldValidation::Strict,
    ));
    assert_eq!(
        found,
        [
            cause("FieldValueInvalid", "spec.blob", "Invalid value: \"not base64!\": spec.blob in body must be of type byte: \"not base64!\""),
            cause("FieldValueInvalid", "spec.hosts", "Invalid value: []: spec.hosts in body should have at least 1 items"),
            cause("FieldValueTooMany", "spec.labels", "Too many: 3: must have at most 2 items"),
            cause("FieldValueInvalid", "spec.ratio", "Invalid value: 1: spec.ratio in body should be less than 1"),
            cause("FieldValueInvalid", "spec.small", "Invalid value: 3000000000: spec.small in body must be of type int32: \"3000000000\""),
            cause("FieldValueInvalid", "spec.step", "Invalid value: 7: spec.step in body should be a multiple of 5"),
        ]
    );

    let mut good = wrapper(json!({
        "ratio": 0.5, "step": 10, "small": 7, "labels": {"a": "1"}, "hosts": ["h"], "blob": "aGk=", "note": null
    }));
    assert_eq!(
        admit_custom_resource(&schema, &mut good, None, FieldValidation::Strict),
        Ok(vec![])
    );
    assert_eq!(good["spec"]["note"], Value::Null);

    let mut empty_labels = wrapper(json!({"labels": {}, "ratio": 0}));
    assert_eq!(
        causes(admit_custom_resource(
            &schema,
            &mut empty_labels,
            None,
            FieldValidation::Strict
        )),
        [
            cause(
                "FieldValueInvalid",
                "spec.labels",
                "Invalid value: {}: spec.labels in body should have at least 1 properties"
            ),
            cause(
                "FieldValueInvalid",
                "spec.ratio",
                "Invalid value: 0: spec.ratio in body should be greater than 0"
            ),
        ]
    );
}

#[test]
fn the_servers_fields_at_the_root_are_neither_required_counted_nor_validated() {
    // why: a schema may list them (kube-derive does not, hand-written CRDs do); the API server
    // owns them, so only the rest of the object is held to the root's constraints.
    let schema = Schema::new(json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "minProperties": 2,
        "maxProperties": 2,
        "properties": {
            "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 1}}},
            "spec": {"type": "object"},
            "status": {"type": "object"}
        }
    }));
    let mut one_field = json!({
        "apiVersion": "example.io/v1", "kind": "W", "metadata": {"name": "long-name"}, "spec": {}
    });
    assert_eq!(
        causes(admit_custom_resource(
            &schema,
            &mut one_field,
            None,
            FieldValidation::Strict
        )),
        vec![cause(
            "FieldValueInvalid",
            "",
            "Invalid value: {\"spec\":{}}:  in body should have at least 2 properties",
        )]
    );
    let mut two_fields = json!({
        "apiVersion": "example.io/v1", "kind": "W", "metadata": {"name": "long-name"},
        "spec": {}, "status": {}
    });
    assert_eq!(
        admit_custom_resource(&schema, &mut two_fields, None, FieldValidation::Strict),
        Ok(Vec::new())
    );
    let mut no_spec =
        json!({"apiVersion": "example.io/v1", "kind": "W", "metadata": {"name": "w"}});
    let found = causes(admit_custom_resource(
        &schema,
        &mut no_spec,
        None,
        FieldValidation::Strict,
    ));
    assert!(
        found.contains(&cause("FieldValueRequired", "spec", "Required value")),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .all(|(_, field, _)| field != "metadata" && field != "kind"),
        "{found:?}"
    );
}

#[test]
fn root_rules_see_only_the_name_and_generate_name_of_metadata() {
    let mut schema = access_key_schema();
    schema["x-kubernetes-validations"] = json!([
        {"rule": "self.metadata.name.startsWith('ci') && self.metadata.generateName == 'c'", "message": "named"},
        {"rule": "!has(self.metadata.namespace) && !has(self.metadata.labels) && !has(self.metadata.managedFields)", "message": "only the name is seen"}
    ]);
    let schema = Schema::new(schema);
    let mut key = access_key(json!({"owner": owner()}));
    key["metadata"]["generateName"] = json!("c");
    key["metadata"]["labels"] = json!({"team": "a"});
    key["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update"}]);
    let old = key.clone();
    assert_eq!(
        admit_custom_resource(&schema, &mut key, None, FieldValidation::Strict),
        Ok(vec![])
    );
    assert_eq!(
        admit_custom_resource(&schema, &mut key, Some(&old), FieldValidation::Strict),
        Ok(vec![])
    );
    assert_eq!(
        key["metadata"]["labels"],
        json!({"team": "a"}),
        "the object keeps its metadata"
    );
}
