use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::catalog::{
    Capabilities, EndpointSpec, ModelSpec, Parameters, Pricing, Provider, ProviderKind, Rule,
};
use crate::health::HealthConfig;

fn price(input: f64, output: f64) -> Option<Pricing> {
    Some(Pricing {
        input,
        output,
        ..Pricing::default()
    })
}

fn no_tools_or_images() -> Capabilities {
    Capabilities {
        tools: false,
        images: false,
        reasoning: false,
    }
}

fn builder() -> crate::catalog::CatalogBuilder {
    Catalog::builder()
        .provider(Provider::new(
            "openai-eu",
            ProviderKind::Openai,
            "http://eu/v1",
        ))
        .provider(
            Provider::new("openai-us", ProviderKind::Openai, "http://us/v1")
                .with_data_collection(false),
        )
        .provider(
            Provider::new("groq", ProviderKind::Openai, "http://groq/v1")
                .with_data_collection(false)
                .with_throughput(500.0),
        )
        .provider(Provider::new(
            "anthropic",
            ProviderKind::Anthropic,
            "http://a",
        ))
        .provider(Provider::new("google", ProviderKind::Gemini, "http://g"))
        .model(
            ModelSpec::new("openai/gpt-4o")
                .context_length(128_000)
                .max_output(16_384)
                .endpoint("openai-eu", "gpt-4o", price(2.5, 10.0))
                .endpoint("openai-us", "gpt-4o", price(2.0, 8.0)),
        )
        .model(
            ModelSpec::new("meta-llama/llama-3.1-70b")
                .context_length(8_000)
                .capabilities(no_tools_or_images())
                .add_endpoint(
                    EndpointSpec::new("openai-us")
                        .upstream("llama-70b")
                        .throughput(50.0),
                )
                .add_endpoint(
                    EndpointSpec::new("groq")
                        .upstream("llama-3.1-70b-versatile")
                        .pricing(Pricing {
                            input: 0.59,
                            output: 0.79,
                            ..Pricing::default()
                        })
                        .supported_parameters(
                            Parameters::from_names(["max_tokens", "temperature", "top_p"]).unwrap(),
                        ),
                ),
        )
        .model(
            ModelSpec::new("anthropic/claude-sonnet-4")
                .context_length(200_000)
                .max_output(64_000)
                .pricing(price(3.0, 15.0).unwrap()),
        )
        .model(
            ModelSpec::new("google/gemini-2.5-pro")
                .context_length(1_000_000)
                .pricing(price(1.25, 10.0).unwrap()),
        )
        .model(
            ModelSpec::new("openai-eu/gpt-4o-mini")
                .context_length(128_000)
                .max_output(16_384)
                .pricing(price(0.15, 0.6).unwrap()),
        )
        .alias("fast", "openai-eu/gpt-4o-mini")
        .alias("balanced", "openai/gpt-4o")
        .alias("deep", "anthropic/claude-sonnet-4")
        .alias("long", "google/gemini-2.5-pro")
}

fn catalog() -> Catalog {
    builder()
        .rule(Rule::new("deep").task("code"))
        .rule(
            Rule::new("long")
                .min_prompt_tokens(100_000)
                .applies_to(["auto", "balanced"]),
        )
        .split(
            "chat-ab",
            [("openai/gpt-4o", 90), ("anthropic/claude-sonnet-4", 10)],
        )
        .build()
        .unwrap()
}

fn resolver() -> Resolver {
    Resolver::new(catalog()).seed(7)
}

fn req(mut v: Value) -> ChatRequest {
    if v.get("messages").is_none() {
        v["messages"] = json!([{"role": "user", "content": "hi"}]);
    }
    ChatRequest::from_slice(&serde_json::to_vec(&v).unwrap()).unwrap()
}

fn go(r: &Resolver, v: Value) -> Result<Route, Error> {
    r.resolve(&req(v), &HeaderMap::new())
}

fn labels(route: &Route) -> Vec<String> {
    route.candidates.iter().map(Candidate::label).collect()
}

fn ok(r: &Resolver, v: Value) -> Vec<String> {
    labels(&go(r, v).unwrap())
}

fn err(r: &Resolver, v: Value) -> Error {
    go(r, v).unwrap_err()
}

fn big_prompt(tokens: usize) -> Value {
    json!([{"role": "user", "content": "x".repeat(tokens * 4)}])
}

#[test]
fn one_id_several_providers_and_deployments() {
    let r = resolver();
    let route = go(&r, json!({"model": "openai/gpt-4o"})).unwrap();
    assert_eq!(labels(&route), ["openai-eu/gpt-4o", "openai-us/gpt-4o"]);
    assert!(route
        .candidates
        .iter()
        .all(|c| &*c.model == "openai/gpt-4o"));
    assert_eq!(&*route.candidates[1].provider.base_url, "http://us/v1");
    assert_eq!(route.candidates[1].pricing, price(2.0, 8.0));
}

#[test]
fn aliases_model_lists_and_passthrough() {
    let r = resolver();
    let route = go(&r, json!({"model": "fast"})).unwrap();
    assert_eq!(labels(&route), ["openai-eu/gpt-4o-mini"]);
    assert_eq!(&*route.requested, "fast");
    assert_eq!(
        ok(
            &r,
            json!({"model": "deep", "models": ["fast", "deep", "long"]})
        ),
        [
            "anthropic/claude-sonnet-4",
            "openai-eu/gpt-4o-mini",
            "google/gemini-2.5-pro"
        ]
    );
    let route = go(&r, json!({"models": ["long", "fast"]})).unwrap();
    assert_eq!(&*route.requested, "long");
    assert_eq!(labels(&route)[0], "google/gemini-2.5-pro");
    let route = go(&r, json!({"model": "openai-us/gpt-4.1-nano"})).unwrap();
    assert_eq!(labels(&route), ["openai-us/gpt-4.1-nano"]);
    assert!(route.candidates[0].pricing.is_none());
    // The old free function still works.
    let route = Resolver::new(catalog())
        .resolve(&req(json!({"model": "balanced"})), &HeaderMap::new())
        .unwrap();
    assert_eq!(route.candidates.len(), 2);
}

