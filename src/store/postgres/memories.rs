//! The memories tables on PostgreSQL. (Being built: see issue 15.)

use super::PgBackend;
use crate::error::{Error, Result};
use crate::memory::{Cursor, Expect, Hit, Memory, MemoryFilter, NewMemory, Rows, SearchMode};

fn todo() -> Error {
    Error::Unsupported("memories on PostgreSQL are not built yet".to_owned())
}

impl PgBackend {
    pub(crate) fn add_memories_pg(&self, _memories: Vec<NewMemory>) -> Result<Vec<Memory>> {
        Err(todo())
    }

    pub(crate) fn get_memory_pg(&self, _id: &str) -> Result<Option<Memory>> {
        Err(todo())
    }

    pub(crate) fn list_memories_pg(
        &self,
        _filter: &MemoryFilter,
        _cursor: Option<&Cursor>,
    ) -> Result<Rows<Memory>> {
        Err(todo())
    }

    pub(crate) fn search_memories_pg(
        &self,
        _modes: &[SearchMode],
        _filter: &MemoryFilter,
        _cursor: Option<&Cursor>,
    ) -> Result<(usize, Rows<Hit>)> {
        Err(todo())
    }

    pub(crate) fn update_memory_pg(
        &self,
        _id: &str,
        _body: &str,
        _category: Option<&str>,
        _expect: Expect,
    ) -> Result<Memory> {
        Err(todo())
    }

    pub(crate) fn delete_memory_pg(&self, _id: &str, _expect: Expect) -> Result<u64> {
        Err(todo())
    }

    pub(crate) fn memory_generation_pg(&self, _namespace: &str) -> Result<u64> {
        Err(todo())
    }
}
