//! `switchboard`: the ready gateway.
//!
//! ```sh
//! switchboard                                   # examples/gateway.toml on 127.0.0.1:8080
//! switchboard --config my.toml --listen 0.0.0.0:9000 --log-json
//! ```
//!
//! Provider keys come from the environment variables the config names (`OPENAI_API_KEY`,
//! `ANTHROPIC_API_KEY`, `GEMINI_API_KEY`, …); with none set it starts the built-in demo
//! providers and says so. The listen address is `--listen`, else `SWITCHBOARD_LISTEN`, else
//! 127.0.0.1:8080 (port 0 picks a free port); the bound address is printed as
//! `switchboard listening on http://ADDR`. On SIGINT/SIGTERM in-flight requests get
//! `SWITCHBOARD_SHUTDOWN_GRACE_MS` (default 10 s) to finish.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use switchboard::server::{self, Options};

const USAGE: &str =
    "usage: switchboard [--config PATH] [--listen ADDR] [--prices OPENROUTER_JSON] [--log-json]";

fn parse_args() -> Result<(Options, bool), String> {
    let mut options = Options::default();
    let mut json = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => options.config = it.next().ok_or("--config needs a path")?,
            "--listen" => options.listen = it.next().ok_or("--listen needs an address")?,
            "--prices" => options.prices = Some(it.next().ok_or("--prices needs a path")?),
            "--log-json" => json = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}` ({USAGE})")),
        }
    }
    Ok((options, json))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (options, json) = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    server::init_logs(json);
    server::raise_fd_limit();
    let running = match server::start(&options).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Standard output may be a closed pipe: the gateway goes on serving.
    let mut out = std::io::stdout().lock();
    for n in running.notes() {
        let _ = writeln!(out, "{n}");
    }
    let _ = writeln!(out, "switchboard listening on http://{}", running.addr());
    drop(out);
    shutdown_signal().await;
    let grace = std::env::var("SWITCHBOARD_SHUTDOWN_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let _ = writeln!(std::io::stdout(), "shutting down (grace {grace:?})");
    running.shutdown(grace).await;
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
