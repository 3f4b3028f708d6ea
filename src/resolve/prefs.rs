//! OpenRouter `provider` preferences and the capability check: filters and sort keys over the
//! working list of candidates.

use crate::catalog::{Capabilities, Parameters};
use crate::ext::Candidate;
use crate::health::Health;
use crate::openai::ChatRequest;
use crate::{Error, ErrorKind};

use super::limits::{quote, quote_list};

/// How a group of candidates is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SortBy {
    /// Cheapest prompt + completion price first, unknown prices last.
    Price,
    /// Lowest latency EWMA first, unknown last.
    Latency,
    /// Highest throughput hint first, then lowest latency, unknown last.
    Throughput,
}

impl SortBy {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "price" => Some(Self::Price),
            "latency" => Some(Self::Latency),
            "throughput" => Some(Self::Throughput),
            _ => None,
        }
    }
}

/// A candidate being considered, with what the filters need to know about it. Small (the
/// candidate is borrowed from the prepared catalog), so filtering and sorting move little;
/// the route clones the candidates that are left, once.
#[derive(Debug, Clone)]
pub(super) struct Slot<'a> {
    pub(super) cand: SlotCandidate<'a>,
    pub(super) caps: Capabilities,
    pub(super) params: Parameters,
    pub(super) throughput: Option<f64>,
    /// Which requested id (in `model`, `models` order) produced it.
    pub(super) group: u32,
}

/// A [`Slot`]'s candidate: one of the catalog's, or one made for this request (pass-through).
#[derive(Debug, Clone)]
pub(super) enum SlotCandidate<'a> {
    Catalog(&'a Candidate),
    Made(Box<Candidate>),
}

impl SlotCandidate<'_> {
    pub(super) fn into_owned(self) -> Candidate {
        match self {
            Self::Catalog(c) => c.clone(),
            Self::Made(c) => *c,
        }
    }
}

impl std::ops::Deref for SlotCandidate<'_> {
    type Target = Candidate;

    fn deref(&self) -> &Candidate {
        match self {
            Self::Catalog(c) => c,
            Self::Made(c) => c,
        }
    }
}

/// The request's `provider` object, validated.
#[derive(Debug, Default)]
pub(super) struct Prefs<'r> {
    order: Option<&'r [String]>,
    only: Option<&'r [String]>,
    ignore: Option<&'r [String]>,
    pub(super) allow_fallbacks: bool,
    pub(super) sort: Option<SortBy>,
    max_price: Option<(Option<f64>, Option<f64>)>,
    deny_data_collection: bool,
    require_parameters: bool,
}

fn non_empty(v: Option<&Vec<String>>) -> Option<&[String]> {
    v.map(Vec::as_slice).filter(|v| !v.is_empty())
}

fn names(list: &[String], provider: &str) -> Option<usize> {
    list.iter().position(|n| n.eq_ignore_ascii_case(provider))
}

impl<'r> Prefs<'r> {
    /// Reads `req.provider`; bad values are 400s naming the field.
    pub(super) fn parse(req: &'r ChatRequest) -> Result<Self, Error> {
        let Some(p) = &req.provider else {
            return Ok(Self {
                allow_fallbacks: true,
                ..Self::default()
            });
        };
        let sort = match p.sort.as_deref() {
            None => None,
            Some(s) => Some(SortBy::parse(s).ok_or_else(|| {
                Error::invalid_request(format!(
                    "`provider.sort` must be \"price\", \"latency\" or \"throughput\", not \"{}\"",
                    quote(s)
                ))
                .with_param("provider.sort")
            })?),
        };
        let deny_data_collection = match p.data_collection.as_deref() {
            None | Some("allow") => false,
            Some("deny") => true,
            Some(other) => {
                return Err(Error::invalid_request(format!(
                    "`provider.data_collection` must be \"allow\" or \"deny\", not \"{}\"",
                    quote(other)
                ))
                .with_param("provider.data_collection"))
            }
        };
        let max_price = match &p.max_price {
            Some(m) if m.prompt.is_some() || m.completion.is_some() => {
                let bad = |v: Option<f64>| v.is_some_and(|v| !v.is_finite() || v < 0.0);
                if bad(m.prompt) || bad(m.completion) {
                    return Err(Error::invalid_request(
                        "`provider.max_price` values must be non-negative USD per million tokens",
                    )
                    .with_param("provider.max_price"));
                }
                Some((m.prompt, m.completion))
            }
            _ => None,
        };
        Ok(Self {
            order: non_empty(p.order.as_ref()),
            only: non_empty(p.only.as_ref()),
            ignore: non_empty(p.ignore.as_ref()),
            allow_fallbacks: p.allow_fallbacks != Some(false),
            sort,
            max_price,
            deny_data_collection,
            require_parameters: p.require_parameters == Some(true),
        })
    }

