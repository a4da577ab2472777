//! `x-kubernetes-validations` CEL rules, evaluated by `kube-cel`, reported as the API server
//! reports them.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::rc::Rc;
use std::sync::{LazyLock, Mutex};

use kube_cel::{CompiledSchema, ErrorKind, ValidationError};
use serde_json::Value;

use super::{Cause, Schema};

/// How many distinct compiled forms of schemas each thread keeps.
const CACHED_SCHEMAS: usize = 32;

/// How many clean values [`CLEAN`] remembers before it starts over.
const REMEMBERED_CLEAN_VALUES: usize = 100_000;

/// A bit per root property (in the schema's order) whose rules without `oldSelf` are left out.
type Skipped = u64;

thread_local! {
    // why: compiling every rule on every write dominates admission cost; schemas rarely change.
    static COMPILED: RefCell<HashMap<(u64, Skipped), Rc<Prepared>>> =
        RefCell::new(HashMap::new());
}

/// What kube-cel is given for a schema: its rules compiled, on the part of the schema that
/// holds them, and the root properties of the object it is handed.
struct Prepared {
    /// `None` when no rule is left.
    rules: Option<CompiledSchema>,
    /// The root properties the rules can read (`None`: all, the root has rules of its own).
    roots: Option<HashSet<String>>,
}

/// Root property values that passed every rule without `oldSelf` of their schema, by schema
/// identity, property index and a keyed 128-bit digest of the value.
// why: an update that leaves a property as it was (a status write leaves the spec) would run
// its rules again, regular expressions compiled anew and all, to the same result; the API
// server runs them too, but their outcome is already known: true. Keys are random per process,
// so no one can craft a value whose digest collides with a clean one.
static CLEAN: LazyLock<Mutex<HashSet<(u64, usize, u128)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));
static DIGEST_KEYS: LazyLock<[RandomState; 2]> =
    LazyLock::new(|| [RandomState::new(), RandomState::new()]);

fn digest(value: &Value) -> u128 {
    let [high, low] = DIGEST_KEYS.each_ref().map(|keys| keys.hash_one(value));
    (u128::from(high) << 64) | u128::from(low)
}

fn clean() -> std::sync::MutexGuard<'static, HashSet<(u64, usize, u128)>> {
    CLEAN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The compiled form of `schema` without the rules that do not read `oldSelf` under the root
/// properties in `skipped`, from this thread's cache.
fn compiled(schema: &Schema, skipped: Skipped) -> Rc<Prepared> {
    COMPILED.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(found) = cache.get(&(schema.id(), skipped)) {
            return Rc::clone(found);
        }
        if cache.len() >= CACHED_SCHEMAS {
            cache.clear();
        }
        let mut trimmed = (**schema).clone();
        if let Some(properties) = trimmed.get_mut("properties").and_then(Value::as_object_mut) {
            for (index, (_, property)) in properties.iter_mut().enumerate() {
                if index < 64 && skipped & (1 << index) != 0 {
                    keep_only_transition_rules(property);
                }
            }
        }
        let roots = (!declares_rules(&trimmed)).then(|| {
            trimmed
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(_, property)| holds_rules(property))
                .map(|(name, _)| name.clone())
                .collect()
        });
        let fresh = Rc::new(Prepared {
            rules: without_ruleless(&trimmed).map(|held| kube_cel::compile_schema(&held)),
            roots,
        });
        cache.insert((schema.id(), skipped), Rc::clone(&fresh));
        fresh
    })
}

/// Whether `schema` itself declares rules.
fn declares_rules(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|rules| !rules.is_empty())
}

/// Whether `schema` or a schema within it declares rules.
fn holds_rules(schema: &Value) -> bool {
    match schema {
        Value::Object(fields) => declares_rules(schema) || fields.values().any(holds_rules),
        Value::Array(items) => items.iter().any(holds_rules),
        _ => false,
    }
}

