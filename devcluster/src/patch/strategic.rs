//! Strategic merge patch for built-in kinds, as `kubectl apply` (client-side) and `kubectl patch`
//! send it: merge keys per list, `$patch`, `$retainKeys`, `$setElementOrder/`,
//! `$deleteFromPrimitiveList/` directives and `null` deletes.

use serde_json::{Map, Value};

use super::strategy::{builtin_list_strategy, ListStrategy};
use super::PatchError;

const PATCH_DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Where in the object the merge currently is: the kind and the field names from the root.
struct Cursor<'a> {
    kind: &'a str,
    path: Vec<String>,
}

impl Cursor<'_> {
    fn list_strategy(&self) -> ListStrategy {
        let path: Vec<&str> = self.path.iter().map(String::as_str).collect();
        builtin_list_strategy(self.kind, &path)
    }
}

/// Applies `patch` to `target`; on error `target` is left unchanged.
pub fn apply(target: &mut Value, patch: &Value, kind: &str) -> Result<(), PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError(
            "strategic merge patch must be a JSON object".into(),
        ));
    };
    let mut merged = match target {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut cursor = Cursor {
        kind,
        path: Vec::new(),
    };
    if merge_map(&mut merged, patch, &mut cursor)? == Outcome::Delete {
        merged.clear();
    }
    *target = Value::Object(merged);
    Ok(())
}

/// Whether a merged map stays or is deleted by `$patch: delete`.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Keep,
    Delete,
}

fn merge_map(
    original: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    cursor: &mut Cursor<'_>,
) -> Result<Outcome, PatchError> {
    match patch.get(PATCH_DIRECTIVE).map(|d| (d, d.as_str())) {
        None | Some((_, Some("merge"))) => {}
        Some((_, Some("delete"))) => return Ok(Outcome::Delete),
        Some((_, Some("replace"))) => {
            original.clear();
        }
        Some((directive, _)) => {
            return Err(PatchError(format!(
                "Unknown patch type: {directive} in map: {}",
                Value::Object(patch.clone())
            )))
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let retain = retain.as_array().ok_or_else(|| {
            PatchError(format!(
                "invalid $retainKeys directive: {retain} is not a list"
            ))
        })?;
        original.retain(|key, _| retain.iter().any(|r| r.as_str() == Some(key)));
    }
    let mut orders = Vec::new();
    for (key, value) in patch {
        if key == PATCH_DIRECTIVE || key == RETAIN_KEYS {
            continue;
        }
        if let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) {
            let server_order = match original.get(field) {
                Some(Value::Array(items)) => items.clone(),
                _ => Vec::new(),
            };
            orders.push((field, value, server_order));
        } else if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let doomed = value.as_array().ok_or_else(|| {
                PatchError(format!("invalid {key} directive: {value} is not a list"))
            })?;
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !doomed.contains(item));
            }
        } else if value.is_null() || directive(value) == Some("delete") {
            original.remove(key);
        } else {
            cursor.path.push(key.clone());
            let merged = merge_value(original.get_mut(key), value, cursor);
            cursor.path.pop();
            if let Some(value) = merged? {
                original.insert(key.clone(), value);
            }
        }
    }
    for (field, order, server_order) in orders {
        cursor.path.push(field.to_string());
        let strategy = cursor.list_strategy();
        cursor.path.pop();
        if let (Some(Value::Array(items)), Value::Array(order)) = (original.get_mut(field), order) {
            apply_element_order(items, order, &server_order, strategy);
        }
    }
    Ok(Outcome::Keep)
}

/// Merges `patch` into `existing`. Returns a replacement value, or `None` when `existing` was
/// merged in place.
fn merge_value(
    existing: Option<&mut Value>,
    patch: &Value,
    cursor: &mut Cursor<'_>,
) -> Result<Option<Value>, PatchError> {
    match (existing, patch) {
        (Some(Value::Object(original)), Value::Object(patch)) => {
            merge_map(original, patch, cursor)?;
            Ok(None)
        }
        (Some(Value::Array(original)), Value::Array(patch)) => {
            merge_list(original, patch, cursor)?;
            Ok(None)
        }
        (_, Value::Object(patch)) => {
            let mut fresh = Map::new();
            merge_map(&mut fresh, patch, cursor)?;
            Ok(Some(Value::Object(fresh)))
        }
        (_, Value::Array(patch)) => {
            let mut fresh = Vec::new();
            merge_list(&mut fresh, patch, cursor)?;
            Ok(Some(Value::Array(fresh)))
        }
        (_, scalar) => Ok(Some(scalar.clone())),
    }
}

