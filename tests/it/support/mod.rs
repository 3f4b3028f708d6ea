//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod answers;
#[cfg(feature = "log-db")]
pub mod postgres_server;
pub mod served;

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
    c.usage = Some(Box::new(Usage {
        prompt_tokens: 3,
        completion_tokens: 2,
        total_tokens: 5,
        ..Usage::default()
    }));
    c
}

/// A `redis-server` started by the test itself (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis_server {
    use std::net::{TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::time::Duration;

    /// A `redis-server` of our own on a free loopback port, killed on drop.
    pub struct RedisServer {
        child: Child,
        pub url: String,
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn find_binary(name: &str) -> Option<std::path::PathBuf> {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    }

    /// Starts a server, or returns None (printing why) when `redis-server` is not installed,
    /// unless `SWITCHBOARD_REQUIRE_REDIS=1`, which turns that into a failure.
    pub fn start() -> Option<RedisServer> {
        let Some(bin) = find_binary("redis-server") else {
            assert!(
                std::env::var("SWITCHBOARD_REQUIRE_REDIS").as_deref() != Ok("1"),
                "SWITCHBOARD_REQUIRE_REDIS=1 but redis-server is not installed"
            );
            eprintln!("skipping Redis test: redis-server is not installed");
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        let server = RedisServer {
            child,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        // Bounded wait for the port to accept connections.
        for _ in 0..500 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(server);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server did not start on port {port}");
    }
}

/// Runs `test`, the body of the test `name` of module `module` (its `module_path!()`), in a
/// process of its own: this test binary started again with only that test selected. For tests
/// that read process-wide state the other tests of this binary, running on other threads,
/// would disturb: resident memory, or tracing's per-callsite interest (cached process-wide, so
/// a callsite first hit on a thread without a subscriber can stay disabled for a thread-local
/// one). Passes when the child ran that one test and it passed; the child's output is printed
/// (shown on failure, or with `--nocapture`).
pub fn in_own_process(module: &str, name: &str, test: impl FnOnce()) {
    const CHILD: &str = "SWITCHBOARD_TEST_IN_OWN_PROCESS";
    // The path libtest knows the test by: without the crate's name.
    let path = match module.split_once("::") {
        Some((_crate, rest)) => format!("{rest}::{name}"),
        None => name.to_owned(),
    };
    if std::env::var(CHILD).is_ok_and(|v| v == path) {
        test();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = std::process::Command::new(exe)
        .arg(&path)
        .args([
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .output()
        .expect("the test binary starts again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{path} failed in its own process ({})",
        out.status
    );
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{path} did not run in its own process"
    );
}
