//! Tests of the packed form: every value reads back as it was, and no input makes it panic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

const TABLE: &[&str] = &["Ready", "True"];

fn round_trip<T>(value: &T) -> T
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let packed = to_bytes(value, TABLE).expect("packs");
    from_bytes(&packed, TABLE).expect("unpacks")
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maybe: Option<String>,
    #[serde(skip)]
    skipped: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    list: Vec<String>,
    always: i64,
    nested: Option<Option<bool>>,
    #[serde(default = "seven")]
    defaulted: u8,
    shape: Vec<Shape>,
    labels: BTreeMap<String, String>,
    value: serde_json::Value,
    bytes: serde_bytes_like::Bytes,
    unit: (),
    pair: (u16, char),
    float: f64,
}

fn seven() -> u8 {
    7
}

mod serde_bytes_like {
    /// Bytes serialized with `serialize_bytes`.
    #[derive(Debug, PartialEq, Default)]
    pub struct Bytes(pub Vec<u8>);

    impl serde::Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for Bytes {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
                    Ok(Bytes(v.to_vec()))
                }
            }
            d.deserialize_bytes(V)
        }
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Shape {
    Point,
    Circle(f64),
    Pair(i32, i32),
    Rect { w: u32, h: u32 },
}

fn fields() -> Fields {
    Fields {
        maybe: Some("Ready".into()),
        skipped: 0,
        list: vec![
            String::new(),
            "True".into(),
            "2026-12-04T05:46:03Z".into(),
            "2026-12-04T05:46:03.123456789Z".into(),
            "2026-12-04T05:46:03.120Z".into(),
            "2026-12-04T05:46:03+00:00".into(),
            "2026-12-04t05:46:03z".into(),
            "0000-01-01T00:00:00Z".into(),
            "ü \u{0} \"quoted\"".into(),
        ],
        always: i64::MIN,
        nested: Some(None),
        defaulted: 3,
        shape: vec![
            Shape::Point,
            Shape::Circle(-0.5),
            Shape::Pair(i32::MIN, i32::MAX),
            Shape::Rect { w: 0, h: u32::MAX },
        ],
        labels: BTreeMap::from([("a".into(), "Ready".into()), ("".into(), "".into())]),
        value: serde_json::json!({"n": [1, -2, 2.5, u64::MAX, null, true], "s": {"t": "x"}}),
        bytes: serde_bytes_like::Bytes(vec![0, 255, 19]),
        unit: (),
        pair: (9, '€'),
        float: f64::MIN_POSITIVE,
    }
}

#[test]
fn every_kind_of_value_reads_back_as_it_was() {
    assert_eq!(round_trip(&fields()), fields());
}

#[test]
fn skipped_and_defaulted_fields_read_back_as_serde_defaults_them() {
    let sparse = Fields {
        maybe: None,
        list: Vec::new(),
        skipped: 5,
        ..fields()
    };
    let read = round_trip(&sparse);
    assert_eq!(read.maybe, None);
    assert!(read.list.is_empty());
    assert_eq!(read.skipped, 0, "a skipped field is not packed");
    assert_eq!(read.always, i64::MIN);
}

#[test]
fn timestamps_and_table_strings_are_packed_smaller_than_their_text() {
    let time = "2026-12-04T05:46:03Z".to_string();
    assert!(to_bytes(&time, TABLE).unwrap().len() < 10);
    assert_eq!(to_bytes(&"Ready", TABLE).unwrap().len(), 2);
    for text in [
        "2026-12-04T05:46:03+00:00",
        "2026-12-04T05:46:03.120Z",
        "2026-12-04T05:46:03.000Z",
        "9999-12-31T23:59:60Z",
    ] {
        assert_eq!(round_trip(&text.to_string()), text, "{text}");
    }
}

#[test]
fn a_field_name_is_packed_as_a_number() {
    #[derive(Serialize)]
    struct Long {
        a_field_with_a_rather_long_name: bool,
    }
    let packed = to_bytes(
        &Long {
            a_field_with_a_rather_long_name: true,
        },
        TABLE,
    )
    .unwrap();
    assert!(packed.len() <= 5, "{packed:?}");
}

#[test]
fn truncated_or_garbled_input_is_an_error_never_a_panic() {
    let packed = to_bytes(&fields(), TABLE).unwrap();
    for len in 0..packed.len() {
        assert!(
            from_bytes::<Fields>(&packed[..len], TABLE).is_err(),
            "prefix {len}"
        );
    }
    let mut longer = packed.to_vec();
    longer.push(END);
    assert!(from_bytes::<Fields>(&longer, TABLE).is_err());
    // why: a cheap deterministic generator; any byte string must fail or succeed cleanly.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..20_000 {
        let mut garbled = packed.to_vec();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let at = (state % garbled.len() as u64) as usize;
            garbled[at] = (state >> 32) as u8;
        }
        let _ = from_bytes::<Fields>(&garbled, TABLE);
        let _ = from_bytes::<serde_json::Value>(&garbled, TABLE);
    }
}

#[test]
fn kubernetes_types_read_back_as_they_were() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let selector = LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".into(),
            operator: "In".into(),
            values: Some(vec!["a".into(), "b".into()]),
        }]),
    };
    assert_eq!(round_trip(&selector), selector);
    assert_eq!(
        round_trip(&LabelSelector::default()),
        LabelSelector::default()
    );
}
