//! An existing axum app that mounts switchboard under `/llm/v1` behind its own auth, with a
//! spend budget per user.
//!
//! ```sh
//! cargo run --example axum_embed                          # 127.0.0.1:3000
//! cargo run --example axum_embed -- --listen 127.0.0.1:0  # any free port
//!
//! curl -s localhost:3000/                                  # public
//! curl -s localhost:3000/me -H 'authorization: Bearer alice-token'
//! curl -s localhost:3000/llm/v1/chat/completions -H 'authorization: Bearer alice-token' \
//!   -H 'content-type: application/json' \
//!   -d '{"model":"fast","messages":[{"role":"user","content":"Hello!"}]}'
//! curl -s localhost:3000/llm/v1/models -H 'authorization: Bearer bob-token'
//!
//! # bob's budget is tiny: one short gpt-4o answer fits, the next gets 402
//! curl -s localhost:3000/llm/v1/chat/completions -H 'authorization: Bearer bob-token' \
//!   -H 'content-type: application/json' \
//!   -d '{"model":"openai/gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
//! ```
//!
//! The app has its own routes (`GET /`, `GET /me`) and its own bearer-token auth: a small map
//! from token to user (`alice-token` → `alice`, `bob-token` → `bob`). The auth middleware puts
//! the user into the request extensions twice: as the app's own `User` (for `/me`) and as
//! switchboard's [`CallerKey`], which the gateway's CostMeter charges. The edge keeps request
//! extensions, so each user's spend counts against their own [`Budget`]: alice has $1 a day,
//! bob $0.0001 a day. Before each call the CostMeter reserves an estimate (the prompt plus
//! `max_tokens`, or the model's largest output, at its price), so bob gets `402` with code
//! `budget_exhausted` unless he asks for few tokens, and soon after that too. Requests without
//! a known token get the app's own `401`, before the gateway sees them.
//!
//! Without provider keys the gateway runs on switchboard's local demo providers; with any of
//! `OPENAI_API_KEY`, `ANTHROPIC_API_KEY` or `GEMINI_API_KEY` set it loads
//! `examples/gateway.toml` and calls the real providers. The bound address is printed as
//! `listening on http://ADDR`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::json;
use switchboard::cost::{Budget, Budgets, CostMeterLayer, Window};
use switchboard::demo::DemoProviders;
use switchboard::ext::CallerKey;
use switchboard::request_log::{ApiAccess, LogOptions, RequestLog};
use switchboard::{Catalog, Gateway};

/// The app's own notion of who is calling.
#[derive(Debug, Clone)]
struct User(Arc<str>);

/// What the auth middleware needs: token → user.
#[derive(Debug)]
struct Users {
    by_token: HashMap<&'static str, Arc<str>>,
}

impl Users {
    fn demo() -> Self {
        let by_token = [("alice-token", "alice"), ("bob-token", "bob")]
            .into_iter()
            .map(|(token, user)| (token, Arc::from(user)))
            .collect();
        Self { by_token }
    }

    fn lookup(&self, authorization: Option<&str>) -> Option<&Arc<str>> {
        let token = authorization?.strip_prefix("Bearer ")?;
        self.by_token.get(token.trim())
    }
}

/// Each user's daily spend budget.
fn budgets() -> Budgets {
    Budgets::default()
        .with("alice", Budget::usd(1.0, Window::Day))
        .with("bob", Budget::usd(0.0001, Window::Day))
}

/// The whole app: public routes, the app's auth, its own `/me`, and the gateway under
/// `/llm/v1`.
fn app(catalog: Catalog, log: &RequestLog) -> Router {
    let budgets = budgets();
    // Every request becomes a row of the request log (the CostMeter is its sink).
    let gateway = Gateway::builder(catalog)
        .cost_meter(
            CostMeterLayer::new()
                .budgets(budgets.clone())
                .sink(log.clone()),
        )
        .build();

    // The edge services do not match paths: route them inside a small router and nest it.
    let llm = Router::new()
        .route_service("/chat/completions", gateway.chat_completions())
        .route_service("/models", gateway.models());

    let authenticated = Router::new()
        .route("/me", get(me))
        .nest_service("/llm/v1", llm)
        .layer(Extension(budgets))
        .layer(middleware::from_fn_with_state(
            Arc::new(Users::demo()),
            auth,
        ));

    // The log's API (`/api/v1/generation?id=…`, `/api/v1/generations`, `/api/v1/stats`,
    // `POST /api/v1/feedback`): without an admin key, for clients on loopback only.
    log.router(ApiAccess::new())
        .route("/", get(hello))
        .merge(authenticated)
}

/// The app's auth: a known bearer token or `401`. The user becomes the gateway's
/// [`CallerKey`], so the CostMeter charges that user's budget.
async fn auth(State(users): State<Arc<Users>>, mut req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(user) = users.lookup(header).cloned() else {
        return (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, "Bearer")],
            Json(json!({ "error": "missing or unknown bearer token" })),
        )
            .into_response();
    };
    req.extensions_mut().insert(CallerKey(user.clone()));
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

async fn hello() -> &'static str {
    "hello from an ordinary axum app; its LLM gateway lives under /llm/v1\n"
}

/// Who you are and what you spent today.
async fn me(
    Extension(User(user)): Extension<User>,
    Extension(budgets): Extension<Budgets>,
) -> Json<serde_json::Value> {
    let window = Window::Day.current_id();
    let spent = budgets.store().committed(&user, &window).await;
    let limit = budgets.for_caller(&user).map(|b| b.limit.usd());
    Json(json!({
        "user": &*user,
        "spent_today_usd": spent.usd(),
        "budget_today_usd": limit,
    }))
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let addr = parse_listen("127.0.0.1:3000")?;
    let (catalog, _demo) = load_catalog().await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    // A SQLite file of this run's own (`RequestLog::open("postgres://…")` for a shared one).
    let db = std::env::temp_dir().join(format!("axum-embed-{}.db", std::process::id()));
    let log = RequestLog::sqlite(&db.to_string_lossy(), LogOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    println!("listening on http://{bound}");
    // The connect info tells the log's API which clients are on loopback.
    let app = app(catalog, &log).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| e.to_string());
    log.flush(std::time::Duration::from_secs(5)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    served
}

// ---------------------------------------------------------------------------------------------
// Start-up

/// The demo providers' catalog, or `examples/gateway.toml` when a provider key is set. The
/// demo providers live as long as the returned guard.
async fn load_catalog() -> Result<(Catalog, Option<DemoProviders>), String> {
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
fn parse_listen(default: &str) -> Result<SocketAddr, String> {
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
