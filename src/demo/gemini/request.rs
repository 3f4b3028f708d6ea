//! Checks of the request's settings: `generationConfig`, `tools` (and their schemas) and
//! `toolConfig`.

use serde_json::{Map, Value};

use super::errors::{field_error, invalid, unknown_name};
use super::fields::{array, camel, check_keys, get, object};
use crate::demo::common::{Choice, ToolDef};
use crate::demo::wire::Reply;

pub(super) struct Gen {
    pub(super) max_tokens: Option<u64>,
    pub(super) stop: Vec<String>,
    pub(super) thinking: bool,
    pub(super) include_thoughts: bool,
    pub(super) candidates: u64,
}

impl Default for Gen {
    fn default() -> Self {
        Self {
            max_tokens: None,
            stop: Vec::new(),
            thinking: false,
            include_thoughts: false,
            candidates: 1,
        }
    }
}

pub(super) fn generation_config(g: &Map<String, Value>) -> Result<Gen, Reply> {
    check_keys(
        g,
        &[
            "stopSequences",
            "responseMimeType",
            "responseSchema",
            "responseJsonSchema",
            "responseModalities",
            "candidateCount",
            "maxOutputTokens",
            "temperature",
            "topP",
            "topK",
            "seed",
            "presencePenalty",
            "frequencyPenalty",
            "responseLogprobs",
            "logprobs",
            "enableEnhancedCivicAnswers",
            "speechConfig",
            "thinkingConfig",
            "mediaResolution",
            "imageConfig",
        ],
        "generation_config",
    )?;
    let mut out = Gen::default();
    if let Some(v) = get(g, "maxOutputTokens") {
        out.max_tokens = Some(v.as_u64().ok_or_else(|| {
            invalid(format!(
                "Invalid value at 'generation_config.max_output_tokens' (TYPE_INT32), {v}"
            ))
        })?);
    }
    if let Some(v) = get(g, "candidateCount") {
        match v.as_u64() {
            Some(n @ 1..=8) => out.candidates = n,
            _ => {
                return Err(field_error(
                    "generation_config.candidate_count",
                    "candidate_count must be between 1 and 8.",
                ))
            }
        }
    }
    if let Some(v) = get(g, "temperature") {
        match v.as_f64() {
            Some(t) if (0.0..=2.0).contains(&t) => {}
            _ => {
                return Err(field_error(
                    "generation_config.temperature",
                    "temperature must be between 0 and 2.",
                ))
            }
        }
    }
    if let Some(v) = get(g, "stopSequences") {
        let list = array(v, "generation_config.stop_sequences")?;
        if list.len() > 5 {
            return Err(field_error(
                "generation_config.stop_sequences",
                "the number of stop sequences must be at most 5.",
            ));
        }
        for s in list {
            let s = s.as_str().ok_or_else(|| {
                invalid(format!(
                    "Invalid value at 'generation_config.stop_sequences' (TYPE_STRING), {s}"
                ))
            })?;
            out.stop.push(s.to_owned());
        }
    }
    if let Some(s) = get(g, "responseSchema") {
        schema(s, "generation_config.response_schema")?;
    }
    if let Some(t) = get(g, "thinkingConfig") {
        let t = object(t, "generation_config.thinking_config")?;
        check_keys(
            t,
            &["thinkingBudget", "includeThoughts", "thinkingLevel"],
            "generation_config.thinking_config",
        )?;
        let budget = match get(t, "thinkingBudget") {
            None => None,
            Some(b) => Some(b.as_i64().ok_or_else(|| {
                invalid(format!(
                    "Invalid value at 'generation_config.thinking_config.thinking_budget' (TYPE_INT32), {b}"
                ))
            })?),
        };
        out.include_thoughts = get(t, "includeThoughts").and_then(Value::as_bool) == Some(true);
        out.thinking = budget.is_some_and(|b| b != 0)
            || get(t, "thinkingLevel").is_some()
            || out.include_thoughts;
        if budget == Some(0) {
            out.thinking = false;
            out.include_thoughts = false;
        }
    }
    Ok(out)
}

fn valid_function_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

const SCHEMA_FIELDS: [&str; 22] = [
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
];

const TYPES: [&str; 8] = [
    "type_unspecified",
    "string",
    "number",
    "integer",
    "boolean",
    "array",
    "object",
    "null",
];

/// Checks a `Schema` (the OpenAPI subset Gemini takes).
fn schema(v: &Value, at: &str) -> Result<(), Reply> {
    let s = object(v, at)?;
    for k in s.keys() {
        // `$schema`, `$ref`, `$defs`, `additionalProperties`, `const`, `oneOf`, …
        if !SCHEMA_FIELDS.contains(&camel(k).as_str()) {
            return Err(unknown_name(k, at));
        }
    }
    if let Some(t) = get(s, "type") {
        match t {
            Value::String(name) if TYPES.contains(&name.to_ascii_lowercase().as_str()) => {}
            Value::Array(_) => {
                return Err(invalid(format!("Invalid JSON payload received. Unknown name \"type\" at '{at}': Proto field is not repeating, cannot start list.")))
            }
            other => {
                return Err(invalid(format!(
                    "Invalid value at '{at}.type' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), {other}"
                )))
            }
        }
    }
    if let Some(p) = get(s, "properties") {
        for (name, sub) in object(p, &format!("{at}.properties"))? {
            schema(sub, &format!("{at}.properties[{name}]"))?;
        }
    }
    if let Some(i) = get(s, "items") {
        schema(i, &format!("{at}.items"))?;
    }
    if let Some(a) = get(s, "anyOf") {
        for (k, sub) in array(a, &format!("{at}.any_of"))?.iter().enumerate() {
            schema(sub, &format!("{at}.any_of[{k}]"))?;
        }
    }
    Ok(())
}

