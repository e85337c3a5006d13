//! `modstate serve`: the same MCP server as `modstate mcp`, over Streamable HTTP, for agents
//! on other hosts — with bearer tokens, Host and Origin checks, and limits.
//!
//! rmcp's `transport-streamable-http-server` (the official Rust SDK's implementation, the
//! field's standard) speaks the protocol, both the 2026-07-28 revision (stateless, with
//! `server/discover`) and 2025-11-25 (with `initialize`); it is mounted in axum at `/mcp`,
//! stateless and answering plain JSON, so every request stands alone: a token revoked is
//! refused on the next request, and a drain at SIGTERM has no long-lived streams to wait for.
//!
//! Every request to `/mcp` passes [`guard`] first, in this order, and a refused request never
//! reaches the store:
//! 1. `Host` must name this server (DNS rebinding), `Origin`, when present, must be allowed
//!    (403; rmcp's own Origin check, off by default, is switched on as a second line);
//! 2. the bearer token (401 with `WWW-Authenticate` pointing at the RFC 9728 metadata);
//! 3. the namespace (the `Modstate-Namespace` header, else the token's only namespace, else
//!    `--namespace`) must be one the token reaches (403);
//! 4. the body is read within the size limit (413) and the time limit (408); a tool call that
//!    writes, from a token with scope read, is refused (403 naming the scope).
//!
//! What passes carries an [`Access`] to the handler, which runs the call through a
//! [`Guarded`](modstate::token::Guarded) store: the library enforces the grant again, whatever
//! the arguments say.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use modstate::memory::check_label;
use modstate::token::{Grant, Scope, TokenInfo};
use modstate::{Error, Result, Store};

use super::handler::MemoryServer;
use super::tools;

/// The header a client names its namespace with.
pub const NAMESPACE_HEADER: &str = "modstate-namespace";