/// `schema` without the schemas within it that hold no rule, or `None` if it holds none.
// why: kube-cel converts the value at every schema node it walks into CEL values, rules or
// not; a status write converted the whole status at each of its nodes. A node with rules of
// its own keeps all below it: its rules may read it, and the conversion follows its types.
fn without_ruleless(schema: &Value) -> Option<Value> {
    if !holds_rules(schema) {
        return None;
    }
    let Value::Object(fields) = schema else {
        return None;
    };
    const JUNCTORS: [&str; 4] = ["allOf", "anyOf", "oneOf", "not"];
    if declares_rules(schema)
        || JUNCTORS
            .iter()
            .any(|j| fields.get(*j).is_some_and(holds_rules))
    {
        return Some(schema.clone());
    }
    let mut kept = serde_json::Map::new();
    for (name, value) in fields {
        let value = match name.as_str() {
            "properties" => {
                let held: serde_json::Map<_, _> = value
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter_map(|(property, nested)| {
                        Some((property.clone(), without_ruleless(nested)?))
                    })
                    .collect();
                Value::Object(held)
            }
            "items" | "additionalProperties" if value.is_object() => {
                match without_ruleless(value) {
                    Some(held) => held,
                    None => continue,
                }
            }
            _ if JUNCTORS.contains(&name.as_str()) => continue,
            _ => value.clone(),
        };
        kept.insert(name.clone(), value);
    }
    Some(Value::Object(kept))
}

/// Removes every rule that does not read `oldSelf` from `schema` and the schemas within it.
fn keep_only_transition_rules(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            if let Some(Value::Array(rules)) = fields.get_mut("x-kubernetes-validations") {
                rules.retain(|rule| {
                    rule.get("rule")
                        .and_then(Value::as_str)
                        .is_none_or(reads_old_self)
                });
            }
            fields
                .iter_mut()
                .filter(|(name, _)| name.as_str() != "x-kubernetes-validations")
                .for_each(|(_, nested)| keep_only_transition_rules(nested));
        }
        Value::Array(items) => items.iter_mut().for_each(keep_only_transition_rules),
        _ => {}
    }
}

/// A root property of the object under validation: its index among the schema's properties
/// (one of the first 64, which [`Skipped`] holds), its name, its value and the value's digest.
struct RootValue<'v> {
    index: usize,
    name: &'v String,
    value: &'v Value,
    digest: u128,
}

/// The root properties of `schema` that `object` has and `prepared` hands to kube-cel, each
/// value digested once.
fn root_values<'v>(
    schema: &'v Schema,
    prepared: &Prepared,
    object: &'v Value,
) -> Vec<RootValue<'v>> {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    properties
        .keys()
        .enumerate()
        .take(64)
        .filter(|(_, name)| prepared.roots.as_ref().is_none_or(|r| r.contains(*name)))
        .filter_map(|(index, name)| {
            let value = object.get(name.as_str())?;
            Some(RootValue {
                index,
                name,
                value,
                digest: digest(value),
            })
        })
        .collect()
}

/// The root properties in `values` left as `old` had them whose values are known to pass
/// their rules, as a [`Skipped`] mask.
fn known_clean(schema: &Schema, values: &[RootValue], old: &Value) -> Skipped {
    let clean = clean();
    values
        .iter()
        .filter(|root| old.get(root.name.as_str()) == Some(root.value))
        .filter(|root| clean.contains(&(schema.id(), root.index, root.digest)))
        .fold(0, |skipped, root| skipped | (1 << root.index))
}

/// Remembers the values in `values` that no error points into as clean.
fn remember_clean(schema: &Schema, values: &[RootValue], errors: &[ValidationError]) {
    let fresh: Vec<_> = values
        .iter()
        .filter(|root| {
            let within = std::slice::from_ref(root.name);
            !errors.iter().any(|error| {
                super::ratchet::ratchets(within, error.field_path.trim_start_matches('.'))
            })
        })
        .map(|root| (schema.id(), root.index, root.digest))
        .collect();
    let mut clean = clean();
    if clean.len() + fresh.len() > REMEMBERED_CLEAN_VALUES {
        clean.clear();
    }
    clean.extend(fresh);
}

