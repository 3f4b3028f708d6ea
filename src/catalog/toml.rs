//! Loading a catalog from TOML, and importing prices from OpenRouter's model list.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{
    config_error, Capabilities, Catalog, Deadlines, EndpointSpec, Model, ModelSpec, Parameters,
    Pricing, Provider, ProviderKind, Rule,
};
use crate::Error;

impl Catalog {
    /// Loads a catalog from TOML (keys from `api_key_env` are read from the environment).
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        Self::from_toml_with_env(text, |k| std::env::var(k).ok())
    }

    /// Loads a catalog from TOML, looking environment variables up with `env`.
    pub fn from_toml_with_env(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let file: File =
            ::toml::from_str(text).map_err(|e| config_error(format!("invalid catalog: {e}")))?;
        file.build(&env)
    }

    /// A copy of this catalog with prices imported from OpenRouter's `/api/v1/models` JSON
    /// (`{"data": [{"id", "pricing": {"prompt", "completion", "input_cache_read",
    /// "input_cache_write", "request"}}]}`, USD per token as strings). Endpoints that already
    /// have prices keep them. Returns the catalog and how many endpoints got prices.
    pub fn with_openrouter_prices(&self, json: &str) -> Result<(Self, usize), Error> {
        #[derive(Deserialize)]
        struct List {
            data: Vec<Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            id: String,
            pricing: Option<HashMap<String, serde_json::Value>>,
        }
        let list: List = serde_json::from_str(json)
            .map_err(|e| config_error(format!("prices: not OpenRouter's model list: {e}")))?;
        let mut prices: HashMap<String, Pricing> = HashMap::new();
        for e in list.data {
            let Some(p) = e.pricing else { continue };
            let get = |k: &str| -> Result<Option<f64>, Error> {
                let Some(v) = p.get(k) else { return Ok(None) };
                let n = match v {
                    serde_json::Value::String(s) => s.parse::<f64>().ok(),
                    serde_json::Value::Number(n) => n.as_f64(),
                    _ => None,
                };
                match n {
                    Some(n) if n.is_finite() && n >= 0.0 => Ok(Some(n)),
                    Some(n) if n < 0.0 => Ok(None), // OpenRouter uses -1 for "variable"
                    _ => Err(config_error(format!(
                        "prices: {}.pricing.{k}: `{v}` is not a price",
                        e.id
                    ))),
                }
            };
            let per_million = |x: Option<f64>| x.map(|v| (v * 1e6 * 1e9).round() / 1e9);
            prices.insert(
                e.id.clone(),
                Pricing {
                    input: per_million(get("prompt")?).unwrap_or(0.0),
                    output: per_million(get("completion")?).unwrap_or(0.0),
                    cached_input: per_million(get("input_cache_read")?),
                    cache_write: per_million(get("input_cache_write")?),
                    per_request: get("request")?.filter(|r| *r > 0.0),
                },
            );
        }
        let mut updated = 0;
        let models = self
            .inner
            .models
            .iter()
            .map(|m| {
                let Some(p) = prices.get(&*m.id) else {
                    return m.clone();
                };
                let mut m = Model::clone(m);
                for e in &mut m.endpoints {
                    if e.pricing.is_none() {
                        e.pricing = Some(*p);
                        updated += 1;
                    }
                }
                Arc::new(m)
            })
            .collect();
        Ok((self.rebuilt(self.inner.providers.clone(), models), updated))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    settings: SettingsFile,
    #[serde(default)]
    providers: BTreeMap<String, ProviderFile>,
    #[serde(default)]
    models: Vec<ModelFile>,
    #[serde(default)]
    aliases: BTreeMap<String, String>,
    #[serde(default)]
    routing: RoutingFile,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RoutingFile {
    auto: Option<String>,
    auto_pool: Option<Vec<String>>,
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    splits: BTreeMap<String, SplitFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    task: Option<String>,
    min_prompt_tokens: Option<u64>,
    #[serde(default)]
    applies_to: Vec<String>,
    target: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitFile {
    weights: BTreeMap<String, u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct SettingsFile {
    passthrough: Option<bool>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(deny_unknown_fields)]
struct DeadlinesFile {
    total_ms: Option<u64>,
    first_token_ms: Option<u64>,
    idle_ms: Option<u64>,
}

impl From<DeadlinesFile> for Deadlines {
    fn from(d: DeadlinesFile) -> Self {
        Self {
            total: d.total_ms.map(Duration::from_millis),
            first_token: d.first_token_ms.map(Duration::from_millis),
            idle: d.idle_ms.map(Duration::from_millis),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    kind: ProviderKind,
    /// Required, except for Vertex AI (derived from `location`).
    #[serde(default)]
    base_url: String,
    base_url_env: Option<String>,
    api_key: Option<String>,
    api_key_env: Option<String>,
    #[serde(default)]
    deadlines: DeadlinesFile,
    #[serde(default = "yes")]
    data_collection: bool,
    throughput: Option<f64>,
    /// Request parameters the provider accepts (OpenAI-compatible: the others are dropped or
    /// refused); a model's or endpoint's own list wins.
    supported_parameters: Option<Vec<String>>,
    /// OpenAI-compatible: how request fields are named (`openai`, `mistral`).
    #[serde(default)]
    dialect: crate::provider::OpenAiDialect,
    /// Azure: the `api-version` of deployment URLs (`v1` or none: the v1 API).
    api_version: Option<String>,
    /// Azure: `api-key` (default) or `bearer`.
    auth: Option<String>,
    // Vertex AI (`kind = "vertex"`): see `provider::vertex`.
    project: Option<String>,
    /// An environment variable that, when set, replaces `project`.
    project_env: Option<String>,
    location: Option<String>,
    /// An environment variable that, when set, replaces `location`.
    location_env: Option<String>,
    credentials_file: Option<String>,
    credentials_env: Option<String>,
    metadata_url: Option<String>,
    // AWS Bedrock (`kind = "bedrock"`): see `provider::bedrock` (also `credentials_file`).
    region: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    session_token_env: Option<String>,
    profile: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    id: String,
    name: Option<String>,
    upstream: Option<String>,
    context_length: Option<u32>,
    max_output: Option<u32>,
    #[serde(default)]
    capabilities: Capabilities,
    pricing: Option<Pricing>,
    #[serde(default)]
    deadlines: DeadlinesFile,
    supported_parameters: Option<Vec<String>>,
    throughput: Option<f64>,
    #[serde(default)]
    endpoints: Vec<EndpointFile>,
    #[serde(default)]
    kind: super::ModelKind,
    dimensions: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    provider: String,
    upstream: Option<String>,
    pricing: Option<Pricing>,
    #[serde(default)]
    deadlines: DeadlinesFile,
    supported_parameters: Option<Vec<String>>,
    throughput: Option<f64>,
}

fn parameters(
    names: Option<Vec<String>>,
    field: impl FnOnce() -> String,
    errors: &mut Vec<String>,
) -> Option<Parameters> {
    match Parameters::from_names(names?) {
        Ok(p) => Some(p),
        Err(e) => {
            errors.push(format!("{}: {e}", field()));
            None
        }
    }
}

impl File {
    fn build(self, env: &dyn Fn(&str) -> Option<String>) -> Result<Catalog, Error> {
        let mut b = Catalog::builder();
        for (name, p) in self.providers {
            let is_bedrock = p.kind == ProviderKind::Bedrock;
            let (credentials_file, bedrock_file) = if is_bedrock {
                (None, p.credentials_file)
            } else {
                (p.credentials_file, None)
            };
            let bedrock = crate::provider::bedrock::BedrockSettings {
                region: p.region,
                access_key_id_env: p.access_key_id_env,
                secret_access_key_env: p.secret_access_key_env,
                session_token_env: p.session_token_env,
                profile: p.profile,
                credentials_file: bedrock_file,
            };
            let from_env = |var: &Option<String>| {
                var.as_deref()
                    .and_then(env)
                    .filter(|v| !v.trim().is_empty())
            };
            let vertex_env_set = p.project_env.is_some() || p.location_env.is_some();
            let vertex = crate::provider::vertex::VertexSettings {
                project: from_env(&p.project_env).or(p.project),
                location: from_env(&p.location_env).or(p.location),
                credentials_file,
                credentials_env: p.credentials_env,
                metadata_url: p.metadata_url,
            };
            let mut base_url = p
                .base_url_env
                .as_deref()
                .and_then(env)
                .filter(|u| !u.is_empty())
                .unwrap_or(p.base_url);
            if p.kind == ProviderKind::Vertex && base_url.is_empty() {
                base_url = vertex.default_base_url();
            }
            if is_bedrock && base_url.is_empty() {
                base_url = bedrock.default_base_url().unwrap_or_default();
            }
            let mut prov =
                Provider::new(name.as_str(), p.kind, &base_url).with_deadlines(p.deadlines.into());
            prov.data_collection = p.data_collection;
            prov.throughput = p.throughput;
            prov.parameters = parameters(
                p.supported_parameters,
                || format!("providers.{name}.supported_parameters"),
                &mut b.errors,
            );
            prov.dialect = p.dialect;
            if p.throughput.is_some_and(|t| !t.is_finite() || t <= 0.0) {
                b.errors.push(format!(
                    "providers.{name}.throughput: must be a positive number of tokens per second"
                ));
            }
            if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
                b.errors.push(format!(
                    "providers.{name}.base_url: `{base_url}` must start with http:// or https://"
                ));
            }
            let key = p
                .api_key
                .or_else(|| p.api_key_env.as_deref().and_then(env))
                .filter(|k| !k.is_empty());
            if let Some(k) = key {
                prov = prov.with_api_key(k);
            }
            match (p.kind, p.api_version, p.auth.as_deref()) {
                (ProviderKind::Azure, version, auth) => {
                    let mut codec = crate::provider::azure::Azure::new();
                    if let Some(v) = version {
                        codec = codec.api_version(v);
                    }
                    match auth {
                        None | Some("api-key" | "api_key") => {}
                        Some("bearer") => codec = codec.bearer_auth(),
                        Some(other) => b.errors.push(format!(
                            "providers.{name}.auth: `{other}` is not `api-key` or `bearer`"
                        )),
                    }
                    prov = prov.with_codec(codec);
                }
                (_, None, None) => {}
                _ => b.errors.push(format!(
                    "providers.{name}: `api_version` and `auth` are settings of `kind = \"azure\"`"
                )),
            }
            if p.kind == ProviderKind::Vertex {
                match vertex.apply(prov.clone(), env) {
                    Ok(v) => prov = v,
                    Err(e) => b.errors.push(format!("providers.{name}.{e}")),
                }
            } else if is_bedrock {
                match bedrock.apply(prov.clone(), env) {
                    Ok(v) => prov = v,
                    Err(e) => b.errors.push(format!("providers.{name}.{e}")),
                }
            } else if bedrock.any() {
                b.errors.push(format!(
                    "providers.{name}: `region`, `access_key_id_env`, `secret_access_key_env`, \
                     `session_token_env` and `profile` are for kind = \"bedrock\" only"
                ));
            }
            if p.kind != ProviderKind::Vertex && (vertex.any() || vertex_env_set) {
                b.errors.push(format!(
                    "providers.{name}: `project`, `project_env`, `location`, `location_env`, \
                     `credentials_file`, `credentials_env` and `metadata_url` are for \
                     kind = \"vertex\" only"
                ));
            }
            b = b.provider(prov);
        }
        for m in self.models {
            let mut spec = ModelSpec::new(m.id.clone());
            spec.name = m.name;
            spec.context_length = m.context_length;
            spec.max_output = m.max_output;
            spec.capabilities = m.capabilities;
            spec.kind = m.kind;
            spec.dimensions = m.dimensions;
            spec.parameters = parameters(
                m.supported_parameters,
                || format!("models.{}.supported_parameters", m.id),
                &mut b.errors,
            );
            if m.endpoints.is_empty() {
                let ep = spec.default_endpoint();
                ep.upstream = m.upstream;
                ep.pricing = m.pricing;
                ep.deadlines = m.deadlines.into();
                ep.throughput = m.throughput;
            } else {
                if m.upstream.is_some() || m.pricing.is_some() {
                    b.errors.push(format!(
                        "models.{}: set `upstream` and `pricing` per endpoint when `endpoints` is given",
                        m.id
                    ));
                }
                for (i, e) in m.endpoints.into_iter().enumerate() {
                    let params = parameters(
                        e.supported_parameters,
                        || format!("models.{}.endpoints[{i}].supported_parameters", m.id),
                        &mut b.errors,
                    );
                    spec.endpoints.push(EndpointSpec {
                        provider: e.provider,
                        upstream: e.upstream,
                        pricing: e.pricing,
                        deadlines: Deadlines::from(e.deadlines).or(m.deadlines.into()),
                        parameters: params,
                        throughput: e.throughput.or(m.throughput),
                    });
                }
            }
            b = b.model(spec);
        }
        for (a, t) in self.aliases {
            b = b.alias(a, t);
        }
        if let Some(p) = self.settings.passthrough {
            b = b.passthrough(p);
        }
        let r = self.routing;
        if let Some(auto) = r.auto {
            b = b.auto_model(auto);
        }
        if let Some(pool) = r.auto_pool {
            b = b.auto_pool(pool);
        }
        for rule in r.rules {
            b = b.rule(Rule {
                task: rule.task.map(Into::into),
                min_prompt_tokens: rule.min_prompt_tokens,
                applies_to: rule.applies_to.into_iter().map(Into::into).collect(),
                target: rule.target.into(),
            });
        }
        for (id, split) in r.splits {
            b = b.split(id, split.weights);
        }
        b.build()
    }
}
