//! The worst case a request allows (what a budget reserves) and the unpriced-target policy.

use super::*;

/// Unpriced targets already warned about: bounded (model ids come from clients), one hash
/// lookup per unpriced answer.
pub(super) struct Warned {
    pub(super) seen: HashSet<(Arc<str>, Arc<str>)>,
    pub(super) full: bool,
}

impl Warned {
    /// Whether to warn about this target: the first time it is seen, while there is room.
    pub(super) fn first(&mut self, provider: &Arc<str>, model: &Arc<str>) -> Warn {
        let key = (provider.clone(), model.clone());
        if self.seen.contains(&key) {
            return Warn::No;
        }
        if self.seen.len() < MAX_UNPRICED_WARNINGS {
            self.seen.insert(key);
            Warn::Target
        } else if self.full {
            Warn::No
        } else {
            self.full = true;
            Warn::Full
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Warn {
    No,
    Target,
    Full,
}

pub(super) static UNPRICED_WARNED: LazyLock<Mutex<Warned>> = LazyLock::new(|| {
    Mutex::new(Warned {
        seen: HashSet::new(),
        full: false,
    })
});

pub(super) fn warn_unpriced(provider: &Arc<str>, model: &Arc<str>) {
    let w = lock(&UNPRICED_WARNED).first(provider, model);
    match w {
        Warn::No => {}
        Warn::Target => tracing::warn!(
            provider = &**provider,
            model = ?model,
            "no prices for this target: usage.cost is null"
        ),
        Warn::Full => tracing::warn!(
            "no prices for more than {MAX_UNPRICED_WARNINGS} targets: no more warnings about unpriced targets"
        ),
    }
}

/// The worst case a request allows on its Route.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Estimate {
    /// What to reserve.
    pub(super) amount: Picodollars,
    /// Output tokens on the most expensive candidate.
    pub(super) output: u64,
    /// The most expensive candidate's prices, every input token at the highest input price.
    pub(super) prices: Option<TokenPrices>,
}

/// Input tokens the request may use: the prompt estimate, tool and response-format schemas
/// (4 bytes a token), [`IMAGE_TOKENS`] per image.
pub(super) fn input_estimate(chat: &ChatRequest) -> u64 {
    let schema_bytes = chat.tools.as_ref().map_or(0, |t| t.as_bytes().len())
        + chat
            .response_format
            .as_ref()
            .map_or(0, |t| t.as_bytes().len());
    let mut tokens = chat
        .summary
        .estimated_tokens()
        .saturating_add((schema_bytes as u64).div_ceil(4));
    if chat.summary.has_images {
        tokens = tokens.saturating_add(image_count(chat).saturating_mul(IMAGE_TOKENS));
    }
    tokens
}

/// Images in `messages`: each image part names `"image_url"` twice (type and key).
pub(super) fn image_count(chat: &ChatRequest) -> u64 {
    let n = memchr::memmem::find_iter(chat.messages.as_bytes(), b"\"image_url\"").count() as u64;
    n.div_ceil(2).max(1)
}

/// Output tokens the request allows on `c`: `n` × (the request's cap, else the model's, else
/// [`DEFAULT_MAX_OUTPUT`], plus the reasoning budget).
pub(super) fn output_cap(chat: &ChatRequest, c: Option<&Candidate>) -> u64 {
    let n = u64::from(chat.n.unwrap_or(1).max(1));
    let cap = chat
        .max_output_tokens()
        .or_else(|| c.and_then(|c| c.max_output))
        .unwrap_or(DEFAULT_MAX_OUTPUT);
    let reasoning = chat
        .reasoning
        .as_ref()
        .and_then(|r| r.max_tokens)
        .unwrap_or(0);
    n.saturating_mul(u64::from(cap).saturating_add(u64::from(reasoning)))
}

/// The reservation: input + output at the most expensive candidate's prices.
pub(super) fn estimate(
    config: &Config,
    route: Option<&Route>,
    chat: &ChatRequest,
    input: u64,
    budgeted: bool,
) -> Estimate {
    let one = |c: Option<&Candidate>| -> Option<Estimate> {
        let p = TokenPrices::from(config.billed_price(c, budgeted)?);
        let in_price = p.input.max(p.cache_write).max(p.cached_input);
        let prices = TokenPrices {
            input: in_price,
            cached_input: in_price,
            cache_write: in_price,
            ..p
        };
        let output = output_cap(chat, c);
        let amount = input
            .saturating_mul(in_price)
            .saturating_add(output.saturating_mul(p.output))
            .saturating_add(p.request);
        Some(Estimate {
            amount: Picodollars(amount),
            output,
            prices: Some(prices),
        })
    };
    let worst = match route {
        Some(r) => r
            .candidates
            .iter()
            .filter_map(|c| one(Some(c)))
            .max_by_key(|e| e.amount),
        None => one(None),
    };
    worst.unwrap_or(Estimate {
        output: output_cap(chat, None),
        ..Estimate::default()
    })
}

pub(super) fn unpriced_error(requested: Option<&str>) -> Error {
    let msg = match requested {
        Some(m) => format!(
            "model {m:?} has no price and this key has a budget: it cannot be used with this key"
        ),
        None => "this request has no priced model and this key has a budget".to_owned(),
    };
    Error::new(ErrorKind::Forbidden, msg)
}

/// Applies the unpriced policy for a caller with a budget: the Route without unpriced
/// candidates (`None`: unchanged), or the refusal.
pub(super) fn deny_unpriced(
    config: &Config,
    route: Option<&Route>,
) -> Result<Option<Route>, Error> {
    if !matches!(config.unpriced, UnpricedPolicy::Deny) {
        return Ok(None);
    }
    let Some(route) = route else {
        return Err(unpriced_error(None));
    };
    if route
        .candidates
        .iter()
        .all(|c| config.price_of(c).is_some())
    {
        return Ok(None);
    }
    let priced: Vec<Candidate> = route
        .candidates
        .iter()
        .filter(|c| config.price_of(c).is_some())
        .cloned()
        .collect();
    if priced.is_empty() {
        return Err(unpriced_error(Some(&route.requested)));
    }
    Ok(Some(Route {
        requested: route.requested.clone(),
        candidates: priced.into(),
    }))
}
