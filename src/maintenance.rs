//! Looking after a store: counts and sizes, health checks, pruning old artifacts, and
//! rebuilding the file to give freed space back.
//!
//! The rules live here (what a prune removes, what an export line must hold, which temp files
//! are leftovers); the engine's side is the `Maintenance` boundary in `store/backend.rs`,
//! which the SQLite backend implements in `store/sqlite/maintenance.rs`. Nothing
//! here prints; each function returns facts and the front end decides how to say them.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::store::Store;

/// Counts and sizes of one store.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    /// Stored artifacts.
    pub artifacts: u64,
    /// Bytes of their envelopes.
    pub artifact_bytes: u64,
    /// Memories and generation, per namespace (sorted by namespace).
    pub memories: Vec<NamespaceCount>,
    /// Size of the database file.
    pub db_bytes: u64,
    /// Size of its write-ahead log.
    pub wal_bytes: u64,
    /// Pages in the file that hold nothing (given back by a vacuum).
    pub free_pages: u64,
    /// Page size.
    pub page_size: u64,
    /// The artifact cache: exact totals, policy, hits, misses, evictions, collections, pins.
    pub cache: crate::artifact::cache::CacheStats,
    /// Memory history events kept (one per change; bounded by `memory history prune`).
    pub history_events: u64,
    /// Bytes of text those events hold (old and new texts and changed fields).
    pub history_bytes: u64,
}

/// How many memories one namespace holds, and its generation.
#[derive(Clone, Debug, Serialize)]
pub struct NamespaceCount {
    /// The namespace ("" is the default one).
    pub namespace: String,
    /// Memories in it.
    pub memories: u64,
    /// Its memory generation: advances on every write in the namespace.
    pub generation: u64,
}

/// What a vacuum did.
#[derive(Clone, Debug, Serialize)]
pub struct VacuumReport {
    /// The database file's size before.
    pub bytes_before: u64,
    /// Its size after.
    pub bytes_after: u64,
}

/// The outcome of the database's own checks.
#[derive(Clone, Debug, Serialize)]
pub struct IntegrityReport {
    /// `None` when SQLite's integrity check says ok, else its first findings.
    pub integrity_problem: Option<String>,
    /// `None` when the full-text index matches the memory rows, else what is wrong; `Some`
    /// with "skipped…" when the check could not run (a read-only database).
    pub fts_problem: Option<String>,
}

impl Store {
    /// Counts and sizes; reads only.
    pub fn stats(&self) -> Result<Stats> {
        let mut stats = self.maintenance().stats()?;
        stats.cache = self.maintenance().cache_stats(true)?;
        // Exact, from the totals kept in every write transaction.
        stats.artifacts = stats.cache.artifacts;
        stats.artifact_bytes = stats.cache.bytes;
        Ok(stats)
    }

    /// The `-wal` file beside the database; `None` for a server database, whose server looks
    /// after its own log.
    pub fn wal_path(&self) -> Option<PathBuf> {
        self.file().map(|db| suffixed(db, "-wal"))
    }

    /// The engine's own integrity check, and the full-text index checked against the memory
    /// rows. The index check may need write access; where there is none it is reported as
    /// skipped.
    pub fn check_integrity(&self) -> Result<IntegrityReport> {
        self.maintenance().check_integrity()
    }

    /// Rebuilds the database file so the space of removed rows goes back to the file system.
    /// Holds the global lock exclusively (no keyed work runs meanwhile) and the write lock;
    /// readers of other processes keep reading.
    pub fn vacuum(&self) -> Result<VacuumReport> {
        // The file's size; on a server, the space its tables and indexes take.
        let size = || -> Result<u64> {
            match self.file() {
                Some(db) => Ok(file_len(db)),
                None => Ok(self.stats()?.db_bytes),
            }
        };
        let bytes_before = size()?;
        let _global = self.locks().global(crate::lock::Mode::Exclusive)?;
        self.maintenance().vacuum()?;
        Ok(VacuumReport {
            bytes_before,
            bytes_after: size()?,
        })
    }
}

/// A file's length, 0 when it does not exist.
pub fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}

