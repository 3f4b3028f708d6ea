use std::time::Duration;

use super::*;

#[test]
fn endpoint_is_built_once_and_follows_a_replaced_base_url() {
    let mut p = Provider::new("p", ProviderKind::Openai, "http://a.test/v1/");
    let first = p.endpoint("/chat/completions").unwrap();
    assert_eq!(first, "http://a.test/v1/chat/completions");
    assert_eq!(p.endpoint("/chat/completions").unwrap(), first);
    assert_eq!(
        p.endpoint("/models").unwrap(),
        "http://a.test/v1/models",
        "another path is built, not the kept one"
    );
    p.base_url = "http://b.test/v1".into();
    assert_eq!(
        p.endpoint("/chat/completions").unwrap(),
        "http://b.test/v1/chat/completions"
    );
    p.base_url = "not a url".into();
    assert!(p.endpoint("/chat/completions").is_err());
}

const TOML: &str = r#"
[providers.openai]
kind = "openai"
base_url = "https://api.openai.com/v1/"
api_key_env = "TEST_OPENAI_KEY"
deadlines = { total_ms = 1000 }

[providers.groq]
kind = "openai"
base_url = "https://api.groq.com/openai/v1"
data_collection = false

[[models]]
id = "openai/gpt-4o-mini"
context_length = 128000
pricing = { input = 0.15, output = 0.6 }

[[models]]
id = "meta-llama/llama-3.1-70b"
endpoints = [
  { provider = "groq", upstream = "llama-3.1-70b-versatile", pricing = { input = 0.59, output = 0.79 } },
  { provider = "openai" },
]

[aliases]
fast = "openai/gpt-4o-mini"
"#;

#[test]
fn loads_toml() {
    let c = Catalog::from_toml_with_env(TOML, |k| (k == "TEST_OPENAI_KEY").then(|| "sk-x".into()))
        .unwrap();
    let p = c.provider("openai").unwrap();
    assert_eq!(&*p.base_url, "https://api.openai.com/v1");
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "sk-x");
    assert!(!format!("{p:?}").contains("sk-x"));
    let m = c.model("openai/gpt-4o-mini").unwrap();
    assert_eq!(&*m.endpoints[0].upstream, "gpt-4o-mini");
    assert_eq!(m.endpoints[0].deadlines.total, Some(Duration::from_secs(1)));
    let l = c.model("meta-llama/llama-3.1-70b").unwrap();
    assert_eq!(l.endpoints.len(), 2);
    assert_eq!(&*l.endpoints[1].upstream, "llama-3.1-70b");
    assert_eq!(c.alias("fast"), Some("openai/gpt-4o-mini"));
    assert_eq!(
        c.close_matches("openai/gpt-4o-mni"),
        vec!["openai/gpt-4o-mini"]
    );
}