#[test]
fn unknown_model_is_404_with_close_matches() {
    let r = resolver();
    let e = err(&r, json!({"model": "openai/gpt-4p"}));
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("`openai/gpt-4o`"), "{}", e.message());
    let e = err(&r, json!({"model": "chat-abc"}));
    assert!(e.message().contains("`chat-ab`"), "{}", e.message());
    let e = err(&r, json!({"model": "nobody/x:floor"}));
    assert!(e.message().contains("`nobody/x`"), "{}", e.message());
}

#[test]
fn plain_ids_share_the_prepared_candidates() {
    let r = resolver();
    let a = go(&r, json!({"model": "openai-eu/gpt-4o-mini"})).unwrap();
    let b = go(&r, json!({"model": "fast"})).unwrap();
    assert!(Arc::ptr_eq(&a.candidates, &b.candidates));
    assert_eq!(&*b.requested, "fast");
    // `balanced` has a rule: the full path, the same candidates.
    let c = go(&r, json!({"model": "balanced"})).unwrap();
    assert!(!Arc::ptr_eq(
        &c.candidates,
        &go(&r, json!({"model": "openai/gpt-4o"}))
            .unwrap()
            .candidates
    ));
    assert_eq!(labels(&c), ["openai-eu/gpt-4o", "openai-us/gpt-4o"]);
}

#[test]
fn order_puts_providers_first_per_group() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"order": ["OpenAI-US"]}})
        ),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "models": ["openai/gpt-4o"],
                   "provider": {"order": ["groq", "openai-eu"]}})
        ),
        [
            "groq/llama-3.1-70b-versatile",
            "openai-us/llama-70b",
            "openai-eu/gpt-4o",
            "openai-us/gpt-4o"
        ]
    );
}

#[test]
fn only_and_ignore_filter_providers() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"only": ["openai-us"]}})
        ),
        ["openai-us/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"ignore": ["openai-us"]}})
        ),
        ["openai-eu/gpt-4o"]
    );
    // Empty lists change nothing.
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"only": []}})
        )
        .len(),
        2
    );
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"only": ["groq"]}}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), Some("no_matching_provider"));
    assert_eq!(e.param(), Some("provider.only"));
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"ignore": ["openai-us", "openai-eu"]}}),
    );
    assert_eq!(e.param(), Some("provider.ignore"));
}

#[test]
fn sort_by_price_puts_unknown_prices_last() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"sort": "price"}})
        ),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "provider": {"sort": "price"}})
        ),
        ["groq/llama-3.1-70b-versatile", "openai-us/llama-70b"]
    );
}

fn health() -> Health {
    Health::new(HealthConfig {
        failure_threshold: 1,
        ..HealthConfig::default()
    })
}

fn candidate(r: &Resolver, model: &str, provider: &str) -> Candidate {
    let route = go(r, json!({"model": model})).unwrap();
    route
        .candidates
        .iter()
        .find(|c| &*c.provider.name == provider)
        .unwrap()
        .clone()
}

#[test]
fn sort_by_latency_uses_health_ewma() {
    let h = health();
    let r = resolver().health(h.clone());
    let eu = candidate(&r, "openai/gpt-4o", "openai-eu");
    let us = candidate(&r, "openai/gpt-4o", "openai-us");
    let sorted = |r: &Resolver| {
        ok(
            r,
            json!({"model": "openai/gpt-4o", "provider": {"sort": "latency"}}),
        )
    };
    // Nothing known: catalog order.
    assert_eq!(sorted(&r), ["openai-eu/gpt-4o", "openai-us/gpt-4o"]);
    // Unknown latency goes last.
    h.acquire(&us).unwrap().success(Duration::from_millis(300));
    assert_eq!(sorted(&r), ["openai-us/gpt-4o", "openai-eu/gpt-4o"]);
    h.acquire(&eu).unwrap().success(Duration::from_millis(100));
    assert_eq!(sorted(&r), ["openai-eu/gpt-4o", "openai-us/gpt-4o"]);
}

#[test]
fn sort_by_throughput_uses_hints_then_latency() {
    let h = health();
    let r = resolver().health(h.clone());
    // Endpoint hint 50 vs provider hint 500.
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "provider": {"sort": "throughput"}})
        ),
        ["groq/llama-3.1-70b-versatile", "openai-us/llama-70b"]
    );
    // No hints: latency decides.
    let us = candidate(&r, "openai/gpt-4o", "openai-us");
    h.acquire(&us).unwrap().success(Duration::from_millis(50));
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"sort": "throughput"}})
        ),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
}

