//! `[otel]`: the `gen_ai.*` spans exported over OTLP/HTTP (protobuf), cargo feature `otel`.
//!
//! [`init_logs`](super::init_logs) installs, beside the log output, a slot layer that stays
//! empty (its filter disables every callsite, so no span is created for it and no OpenTelemetry
//! code runs) until [`start`] fills it from the config's `[otel]` section. Only spans named
//! `gen_ai.*` (at any level) are exported, never events: the request's model, the provider and
//! model that served, token counts, cost, cache status, stream flag, request and generation ids;
//! never prompt or answer text. On export the spans get the names of the OpenTelemetry GenAI
//! semantic conventions (`chat {gen_ai.request.model}`, `embeddings {gen_ai.request.model}`).
//!
//! Spans go to a batch processor (its own thread, a bounded queue: spans beyond it are
//! dropped, never waited for) and from there to the collector through the crate's own HTTP
//! client (rustls with ring) on the gateway's tokio runtime. [`flush`] sends what is queued
//! (the ready gateway calls it at shutdown).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_opentelemetry::OpenTelemetryLayer;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

use crate::config::OtelSettings;

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether [`start`] filled the slot.
static ON: AtomicBool = AtomicBool::new(false);
static LAYER: OnceLock<OpenTelemetryLayer<Registry, SdkTracer>> = OnceLock::new();
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

fn layer() -> Option<&'static OpenTelemetryLayer<Registry, SdkTracer>> {
    if ON.load(Ordering::Acquire) {
        LAYER.get()
    } else {
        None
    }
}

/// The layer [`init_logs`](super::init_logs) puts beside the log output: the OpenTelemetry
/// layer once [`start`] made one, nothing before.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot;

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        if let Some(l) = layer() {
            l.$method($($arg),*);
        }
    };
}

impl Layer<Registry> for Slot {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, Registry>,
    ) {
        delegate!(self, on_new_span(attrs, id, ctx));
    }
    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, Registry>,
    ) {
        delegate!(self, on_record(id, values, ctx));
    }
    fn on_follows_from(
        &self,
        id: &tracing::span::Id,
        follows: &tracing::span::Id,
        ctx: Context<'_, Registry>,
    ) {
        delegate!(self, on_follows_from(id, follows, ctx));
    }
    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, Registry>) {
        delegate!(self, on_enter(id, ctx));
    }
    fn on_exit(&self, id: &tracing::span::Id, ctx: Context<'_, Registry>) {
        delegate!(self, on_exit(id, ctx));
    }
    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, Registry>) {
        delegate!(self, on_close(id, ctx));
    }
}

/// The slot's filter: nothing until [`start`]; then the `gen_ai.*` spans only.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotFilter;

fn exported(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.name().starts_with("gen_ai.")
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Filter<S> for SlotFilter {
    fn enabled(&self, meta: &Metadata<'_>, _cx: &Context<'_, S>) -> bool {
        layer().is_some() && exported(meta)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if layer().is_some() && exported(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
        Some(if layer().is_some() {
            tracing::level_filters::LevelFilter::TRACE
        } else {
            tracing::level_filters::LevelFilter::OFF
        })
    }
}

/// Starts the export to `settings.endpoint`. Once per process: a second call (a gateway
/// started again in the same process) keeps the first exporter.
///
/// # Errors
/// An invalid endpoint or header, or no tokio runtime.
pub(super) fn start(settings: &OtelSettings) -> Result<Option<String>, String> {
    if PROVIDER.get().is_some() {
        return Ok(Some(
            "[otel]: the OTLP export of an earlier start in this process goes on".into(),
        ));
    }
    let endpoint = traces_url(&settings.endpoint)?;
    let client = OtlpClient {
        client: crate::client::HttpClient::new(),
        runtime: tokio::runtime::Handle::try_current()
            .map_err(|_| "[otel]: no tokio runtime".to_owned())?,
    };
    let headers: HashMap<String, String> = settings
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &headers {
        if http::HeaderName::try_from(k.as_str()).is_err()
            || http::HeaderValue::try_from(v.as_str()).is_err()
        {
            return Err(format!("[otel].headers: invalid header `{k}`"));
        }
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(endpoint.clone())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        .map_err(|e| format!("[otel]: {e}"))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            settings
                .service_name
                .clone()
                .unwrap_or_else(|| "switchboard".to_owned()),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(GenAiNames(exporter))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("switchboard");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false);
    if PROVIDER.set(provider).is_err() || LAYER.set(layer).is_err() {
        return Ok(None);
    }
    ON.store(true, Ordering::Release);
    // The callsites the slot's filter disabled while it was empty ask again.
    tracing::callsite::rebuild_interest_cache();
    let installed = tracing::dispatcher::get_default(|d| d.is::<Registry>());
    Ok(Some(if installed {
        format!("exporting the gen_ai spans over OTLP to {endpoint}")
    } else {
        format!(
            "[otel]: exporting to {endpoint}, but the process's tracing subscriber is not \
             switchboard's (call `switchboard::server::init_logs` first): no span is exported"
        )
    }))
}

/// Sends the queued spans, at most `timeout` (on a blocking thread: the export itself runs on
/// the runtime).
pub(super) async fn flush(timeout: Duration) {
    let Some(provider) = PROVIDER.get() else {
        return;
    };
    let flushed = tokio::time::timeout(
        timeout,
        tokio::task::spawn_blocking(move || provider.force_flush()),
    )
    .await;
    match flushed {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the OTLP export was not flushed"),
        _ => tracing::warn!("the OTLP export was not flushed in time"),
    }
}

/// `…/v1/traces` for a collector's base URL.
fn traces_url(endpoint: &str) -> Result<String, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("[otel].endpoint `{endpoint}`: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "[otel].endpoint `{endpoint}`: an http:// or https:// URL"
        ));
    }
    let base = endpoint.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    })
}

