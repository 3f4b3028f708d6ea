use super::*;

// ---------------------------------------------------------------------------------------------
// Reports

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64
}

pub(crate) fn pcts(values: impl Iterator<Item = u64>) -> (f64, f64) {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    (percentile(&v, 0.50), percentile(&v, 0.99))
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub(crate) fn us(ns: f64) -> String {
    format!("{:.1}", ns / 1e3)
}

pub(crate) fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
}

/// The median (range) of a target's per-round throughput ratios to `bare_proxy`.
pub(crate) fn round_ratios(t: &Tally, bare: &Tally) -> (f64, f64, f64) {
    let r: Vec<f64> = t
        .per_round
        .iter()
        .zip(&bare.per_round)
        .map(|(a, b)| a / b)
        .collect();
    let lo = r.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (median(r), lo, hi)
}

pub(crate) fn print_load(title: &str, targets: &[Target], tallies: &[Option<Tally>], tick: f64) {
    println!("\n#### {title}\n");
    println!(
        "| target | req/s | × bare | per round × bare: median (range) | p50 µs | p99 µs | proxy CPU/req µs | × bare | upstream + client CPU/req µs | machine CPU: bench / others | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let bare = tallies[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let bare_cpu = bare.cpu_us(tick);
    for (t, tally) in targets.iter().zip(tallies) {
        let Some(tally) = tally else { continue };
        let (p50, p99) = pcts(tally.samples.iter().map(|s| s.total));
        let (mid, lo, hi) = round_ratios(tally, bare);
        let cpu = tally.cpu_us(tick);
        println!(
            "| {} | {:.0} | {:.2} | {mid:.2} ({lo:.2}–{hi:.2}) | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            tally.rate(),
            tally.rate() / bare.rate(),
            us(p50),
            us(p99),
            opt(cpu, 1),
            opt(cpu.zip(bare_cpu).map(|(c, b)| c / b), 2),
            opt(tally.others_us(tick), 1),
            shares(tally),
            tally.errors,
        );
    }
    report_errors(targets, tallies);
}

pub(crate) fn print_streams(title: &str, targets: &[Target], tallies: &[Option<Tally>], tick: f64) {
    println!("\n#### {title}\n");
    println!(
        "| target | streams/s | TTFB p50 µs | TTFB p99 µs | total p50 µs | first-chunk delay p50 µs | p99 µs | − bare p50 µs | proxy CPU/stream µs | × bare | machine CPU: bench / others | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let bare = tallies[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let (b50, _) = pcts(bare.samples.iter().filter_map(|s| s.forward));
    let bare_cpu = bare.cpu_us(tick);
    for (t, tally) in targets.iter().zip(tallies) {
        let Some(tally) = tally else { continue };
        let (f50, f99) = pcts(tally.samples.iter().map(|s| s.first));
        let (t50, _) = pcts(tally.samples.iter().map(|s| s.total));
        let (w50, w99) = pcts(tally.samples.iter().filter_map(|s| s.forward));
        let cpu = tally.cpu_us(tick);
        let stamped = tally.samples.iter().filter(|s| s.forward.is_some()).count();
        let delay = |v: f64| {
            if stamped == 0 {
                "–".to_owned()
            } else {
                us(v)
            }
        };
        println!(
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            t.name,
            tally.rate(),
            us(f50),
            us(f99),
            us(t50),
            delay(w50),
            delay(w99),
            if t.pid.is_some() {
                delay(w50 - b50)
            } else {
                "–".to_owned()
            },
            opt(cpu, 1),
            opt(cpu.zip(bare_cpu).map(|(c, b)| c / b), 2),
            shares(tally),
            tally.errors,
        );
        let missing = tally.samples.len() - stamped;
        if missing > 0 && stamped > 0 {
            println!("<!-- {}: {missing} streams without a stamp -->", t.name);
        }
    }
    report_errors(targets, tallies);
}

/// The machine CPU cell: the bench's three processes / everything else.
pub(crate) fn shares(tally: &Tally) -> String {
    tally.machine_shares().map_or_else(
        || "–".to_owned(),
        |(ours, others)| format!("{:.0} % / {:.0} %", ours * 100.0, others * 100.0),
    )
}

pub(crate) fn report_errors(targets: &[Target], tallies: &[Option<Tally>]) {
    for (t, tally) in targets.iter().zip(tallies) {
        if let Some(Tally {
            errors,
            first_error: Some(e),
            ..
        }) = tally
        {
            println!("\n{}: {errors} errors, the first: {e}", t.name);
        }
    }
}

/// The per-chunk CPU estimate of each target, in µs: (CPU per stream − CPU per whole answer)
/// ÷ the extra frames.
pub(crate) fn per_chunk(
    whole: &[Option<Tally>],
    streams: &[Option<Tally>],
    tick: f64,
) -> Vec<Option<f64>> {
    whole
        .iter()
        .zip(streams)
        .map(|(w, s)| {
            let w = w.as_ref()?.cpu_us(tick)?;
            let s = s.as_ref()?.cpu_us(tick)?;
            Some((s - w) / EXTRA_FRAMES as f64)
        })
        .collect()
}

/// The targets, one row per configuration of the binary.
pub(crate) fn print_summary(targets: &[Target], r: &Results, tick: f64) {
    let bare32 = r.whole32[BARE]
        .as_ref()
        .expect("bare_proxy is always measured");
    let bare_cpu = bare32.cpu_us(tick);
    let chunk = per_chunk(&r.whole32, &r.streams32, tick);
    let bare_fwd = r.streams1[BARE]
        .as_ref()
        .map(|t| pcts(t.samples.iter().filter_map(|s| s.forward)).0);
    println!("\n#### Against the targets (× bare proxy, same run)\n");
    println!(
        "| target | throughput, 1 KiB, 32 conns (≥ 0.8): total / per-round median | proxy CPU per request, 32 conns (≤ 1.5) | first chunk − bare, p50 µs (≤ 30) | per-chunk CPU µs (≤ 1.2×) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (k, t) in targets.iter().enumerate().skip(BARE) {
        let Some(w) = r.whole32[k].as_ref() else {
            continue;
        };
        let (mid, _, _) = round_ratios(w, bare32);
        let cpu = w.cpu_us(tick).zip(bare_cpu).map(|(c, b)| c / b);
        let fwd = r.streams1[k].as_ref().and_then(|s| {
            let (w50, _) = pcts(s.samples.iter().filter_map(|x| x.forward));
            bare_fwd.map(|b| w50 - b)
        });
        let chunk_cell = match (chunk[k], chunk[BARE]) {
            (Some(c), Some(b)) => format!("{c:.2} ({:.2}×)", c / b),
            _ => "–".to_owned(),
        };
        println!(
            "| {} | {:.2} / {mid:.2} | {} | {} | {chunk_cell} |",
            t.name,
            w.rate() / bare32.rate(),
            opt(cpu, 2),
            fwd.map_or_else(|| "–".to_owned(), us),
        );
    }
    println!(
        "\n(per-chunk: (proxy CPU per stream − per whole answer) ÷ {EXTRA_FRAMES} extra frames, both at 32 connections)"
    );
}

/// Every phase's tallies.
#[derive(Debug)]
pub(crate) struct Results {
    pub(crate) whole32: Vec<Option<Tally>>,
    pub(crate) streams1: Vec<Option<Tally>>,
    pub(crate) streams32: Vec<Option<Tally>>,
}

/// Prints each binary's dropped-line and error counters from `/metrics`, and the warnings and
/// errors of its log.
pub(crate) fn print_gateway_health(rt: &tokio::runtime::Runtime, targets: &[Target], dir: &Path) {
    println!("\n#### The binary's own counters after the run\n");
    let client = support::client();
    for t in targets.iter().skip(BARE + 1) {
        let uri: http::Uri = format!("http://{}/metrics", t.addr)
            .parse()
            .expect("a socket address makes a valid URI");
        let mut req = Request::new(Full::new(Bytes::new()));
        *req.uri_mut() = uri;
        let (status, body) = rt.block_on(support::fetch(&client, req));
        let text = String::from_utf8_lossy(&body);
        let counters: Vec<&str> = text
            .lines()
            .filter(|l| {
                !l.starts_with('#')
                    && (l.contains("dropped") || l.starts_with("switchboard_errors_total"))
            })
            .collect();
        let log =
            std::fs::read_to_string(dir.join(format!("{}.stdout", t.name))).unwrap_or_default();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        println!(
            "- {}: /metrics {status}; {}; {} WARN/ERROR log lines{}",
            t.name,
            if counters.is_empty() {
                "no dropped-line or error counters".to_owned()
            } else {
                counters.join(", ")
            },
            warnings.len(),
            warnings
                .first()
                .map_or_else(String::new, |w| format!(", the first: {w}")),
        );
    }
}
