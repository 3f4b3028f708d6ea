//! The OpenAI Responses ingress (`/v1/responses`) against the demo providers of every kind.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use serde_json::{json, Value};
use switchboard::catalog::{ModelSpec, Provider, ProviderKind};
use switchboard::client::UpstreamBody;
use switchboard::demo::{DemoConfig, DemoProviders, DemoServer, Fault, DEMO_API_KEY};
use switchboard::edge::Responses;
use switchboard::ext::Candidate;
use switchboard::translate::ProviderTranslateLayer;
use switchboard::{Catalog, Error, Gateway};
use tower::{service_fn, ServiceExt};

const MODELS: [&str; 3] = [
    "openai/gpt-4o-mini",
    "anthropic/claude-sonnet-4",
    "google/gemini-2.5-flash",
];

async fn gateway() -> (DemoProviders, Gateway) {
    let demo = DemoProviders::start().await.unwrap();
    let g = Gateway::builder(demo.catalog()).build();
    (demo, g)
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&self.body)))
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn post_to(
    svc: impl tower::Service<
        http::Request<Full<Bytes>>,
        Response = http::Response<switchboard::edge::EdgeBody>,
        Error = std::convert::Infallible,
    >,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> Answer {
    let mut b = http::Request::post("/v1/responses").header("content-type", "application/json");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(30),
        svc.oneshot(b.body(Full::new(body.into())).unwrap()),
    )
    .await
    .expect("answered in time")
    .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

async fn post(g: &Gateway, body: &Value) -> Answer {
    post_to(g.responses(), body.to_string(), &[]).await
}

/// Parses an SSE body into (event name, data) pairs; comments are skipped.
fn events(body: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(body).unwrap();
    let mut out = Vec::new();
    for block in text
        .split("\n\n")
        .filter(|b| !b.trim().is_empty() && !b.starts_with(':'))
    {
        let mut name = String::new();
        let mut data = String::new();
        for line in block.lines() {
            if let Some(n) = line.strip_prefix("event: ") {
                name = n.to_owned();
            } else if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
        let data: Value = serde_json::from_str(&data).unwrap_or_else(|_| panic!("{block}"));
        assert_eq!(
            data["type"],
            name.as_str(),
            "event name = data.type: {block}"
        );
        out.push((name, data));
    }
    out
}

fn append(v: &mut Value, key: &str, piece: &Value) {
    let s = format!(
        "{}{}",
        v[key].as_str().unwrap_or(""),
        piece.as_str().unwrap()
    );
    v[key] = Value::from(s);
}

/// Checks the Responses event grammar, accumulates the output the way the SDK's stream helper
/// does, checks that it matches the final response, and returns (final event name, response).
fn well_formed(evs: &[(String, Value)]) -> (String, Value) {
    assert!(evs.len() >= 3, "{evs:?}");
    for (i, (_, d)) in evs.iter().enumerate() {
        assert_eq!(d["sequence_number"], i as u64, "contiguous from 0: {d}");
    }
    assert_eq!(evs[0].0, "response.created");
    assert_eq!(evs[1].0, "response.in_progress");
    let created = &evs[0].1["response"];
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "in_progress");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    let mut output: Vec<Value> = Vec::new();
    let mut open: Option<usize> = None;
    let mut part_open: Option<u64> = None;
    let mut summary_open = false;
    let (last_name, last) = evs.last().unwrap();
    for (name, d) in &evs[2..evs.len() - 1] {
        let item_of = |d: &Value| {
            let i = usize::try_from(d["output_index"].as_u64().unwrap()).unwrap();
            assert_eq!(Some(i), open, "events refer to the open item: {d}");
            i
        };
        match name.as_str() {
            "response.output_item.added" => {
                assert!(open.is_none(), "items do not interleave: {d}");
                assert_eq!(d["output_index"], output.len() as u64);
                assert_eq!(d["item"]["status"], "in_progress");
                open = Some(output.len());
                output.push(d["item"].clone());
            }
            "response.output_item.done" => {
                let i = item_of(d);
                assert!(part_open.is_none() && !summary_open, "parts closed first");
                let acc = &output[i];
                let done = &d["item"];
                assert_eq!(acc["id"], done["id"]);
                assert_eq!(acc["type"], done["type"]);
                match acc["type"].as_str().unwrap() {
                    "message" => assert_eq!(acc["content"], done["content"], "{d}"),
                    "function_call" => {
                        assert_eq!(acc["arguments"], done["arguments"]);
                        assert_eq!(acc["call_id"], done["call_id"]);
                        assert_eq!(acc["name"], done["name"]);
                    }
                    "reasoning" => {
                        let said = acc["summary_text"].as_str().unwrap_or("");
                        let done_text = done["summary"][0]["text"].as_str().unwrap_or("");
                        assert_eq!(said, done_text);
                    }
                    other => panic!("unknown item {other}"),
                }
                output[i] = done.clone();
                open = None;
            }
            "response.content_part.added" => {
                let i = item_of(d);
                assert!(part_open.is_none());
                let content = output[i]["content"].as_array_mut().unwrap();
                assert_eq!(d["content_index"], content.len() as u64);
                part_open = d["content_index"].as_u64();
                content.push(d["part"].clone());
            }
            "response.output_text.delta" | "response.refusal.delta" => {
                let i = item_of(d);
                assert_eq!(d["content_index"].as_u64(), part_open);
                let c = usize::try_from(part_open.unwrap()).unwrap();
                let key = if name.contains("refusal") {
                    "refusal"
                } else {
                    "text"
                };
                append(&mut output[i]["content"][c], key, &d["delta"]);
            }
            "response.output_text.done" | "response.refusal.done" => {
                let i = item_of(d);
                let c = usize::try_from(part_open.unwrap()).unwrap();
                let (key, field) = if name.contains("refusal") {
                    ("refusal", "refusal")
                } else {
                    ("text", "text")
                };
                assert_eq!(output[i]["content"][c][key], d[field], "done = deltas");
            }
            "response.content_part.done" => {
                let i = item_of(d);
                assert_eq!(d["content_index"].as_u64(), part_open);
                let c = usize::try_from(part_open.unwrap()).unwrap();
                assert_eq!(output[i]["content"][c], d["part"]);
                part_open = None;
            }
            "response.function_call_arguments.delta" => {
                let i = item_of(d);
                assert_eq!(output[i]["type"], "function_call");
                append(&mut output[i], "arguments", &d["delta"]);
            }
            "response.function_call_arguments.done" => {
                let i = item_of(d);
                assert_eq!(output[i]["arguments"], d["arguments"], "done = deltas");
                assert_eq!(output[i]["name"], d["name"]);
            }
            "response.reasoning_summary_part.added" => {
                item_of(d);
                assert!(!summary_open);
                summary_open = true;
            }
            "response.reasoning_summary_text.delta" => {
                let i = item_of(d);
                assert!(summary_open);
                append(&mut output[i], "summary_text", &d["delta"]);
            }
            "response.reasoning_summary_text.done" => {
                let i = item_of(d);
                assert_eq!(output[i]["summary_text"], d["text"], "done = deltas");
            }
            "response.reasoning_summary_part.done" => {
                let i = item_of(d);
                assert_eq!(output[i]["summary_text"], d["part"]["text"]);
                summary_open = false;
            }
            "error" => {
                assert!(d["message"].is_string());
                // Only the terminal event may follow.
            }
            other => panic!("unexpected event {other}: {d}"),
        }
    }
    let r = last["response"].clone();
    assert_eq!(r["id"], id.as_str(), "one id throughout");
    match last_name.as_str() {
        "response.completed" | "response.incomplete" => {
            assert!(open.is_none(), "every added item is done");
            assert_eq!(
                r["output"],
                Value::Array(output),
                "the final output is the streamed one"
            );
            assert!(r["usage"]["total_tokens"].is_u64(), "{r}");
        }
        "response.failed" => {
            assert_eq!(r["status"], "failed");
            assert!(r["error"]["message"].is_string());
            assert_eq!(evs[evs.len() - 2].0, "error");
        }
        other => panic!("ends with a terminal event, not {other}"),
    }
    (last_name.clone(), r)
}

fn weather_tool() -> Value {
    json!({
        "type": "function",
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": false,
    })
}

fn output_text(r: &Value) -> String {
    r["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

#[tokio::test]
async fn plain_answers_from_every_provider_kind() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let a = post(
            &g,
            &json!({"model": model, "instructions": "Be brief.", "input": "Hello there",
                "metadata": {"k": "v"}, "store": false, "temperature": 0.5}),
        )
        .await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let r = a.json();
        assert_eq!(r["object"], "response");
        assert!(r["id"].as_str().unwrap().starts_with("resp_"), "{r}");
        assert_eq!(r["status"], "completed", "{model}");
        assert_eq!(r["model"], model);
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(r["store"], false);
        assert!(r["incomplete_details"].is_null());
        let msg = &r["output"][0];
        assert_eq!(msg["type"], "message", "{r}");
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["status"], "completed");
        assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
        assert_eq!(msg["content"][0]["type"], "output_text");
        assert!(output_text(&r).contains("You said: Hello there"), "{r}");
        let u = &r["usage"];
        let (input, output) = (
            u["input_tokens"].as_u64().unwrap(),
            u["output_tokens"].as_u64().unwrap(),
        );
        assert!(input > 0 && output > 0, "{u}");
        assert_eq!(u["total_tokens"].as_u64().unwrap(), input + output);
        assert!(u["input_tokens_details"]["cached_tokens"].is_u64());
        assert!(u["output_tokens_details"]["reasoning_tokens"].is_u64());
        assert!(u["cost"].as_f64().unwrap() > 0.0, "{model}: {u}");
        assert_eq!(a.headers["x-switchboard-model"], model);
        assert!(a.headers.contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn streams_are_well_formed_from_every_provider_kind() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let a = post(
            &g,
            &json!({"model": model, "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "stream me a greeting"}]}
        ], "stream": true}),
        )
        .await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        assert_eq!(a.headers["content-type"], "text/event-stream");
        let (last, r) = well_formed(&events(&a.body));
        assert_eq!(last, "response.completed", "{model}");
        assert_eq!(r["status"], "completed");
        assert!(output_text(&r).contains("stream me a greeting"), "{r}");
        assert!(r["usage"]["cost"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[tokio::test]
async fn a_function_call_and_its_output_round_trip_through_every_provider_kind() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let user = json!({"role": "user", "content": "What is the weather in Paris?"});
        let first = json!({"model": model, "input": [user], "tools": [weather_tool()],
            "tool_choice": "auto", "parallel_tool_calls": false});
        let a = post(&g, &first).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let r = a.json();
        let call = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: a function call: {r}"))
            .clone();
        assert_eq!(call["name"], "get_weather");
        assert_eq!(call["status"], "completed");
        assert!(call["id"].as_str().unwrap().starts_with("fc_"));
        let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["city"], "demo");
        let mut input = vec![user.clone()];
        input.extend(r["output"].as_array().unwrap().iter().cloned());
        input.push(json!({"type": "function_call_output", "call_id": call["call_id"], "output": "18C and sunny"}));
        let second = json!({"model": model, "input": input, "tools": [weather_tool()]});
        let a = post(&g, &second).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let r = a.json();
        assert!(output_text(&r).contains("18C and sunny"), "{model}: {r}");
    }
}

#[tokio::test]
async fn max_output_tokens_gives_incomplete() {
    let (_demo, g) = gateway().await;
    for model in MODELS {
        let body = json!({"model": model, "input": "write a long story about a dragon", "max_output_tokens": 3});
        let a = post(&g, &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let r = a.json();
        assert_eq!(r["status"], "incomplete", "{model}: {r}");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["max_output_tokens"], 3);
        let mut s = body.clone();
        s["stream"] = json!(true);
        let a = post(&g, &s).await;
        let (last, r) = well_formed(&events(&a.body));
        assert_eq!(last, "response.incomplete", "{model}");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    }
}

#[tokio::test]
async fn errors_come_in_openai_shape() {
    let (_demo, g) = gateway().await;
    let hi = |extra: Value| {
        let mut b = json!({"model": "fast", "input": "hi"});
        for (k, v) in extra.as_object().unwrap() {
            b[k] = v.clone();
        }
        b
    };
    let cases = [
        (json!({"model": "nope/none", "input": "x"}), 404, None),
        (hi(json!({"store": true})), 400, Some("store")),
        (
            hi(json!({"previous_response_id": "resp_1"})),
            400,
            Some("previous_response_id"),
        ),
        (
            hi(json!({"conversation": "conv_1"})),
            400,
            Some("conversation"),
        ),
        (hi(json!({"background": true})), 400, Some("background")),
        (
            hi(json!({"tools": [{"type": "web_search"}]})),
            400,
            Some("tools"),
        ),
        (
            hi(json!({"tools": [{"type": "file_search", "vector_store_ids": ["v"]}]})),
            400,
            Some("tools"),
        ),
        (
            hi(json!({"include": ["file_search_call.results"]})),
            400,
            Some("include"),
        ),
        (hi(json!({"bogus": 1})), 400, None),
        (
            json!({"model": "fast", "input": [{"type": "item_reference", "id": "msg_1"}]}),
            400,
            Some("input"),
        ),
        (json!({"model": "fast", "input": []}), 400, Some("input")),
    ];
    for (body, status, param) in cases {
        let a = post(&g, &body).await;
        assert_eq!(a.status, status, "{body}: {}", a.text());
        let e = a.json();
        let err = &e["error"];
        assert!(err["message"].as_str().unwrap().len() < 1000, "{e}");
        assert!(err["type"].is_string(), "{e}");
        if let Some(p) = param {
            assert_eq!(err["param"], p, "{e}");
        }
        if status == 404 {
            assert_eq!(err["code"], "model_not_found", "{e}");
        }
    }
    let a = post_to(g.responses(), "{not json", &[]).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    // `store: false` and an absent `store` are fine.
    for body in [hi(json!({"store": false})), hi(json!({}))] {
        assert_eq!(post(&g, &body).await.status, 200);
    }
}

#[tokio::test]
async fn keys_are_checked_from_bearer_or_x_api_key() {
    let demo = DemoProviders::start().await.unwrap();
    let keys = switchboard::keys::ClientKeysLayer::new()
        .key("sk-good", switchboard::keys::KeyPolicy::new("team"));
    let g = Gateway::builder(demo.catalog()).client_keys(keys).build();
    let body = json!({"model": "fast", "input": "x"}).to_string();
    for h in [("authorization", "Bearer sk-bad"), ("x-api-key", "sk-bad")] {
        let a = post_to(g.responses(), body.clone(), &[h]).await;
        assert_eq!(a.status, 401, "{h:?}");
        assert_eq!(
            a.json()["error"]["type"],
            "authentication_error",
            "{}",
            a.text()
        );
    }
    let a = post_to(g.responses(), body.clone(), &[]).await;
    assert_eq!(a.status, 401);
    for h in [
        ("x-api-key", "sk-good"),
        ("authorization", "Bearer sk-good"),
    ] {
        let a = post_to(g.responses(), body.clone(), &[h]).await;
        assert_eq!(a.status, 200, "{h:?}");
    }
}

/// A Codex-like session: instructions, a user turn, a streamed function call with reasoning,
/// the call's output with the reasoning item passed back, then a streamed answer — through
/// each provider kind. The demo Anthropic and Gemini verify the returned signatures.
#[tokio::test]
async fn a_codex_conversation_streams_through_every_provider_kind() {
    let (demo, g) = gateway().await;
    for model in MODELS {
        let user = json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]});
        let mut body = json!({
            "model": model,
            "instructions": "You are a coding agent. Be brief.",
            "input": [user],
            "tools": [weather_tool()],
            "tool_choice": "auto",
            "parallel_tool_calls": false,
            "reasoning": {"effort": "low", "summary": "auto"},
            "store": false,
            "stream": true,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "session-1",
            "max_output_tokens": 8192,
        });
        let a = post(&g, &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let (last, r) = well_formed(&events(&a.body));
        assert_eq!(last, "response.completed", "{model}: {r}");
        let output = r["output"].as_array().unwrap().clone();
        let reasoning = output
            .iter()
            .find(|i| i["type"] == "reasoning")
            .unwrap_or_else(|| panic!("{model}: reasoning first: {r}"));
        assert_eq!(output[0]["type"], "reasoning", "{model}: {r}");
        if !model.starts_with("openai") {
            let enc = reasoning["encrypted_content"]
                .as_str()
                .unwrap_or_else(|| panic!("{model}: signed reasoning: {reasoning}"));
            assert!(enc.starts_with("switchboard.v1:"), "{enc}");
        }
        if !model.starts_with("google") {
            assert!(
                !reasoning["summary"][0]["text"].as_str().unwrap().is_empty(),
                "{model}: {reasoning}"
            );
        }
        let call = output
            .iter()
            .find(|i| i["type"] == "function_call")
            .unwrap_or_else(|| panic!("{model}: a function call: {r}"));
        assert_eq!(call["name"], "get_weather");
        assert!(r["usage"]["output_tokens"].as_u64().unwrap() > 0);

        // The follow-up: every output item as received, then the call's output.
        let mut input = vec![user.clone()];
        input.extend(output.iter().cloned());
        input.push(
            json!({"type": "function_call_output", "call_id": call["call_id"],
            "output": "18C and sunny"}),
        );
        body["input"] = Value::Array(input);
        let a = post(&g, &body).await;
        assert_eq!(a.status, 200, "{model}: {}", a.text());
        let (last, r) = well_formed(&events(&a.body));
        assert_eq!(last, "response.completed", "{model}: {r}");
        assert!(output_text(&r).contains("18C and sunny"), "{model}: {r}");
        if model.starts_with("anthropic") {
            // The signed thinking went back to Anthropic as it came.
            let sent = demo.server(ProviderKind::Anthropic).last_request().unwrap();
            let assistant = &sent.body["messages"][1]["content"];
            assert_eq!(assistant[0]["type"], "thinking", "{}", sent.body);
            assert!(!assistant[0]["signature"].as_str().unwrap().is_empty());
        }
        if model.starts_with("google") {
            let sent = demo.server(ProviderKind::Gemini).last_request().unwrap();
            let text = sent.body.to_string();
            assert!(text.contains("thoughtSignature"), "{text}");
        }
    }
}