/// What `serve` was asked for.
pub struct ServeConfig {
    /// The embedding model for semantic and hybrid search (`--embedder`), if any.
    pub embedder: Option<std::sync::Arc<dyn modstate::embed::Embedder>>,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Refuse requests without a token even on loopback.
    pub require_token: bool,
    /// Origins allowed besides none (`scheme://host[:port]`).
    pub allow_origins: Vec<String>,
    /// Host names this server answers to besides loopback names and the listen address.
    pub allow_hosts: Vec<String>,
    /// The namespace of requests that name none, for tokenless (loopback) use and
    /// many-namespace tokens.
    pub namespace: String,
    /// Plain HTTP on a non-loopback address.
    pub insecure_http: bool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests served at once; more wait up to `request_timeout`, then get 503.
    pub max_concurrent: usize,
    /// How long a client may take to send its request, and a request may wait for a slot.
    pub request_timeout: Duration,
    /// A "created database" notice to print once listening.
    pub created: Option<String>,
    /// The certificate chain and private key (PEM) to serve HTTPS with.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// What the guard found out about a request, for the handler (in the request's extensions).
#[derive(Clone, Debug)]
pub struct Access {
    /// What the caller may reach.
    pub grant: Grant,
    /// The namespace its tool calls work in.
    pub namespace: Arc<str>,
    /// Recorded as the writer of what it writes: the token's name, or `local`.
    pub writer: String,
}

/// Shared by every request.
struct Shared {
    store: Store,
    /// `http` or `https`, for the URLs the server gives out.
    scheme: &'static str,
    require_token: bool,
    hosts: Vec<String>,
    origins: Vec<String>,
    namespace: String,
    max_body_bytes: usize,
    request_timeout: Duration,
    slots: Arc<Semaphore>,
    /// When each token's use was last recorded: at most one write a minute per token.
    touched: Mutex<HashMap<String, Instant>>,
}

/// Serves until SIGTERM or SIGINT, then drains in-flight requests; returns the exit code.
pub fn serve(store: Store, config: ServeConfig, reopen: super::handler::Reopen) -> Result<i32> {
    let loopback = config.listen.ip().is_loopback();
    if !loopback && config.tls.is_none() && !config.insecure_http {
        return Err(Error::Invalid(format!(
            "serving plain HTTP on {} (not loopback) would send tokens in clear text; give --tls-cert and --tls-key, or put a TLS proxy in front and pass --insecure-http",
            config.listen
        )));
    }
    let tls = match &config.tls {
        Some((cert, key)) => Some(super::tls::config(cert, key)?),
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let require_token = config.require_token || !loopback;
    if require_token && store.tokens()?.is_empty() {
        return Err(Error::Invalid(format!(
            "serve on {} needs tokens and the store has none; create one with `modstate token create NAME --namespace NS --scope read|write`",
            config.listen
        )));
    }
    check_label("namespace", &config.namespace)?;
    let mut hosts = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "[::1]".to_owned(),
        host_of_ip(config.listen.ip()),
    ];
    hosts.extend(config.allow_hosts.iter().map(|h| h.to_ascii_lowercase()));
    let origins: Vec<String> = config
        .allow_origins
        .iter()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .collect();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the runtime for", store.path(), e))?;
    let last_handle = store.clone();
    let shared = Arc::new(Shared {
        store: store.clone(),
        scheme,
        require_token,
        hosts,
        origins: origins.clone(),
        namespace: config.namespace.clone(),
        max_body_bytes: config.max_body_bytes,
        request_timeout: config.request_timeout,
        slots: Arc::new(Semaphore::new(config.max_concurrent.max(1))),
        touched: Mutex::new(HashMap::new()),
    });
    let code = runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", config.listen);
                return 1;
            }
        };
        let bound = listener.local_addr().unwrap_or(config.listen);
        let server = MemoryServer::new(store, &config.namespace, reopen)
            .with_embedder(config.embedder.clone());
        // Host checks are ours (they know --allow-host); rmcp checks Origin again.
        let rmcp_config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            .with_sse_keep_alive(None)
            .disable_allowed_hosts()
            .with_allowed_origins(origins)
            .enforce_origin_validation()
            .with_max_request_body_bytes(config.max_body_bytes);
        let cancel = rmcp_config.cancellation_token.clone();
        let mcp = StreamableHttpService::new(
            move || Ok(server.clone()),
            Arc::new(NeverSessionManager::default()),
            rmcp_config,
        );
        let app = Router::new()
            .route_service("/mcp", mcp)
            .layer(middleware::from_fn_with_state(Arc::clone(&shared), guard))
            .route("/healthz", get(healthz))
            .route(
                "/.well-known/oauth-protected-resource",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-protected-resource/mcp",
                get(resource_metadata),
            )
            .with_state(Arc::clone(&shared));
        eprintln!(
            "modstate serve: listening on {scheme}://{bound}/mcp ({}; tokens {})",
            shared.store.path().display(),
            if require_token {
                "required"
            } else {
                "optional on loopback"
            }
        );
        if let Some(created) = &config.created {
            eprintln!("{created}");
        }
        let served = match tls {
            Some(tls) => match super::tls::TlsListener::new(listener, tls) {
                Ok(listener) => run_connections(listener, app, config.request_timeout).await,
                Err(e) => Err(e),
            },
            None => run_connections(listener, app, config.request_timeout).await,
        };
        cancel.cancel();
        match served {
            Ok(()) => {
                eprintln!("modstate serve: stopped; every request in flight was answered");
                0
            }
            Err(e) => {
                eprintln!("error: the HTTP server stopped: {e}");
                1
            }
        }
    });
    // As for stdio: store calls still on the blocking pool finish before the process exits,
    // and the last store handle is dropped outside the runtime.
    drop(runtime);
    drop(last_handle);
    Ok(code)
}