#[test]
fn imports_openrouter_prices() {
    let c = Catalog::from_toml_with_env(TOML, |_| None).unwrap();
    let json = r#"{"data":[{"id":"meta-llama/llama-3.1-70b","pricing":{"prompt":"0.0000004","completion":"0.0000004","request":"0","input_cache_read":"0.0000001"}},{"id":"openai/gpt-4o-mini","pricing":{"prompt":"0.000001","completion":"0.000002"}},{"id":"other/x","pricing":{"prompt":"-1"}}]}"#;
    let (c2, n) = c.with_openrouter_prices(json).unwrap();
    assert_eq!(
        n, 1,
        "only the unpriced endpoint (openai) of the llama model"
    );
    let l = c2.model("meta-llama/llama-3.1-70b").unwrap();
    assert_eq!(
        l.endpoints[0].pricing.unwrap().input,
        0.59,
        "existing prices kept"
    );
    let p = l.endpoints[1].pricing.unwrap();
    assert_eq!((p.input, p.output, p.cached_input), (0.4, 0.4, Some(0.1)));
    assert_eq!(
        c2.model("openai/gpt-4o-mini").unwrap().endpoints[0]
            .pricing
            .unwrap()
            .input,
        0.15
    );
    let e = c
        .with_openrouter_prices(r#"{"data":[{"id":"a","pricing":{"prompt":"x"}}]}"#)
        .unwrap_err();
    assert!(e.message().contains("a.pricing.prompt"), "{}", e.message());
}

#[test]
fn config_errors_name_the_field() {
    let bad = r#"
[providers.x]
kind = "openai"
base_url = "ftp://x"
[[models]]
id = "y/m"
[[models]]
id = "x/m"
pricing = { input = -1.0 }
[aliases]
a = "nowhere"
"#;
    let e = Catalog::from_toml_with_env(bad, |_| None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers.x.base_url"), "{e}");
    assert!(e.contains("provider `y` is not configured"), "{e}");
    assert!(e.contains("non-negative"), "{e}");
    assert!(e.contains("aliases.a"), "{e}");
    let e = Catalog::from_toml_with_env(
        "[providers.x]\nkind = \"nope\"\nbase_url=\"http://x\"",
        |_| None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unknown variant"), "{e}");
}

const ROUTING_TOML: &str = r#"
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
supported_parameters = ["max_tokens", "temperature", "max_completion_tokens"]
throughput = 40.0
endpoints = [
  { provider = "openai-eu" },
  { provider = "openai-us", supported_parameters = ["seed"], throughput = 120.0 },
]
[[models]]
id = "anthropic/claude-sonnet-4"

[aliases]
deep = "anthropic/claude-sonnet-4"
smart = "ab"

[routing]
auto = "best"
auto_pool = ["openai/gpt-4o"]

[[routing.rules]]
task = "code"
target = "deep"

[[routing.rules]]
min_prompt_tokens = 1000
applies_to = ["best", "deep"]
target = "openai/gpt-4o"

[routing.splits.ab]
weights = { "openai/gpt-4o" = 3, "deep" = 1 }
"#;

#[test]
fn loads_routing_sections() {
    let c = Catalog::from_toml_with_env(ROUTING_TOML, |_| None).unwrap();
    let m = c.model("openai/gpt-4o").unwrap();
    assert_eq!(
        m.endpoints[0].supported_parameters(),
        Parameters::MAX_TOKENS.union(Parameters::TEMPERATURE)
    );
    assert_eq!(m.endpoints[1].supported_parameters(), Parameters::SEED);
    assert_eq!(m.endpoints[0].throughput_hint(), Some(40.0));
    assert_eq!(m.endpoints[1].throughput_hint(), Some(120.0));
    assert!(!m.endpoints[1].provider.data_collection);
    let s = c.model("anthropic/claude-sonnet-4").unwrap();
    assert_eq!(
        s.endpoints[0].supported_parameters(),
        ProviderKind::Anthropic.default_parameters()
    );
    assert!(!s.endpoints[0]
        .supported_parameters()
        .contains(Parameters::LOGPROBS));
    assert!(ProviderKind::Gemini
        .default_parameters()
        .contains(Parameters::SEED.union(Parameters::LOGPROBS)));
    assert!(!ProviderKind::Gemini
        .default_parameters()
        .contains(Parameters::LOGIT_BIAS));
    let r = c.routing();
    assert_eq!(r.auto_model(), Some("best"));
    assert_eq!(r.auto_pool().len(), 1);
    assert_eq!(r.rules().len(), 2);
    assert_eq!(r.rules()[0].task.as_deref(), Some("code"));
    assert!(r.has_rules_for("best") && r.has_rules_for("deep"));
    assert!(!r.has_rules_for("openai/gpt-4o"));
    let ab = r.split("ab").unwrap();
    assert_eq!(ab.total_weight(), 4);
    // TOML arms are in name order: `deep` takes draw 0, `openai/gpt-4o` draws 1..=3.
    assert_eq!(ab.pick(0), Some("deep"));
    assert_eq!(ab.pick(3), Some("openai/gpt-4o"));
    assert_eq!(ab.pick(4), Some("deep"));
    assert_eq!(c.alias("smart"), Some("ab"));
    // Without a [routing] section the auto model is `auto`.
    let plain = Catalog::from_toml_with_env(TOML, |_| None).unwrap();
    assert_eq!(plain.routing().auto_model(), Some(DEFAULT_AUTO_MODEL));
    assert!(plain.routing().rules().is_empty());
}

#[test]
fn routing_config_errors_name_the_field() {
    let bad = r#"
[providers.x]
kind = "openai"
base_url = "http://x"
throughput = -3.0
[[models]]
id = "x/m"
supported_parameters = ["temperature", "warp_speed"]
endpoints = [{ provider = "x", supported_parameters = ["nope"] }]
[aliases]
fast = "x/m"
[routing]
auto = "fast"
auto_pool = ["x/unknown-model"]
[[routing.rules]]
target = "x/m"
[[routing.rules]]
task = "code"
applies_to = ["ghost"]
target = "nowhere"
[routing.splits.zero]
weights = { "x/m" = 0 }
[routing.splits.fast]
weights = { "elsewhere" = 1 }
"#;
    let e = Catalog::from_toml_with_env(bad, |_| None)
        .unwrap_err()
        .to_string();
    for needle in [
        "providers.x.throughput",
        "models.x/m.supported_parameters: unknown parameter `warp_speed`",
        "models.x/m.endpoints[0].supported_parameters: unknown parameter `nope`",
        "routing.auto: `fast` is already",
        "routing.auto_pool: `x/unknown-model`",
        "routing.rules[0]: set `task` or `min_prompt_tokens`",
        "routing.rules[1].target: `nowhere`",
        "routing.rules[1].applies_to: `ghost`",
        "routing.splits.zero.weights: at least one weight must be positive",
        "routing.splits.fast: `fast` is already a model or alias",
        "routing.splits.fast.weights: `elsewhere`",
    ] {
        assert!(e.contains(needle), "{needle} missing from {e}");
    }
    let e =
        Catalog::from_toml_with_env("[[routing.rules]]\nwhen = \"x\"\ntarget = \"y\"", |_| None)
            .unwrap_err()
            .to_string();
    assert!(e.contains("unknown field `when`"), "{e}");
    let e = Catalog::builder()
        .auto_model("")
        .rule(Rule::new("x").task("t"))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("routing.rules[0].applies_to: required"), "{e}");
}

/// The close-match ranking before it kept only the best three as it went: every name scored,
/// sorted, filtered.
fn close_matches_by_sorting<'c>(names: &[&'c str], id: &str) -> Vec<&'c str> {
    let mut scored: Vec<(usize, &str)> = names
        .iter()
        .map(|c| (Levenshtein::new(id).distance(c), *c))
        .collect();
    scored.sort_unstable();
    let limit = (id.len() / 2).max(3);
    scored
        .into_iter()
        .filter(|(d, c)| *d <= limit || c.contains(id) || id.contains(*c))
        .take(3)
        .map(|(_, c)| c)
        .collect()
}