async fn two_providers(latency: Duration) -> (DemoServer, DemoServer, Gateway) {
    let slow = DemoConfig::default().with_latency(latency);
    let a = DemoServer::start(ProviderKind::Openai, slow.clone())
        .await
        .unwrap();
    let b = DemoServer::start(ProviderKind::Openai, slow).await.unwrap();
    let catalog = Catalog::builder()
        .provider(
            Provider::new("a", ProviderKind::Openai, &a.base_url()).with_api_key(DEMO_API_KEY),
        )
        .provider(
            Provider::new("b", ProviderKind::Openai, &b.base_url()).with_api_key(DEMO_API_KEY),
        )
        .model(
            ModelSpec::new("openai/gpt-4o-mini")
                .endpoint("a", "gpt-4o-mini", None)
                .endpoint("b", "gpt-4o-mini", None),
        )
        .build()
        .unwrap();
    let g = Gateway::builder(catalog)
        .keep_alive(Duration::from_millis(50))
        .build();
    (a, b, g)
}

#[tokio::test]
async fn keep_alive_comments_flow_while_fallback_finds_a_provider() {
    let (a, b, g) = two_providers(Duration::from_millis(300)).await;
    a.faults().push(Fault::status(503));
    let body = json!({"model": "openai/gpt-4o-mini", "input": "hi", "stream": true});
    let ans = post(&g, &body).await;
    assert_eq!(ans.status, 200);
    assert!(ans.text().starts_with(": keep-alive\n\n"), "{}", ans.text());
    let (last, r) = well_formed(&events(&ans.body));
    assert_eq!(last, "response.completed");
    assert!(output_text(&r).contains("You said: hi"), "{r}");
    assert_eq!(
        (a.request_count(), b.request_count()),
        (1, 1),
        "the fallback served"
    );
    // Every candidate failing: the in-band error and `response.failed`.
    a.faults().push(Fault::status(503));
    b.faults().push(Fault::status(503));
    let ans = post(&g, &body).await;
    assert_eq!(ans.status, 200, "committed by the comments");
    assert!(ans.text().starts_with(": keep-alive\n\n"), "{}", ans.text());
    let evs = events(&ans.body);
    let (last, r) = well_formed(&evs);
    assert_eq!(last, "response.failed", "{evs:?}");
    assert_eq!(r["output"], json!([]));
    // Without a stream nothing changes.
    let ans = post(&g, &json!({"model": "openai/gpt-4o-mini", "input": "hi"})).await;
    assert_eq!(ans.status, 200);
    assert_eq!(ans.json()["object"], "response");
}

