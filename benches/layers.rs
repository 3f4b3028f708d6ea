//! Per-layer overhead of ModelResolve, Fallback, ModelTimeout and CostMeter, each over an
//! identity inner service, against the identity service alone.
//!
//! ```sh
//! cargo bench --features bench-support --bench layers                     # everything, about a minute
//! cargo bench --features bench-support --bench layers -- fallback         # one group (the summary follows the filter)
//! SB_BENCH_SUMMARY=0 cargo bench --features bench-support --bench layers  # criterion only
//! ```
//!
//! See `src/bench_support/micro.rs` for the method and BENCHMARKS.md ("Per-layer overhead") for
//! results.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use switchboard::bench_support::micro;
use switchboard::bench_support::micro::{
    answer, arm, call, catalog, complete_response, completion, drain, fresh_stream_response,
    identity, parse, sdk_headers, stream_response, text_chunks, typed, Bench, Canned, WithRecorder,
    REQUEST, TAIL,
};
use switchboard::catalog::Deadlines;
use switchboard::cost::CostMeterLayer;
use switchboard::ext::{Attempt, Route, ServedBy, Target};
use switchboard::fallback::FallbackLayer;
use switchboard::openai::ChatRequest;
use switchboard::resolve::ModelResolveLayer;
use switchboard::timeout::ModelTimeoutLayer;
use switchboard::{ChatHttpRequest, ChatHttpResponse, Error};

/// The issue's budgets for the added time per request.
const ONE_US: f64 = 1_000.0;
const THREE_US: f64 = 3_000.0;

