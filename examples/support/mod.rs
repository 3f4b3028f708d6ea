//! Start-up helpers shared by the embedding examples (not an example itself).

use std::net::SocketAddr;

use switchboard::demo::DemoProviders;
use switchboard::Catalog;

/// The demo providers' catalog, or `examples/gateway.toml` when a provider key is set. The
/// demo providers live as long as the returned guard.
pub(crate) async fn load_catalog() -> Result<(Catalog, Option<DemoProviders>), String> {
    let keyed = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if keyed {
        let path = "examples/gateway.toml";
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        let catalog = Catalog::from_toml(&text).map_err(|e| format!("{path}: {}", e.message()))?;
        return Ok((catalog, None));
    }
    let demo = DemoProviders::start()
        .await
        .map_err(|e| format!("cannot start the demo providers: {e}"))?;
    println!("no provider API keys set: using switchboard's local demo providers");
    Ok((demo.catalog(), Some(demo)))
}

/// `--listen ADDR` from the command line, else `default`.
#[allow(dead_code)] // not every example takes only --listen
pub(crate) fn parse_listen(default: &str) -> Result<SocketAddr, String> {
    let mut listen = default.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument `{other}` (usage: --listen ADDR)")),
        }
    }
    listen
        .parse()
        .map_err(|e| format!("invalid listen address `{listen}`: {e}"))
}
