//! Server-side `Table` rendering (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`).

mod builtin;
mod cluster_kinds;
pub mod jsonpath;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::registry::ResourceType;
use jsonpath::{scalar_text, JsonPath};

/// Renders `objects` as a `meta.k8s.io/v1` `Table`, with the CRD's `additionalPrinterColumns`
/// (dates as ages relative to `now`) or the built-in columns of well-known kinds, and
/// `list_metadata` (resourceVersion, continue) copied into the table's metadata.
///
/// With `include_object`, each row carries the whole object (a superset of the
/// `PartialObjectMetadata` the real server sends by default; kubectl reads either).
pub fn to_table(
    rt: &ResourceType,
    objects: &[Value],
    list_metadata: Value,
    include_object: bool,
    now: DateTime<Utc>,
) -> Value {
    let (columns, cells): (Vec<Value>, CellRenderer) = match &rt.crd {
        Some(crd) => {
            let printer = CustomPrinter::new(&crd.printer_columns);
            (
                printer.columns(),
                Box::new(move |obj| printer.cells(obj, now)),
            )
        }
        None => {
            let printer = builtin::printer(&rt.group, &rt.kind);
            let render = printer.cells;
            (printer.columns, Box::new(move |obj| render(obj, now)))
        }
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells(obj)));
            if include_object {
                row.insert("object".into(), obj.clone());
            }
            Value::Object(row)
        })
        .collect();
    let metadata = match list_metadata {
        Value::Object(map) => Value::Object(map),
        _ => json!({}),
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// Renders one object's cells.
type CellRenderer = Box<dyn Fn(&Value) -> Vec<Value>>;

/// A `TableColumnDefinition`.
fn column(name: &str, column_type: &str, format: &str, priority: i64) -> Value {
    json!({
        "name": name,
        "type": column_type,
        "format": format,
        "description": "",
        "priority": priority,
    })
}

/// Parses an RFC 3339 timestamp value.
fn parse_time(value: Option<&Value>) -> Option<DateTime<Utc>> {
    value
        .and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The age of a timestamp value as kubectl shows it (`<unknown>` when absent).
fn age(value: Option<&Value>, now: DateTime<Utc>) -> String {
    match value.filter(|v| !v.is_null()) {
        None => "<unknown>".to_owned(),
        Some(v) => match parse_time(Some(v)) {
            Some(at) => human_duration(now.signed_duration_since(at)),
            None => "<invalid>".to_owned(),
        },
    }
}

/// `k8s.io/apimachinery/pkg/util/duration.HumanDuration`: `45s`, `5m30s`, `3h10m`, `4d2h`, `2y`.
pub fn human_duration(elapsed: chrono::Duration) -> String {
    let seconds = elapsed.num_seconds();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// One `additionalPrinterColumns` entry, with its parsed path.
struct PrinterColumn {
    definition: Value,
    column_type: String,
    path: Option<JsonPath>,
}

/// Columns of a custom resource: `Name`, then its printer columns (or `Age` when it has none).
struct CustomPrinter {
    columns: Vec<PrinterColumn>,
}

impl CustomPrinter {
    fn new(printer_columns: &Value) -> Self {
        let declared = printer_columns.as_array().cloned().unwrap_or_default();
        let declared = if declared.is_empty() {
            vec![json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"})]
        } else {
            declared
        };
        let columns = declared
            .iter()
            .map(|c| {
                let field = |name: &str| c.get(name).and_then(Value::as_str).unwrap_or_default();
                let priority = c.get("priority").and_then(Value::as_i64).unwrap_or(0);
                let mut definition =
                    column(field("name"), field("type"), field("format"), priority);
                definition["description"] = json!(field("description"));
                PrinterColumn {
                    definition,
                    column_type: field("type").to_owned(),
                    path: JsonPath::parse(field("jsonPath")),
                }
            })
            .collect();
        Self { columns }
    }

    fn columns(&self) -> Vec<Value> {
        let mut name = column("Name", "string", "name", 0);
        name["description"] = json!("Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names");
        std::iter::once(name)
            .chain(self.columns.iter().map(|c| c.definition.clone()))
            .collect()
    }

    fn cells(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let name = obj
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null);
        std::iter::once(name)
            .chain(self.columns.iter().map(|c| {
                let found = c.path.as_ref().and_then(|p| p.find(obj).into_iter().next());
                match found {
                    None | Some(Value::Null) => Value::Null,
                    Some(value) => cell_for_json_value(&c.column_type, value, now),
                }
            }))
            .collect()
    }
}

/// The apiextensions server's `cellForJSONValue`: typed cells, dates as ages, mismatches as null.
fn cell_for_json_value(column_type: &str, value: &Value, now: DateTime<Utc>) -> Value {
    match (column_type, value) {
        ("string", value) => json!(scalar_text(value)),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(b)) => json!(b),
        ("date", Value::String(_)) => json!(age(Some(value), now)),
        _ => Value::Null,
    }
}
