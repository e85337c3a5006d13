//! A `postgres://` URL, with the `PG*` environment variables filling what it leaves out, as
//! libpq does (the `postgres` crate reads no environment variable itself).
//!
//! The password is kept only inside the connection settings: [`Target::display`] and every
//! message built from a target leave it out.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

/// How hard the connection insists on TLS, with libpq's meanings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    Prefer,
    /// TLS or no connection; the certificate is not checked (encryption only, as libpq).
    Require,
    /// TLS, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// TLS, a trusted chain, and the certificate must name the host.
    VerifyFull,
}

impl SslMode {
    fn parse(text: &str) -> Result<SslMode> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(Error::Invalid(format!(
                    "sslmode {other:?} is not one of disable, allow, prefer, require, verify-ca, verify-full; fix the database URL or PGSSLMODE"
                )));
            }
        })
    }
}

/// Keepalive probes start after this much silence on an idle connection…
pub(crate) const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// …are repeated at this interval…
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// …and this many unanswered probes drop the connection.
pub(crate) const KEEPALIVE_RETRIES: u32 = 3;
/// Data sent and not acknowledged for this long drops the connection (`TCP_USER_TIMEOUT`).
/// With the keepalives, a peer that vanishes is noticed within about 25 s whether the
/// connection is idle (10 + 3 × 5 s) or busy. The client uses these for its side; every
/// session asks the server to use them for its side too (`pool.rs`), which is what frees the
/// locks of a client host that vanished.
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a connection attempt may take when neither the URL nor PGCONNECT_TIMEOUT says.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// The settings handed to the client, password included.
    pub config: postgres::Config,
    /// TLS policy.
    pub ssl_mode: SslMode,
    /// A PEM file of trusted roots for verify-ca / verify-full (`sslrootcert`, PGSSLROOTCERT).
    pub root_cert: Option<PathBuf>,
    /// The URL without its password: what every message shows.
    pub display: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the config: it holds the password.
        f.debug_struct("Target")
            .field("display", &self.display)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// Reads `url` (a `postgres://` or `postgresql://` URL), filling what it leaves out from the
