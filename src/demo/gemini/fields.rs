//! Field access as protobuf JSON parsing does it: lowerCamelCase or snake_case names, unknown
//! names rejected.

use serde_json::{Map, Value};

use super::errors::{invalid, unknown_name};
use crate::demo::wire::Reply;

pub(super) fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut up = false;
    for c in key.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn snake(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field by its lowerCamelCase name, also found under its snake_case name. `null` counts
/// as absent.
pub(super) fn get<'a>(o: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.get(name)
        .or_else(|| o.get(&snake(name)))
        .filter(|v| !v.is_null())
}

pub(super) fn check_keys(o: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Reply> {
    match o.keys().find(|k| !allowed.contains(&camel(k).as_str())) {
        Some(k) => Err(unknown_name(k, at)),
        None => Ok(()),
    }
}

pub(super) fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Reply> {
    v.as_object()
        .ok_or_else(|| invalid(format!("Invalid value at '{at}', {v}")))
}

pub(super) fn array<'a>(v: &'a Value, at: &str) -> Result<&'a Vec<Value>, Reply> {
    v.as_array()
        .ok_or_else(|| invalid(format!("Invalid value at '{at}', {v}")))
}