fn model_resolve(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime) {
    let layer = ModelResolveLayer::new(catalog());
    let resolver = layer.resolver().clone();
    let headers = sdk_headers();
    let done = completion();
    let base_svc = RefCell::new(identity());
    let svc = RefCell::new(layer.layer(identity()));
    let request = |chat: &Arc<ChatRequest>| {
        let mut r = typed(chat, &headers);
        r.extensions_mut()
            .insert(Canned::new(complete_response(&done)));
        r
    };

    let body = |head: &str| parse(&micro::chat_body(head, 1024, TAIL, 0));
    let plain = body(r#""model":"openai/gpt-4o-mini""#);
    let alias = body(r#""model":"fast""#);
    let models = body(
        r#""model":"openai/gpt-4o","models":["anthropic/claude-sonnet-4","google/gemini-2.5-flash"]"#,
    );
    let sorted = body(r#""model":"openai/gpt-4o","provider":{"sort":"price"}"#);

    // The routes each case must produce (so no case measures an error path).
    let labels = |chat: &ChatRequest| -> Vec<String> {
        let route = resolver
            .resolve(chat, &headers)
            .expect("the bench request resolves");
        route.candidates.iter().map(|c| c.label()).collect()
    };
    assert_eq!(
        labels(&plain),
        ["openai/gpt-4o-mini", "openrouter/openai/gpt-4o-mini"]
    );
    assert_eq!(labels(&alias), labels(&plain));
    assert_eq!(
        labels(&models),
        [
            "openai/gpt-4o",
            "openrouter/openai/gpt-4o",
            "azure/gpt-4o",
            "anthropic/claude-sonnet-4-20250514",
            "openrouter/anthropic/claude-sonnet-4",
            "google/gemini-2.5-flash",
            "openrouter/google/gemini-2.5-flash",
        ]
    );
    assert_eq!(
        labels(&sorted),
        ["azure/gpt-4o", "openai/gpt-4o", "openrouter/openai/gpt-4o"]
    );

    let base = arm(|| request(&plain), |req| call(&base_svc, req));
    let case = |chat: &Arc<ChatRequest>| {
        let chat = chat.clone();
        arm(move || request(&chat), |req| call(&svc, req))
    };
    let (c_plain, c_alias, c_models, c_sorted) =
        (case(&plain), case(&alias), case(&models), case(&sorted));
    for c in [&c_plain, &c_alias, &c_models, &c_sorted] {
        assert!(c.once(rt).body().as_complete().is_some());
    }

    let mut g = bench.group("model_resolve");
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "plain_id",
        REQUEST,
        ("identity", &base),
        &c_plain,
        Some(ONE_US),
    );
    g.versus(
        "alias",
        REQUEST,
        ("identity", &base),
        &c_alias,
        Some(ONE_US),
    );
    g.versus(
        "models_list",
        REQUEST,
        ("identity", &base),
        &c_models,
        Some(ONE_US),
    );
    g.versus(
        "sort_price",
        REQUEST,
        ("identity", &base),
        &c_sorted,
        Some(ONE_US),
    );
    g.finish();
}

/// A route of three candidates (`openai/gpt-4o` on three providers).
fn route() -> Route {
    let req = parse(&micro::chat_body(
        r#""model":"openai/gpt-4o""#,
        1024,
        TAIL,
        0,
    ));
    let route = ModelResolveLayer::new(catalog())
        .resolver()
        .resolve(&req, &http::HeaderMap::new())
        .expect("the bench route resolves");
    assert_eq!(route.candidates.len(), 3);
    route
}

fn fallback(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime) {
    let route = route();
    let headers = sdk_headers();
    let done = completion();
    let chat = parse(&micro::chat_body(
        r#""model":"openai/gpt-4o""#,
        1024,
        TAIL,
        0,
    ));
    let request = || {
        let mut r = typed(&chat, &headers);
        r.extensions_mut().insert(route.clone());
        r.extensions_mut()
            .insert(Canned::new(complete_response(&done)));
        r
    };
    // The first attempt fails with a retryable error (built once, cloned: an Arc), the next
    // one answers.
    let failure = Error::upstream("the provider failed (upstream status 502)");
    let flaky = tower::service_fn(move |req: ChatHttpRequest| {
        let first = req
            .extensions()
            .get::<Target>()
            .is_none_or(|t| t.attempt == 1);
        if first {
            std::future::ready(Err::<ChatHttpResponse, _>(failure.clone()))
        } else {
            answer(req)
        }
    });

    let base_svc = RefCell::new(identity());
    let ok_svc = RefCell::new(FallbackLayer::new().layer(identity()));
    let flaky_svc = RefCell::new(FallbackLayer::new().layer(flaky));
    let base = arm(request, |req| call(&base_svc, req));
    let first_ok = arm(request, |req| call(&ok_svc, req));
    let one_failure = arm(request, |req| call(&flaky_svc, req));

    let served = |resp: ChatHttpResponse| {
        resp.extensions()
            .get::<ServedBy>()
            .expect("Fallback writes ServedBy")
            .attempts
            .len()
    };
    assert_eq!(served(first_ok.once(rt)), 1);
    assert_eq!(served(one_failure.once(rt)), 2);

    let mut g = bench.group("fallback");
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "first_ok",
        REQUEST,
        ("identity", &base),
        &first_ok,
        Some(ONE_US),
    );
    g.versus(
        "one_failure",
        REQUEST,
        ("identity", &base),
        &one_failure,
        None,
    );
    g.finish();
}

fn model_timeout(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime) {
    let route = route();
    let headers = sdk_headers();
    let done = completion();
    let chat = parse(&micro::chat_body(
        r#""model":"openai/gpt-4o""#,
        1024,
        TAIL,
        0,
    ));
    let target = Target {
        candidate: route.candidates[0].clone(),
        attempt: 1,
        deadlines: Deadlines {
            total: Some(Duration::from_secs(60)),
            first_token: Some(Duration::from_secs(20)),
            idle: Some(Duration::from_secs(30)),
        },
    };
    let plain = || {
        let mut r = typed(&chat, &headers);
        r.extensions_mut()
            .insert(Canned::new(complete_response(&done)));
        r
    };
    let with_target = || {
        let mut r = plain();
        r.extensions_mut().insert(target.clone());
        r
    };

    let base_svc = RefCell::new(identity());
    let svc = RefCell::new(ModelTimeoutLayer::default().layer(identity()));
    let base = arm(with_target, |req| call(&base_svc, req));
    let deadline = arm(with_target, |req| call(&svc, req));
    let none = arm(plain, |req| call(&svc, req));
    assert!(deadline.once(rt).body().as_complete().is_some());
    assert!(none.once(rt).body().as_complete().is_some());

    let mut g = bench.group("model_timeout");
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "deadline",
        REQUEST,
        ("identity", &base),
        &deadline,
        Some(ONE_US),
    );
    g.versus(
        "no_deadline",
        REQUEST,
        ("identity", &base),
        &none,
        Some(ONE_US),
    );
    g.finish();
}