pub(super) fn tools(v: Option<&Value>) -> Result<Vec<ToolDef>, Reply> {
    let Some(v) = v else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (t, tool) in array(v, "tools")?.iter().enumerate() {
        let at = format!("tools[{t}]");
        let tool = object(tool, &at)?;
        check_keys(
            tool,
            &[
                "functionDeclarations",
                "googleSearch",
                "googleSearchRetrieval",
                "codeExecution",
                "urlContext",
                "computerUse",
                "fileSearch",
                "googleMaps",
            ],
            &at,
        )?;
        let Some(decls) = get(tool, "functionDeclarations") else {
            continue;
        };
        for (d, decl) in array(decls, &format!("{at}.function_declarations"))?
            .iter()
            .enumerate()
        {
            let dat = format!("{at}.function_declarations[{d}]");
            let decl = object(decl, &dat)?;
            check_keys(
                decl,
                &[
                    "name",
                    "description",
                    "parameters",
                    "parametersJsonSchema",
                    "response",
                    "responseJsonSchema",
                    "behavior",
                ],
                &dat,
            )?;
            let name = get(decl, "name").and_then(Value::as_str).unwrap_or("");
            if !valid_function_name(name) {
                return Err(field_error(
                    &format!("{dat}.name"),
                    "Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64.",
                ));
            }
            let params = get(decl, "parameters");
            let json_schema = get(decl, "parametersJsonSchema");
            if params.is_some() && json_schema.is_some() {
                return Err(field_error(
                    &dat,
                    "parameters and parameters_json_schema cannot both be set.",
                ));
            }
            if let Some(p) = params {
                schema(p, &format!("{dat}.parameters"))?;
            }
            if let Some(r) = get(decl, "response") {
                schema(r, &format!("{dat}.response"))?;
            }
            out.push(ToolDef {
                name: name.to_owned(),
                schema: params.or(json_schema).cloned(),
            });
        }
    }
    Ok(out)
}

pub(super) fn tool_config(
    v: Option<&Value>,
    tools: &[ToolDef],
) -> Result<(Vec<ToolDef>, Choice), Reply> {
    let Some(v) = v else {
        return Ok((tools.to_vec(), Choice::Auto));
    };
    let c = object(v, "tool_config")?;
    check_keys(
        c,
        &["functionCallingConfig", "retrievalConfig"],
        "tool_config",
    )?;
    let Some(f) = get(c, "functionCallingConfig") else {
        return Ok((tools.to_vec(), Choice::Auto));
    };
    let at = "tool_config.function_calling_config";
    let f = object(f, at)?;
    check_keys(f, &["mode", "allowedFunctionNames"], at)?;
    let mode = match get(f, "mode") {
        None => "AUTO".to_owned(),
        Some(Value::String(m)) => m.to_ascii_uppercase(),
        Some(other) => {
            return Err(invalid(format!(
                "Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), {other}"
            )))
        }
    };
    let allowed: Option<Vec<&str>> = match get(f, "allowedFunctionNames") {
        None => None,
        Some(a) => Some(
            array(a, &format!("{at}.allowed_function_names"))?
                .iter()
                .filter_map(Value::as_str)
                .collect(),
        ),
    };
    match mode.as_str() {
        "AUTO" | "MODE_UNSPECIFIED" | "VALIDATED" | "NONE" if allowed.is_some() => Err(field_error(
            &format!("{at}.allowed_function_names"),
            "allowed_function_names should only be set when the mode is ANY.",
        )),
        "AUTO" | "MODE_UNSPECIFIED" | "VALIDATED" => Ok((tools.to_vec(), Choice::Auto)),
        "NONE" => Ok((tools.to_vec(), Choice::None)),
        "ANY" => {
            let kept: Vec<ToolDef> = match &allowed {
                None => tools.to_vec(),
                Some(names) => tools
                    .iter()
                    .filter(|t| names.contains(&t.name.as_str()))
                    .cloned()
                    .collect(),
            };
            if let Some(missing) = allowed
                .iter()
                .flatten()
                .find(|n| !tools.iter().any(|t| t.name == **n))
            {
                return Err(field_error(
                    &format!("{at}.allowed_function_names"),
                    &format!("function {missing} is not declared in tools."),
                ));
            }
            Ok((kept, Choice::Required))
        }
        other => Err(invalid(format!(
            "Invalid value at '{at}.mode' (type.googleapis.com/google.ai.generativelanguage.v1beta.FunctionCallingConfig.Mode), \"{other}\""
        ))),
    }
}