/// The exporter's HTTP client: the crate's own (rustls with ring), run on the gateway's
/// runtime (the batch processor's thread has none).
#[derive(Debug)]
struct OtlpClient {
    client: crate::client::HttpClient,
    runtime: tokio::runtime::Handle,
}

impl opentelemetry_http::HttpClient for OtlpClient {
    fn send_bytes<'a, 'f>(
        &'a self,
        request: http::Request<Bytes>,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<http::Response<Bytes>, opentelemetry_http::HttpError>,
                > + Send
                + 'f,
        >,
    >
    where
        'a: 'f,
        Self: 'f,
    {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let request = request.map(crate::client::UpstreamBody::from);
            let resp = tower::ServiceExt::oneshot(client, request).await?;
            let (parts, body) = resp.into_parts();
            let body = tokio::time::timeout(EXPORT_TIMEOUT, body.collect())
                .await
                .map_err(|_| crate::Error::new(crate::ErrorKind::Timeout, "OTLP answer"))?
                .map_err(|e| crate::Error::upstream("OTLP answer").with_source(e))?
                .to_bytes();
            Ok::<_, crate::Error>(http::Response::from_parts(parts, body))
        });
        Box::pin(async move {
            match task.await {
                Ok(Ok(r)) => Ok(r),
                Ok(Err(e)) => Err(Box::new(e) as opentelemetry_http::HttpError),
                Err(e) => Err(Box::new(e) as opentelemetry_http::HttpError),
            }
        })
    }
}

/// Names the `gen_ai.*` spans as the GenAI semantic conventions do (`chat gpt-4o`), and adds
/// `gen_ai.system` (the older name of `gen_ai.provider.name`), before the OTLP exporter.
#[derive(Debug)]
struct GenAiNames<E>(E);

impl<E: SpanExporter> SpanExporter for GenAiNames<E> {
    fn export(
        &self,
        mut batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        for span in &mut batch {
            rename(span);
        }
        self.0.export(batch)
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

fn rename(span: &mut SpanData) {
    let Some(operation) = span.name.strip_prefix("gen_ai.") else {
        return;
    };
    let operation = operation.to_owned();
    let mut model = None;
    let mut provider = None;
    for kv in &mut span.attributes {
        // The spans record client-chosen ids with `Debug` (quoted, escaped: safe in log
        // lines); the collector gets the id itself.
        if let Value::String(v) = &kv.value {
            if let Some(id) = undebug(v.as_str()) {
                kv.value = Value::from(id);
            }
        }
        match kv.key.as_str() {
            "gen_ai.request.model" => model = Some(kv.value.as_str().into_owned()),
            "gen_ai.provider.name" => provider = Some(kv.value.clone()),
            _ => {}
        }
    }
    span.name = match model {
        Some(m) => format!("{operation} {m}").into(),
        None => operation.into(),
    };
    if let Some(p) = provider {
        span.attributes.push(KeyValue::new("gen_ai.system", p));
    }
    if !span
        .attributes
        .iter()
        .any(|kv| kv.key.as_str() == "gen_ai.operation.name")
    {
        span.attributes.push(KeyValue::new(
            "gen_ai.operation.name",
            Value::from(span.name.split(' ').next().unwrap_or_default().to_owned()),
        ));
    }
}

/// The string a `Debug`-formatted string stands for (`"a\"b"` → `a"b`); `None` when `s` is
/// not one.
fn undebug(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            '0' => out.push('\0'),
            'u' => {
                let hex: String = chars.by_ref().skip(1).take_while(|&c| c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_urls() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("https://c.example/v1/traces/").unwrap(),
            "https://c.example/v1/traces"
        );
        assert!(traces_url("127.0.0.1:4318").is_err());
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn debug_strings_are_undone() {
        for s in ["fast", "a\"b", "line\nbreak", "tab\t\\", "bell\u{7}", "é"] {
            assert_eq!(undebug(&format!("{s:?}")).as_deref(), Some(s));
        }
        assert_eq!(undebug("plain"), None);
    }
}
