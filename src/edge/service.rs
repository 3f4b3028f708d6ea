//! What every edge service does the same way: the settings its layer hands it (limits, key
//! check, refused log), the key check before the body is read, and around its own answer the
//! request and generation ids and the refused watch. What an edge does its own way (its
//! error format, its request translation, its rendering) is its [`Edge`] impl.

use std::future::Future;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};
use http_body::Body;
use tower_service::Service;

use super::future::ResponseFuture;
use super::refused::{RefusedLog, Watch};
use super::{EdgeBody, EdgeConfig, RequestId, REQUEST_ID};
use crate::chat::{ChatHttpRequest, ChatHttpResponse};
use crate::ext::GenerationId;
use crate::headers::GENERATION_ID;
use crate::keys::{ClientKeysLayer, PresentedKey};
use crate::{BoxError, Error};

/// What an edge layer carries and each of its services gets a copy of.
#[derive(Clone)]
pub(super) struct EdgeSettings {
    pub(super) config: EdgeConfig,
    pub(super) keys: Option<ClientKeysLayer>,
    pub(super) refused: RefusedLog,
}

/// The typed stack an edge calls.
pub(super) trait TypedStack:
    Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future: Send> + Send + 'static
{
}

impl<S> TypedStack for S where
    S: Service<ChatHttpRequest, Response = ChatHttpResponse, Error = Error, Future: Send>
        + Send
        + 'static
{
}

/// A request body an edge reads.
pub(super) trait RequestBody:
    Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> RequestBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// An edge's HTTP answer.
pub(super) type Answer = http::Response<EdgeBody>;

/// What an edge does its own way; [`serve`] does the rest. The provided methods answer as the
/// OpenAI-format edges (chat completions, Responses, embeddings) do.
pub(super) trait Edge: Copy + Send + 'static {
    /// Whether the edge answers a request other than a POST in [`answer`](Self::answer)
    /// itself (with the ids, as the embeddings edge does), rather than with
    /// [`method_not_allowed`](Self::method_not_allowed) before anything else.
    const ANSWERS_ANY_METHOD: bool = false;

    /// The edge's error response.
    fn error_response(e: &Error) -> Answer {
        super::error_response(e)
    }

    /// The 405 of a request other than a POST.
    fn method_not_allowed() -> Answer {
        super::method_not_allowed("POST")
    }

    /// The key check before the body is read: the presented key, or the edge's 401.
    #[inline]
    fn authenticate<B>(
        keys: Option<&ClientKeysLayer>,
        refused: &RefusedLog,
        req: &http::Request<B>,
    ) -> Result<Option<PresentedKey>, Box<Answer>> {
        check_key(keys, refused, req, Self::error_response)
    }

    /// Puts the request id on an answer.
    fn stamp_id(h: &mut HeaderMap, id: RequestId) {
        h.insert(REQUEST_ID, id.0);
    }

    /// The answer to a request: its body read and translated, the stack called, its answer
    /// (or error) rendered.
    fn answer<S: TypedStack, B: RequestBody>(
        self,
        req: Incoming<'_, S, B>,
    ) -> impl Future<Output = Answer> + Send;
}

/// A request as an edge's [`answer`](Edge::answer) gets it: the ids made, the presented key
/// and the generation id in `parts.extensions`, the body not read yet.
pub(super) struct Incoming<'a, S, B> {
    /// The typed stack.
    pub(super) inner: S,
    pub(super) config: EdgeConfig,
    pub(super) parts: &'a mut http::request::Parts,
    pub(super) body: B,
    pub(super) id: &'a RequestId,
    /// Records the request if it is refused.
    pub(super) watch: Option<Watch>,
}

/// An edge service's `call`: the key check (a refusal is the answer at once), then the rest in
/// one boxed future.
#[inline]
pub(super) fn serve<E: Edge, S: TypedStack + Clone, B: RequestBody>(
    edge: E,
    inner: &S,
    settings: &EdgeSettings,
    req: http::Request<B>,
) -> ResponseFuture {
    let inner = inner.clone();
    let config = settings.config;
    let presented = match E::authenticate(settings.keys.as_ref(), &settings.refused, &req) {
        Ok(p) => p,
        Err(resp) => return ResponseFuture::ready(*resp),
    };
    let refused = settings.refused.clone();
    ResponseFuture::new(Box::pin(async move {
        Ok(handle(edge, inner, config, req, presented, refused).await)
    }))
}

