//! JSON Schemas (tool parameters, `responseSchema`) reduced to the OpenAPI subset Gemini's
//! `Schema` accepts: `$ref` inlining, nullable unions, `allOf` merging, keyword filtering (see
//! the module docs, "Parameters").

use serde_json::{Map, Value};

use super::error::invalid;
use crate::Error;

/// Cleans a tool's `parameters`; `None` when nothing is left to declare.
pub(super) fn function_parameters(schema: &Value) -> Result<Option<Value>, Error> {
    let mut cleaned = clean_schema(schema)?;
    let Some(o) = cleaned.as_object_mut() else {
        return Ok(None);
    };
    let has_properties = o
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if !has_properties {
        return Ok(None);
    }
    o.insert("type".to_owned(), Value::String("object".to_owned()));
    Ok(Some(cleaned))
}

/// Reduces a JSON Schema to the subset Gemini's `Schema` accepts (see the module docs).
pub(super) fn clean_schema(schema: &Value) -> Result<Value, Error> {
    let mut c = Cleaner {
        root: schema,
        refs: Vec::new(),
        budget: 20_000,
    };
    c.clean(schema)
}

struct Cleaner<'s> {
    root: &'s Value,
    /// The `$ref`s being expanded (cycle detection).
    refs: Vec<&'s str>,
    /// Nodes left to produce (bounds `$ref` expansion).
    budget: usize,
}

