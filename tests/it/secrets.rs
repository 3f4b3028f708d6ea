//! Provider keys never leak: requests that fail in every way a provider can fail never show an
//! upstream key in a response body, a header or a log line.
//!
//! Runs in a process of its own ([`in_own_process`]): it captures logs with a thread-local
//! subscriber, and tracing caches per-callsite interest process-wide, so tests running beside
//! it on other threads (with no subscriber) could hide the very log lines this one must read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard::catalog::{Deadlines, ModelSpec, Provider, ProviderKind};
use switchboard::demo::{DemoConfig, DemoServer, Fault};
use switchboard::{Catalog, Gateway};

use crate::support::answers::{self, post};
use crate::support::in_own_process;
use crate::support::served::{base_url, chat, closed_port, serve, upstream_model};

/// No single exchange may take longer than this: past it the test fails as a hang.
const HANG: Duration = Duration::from_secs(20);

/// Every line a test logged, at every level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `gateway.rs` checks OpenAI failures before the first byte; this adds the other
/// providers, failures after a stream started, deadlines, refused connections and a wrong key
/// that the provider echoes masked (`sk-***QZXW`, as OpenAI does).
#[test]
fn provider_keys_never_leak_on_failure_paths() {
    in_own_process(
        module_path!(),
        "provider_keys_never_leak_on_failure_paths",
        || {
            // Current-thread: the log subscriber below sees every task.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(never_leak_on_failure_paths());
        },
    );
}

async fn never_leak_on_failure_paths() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let quick = Deadlines {
        total: Some(Duration::from_millis(1000)),
        first_token: Some(Duration::from_millis(300)),
        idle: Some(Duration::from_millis(300)),
    };
    let (_closed, closed_addr) = closed_port();
    let faults = [
        Fault::status(401),
        Fault::status(403),
        Fault::status(500),
        Fault::Status(429, Some(1)),
        Fault::Garbage,
        Fault::Truncated,
        Fault::MalformedEvent,
        Fault::DropMidStream { after_chunks: 3 },
        Fault::StallMidStream { after_chunks: 3 },
        Fault::Hang,
    ];
    let mut servers = Vec::new();
    let mut secrets = Vec::new();
    let mut catalog = Catalog::builder();
    let mut requests = Vec::new();
    for kind in [
        ProviderKind::Openai,
        ProviderKind::Anthropic,
        ProviderKind::Gemini,
    ] {
        let k = kind.as_str();
        let secret = format!("sk-live-{k}-S3CRET-QZXW");
        let good = DemoServer::start(
            kind,
            DemoConfig::default()
                .with_api_key(secret.as_str())
                .with_words_per_chunk(1),
        )
        .await
        .unwrap();
        // Expects another key: ours is wrong there.
        let wrong = DemoServer::start(kind, DemoConfig::default())
            .await
            .unwrap();
        for (name, base) in [
            ("good", good.base_url()),
            ("wrong", wrong.base_url()),
            ("dead", base_url(kind, closed_addr)),
        ] {
            let provider = format!("{name}-{k}");
            catalog = catalog
                .provider(
                    Provider::new(provider.as_str(), kind, &base)
                        .with_api_key(secret.as_str())
                        .with_deadlines(quick),
                )
                .model(
                    ModelSpec::new(format!("{provider}/m"))
                        .max_output(1024)
                        .endpoint(&provider, upstream_model(kind), None),
                );
            let n = if name == "good" { faults.len() } else { 1 };
            for _ in 0..n {
                for stream in [false, true] {
                    requests.push(chat(&format!("{provider}/m"), stream));
                }
            }
        }
        // Each request to `good` takes the next fault (which one gets which does not matter).
        for f in &faults {
            good.faults().extend([f.clone(), f.clone()]);
        }
        secrets.push(secret);
        servers.push(good);
        servers.push(wrong);
    }
    let served = serve(&Gateway::builder(catalog.build().unwrap()).build()).await;
    let client = answers::client();
    let replies = futures_util::future::join_all(
        requests
            .iter()
            .map(|body| post(&client, served.addr, body, &[], HANG)),
    )
    .await;
    let mut seen = String::new();
    let mut errors = 0;
    for r in replies {
        let r = r.unwrap();
        let shape = r.shape().unwrap();
        errors += usize::from(shape.error().is_some());
        seen.push_str(&format!("{:?}\n{}\n", r.headers, r.text()));
    }
    assert_eq!(errors, requests.len(), "every request met a fault");
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logged.contains("request failed"), "logs are captured");
    for secret in &secrets {
        let masked = format!("sk-***{}", &secret[secret.len() - 4..]);
        for (what, text) in [("a client", &seen), ("the logs", &logged)] {
            assert!(
                !text.contains(secret.as_str()),
                "a provider key leaked to {what}"
            );
            assert!(
                !text.contains(&masked),
                "a masked provider key leaked to {what}"
            );
            assert!(
                !text.contains("S3CRET"),
                "part of a provider key leaked to {what}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Property tests: arbitrary input never panics. (src/ has split- and bytes-properties for
// the SSE decoder and the Anthropic and Gemini stream decoders; these add the request parser,
// the encoders, the OpenAI-compatible decoder, and JSON-shaped events and bodies for all.)