/// The request and generation ids, the refused watch and the presented key around the edge's
/// [`answer`](Edge::answer); the ids go out on the answer.
async fn handle<E: Edge, S: TypedStack, B: RequestBody>(
    edge: E,
    inner: S,
    config: EdgeConfig,
    req: http::Request<B>,
    presented: Option<PresentedKey>,
    refused: RefusedLog,
) -> Answer {
    if !E::ANSWERS_ANY_METHOD && req.method() != Method::POST {
        return E::method_not_allowed();
    }
    let (mut parts, body) = req.into_parts();
    let id = request_id(&parts.headers);
    let generation = generation_id(&parts.extensions);
    let watch = refused.watch(
        &parts.uri,
        &parts.extensions,
        presented.as_ref(),
        &generation,
    );
    if let Some(p) = presented {
        parts.extensions.insert(p);
    }
    parts.extensions.insert(generation.clone());
    let req = Incoming {
        inner,
        config,
        parts: &mut parts,
        body,
        id: &id,
        watch,
    };
    let mut resp = edge.answer(req).await;
    E::stamp_id(resp.headers_mut(), id);
    stamp_generation(resp.headers_mut(), &generation);
    resp
}

/// For an edge's layer and service: `Debug` (the settings' fields shown as their own), the
/// service's `new` (the layer's defaults) and `get_ref` / `get_mut` / `into_inner`, the
/// layer's `Layer` impl and the service's `Service` impl (see [`edge_service`]), with the
/// edge's own part `$edge`.
macro_rules! edge_layer {
    ($layer:ident => $service:ident, $edge:expr) => {
        impl std::fmt::Debug for $layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($layer))
                    .field("config", &self.settings.config)
                    .field("keys", &self.settings.keys)
                    .field("refused", &self.settings.refused)
                    .finish()
            }
        }

        impl<S: std::fmt::Debug> std::fmt::Debug for $service<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($service))
                    .field("inner", &self.inner)
                    .field("config", &self.settings.config)
                    .field("keys", &self.settings.keys)
                    .field("refused", &self.settings.refused)
                    .finish()
            }
        }

        impl<S> $service<S> {
            /// Wraps the typed stack with default settings.
            pub fn new(inner: S) -> Self {
                tower_layer::Layer::layer(&<$layer>::default(), inner)
            }
            $crate::macros::inner_service_accessors!(inner: S);
        }

        impl<S> tower_layer::Layer<S> for $layer {
            type Service = $service<S>;
            fn layer(&self, inner: S) -> $service<S> {
                $service {
                    inner,
                    settings: self.settings.clone(),
                }
            }
        }

        $crate::edge::service::edge_service!($service, |_| $edge);
    };
}