#[test]
fn floor_and_nitro_suffixes_sort_and_are_stripped() {
    let h = health();
    let r = resolver().health(h.clone());
    let route = go(&r, json!({"model": "openai/gpt-4o:floor"})).unwrap();
    assert_eq!(labels(&route), ["openai-us/gpt-4o", "openai-eu/gpt-4o"]);
    assert_eq!(&*route.requested, "openai/gpt-4o:floor");
    assert!(route
        .candidates
        .iter()
        .all(|c| &*c.model == "openai/gpt-4o"));
    assert_eq!(
        ok(&r, json!({"model": "meta-llama/llama-3.1-70b:nitro"})),
        ["groq/llama-3.1-70b-versatile", "openai-us/llama-70b"]
    );
    // :nitro without hints falls back to latency.
    let us = candidate(&r, "openai/gpt-4o", "openai-us");
    h.acquire(&us).unwrap().success(Duration::from_millis(50));
    assert_eq!(
        ok(&r, json!({"model": "balanced:nitro"})),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    // The suffix sorts its own group only; an explicit sort wins.
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "models": ["openai/gpt-4o:floor"]})
        ),
        [
            "openai-us/llama-70b",
            "groq/llama-3.1-70b-versatile",
            "openai-us/gpt-4o",
            "openai-eu/gpt-4o"
        ]
    );
    let eu = candidate(&r, "openai/gpt-4o", "openai-eu");
    h.acquire(&eu).unwrap().success(Duration::from_millis(10));
    assert_eq!(
        ok(&r, json!({"model": "openai/gpt-4o:floor"})),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o:floor", "provider": {"sort": "latency"}})
        ),
        ["openai-eu/gpt-4o", "openai-us/gpt-4o"]
    );
}

#[test]
fn max_price_drops_expensive_and_unknown_prices() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"max_price": {"prompt": 2.2}}})
        ),
        ["openai-us/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"max_price": {"completion": 9}}})
        ),
        ["openai-us/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "provider": {"max_price": {"prompt": 100}}})
        ),
        ["groq/llama-3.1-70b-versatile"]
    );
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"max_price": {"prompt": 1, "completion": 1}}}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.param(), Some("provider.max_price"));
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"max_price": {"prompt": -1}}}),
    );
    assert_eq!(e.param(), Some("provider.max_price"));
}

#[test]
fn data_collection_deny_keeps_non_retaining_providers() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"data_collection": "deny"}})
        ),
        ["openai-us/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"data_collection": "allow"}})
        )
        .len(),
        2
    );
    let e = err(
        &r,
        json!({"model": "deep", "provider": {"data_collection": "deny"}}),
    );
    assert_eq!(e.param(), Some("provider.data_collection"));
    let e = err(
        &r,
        json!({"model": "deep", "provider": {"data_collection": "maybe"}}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.param(), Some("provider.data_collection"));
}

#[test]
fn require_parameters_checks_supported_sets() {
    let r = resolver();
    let require = json!({"require_parameters": true});
    // Anthropic lacks logprobs: without the preference the route stands.
    assert_eq!(ok(&r, json!({"model": "deep", "logprobs": true})).len(), 1);
    let e = err(
        &r,
        json!({"model": "deep", "logprobs": true, "provider": require}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), Some("unsupported_parameter"));
    assert_eq!(e.param(), Some("logprobs"));
    // n = 1 is not "using" n; n = 2 is.
    assert_eq!(
        ok(&r, json!({"model": "deep", "n": 1, "provider": require})).len(),
        1
    );
    assert_eq!(
        err(&r, json!({"model": "deep", "n": 2, "provider": require})).param(),
        Some("n")
    );
    // Gemini lacks logit_bias (an unknown field, still recognised).
    let e = err(
        &r,
        json!({"model": "long", "logit_bias": {"1": 2}, "provider": require}),
    );
    assert_eq!(e.param(), Some("logit_bias"));
    assert_eq!(
        ok(&r, json!({"model": "long", "seed": 1, "provider": require})).len(),
        1
    );
    // A catalog list: groq's llama endpoint names no `seed`.
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "seed": 3, "temperature": 0.2, "provider": require})
        ),
        ["openai-us/llama-70b"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "temperature": 0.2, "provider": require})
        )
        .len(),
        2
    );
}

#[test]
fn used_parameters_reads_typed_and_extra_fields() {
    let r = req(
        json!({"model": "m", "max_completion_tokens": 5, "top_k": 3, "reasoning_effort": "low",
        "tools": [{"type": "function", "function": {"name": "f"}}], "min_p": 0.1, "user": "u"}),
    );
    let used = prefs::used_parameters(&r);
    assert_eq!(
        used.names().collect::<Vec<_>>(),
        ["max_tokens", "top_k", "tools", "reasoning", "min_p"]
    );
    assert!(prefs::used_parameters(&req(json!({"model": "m", "tools": []}))).is_empty());
}

#[test]
fn allow_fallbacks_false_keeps_exactly_one() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "models": ["deep"], "provider": {"allow_fallbacks": false}})
        ),
        ["openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"allow_fallbacks": false, "order": ["openai-us"]}})
        ),
        ["openai-us/gpt-4o"]
    );
}

