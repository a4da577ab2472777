//! Field paths and field sets in the `fieldsV1` notation of `metadata.managedFields`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// One step into an object: a field, a list-map item by its keys, or a set item by value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathElement {
    /// `f:<name>`
    Field(String),
    /// `k:{"name":"app"}`: the key fields, serialized with sorted keys.
    Key(String),
    /// `v:"value"`: the item, serialized.
    Value(String),
}

/// A path from the object root.
pub type Path = Vec<PathElement>;

/// A set of owned paths.
pub type FieldSet = BTreeSet<Path>;

impl PathElement {
    /// The list-map item element for `item`'s `keys`, or `None` when a key field is missing.
    pub fn key(item: &Value, keys: &[String]) -> Option<PathElement> {
        let mut sorted: Vec<&String> = keys.iter().collect();
        sorted.sort();
        let mut fields = Map::new();
        for key in sorted {
            fields.insert(key.clone(), item.get(key)?.clone());
        }
        Some(PathElement::Key(Value::Object(fields).to_string()))
    }

    /// The set item element for `item`.
    pub fn value(item: &Value) -> PathElement {
        PathElement::Value(item.to_string())
    }

    fn encode(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(keys) => format!("k:{keys}"),
            PathElement::Value(value) => format!("v:{value}"),
        }
    }

    fn decode(encoded: &str) -> Option<PathElement> {
        let (prefix, rest) = encoded.split_at_checked(2)?;
        match prefix {
            "f:" => Some(PathElement::Field(rest.to_string())),
            // why: re-serialize so keys written by other servers compare equal to ours.
            "k:" => {
                let keys: BTreeMap<String, Value> = serde_json::from_str(rest).ok()?;
                let fields: Map<String, Value> = keys.into_iter().collect();
                Some(PathElement::Key(Value::Object(fields).to_string()))
            }
            "v:" => Some(PathElement::Value(
                serde_json::from_str::<Value>(rest).ok()?.to_string(),
            )),
            _ => None,
        }
    }
}

/// What picks an item of a list out, decoded once for a search through the list.
// why: a list-map key is kept as its JSON text; decoding it for every item of every search
// (each field of each status condition, on each status write) showed in profiles.
pub enum ItemMatch<'e> {
    /// A field, or a key that does not decode: no item.
    Nothing,
    Keys(Map<String, Value>),
    Value(&'e String),
}

impl<'e> ItemMatch<'e> {
    pub fn of(element: &'e PathElement) -> Self {
        match element {
            PathElement::Field(_) => Self::Nothing,
            PathElement::Key(keys) => serde_json::from_str(keys).map_or(Self::Nothing, Self::Keys),
            PathElement::Value(value) => Self::Value(value),
        }
    }

    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Self::Nothing => false,
            Self::Keys(keys) => keys.iter().all(|(k, v)| item.get(k) == Some(v)),
            Self::Value(value) => &item.to_string() == *value,
        }
    }
}

/// Renders `path` the way conflict messages show it, e.g. `.spec.containers[name="app"].image`.
pub fn display(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        match element {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(keys) => {
                let keys: Map<String, Value> = serde_json::from_str(keys).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(value) => out.push_str(&format!("[={value}]")),
        }
    }
    out
}

/// Encodes a field set as a `fieldsV1` object.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    #[derive(Default)]
    struct Node {
        member: bool,
        children: BTreeMap<PathElement, Node>,
    }
    fn encode(node: &Node) -> Value {
        let mut out = Map::new();
        if node.member && !node.children.is_empty() {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        for (element, child) in &node.children {
            out.insert(element.encode(), encode(child));
        }
        Value::Object(out)
    }
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for element in path {
            node = node.children.entry(element.clone()).or_default();
        }
        node.member = true;
    }
    encode(&root)
}

/// Decodes a `fieldsV1` object; unknown notation is skipped.
pub fn from_fields_v1(fields: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, prefix: &mut Path, out: &mut FieldSet) {
        for (encoded, child) in node {
            if encoded == "." {
                out.insert(prefix.clone());
                continue;
            }
            let Some(element) = PathElement::decode(encoded) else {
                continue;
            };
            prefix.push(element);
            match child.as_object() {
                Some(children) if !children.is_empty() => walk(children, prefix, out),
                _ => {
                    out.insert(prefix.clone());
                }
            }
            prefix.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(root) = fields.as_object() {
        walk(root, &mut Vec::new(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn field(name: &str) -> PathElement {
        PathElement::Field(name.into())
    }

    #[test]
    fn fields_v1_round_trips_with_item_markers() {
        let fields = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}, "f:name": {}}},
                "f:finalizers": {"v:\"a\"": {}}
            }
        });
        let set = from_fields_v1(&fields);
        let app = PathElement::key(&json!({"name": "app"}), &["name".into()]).unwrap();
        assert!(set.contains(&vec![field("metadata"), field("labels"), field("app")]));
        assert!(set.contains(&vec![field("spec"), field("containers"), app.clone()]));
        assert!(set.contains(&vec![
            field("spec"),
            field("containers"),
            app,
            field("image")
        ]));
        assert_eq!(set.len(), 5);
        assert_eq!(to_fields_v1(&set), fields);
    }

    #[test]
    fn key_elements_sort_their_fields_and_display_like_the_api_server() {
        let item = json!({"protocol": "TCP", "containerPort": 80, "name": "http"});
        let keys = ["protocol".to_string(), "containerPort".to_string()];
        let element = PathElement::key(&item, &keys).unwrap();
        assert_eq!(
            element.encode(),
            r#"k:{"containerPort":80,"protocol":"TCP"}"#
        );
        assert!(ItemMatch::of(&element).matches(&item));
        assert_eq!(
            display(&vec![field("spec"), field("ports"), element]),
            r#".spec.ports[containerPort=80,protocol="TCP"]"#
        );
        assert!(PathElement::key(&json!({"protocol": "TCP"}), &keys).is_none());
    }
}
