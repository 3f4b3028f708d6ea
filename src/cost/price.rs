//! Prices and cost arithmetic in integer picodollars (1e-12 USD): no float drift when adding
//! many small amounts.

use crate::catalog::Pricing;
use crate::openai::Usage;

/// An amount of money in picodollars (1e-12 USD).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Picodollars(pub u64);

impl Picodollars {
    /// Zero.
    pub const ZERO: Self = Self(0);

    /// From US dollars (rounded; negative and non-finite become zero).
    pub fn from_usd(usd: f64) -> Self {
        if usd.is_finite() && usd > 0.0 {
            Self((usd * 1e12).round() as u64)
        } else {
            Self::ZERO
        }
    }

    /// In US dollars.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e12
    }

    /// Appends the amount in US dollars as its exact decimal, without float formatting:
    /// `0.0000036`, `12.5`, `0.0`. Parsed as a float it is [`usd`](Self::usd).
    pub(crate) fn write_usd(self, out: &mut Vec<u8>) {
        const PER_USD: u64 = 1_000_000_000_000;
        if self.0 == 0 {
            out.extend_from_slice(b"0.0");
            return;
        }
        out.extend_from_slice(itoa::Buffer::new().format(self.0 / PER_USD).as_bytes());
        out.push(b'.');
        // The twelve decimals with their leading zeros: PER_USD + the fraction is a 1 and
        // twelve digits.
        let mut buf = itoa::Buffer::new();
        let digits = &buf.format(PER_USD + self.0 % PER_USD).as_bytes()[1..];
        let end = digits.iter().rposition(|&d| d != b'0').map_or(1, |i| i + 1);
        out.extend_from_slice(&digits[..end]);
    }

    /// In nanodollars (rounded), for integer metrics.
    pub fn nanodollars(self) -> u64 {
        (self.0 + 500) / 1000
    }

    /// Saturating sum.
    #[must_use]
    pub fn saturating_add(self, o: Self) -> Self {
        Self(self.0.saturating_add(o.0))
    }
}

/// Per-token prices in picodollars, converted once from a [`Pricing`] (USD per million).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenPrices {
    /// Uncached input token.
    pub input: u64,
    /// Output token.
    pub output: u64,
    /// Input token read from the prompt cache.
    pub cached_input: u64,
    /// Input token written to the prompt cache.
    pub cache_write: u64,
    /// Per request.
    pub request: u64,
}

/// USD per million tokens → picodollars per token.
fn per_token(usd_per_million: f64) -> u64 {
    // USD/M × 1e12 pico/USD ÷ 1e6 tokens/M
    if usd_per_million.is_finite() && usd_per_million > 0.0 {
        (usd_per_million * 1e6).round() as u64
    } else {
        0
    }
}

impl From<Pricing> for TokenPrices {
    fn from(p: Pricing) -> Self {
        Self {
            input: per_token(p.input),
            output: per_token(p.output),
            cached_input: per_token(p.cached_input.unwrap_or(p.input)),
            cache_write: per_token(p.cache_write.unwrap_or(p.input)),
            request: Picodollars::from_usd(p.per_request.unwrap_or(0.0)).0,
        }
    }
}

/// The parts of a cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CostBreakdown {
    /// Uncached input tokens.
    pub input: Picodollars,
    /// Output tokens (reasoning included).
    pub output: Picodollars,
    /// Cached input tokens.
    pub cached_input: Picodollars,
    /// Cache-write input tokens.
    pub cache_write: Picodollars,
    /// Per-request price.
    pub request: Picodollars,
}

impl CostBreakdown {
    /// The total.
    pub fn total(&self) -> Picodollars {
        self.input
            .saturating_add(self.output)
            .saturating_add(self.cached_input)
            .saturating_add(self.cache_write)
            .saturating_add(self.request)
    }

    /// `usage.cost_details` (USD).
    pub fn to_details(&self) -> crate::openai::CostDetails {
        crate::openai::CostDetails {
            input: self.input.usd(),
            output: self.output.usd(),
            cached_input: self.cached_input.usd(),
            cache_write: self.cache_write.usd(),
            request: self.request.usd(),
        }
    }
}

/// Prices `usage` (OpenAI semantics: cached and cache-write tokens are part of
/// `prompt_tokens`, reasoning part of `completion_tokens`).
pub fn cost_of(usage: &Usage, p: &TokenPrices) -> CostBreakdown {
    let cached = usage.cached_tokens().min(usage.prompt_tokens);
    let write = usage.cache_write_tokens().min(usage.prompt_tokens - cached);
    let uncached = usage.prompt_tokens - cached - write;
    let mul = |n: u64, price: u64| Picodollars(n.saturating_mul(price));
    CostBreakdown {
        input: mul(uncached, p.input),
        output: mul(usage.completion_tokens, p.output),
        cached_input: mul(cached, p.cached_input),
        cache_write: mul(write, p.cache_write),
        request: Picodollars(p.request),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{CompletionTokensDetails, PromptTokensDetails};

    #[test]
    fn prices_anthropic_style_usage_exactly() {
        // claude-sonnet-4: $3 in, $15 out, $0.30 cache read, $3.75 cache write per million.
        let p = TokenPrices::from(Pricing {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.3),
            cache_write: Some(3.75),
            per_request: None,
        });
        let u = Usage {
            prompt_tokens: 1000 + 2000 + 500,
            completion_tokens: 300,
            total_tokens: 3800,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: 2000,
                cache_write_tokens: Some(500),
                audio_tokens: None,
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: 100,
                ..CompletionTokensDetails::default()
            }),
            ..Usage::default()
        };
        let c = cost_of(&u, &p);
        // 1000*3e-6 + 300*15e-6 + 2000*0.3e-6 + 500*3.75e-6 = 0.003 + 0.0045 + 0.0006 + 0.001875
        assert_eq!(c.total(), Picodollars::from_usd(0.009_975));
        assert_eq!(c.cached_input, Picodollars(600_000_000));
    }

    #[test]
    fn tiny_prices_do_not_round_to_zero() {
        let p = TokenPrices::from(Pricing {
            input: 0.0375,
            output: 0.15,
            ..Pricing::default()
        });
        assert_eq!(p.input, 37_500);
        assert_eq!(p.cached_input, 37_500, "cached defaults to input");
    }

    #[test]
    fn usd_is_written_as_its_exact_decimal() {
        for (pico, text) in [
            (0, "0.0"),
            (1, "0.000000000001"),
            (3_600_000, "0.0000036"),
            (150_000_000_000, "0.15"),
            (12_500_000_000_000, "12.5"),
            (7_000_000_000_000, "7.0"),
            (u64::MAX, "18446744.073709551615"),
        ] {
            let mut out = Vec::new();
            Picodollars(pico).write_usd(&mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), text);
            let back: f64 = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, Picodollars(pico).usd(), "{text}");
        }
    }
}
