//! PostgreSQL's errors as the library's backend-neutral [`Error`]: lock and statement
//! timeouts and serialization failures become `Busy`, a missing database `NotFound`, a lost
//! connection a line that says the server went away. No message carries the password: the
//! client never puts it in one, and the URL in every context is the displayed one.

use postgres::error::SqlState;

use crate::error::{Error, Result};

/// A client error with the whole story in its message: the client's own `Display` says only
/// "db error" or "error connecting to server", and the server's words are further down.
#[derive(Debug)]
struct ServerError {
    message: String,
    source: postgres::Error,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServerError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The client error as one line: the server's message (and hint), or each cause in turn.
fn describe(source: &postgres::Error) -> String {
    if let Some(db) = source.as_db_error() {
        let mut line = db.message().to_owned();
        for extra in [db.detail(), db.hint()].into_iter().flatten() {
            line.push_str(&format!(" ({extra})"));
        }
        return line;
    }
    let mut line = source.to_string();
    let mut cause = std::error::Error::source(source);
    while let Some(c) = cause {
        let text = c.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = c.source();
    }
    line
}

impl Error {
    /// Wraps a PostgreSQL client error with what the store was doing.
    pub(crate) fn postgres(context: impl Into<String>, source: postgres::Error) -> Self {
        let message = describe(&source);
        let source = ServerError { message, source };
        Error::postgres_described(context.into(), source)
    }

    fn postgres_described(context: String, source: ServerError) -> Self {
        let (source, message) = (source.source, source.message);
        let wrap = |source: postgres::Error| ServerError {
            message: message.clone(),
            source,
        };
        if let Some(code) = source.code() {
            let busy = [
                SqlState::LOCK_NOT_AVAILABLE,
                SqlState::QUERY_CANCELED,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
                SqlState::TOO_MANY_CONNECTIONS,
            ];
            if busy.contains(code) {
                return Error::Busy(format!(
                    "the server gave up while {context} ({message}); nothing was changed — retry, or allow a longer lock timeout"
                ));
            }
            if *code == SqlState::INVALID_CATALOG_NAME {
                return Error::NotFound(format!(
                    "{message} (while {context}); create it first, e.g. `createdb NAME`, or fix the URL"
                ));
            }
            if [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
            ]
            .contains(code)
            {
                return Error::Database {
                    context: format!(
                        "{context} (the server is shutting down or starting up; retry in a moment)"
                    ),
                    source: Box::new(wrap(source)),
                };
            }
            if [
                SqlState::INVALID_PASSWORD,
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ]
            .contains(code)
            {
                return Error::Database {
                    context: format!(
                        "{context} (check the user and password: the URL, PGUSER, PGPASSWORD)"
                    ),
                    source: Box::new(wrap(source)),
                };
            }
        } else if source.is_closed() {
            return Error::Database {
                context: format!(
                    "{context} (the connection to the server was lost; the transaction did not commit unless the server confirmed it — retry)"
                ),
                source: Box::new(wrap(source)),
            };
        }
        Error::Database {
            context,
            source: Box::new(wrap(source)),
        }
    }
}

/// Adds context to a client result: the one way errors leave `postgres`.
pub(crate) trait PgContext<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T> PgContext<T> for std::result::Result<T, postgres::Error> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| Error::postgres(what, e))
    }
}
