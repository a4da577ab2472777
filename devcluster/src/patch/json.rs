//! RFC 6902 JSON patch, with the Kubernetes API server's error wording.

use serde_json::Value;

use super::PatchError;

/// Applies `patch` (an array of operations) to `target`; on error `target` is left unchanged.
pub fn apply(target: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("json patch must be an array of operations".into()))?;
    // why: operations apply all-or-nothing, so work on a copy and commit at the end.
    let mut doc = target.clone();
    for op in ops {
        apply_op(&mut doc, op)?;
    }
    *target = doc;
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value) -> Result<(), PatchError> {
    let name = string_field(op, "op")?;
    let path = string_field(op, "path")?;
    match name {
        "add" => add(doc, path, value_field(op)?.clone()).map_err(|_| {
            PatchError(format!(
                "add operation does not apply: doc is missing path: \"{path}\": missing value"
            ))
        }),
        "remove" => remove(doc, path).map(drop).ok_or_else(|| {
            PatchError(format!(
                "remove operation does not apply: doc is missing path: \"{path}\": missing value"
            ))
        }),
        "replace" => {
            let value = value_field(op)?.clone();
            match pointer_mut(doc, path) {
                Some(slot) => {
                    *slot = value;
                    Ok(())
                }
                None => Err(PatchError(format!(
                    "replace operation does not apply: doc is missing key: {path}: missing value"
                ))),
            }
        }
        "move" => {
            let from = string_field(op, "from")?;
            if path.starts_with(&format!("{from}/")) {
                return Err(PatchError(format!(
                    "move operation does not apply: cannot move {from} into its own child {path}"
                )));
            }
            let value = remove(doc, from).ok_or_else(|| {
                PatchError(format!(
                    "move operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            add(doc, path, value).map_err(|_| {
                PatchError(format!(
                    "move operation does not apply: doc is missing destination path: {path}"
                ))
            })
        }
        "copy" => {
            let from = string_field(op, "from")?;
            let value = pointer(doc, from).cloned().ok_or_else(|| {
                PatchError(format!(
                    "copy operation does not apply: doc is missing from path: {from}: missing value"
                ))
            })?;
            add(doc, path, value).map_err(|_| {
                PatchError(format!(
                    "copy operation does not apply: doc is missing destination path: {path}"
                ))
            })
        }
        "test" => {
            let expected = op.get("value").unwrap_or(&Value::Null);
            // why: the API server treats a missing path as `null` in `test`.
            let actual = pointer(doc, path).unwrap_or(&Value::Null);
            if actual == expected {
                Ok(())
            } else {
                Err(PatchError(format!(
                    "testing value {path} failed: test failed"
                )))
            }
        }
        other => Err(PatchError(format!("Unexpected kind: {other}"))),
    }
}

fn string_field<'a>(op: &'a Value, key: &str) -> Result<&'a str, PatchError> {
    op.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| PatchError(format!("operation missing \"{key}\" string: {op}")))
}

fn value_field(op: &Value) -> Result<&Value, PatchError> {
    op.get("value")
        .ok_or_else(|| PatchError(format!("operation missing \"value\": {op}")))
}

/// Splits a JSON pointer into unescaped tokens; `None` when it does not start with `/`.
fn tokens(path: &str) -> Option<Vec<String>> {
    if path.is_empty() {
        return Some(Vec::new());
    }
    let rest = path.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

fn array_index(token: &str, len: usize) -> Option<usize> {
    if token.len() > 1 && token.starts_with('0') {
        return None;
    }
    token.parse::<usize>().ok().filter(|i| *i < len)
}

fn pointer<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    tokens(path)?
        .iter()
        .try_fold(doc, |node, token| match node {
            Value::Object(map) => map.get(token),
            Value::Array(items) => items.get(array_index(token, items.len())?),
            _ => None,
        })
}

fn pointer_mut<'a>(doc: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    tokens(path)?
        .iter()
        .try_fold(doc, |node, token| match node {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => {
                let index = array_index(token, items.len())?;
                items.get_mut(index)
            }
            _ => None,
        })
}