/// environment through `env` (the process environment, or a table in tests).
pub(crate) fn parse(url: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Target> {
    // The client knows only the lower-case schemes; `POSTGRES://…` would be read as
    // `key=value` settings instead, and its error would quote the URL.
    let lowered;
    let url = match url.split_once("://") {
        Some((scheme, rest)) if scheme.chars().any(|c| c.is_ascii_uppercase()) => {
            lowered = format!("{}://{rest}", scheme.to_ascii_lowercase());
            lowered.as_str()
        }
        _ => url,
    };
    // sslmode and sslrootcert are read here: the client knows fewer sslmodes than libpq and
    // no root certificates.
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept = Vec::new();
    let mut ssl_mode = None;
    let mut root_cert = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => ssl_mode = Some(SslMode::parse(&percent_decode(value)?)?),
            "sslrootcert" => root_cert = Some(PathBuf::from(percent_decode(value)?)),
            _ => kept.push(pair),
        }
    }
    // The client fills in port 5432 for a host named without a port, which would hide that
    // the URL left the port out: PGPORT goes in first.
    let pg_port = match env("PGPORT").filter(|p| !p.is_empty()) {
        Some(port) => Some(port.parse::<u16>().map_err(|_| {
            Error::Invalid(format!("PGPORT {port:?} is not a port number; fix PGPORT"))
        })?),
        None => None,
    };
    let base = match pg_port {
        Some(port) => with_default_port(base, &port.to_string()),
        None => base.to_owned(),
    };
    let rest = if kept.is_empty() {
        base
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let mut config = postgres::Config::from_str(&rest).map_err(|e| {
        let mut why = e.to_string();
        // The cause names the option at fault; one that quotes the URL itself is left out,
        // since the URL may hold a password.
        if let Some(cause) = std::error::Error::source(&e).map(|c| c.to_string())
            && !cause.contains("://")
            && !cause.contains('@')
        {
            why = format!("{why}: {cause}");
        }
        Error::Invalid(format!(
            "the database URL is not a valid PostgreSQL URL ({why}); write postgres://USER@HOST:PORT/DBNAME"
        ))
    })?;

    // What the URL leaves out, from the environment, then libpq's defaults.
    if config.get_hosts().is_empty() {
        let host = env("PGHOST").filter(|h| !h.is_empty()).unwrap_or_else(|| {
            if std::path::Path::new(DEFAULT_SOCKET_DIR).is_dir() {
                DEFAULT_SOCKET_DIR.to_owned()
            } else {
                "localhost".to_owned()
            }
        });
        config.host(&host);
    }
    if let Some(port) = pg_port
        && config.get_ports().is_empty()
    {
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER")
            .filter(|u| !u.is_empty())
            .or_else(os_user)
            .ok_or_else(|| {
                Error::Invalid(
                    "the database URL names no user and none is known; write postgres://USER@HOST/DBNAME or set PGUSER".to_owned(),
                )
            })?;
        config.user(&user);
    }
    if config.get_password().is_none()
        && let Some(password) = env("PGPASSWORD")
    {
        config.password(password);
    }
    if config.get_dbname().is_none() {
        let dbname = env("PGDATABASE")
            .filter(|d| !d.is_empty())
            .or_else(|| config.get_user().map(str::to_owned))
            .unwrap_or_default();
        config.dbname(&dbname);
    }
    let ssl_mode = match ssl_mode {
        Some(mode) => mode,
        None => match env("PGSSLMODE").filter(|m| !m.is_empty()) {
            Some(mode) => SslMode::parse(&mode)?,
            None => SslMode::Prefer,
        },
    };
    if root_cert.is_none() {
        root_cert = env("PGSSLROOTCERT")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
    }
    if config.get_connect_timeout().is_none() {
        let timeout = match env("PGCONNECT_TIMEOUT").filter(|t| !t.is_empty()) {
            Some(t) => Duration::from_secs(t.parse::<u64>().map_err(|_| {
                Error::Invalid(format!(
                    "PGCONNECT_TIMEOUT {t:?} is not a number of seconds; fix PGCONNECT_TIMEOUT"
                ))
            })?),
            None => CONNECT_TIMEOUT,
        };
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name(env("PGAPPNAME").as_deref().unwrap_or("modstate"));
    }
    config
        .keepalives(true)
        .keepalives_idle(KEEPALIVE_IDLE)
        .keepalives_interval(KEEPALIVE_INTERVAL)
        .keepalives_retries(KEEPALIVE_RETRIES)
        .tcp_user_timeout(TCP_USER_TIMEOUT);
    // The client decides plain or TLS from its own mode; the checking is ours (see tls.rs).
    // A Unix socket never carries TLS: the server refuses it there, so `require` would always
    // fail. libpq ignores sslmode for sockets, and so does modstate.
    let all_sockets = config
        .get_hosts()
        .iter()
        .all(|h| matches!(h, postgres::config::Host::Unix(_)));
    config.ssl_mode(match ssl_mode {
        _ if all_sockets => postgres::config::SslMode::Disable,
        SslMode::Disable => postgres::config::SslMode::Disable,
        SslMode::Prefer => postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
            postgres::config::SslMode::Require
        }
    });
    let display = display(&config);
    Ok(Target {
        config,
        ssl_mode,
        root_cert,
        display,
    })
}

/// `base` (a URL without its query) with `:port` added to every host named without one.
fn with_default_port(base: &str, port: &str) -> String {
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let (userinfo, hosts) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    if hosts.is_empty() {
        return base.to_owned();
    }
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|host| {
            let has_port = match host.rfind(']') {
                Some(close) => host[close..].contains(':'),
                None => host.contains(':'),
            };
            if has_port {
                host.to_owned()
            } else {
                format!("{host}:{port}")
            }
        })
        .collect();
    format!("{scheme}://{userinfo}{}{path}", hosts.join(","))
}