#[test]
fn bad_sort_is_a_400_naming_the_field() {
    let e = err(
        &resolver(),
        json!({"model": "fast", "provider": {"sort": "fastest"}}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.param(), Some("provider.sort"));
}

#[test]
fn task_rules_from_header_or_metadata() {
    let r = resolver();
    // Header.
    let mut headers = HeaderMap::new();
    headers.insert(TASK_HEADER, "code".parse().unwrap());
    let route = r.resolve(&req(json!({"model": "auto"})), &headers).unwrap();
    assert_eq!(labels(&route), ["anthropic/claude-sonnet-4"]);
    assert_eq!(&*route.candidates[0].model, "anthropic/claude-sonnet-4");
    assert_eq!(&*route.requested, "auto");
    // metadata.task.
    assert_eq!(
        ok(&r, json!({"model": "auto", "metadata": {"task": "code"}})),
        ["anthropic/claude-sonnet-4"]
    );
    // The header wins over metadata.
    let route = r
        .resolve(
            &req(json!({"model": "auto", "metadata": {"task": "chat"}})),
            &headers,
        )
        .unwrap();
    assert_eq!(labels(&route), ["anthropic/claude-sonnet-4"]);
    // An explicit model id is never rerouted.
    let route = r
        .resolve(&req(json!({"model": "openai/gpt-4o"})), &headers)
        .unwrap();
    assert_eq!(route.candidates.len(), 2);
    assert_eq!(&*route.candidates[0].model, "openai/gpt-4o");
}

#[test]
fn prompt_size_rules_pick_a_long_context_slot() {
    let r = resolver();
    let big = big_prompt(120_000);
    assert_eq!(
        ok(&r, json!({"model": "auto", "messages": big})),
        ["google/gemini-2.5-pro"]
    );
    // `applies_to` lists `balanced`: rerouted when large, not when small.
    assert_eq!(
        ok(&r, json!({"model": "balanced", "messages": big})),
        ["google/gemini-2.5-pro"]
    );
    assert_eq!(ok(&r, json!({"model": "balanced"})).len(), 2);
    // `deep` is not listed: the prompt fits its 200k window.
    assert_eq!(
        ok(&r, json!({"model": "deep", "messages": big})),
        ["anthropic/claude-sonnet-4"]
    );
}

#[test]
fn auto_picks_the_cheapest_candidate_able_to_serve() {
    let r = Resolver::new(builder().build().unwrap());
    // Everything, cheapest first, unknown prices last.
    assert_eq!(
        ok(&r, json!({"model": "auto"})),
        [
            "openai-eu/gpt-4o-mini",
            "groq/llama-3.1-70b-versatile",
            "openai-us/gpt-4o",
            "google/gemini-2.5-pro",
            "openai-eu/gpt-4o",
            "anthropic/claude-sonnet-4",
            "openai-us/llama-70b",
        ]
    );
    // Tools rule out llama (no tool support).
    let tools = json!([{"type": "function", "function": {"name": "f"}}]);
    assert_eq!(
        ok(&r, json!({"model": "auto", "tools": tools}))[1],
        "openai-us/gpt-4o"
    );
    // Images likewise.
    let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]);
    assert!(!ok(&r, json!({"model": "auto", "messages": image}))
        .iter()
        .any(|l| l.contains("llama")));
    // Context: 150k tokens fit only the 200k and 1M windows.
    assert_eq!(
        ok(
            &r,
            json!({"model": "auto", "messages": big_prompt(150_000)})
        ),
        ["google/gemini-2.5-pro", "anthropic/claude-sonnet-4"]
    );
    // Output: 20k tokens exceed the 16k caps (unknown caps pass) and llama's 8k window.
    assert_eq!(
        ok(&r, json!({"model": "auto", "max_tokens": 20_000})),
        ["google/gemini-2.5-pro", "anthropic/claude-sonnet-4"]
    );
    // Context counts the requested output too.
    assert_eq!(
        ok(
            &r,
            json!({"model": "auto", "messages": big_prompt(190_000), "max_tokens": 20_000})
        ),
        ["google/gemini-2.5-pro"]
    );
}

#[test]
fn auto_id_and_pool_are_configurable() {
    let r = Resolver::new(
        builder()
            .auto_model("router/cheapest")
            .auto_pool(["anthropic/claude-sonnet-4", "openai/gpt-4o"])
            .build()
            .unwrap(),
    );
    assert_eq!(
        ok(&r, json!({"model": "router/cheapest"})),
        [
            "openai-us/gpt-4o",
            "openai-eu/gpt-4o",
            "anthropic/claude-sonnet-4"
        ]
    );
    assert_eq!(
        err(&r, json!({"model": "auto"})).kind(),
        ErrorKind::NotFound
    );
    let off = Resolver::new(builder().auto_model("").build().unwrap());
    assert_eq!(
        err(&off, json!({"model": "auto"})).kind(),
        ErrorKind::NotFound
    );
}

fn split_counts(r: &Resolver, n: usize, user: impl Fn(usize) -> Option<String>) -> (usize, usize) {
    let mut gpt = 0;
    let mut claude = 0;
    for i in 0..n {
        let mut body = json!({"model": "chat-ab"});
        if let Some(u) = user(i) {
            body["user"] = json!(u);
        }
        let route = go(r, body).unwrap();
        match &*route.candidates[0].model {
            "openai/gpt-4o" => gpt += 1,
            "anthropic/claude-sonnet-4" => claude += 1,
            other => panic!("unexpected arm {other}"),
        }
    }
    (gpt, claude)
}

#[test]
fn weighted_split_is_within_tolerance_and_reproducible() {
    let r = Resolver::new(catalog()).seed(42);
    let (gpt, claude) = split_counts(&r, 10_000, |_| None);
    assert_eq!(gpt + claude, 10_000);
    // 90/10: the standard deviation is 30 draws; allow 5 of them.
    assert!((8_850..=9_150).contains(&gpt), "gpt-4o drawn {gpt} times");
    // The same seed gives the same sequence.
    let draws = |r: &Resolver| -> Vec<Arc<str>> {
        (0..50)
            .map(|_| {
                go(r, json!({"model": "chat-ab"})).unwrap().candidates[0]
                    .model
                    .clone()
            })
            .collect()
    };
    let first = draws(&Resolver::new(catalog()).seed(9));
    assert_eq!(first, draws(&Resolver::new(catalog()).seed(9)));
    // Only the picked arm is routed; `model` in the answer names the model that served.
    let route = go(&r, json!({"model": "chat-ab", "user": "alice"})).unwrap();
    assert!(route
        .candidates
        .iter()
        .all(|c| c.model == route.candidates[0].model));
    assert_eq!(&*route.requested, "chat-ab");
}

