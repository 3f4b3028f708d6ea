//! JSON Schemas (tool parameters, `responseSchema`) reduced to the OpenAPI subset Gemini's
//! `Schema` accepts: `$ref` inlining, nullable unions, `allOf` merging, keyword filtering (see
//! the module docs, "Parameters", for the rules and the limits).

use std::collections::{HashMap, HashSet};
use std::io;

use serde_json::{Map, Value};

use super::error::invalid;
use crate::Error;

/// The `$ref` inlining budget of a request is never below this many bytes…
const INLINE_FLOOR: usize = 64 * 1024;
/// …nor above this many, whatever the size of its schemas.
const INLINE_CAP: usize = 1024 * 1024;
/// Between the two, the budget is this many times the size of the request's schemas.
const INLINE_FACTOR: usize = 4;
/// The deepest a schema may nest, each `$ref` followed counting as a level.
const MAX_DEPTH: usize = 64;
/// `$ref`s followed inside one another before the innermost becomes `{"type": "object"}`.
const MAX_REF_CHAIN: usize = 32;

/// The bytes every `$ref` of a request's schemas may inline, shared by its tools and its
/// `response_format` so that many small schemas cannot add up to a large amplification.
#[derive(Debug)]
pub(super) struct InlineBudget {
    left: usize,
}

impl InlineBudget {
    /// The budget for a request whose schemas are `schemas`: [`INLINE_FACTOR`] times their
    /// size as JSON, at least [`INLINE_FLOOR`] and at most [`INLINE_CAP`].
    pub(super) fn for_schemas<'v>(schemas: impl IntoIterator<Item = &'v Value>) -> Self {
        let size = schemas
            .into_iter()
            .map(json_len)
            .fold(0, usize::saturating_add);
        Self {
            left: size
                .saturating_mul(INLINE_FACTOR)
                .clamp(INLINE_FLOOR, INLINE_CAP),
        }
    }
}

/// The size of `v` as compact JSON, counted without building it.
fn json_len(v: &Value) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 = self.0.saturating_add(b.len());
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Cleans a tool's `parameters`; `None` when nothing is left to declare.
pub(super) fn function_parameters(
    schema: &Value,
    budget: &mut InlineBudget,
) -> Result<Option<Value>, Error> {
    let mut cleaned = clean_schema(schema, "tools", budget)?;
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

/// Reduces a JSON Schema to the subset Gemini's `Schema` accepts (see the module docs);
/// `param` is the request parameter it came from, named by the 400s.
pub(super) fn clean_schema(
    schema: &Value,
    param: &'static str,
    budget: &mut InlineBudget,
) -> Result<Value, Error> {
    let mut c = Cleaner {
        root: schema,
        param,
        refs: Vec::new(),
        sizes: HashMap::new(),
        depth: 0,
        budget,
    };
    c.clean(schema)
}

struct Cleaner<'s, 'b> {
    root: &'s Value,
    param: &'static str,
    /// The `$ref`s being expanded (cycle detection).
    refs: Vec<&'s str>,
    /// The size of each definition expanded so far, by `$ref`.
    sizes: HashMap<&'s str, usize>,
    /// Schemas being cleaned inside one another.
    depth: usize,
    budget: &'b mut InlineBudget,
}

impl<'s> Cleaner<'s, '_> {
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

    /// Takes `size` bytes of inlined definitions from the budget.
    fn spend(&mut self, size: usize) -> Result<(), Error> {
        self.budget.left = self.budget.left.checked_sub(size).ok_or_else(|| {
            invalid(
                self.param,
                format!(
                    "the JSON schemas are too large once their `$ref`s are inlined: a request \
                     may inline {INLINE_FACTOR} times the size of its schemas, at least {} KiB \
                     and at most {} KiB",
                    INLINE_FLOOR / 1024,
                    INLINE_CAP / 1024
                ),
            )
        })?;
        Ok(())
    }

    fn clean(&mut self, v: &'s Value) -> Result<Value, Error> {
        if self.depth >= MAX_DEPTH {
            return Err(invalid(
                self.param,
                format!(
                    "a JSON schema is nested too deep (more than {MAX_DEPTH} levels, counting \
                     each `$ref` followed)"
                ),
            ));
        }
        self.depth += 1;
        let out = self.clean_node(v);
        self.depth -= 1;
        out
    }

    fn clean_node(&mut self, v: &'s Value) -> Result<Value, Error> {
        let Some(s) = v.as_object() else {
            return Ok(Value::Object(Map::new()));
        };
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            if self.refs.contains(&r) || self.refs.len() >= MAX_REF_CHAIN {
                let mut o = Map::new();
                o.insert("type".to_owned(), "object".into());
                return Ok(Value::Object(o));
            }
            if let Some(target) = self.resolve(r) {
                // Every expansion is paid for with the definition's full size: the work and
                // the output both grow with it.
                let size = *self.sizes.entry(r).or_insert_with(|| json_len(target));
                self.spend(size)?;
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

        // `required` names from merged branches, each once.
        let mut required = Required::default();

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
                merge_missing(&mut out, b, &mut required);
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
                merge_missing(&mut out, b, &mut required);
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

        // The schema's own required properties (those it has), then the merged branches'.
        let mut kept = Required::default();
        if let Some(props) = out.get("properties").and_then(Value::as_object) {
            for n in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if props.contains_key(n) {
                    kept.add(n.to_owned());
                }
            }
        }
        for n in required.names {
            kept.add(n);
        }
        if !kept.names.is_empty() {
            let names = kept.names.into_iter().map(Value::String).collect();
            out.insert("required".to_owned(), Value::Array(names));
        }

        if nullable {
            out.insert("nullable".to_owned(), Value::Bool(true));
        }
        Ok(Value::Object(out))
    }
}

/// Required property names, each kept once, in order.
#[derive(Default)]
struct Required {
    names: Vec<String>,
    seen: HashSet<String>,
}

impl Required {
    fn add(&mut self, name: String) {
        if self.seen.insert(name.clone()) {
            self.names.push(name);
        }
    }
}

/// Merges `from` into `into`: keys missing in `into` are added, `properties` are unioned, and
/// `required` names go to `required` (unioned by the caller, in linear time).
fn merge_missing(into: &mut Map<String, Value>, from: Map<String, Value>, required: &mut Required) {
    for (k, v) in from {
        match (k.as_str(), into.get_mut(&k)) {
            ("required", _) => {
                if let Value::Array(names) = v {
                    for n in names {
                        if let Value::String(n) = n {
                            required.add(n);
                        }
                    }
                }
            }
            ("properties", Some(Value::Object(mine))) => {
                if let Value::Object(theirs) = v {
                    for (pk, pv) in theirs {
                        mine.entry(pk).or_insert(pv);
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