/// Resolves the parent container of `path` and the last token.
fn parent_mut<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let mut tokens = tokens(path)?;
    let last = tokens.pop()?;
    let parent_path: String = tokens
        .iter()
        .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
        .collect();
    Some((pointer_mut(doc, &parent_path)?, last))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), ()> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = parent_mut(doc, path).ok_or(())?;
    match parent {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(items) => {
            let index = if last == "-" {
                items.len()
            } else {
                array_index(&last, items.len() + 1).ok_or(())?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(()),
    }
}

fn remove(doc: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = parent_mut(doc, path)?;
    match parent {
        Value::Object(map) => map.remove(&last),
        Value::Array(items) => {
            let index = array_index(&last, items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patched(mut doc: Value, patch: Value) -> Result<Value, PatchError> {
        apply(&mut doc, &patch).map(|()| doc)
    }

    #[test]
    fn applies_every_operation_kind() {
        let doc = json!({"a": {"b": 1}, "list": [1, 2, 3]});
        let patch = json!([
            {"op": "add", "path": "/a/c", "value": 2},
            {"op": "add", "path": "/list/1", "value": 9},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "remove", "path": "/list/0"},
            {"op": "replace", "path": "/a/b", "value": "x"},
            {"op": "copy", "from": "/a/c", "path": "/copied"},
            {"op": "move", "from": "/a/c", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": 2},
        ]);
        assert_eq!(
            patched(doc, patch).unwrap(),
            json!({"a": {"b": "x"}, "list": [9, 2, 3, 4], "copied": 2, "moved": 2})
        );
    }

    #[test]
    fn test_on_missing_path_equals_null() {
        let doc = json!({"metadata": {}});
        let ok = json!([{"op": "test", "path": "/metadata/labels", "value": null}]);
        assert_eq!(patched(doc.clone(), ok).unwrap(), doc);
        let fails = json!([{"op": "test", "path": "/metadata/labels", "value": {}}]);
        assert_eq!(
            patched(doc, fails).unwrap_err().0,
            "testing value /metadata/labels failed: test failed"
        );
    }

    #[test]
    fn failed_test_leaves_document_unchanged() {
        let mut doc = json!({"spec": {"replicas": 1}});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "test", "path": "/spec/replicas", "value": 1},
        ]);
        assert!(apply(&mut doc, &patch).is_err());
        assert_eq!(doc, json!({"spec": {"replicas": 1}}));
    }

    #[test]
    fn escaped_pointer_tokens_address_keys_with_slashes_and_tildes() {
        let doc = json!({"metadata": {"annotations": {"a/b": "1", "c~d": "2"}}});
        let patch = json!([
            {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "x"},
            {"op": "remove", "path": "/metadata/annotations/c~0d"},
        ]);
        assert_eq!(
            patched(doc, patch).unwrap(),
            json!({"metadata": {"annotations": {"a/b": "x"}}})
        );
    }

    #[test]
    fn missing_paths_are_reported_like_the_api_server() {
        let doc = json!({"spec": {}});
        let err = |patch| patched(doc.clone(), patch).unwrap_err().0;
        assert_eq!(
            err(json!([{"op": "remove", "path": "/spec/x"}])),
            "remove operation does not apply: doc is missing path: \"/spec/x\": missing value"
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "/spec/x", "value": 1}])),
            "replace operation does not apply: doc is missing key: /spec/x: missing value"
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "/nope/x", "value": 1}])),
            "add operation does not apply: doc is missing path: \"/nope/x\": missing value"
        );
        assert_eq!(
            err(json!([{"op": "add", "path": "/spec/x"}])),
            "operation missing \"value\": {\"op\":\"add\",\"path\":\"/spec/x\"}"
        );
        assert!(err(json!({"op": "add"})).contains("must be an array"));
        assert_eq!(
            err(json!([{"op": "frob", "path": "/"}])),
            "Unexpected kind: frob"
        );
    }

    #[test]
    fn array_indices_are_bounds_checked() {
        let doc = json!({"l": [1]});
        assert!(patched(
            doc.clone(),
            json!([{"op": "add", "path": "/l/2", "value": 0}])
        )
        .is_err());
        assert!(patched(doc.clone(), json!([{"op": "remove", "path": "/l/01"}])).is_err());
        assert_eq!(
            patched(doc, json!([{"op": "add", "path": "/l/1", "value": 0}])).unwrap(),
            json!({"l": [1, 0]})
        );
    }
}