#[test]
fn weighted_split_is_sticky_per_user() {
    let r = resolver();
    for user in ["alice", "bob", "carol", "dave"] {
        let first = go(&r, json!({"model": "chat-ab", "user": user})).unwrap();
        for _ in 0..20 {
            let again = go(&r, json!({"model": "chat-ab", "user": user})).unwrap();
            assert_eq!(
                again.candidates[0].model, first.candidates[0].model,
                "{user}"
            );
        }
        // Stable across resolvers and seeds too.
        let other = Resolver::new(catalog()).seed(1);
        let there = go(&other, json!({"model": "chat-ab", "user": user})).unwrap();
        assert_eq!(there.candidates[0].model, first.candidates[0].model);
    }
    // Users spread by weight.
    let (gpt, _) = split_counts(&r, 10_000, |i| Some(format!("user-{i}")));
    assert!((8_850..=9_150).contains(&gpt), "gpt-4o for {gpt} users");
}

#[test]
fn capability_errors_say_why() {
    let r = resolver();
    let e = err(
        &r,
        json!({"model": "meta-llama/llama-3.1-70b", "messages": big_prompt(10_000)}),
    );
    assert_eq!(e.status(), 400);
    assert_eq!(e.code(), Some("context_length_exceeded"));
    assert!(e.message().contains("8000"), "{}", e.message());
    let e = err(
        &r,
        json!({"model": "meta-llama/llama-3.1-70b", "tools": [{"type": "function", "function": {"name": "f"}}]}),
    );
    assert_eq!(e.code(), Some("unsupported_parameter"));
    assert_eq!(e.param(), Some("tools"));
    let image = json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]);
    let e = err(
        &r,
        json!({"model": "meta-llama/llama-3.1-70b", "messages": image}),
    );
    assert_eq!(e.param(), Some("messages"));
    assert_eq!(e.code(), Some("unsupported_parameter"));
    let e = err(&r, json!({"model": "fast", "max_tokens": 20_000}));
    assert_eq!(e.param(), Some("max_tokens"));
    // Tool messages in the history need tool support too.
    let history = json!([{"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "ok"}]);
    assert_eq!(
        err(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "messages": history})
        )
        .param(),
        Some("tools")
    );
    // Incapable ids in a list are skipped when another can serve.
    assert_eq!(
        ok(
            &r,
            json!({"model": "meta-llama/llama-3.1-70b", "models": ["fast"], "messages": big_prompt(10_000)})
        ),
        ["openai-eu/gpt-4o-mini"]
    );
}

#[test]
fn cooling_down_candidates_go_last_and_all_cooling_is_503() {
    let h = health();
    let r = resolver().health(h.clone());
    let eu = candidate(&r, "openai/gpt-4o", "openai-eu");
    let us = candidate(&r, "openai/gpt-4o", "openai-us");
    h.acquire(&eu).unwrap().failure(ErrorKind::Upstream);
    // The fast path and the full path agree.
    assert_eq!(
        ok(&r, json!({"model": "openai/gpt-4o"})),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"sort": "latency"}})
        ),
        ["openai-us/gpt-4o", "openai-eu/gpt-4o"]
    );
    h.acquire(&us).unwrap().failure(ErrorKind::Overloaded);
    let e = err(&r, json!({"model": "openai/gpt-4o"}));
    assert_eq!(e.kind(), ErrorKind::Overloaded);
    assert_eq!(e.status(), 503);
    // Another model in the list still serves; cooling ones stay at the end for probes.
    assert_eq!(
        ok(&r, json!({"model": "openai/gpt-4o", "models": ["deep"]})),
        [
            "anthropic/claude-sonnet-4",
            "openai-eu/gpt-4o",
            "openai-us/gpt-4o"
        ]
    );
    // allow_fallbacks: false keeps the primary, which is cooling down.
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "models": ["deep"], "provider": {"allow_fallbacks": false}}),
    );
    assert_eq!(e.kind(), ErrorKind::Overloaded);
}

#[test]
fn a_target_reached_twice_is_kept_once() {
    let r = resolver();
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "models": ["balanced", "fast"]})
        ),
        [
            "openai-eu/gpt-4o",
            "openai-us/gpt-4o",
            "openai-eu/gpt-4o-mini"
        ]
    );
}