#[test]
fn close_matches_rank_like_a_full_sort_and_skip_long_ids() {
    let names = [
        "openai/gpt-4o",
        "openai/gpt-4o-mini",
        "openai/gpt-4.1",
        "openai/o3",
        "anthropic/claude-sonnet-4",
        "anthropic/claude-opus-4",
        "google/gemini-2.5-pro",
        "google/gemini-2.5-flash",
        "gpt",
        "fast",
        "deep",
        "a-very-long-model-name-that-is-far-from-everything-else-by-length",
    ];
    let mut b = Catalog::builder()
        .provider(Provider::new("p", ProviderKind::Openai, "http://p/v1"))
        .auto_model("auto");
    for n in &names[..8] {
        b = b.model(ModelSpec::new(*n).endpoint("p", "m", None));
    }
    b = b.model(ModelSpec::new(names[11]).endpoint("p", "m", None));
    for a in &names[8..11] {
        b = b.alias(*a, "openai/gpt-4o");
    }
    let c = b.build().unwrap();
    let mut all: Vec<&str> = names.to_vec();
    all.push("auto");
    for id in [
        "openai/gpt-4p",
        "openai/gpt",
        "gpt-4o",
        "anthropic/claude",
        "gemini",
        "",
        "x",
        "fas",
        "auto",
        "openai/gpt-4o-mini-2024-07-18",
        "a-very-long-model-name",
        "é/ü",
    ] {
        assert_eq!(
            c.close_matches(id),
            close_matches_by_sorting(&all, id),
            "id {id:?}"
        );
    }
    // An id over the limit gets nothing, even one containing a known name.
    let long = format!("openai/gpt-4o{}", "x".repeat(CLOSE_MATCH_MAX_BYTES));
    assert!(c.close_matches(&long).is_empty());
    let at_limit = format!("openai/gpt-4o{}", "x".repeat(CLOSE_MATCH_MAX_BYTES - 13));
    assert_eq!(c.close_matches(&at_limit), ["openai/gpt-4o", "gpt"]);
    assert_eq!(
        c.close_matches(&at_limit),
        close_matches_by_sorting(&all, &at_limit)
    );
}

