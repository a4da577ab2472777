//! OpenAPI v3 documents for kubectl (`apply --validate=strict`, `explain`).
//!
//! Each group/version document lists the resource paths with their operations (kubectl reads the
//! `x-kubernetes-group-version-kind` of the `get` operation to find a kind's schema, and the
//! `fieldValidation` parameter of `patch` to decide that the server validates fields itself) and
//! the schemas of its kinds: built-in kinds from k8s-openapi, custom resources from their CRD.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, coordination::v1 as coordination,
    core::v1 as core, events::v1 as events, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Status};
use k8s_openapi::schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::discovery::MINOR_VERSION;
use crate::registry::ResourceType;

const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// The `/openapi/v3` index: one `paths` entry per served group/version.
pub fn v3_index(types: &[ResourceType]) -> Value {
    let mut group_versions: Vec<(String, String)> = Vec::new();
    for rt in types {
        let gv = (rt.group.clone(), rt.version.clone());
        if !group_versions.contains(&gv) {
            group_versions.push(gv);
        }
    }
    let mut paths = Map::new();
    for (group, version) in group_versions {
        let Some(document) = v3_document(types, &group, &version) else {
            continue;
        };
        let path = document_path(&group, &version);
        // why: kubectl caches documents by this URL forever, so it must change with the content
        // (e.g. when a CRD's schema changes).
        let mut hasher = DefaultHasher::new();
        document.to_string().hash(&mut hasher);
        let url = format!("/openapi/v3/{path}?hash={:016X}", hasher.finish());
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `api/v1` or `apis/{group}/{version}`.
fn document_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3/{api|apis/group}/{version}` document; `None` when unknown.
pub fn v3_document(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let served: Vec<&ResourceType> = types
        .iter()
        .filter(|rt| rt.group == group && rt.version == version)
        .collect();
    if served.is_empty() {
        return None;
    }
    let mut generator = SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<ObjectMeta>();
    generator.subschema_for::<Status>();
    let mut custom_schemas = Map::new();
    let mut builtin_kinds: Vec<(String, &ResourceType)> = Vec::new();
    let mut paths = Map::new();
    for rt in &served {
        let schema_name = match &rt.crd {
            Some(crd) => {
                let name = custom_schema_name(rt);
                custom_schemas.insert(name.clone(), custom_resource_schema(rt, &crd.schema));
                name
            }
            None => match builtin_schema(&mut generator, rt) {
                Some(name) => {
                    builtin_kinds.push((name.clone(), *rt));
                    name
                }
                None => {
                    let name = custom_schema_name(rt);
                    custom_schemas.insert(name.clone(), opaque_schema(rt));
                    name
                }
            },
        };
        add_paths(&mut paths, rt, &schema_name);
    }
    let mut schemas = generator.take_definitions(true);
    for (name, rt) in &builtin_kinds {
        if let Some(Value::Object(schema)) = schemas.get_mut(name) {
            schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(rt)]));
        }
    }
    schemas.extend(custom_schemas);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": format!("v1.{MINOR_VERSION}.0")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "version": rt.version, "kind": rt.kind})
}

/// The name the real server gives a custom resource's schema: `io.keywarden.v1alpha1.AccessKey`.
fn custom_schema_name(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        return format!("io.k8s.api.core.{}.{}", rt.version, rt.kind);
    }
    let reversed: Vec<&str> = rt.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), rt.version, rt.kind)
}

/// The CRD's `openAPIV3Schema`, completed with `apiVersion`, `kind` and `metadata` as the real
/// server publishes it.
fn custom_resource_schema(rt: &ResourceType, crd_schema: &Value) -> Value {
    let mut schema = match crd_schema {
        Value::Object(map) => map.clone(),
        _ => {
            let mut map = Map::new();
            map.insert("type".into(), json!("object"));
            map.insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
            map
        }
    };
    let properties = schema.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        properties.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}),
        );
        properties.insert(
            "kind".into(),
            json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}),
        );
        properties.insert(
            "metadata".into(),
            json!({
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
                "allOf": [{"$ref": format!("{SCHEMA_REF_PREFIX}io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")}],
            }),
        );
    }
    schema.insert("x-kubernetes-group-version-kind".into(), json!([gvk(rt)]));
    Value::Object(schema)
}

/// A schema that accepts any object, for built-in kinds devcluster has no typed schema for.
fn opaque_schema(rt: &ResourceType) -> Value {
    json!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-group-version-kind": [gvk(rt)],
    })
}

/// Adds `T`'s schema (and everything it references) to the generator; returns its name.
fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// Adds the k8s-openapi schema of a built-in kind to the generator and returns its name
/// (e.g. `io.k8s.api.core.v1.Secret`); `None` for kinds without a typed schema.
fn builtin_schema(generator: &mut SchemaGenerator, rt: &ResourceType) -> Option<String> {
    let add: fn(&mut SchemaGenerator) -> String =
        match (rt.group.as_str(), rt.version.as_str(), rt.kind.as_str()) {
            ("", "v1", "Namespace") => add::<core::Namespace>,
            ("", "v1", "Secret") => add::<core::Secret>,
            ("", "v1", "ConfigMap") => add::<core::ConfigMap>,
            ("", "v1", "ServiceAccount") => add::<core::ServiceAccount>,
            ("", "v1", "Service") => add::<core::Service>,
            ("", "v1", "Pod") => add::<core::Pod>,
            ("", "v1", "Event") => add::<core::Event>,
            ("events.k8s.io", "v1", "Event") => add::<events::Event>,
            ("coordination.k8s.io", "v1", "Lease") => add::<coordination::Lease>,
            ("apps", "v1", "Deployment") => add::<apps::Deployment>,
            ("apps", "v1", "StatefulSet") => add::<apps::StatefulSet>,
            ("apps", "v1", "DaemonSet") => add::<apps::DaemonSet>,
            ("rbac.authorization.k8s.io", "v1", "Role") => add::<rbac::Role>,
            ("rbac.authorization.k8s.io", "v1", "RoleBinding") => add::<rbac::RoleBinding>,
            ("rbac.authorization.k8s.io", "v1", "ClusterRole") => add::<rbac::ClusterRole>,
            ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
                add::<rbac::ClusterRoleBinding>
            }
            ("apiextensions.k8s.io", "v1", "CustomResourceDefinition") => {
                add::<apiextensions::CustomResourceDefinition>
            }
            ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy") => {
                add::<admission::ValidatingAdmissionPolicy>
            }
            ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding") => {
                add::<admission::ValidatingAdmissionPolicyBinding>
            }
            _ => return None,
        };
    Some(add(generator))
}

fn query_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": schema})
}

/// Parameters of write operations; `fieldValidation` tells kubectl the server validates fields.
fn write_parameters(patch: bool) -> Vec<Value> {
    let string = json!({"type": "string", "uniqueItems": true});
    let mut parameters = vec![
        query_parameter("dryRun", "When present, indicates that modifications should not be persisted.", string.clone()),
        query_parameter("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes.", string.clone()),
        query_parameter("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.", string),
    ];
    if patch {
        parameters.push(query_parameter(
            "force",
            "Force is going to \"force\" Apply requests.",
            json!({"type": "boolean", "uniqueItems": true}),
        ));
    }
    parameters
}

fn operation(rt: &ResourceType, action: &str, schema_name: &str, parameters: Vec<Value>) -> Value {
    let reference = json!({"$ref": format!("{SCHEMA_REF_PREFIX}{schema_name}")});
    let mut op = json!({
        "operationId": format!("{action}{}", rt.kind),
        "parameters": parameters,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": reference}}},
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt),
    });
    let content_types: &[&str] = match action {
        // why: without `application/strategic-merge-patch+json` here kubectl computes strategic
        // patches for built-in kinds from its compiled-in types (whose patch metadata is complete)
        // and merge patches for custom resources, as with a real server's CRDs.
        "patch" => &[
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ],
        "post" | "put" => &["application/json"],
        _ => &[],
    };
    if !content_types.is_empty() {
        let content: Map<String, Value> = content_types
            .iter()
            .map(|t| ((*t).to_owned(), json!({"schema": reference})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn add_paths(paths: &mut Map<String, Value>, rt: &ResourceType, schema_name: &str) {
    let prefix = if rt.group.is_empty() {
        format!("/api/{}", rt.version)
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    let scoped = if rt.namespaced {
        format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{prefix}/{}", rt.plural)
    };
    let list = |paths: &mut Map<String, Value>, path: String, with_post: bool| {
        let mut item = json!({"get": operation(rt, "list", schema_name, Vec::new())});
        if with_post {
            item["post"] = operation(rt, "post", schema_name, write_parameters(false));
        }
        paths.insert(path, item);
    };
    if rt.namespaced {
        list(paths, format!("{prefix}/{}", rt.plural), false);
    }
    list(paths, scoped.clone(), true);
    let item = |paths: &mut Map<String, Value>, path: String| {
        paths.insert(
            path,
            json!({
                "get": operation(rt, "get", schema_name, Vec::new()),
                "put": operation(rt, "put", schema_name, write_parameters(false)),
                "patch": operation(rt, "patch", schema_name, write_parameters(true)),
                "delete": operation(rt, "delete", schema_name, Vec::new()),
            }),
        );
    };
    item(paths, format!("{scoped}/{{name}}"));
    if rt.status_subresource {
        let mut status = json!({
            "get": operation(rt, "get", schema_name, Vec::new()),
            "put": operation(rt, "put", schema_name, write_parameters(false)),
            "patch": operation(rt, "patch", schema_name, write_parameters(true)),
        });
        if let Value::Object(ops) = &mut status {
            for op in ops.values_mut() {
                op["operationId"] = json!(format!(
                    "{}Status",
                    op["operationId"].as_str().unwrap_or_default()
                ));
            }
        }
        paths.insert(format!("{scoped}/{{name}}/status"), status);
    }
}