/// Where Debian's libpq looks for the server's socket when no host is given.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The URL a user can read and paste back, without the password.
fn display(config: &postgres::Config) -> String {
    let user = config.get_user().unwrap_or("");
    let dbname = config.get_dbname().unwrap_or("");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) if host.contains(':') => {
            format!("postgres://{user}@[{host}]:{port}/{dbname}")
        }
        Some(postgres::config::Host::Tcp(host)) => {
            format!("postgres://{user}@{host}:{port}/{dbname}")
        }
        Some(postgres::config::Host::Unix(dir)) => format!(
            "postgres://{user}@/{dbname}?host={}&port={port}",
            dir.display()
        ),
        None => format!("postgres://{user}@/{dbname}"),
    }
}

/// The user this process runs as, libpq's default user name.
fn os_user() -> Option<String> {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied
            // out at once, and nothing else in this process calls getpwuid concurrently at open.
            unsafe {
                let pw = libc::getpwuid(libc::geteuid());
                if pw.is_null() || (*pw).pw_name.is_null() {
                    return None;
                }
                Some(
                    std::ffi::CStr::from_ptr((*pw).pw_name)
                        .to_string_lossy()
                        .into_owned(),
                )
            }
        })
}

fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).unwrap_or("");
            let byte = u8::from_str_radix(hex, 16).map_err(|_| {
                Error::Invalid(format!(
                    "the database URL has a bad %-escape near {:?}; fix the URL",
                    text.get(i..(i + 3).min(text.len())).unwrap_or("%")
                ))
            })?;
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::Invalid("the database URL is not UTF-8 once decoded".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::{SslMode, parse};

    fn env(table: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |key| {
            table
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_url_wins_and_the_environment_fills_gaps() {
        let t = parse(
            "postgres://alice:s3cret@db.example:6543/cache?sslmode=require",
            &env(&[("PGUSER", "bob"), ("PGPASSWORD", "other"), ("PGPORT", "1")]),
        )
        .unwrap();
        assert_eq!(t.config.get_user(), Some("alice"));
        assert_eq!(t.config.get_password(), Some(&b"s3cret"[..]));
        assert_eq!(t.config.get_ports(), &[6543]);
        assert_eq!(t.ssl_mode, SslMode::Require);
        assert_eq!(t.display, "postgres://alice@db.example:6543/cache");

        let t = parse(
            "postgresql:///",
            &env(&[
                ("PGHOST", "/tmp/sock"),
                ("PGPORT", "5439"),
                ("PGUSER", "bob"),
                ("PGPASSWORD", "pw"),
                ("PGDATABASE", "mem"),
                ("PGSSLMODE", "disable"),
            ]),
        )
        .unwrap();
        assert_eq!(t.config.get_user(), Some("bob"));
        assert_eq!(t.config.get_password(), Some(&b"pw"[..]));
        assert_eq!(t.config.get_dbname(), Some("mem"));
        assert_eq!(t.ssl_mode, SslMode::Disable);
        assert_eq!(t.display, "postgres://bob@/mem?host=/tmp/sock&port=5439");
    }

    #[test]
    fn an_upper_case_scheme_is_read_as_a_url() {
        let t = parse("POSTGRES://u:pw@h/db?application_name=x", &env(&[])).unwrap();
        assert_eq!(t.config.get_user(), Some("u"));
        assert_eq!(t.display, "postgres://u@h:5432/db");
    }

    #[test]
    fn the_password_is_never_shown() {
        let t = parse("postgres://u:hunter2@h/d", &env(&[])).unwrap();
        assert!(!t.display.contains("hunter2"));
        assert!(!format!("{t:?}").contains("hunter2"));
    }

    #[test]
    fn bad_settings_are_refused_with_what_to_fix() {
        let e = parse("postgres://u@h/d?sslmode=sometimes", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("sslmode"), "{e}");
        let e = parse("postgres://u@h/d", &env(&[("PGPORT", "x")])).unwrap_err();
        assert!(e.to_string().contains("PGPORT"), "{e}");
        let e = parse("postgres://u@h:notaport/d", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("not a valid PostgreSQL URL"), "{e}");
        let t = parse("postgres://u@h/d", &env(&[("PGPORT", "6000")])).unwrap();
        assert_eq!(t.config.get_ports(), &[6000]);
        let t = parse("postgres://u@h:7000/d", &env(&[("PGPORT", "6000")])).unwrap();
        assert_eq!(t.config.get_ports(), &[7000]);
    }
}
