//! Server-side apply and managedFields bookkeeping, following the semantics of Kubernetes'
//! structured-merge-diff: per-manager field ownership, conflicts, co-ownership and removal of
//! fields a manager stops applying.

mod fieldpath;
mod managed;
mod structure;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod update_tests;

use serde_json::{Map, Value};

use fieldpath::{display, FieldSet, Path, PathElement};
use managed::{Entry, APPLY, UPDATE};
use structure::{lookup, remove, status_only, Shape};

/// One field owned by another manager that an apply tried to change.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    /// The manager that owns the field.
    pub manager: String,
    /// The field path in Kubernetes' notation, e.g. `.spec.replicas`.
    pub field: String,
}

impl FieldConflict {
    /// The message of this conflict's `FieldManagerConflict` cause, e.g. `conflict with "alice"`.
    pub fn cause_message(&self) -> String {
        format!("conflict with {:?}", self.manager)
    }
}

/// The API server's message for an apply refused with `conflicts`.
fn conflicts_message(conflicts: &[FieldConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.cause_message(),
            only.field
        );
    }
    let mut lines = Vec::new();
    let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
    managers.sort_unstable();
    managers.dedup();
    for manager in managers {
        lines.push(format!("conflicts with {manager:?}:"));
        for conflict in conflicts.iter().filter(|c| c.manager == manager) {
            lines.push(format!("- {}", conflict.field));
        }
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

/// Why an apply was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApplyError {
    /// Fields owned by other managers would change; `force` was not set. Answered 409.
    #[error("{}", conflicts_message(.0))]
    Conflict(Vec<FieldConflict>),
    /// The applied configuration is malformed. Answered 400/422.
    #[error("{0}")]
    Invalid(String),
}

/// What the server knows about an apply request.
pub struct ApplyRequest<'a> {
    /// The `fieldManager` query parameter (required for apply).
    pub manager: &'a str,
    pub force: bool,
    /// `Some("status")` when applied to the status subresource.
    pub subresource: Option<&'a str>,
    /// The CRD's `openAPIV3Schema` for custom resources (for `x-kubernetes-list-type` and
    /// `x-kubernetes-list-map-keys`); `None` for built-in kinds, which use the built-in merge keys.
    pub schema: Option<&'a Value>,
    /// RFC 3339 timestamp recorded in managedFields entries.
    pub now: &'a str,
}

/// Computes the object that results from a server-side apply of `applied` onto `live`
/// (`None` creates the object), including its updated `metadata.managedFields`.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    request: &ApplyRequest<'_>,
) -> Result<Value, ApplyError> {
    if !applied.is_object() {
        return Err(ApplyError::Invalid(
            "the applied configuration must be a JSON object".into(),
        ));
    }
    let shape = Shape {
        kind: kind_of(applied),
        schema: request.schema,
        strict_keys: true,
    };
    let mut applied = match request.subresource {
        Some("status") => status_only(applied),
        _ => applied.clone(),
    };
    strip_managed_fields(&mut applied);
    let base = live.cloned().unwrap_or_else(|| Value::Object(Map::new()));
    let mut entries = live.map(managed::read).unwrap_or_default();
    let applied_fields = shape.field_set(&applied).map_err(ApplyError::Invalid)?;
    let mut merged = shape.merge(&base, &applied);

    let is_mine = |entry: &Entry| entry.is(request.manager, APPLY, request.subresource);
    let mut conflicts = Vec::new();
    for path in applied_fields.iter().filter(|p| changes(&base, &merged, p)) {
        for entry in entries.iter_mut().filter(|e| !is_mine(e)) {
            if !entry.fields.contains(path) {
                continue;
            }
            conflicts.push(FieldConflict {
                manager: entry.manager.clone(),
                field: display(path),
            });
            if request.force {
                entry.fields.remove(path);
            }
        }
    }
    if !conflicts.is_empty() && !request.force {
        conflicts.sort_by(|a, b| (&a.manager, &a.field).cmp(&(&b.manager, &b.field)));
        conflicts.dedup();
        return Err(ApplyError::Conflict(conflicts));
    }

    let previous = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for path in previous.difference(&applied_fields) {
        let kept_by_others = entries
            .iter()
            .filter(|e| !is_mine(e))
            .any(|e| owns_within(&e.fields, path));
        if !kept_by_others && !owns_within(&applied_fields, path) && !is_item_key(path) {
            remove(&mut merged, path);
        }
    }

    let object_changed = !same_but_managed_fields(&merged, &base);
    let api_version = applied
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mine = Entry {
        manager: request.manager.to_string(),
        operation: APPLY.to_string(),
        api_version: api_version.to_string(),
        time: Some(request.now.to_string()),
        subresource: request.subresource.map(String::from),
        fields: applied_fields,
    };
    match entries.iter_mut().find(|e| is_mine(e)) {
        Some(entry) => {
            if object_changed || entry.fields != mine.fields || entry.api_version != api_version {
                *entry = mine;
            }
        }
        None => entries.push(mine),
    }
    managed::write(&mut merged, &entries);
    Ok(merged)
}

