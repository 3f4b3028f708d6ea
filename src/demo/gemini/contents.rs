//! Checks of `contents` (and `systemInstruction`): parts, roles, the order of function calls
//! and responses, and thought signatures.

use serde_json::{Map, Value};

use super::errors::{field_error, invalid};
use super::fields::{array, check_keys, get, object};
use super::reply::SIGN_DOMAIN;
use crate::demo::common::verify;
use crate::demo::wire::Reply;

/// Values Google documents as accepted in place of a real thought signature.
const DUMMY_SIGNATURES: [&str; 2] = [
    "skip_thought_signature_validator",
    "context_engineering_is_the_way_to_go",
];

/// What a part carries.
const DATA_FIELDS: [&str; 7] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
];
const PART_FIELDS: [&str; 12] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
    "thought",
    "thoughtSignature",
    "videoMetadata",
    "partMetadata",
    "mediaResolution",
];

/// One content, as far as ordering and signature checks need it.
pub(super) struct Turn {
    pub(super) model: bool,
    /// `(part index, name, thoughtSignature)`.
    pub(super) calls: Vec<(usize, String, Option<String>)>,
    pub(super) responses: Vec<(String, String)>,
    pub(super) text: String,
    pub(super) images: usize,
    /// Has parts other than function responses.
    pub(super) has_input: bool,
}

pub(super) fn content(c: &Map<String, Value>, at: &str, system: bool) -> Result<Turn, Reply> {
    check_keys(c, &["parts", "role"], at)?;
    let model = match get(c, "role").map(|r| r.as_str()) {
        None => false,
        Some(Some("user" | "function")) => false,
        Some(Some("model")) if !system => true,
        Some(Some("model")) => false,
        Some(_) => return Err(invalid("Please use a valid role: user, model.")),
    };
    let parts = match get(c, "parts") {
        None => Vec::new(),
        Some(p) => array(p, &format!("{at}.parts"))?.clone(),
    };
    if parts.is_empty() {
        return Err(field_error(
            &format!("{at}.parts"),
            "contents.parts must not be empty.",
        ));
    }
    let mut turn = Turn {
        model,
        calls: Vec::new(),
        responses: Vec::new(),
        text: String::new(),
        images: 0,
        has_input: false,
    };
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}.parts[{j}]");
        let part = object(part, &pat)?;
        check_keys(part, &PART_FIELDS, &pat)?;
        let data: Vec<&str> = DATA_FIELDS
            .iter()
            .copied()
            .filter(|f| get(part, f).is_some())
            .collect();
        match data.as_slice() {
            [] => {
                return Err(field_error(
                    &format!("{pat}.data"),
                    "required oneof field 'data' must have one initialized field",
                ))
            }
            [_] => {}
            [_, second, ..] => {
                return Err(invalid(format!(
                    "Invalid JSON payload received. Oneof field 'data' is already set. Cannot set '{second}'"
                )))
            }
        }
        let signature = get(part, "thoughtSignature")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let is_thought = get(part, "thought").and_then(Value::as_bool) == Some(true);
        match data[0] {
            "text" => {
                let t = get(part, "text").and_then(Value::as_str).ok_or_else(|| {
                    invalid(format!("Invalid value at '{pat}.text' (TYPE_STRING)"))
                })?;
                if !is_thought {
                    if !turn.text.is_empty() {
                        turn.text.push(' ');
                    }
                    turn.text.push_str(t);
                }
                turn.has_input = true;
            }
            "inlineData" | "fileData" => {
                let inline = data[0] == "inlineData";
                let fat = format!("{pat}.{}", if inline { "inline_data" } else { "file_data" });
                let blob = object(get(part, data[0]).unwrap_or(&Value::Null), &fat)?;
                let (required, required_snake) = if inline {
                    ("data", "data")
                } else {
                    ("fileUri", "file_uri")
                };
                check_keys(blob, &["mimeType", required, "displayName"], &fat)?;
                if get(blob, required).is_none() {
                    return Err(field_error(
                        &format!("{fat}.{required_snake}"),
                        "required field is not specified",
                    ));
                }
                let mime = get(blob, "mimeType").and_then(Value::as_str).unwrap_or("");
                if inline && mime.is_empty() {
                    return Err(field_error(
                        &format!("{fat}.mime_type"),
                        "required field is not specified",
                    ));
                }
                if mime.starts_with("image/") {
                    turn.images += 1;
                }
                turn.has_input = true;
            }
            "functionCall" => {
                let fc = object(
                    get(part, "functionCall").unwrap_or(&Value::Null),
                    &format!("{pat}.function_call"),
                )?;
                check_keys(fc, &["id", "name", "args"], &format!("{pat}.function_call"))?;
                let name = get(fc, "name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(field_error(
                        &format!("{pat}.function_call.name"),
                        "Name cannot be empty.",
                    ));
                }
                if let Some(args) = get(fc, "args") {
                    object(args, &format!("{pat}.function_call.args"))?;
                }
                if !model {
                    return Err(invalid("Please ensure that function call turns are model turns: a function_call part may only appear in a content with role 'model'."));
                }
                turn.calls.push((j, name.to_owned(), signature));
            }
            "functionResponse" => {
                let fr = object(
                    get(part, "functionResponse").unwrap_or(&Value::Null),
                    &format!("{pat}.function_response"),
                )?;
                check_keys(
                    fr,
                    &[
                        "id",
                        "name",
                        "response",
                        "willContinue",
                        "scheduling",
                        "parts",
                    ],
                    &format!("{pat}.function_response"),
                )?;
                let name = get(fr, "name").and_then(Value::as_str).unwrap_or("");
                if name.is_empty() {
                    return Err(field_error(
                        &format!("{pat}.function_response.name"),
                        "Name cannot be empty.",
                    ));
                }
                let response = match get(fr, "response") {
                    Some(r) => object(r, &format!("{pat}.function_response.response"))?,
                    None => {
                        return Err(field_error(
                            &format!("{pat}.function_response.response"),
                            "required field is not specified",
                        ))
                    }
                };
                if model {
                    return Err(invalid("Please ensure that function response turns are user turns: a function_response part may only appear in a content with role 'user'."));
                }
                turn.responses
                    .push((name.to_owned(), Value::Object(response.clone()).to_string()));
            }
            _ => turn.has_input = true,
        }
    }
    Ok(turn)
}