// --- stream translation under arbitrary upstream chunking ---------------------------------

const ANTHROPIC_STREAM: &str = concat!(
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":5,\"output_tokens\":1}}}\n\n",
    "event: ping\ndata: {\"type\":\"ping\"}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"think.\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"sig-abc\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking \u{e9}\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\" the sky\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\":\"}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
    "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_time\",\"input\":{}}}\n\n",
    "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
    "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":30}}\n\n",
    "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
);

fn run_split(cuts: Vec<usize>) -> (String, Value) {
    let bytes = ANTHROPIC_STREAM.as_bytes();
    let mut points: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points.dedup();
    let pieces: Vec<Bytes> = points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&bytes[w[0]..w[1]]))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = service_fn(move |_req: http::Request<UpstreamBody>| {
            let frames: Vec<Result<http_body::Frame<Bytes>, Error>> = pieces
                .iter()
                .cloned()
                .map(|b| Ok(http_body::Frame::data(b)))
                .collect();
            async move {
                Ok::<_, Error>(http::Response::new(http_body_util::StreamBody::new(
                    futures_util::stream::iter(frames),
                )))
            }
        });
        let provider = Arc::new(Provider::new(
            "a",
            ProviderKind::Anthropic,
            "http://127.0.0.1:9",
        ));
        let stack = tower::Layer::layer(
            &ProviderTranslateLayer::new().default_target(Candidate::passthrough(
                "a/m".into(),
                provider,
                "m".into(),
            )),
            client,
        );
        let body = json!({"model": "a/m", "input": "hi", "stream": true});
        let a = post_to(Responses::new(stack), body.to_string(), &[]).await;
        assert_eq!(a.status, 200, "{}", a.text());
        well_formed(&events(&a.body))
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn the_stream_translation_is_well_formed_for_any_upstream_chunking(
        cuts in proptest::collection::vec(0usize..10_000, 0..40)
    ) {
        let (last, r) = run_split(cuts);
        prop_assert_eq!(last, "response.completed");
        let o = r["output"].as_array().unwrap();
        prop_assert_eq!(o.len(), 4, "{}", r);
        prop_assert_eq!(&o[0]["type"], "reasoning");
        prop_assert_eq!(&o[0]["summary"][0]["text"], "Let me think.");
        let enc = o[0]["encrypted_content"].as_str().unwrap();
        prop_assert!(enc.contains("sig-abc"), "{}", enc);
        prop_assert_eq!(&o[1]["content"][0]["text"], "Checking \u{e9} the sky");
        prop_assert_eq!(&o[2]["call_id"], "toolu_1");
        prop_assert_eq!(&o[2]["arguments"], r#"{"city":"Paris"}"#);
        prop_assert_eq!(&o[3]["call_id"], "toolu_2");
        prop_assert_eq!(&o[3]["arguments"], "{}");
        prop_assert_eq!(&r["usage"]["input_tokens"], 17);
        prop_assert_eq!(&r["usage"]["input_tokens_details"]["cached_tokens"], 5);
        prop_assert_eq!(&r["usage"]["output_tokens"], 30);
    }
}