fn directive(item: &Value) -> Option<&str> {
    item.get(PATCH_DIRECTIVE).and_then(Value::as_str)
}

fn merge_list(
    original: &mut Vec<Value>,
    patch: &[Value],
    cursor: &mut Cursor<'_>,
) -> Result<(), PatchError> {
    let strategy = cursor.list_strategy();
    if patch.iter().any(|item| directive(item) == Some("replace")) {
        original.clear();
        let rest: Vec<Value> = patch
            .iter()
            .filter(|item| directive(item) != Some("replace"))
            .cloned()
            .collect();
        return merge_list(original, &rest, cursor);
    }
    match strategy {
        ListStrategy::Atomic => {
            *original = patch.to_vec();
        }
        ListStrategy::Set => {
            for item in patch {
                if !original.contains(item) {
                    original.push(item.clone());
                }
            }
        }
        ListStrategy::Map(keys) => {
            for item in patch {
                let Value::Object(fields) = item else {
                    return Err(PatchError(format!(
                        "merging an object in json but data type is not struct, instead is: {item}"
                    )));
                };
                if let Some(primary) = keys.first().filter(|k| !fields.contains_key(**k)) {
                    return Err(PatchError(format!(
                        "map: {item} does not contain declared merge key: {primary}"
                    )));
                }
                let position = original.iter().position(|o| same_key(o, item, keys));
                if directive(item) == Some("delete") {
                    original.retain(|o| !same_key(o, item, keys));
                    continue;
                }
                match position {
                    Some(index) => {
                        if let Value::Object(existing) = &mut original[index] {
                            if merge_map(existing, fields, cursor)? == Outcome::Delete {
                                original.remove(index);
                            }
                        } else {
                            original[index] = item.clone();
                        }
                    }
                    None => {
                        let mut fresh = Map::new();
                        merge_map(&mut fresh, fields, cursor)?;
                        original.push(Value::Object(fresh));
                    }
                }
            }
        }
    }
    Ok(())
}

fn same_key(a: &Value, b: &Value, keys: &[&str]) -> bool {
    keys.iter().all(|key| a.get(key) == b.get(key))
}

/// Reorders `items` as `$setElementOrder` asks, the way the API server does: items named in
/// `order` follow it; the others keep their `server_order` and stay in front of a named item
/// that came after them on the server.
fn apply_element_order(
    items: &mut Vec<Value>,
    order: &[Value],
    server_order: &[Value],
    strategy: ListStrategy,
) {
    let matches = |item: &Value, wanted: &Value| match strategy {
        // why: kubectl names items in `$setElementOrder` by their patch merge key only.
        ListStrategy::Map(keys) => same_key(item, wanted, &keys[..keys.len().min(1)]),
        _ => item == wanted,
    };
    let position = |list: &[Value], item: &Value| list.iter().position(|o| matches(item, o));
    let (mut named, mut server_only): (Vec<Value>, Vec<Value>) = std::mem::take(items)
        .into_iter()
        .partition(|item| position(order, item).is_some());
    named.sort_by_key(|item| position(order, item));
    server_only.sort_by_key(|item| position(server_order, item));
    let mut named = named.into_iter().peekable();
    let mut server_only = server_only.into_iter().peekable();
    loop {
        let server_first = match (server_only.peek(), named.peek()) {
            (Some(server), Some(patched)) => {
                match (
                    position(server_order, server),
                    position(server_order, patched),
                ) {
                    (Some(s), Some(p)) => s < p,
                    _ => false,
                }
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if server_first {
            server_only.next()
        } else {
            named.next()
        };
        items.extend(next);
    }
}
