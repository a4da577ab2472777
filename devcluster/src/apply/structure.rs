//! The structure of an object for server-side apply: which maps are granular and how lists merge
//! (from the CRD schema or the built-in merge keys), field sets, merging and pruning by path.

use serde_json::{Map, Value};

use super::fieldpath::{FieldSet, ItemMatch, Path, PathElement};
use crate::patch::{builtin_list_strategy, ListStrategy};

/// Metadata fields the server sets, never owned by a manager.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// How a list merges.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListKind {
    Map(Vec<String>),
    Set,
    Atomic,
}

/// The kind and (for custom resources) schema that decide how an object's fields merge.
#[derive(Clone, Copy)]
pub struct Shape<'a> {
    pub kind: &'a str,
    pub schema: Option<&'a Value>,
    /// Refuse list-map items without their key fields (apply); otherwise treat the list as
    /// atomic (updates, which must always be recorded).
    pub strict_keys: bool,
}

/// A position in a walk: field names from the root and the schema node there.
#[derive(Clone)]
struct At<'a> {
    names: Vec<String>,
    schema: Option<&'a Value>,
}

impl<'a> Shape<'a> {
    fn root(&self) -> At<'a> {
        At {
            names: Vec::new(),
            schema: self.schema,
        }
    }

    fn field(&self, at: &At<'a>, name: &str) -> At<'a> {
        let schema = at.schema.and_then(|node| {
            node.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
        });
        let mut names = at.names.clone();
        names.push(name.to_string());
        At { names, schema }
    }

    fn item(&self, at: &At<'a>) -> At<'a> {
        At {
            names: at.names.clone(),
            schema: at.schema.and_then(|node| node.get("items")),
        }
    }

    /// Custom resources take list types from their schema, except in `metadata`.
    fn uses_schema(&self, at: &At<'_>) -> bool {
        self.schema.is_some() && at.names.first().map(String::as_str) != Some("metadata")
    }

    fn list_kind(&self, at: &At<'_>) -> ListKind {
        if self.uses_schema(at) {
            let node = at.schema;
            let keys = || -> Vec<String> {
                node.and_then(|n| n.get("x-kubernetes-list-map-keys"))
                    .and_then(Value::as_array)
                    .map(|keys| {
                        keys.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default()
            };
            return match node
                .and_then(|n| n.get("x-kubernetes-list-type"))
                .and_then(Value::as_str)
            {
                Some("map") => ListKind::Map(keys()),
                Some("set") => ListKind::Set,
                _ => ListKind::Atomic,
            };
        }
        let names: Vec<&str> = at.names.iter().map(String::as_str).collect();
        match builtin_list_strategy(self.kind, &names) {
            ListStrategy::Map(keys) => ListKind::Map(keys.iter().map(|k| k.to_string()).collect()),
            ListStrategy::Set => ListKind::Set,
            ListStrategy::Atomic => ListKind::Atomic,
        }
    }

    fn map_is_atomic(&self, at: &At<'_>) -> bool {
        self.uses_schema(at)
            && at
                .schema
                .and_then(|n| n.get("x-kubernetes-map-type"))
                .and_then(Value::as_str)
                == Some("atomic")
    }

    /// The paths `object` sets, excluding server-managed metadata and `apiVersion`/`kind`.
    pub fn field_set(&self, object: &Value) -> Result<FieldSet, String> {
        let mut out = FieldSet::new();
        let Value::Object(fields) = object else {
            return Ok(out);
        };
        let root = self.root();
        for (name, value) in fields {
            if name == "apiVersion" || name == "kind" {
                continue;
            }
            let at = self.field(&root, name);
            let path = vec![PathElement::Field(name.clone())];
            if name == "metadata" {
                if let Value::Object(meta) = value {
                    for (meta_name, meta_value) in meta {
                        if SERVER_METADATA.contains(&meta_name.as_str()) {
                            continue;
                        }
                        let mut meta_path = path.clone();
                        meta_path.push(PathElement::Field(meta_name.clone()));
                        let meta_at = self.field(&at, meta_name);
                        self.collect(meta_value, &meta_at, &mut meta_path, &mut out)?;
                    }
                }
                continue;
            }
            self.collect(value, &at, &mut path.clone(), &mut out)?;
        }
        Ok(out)
    }

    fn collect(
        &self,
        value: &Value,
        at: &At<'_>,
        path: &mut Path,
        out: &mut FieldSet,
    ) -> Result<(), String> {
        match value {
            // why: an empty granular map owns nothing, as in structured-merge-diff.
            Value::Object(fields) if !self.map_is_atomic(at) => {
                for (name, child) in fields {
                    path.push(PathElement::Field(name.clone()));
                    self.collect(child, &self.field(at, name), path, out)?;
                    path.pop();
                }
            }
            Value::Array(items) => match self.list_kind(at) {
                ListKind::Atomic => {
                    out.insert(path.clone());
                }
                ListKind::Set => {
                    for item in items {
                        path.push(PathElement::value(item));
                        out.insert(path.clone());
                        path.pop();
                    }
                }
                ListKind::Map(keys) => {
                    let item_at = self.item(at);
                    let all_keyed = items.iter().all(|i| PathElement::key(i, &keys).is_some());
                    if !all_keyed && !self.strict_keys {
                        out.insert(path.clone());
                        return Ok(());
                    }
                    for item in items {
                        let element = PathElement::key(item, &keys).ok_or_else(|| {
                            format!(
                                ".{}: element {item} is missing key field(s) {}",
                                at.names.join("."),
                                keys.join(", ")
                            )
                        })?;
                        path.push(element);
                        out.insert(path.clone());
                        self.collect(item, &item_at, path, out)?;
                        path.pop();
                    }
                }
            },
            _ => {
                out.insert(path.clone());
            }
        }
        Ok(())
    }

    /// Merges `applied` into `live`: granular maps merge field by field, list maps by key, sets
    /// by value, and everything else is replaced.
    pub fn merge(&self, live: &Value, applied: &Value) -> Value {
        self.merge_at(live, applied, &self.root())
    }

    fn merge_at(&self, live: &Value, applied: &Value, at: &At<'_>) -> Value {
        match (live, applied) {
            (Value::Object(live_fields), Value::Object(applied_fields))
                if !self.map_is_atomic(at) =>
            {
                let mut merged = live_fields.clone();
                for (name, value) in applied_fields {
                    // why: an applied `null` owns the field and asks for it to be absent.
                    if value.is_null() {
                        merged.remove(name);
                        continue;
                    }
                    let child = match live_fields.get(name) {
                        Some(existing) => self.merge_at(existing, value, &self.field(at, name)),
                        None => without_nulls(value),
                    };
                    merged.insert(name.clone(), child);
                }
                Value::Object(merged)
            }
            (Value::Array(live_items), Value::Array(applied_items)) => match self.list_kind(at) {
                ListKind::Atomic => applied.clone(),
                ListKind::Set => {
                    let mut merged = live_items.clone();
                    for item in applied_items {
                        if !merged.contains(item) {
                            merged.push(item.clone());
                        }
                    }
                    Value::Array(merged)
                }
                ListKind::Map(keys) => {
                    let item_at = self.item(at);
                    let mut merged = live_items.clone();
                    for item in applied_items {
                        let position = PathElement::key(item, &keys).and_then(|key| {
                            let key = ItemMatch::of(&key);
                            merged.iter().position(|m| key.matches(m))
                        });
                        match position {
                            Some(index) => {
                                merged[index] = self.merge_at(&merged[index], item, &item_at);
                            }
                            None => merged.push(item.clone()),
                        }
                    }
                    Value::Array(merged)
                }
            },
            _ => without_nulls(applied),
        }
    }
}

/// `value` with `null` object fields dropped at every depth.
fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_nulls).collect()),
        other => other.clone(),
    }
}