/// The permission bits of a file, when it exists.
pub fn file_mode(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// `path` with `suffix` appended to its file name (`state.db` → `state.db-wal`).
pub fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Temp files in `dir` left by writers that died: snapshot temps
/// (`.modstate-snapshot-<pid>-….tmp`) and atomic-replace temps (`.<name>.tmp-<pid>-…`). A
/// file whose writer is still running is not a leftover.
pub fn leftover_temps(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = temp_pid(name)
            && !crate::atomic::process_alive(pid)
        {
            found.push(entry.path());
        }
    }
    found.sort();
    found
}

/// The writer pid in a temp file's name, if the name is one of ours.
fn temp_pid(name: &str) -> Option<u32> {
    let rest = if let Some(rest) = name.strip_prefix(".modstate-snapshot-") {
        rest
    } else {
        let (_, rest) = name.strip_prefix('.')?.split_once(".tmp-")?;
        rest
    };
    rest.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_give_their_writer_pid() {
        assert_eq!(temp_pid(".modstate-snapshot-42-abc-0.tmp"), Some(42));
        assert_eq!(temp_pid(".state.db.tmp-7-1f2e"), Some(7));
        assert_eq!(temp_pid("state.db"), None);
        assert_eq!(temp_pid(".hidden"), None);
    }
}

// ---------------------------------------------------------------- memory export and import

/// One memory as `memory export` writes it and `memory import` reads it: one JSON object a
/// line, every stored field that is the memory's own (its namespace's generation is the
/// store's, and is not carried).
///
/// Format 2 (issue 27) adds `format`, metadata, tags, expiry, `superseded_by` and the
/// memory's `history`; a line without `format` is format 1 (those fields empty) and still
/// imports. A newer format is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedMemory {
    /// The line format: [`EXPORT_FORMAT`] when written; 1 when absent.
    #[serde(default = "format_one")]
    pub format: u32,
    /// The memory's id (a UUIDv7), kept as it is.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// Its category.
    pub category: String,
    /// The remembered text.
    pub text: String,
    /// RFC 3339 UTC, as stored.
    pub created_at: String,
    /// RFC 3339 UTC, as stored.
    pub updated_at: String,
    /// Its version, as stored.
    pub version: u64,
    /// Its metadata.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// Its tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// When it expires.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The lifetime its expiry was set from.
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Whether reads push its expiry forward.
    #[serde(default)]
    pub refresh_on_read: bool,
    /// The memory that superseded it.
    #[serde(default)]
    pub superseded_by: Option<String>,
    /// Its recorded changes, oldest first.
    #[serde(default)]
    pub history: Vec<crate::memory::MemoryEvent>,
}

/// The event recorded for a memory imported without a history of its own (a format-1 line,
/// or one whose history was pruned): its past was not recorded, so its history starts here.
pub(crate) fn imported_event(m: &ExportedMemory) -> crate::memory::MemoryEvent {
    crate::memory::MemoryEvent {
        memory_id: m.id.clone(),
        namespace: m.namespace.clone(),
        action: "import".into(),
        version: m.version,
        old_text: None,
        new_text: Some(m.text.clone()),
        changes: serde_json::Map::new(),
        actor: String::new(),
        at: crate::time::now_rfc3339(),
    }
}

/// The export line format this binary writes.
pub const EXPORT_FORMAT: u32 = 2;

fn format_one() -> u32 {
    1
}