/// Evaluates every rule of `schema` on `object` (`old` for transition rules). Failures of
/// rules without `oldSelf` on a value within `unchanged` are ratcheted into `warnings`.
pub fn validate_rules(
    schema: &Schema,
    object: &Value,
    old: Option<&Value>,
    unchanged: &[String],
    causes: &mut Vec<Cause>,
    warnings: &mut Vec<String>,
) {
    let whole = compiled(schema, 0);
    if whole.rules.is_none() {
        return;
    }
    let object = as_rules_see_it(object, whole.roots.as_ref());
    let old = old.map(|old| as_rules_see_it(old, whole.roots.as_ref()));
    let values = root_values(schema, &whole, &object);
    let skipped = old
        .as_ref()
        .map_or(0, |old| known_clean(schema, &values, old));
    let prepared = if skipped == 0 {
        Rc::clone(&whole)
    } else {
        compiled(schema, skipped)
    };
    let outcome = prepared
        .rules
        .as_ref()
        .map(|rules| kube_cel::validate_compiled(rules, &object, old.as_ref()));
    let errors = match outcome {
        None | Some(Ok(())) => Vec::new(),
        Some(Err(errors)) => errors.into_vec(),
    };
    remember_clean(schema, &values, &errors);
    for error in &errors {
        let cause = to_cause(schema, error);
        let node = declaring_path(schema, &error.rule, &cause.field);
        if !reads_old_self(&error.rule) && super::ratchet::ratchets(unchanged, node) {
            warnings.push(format!("{}: {}", cause.field, cause.message));
        } else {
            causes.push(cause);
        }
    }
}

/// `object` as CRD rules see it: its `metadata` only with `name` and `generateName`, the two
/// fields kube-apiserver exposes to them; and of its root properties only `roots`, those that
/// hold rules, unless the root has rules of its own (`None`).
// why: the rest (managedFields above all) would be converted into CEL values at the root and
// again at `metadata` on every write, for rules that cannot read it.
fn as_rules_see_it(object: &Value, roots: Option<&HashSet<String>>) -> Value {
    let Some(fields) = object.as_object() else {
        return object.clone();
    };
    fields
        .iter()
        .filter(|(name, _)| roots.is_none_or(|roots| roots.contains(*name)))
        .map(|(name, value)| {
            let value = match (name.as_str(), value.as_object()) {
                ("metadata", Some(metadata)) => Value::Object(
                    ["name", "generateName"]
                        .into_iter()
                        .filter_map(|f| metadata.get(f).map(|v| (f.to_string(), v.clone())))
                        .collect(),
                ),
                _ => value.clone(),
            };
            (name.clone(), value)
        })
        .collect()
}

/// Whether `rule` is a transition rule (reads `oldSelf`); those never ratchet.
fn reads_old_self(rule: &str) -> bool {
    kube_cel::cel::Program::compile(rule)
        .map(|program| program.references().has_variable("oldSelf"))
        .unwrap_or(true)
}

fn to_cause(schema: &Value, error: &ValidationError) -> Cause {
    let field = error.field_path.trim_start_matches('.').to_string();
    let reason = match error.kind {
        ErrorKind::ValidationFailure => error.reason.as_deref().unwrap_or("FieldValueInvalid"),
        _ => "FieldValueInvalid",
    };
    let message = match reason {
        "FieldValueForbidden" => format!("Forbidden: {}", error.message),
        "FieldValueRequired" => format!("Required value: {}", error.message),
        "FieldValueDuplicate" => format!("Duplicate value: {}", error.message),
        _ => format!(
            "Invalid value: \"{}\": {}",
            schema_type_at(schema, declaring_path(schema, &error.rule, &field)),
            error.message
        ),
    };
    Cause {
        reason: reason.to_string(),
        message,
        field,
    }
}