#[test]
fn routes_from_toml() {
    let toml = r#"
[providers.openai-eu]
kind = "openai"
base_url = "http://eu/v1"
[providers.openai-us]
kind = "openai"
base_url = "http://us/v1"
data_collection = false
throughput = 80.0
[providers.anthropic]
kind = "anthropic"
base_url = "http://a"

[[models]]
id = "openai/gpt-4o"
supported_parameters = ["max_tokens", "temperature"]
endpoints = [
  { provider = "openai-eu", pricing = { input = 2.5, output = 10.0 } },
  { provider = "openai-us", pricing = { input = 2.0, output = 8.0 }, supported_parameters = ["max_tokens", "seed"] },
]
[[models]]
id = "anthropic/claude-sonnet-4"
pricing = { input = 3.0, output = 15.0 }

[aliases]
deep = "anthropic/claude-sonnet-4"

[routing]
auto = "best"

[[routing.rules]]
task = "code"
target = "deep"

[routing.splits.ab]
weights = { "openai/gpt-4o" = 1, "deep" = 0 }
"#;
    let r = Resolver::new(Catalog::from_toml_with_env(toml, |_| None).unwrap()).seed(3);
    assert_eq!(
        ok(&r, json!({"model": "openai/gpt-4o"})),
        ["openai-eu/gpt-4o", "openai-us/gpt-4o"]
    );
    assert_eq!(
        ok(&r, json!({"model": "best", "metadata": {"task": "code"}})),
        ["anthropic/claude-sonnet-4"]
    );
    assert_eq!(ok(&r, json!({"model": "best"}))[0], "openai-us/gpt-4o");
    assert_eq!(ok(&r, json!({"model": "ab"}))[0], "openai-eu/gpt-4o");
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "provider": {"sort": "throughput"}})
        )[0],
        "openai-us/gpt-4o"
    );
    // Model-level list for openai-eu, endpoint list for openai-us.
    let require = json!({"require_parameters": true});
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "temperature": 1, "provider": require})
        ),
        ["openai-eu/gpt-4o"]
    );
    assert_eq!(
        ok(
            &r,
            json!({"model": "openai/gpt-4o", "seed": 1, "provider": require})
        ),
        ["openai-us/gpt-4o"]
    );
}

#[tokio::test]
async fn the_layer_inserts_the_route_or_fails_early() {
    use tower::{service_fn, ServiceExt};
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let inner = service_fn(move |req: ChatHttpRequest| {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let route = req.extensions().get::<Route>().cloned();
            let model = route.map_or_else(String::new, |r| r.candidates[0].model.to_string());
            Err::<ChatHttpResponse, _>(Error::upstream(model))
        }
    });
    let svc = ModelResolveLayer::new(catalog())
        .health(health())
        .seed(1)
        .layer(inner);
    let call = |body: Value| {
        let svc = svc.clone();
        async move { svc.oneshot(http::Request::new(Arc::new(req(body)))).await }
    };
    let e = call(json!({"model": "fast"})).await.unwrap_err();
    assert_eq!(e.message(), "openai-eu/gpt-4o-mini");
    let e = call(json!({"model": "nope"})).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
}

/// A gateway over providers nobody listens on (port 1): a request that got past ModelResolve
/// would fail upstream (502), so a 400 or 404 shows ModelResolve answered.
fn gateway(b: impl FnOnce(crate::GatewayBuilder) -> crate::GatewayBuilder) -> crate::Gateway {
    let catalog = Catalog::builder()
        .provider(Provider::new(
            "openai",
            ProviderKind::Openai,
            "http://127.0.0.1:1/v1",
        ))
        .provider(Provider::new(
            "anthropic",
            ProviderKind::Anthropic,
            "http://127.0.0.1:1",
        ))
        .provider(Provider::new(
            "google",
            ProviderKind::Gemini,
            "http://127.0.0.1:1",
        ))
        .model(ModelSpec::new("openai/gpt-4o-mini"))
        .build()
        .unwrap();
    b(crate::Gateway::builder(catalog)).build()
}

/// Posts `body` through the gateway's HTTP edge: status, headers, body.
async fn post(gw: &crate::Gateway, body: &Value) -> (http::StatusCode, HeaderMap, Vec<u8>) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let mut body = body.clone();
    body["messages"] = json!([{"role": "user", "content": "hi"}]);
    let req = http::Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            serde_json::to_vec(&body).unwrap(),
        )))
        .unwrap();
    let resp = gw.chat_completions().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes().to_vec();
    (parts.status, parts.headers, body)
}

fn error_of(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).unwrap()["error"].clone()
}

#[tokio::test]
async fn a_long_models_list_is_a_400_naming_the_limit() {
    let gw = gateway(|b| b);
    // 200,000 distinct ids (2.4 MB): refused before any per-id work.
    let ids: Vec<String> = (0..200_000).map(|i| format!("id{i:06}")).collect();
    let started = tokio::time::Instant::now();
    let (status, _, body) = post(&gw, &json!({"model": "", "models": ids})).await;
    assert_eq!(status, 400);
    let e = error_of(&body);
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["param"], "models");
    assert_eq!(e["code"], "array_above_max_length");
    assert_eq!(
        e["message"],
        "`models` lists 200000 ids; at most 64 are allowed"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    // 64 is allowed (the first unknown id is the 404), and the limit is configurable.
    let ids: Vec<String> = (0..64).map(|i| format!("id{i:06}")).collect();
    let (status, _, _) = post(&gw, &json!({"models": ids})).await;
    assert_eq!(status, 404);
    let gw = gateway(|b| b.max_models(2));
    let (status, _, body) = post(&gw, &json!({"models": ["a", "b", "c"]})).await;
    assert_eq!(status, 400);
    assert!(error_of(&body)["message"]
        .as_str()
        .unwrap()
        .contains("at most 2"));
}