#[test]
fn levenshtein_is_the_edit_distance_over_chars() {
    let d = |a: &str, b: &str| Levenshtein::new(a).distance(b);
    assert_eq!(d("", ""), 0);
    assert_eq!(d("abc", ""), 3);
    assert_eq!(d("", "abc"), 3);
    assert_eq!(d("kitten", "sitting"), 3);
    assert_eq!(d("sitting", "kitten"), 3);
    assert_eq!(d("gpt-4o", "gpt-4o"), 0);
    assert_eq!(d("é", "e"), 1);
    let mut lev = Levenshtein::new("flaw");
    assert_eq!(lev.distance("lawn"), 2);
    assert_eq!(lev.distance("flaws"), 1);
    assert_eq!(lev.distance(""), 4);
}

/// The OpenAI-compatible presets of `examples/gateway.toml`, with every key set: each parses,
/// resolves to its documented base URL and carries the parameter list the README gives.
#[test]
fn example_presets_parse_with_their_urls_and_parameters() {
    use crate::provider::{OpenAiDialect, Parameters};
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/gateway.toml"
    ))
    .unwrap();
    let env = |name: &str| {
        (name.ends_with("_API_KEY")
            || name == "AWS_ACCESS_KEY_ID"
            || name == "AWS_SECRET_ACCESS_KEY")
            .then(|| "k".to_owned())
    };
    let load =
        |t: &str| crate::config::GatewayConfig::from_toml_with_env(t, env).map(|g| g.catalog);
    let c = load(&text).unwrap();
    let p = |n: &str| Parameters::from_names(n.split_whitespace()).unwrap();
    let presets: [(&str, &str, Option<Parameters>); 10] = [
        ("openrouter", "https://openrouter.ai/api/v1", None),
        (
            "groq",
            "https://api.groq.com/openai/v1",
            Some(p("max_tokens temperature top_p stop seed frequency_penalty presence_penalty tools tool_choice parallel_tool_calls response_format reasoning")),
        ),
        (
            "mistral",
            "https://api.mistral.ai/v1",
            Some(p("max_tokens temperature top_p n stop seed frequency_penalty presence_penalty tools tool_choice parallel_tool_calls response_format reasoning")),
        ),
        (
            "deepseek",
            "https://api.deepseek.com/v1",
            Some(p("max_tokens temperature top_p stop logprobs top_logprobs frequency_penalty presence_penalty tools tool_choice response_format")),
        ),
        ("xai", "https://api.x.ai/v1", None),
        ("together", "https://api.together.ai/v1", None),
        ("fireworks", "https://api.fireworks.ai/inference/v1", None),
        (
            "cerebras",
            "https://api.cerebras.ai/v1",
            Some(p("max_tokens temperature top_p n stop seed logprobs top_logprobs tools tool_choice response_format reasoning")),
        ),
        ("ollama", "http://127.0.0.1:11434/v1", None),
        ("vllm", "http://127.0.0.1:8000/v1", None),
    ];
    for (name, url, params) in presets {
        let prov = c.provider(name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(prov.kind, ProviderKind::Openai, "{name}");
        assert_eq!(&*prov.base_url, url, "{name}");
        assert_eq!(prov.parameters, params, "{name}");
        let keyed = !matches!(name, "ollama" | "vllm");
        assert_eq!(prov.api_key.is_some(), keyed, "{name}");
        let dialect = if name == "mistral" {
            OpenAiDialect::Mistral
        } else {
            OpenAiDialect::Openai
        };
        assert_eq!(prov.dialect, dialect, "{name}");
    }
    // Groq refuses logprobs and n > 1: neither is in its list.
    let groq = c.provider("groq").unwrap().parameters.unwrap();
    assert!(!groq.contains(Parameters::LOGPROBS) && !groq.contains(Parameters::N));
    // A model's own list wins over its provider's for routing.
    let reasoner = c.model("deepseek/deepseek-reasoner").unwrap();
    let sp = reasoner.endpoints[0].supported_parameters();
    assert!(!sp.contains(Parameters::LOGPROBS) && sp.contains(Parameters::REASONING));
    // An endpoint without a list takes its provider's.
    let c2 =
        load(&text.replacen("[[models]]", "[[models]]\nid = \"groq/x\"\n\n[[models]]", 1)).unwrap();
    assert_eq!(
        c2.model("groq/x").unwrap().endpoints[0].supported_parameters(),
        groq
    );
    // An unknown name in a provider's list is a start-up error naming the field.
    let bad = text.replacen(
        "supported_parameters = [\"max_tokens\"",
        "supported_parameters = [\"max_tokenz\"",
        1,
    );
    let e = load(&bad).unwrap_err();
    assert!(
        e.message().contains("supported_parameters"),
        "{}",
        e.message()
    );
}
