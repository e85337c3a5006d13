//! A few connections kept for reuse.
//!
//! Not r2d2: r2d2 retries a failing connect until its timeout and then reports only that it
//! timed out, so a wrong password or a stopped server would take the whole timeout and lose
//! the server's message. Here a connection is opened when one is needed and none is idle
//! (nothing is opened in advance: ten CLI processes must not take a hundred of the server's
//! connections), its error is reported at once, and at most `read_pool_size` idle
//! connections are kept.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres::{Client, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::errors::PgContext;
use super::tls;
use super::url::{KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_RETRIES, TCP_USER_TIMEOUT, Target};
use crate::error::Result;
use crate::store::Options;

/// The connections of one store; cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    target: Target,
    tls: MakeRustlsConnect,
    idle: Mutex<Vec<Session>>,
    max_idle: usize,
}

/// A connection and the statements prepared on it: a prepared statement runs in one round
/// trip, where an unprepared one takes two (parse, then execute).
struct Session {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// When it went back to the pool.
    idle_since: Instant,
}

/// A connection idle longer than this is checked (one round trip) before it is handed out:
/// a sync client learns that the server dropped it (a restart) only when it next talks to it,
/// and a long-lived process such as `modstate mcp` would fail its next calls otherwise.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);
/// How long that check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Pool {
    /// A pool for `target`; opens nothing yet.
    pub(crate) fn new(mut target: Target, options: &Options) -> Result<Pool> {
        let ours = session_settings(options);
        let server_options = match target.config.get_options() {
            Some(given) if !given.is_empty() => format!("{given} {ours}"),
            _ => ours,
        };
        target.config.options(&server_options);
        let tls = tls::connector(&target)?;
        Ok(Pool {
            inner: Arc::new(Inner {
                target,
                tls,
                idle: Mutex::new(Vec::new()),
                max_idle: options.read_pool_size.max(1) as usize,
            }),
        })
    }

    /// The URL without its password.
    pub(crate) fn display(&self) -> &str {
        &self.inner.target.display
    }

    /// An idle connection, or a new one.
    pub(crate) fn get(&self) -> Result<Conn<'_>> {
        let reused = {
            let mut idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let mut found = None;
            while let Some(session) = idle.pop() {
                if !session.client.is_closed() {
                    found = Some(session);
                    break;
                }
            }
            found
        };
        let reused = match reused {
            Some(mut session) if session.idle_since.elapsed() >= CHECK_AFTER_IDLE => session
                .client
                .is_valid(CHECK_TIMEOUT)
                .is_ok()
                .then_some(session),
            other => other,
        };
        let session = match reused {
            Some(session) => session,
            None => Session {
                client: self.connect()?,
                statements: HashMap::new(),
                idle_since: Instant::now(),
            },
        };
        Ok(Conn {
            session: Some(session),
            pool: self,
        })
    }

    /// A new connection.
    fn connect(&self) -> Result<Client> {
        self.inner
            .target
            .config
            .connect(self.inner.tls.clone())
            .context(&format!("connecting to {}", self.display()))
    }

    /// A new connection that is never pooled, made before `deadline`: for a lock, which must
    /// live on a session of its own (session locks survive ROLLBACK and would go back to the
    /// pool still held), and whose wait, connecting included, ends at the lock timeout.
    pub(crate) fn connect_by(&self, deadline: Instant) -> Result<Client> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut config = self.inner.target.config.clone();
        let timeout = config
            .get_connect_timeout()
            .map_or(left, |t| (*t).min(left));
        // At least a moment: a connect timeout of zero means none at all.
        config.connect_timeout(timeout.max(Duration::from_millis(100)));
        config
            .connect(self.inner.tls.clone())
            .context(&format!("connecting to {}", self.display()))
    }

    fn give_back(&self, mut session: Session) {
        if session.client.is_closed() {
            return;
        }
        session.idle_since = Instant::now();
        let mut idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < self.inner.max_idle {
            idle.push(session);
        }
    }
}

/// A pooled connection; goes back to the pool when dropped.
pub(crate) struct Conn<'a> {
    session: Option<Session>,
    pool: &'a Pool,
}

impl Conn<'_> {
    fn session(&mut self) -> &mut Session {
        self.session
            .as_mut()
            .expect("a pooled connection is present until dropped")
    }

    /// `sql` prepared on this connection, once per connection: for the statements every
    /// command runs (artifact get and put).
    pub(crate) fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        let session = self.session();
        if let Some(statement) = session.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = session
            .client
            .prepare(sql)
            .context("preparing a statement")?;
        session.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl Deref for Conn<'_> {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self
            .session
            .as_ref()
            .expect("a pooled connection is present until dropped")
            .client
    }
}

impl DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.session().client
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.pool.give_back(session);
        }
    }
}

/// The server settings every session of this store starts with (the startup packet's
/// `options`, as `PGOPTIONS` would give them):
/// * row and table lock waits end at the lock timeout, as a modstate lock wait does;
/// * the server probes an idle connection as the client does (see `url.rs`), so a client host
///   that vanishes loses its session — and the locks it held — after about 25 s instead of
///   the kernel's two hours. The client's own keepalives only tell the client that the server
///   went away; these are what free a vanished holder's locks. The server ignores them on a
///   Unix socket.
fn session_settings(options: &Options) -> String {
    format!(
        "-c lock_timeout={} -c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} -c tcp_user_timeout={}",
        millis(options.lock_timeout),
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
        TCP_USER_TIMEOUT.as_millis(),
    )
}

/// Milliseconds for a server setting: at least 1 (0 would mean "no timeout").
pub(crate) fn millis(duration: Duration) -> u128 {
    duration.as_millis().max(1)
}

#[cfg(test)]
mod tests {
    use super::session_settings;
    use crate::store::Options;
    use std::time::Duration;

    #[test]
    fn every_session_asks_the_server_to_probe_it_and_to_bound_lock_waits() {
        let options = Options {
            lock_timeout: Duration::from_millis(1500),
            ..Options::default()
        };
        assert_eq!(
            session_settings(&options),
            "-c lock_timeout=1500 -c tcp_keepalives_idle=10 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 -c tcp_user_timeout=25000"
        );
    }
}