impl ExportedMemory {
    /// Whether `other` is the same memory, whatever the line format and history it carries.
    pub(crate) fn same_memory(&self, other: &ExportedMemory) -> bool {
        let strip = |m: &ExportedMemory| ExportedMemory {
            format: EXPORT_FORMAT,
            history: Vec::new(),
            ..m.clone()
        };
        strip(self) == strip(other)
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ImportReport {
    /// Memories added.
    pub imported: usize,
    /// Memories already here exactly as in the file.
    pub unchanged: usize,
}

impl Store {
    /// Every memory (or every memory of `namespace`), oldest id first.
    pub fn export_memories(&self, namespace: Option<&str>) -> Result<Vec<ExportedMemory>> {
        self.maintenance().export_memories(namespace)
    }

    /// Imports memories written by [`Store::export_memories`] (JSON Lines): ids, namespaces,
    /// categories, texts, timestamps and versions kept. All or nothing: every line is checked
    /// first, and any error names its line. Idempotent: a memory already here exactly as in
    /// the file is left alone; one here with other content is refused. Each namespace that
    /// gains memories takes a new generation, and the store's counter moves past every
    /// imported version, so no version or generation is handed out twice.
    pub fn import_memories(&self, input: impl std::io::BufRead) -> Result<ImportReport> {
        let memories = self.read_import(input)?;
        self.maintenance().import_memories(&memories)
    }

    /// Reads and checks every line of an import before anything is written.
    fn read_import(
        &self,
        mut input: impl std::io::BufRead,
    ) -> Result<Vec<(usize, ExportedMemory)>> {
        use std::io::{BufRead, Read};
        let max_body = self.options().max_memory_bytes;
        // A JSON escape spells a byte in at most six; the rest of a line is small.
        let max_line = (max_body as u64) * 6 + 16 * 1024;
        let mut out = Vec::new();
        let mut seen = std::collections::HashMap::new();
        let mut line = Vec::new();
        let mut number = 0;
        loop {
            number += 1;
            line.clear();
            (&mut input)
                .take(max_line + 1)
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("reading", "the memories to import", e))?;
            if line.is_empty() {
                break;
            }
            if line.len() as u64 > max_line {
                return Err(Error::Invalid(format!(
                    "line {number} is longer than {max_line} bytes; nothing was imported"
                )));
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let m = parse_exported(&line, max_body).map_err(|why| {
                Error::Invalid(format!("line {number}: {why}; nothing was imported"))
            })?;
            if let Some(first) = seen.insert(m.id.clone(), number) {
                return Err(Error::Invalid(format!(
                    "line {number}: memory {} is also on line {first}; nothing was imported",
                    m.id
                )));
            }
            out.push((number, m));
        }
        Ok(out)
    }
}

/// One import line, checked as a write through the API would be.
fn parse_exported(line: &[u8], max_body: usize) -> std::result::Result<ExportedMemory, String> {
    let m: ExportedMemory = serde_json::from_slice(line).map_err(|e| {
        format!(
            "not a memory as `memory export` writes it ({e}); expected {{\"id\",\"namespace\",\"category\",\"text\",\"created_at\",\"updated_at\",\"version\"}}"
        )
    })?;
    if m.format > EXPORT_FORMAT || m.format == 0 {
        return Err(format!(
            "format {} is not one this modstate reads (1 to {EXPORT_FORMAT}); upgrade modstate",
            m.format
        ));
    }
    crate::memory::check_metadata(&m.metadata).map_err(|e| e.to_string())?;
    if crate::memory::check_tags(&m.tags).map_err(|e| e.to_string())? != m.tags {
        return Err("tags are not sorted and distinct as export writes them".into());
    }
    for stamp in m.expires_at.iter() {
        if humantime::parse_rfc3339(stamp).is_err() || !stamp.ends_with('Z') {
            return Err(format!(
                "expires_at {stamp:?} is not an RFC 3339 UTC time such as 2026-01-01T12:00:00.123456Z"
            ));
        }
    }
    if let Some(by) = &m.superseded_by {
        crate::memory::check_id(by).map_err(|e| e.to_string())?;
    }
    if let Some(event) = m.history.iter().find(|e| e.memory_id != m.id) {
        return Err(format!(
            "its history holds an event of memory {}, not of {}",
            event.memory_id, m.id
        ));
    }
    let id = crate::memory::check_id(&m.id).map_err(|e| e.to_string())?;
    if id != m.id {
        return Err(format!("id {:?} is not in stored form ({id})", m.id));
    }
    crate::memory::check_label("namespace", &m.namespace).map_err(|e| e.to_string())?;
    crate::memory::check_label("category", &m.category).map_err(|e| e.to_string())?;
    crate::memory::check_body(&m.text, max_body).map_err(|e| e.to_string())?;
    for (what, stamp) in [("created_at", &m.created_at), ("updated_at", &m.updated_at)] {
        if humantime::parse_rfc3339(stamp).is_err() || !stamp.ends_with('Z') {
            return Err(format!(
                "{what} {stamp:?} is not an RFC 3339 UTC time such as 2026-01-01T12:00:00.123456Z"
            ));
        }
    }
    if m.updated_at < m.created_at {
        return Err(format!(
            "updated_at {} is before created_at {}",
            m.updated_at, m.created_at
        ));
    }
    if m.version == 0 || i64::try_from(m.version).is_err() {
        return Err(format!(
            "version {} is out of range (1 to 2^63-1)",
            m.version
        ));
    }
    Ok(m)
}