/// The value at `path`, if present.
pub fn lookup<'v>(value: &'v Value, path: &[PathElement]) -> Option<&'v Value> {
    path.iter().try_fold(value, |node, element| match element {
        PathElement::Field(name) => node.get(name),
        item => {
            let item = ItemMatch::of(item);
            node.as_array()?.iter().find(|i| item.matches(i))
        }
    })
}

/// Removes the value at `path`, if present; a map or list left empty by it is removed too.
pub fn remove(value: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = lookup_mut(value, parents) else {
        return;
    };
    match (parent, last) {
        (Value::Object(fields), PathElement::Field(name)) => {
            fields.remove(name);
        }
        (Value::Array(items), item) => {
            let item = ItemMatch::of(item);
            items.retain(|i| !item.matches(i));
        }
        _ => return,
    }
    let now_empty = lookup(value, parents).is_some_and(|p| match p {
        Value::Object(fields) => fields.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    });
    if now_empty && parents.len() > 1 {
        remove(value, parents);
    }
}

fn lookup_mut<'v>(value: &'v mut Value, path: &[PathElement]) -> Option<&'v mut Value> {
    path.iter().try_fold(value, |node, element| match element {
        PathElement::Field(name) => node.get_mut(name),
        item => {
            let item = ItemMatch::of(item);
            node.as_array_mut()?.iter_mut().find(|i| item.matches(i))
        }
    })
}

/// Keeps only `status` (and the identity needed to address the object) of an applied object.
pub fn status_only(object: &Value) -> Value {
    let mut out = Map::new();
    for key in ["apiVersion", "kind", "status"] {
        if let Some(value) = object.get(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
    Value::Object(out)
}