#[test]
fn many_ids_resolve_in_linear_time() {
    // With the limit lifted: 100,000 distinct pass-through ids (each its own candidate, so
    // both the id and the candidate dedup see them all) plus duplicates of each. Quadratic
    // dedup took about a minute here in release builds; linear work takes well under a second.
    let r = Resolver::new(catalog()).max_models(usize::MAX);
    let n = 100_000;
    let ids: Vec<String> = (0..2 * n)
        .map(|i| format!("openai-us/m{:06}", i % n))
        .collect();
    let started = tokio::time::Instant::now();
    let route = go(&r, json!({"model": "openai-us/m000003", "models": ids})).unwrap();
    let took = started.elapsed();
    assert_eq!(route.candidates.len(), n);
    assert_eq!(route.candidates[0].label(), "openai-us/m000003");
    assert_eq!(route.candidates[1].label(), "openai-us/m000000");
    assert_eq!(route.candidates[n - 1].label(), "openai-us/m099999");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Unknown ids: the first one is the 404, after the (linear) dedup.
    let ids: Vec<String> = (0..n).map(|i| format!("id{i:06}")).collect();
    let started = tokio::time::Instant::now();
    let e = err(&r, json!({"models": ids}));
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(e.message().contains("`id000000`"), "{}", e.message());
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_long_id_is_a_400_quoting_a_short_prefix() {
    let gw = gateway(|b| b);
    let huge = format!("openai/{}", "x".repeat(4 << 20));
    let (status, headers, body) = post(&gw, &json!({"model": huge})).await;
    assert_eq!(status, 400);
    assert!(headers.get("x-switchboard-model").is_none());
    assert!(headers.get("x-switchboard-attempts").is_none());
    assert!(body.len() < 1024, "{} byte body", body.len());
    let e = error_of(&body);
    assert_eq!(e["param"], "model");
    assert_eq!(e["code"], "string_above_max_length");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("at most 256 bytes"), "{msg}");
    assert!(
        msg.contains(&format!("`openai/{}…`", "x".repeat(57))),
        "{msg}"
    );
    // The same for an entry of `models`; the limit is configurable.
    let (status, _, body) = post(
        &gw,
        &json!({"model": "openai/gpt-4o-mini", "models": ["fast", "y".repeat(257)]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body)["param"], "models[1]");
    let gw = gateway(|b| b.max_model_id_bytes(10));
    let (status, _, _) = post(&gw, &json!({"model": "openai/gpt-4o-mini"})).await;
    assert_eq!(status, 400);
}

#[test]
fn error_messages_quote_a_short_prefix_of_what_the_client_sent() {
    let r = resolver();
    let bounded = |e: &Error| {
        assert!(
            e.message().len() < 600,
            "{} bytes: {}",
            e.message().len(),
            e.message()
        );
        assert!(e.message().contains('…'), "{}", e.message());
    };
    // Unknown ids (under the id limit, over the quote).
    let id = format!("nobody/{}", "z".repeat(240));
    let e = err(&r, json!({"model": id}));
    assert_eq!(e.kind(), ErrorKind::NotFound);
    bounded(&e);
    // Bad preference values.
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"sort": "s".repeat(100_000)}}),
    );
    bounded(&e);
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"data_collection": "d".repeat(100_000)}}),
    );
    bounded(&e);
    // Provider lists echoed back.
    let only: Vec<String> = (0..60)
        .map(|i| format!("p{i}-{}", "z".repeat(200)))
        .collect();
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"only": only}}),
    );
    assert_eq!(e.code(), Some("no_matching_provider"));
    bounded(&e);
    // Longer lists are refused before any work.
    let only: Vec<String> = (0..100_000).map(|i| format!("p{i}")).collect();
    let e = err(
        &r,
        json!({"model": "openai/gpt-4o", "provider": {"only": only}}),
    );
    assert_eq!(e.code(), Some("array_above_max_length"));
    assert!(e.message().len() < 100, "{}", e.message());
    // The requested id in capability and preference errors.
    let long = format!("openai-us/{}", "q".repeat(200));
    let e = err(
        &r,
        json!({"model": long, "max_tokens": 1, "provider": {"max_price": {"prompt": 1}}}),
    );
    assert_eq!(e.code(), Some("no_matching_provider"));
    bounded(&e);
    // Control characters are escaped.
    let e = err(&r, json!({"model": "nobody/a\u{1b}[2Jb\nc"}));
    assert!(
        e.message().contains(r"`nobody/a\u{1b}[2Jb\nc`"),
        "{}",
        e.message()
    );
}

#[test]
fn passthrough_names_must_be_safe_for_the_provider() {
    let r = resolver();
    // Accepted: each kind's usual names.
    for (id, upstream) in [
        ("openai-us/meta-llama/Llama-3-70b", "meta-llama/Llama-3-70b"),
        ("groq/llama3:8b", "llama3:8b"),
        (
            "anthropic/claude-3-5-haiku-latest",
            "claude-3-5-haiku-latest",
        ),
        ("google/gemini-2.0-flash-001", "gemini-2.0-flash-001"),
        (
            "google/models/gemini-2.0-flash-001",
            "models/gemini-2.0-flash-001",
        ),
        ("google/tunedModels/my-model-1", "tunedModels/my-model-1"),
    ] {
        let route = go(&r, json!({ "model": id })).unwrap();
        assert_eq!(&*route.candidates[0].upstream_model, upstream, "{id}");
    }
    // Refused: path tricks, escapes, spaces, control chars; per kind.
    for id in [
        "openai-us/../admin",
        "openai-us/a//b",
        "openai-us/a/",
        "openai-us/%2e%2e/x",
        "openai-us/gpt 4o",
        "openai-us/gpt\u{0}4o",
        "openai-us/gpt-4o?x=1",
        "anthropic/claude/../x",
        "anthropic/claude 3",
        "google/../../v1/files",
        "google/files/abc",
        "google/gemini-2.5-flash:streamGenerateContent",
        "google/gemini\r\nx-goog-api-key: k",
        "google/%2e%2e",
        "google/..",
    ] {
        let e = err(&r, json!({ "model": id }));
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{id}");
        assert_eq!(e.code(), Some("invalid_value"), "{id}");
        assert_eq!(e.param(), Some("model"), "{id}");
        assert!(e.message().len() < 600, "{}", e.message());
    }
    // Also in `models`, and a `:floor` suffix is stripped first.
    let e = err(&r, json!({"model": "fast", "models": ["google/a b:floor"]}));
    assert_eq!(e.code(), Some("invalid_value"));
    assert_eq!(
        ok(&r, json!({"model": "google/gemini-2.0-flash:floor"})),
        ["google/gemini-2.0-flash"]
    );
}