fn cost_meter(bench: &mut Bench<'_>, rt: &tokio::runtime::Runtime) {
    const CHUNKS: usize = 200;
    let route = route();
    let headers = sdk_headers();
    let done = completion();
    let chunks = text_chunks(CHUNKS);
    let c0 = &route.candidates[0];
    let served = ServedBy {
        provider: c0.provider.name.clone(),
        model: c0.model.clone(),
        attempts: vec![Attempt {
            provider: c0.provider.name.clone(),
            model: c0.model.clone(),
            error: None,
        }],
    };
    let body = |stream: bool| {
        let tail = if stream { micro::STREAM_TAIL } else { TAIL };
        parse(&micro::chat_body(
            r#""model":"openai/gpt-4o""#,
            1024,
            tail,
            0,
        ))
    };
    let (chat, stream_chat) = (body(false), body(true));
    let with = |chat: &Arc<ChatRequest>, mut resp: ChatHttpResponse| {
        resp.extensions_mut().insert(served.clone());
        let mut r = typed(chat, &headers);
        r.extensions_mut().insert(route.clone());
        r.extensions_mut().insert(Canned::new(resp));
        r
    };
    let whole = || with(&chat, complete_response(&done));
    let streamed = || {
        (
            with(&stream_chat, stream_response(&chunks)),
            Vec::with_capacity(CHUNKS),
        )
    };
    let shared: Arc<[_]> = chunks.clone().into();
    let fresh = || {
        (
            with(&stream_chat, fresh_stream_response(&shared)),
            Vec::with_capacity(CHUNKS),
        )
    };

    let base_svc = RefCell::new(identity());
    let svc = RefCell::new(CostMeterLayer::new().layer(identity()));
    // Metric handles are registered with the recorder of the first request and reused after,
    // so the cases under the Prometheus recorder get their own CostMeter.
    let prom_svc = RefCell::new(CostMeterLayer::new().layer(identity()));
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();

    let base = arm(whole, |req| call(&base_svc, req));
    let nonstream = arm(whole, |req| call(&svc, req));
    let nonstream_prom = arm(whole, |req| WithRecorder {
        recorder: &prometheus,
        fut: Box::pin(call(&prom_svc, req)),
    });
    let stream_base = arm(streamed, |(req, out)| async {
        drain(call(&base_svc, req).await, out).await
    });
    let stream = arm(streamed, |(req, out)| async {
        drain(call(&svc, req).await, out).await
    });
    let stream_prom = arm(streamed, |(req, out)| WithRecorder {
        recorder: &prometheus,
        fut: Box::pin(async { drain(call(&prom_svc, req).await, out).await }),
    });
    let fresh_base = arm(fresh, |(req, out)| async {
        drain(call(&base_svc, req).await, out).await
    });
    let fresh_stream = arm(fresh, |(req, out)| async {
        drain(call(&svc, req).await, out).await
    });

    // Every case is priced: the completion carries usage.cost, the stream's usage chunk too.
    for resp in [nonstream_prom.once(rt), nonstream.once(rt)] {
        assert!(resp.headers().contains_key("x-switchboard-cost"));
        let usage = resp
            .into_body()
            .into_complete()
            .and_then(|c| c.usage().cloned());
        assert!(
            usage.and_then(|u| u.cost).is_some(),
            "the completion is priced"
        );
    }
    for (out, _) in [stream.once(rt), stream_prom.once(rt), fresh_stream.once(rt)] {
        assert_eq!(out.len(), CHUNKS);
        let usage = out.last().and_then(|c| c.usage.as_ref());
        assert!(
            usage.and_then(|u| u.cost).is_some(),
            "the usage chunk is priced"
        );
    }
    let rendered = prometheus.handle().render();
    assert!(
        rendered.contains("switchboard_requests_total"),
        "the local recorder saw the meter's metrics"
    );

    let mut g = bench.group("cost_meter");
    g.baseline("identity", REQUEST, &base);
    g.versus(
        "nonstream",
        REQUEST,
        ("identity", &base),
        &nonstream,
        Some(THREE_US),
    );
    g.versus(
        "nonstream_prometheus",
        REQUEST,
        ("identity", &base),
        &nonstream_prom,
        Some(THREE_US),
    );
    g.baseline("identity_stream200", REQUEST, &stream_base);
    g.versus(
        "stream200",
        REQUEST,
        ("identity_stream200", &stream_base),
        &stream,
        Some(THREE_US),
    );
    g.versus(
        "stream200_prometheus",
        REQUEST,
        ("identity_stream200", &stream_base),
        &stream_prom,
        Some(THREE_US),
    );
    // Each chunk made as it is polled (in cache, as a decoder leaves it): the meter's own cost.
    g.baseline("identity_fresh_stream200", REQUEST, &fresh_base);
    g.versus(
        "fresh_stream200",
        REQUEST,
        ("identity_fresh_stream200", &fresh_base),
        &fresh_stream,
        Some(THREE_US),
    );
    g.finish();
}

fn main() {
    let rt = micro::runtime();
    let mut bench = Bench::new("layers", &rt);
    model_resolve(&mut bench, &rt);
    fallback(&mut bench, &rt);
    model_timeout(&mut bench, &rt);
    cost_meter(&mut bench, &rt);
    bench.finish();
}
