//! Process-wide telemetry of the ready gateway: the Prometheus recorder and the log subscriber.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Histogram buckets (seconds for latencies; the same bounds serve token counts poorly but
/// keep memory flat: a bucketed histogram is a fixed set of counters, never a list of samples).
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// How often the recorder's upkeep runs when nobody scrapes `/metrics`.
const UPKEEP: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed on first use; `None` when another global
/// recorder was installed first. Histograms are bucketed and the recorder's upkeep runs on its
/// own, so memory stays flat whether or not `/metrics` is scraped.
pub(super) fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("switchboard-metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP);
                    upkeep.run_upkeep();
                })
                .ok()?;
            Some(handle)
        })
        .clone()
}

/// The access log [`init_logs`] started, if `RUST_LOG` lets `switchboard::access` log at INFO.
static ACCESS_LOG: OnceLock<crate::cost::AccessLog> = OnceLock::new();

/// The process's access log, for the gateway's CostMeter.
pub(super) fn access_log() -> Option<crate::cost::AccessLog> {
    ACCESS_LOG.get().cloned()
}

/// Installs the global log subscriber: `RUST_LOG` (default `info`), human-readable or JSON.
/// Does nothing (but say so) when a subscriber is already installed.
///
/// The per-request line is not a tracing event: when `RUST_LOG` enables
/// `switchboard::access` at INFO (as the default does), it is written by an
/// [`AccessLog`](crate::cost::AccessLog) thread to standard output, in the same format.
pub fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    #[cfg(not(feature = "otel"))]
    let result = {
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        if json {
            builder.json().try_init()
        } else {
            builder.try_init()
        }
    };
    // With the `otel` feature: the same log output (`RUST_LOG` filters it alone), beside the
    // slot `[otel]` fills (empty, and disabled for every callsite, until then).
    #[cfg(feature = "otel")]
    let result = {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        use tracing_subscriber::Layer;
        let fmt = tracing_subscriber::fmt::layer();
        let fmt = if json {
            fmt.json().with_filter(filter).boxed()
        } else {
            fmt.with_filter(filter).boxed()
        };
        tracing_subscriber::registry()
            .with(super::otel::Slot.with_filter(super::otel::SlotFilter))
            .with(fmt)
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("logging not initialised: {e}");
        return;
    }
    if tracing::enabled!(target: "switchboard::access", tracing::Level::INFO) {
        let format = if json {
            crate::cost::AccessLogFormat::Json
        } else {
            crate::cost::AccessLogFormat::Text
        };
        match crate::cost::AccessLog::stdout(format) {
            Ok(log) => {
                let _ = ACCESS_LOG.set(log);
            }
            Err(e) => eprintln!("access log not started: {e}"),
        }
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection cap, not the
/// process's descriptor limit, decides how many clients are served.
pub fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
}
