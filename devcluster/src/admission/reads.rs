//! Which parts of a variable's value compiled expressions can read, so that a request binds
//! only those: the `cel` crate converts a bound value in full into its own representation, and
//! every field access (`object.metadata`) copies the map it selects, so binding the whole
//! object costs more than most expressions do.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kube_cel::cel::common::ast::{EntryExpr, Expr, IdedExpr};
use kube_cel::cel::objects::{Key, Map};
use kube_cel::cel::Value as Cel;
use serde_json::Value;

use super::environment::to_cel;

/// The part of a value expressions can read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Nothing: no expression names it.
    #[default]
    Nothing,
    /// Only whether it is there (`has(object.spec)`), not what it holds.
    Presence,
    /// These fields of it, when it is a map; all of it when it is anything else.
    Fields(BTreeMap<String, Reads>),
    /// All of it: it is used as a whole (compared, iterated, indexed, passed to a function).
    All,
}

impl Reads {
    /// What either `self` or `other` reads.
    pub fn merge(&mut self, other: &Reads) {
        match (&mut *self, other) {
            (Reads::All, _) | (_, Reads::Nothing) | (Reads::Presence, Reads::Presence) => {}
            (Reads::Fields(_), Reads::Presence) => {}
            (Reads::Fields(mine), Reads::Fields(theirs)) => {
                for (field, reads) in theirs {
                    mine.entry(field.clone()).or_default().merge(reads);
                }
            }
            (_, other) => *self = other.clone(),
        }
    }

    /// Whether the field `name` of the value is read (`request` builds only those).
    pub fn field(&self, name: &str) -> Option<&Reads> {
        static ALL: Reads = Reads::All;
        match self {
            Reads::All => Some(&ALL),
            Reads::Fields(fields) => fields.get(name),
            Reads::Nothing | Reads::Presence => None,
        }
    }

    /// What is read at `path` below this value, `last` being how the end of it is read.
    fn insert(&mut self, path: &[&str], last: Reads) {
        let Some((first, rest)) = path.split_first() else {
            self.merge(&last);
            return;
        };
        match self {
            Reads::All => {}
            Reads::Fields(fields) => fields
                .entry(first.to_string())
                .or_default()
                .insert(rest, last),
            Reads::Nothing | Reads::Presence => {
                let mut below = Reads::Nothing;
                below.insert(rest, last);
                *self = Reads::Fields(BTreeMap::from([(first.to_string(), below)]));
            }
        }
    }
}

/// What `expression` reads of each of `variables`, added to `reads`.
///
/// Conservative: a name a comprehension declares (`object.all(k, k.x)`) is taken for the
/// variable of that name too, which only reads more.
pub(crate) fn collect(
    expression: &IdedExpr,
    variables: &[&'static str],
    reads: &mut HashMap<&'static str, Reads>,
) {
    let mut record = |name: &str, path: &[&str], last: Reads| {
        if let Some(variable) = variables.iter().find(|variable| **variable == name) {
            match reads.entry(variable) {
                Entry::Occupied(mut entry) => entry.get_mut().insert(path, last),
                Entry::Vacant(entry) => entry.insert(Reads::Nothing).insert(path, last),
            }
        }
    };
    walk(expression, &mut record);
}

type Record<'r> = dyn FnMut(&str, &[&str], Reads) + 'r;

fn walk(expression: &IdedExpr, record: &mut Record<'_>) {
    match &expression.expr {
        Expr::Ident(name) => record(name, &[], Reads::All),
        Expr::Select(select) => {
            // why: a chain of selections from a variable reads only the selected subtree,
            // and `has()` (a test) only whether the last field is there.
            let mut path = vec![select.field.as_str()];
            let mut operand = &select.operand.expr;
            while let Expr::Select(inner) = operand {
                path.push(inner.field.as_str());
                operand = &inner.operand.expr;
            }
            match operand {
                Expr::Ident(name) => {
                    path.reverse();
                    let last = if select.test {
                        Reads::Presence
                    } else {
                        Reads::All
                    };
                    record(name, &path, last);
                }
                _ => walk(&select.operand, record),
            }
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, record);
            }
            for arg in &call.args {
                walk(arg, record);
            }
        }
        Expr::Comprehension(comprehension) => {
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                walk(part, record);
            }
        }
        Expr::List(list) => {
            for element in &list.elements {
                walk(element, record);
            }
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                walk_entry(&entry.expr, record);
            }
        }
        Expr::Struct(structure) => {
            for entry in &structure.entries {
                walk_entry(&entry.expr, record);
            }
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn walk_entry(entry: &EntryExpr, record: &mut Record<'_>) {
    match entry {
        EntryExpr::MapEntry(entry) => {
            walk(&entry.key, record);
            walk(&entry.value, record);
        }
        EntryExpr::StructField(field) => walk(&field.value, record),
    }
}

/// `value` as CEL with what `reads` can read of it; anything else is left out.
///
/// why: what no expression reads cannot change a result, and a field only tested with
/// `has()` needs to be there, not to hold its value.
pub(crate) fn to_cel_read(value: &Value, reads: &Reads) -> Cel {
    match (reads, value) {
        (Reads::Fields(fields), Value::Object(object)) => {
            let entries: HashMap<Key, Cel> = fields
                .iter()
                .filter_map(|(field, reads)| {
                    let found = object.get(field)?;
                    let converted = match reads {
                        Reads::Presence => Cel::Null,
                        reads => to_cel_read(found, reads),
                    };
                    Some((Key::String(Arc::new(field.clone())), converted))
                })
                .collect();
            Cel::Map(Map::from(entries))
        }
        // why: a variable is bound whole when nothing narrows it; selecting a field of
        // anything but a map behaves the same on the whole value.
        _ => to_cel(value),
    }
}