    /// Whether the preferences change nothing.
    pub(super) fn is_noop(&self) -> bool {
        self.order.is_none()
            && self.only.is_none()
            && self.ignore.is_none()
            && self.allow_fallbacks
            && self.sort.is_none()
            && self.max_price.is_none()
            && !self.deny_data_collection
            && !self.require_parameters
    }

    /// Applies `only`, `ignore`, `data_collection`, `max_price` and `require_parameters`, in
    /// that order; the first that leaves nothing is named in the error.
    pub(super) fn filter(
        &self,
        slots: &mut Vec<Slot<'_>>,
        req: &ChatRequest,
        requested: &str,
    ) -> Result<(), Error> {
        let requested = quote(requested);
        let none_left = |field: &'static str, what: &str| {
            Error::invalid_request(format!(
                "no provider for `{requested}` matches `provider.{field}` ({what})"
            ))
            .with_code("no_matching_provider")
            .with_param(format!("provider.{field}"))
        };
        if let Some(only) = self.only {
            slots.retain(|s| names(only, &s.cand.provider.name).is_some());
            if slots.is_empty() {
                return Err(none_left("only", &quote_list(only)));
            }
        }
        if let Some(ignore) = self.ignore {
            slots.retain(|s| names(ignore, &s.cand.provider.name).is_none());
            if slots.is_empty() {
                return Err(none_left("ignore", "every provider is ignored"));
            }
        }
        if self.deny_data_collection {
            slots.retain(|s| !s.cand.provider.data_collection);
            if slots.is_empty() {
                return Err(none_left(
                    "data_collection",
                    "every provider may retain prompts",
                ));
            }
        }
        if let Some((prompt, completion)) = self.max_price {
            slots.retain(|s| {
                s.cand.pricing.is_some_and(|p| {
                    prompt.is_none_or(|max| p.input <= max)
                        && completion.is_none_or(|max| p.output <= max)
                })
            });
            if slots.is_empty() {
                return Err(none_left(
                    "max_price",
                    "every known price is higher, or unknown",
                ));
            }
        }
        if self.require_parameters {
            let used = used_parameters(req);
            let missing = slots.first().map(|s| used.difference(s.params));
            slots.retain(|s| s.params.contains(used));
            if slots.is_empty() {
                let missing: Vec<&str> = missing.unwrap_or_default().names().collect();
                let mut e = Error::invalid_request(format!(
                    "no provider for `{requested}` supports every parameter used \
                     (`provider.require_parameters`); unsupported: {}",
                    missing.join(", ")
                ))
                .with_code("unsupported_parameter");
                if let Some(first) = missing.first() {
                    e = e.with_param(*first);
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// Orders each group: `order`'s providers first (in its order), then by the group's sort
    /// key; groups keep their order and ties keep catalog order.
    pub(super) fn order(
        &self,
        slots: &mut Vec<Slot<'_>>,
        sorts: &[Option<SortBy>],
        health: Option<&Health>,
    ) {
        if self.order.is_none() && sorts.iter().all(Option::is_none) {
            return;
        }
        let latency = |c: &Candidate| {
            health
                .and_then(|h| h.latency(c))
                .map_or(f64::INFINITY, |d| d.as_secs_f64())
        };
        let mut keyed: Vec<((u32, usize, f64, f64), Slot<'_>)> = std::mem::take(slots)
            .into_iter()
            .map(|s| {
                let pos = self
                    .order
                    .and_then(|o| names(o, &s.cand.provider.name))
                    .unwrap_or(usize::MAX);
                let (k1, k2) = match sorts.get(s.group as usize).copied().flatten() {
                    None => (0.0, 0.0),
                    Some(SortBy::Price) => (price(&s.cand).unwrap_or(f64::INFINITY), 0.0),
                    Some(SortBy::Latency) => (latency(&s.cand), 0.0),
                    Some(SortBy::Throughput) => {
                        (s.throughput.map_or(f64::INFINITY, |t| -t), latency(&s.cand))
                    }
                };
                ((s.group, pos, k1, k2), s)
            })
            .collect();
        // Stable: ties keep catalog order.
        keyed.sort_by(|(a, _), (b, _)| {
            a.0.cmp(&b.0)
                .then(a.1.cmp(&b.1))
                .then(a.2.total_cmp(&b.2))
                .then(a.3.total_cmp(&b.3))
        });
        slots.extend(keyed.into_iter().map(|(_, s)| s));
    }
}

/// Prompt + completion price per million tokens, if known.
fn price(c: &Candidate) -> Option<f64> {
    c.pricing.map(|p| p.input + p.output)
}

/// The parameters a request uses, for `require_parameters` (see [`Parameters::used_by`]).
pub(super) fn used_parameters(req: &ChatRequest) -> Parameters {
    Parameters::used_by(req)
}

/// What serving the request takes (from the cheap scan of `messages`, never a parse).
#[derive(Debug, Clone, Copy)]
pub(super) struct Need {
    prompt_tokens: u64,
    max_output: Option<u32>,
    tools: bool,
    images: bool,
}

/// Why a candidate cannot serve the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unfit {
    Context,
    MaxOutput,
    Tools,
    Images,
}

impl Need {
    pub(super) fn of(req: &ChatRequest) -> Self {
        Self {
            prompt_tokens: req.summary.estimated_tokens(),
            max_output: req.max_output_tokens(),
            tools: req.has_tools() || req.summary.has_tool_messages,
            images: req.summary.has_images,
        }
    }

    /// The first reason `c` (with capabilities `caps`) cannot serve, if any. Unknown limits
    /// never disqualify.
    pub(super) fn unfit(&self, c: &Candidate, caps: Capabilities) -> Option<Unfit> {
        if let Some(ctx) = c.context_length {
            if self.prompt_tokens + u64::from(self.max_output.unwrap_or(0)) > u64::from(ctx) {
                return Some(Unfit::Context);
            }
        }
        if let (Some(asked), Some(cap)) = (self.max_output, c.max_output) {
            if asked > cap {
                return Some(Unfit::MaxOutput);
            }
        }
        if self.tools && !caps.tools {
            return Some(Unfit::Tools);
        }
        if self.images && !caps.images {
            return Some(Unfit::Images);
        }
        None
    }

    /// Drops the candidates that cannot serve; when none can, a 400 saying why:
    /// `context_length_exceeded` when the context window was the reason for every candidate,
    /// else `unsupported_parameter` naming the first other reason.
    pub(super) fn filter(&self, slots: &mut Vec<Slot<'_>>, requested: &str) -> Result<(), Error> {
        let requested = quote(requested);
        if slots.is_empty() {
            return Err(Error::invalid_request(format!(
                "`{requested}` has no candidates to serve this request"
            ))
            .with_code("unsupported_parameter")
            .with_param("model"));
        }
        let mut other: Option<Unfit> = None;
        let mut largest_context: u32 = 0;
        slots.retain(|s| match self.unfit(&s.cand, s.caps) {
            None => true,
            Some(Unfit::Context) => {
                largest_context = largest_context.max(s.cand.context_length.unwrap_or(0));
                false
            }
            Some(u) => {
                other.get_or_insert(u);
                false
            }
        });
        if !slots.is_empty() {
            return Ok(());
        }
        let unsupported = |param: &'static str, msg: String| {
            Error::invalid_request(msg)
                .with_code("unsupported_parameter")
                .with_param(param)
        };
        Err(match other {
            None => Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "the prompt (about {} tokens) plus the requested output ({} tokens) does not \
                     fit the context window of any candidate for `{requested}` (largest: {largest_context} tokens)",
                    self.prompt_tokens,
                    self.max_output.unwrap_or(0),
                ),
            )
            .with_code("context_length_exceeded")
            .with_param("messages"),
            Some(Unfit::MaxOutput) => unsupported(
                "max_tokens",
                format!(
                    "the requested output ({} tokens) exceeds the output limit of every candidate for `{requested}`",
                    self.max_output.unwrap_or(0)
                ),
            ),
            Some(Unfit::Tools) => unsupported(
                "tools",
                format!("no candidate for `{requested}` supports tool calling"),
            ),
            Some(Unfit::Images | Unfit::Context) => unsupported(
                "messages",
                format!("no candidate for `{requested}` accepts image inputs"),
            ),
        })
    }
}
