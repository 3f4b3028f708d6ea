//! Catalog routing rules, weighted splits and the draws behind them.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;

use crate::catalog::{Routing, Split};
use crate::openai::ChatRequest;

use super::TASK_HEADER;

/// What rules look at, read lazily (the task may need a small parse of `metadata`).
pub(super) struct Ctx<'r> {
    pub(super) req: &'r ChatRequest,
    headers: &'r HeaderMap,
    task: Option<Option<String>>,
}

impl<'r> Ctx<'r> {
    pub(super) fn new(req: &'r ChatRequest, headers: &'r HeaderMap) -> Self {
        Self {
            req,
            headers,
            task: None,
        }
    }

    /// The `x-switchboard-task` header, else `metadata.task`.
    fn task(&mut self) -> Option<&str> {
        let (req, headers) = (self.req, self.headers);
        self.task
            .get_or_insert_with(|| {
                headers
                    .get(TASK_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .or_else(|| req.metadata_str("task"))
            })
            .as_deref()
    }

    /// The end-user id, if the request names one.
    pub(super) fn user(&self) -> Option<&'r str> {
        self.req.user.as_deref().filter(|u| !u.is_empty())
    }
}

/// The target of the first rule for `id` whose conditions hold.
pub(super) fn matching<'c>(routing: &'c Routing, id: &str, cx: &mut Ctx<'_>) -> Option<&'c str> {
    for rule in routing.rules() {
        if !routing.rule_applies_to(rule, id) {
            continue;
        }
        if let Some(min) = rule.min_prompt_tokens {
            if cx.req.summary.estimated_tokens() < min {
                continue;
            }
        }
        if let Some(task) = &rule.task {
            if cx.task() != Some(&**task) {
                continue;
            }
        }
        return Some(&rule.target);
    }
    None
}

/// Picks a split's arm: by a stable hash of `user` when there is one (the same user always
/// gets the same arm while the weights stay the same), else by a draw from `rng`.
pub(super) fn pick<'s>(split: &'s Split, user: Option<&str>, rng: &Rng) -> Option<&'s str> {
    let draw = match user {
        Some(u) => user_draw(&split.id, u),
        None => rng.next_u64(),
    };
    split.pick(draw)
}

/// A stable 64-bit hash of a split id and a user (FNV-1a, then a SplitMix64 finaliser to
/// spread the low bits). Stable across processes and releases, unlike `std`'s hashers.
pub(super) fn user_draw(split: &str, user: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in split.bytes().chain([0xff]).chain(user.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    mix(h)
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A lock-free SplitMix64 generator shared by every clone of a layer. Seed it for
/// reproducible draws; not cryptographic.
#[derive(Debug)]
pub(super) struct Rng(AtomicU64);

impl Rng {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    pub(super) fn seeded(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// Seeded from the process's hash randomness and the clock.
    pub(super) fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            h.write_u128(d.as_nanos());
        }
        Self::seeded(h.finish())
    }

    pub(super) fn next_u64(&self) -> u64 {
        let s = self
            .0
            .fetch_add(Self::GAMMA, Ordering::Relaxed)
            .wrapping_add(Self::GAMMA);
        mix(s)
    }
}
