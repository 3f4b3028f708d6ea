//! Request parameter sets, for `provider.require_parameters`.

use std::fmt;

use crate::openai::ChatRequest;

macro_rules! parameters {
    ($($bit:literal $konst:ident $name:literal,)*) => {
        impl Parameters {
            $(
                #[doc = concat!("`", $name, "`.")]
                pub const $konst: Self = Self(1 << $bit);
            )*
            const NAMES: &'static [(&'static str, Self)] = &[$(($name, Self::$konst),)*];
        }
    };
}

/// A set of request parameters, for `provider.require_parameters`: what a request uses
/// (see [`crate::resolve`]) or what an endpoint accepts ([`Endpoint::supported_parameters`]).
///
/// [`Endpoint::supported_parameters`]: crate::catalog::Endpoint::supported_parameters
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Parameters(u32);

parameters! {
    0 MAX_TOKENS "max_tokens",
    1 TEMPERATURE "temperature",
    2 TOP_P "top_p",
    3 TOP_K "top_k",
    4 N "n",
    5 STOP "stop",
    6 SEED "seed",
    7 LOGPROBS "logprobs",
    8 TOP_LOGPROBS "top_logprobs",
    9 FREQUENCY_PENALTY "frequency_penalty",
    10 PRESENCE_PENALTY "presence_penalty",
    11 LOGIT_BIAS "logit_bias",
    12 TOOLS "tools",
    13 TOOL_CHOICE "tool_choice",
    14 PARALLEL_TOOL_CALLS "parallel_tool_calls",
    15 RESPONSE_FORMAT "response_format",
    16 REASONING "reasoning",
    17 MIN_P "min_p",
    18 TOP_A "top_a",
    19 REPETITION_PENALTY "repetition_penalty",
}

impl Parameters {
    /// No parameter.
    pub const NONE: Self = Self(0);
    /// Every parameter switchboard knows.
    pub const ALL: Self = Self((1 << 20) - 1);

    /// Both sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The parameters of `self` not in `other`.
    #[must_use]
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether every parameter of `other` is in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// One parameter by its request field name. `max_completion_tokens` counts as
    /// `max_tokens`, `reasoning_effort` and `include_reasoning` as `reasoning`,
    /// `structured_outputs` as `response_format`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "max_completion_tokens" => Some(Self::MAX_TOKENS),
            "reasoning_effort" | "include_reasoning" => Some(Self::REASONING),
            "structured_outputs" => Some(Self::RESPONSE_FORMAT),
            _ => Self::NAMES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, p)| *p),
        }
    }

    /// A set from names; the error names the first unknown one.
    pub fn from_names<I, S>(names: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut set = Self::NONE;
        for n in names {
            let n = n.as_ref();
            set = set.union(Self::parse(n).ok_or_else(|| {
                let known: Vec<&str> = Self::NAMES.iter().map(|(n, _)| *n).collect();
                format!("unknown parameter `{n}` (known: {})", known.join(", "))
            })?);
        }
        Ok(set)
    }

    /// The parameters a request uses, for `require_parameters`. `n` counts only above 1 and
    /// `logprobs` only when true; unknown fields count when switchboard knows their name
    /// (`logit_bias`, `min_p`, `top_a`, `repetition_penalty`).
    pub fn used_by(req: &ChatRequest) -> Self {
        let mut p = Self::NONE;
        let mut add = |on: bool, q: Self| {
            if on {
                p = p.union(q);
            }
        };
        add(req.max_output_tokens().is_some(), Self::MAX_TOKENS);
        add(req.temperature.is_some(), Self::TEMPERATURE);
        add(req.top_p.is_some(), Self::TOP_P);
        add(req.top_k.is_some(), Self::TOP_K);
        add(req.n.is_some_and(|n| n > 1), Self::N);
        add(req.stop.is_some(), Self::STOP);
        add(req.seed.is_some(), Self::SEED);
        add(req.logprobs == Some(true), Self::LOGPROBS);
        add(req.top_logprobs.is_some_and(|k| k > 0), Self::TOP_LOGPROBS);
        add(req.frequency_penalty.is_some(), Self::FREQUENCY_PENALTY);
        add(req.presence_penalty.is_some(), Self::PRESENCE_PENALTY);
        add(req.has_tools(), Self::TOOLS);
        add(req.tool_choice.is_some(), Self::TOOL_CHOICE);
        add(req.parallel_tool_calls.is_some(), Self::PARALLEL_TOOL_CALLS);
        add(req.response_format.is_some(), Self::RESPONSE_FORMAT);
        add(
            req.reasoning.is_some() || req.reasoning_effort.is_some(),
            Self::REASONING,
        );
        for (k, _) in &req.extra {
            if let "logit_bias" | "min_p" | "top_a" | "repetition_penalty" = k.as_str() {
                if let Some(q) = Self::parse(k) {
                    p = p.union(q);
                }
            }
        }
        p
    }

    /// The names in the set, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .iter()
            .filter(move |(_, p)| self.contains(*p))
            .map(|(n, _)| *n)
    }
}

impl fmt::Debug for Parameters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
