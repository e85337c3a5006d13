//! `modstate serve`: MCP over Streamable HTTP (see `crate::mcp::http`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;

use modstate::Result;

use super::{Context, parse_secs};
use crate::mcp::http::ServeConfig;

#[derive(Args)]
pub struct ServeArgs {
    /// Address and port to listen on; port 0 picks a free one (the address in use is printed
    /// on stderr). Any address but loopback needs tokens and --insecure-http.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:8787", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Refuse requests without a bearer token on loopback too.
    #[arg(long)]
    require_token: bool,
    /// Allow browser requests from this origin (scheme://host[:port]); repeat for several.
    /// Without it, any request carrying an Origin header is refused.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Also answer to this Host name (the name clients use for this server); repeat for
    /// several. Loopback names and the listen address are always allowed.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// Namespace of requests that name none (no Modstate-Namespace header, no one-namespace
    /// token).
    #[arg(long, default_value = "")]
    namespace: String,
    /// Serve plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    #[arg(long)]
    insecure_http: bool,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    max_body: usize,
    /// Requests served at once; more wait (up to --request-timeout), then get 503.
    #[arg(long, value_name = "N", default_value_t = 64)]
    max_concurrent: usize,
    /// Seconds a client may take to send its headers, then its body, and a request may wait
    /// for its turn.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "30")]
    request_timeout: f64,
}

pub fn run(ctx: &Context, args: ServeArgs) -> Result<i32> {
    let store = ctx.open()?;
    let reopen = super::mcp::fenced_opener(ctx)?;
    // Said once serve is listening: a refusal to start keeps to its one error line.
    let created = ctx
        .take_created_notice()
        .filter(|_| !super::quiet())
        .map(|created| format!("modstate serve: {created}"));
    crate::mcp::http::serve(
        store,
        ServeConfig {
            embedder: ctx.embedder.shared()?,
            listen: args.listen,
            require_token: args.require_token,
            allow_origins: args.allow_origins,
            allow_hosts: args.allow_hosts,
            namespace: args.namespace,
            insecure_http: args.insecure_http,
            max_body_bytes: args.max_body,
            max_concurrent: args.max_concurrent,
            request_timeout: Duration::from_secs_f64(args.request_timeout),
            created,
            tls: args.tls_cert.zip(args.tls_key),
        },
        reopen,
    )
}

/// `--listen`: an IP address and a port, as the socket is bound (no scheme, no host name, so
/// what is served is never a surprise of name resolution).
fn parse_listen(text: &str) -> std::result::Result<SocketAddr, String> {
    text.parse().map_err(|_| {
        format!(
            "{text:?} is not an address and port; give an IP address and a port such as 127.0.0.1:8787 or [::1]:8787 (no scheme, no host name)"
        )
    })
}
