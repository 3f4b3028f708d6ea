//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use switchboard::catalog::{Provider, ProviderKind};
use switchboard::ext::{Candidate, Route};
use switchboard::openai::{
    AssistantMessage, ChatCompletion, ChatCompletionChunk, ChatRequest, Choice, ChunkChoice, Delta,
    FinishReason, Usage,
};
use switchboard::ChatHttpRequest;

pub fn candidate(provider: &str, model: &str) -> Candidate {
    let p = Arc::new(Provider::new(
        provider,
        ProviderKind::Openai,
        "http://127.0.0.1:9/v1",
    ));
    Candidate::passthrough(format!("{provider}/{model}").into(), p, model.into())
}

pub fn route(cands: &[(&str, &str)]) -> Route {
    Route {
        requested: "test".into(),
        candidates: cands.iter().map(|(p, m)| candidate(p, m)).collect(),
    }
}

pub fn chat(body: &str) -> Arc<ChatRequest> {
    Arc::new(ChatRequest::from_slice(body.as_bytes()).expect("valid test request"))
}

pub fn request(body: &str) -> ChatHttpRequest {
    http::Request::new(chat(body))
}

pub const HELLO: &str = r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#;
pub const HELLO_STREAM: &str =
    r#"{"model":"a/b","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

pub fn completion(model: &str, text: &str) -> ChatCompletion {
    ChatCompletion {
        id: "chatcmpl-test".into(),
        object: "chat.completion".into(),
        created: 1,
        model: model.into(),
        choices: vec![Choice {
            index: 0,
            message: AssistantMessage {
                content: Some(text.into()),
                ..AssistantMessage::default()
            },
            finish_reason: Some(FinishReason::Stop),
            native_finish_reason: Some("stop".into()),
            logprobs: None,
        }],
        usage: Some(Usage {
            prompt_tokens: 3,
            completion_tokens: 2,
            total_tokens: 5,
            ..Usage::default()
        }),
        system_fingerprint: None,
        service_tier: None,
        provider: None,
    }
}

pub fn role_chunk() -> ChatCompletionChunk {
    let mut c = ChatCompletionChunk::new("chatcmpl-s", "a/b", 1);
    c.choices.push(ChunkChoice {
        index: 0,
        delta: Delta {
            role: Some("assistant".into()),
            content: Some(String::new()),
            ..Delta::default()
        },
        finish_reason: None,
        native_finish_reason: None,
        logprobs: None,
    });
    c
}

pub fn text_chunk(text: &str) -> ChatCompletionChunk {
    let mut c = ChatCompletionChunk::new("chatcmpl-s", "a/b", 1);
    c.choices.push(ChunkChoice {
        index: 0,
        delta: Delta {
            content: Some(text.into()),
            ..Delta::default()
        },
        finish_reason: None,
        native_finish_reason: None,
        logprobs: None,
    });
    c
}

pub fn finish_chunk() -> ChatCompletionChunk {
    let mut c = ChatCompletionChunk::new("chatcmpl-s", "a/b", 1);
    c.choices.push(ChunkChoice {
        index: 0,
        delta: Delta::default(),
        finish_reason: Some(FinishReason::Stop),
        native_finish_reason: Some("stop".into()),
        logprobs: None,
    });
    c
}

pub fn usage_chunk() -> ChatCompletionChunk {
    let mut c = ChatCompletionChunk::new("chatcmpl-s", "a/b", 1);
    c.usage = Some(Usage {
        prompt_tokens: 3,
        completion_tokens: 2,
        total_tokens: 5,
        ..Usage::default()
    });
    c
}
