//! A compact, self-describing binary form of serde values, for the caches that keep one value
//! per key: a field or variant is written as a number standing for its name, a string of the
//! caller's table as its index, and an RFC 3339 timestamp as seconds and nanoseconds. Decoding
//! gives back exactly what was encoded: a timestamp is packed only when it renders back to the
//! same text, and names are numbered by the process, never by position (serde skips fields).
//!
//! The form lives in memory only: numbers given to names are this process's.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{LazyLock, RwLock};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{de, ser, Deserialize, Serialize};

use crate::sync::{read, write};

mod pack;
mod unpack;

use pack::Packer;
use unpack::Unpacker;

/// What went wrong packing or unpacking a value.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(String);

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// Packs `value`; strings found in `table` are written as their index.
pub fn to_bytes<T: Serialize + ?Sized>(
    value: &T,
    table: &'static [&'static str],
) -> Result<Box<[u8]>, Error> {
    let mut packer = Packer {
        out: Vec::new(),
        table,
    };
    value.serialize(&mut packer)?;
    Ok(packer.out.into_boxed_slice())
}

/// Unpacks a value packed by [`to_bytes`] with the same `table`.
pub fn from_bytes<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    table: &'static [&'static str],
) -> Result<T, Error> {
    let mut unpacker = Unpacker { rest: bytes, table };
    let value = T::deserialize(&mut unpacker)?;
    if unpacker.rest.is_empty() {
        Ok(value)
    } else {
        Err(Error("bytes left over after the value".into()))
    }
}

// Tags: the first byte of every value.
const NONE: u8 = 0;
const SOME: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const UINT: u8 = 4;
const INT: u8 = 5;
const FLOAT: u8 = 6;
const STR: u8 = 7;
const TABLE_STR: u8 = 8;
const TIME: u8 = 9;
const BYTES: u8 = 10;
const SEQ: u8 = 11;
const MAP: u8 = 12;
const UNIT: u8 = 13;
const UNIT_VARIANT: u8 = 14;
const NEWTYPE_VARIANT: u8 = 15;
const SEQ_VARIANT: u8 = 16;
const MAP_VARIANT: u8 = 17;
const NAME: u8 = 18;
/// Ends a sequence or a map.
const END: u8 = 19;

/// The process's numbers for the `&'static str` names serde hands a serializer (fields,
/// variants); they only grow, bounded by the names in the program.
static NAMES: LazyLock<RwLock<Names>> = LazyLock::new(Default::default);

#[derive(Default)]
struct Names {
    numbers: HashMap<&'static str, u32>,
    names: Vec<&'static str>,
}

fn name_number(name: &'static str) -> u32 {
    if let Some(number) = read(&NAMES).numbers.get(name) {
        return *number;
    }
    let mut names = write(&NAMES);
    let next = u32::try_from(names.names.len()).unwrap_or(u32::MAX);
    let number = *names.numbers.entry(name).or_insert(next);
    if number == next {
        names.names.push(name);
    }
    number
}

fn name_of(number: u64) -> Result<&'static str, Error> {
    usize::try_from(number)
        .ok()
        .and_then(|i| read(&NAMES).names.get(i).copied())
        .ok_or_else(|| Error(format!("no name numbered {number}")))
}

/// The text chrono gives a `DateTime<Utc>` (and Kubernetes a `Time`) of these seconds and
/// nanoseconds.
fn render_time(seconds: i64, nanos: u32) -> Option<String> {
    DateTime::<Utc>::from_timestamp(seconds, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// Seconds and nanoseconds of `s` when it is a timestamp that renders back to exactly `s`.
fn as_time(s: &str) -> Option<(i64, u32)> {
    // why: the shortest RFC 3339 text is 20 bytes; anything shorter is not worth parsing.
    if s.len() < 20 || !s.ends_with('Z') {
        return None;
    }
    let time = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    let (seconds, nanos) = (time.timestamp(), time.timestamp_subsec_nanos());
    (render_time(seconds, nanos)? == s).then_some((seconds, nanos))
}

fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

#[cfg(test)]
mod tests;