/// Serves HTTP/1.1 connections from `listener` until SIGTERM or SIGINT, then waits for the
/// requests in flight (idle connections close at once).
///
/// A loop of its own rather than `axum::serve`, for one setting axum does not expose: a
/// client must send its request headers within `header_timeout`, else its connection is
/// closed (hyper's header read timeout), so stuck or slow clients do not pile up.
async fn run_connections<L>(
    mut listener: L,
    app: Router,
    header_timeout: Duration,
) -> std::io::Result<()>
where
    L: axum::serve::Listener,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            (io, _peer) = listener.accept() => {
                let service = TowerToHyperService::new(app.clone());
                let connection = builder.serve_connection(TokioIo::new(io), service);
                let watched = graceful.watch(connection);
                tokio::spawn(async move {
                    // A client that goes away or times out ends only its connection.
                    let _ = watched.await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// `127.0.0.1`, or `[::1]` for IPv6, as it appears in a Host header.
fn host_of_ip(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Resolves at SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("modstate serve: cannot watch for SIGTERM; stop it with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("modstate serve: stopping; answering the requests in flight first");
}

/// `GET /healthz`: 200 when the store answers a read, 503 when it does not.
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.memory_generation("")).await {
        Ok(Ok(_)) => (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "unavailable", "error": e.to_string()})),
        )
            .into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The RFC 9728 protected-resource metadata: this resource, bearer tokens in the header, the
/// scopes. No authorization server is named: modstate issues its own tokens
/// (`modstate token create`).
async fn resource_metadata(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let base = base_url(shared.scheme, &headers);
    axum::Json(json!({
        "resource": format!("{base}/mcp"),
        "authorization_servers": [],
        "bearer_methods_supported": ["header"],
        "scopes_supported": ["read", "write"],
        "resource_name": "modstate",
    }))
    .into_response()
}

/// `http://HOST` as the client addressed this server.
fn base_url(scheme: &str, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// An error answer: the status, a JSON body `{"error": message}`, and extra headers.
fn refuse(
    status: StatusCode,
    message: String,
    headers: &[(header::HeaderName, String)],
) -> Response {
    let mut response = (status, axum::Json(json!({"error": message}))).into_response();
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response.headers_mut().insert(name.clone(), value);
        }
    }
    response
}

/// A 401 with the challenge RFC 6750 and RFC 9728 ask for.
fn unauthorized(
    shared: &Shared,
    headers: &HeaderMap,
    message: &str,
    error: Option<&str>,
) -> Response {
    let mut challenge = format!(
        "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
        base_url(shared.scheme, headers)
    );
    if let Some(error) = error {
        challenge.push_str(&format!(", error=\"{error}\""));
    }
    refuse(
        StatusCode::UNAUTHORIZED,
        message.to_owned(),
        &[(header::WWW_AUTHENTICATE, challenge)],
    )
}

/// The checks in front of `/mcp` (see the module documentation).
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let headers = &parts.headers;

    // 1. Host and Origin.
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.to_ascii_lowercase());
    let Some(host) = host else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the request has no Host header".into(),
            &[],
        );
    };
    if !shared
        .hosts
        .iter()
        .any(|allowed| host_matches(&host, allowed))
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {host:?} is not a name of this server; start serve with --allow-host NAME to add it"
            ),
            &[],
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin
            .to_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_ascii_lowercase();
        if !shared.origins.contains(&origin) {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "Origin {origin:?} is not allowed; start serve with --allow-origin {origin} to allow it"
                ),
                &[],
            );
        }
    }

    // 2. The token.
    let token = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            match value.split_once(' ') {
                Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                    Some(token.trim().to_owned())
                }
                _ => {
                    return unauthorized(
                        &shared,
                        headers,
                        "the Authorization header must be `Bearer TOKEN`",
                        Some("invalid_request"),
                    );
                }
            }
        }
    };
    let token: Option<TokenInfo> = match token {
        None if shared.require_token => {
            return unauthorized(
                &shared,
                headers,
                "this server needs a bearer token: send Authorization: Bearer TOKEN (`modstate token create` makes one)",
                None,
            );
        }
        None => None,
        Some(secret) => {
            let store = shared.store.clone();
            match tokio::task::spawn_blocking(move || store.authenticate(&secret)).await {
                Ok(Ok(Some(token))) => Some(token),
                Ok(Ok(None)) => {
                    return unauthorized(
                        &shared,
                        headers,
                        "the bearer token is not valid (unknown or revoked); ask for a new one",
                        Some("invalid_token"),
                    );
                }
                Ok(Err(e)) => {
                    return refuse(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), &[]);
                }
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            }
        }
    };

    // 3. The namespace.
    let named = match headers.get(NAMESPACE_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(name)) => Some(name.to_owned()),
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "the Modstate-Namespace header is not UTF-8 text".into(),
                &[],
            );
        }
    };
    let (grant, writer) = match &token {
        Some(token) => (Grant::of(token), token.name.clone()),
        None => (Grant::all(), "local".to_owned()),
    };
    let namespace = match (named, &token) {
        (Some(name), _) => name,
        (None, Some(token)) if token.namespaces.len() == 1 => token.namespaces[0].clone(),
        (None, _) => shared.namespace.clone(),
    };
    if let Err(e) = check_label("namespace", &namespace) {
        return refuse(StatusCode::BAD_REQUEST, e.to_string(), &[]);
    }
    if !grant.reaches(&namespace) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "token {writer:?} does not reach namespace {namespace:?}; it reaches {}",
                grant.namespaces.as_deref().unwrap_or_default().join(", ")
            ),
            &[],
        );
    }

    // A slot, or a clean 503 once the wait is over.
    let slot = match tokio::time::timeout(
        shared.request_timeout,
        Arc::clone(&shared.slots).acquire_owned(),
    )
    .await
    {
        Ok(Ok(slot)) => slot,
        _ => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; retry shortly".into(),
                &[(header::RETRY_AFTER, "1".into())],
            );
        }
    };

    // 4. The body, within limits; a write from a read-only token stops here.
    let bytes: Bytes = match tokio::time::timeout(
        shared.request_timeout,
        axum::body::to_bytes(body, shared.max_body_bytes),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the {}-byte limit (or was cut off); send smaller requests",
                    shared.max_body_bytes
                ),
                &[],
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time".into(),
                &[],
            );
        }
    };
    if grant.scope == Scope::Read
        && let Some(tool) = writing_tool(&bytes)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "token {writer:?} has scope read; {tool} needs scope write (a token created with --scope write)"
            ),
            &[(
                header::WWW_AUTHENTICATE,
                "Bearer error=\"insufficient_scope\", scope=\"write\"".into(),
            )],
        );
    }
    if let Some(token) = &token {
        touch(&shared, token);
    }
    parts.extensions.insert(Access {
        grant,
        namespace: namespace.into(),
        writer,
    });
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    drop(slot);
    response
}