impl<'s> Cleaner<'s> {
    fn resolve(&self, r: &str) -> Option<&'s Value> {
        let name = r
            .strip_prefix("#/$defs/")
            .or_else(|| r.strip_prefix("#/definitions/"))?;
        let defs = self
            .root
            .get("$defs")
            .or_else(|| self.root.get("definitions"))?;
        defs.get(name)
    }

    fn clean(&mut self, v: &'s Value) -> Result<Value, Error> {
        self.budget = self.budget.checked_sub(1).ok_or_else(|| {
            invalid(
                "tools",
                "a JSON schema is too large once its `$ref`s are expanded",
            )
        })?;
        let Some(s) = v.as_object() else {
            return Ok(Value::Object(Map::new()));
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            if self.refs.contains(&r) || self.refs.len() >= 32 {
                let mut o = Map::new();
                o.insert("type".to_owned(), "object".into());
                return Ok(Value::Object(o));
            }
            if let Some(target) = self.resolve(r) {
                self.refs.push(r);
                let mut out = self.clean(target)?;
                self.refs.pop();
                if let (Some(o), Some(d)) = (
                    out.as_object_mut(),
                    s.get("description").and_then(Value::as_str),
                ) {
                    o.insert("description".to_owned(), d.into());
                }
                return Ok(out);
            }
        }

        let mut out = Map::new();
        let mut nullable = false;
        match s.get("type") {
            Some(Value::String(t)) if t == "null" => nullable = true,
            Some(Value::String(t)) => {
                out.insert("type".to_owned(), t.clone().into());
            }
            Some(Value::Array(ts)) => {
                let named: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
                nullable |= named.contains(&"null");
                let rest: Vec<&str> = named.into_iter().filter(|t| *t != "null").collect();
                match rest.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".to_owned(), (*one).into());
                    }
                    many => {
                        let any = many
                            .iter()
                            .map(|t| {
                                let mut o = Map::new();
                                o.insert("type".to_owned(), (*t).into());
                                Value::Object(o)
                            })
                            .collect();
                        out.insert("anyOf".to_owned(), Value::Array(any));
                    }
                }
            }
            _ => {}
        }

        for (k, val) in s {
            // Keywords copied as they are when their value has the right shape.
            let copy = match k.as_str() {
                "description" | "pattern" => val.is_string(),
                "minimum" | "maximum" => val.is_number(),
                "minItems" | "maxItems" | "minLength" | "maxLength" | "minProperties"
                | "maxProperties" => val.is_u64(),
                "propertyOrdering" => val
                    .as_array()
                    .is_some_and(|a| a.iter().all(Value::is_string)),
                _ => false,
            };
            if copy {
                out.insert(k.clone(), val.clone());
                continue;
            }
            match k.as_str() {
                "nullable" => nullable |= val.as_bool() == Some(true),
                "properties" => {
                    if let Some(props) = val.as_object() {
                        let mut o = Map::with_capacity(props.len());
                        for (name, p) in props {
                            o.insert(name.clone(), self.clean(p)?);
                        }
                        if !o.is_empty() {
                            out.insert(k.clone(), Value::Object(o));
                        }
                    }
                }
                "items" => {
                    let item = match val {
                        Value::Array(a) => a.first(),
                        other => Some(other),
                    };
                    if let Some(item) = item {
                        out.insert(k.clone(), self.clean(item)?);
                    }
                }
                "enum" => {
                    if let Some(a) = val.as_array() {
                        nullable |= a.iter().any(Value::is_null);
                        let values: Vec<&Value> = a.iter().filter(|x| !x.is_null()).collect();
                        if !values.is_empty() && values.iter().all(|x| x.is_string()) {
                            out.insert(
                                k.clone(),
                                Value::Array(values.into_iter().cloned().collect()),
                            );
                        }
                    }
                }
                "const" => {
                    if let Some(c) = val.as_str() {
                        out.insert("enum".to_owned(), Value::Array(vec![c.into()]));
                    }
                }
                _ => {}
            }
        }

        if !out.contains_key("description") {
            if let Some(t) = s.get("title").and_then(Value::as_str) {
                out.insert("description".to_owned(), t.into());
            }
        }

        // anyOf / oneOf: null branches become `nullable`; a single branch is inlined.
        let mut branches = Vec::new();
        for key in ["anyOf", "oneOf"] {
            for b in s.get(key).and_then(Value::as_array).into_iter().flatten() {
                if b.get("type").and_then(Value::as_str) == Some("null") {
                    nullable = true;
                    continue;
                }
                branches.push(self.clean(b)?);
            }
        }
        if branches.len() == 1 {
            if let Some(Value::Object(b)) = branches.pop() {
                merge_missing(&mut out, b);
            }
        } else if !branches.is_empty() {
            out.insert("anyOf".to_owned(), Value::Array(branches));
        }

        for b in s
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Value::Object(b) = self.clean(b)? {
                merge_missing(&mut out, b);
            }
        }

        if let Some(f) = s.get("format").and_then(Value::as_str) {
            let ok = match out.get("type").and_then(Value::as_str) {
                Some("string") => matches!(f, "enum" | "date-time"),
                Some("number") => matches!(f, "float" | "double"),
                Some("integer") => matches!(f, "int32" | "int64"),
                _ => false,
            };
            if ok {
                out.insert("format".to_owned(), f.into());
            }
        }

        if !out.contains_key("type") && !out.contains_key("anyOf") {
            if out.contains_key("properties") {
                out.insert("type".to_owned(), "object".into());
            } else if out.contains_key("items") {
                out.insert("type".to_owned(), "array".into());
            }
        }

        if let Some(req) = s.get("required").and_then(Value::as_array) {
            let props = out.get("properties").and_then(Value::as_object);
            let kept: Vec<Value> = req
                .iter()
                .filter_map(Value::as_str)
                .filter(|n| props.is_some_and(|p| p.contains_key(*n)))
                .map(Value::from)
                .collect();
            if !kept.is_empty() {
                out.insert("required".to_owned(), Value::Array(kept));
            }
        }

        if nullable {
            out.insert("nullable".to_owned(), Value::Bool(true));
        }
        Ok(Value::Object(out))
    }
}

/// Merges `from` into `into`: keys missing in `into` are added; `properties` and `required`
/// are unioned.
fn merge_missing(into: &mut Map<String, Value>, from: Map<String, Value>) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k)) {
            ("properties", Some(Value::Object(mine))) => {
                if let Value::Object(theirs) = v {
                    for (pk, pv) in theirs {
                        mine.entry(pk).or_insert(pv);
                    }
                }
            }
            ("required", Some(Value::Array(mine))) => {
                if let Value::Array(theirs) = v {
                    for r in theirs {
                        if !mine.contains(&r) {
                            mine.push(r);
                        }
                    }
                }
            }
            (_, Some(_)) => {}
            (_, None) => {
                into.insert(k, v);
            }
        }
    }
}
