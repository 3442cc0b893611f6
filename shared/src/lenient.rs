//! Serde helpers for Tencent's numbers, which some samples send as strings
//! (`"EventTime":"1670574414123"`) although the field tables say Integer.

use serde::{Deserialize, Deserializer, de::Error};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(serde_json::Number),
    Str(String),
}

fn to_u64<E: Error>(v: NumOrStr) -> Result<u64, E> {
    match v {
        NumOrStr::Num(n) => n.as_u64().ok_or_else(|| E::custom(format!("expected a non-negative integer, got {n}"))),
        NumOrStr::Str(s) => {
            s.trim().parse().map_err(|_| E::custom(format!("expected an integer, got the string {s:?}")))
        }
    }
}

fn to_i64<E: Error>(v: NumOrStr) -> Result<i64, E> {
    match v {
        NumOrStr::Num(n) => n.as_i64().ok_or_else(|| E::custom(format!("expected an integer, got {n}"))),
        NumOrStr::Str(s) => {
            s.trim().parse().map_err(|_| E::custom(format!("expected an integer, got the string {s:?}")))
        }
    }
}

/// A `u64` given as a JSON number or a decimal string.
pub fn u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    to_u64(NumOrStr::deserialize(d)?)
}

/// An optional `u64` given as a JSON number, a decimal string, or null/absent.
pub fn opt_u64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map(to_u64).transpose()
}

/// An optional `i64` given as a JSON number, a decimal string, or null/absent.
pub fn opt_i64_lenient<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<NumOrStr>::deserialize(d)?.map(to_i64).transpose()
}