/// Whether `host` (as in a Host header, maybe with a port) is `allowed` (a name or address,
/// maybe with a port).
fn host_matches(host: &str, allowed: &str) -> bool {
    if host == allowed {
        return true;
    }
    let name = match host.rsplit_once(':') {
        // `[::1]:80` or `name:80`, not the bare `[::1]`.
        Some((name, port)) if !port.contains(']') && port.chars().all(|c| c.is_ascii_digit()) => {
            name
        }
        _ => host,
    };
    name == allowed
}

/// The name of the first tool call in the body (one message or a batch) that writes.
fn writing_tool(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let messages = match value {
        Value::Array(many) => many,
        one => vec![one],
    };
    messages.iter().find_map(|message| {
        if message.get("method")?.as_str()? != "tools/call" {
            return None;
        }
        let name = message.pointer("/params/name")?.as_str()?;
        tools::writes(name).then(|| name.to_owned())
    })
}

/// Records the token's use, at most once a minute, off the request's path.
fn touch(shared: &Arc<Shared>, token: &TokenInfo) {
    {
        let Ok(mut touched) = shared.touched.lock() else {
            return;
        };
        let now = Instant::now();
        match touched.get(&token.name) {
            Some(at) if now.duration_since(*at) < Duration::from_secs(60) => return,
            _ => {
                touched.insert(token.name.clone(), now);
            }
        }
    }
    let store = shared.store.clone();
    let name = token.name.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.touch_token(&name) {
            eprintln!("modstate serve: cannot record the use of token {name:?}: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_with_or_without_a_port() {
        assert!(host_matches("localhost:8080", "localhost"));
        assert!(host_matches("127.0.0.1", "127.0.0.1"));
        assert!(host_matches("[::1]:80", "[::1]"));
        assert!(host_matches("[::1]", "[::1]"));
        assert!(!host_matches("evil.example:80", "localhost"));
        assert!(!host_matches("localhost.evil.example", "localhost"));
    }

    #[test]
    fn only_tool_calls_that_write_are_found() {
        let call = |name: &str| {
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name}})
                .to_string()
        };
        assert_eq!(
            writing_tool(call("add_memory").as_bytes()).as_deref(),
            Some("add_memory")
        );
        assert_eq!(
            writing_tool(call("delete_memory").as_bytes()).as_deref(),
            Some("delete_memory")
        );
        assert_eq!(writing_tool(call("search_memories").as_bytes()), None);
        assert_eq!(writing_tool(b"not json"), None);
        let batch = format!("[{},{}]", call("get_memories"), call("update_memory"));
        assert_eq!(
            writing_tool(batch.as_bytes()).as_deref(),
            Some("update_memory")
        );
    }
}