/// The `Service` impl of an edge service (fields `inner` and `settings`): [`serve`] with the
/// edge's own part, `$edge` (which may read the service as `$this`).
macro_rules! edge_service {
    ($service:ident, |$this:pat_param| $edge:expr) => {
        impl<S, B> tower_service::Service<http::Request<B>> for $service<S>
        where
            S: tower_service::Service<
                    $crate::chat::ChatHttpRequest,
                    Response = $crate::chat::ChatHttpResponse,
                    Error = $crate::Error,
                > + Clone
                + Send
                + 'static,
            S::Future: Send,
            B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
            B::Error: Into<$crate::BoxError>,
        {
            type Response = http::Response<$crate::edge::EdgeBody>;
            type Error = std::convert::Infallible;
            type Future = $crate::edge::future::ResponseFuture;

            fn poll_ready(
                &mut self,
                _cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Result<(), std::convert::Infallible>> {
                std::task::Poll::Ready(Ok(()))
            }

            fn call(&mut self, req: http::Request<B>) -> $crate::edge::future::ResponseFuture {
                let $this = &*self;
                $crate::edge::service::serve($edge, &self.inner, &self.settings, req)
            }
        }
    };
}

/// The `gen_ai.chat` span of a request at `$level`, with the fields every chat-format edge
/// gives it (and any `$more` after); `$chat` is the canonical request, `$parts` the request's
/// parts, `$id` its [`RequestId`]. A macro, so that the span names the edge's module.
macro_rules! chat_span {
    ($level:ident, $chat:expr, $parts:expr, $id:expr $(, $($more:tt)+)?) => {
        tracing::span!(
            tracing::Level::$level,
            "gen_ai.chat",
            "gen_ai.operation.name" = "chat",
            "gen_ai.request.model" = ?$chat.model,
            "gen_ai.response.id" =
                $parts.extensions.get::<$crate::ext::GenerationId>().map(|g| &*g.0),
            "gen_ai.provider.name" = tracing::field::Empty,
            "gen_ai.response.model" = tracing::field::Empty,
            "gen_ai.usage.input_tokens" = tracing::field::Empty,
            "gen_ai.usage.output_tokens" = tracing::field::Empty,
            cost_usd = tracing::field::Empty,
            cache = tracing::field::Empty,
            request_id = ?$id.0,
            stream = $chat.is_stream(),
            $($($more)+)?
        )
    };
}

/// The stack's answer to `$typed`, awaited within `$span`: the provider and model that served
/// recorded on the span, a failure logged in it. A macro, so that the log line names the
/// edge's module.
macro_rules! traced_call {
    ($inner:expr, $typed:expr, $span:expr) => {
        match $inner.oneshot($typed).instrument($span.clone()).await {
            Ok(resp) => {
                if let Some(served) = resp.extensions().get::<$crate::ext::ServedBy>() {
                    $span.record("gen_ai.provider.name", &*served.provider);
                    $span.record("gen_ai.response.model", &*served.model);
                }
                Ok(resp)
            }
            Err(e) => {
                $span.in_scope(|| {
                    tracing::debug!(
                        error.kind = e.kind().as_str(),
                        error.message = e.message(),
                        status = e.status().as_u16(),
                        "request failed"
                    );
                });
                Err(e)
            }
        }
    };
}

pub(super) use {chat_span, edge_layer, edge_service, traced_call};

/// The key check every edge runs before the body is read: the presented key, or the format's
/// 401 (`render`) with the request and generation ids, recorded as a refused request.
#[inline]
pub(super) fn check_key<B>(
    keys: Option<&ClientKeysLayer>,
    refused: &RefusedLog,
    req: &http::Request<B>,
    render: fn(&Error) -> Answer,
) -> Result<Option<PresentedKey>, Box<Answer>> {
    let Some(keys) = keys else {
        return Ok(None);
    };
    match keys.authenticate(req.headers()) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            let generation = generation_id(req.extensions());
            refused.refuse(&e, req.uri(), req.extensions(), &generation);
            let mut resp = render(&e);
            resp.headers_mut()
                .insert(REQUEST_ID, request_id(req.headers()).0);
            stamp_generation(resp.headers_mut(), &generation);
            Err(Box::new(resp))
        }
    }
}

/// The request's [`GenerationId`]: the one already in `extensions` (an outer layer's), else a
/// fresh one.
fn generation_id(extensions: &http::Extensions) -> GenerationId {
    extensions
        .get::<GenerationId>()
        .cloned()
        .unwrap_or_default()
}

/// Sends the generation id as `x-generation-id`.
fn stamp_generation(h: &mut HeaderMap, id: &GenerationId) {
    h.insert(GENERATION_ID, id.header_value());
}

pub(super) fn request_id(headers: &HeaderMap) -> RequestId {
    if let Some(v) = headers
        .get(&REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128)
    {
        return RequestId(v.clone());
    }
    // Copied once from the stack into a buffer of its exact size.
    let id = crate::openai::unique_hex();
    RequestId(
        HeaderValue::from_maybe_shared(Bytes::copy_from_slice(id.as_bytes()))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    )
}
