//! modstate's locks on PostgreSQL. (Being built: see issue 15.)

use std::path::Path;
use std::time::Duration;

use super::pool::Pool;
use crate::error::{Error, Result};
use crate::lock::{KeyedGuard, LockGuard, LockState, Locks, Mode};

fn todo() -> Error {
    Error::Unsupported("locks on PostgreSQL are not built yet".to_owned())
}

/// The locks of one PostgreSQL store.
pub(crate) struct PgLocks {
    #[allow(dead_code)]
    pool: Pool,
    #[allow(dead_code)]
    timeout: Duration,
}

impl PgLocks {
    pub(crate) fn new(pool: Pool, timeout: Duration) -> PgLocks {
        PgLocks { pool, timeout }
    }
}

impl Locks for PgLocks {
    fn write(&self) -> Result<LockGuard> {
        Err(todo())
    }

    fn global(&self, _mode: Mode) -> Result<LockGuard> {
        Err(todo())
    }

    fn keyed(&self, _keys: &[&str], _mode: Mode) -> Result<KeyedGuard> {
        Err(todo())
    }

    fn status(&self) -> Result<Vec<LockState>> {
        Err(todo())
    }

    fn directory(&self) -> Option<&Path> {
        None
    }
}