/// Records an `Update` operation (create, PUT, any non-apply patch) by `manager` in
/// `new.metadata.managedFields`: the manager takes ownership of the fields it changed and others
/// lose them. `old` is `None` on create.
pub fn record_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    record_update_with_schema(old, new, manager, subresource, None, now);
}

/// [`record_update`] for a custom resource, whose list types come from its CRD `schema`.
pub fn record_update_with_schema(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    schema: Option<&Value>,
    now: &str,
) {
    let shape = Shape {
        kind: kind_of(new),
        schema,
        strict_keys: false,
    };
    let empty = Value::Object(Map::new());
    let before = old.unwrap_or(&empty);
    let old_fields = shape.field_set(before).unwrap_or_default();
    let new_fields = shape.field_set(new).unwrap_or_default();
    let changed: FieldSet = new_fields
        .iter()
        .filter(|p| changes(before, new, p))
        .cloned()
        .collect();
    let mut entries = old.map(managed::read).unwrap_or_default();
    if changed.is_empty() && old_fields.is_subset(&new_fields) {
        managed::write(new, &entries);
        return;
    }
    for entry in &mut entries {
        entry
            .fields
            .retain(|p| lookup(new, p).is_some() && !changed.contains(p));
    }
    let api_version = new
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    match entries
        .iter_mut()
        .find(|e| e.is(manager, UPDATE, subresource))
    {
        Some(entry) => {
            entry.fields.extend(changed);
            entry.time = Some(now.to_string());
            entry.api_version = api_version;
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: UPDATE.to_string(),
            api_version,
            time: Some(now.to_string()),
            subresource: subresource.map(String::from),
            fields: changed,
        }),
    }
    managed::write(new, &entries);
}

fn kind_of(object: &Value) -> &str {
    object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether the value at `path` differs between `before` and `after`. A list item counts as
/// changed only when it appears or disappears: its fields are paths of their own.
fn changes(before: &Value, after: &Value, path: &Path) -> bool {
    match path.last() {
        Some(PathElement::Key(_) | PathElement::Value(_)) => {
            lookup(before, path).is_some() != lookup(after, path).is_some()
        }
        _ => lookup(before, path) != lookup(after, path),
    }
}

/// Whether `path` is a key field of a list-map item, which goes only with its item.
fn is_item_key(path: &Path) -> bool {
    match path.as_slice() {
        [.., PathElement::Key(keys), PathElement::Field(name)] => {
            serde_json::from_str::<Map<String, Value>>(keys).is_ok_and(|k| k.contains_key(name))
        }
        _ => false,
    }
}

/// Whether `set` holds `path` or a path below it.
fn owns_within(set: &FieldSet, path: &Path) -> bool {
    set.range(path.clone()..)
        .next()
        .is_some_and(|owned| owned.starts_with(path))
}

fn strip_managed_fields(object: &mut Value) {
    if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
        metadata.remove("managedFields");
    }
}

/// Whether `a` and `b` are equal but for `metadata.managedFields`.
// why: compared on every apply and update; copying both objects to strip them showed in profiles.
fn same_but_managed_fields(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    same_fields(a, b, None, |name, x, y| {
        match (name, x.as_object(), y.as_object()) {
            ("metadata", Some(x), Some(y)) => {
                same_fields(x, y, Some("managedFields"), |_, x, y| x == y)
            }
            _ => x == y,
        }
    })
}

/// Whether `a` and `b` have the same fields, `skipped` aside, by `same` (name and both values).
fn same_fields(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    skipped: Option<&str>,
    same: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let kept = |name: &&String| Some(name.as_str()) != skipped;
    a.keys().filter(kept).count() == b.keys().filter(kept).count()
        && a.iter()
            .filter(|(name, _)| kept(name))
            .all(|(name, x)| b.get(name).is_some_and(|y| same(name, x, y)))
}