#[tokio::test]
async fn an_unsafe_passthrough_name_never_reaches_the_provider() {
    let gw = gateway(|b| b);
    for id in [
        "google/../../v1beta/files",
        "google/gemini-2.5-flash:countTokens",
        "openai/a b",
        "openai/%2e%2e",
    ] {
        let (status, headers, body) = post(&gw, &json!({ "model": id })).await;
        assert_eq!(status, 400, "{id}");
        assert!(headers.get("x-switchboard-attempts").is_none(), "{id}");
        let e = error_of(&body);
        assert_eq!(e["type"], "invalid_request_error", "{id}");
        assert_eq!(e["code"], "invalid_value", "{id}");
    }
}

#[test]
fn an_unsafe_passthrough_name_error_says_what_is_allowed() {
    let e = err(&resolver(), json!({"model": "google/../x"}));
    assert_eq!(
        e.message(),
        "model `google/../x`: `../x` is not a valid upstream model name for provider `google` \
         (gemini model names are ASCII letters, digits, `.`, `_` and `-`, optionally after \
         `models/` or `tunedModels/`)"
    );
}

#[tokio::test]
async fn allow_lists_apply_to_every_resolved_candidate() {
    use tower::{service_fn, ServiceExt};
    // A split whose id looks like an OpenAI model but whose arms include another provider's.
    let catalog = builder()
        .model(ModelSpec::new("anthropic/claude").endpoint("anthropic", "claude", price(3.0, 15.0)))
        .split(
            "openai/cheap",
            [("openai/gpt-4o", 1), ("anthropic/claude", 1)],
        )
        .alias("smart", "anthropic/claude")
        .build()
        .unwrap();
    let inner = service_fn(|req: ChatHttpRequest| async move {
        let route = req.extensions().get::<Route>().cloned().unwrap();
        let models: Vec<String> = route
            .candidates
            .iter()
            .map(|c| c.model.to_string())
            .collect();
        Err::<ChatHttpResponse, _>(Error::upstream(models.join(",")))
    });
    let svc = ModelResolveLayer::new(catalog).seed(7).layer(inner);
    let call = |allowed: &[&str], body: Value| {
        let svc = svc.clone();
        let allowed = ModelAllowList(allowed.iter().map(|s| (*s).to_owned()).collect());
        async move {
            let mut r = http::Request::new(Arc::new(req(body)));
            r.extensions_mut().insert(allowed);
            svc.oneshot(r).await.unwrap_err()
        }
    };
    // `openai/*` matches the split's id, but only its OpenAI arm may serve: the other arm's
    // picks are refused, never served.
    let (mut served, mut refused) = (0, 0);
    for _ in 0..32 {
        let e = call(&["openai/*"], json!({"model": "openai/cheap"})).await;
        match e.kind() {
            ErrorKind::Forbidden => refused += 1,
            _ => {
                assert_eq!(e.message(), "openai/gpt-4o,openai/gpt-4o");
                served += 1;
            }
        }
    }
    assert!(
        served > 0 && refused > 0,
        "{served} served, {refused} refused"
    );
    // An alias to a model outside the list: nothing left.
    let e = call(&["openai/*", "smart*"], json!({"model": "smart"})).await;
    assert_eq!(e.kind(), ErrorKind::Forbidden, "{e}");
    // The operator listing the alias itself allows what it resolves to.
    let e = call(&["smart"], json!({"model": "smart"})).await;
    assert_eq!(e.message(), "anthropic/claude");
    // Plain ids in the list pass unchanged.
    let e = call(&["openai/*"], json!({"model": "openai/gpt-4o"})).await;
    assert_eq!(e.message(), "openai/gpt-4o,openai/gpt-4o");
}

#[tokio::test]
async fn a_keys_allow_list_reaches_the_resolved_candidates() {
    use crate::keys::{ClientKeysLayer, KeyPolicy};
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let catalog = Catalog::builder()
        .provider(Provider::new(
            "openai",
            ProviderKind::Openai,
            "http://127.0.0.1:1/v1",
        ))
        .provider(Provider::new(
            "anthropic",
            ProviderKind::Anthropic,
            "http://127.0.0.1:1",
        ))
        .model(ModelSpec::new("openai/gpt-4o-mini"))
        .model(ModelSpec::new("anthropic/claude"))
        .alias("openai/smart", "anthropic/claude")
        .build()
        .unwrap();
    let gw = crate::Gateway::builder(catalog)
        .client_keys(
            ClientKeysLayer::new().key("sk-a", KeyPolicy::new("a").allow_models(["openai/*"])),
        )
        .build();
    // The alias's id matches `openai/*`; what it resolves to does not.
    let req = http::Request::post("/v1/chat/completions")
        .header("authorization", "Bearer sk-a")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"model":"openai/smart","messages":[{"role":"user","content":"hi"}]}"#,
        )))
        .unwrap();
    let resp = gw.chat_completions().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("may not use the models"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}