/// The path of the schema node that declares `rule`: the failure's `field` without the rule's
/// `fieldPath`, since the API server shows the declaring node's type.
fn declaring_path<'f>(schema: &Value, rule: &str, field: &'f str) -> &'f str {
    let Some(rule_path) = rule_field_path(schema, rule) else {
        return field;
    };
    let rule_path = rule_path.trim_start_matches('.');
    if field == rule_path {
        return "";
    }
    field
        .strip_suffix(rule_path)
        .and_then(|base| base.strip_suffix('.'))
        .unwrap_or(field)
}

/// The `fieldPath` declared with `rule` anywhere in `schema`.
fn rule_field_path<'s>(schema: &'s Value, rule: &str) -> Option<&'s str> {
    match schema {
        Value::Object(fields) => {
            let declared = fields
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .and_then(|rules| {
                    rules
                        .iter()
                        .find(|r| r.get("rule").and_then(Value::as_str) == Some(rule))
                })
                .and_then(|r| r.get("fieldPath"))
                .and_then(Value::as_str);
            declared.or_else(|| fields.values().find_map(|v| rule_field_path(v, rule)))
        }
        Value::Array(items) => items.iter().find_map(|v| rule_field_path(v, rule)),
        _ => None,
    }
}

/// The schema `type` at a `spec.items[0].name`-style path, as shown in CEL failures.
fn schema_type_at(schema: &Value, path: &str) -> String {
    let mut node = Some(schema);
    for segment in path.split('.').filter(|s| !s.is_empty()) {
        let (name, indices) = match segment.find('[') {
            Some(at) => (&segment[..at], segment[at..].matches('[').count()),
            None => (segment, 0),
        };
        node = node.and_then(|n| {
            n.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
        });
        for _ in 0..indices {
            node = node.and_then(|n| n.get("items"));
        }
    }
    node.and_then(|n| n.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Schema {
        Schema::new(json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "properties": {
                        "name": {
                            "type": "string",
                            "x-kubernetes-validations": [{"rule": "self.matches('^[a-z]+$')", "message": "lowercase"}]
                        },
                        "owner": {
                            "type": "string",
                            "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "owner is immutable"}]
                        }
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        }))
    }

    fn validate(
        schema: &Schema,
        object: &Value,
        old: Option<&Value>,
    ) -> (Vec<String>, Vec<String>) {
        let unchanged = old
            .map(|old| super::super::ratchet::unchanged_paths(schema, object, old))
            .unwrap_or_default();
        let (mut causes, mut warnings) = (Vec::new(), Vec::new());
        validate_rules(schema, object, old, &unchanged, &mut causes, &mut warnings);
        (causes.into_iter().map(|c| c.message).collect(), warnings)
    }

    #[test]
    fn an_unchanged_clean_property_skips_only_its_rules_without_old_self() {
        let schema = schema();
        let key = json!({"metadata": {"name": "k"}, "spec": {"name": "alpha", "owner": "alice"}});
        assert_eq!(validate(&schema, &key, None), (vec![], vec![]));

        let mut status_write = key.clone();
        status_write["status"] = json!({"phase": "Active"});
        let spec = known_clean_bit(&schema, "spec");
        let skipped = skipped_for(&schema, &status_write, &key);
        assert_eq!(skipped & spec, spec, "the spec passed its rules as it is");
        assert_eq!(
            validate(&schema, &status_write, Some(&key)),
            (vec![], vec![])
        );

        let mut renamed = status_write.clone();
        renamed["spec"]["name"] = json!("Beta");
        assert_eq!(
            skipped_for(&schema, &renamed, &status_write) & spec,
            0,
            "a changed spec"
        );
        assert_eq!(
            validate(&schema, &renamed, Some(&status_write)).0,
            ["Invalid value: \"string\": lowercase"]
        );
    }

    #[test]
    fn the_skipped_form_keeps_transition_rules() {
        let schema = schema();
        let trimmed = compiled(&schema, known_clean_bit(&schema, "spec"));
        let spec = &trimmed.rules.as_ref().unwrap().properties["spec"];
        assert!(
            spec.properties
                .get("name")
                .is_none_or(|name| name.validations.is_empty()),
            "no rule without oldSelf is left"
        );
        assert_eq!(spec.properties["owner"].validations.len(), 1);
    }

    #[test]
    fn a_value_that_failed_is_never_taken_as_clean_and_keeps_warning() {
        let schema = schema();
        // why: stored before the rule existed (a CRD tightened later), so never found clean.
        let stored =
            json!({"metadata": {"name": "k"}, "spec": {"name": "Upper", "owner": "alice"}});
        for phase in ["Pending", "Active", "Active"] {
            let mut write = stored.clone();
            write["status"] = json!({"phase": phase});
            let spec = known_clean_bit(&schema, "spec");
            assert_eq!(skipped_for(&schema, &write, &stored) & spec, 0);
            let (causes, warnings) = validate(&schema, &write, Some(&stored));
            assert!(causes.is_empty(), "{causes:?}");
            assert_eq!(
                warnings,
                ["spec.name: Invalid value: \"string\": lowercase"]
            );
        }
    }

    #[test]
    fn only_the_schemas_that_hold_rules_are_walked_and_only_their_root_properties_handed_over() {
        let schema = schema();
        let prepared = compiled(&schema, 0);
        assert_eq!(
            prepared.roots.as_ref().unwrap(),
            &HashSet::from(["spec".to_string()])
        );
        let rules = prepared.rules.as_ref().unwrap();
        assert_eq!(rules.properties.keys().collect::<Vec<_>>(), ["spec"]);
        let see = |object: &Value| as_rules_see_it(object, prepared.roots.as_ref());
        let key = json!({
            "apiVersion": "v1",
            "metadata": {"name": "k", "managedFields": [{}]},
            "spec": {"name": "alpha"},
            "status": {"phase": "Active"}
        });
        assert_eq!(see(&key), json!({"spec": {"name": "alpha"}}));

        let no_rules = Schema::new(json!({
            "type": "object",
            "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}
        }));
        assert!(compiled(&no_rules, 0).rules.is_none());
        assert_eq!(
            validate(&no_rules, &json!({"spec": {"a": "x"}}), None),
            (vec![], vec![])
        );
    }

    #[test]
    fn rules_still_read_everything_below_them_and_root_rules_the_whole_object() {
        let schema = Schema::new(json!({
            "type": "object",
            "x-kubernetes-validations": [{"rule": "!has(self.status) || self.status.phase != 'Bad'", "message": "bad phase"}],
            "properties": {
                "metadata": {"type": "object"},
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [{"rule": "self.limits.max >= self.limits.min", "message": "max below min"}],
                    "properties": {
                        "limits": {
                            "type": "object",
                            "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}
                        }
                    }
                },
                "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
            }
        }));
        assert!(
            compiled(&schema, 0).roots.is_none(),
            "a root rule reads it all"
        );
        let object = json!({
            "metadata": {"name": "k"},
            "spec": {"limits": {"min": 2, "max": 1}},
            "status": {"phase": "Bad"}
        });
        let (causes, _) = validate(&schema, &object, None);
        assert_eq!(causes.len(), 2, "{causes:?}");
        assert!(
            causes.iter().any(|c| c.ends_with("bad phase")),
            "{causes:?}"
        );
        assert!(
            causes.iter().any(|c| c.ends_with("max below min")),
            "{causes:?}"
        );
    }

    fn skipped_for(schema: &Schema, object: &Value, old: &Value) -> Skipped {
        known_clean(
            schema,
            &root_values(schema, &compiled(schema, 0), object),
            old,
        )
    }

    fn known_clean_bit(schema: &Schema, property: &str) -> Skipped {
        let index = schema["properties"]
            .as_object()
            .and_then(|p| p.keys().position(|k| k == property))
            .unwrap();
        1 << index
    }
}