pub(super) fn contents(v: Option<&Value>) -> Result<Vec<Turn>, Reply> {
    let list = match v {
        None => return Err(field_error("contents", "contents is not specified")),
        Some(v) => array(v, "contents")?,
    };
    if list.is_empty() {
        return Err(field_error("contents", "contents is not specified"));
    }
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            let at = format!("contents[{i}]");
            content(object(c, &at)?, &at, false)
        })
        .collect()
}

/// Function calls follow a user turn or function responses; function responses follow the
/// call turn and answer every call by name.
pub(super) fn ordering(turns: &[Turn]) -> Result<(), Reply> {
    for (i, t) in turns.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &turns[p]);
        if !t.calls.is_empty() && prev.is_none_or(|p| p.model) {
            return Err(invalid("Please ensure that function call turn comes immediately after a user turn or after a function response turn."));
        }
        if !t.responses.is_empty() {
            let Some(p) = prev.filter(|p| !p.calls.is_empty()) else {
                return Err(invalid("Please ensure that function response turn comes immediately after a function call turn."));
            };
            if p.calls.len() != t.responses.len() {
                return Err(invalid("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn."));
            }
            let mut names: Vec<&str> = p.calls.iter().map(|(_, n, _)| n.as_str()).collect();
            for (name, _) in &t.responses {
                match names.iter().position(|n| n == name) {
                    Some(k) => {
                        names.swap_remove(k);
                    }
                    None => {
                        return Err(invalid(format!("Please ensure that function response names match the function call names of the function call turn: no function call named '{name}'.")))
                    }
                }
            }
        }
    }
    Ok(())
}

/// With thinking on, the first function call of each model step in the current turn carries
/// the `thoughtSignature` the demo gave it.
pub(super) fn signatures(turns: &[Turn]) -> Result<(), Reply> {
    let start = turns
        .iter()
        .rposition(|t| !t.model && t.has_input)
        .map_or(0, |i| i + 1);
    for (i, t) in turns.iter().enumerate().skip(start) {
        let Some((_, name, sig)) = t.calls.first() else {
            continue;
        };
        match sig {
            None => {
                return Err(invalid(format!("Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{name}` , position {}. Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.", i + 1)))
            }
            Some(s) if DUMMY_SIGNATURES.contains(&s.as_str()) || verify(SIGN_DOMAIN, name, s) => {}
            Some(_) => return Err(invalid("Corrupted thought signature.")),
        }
    }
    Ok(())
}
