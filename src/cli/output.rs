//! Everything the CLI writes: stdout documents and listings, stderr notices, the JSON error
//! document, and the small logger that turns the library's `log` records into stderr lines.
//!
//! Listings have two faces. On a terminal: a header and aligned columns, long cells cut with
//! `…`. Into a pipe or a file: no header, one row a line, fields separated by one tab, and
//! backslash, tab, newline and carriage return inside a field escaped as `\\`, `\t`, `\n`,
//! `\r` — so `cut -f`, `awk -F'\t'` and `while IFS=$'\t' read` work and never meet a broken row.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};

use modstate::{Error, Result};

/// How much the CLI says on stderr about things that went well.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Verbosity {
    /// `--quiet`: errors only.
    Quiet = 0,
    /// Notices and warnings (lock waits, which file was used).
    Normal = 1,
    /// `--verbose`: also which database and why, backend, why `resolve` skipped a file.
    Verbose = 2,
}

static VERBOSITY: AtomicU8 = AtomicU8::new(Verbosity::Normal as u8);

/// Sets the process's verbosity and installs the logger; called once, first thing.
pub fn init(verbosity: Verbosity) {
    VERBOSITY.store(verbosity as u8, Ordering::Relaxed);
    // Only fails if a logger is set already, which would be ours.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(match verbosity {
        Verbosity::Quiet => log::LevelFilter::Off,
        Verbosity::Normal => log::LevelFilter::Warn,
        Verbosity::Verbose => log::LevelFilter::Info,
    });
}

fn verbosity() -> Verbosity {
    match VERBOSITY.load(Ordering::Relaxed) {
        0 => Verbosity::Quiet,
        1 => Verbosity::Normal,
        _ => Verbosity::Verbose,
    }
}

/// A line on stderr about a success (which file was used, what a rewrite changed); silenced
/// by `--quiet`, so cron mails only failures.
pub fn notice(text: &str) {
    if verbosity() >= Verbosity::Normal {
        eprintln!("{}", one_line(text));
    }
}

/// A line on stderr only with `--verbose`.
pub fn detail(text: &str) {
    if verbosity() >= Verbosity::Verbose {
        eprintln!("{}", one_line(text));
    }
}

/// Whether `--quiet` was given: commands whose stdout is a report, not requested data, print
/// nothing then.
pub fn quiet() -> bool {
    verbosity() == Verbosity::Quiet
}

/// The library's records (lock waits, which source served) as plain stderr lines, like
/// cargo's `Blocking waiting for file lock`. Records of other crates (r2d2, rmcp) stay out:
/// they are not written for this tool's users.
struct Logger;

static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("modstate") && metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{}", one_line(&record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

/// An error is one line on stderr. Paths and user text inside a message may hold line breaks;
/// they are shown escaped.
pub fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}

/// The word `--json` names an error's kind with.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Io { .. } => "io",
        Error::Database { .. } => "database",
        Error::NotFound(_) => "not_found",
        Error::Conflict { .. } => "conflict",
        Error::Busy(_) => "busy",
        Error::Invalid(_) => "invalid",
        Error::Unsupported(_) => "unsupported",
        Error::Integrity(_) => "integrity",
        Error::Fenced(_) => "fenced",
        Error::LockLost(_) => "lock_lost",
        Error::Superseded { .. } => "conflict",
        // A kind added to the library later.
        _ => "other",
    }
}

/// Reports a failure: its one line on stderr and, with `--json`, the one document on stdout
/// `{"error": {"exit": N, "kind": "…", "message": "…"}}`. Returns `exit`.
pub fn fail(json: bool, exit: i32, kind: &str, message: &str) -> i32 {
    let message = one_line(message);
    eprintln!("error: {message}");
    if json {
        let doc = serde_json::json!({"error": {"exit": exit, "kind": kind, "message": message}});
        let _ = print_json(&doc);
    }
    exit
}

/// Prints one JSON document and a newline on stdout.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    let mut text = serde_json::to_vec(value)
        .map_err(|e| Error::Invalid(format!("cannot serialize output: {e}")))?;
    text.push(b'\n');
    print_bytes(&text)
}

pub fn print_text(text: &str) -> Result<()> {
    print_bytes(text.as_bytes())
}

/// Writes to stdout; a closed pipe (`| head`) is not worth a panic.
pub fn print_bytes(bytes: &[u8]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Error::io("writing to", "stdout", e)),
    }
}

/// Escapes what would break one-row-a-line, tab-separated output.
pub fn escape_field(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    for c in field.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// Widest a cell is shown on a terminal before it is cut with `…`.
const MAX_CELL_CHARS: usize = 60;

/// A listing: printed aligned with a header on a terminal, as tab-separated rows without a
/// header into a pipe (see the module doc).
pub struct Table {
    headers: &'static [&'static str],
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &'static [&'static str]) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.headers.len());
        self.rows.push(cells);
    }

    /// Prints for wherever stdout goes.
    pub fn print(&self) -> Result<()> {
        print_text(&self.render(std::io::stdout().is_terminal()))
    }

    pub fn render(&self, terminal: bool) -> String {
        if !terminal {
            let mut text = String::new();
            for row in &self.rows {
                let fields: Vec<String> = row.iter().map(|f| escape_field(f)).collect();
                text.push_str(&fields.join("\t"));
                text.push('\n');
            }
            return text;
        }
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| row.iter().map(|c| cut(&escape_field(c))).collect())
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut text = String::new();
        let mut line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                if i + 1 == widths.len() {
                    out.push_str(cell);
                } else {
                    out.push_str(cell);
                    let pad = widths[i] + 2 - cell.chars().count();
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(out.trim_end());
            text.push('\n');
        };
        line(&mut self.headers.iter().copied());
        for row in &cells {
            line(&mut row.iter().map(String::as_str));
        }
        text
    }
}

/// A cell cut to `MAX_CELL_CHARS` with `…`.
fn cut(cell: &str) -> String {
    if cell.chars().count() <= MAX_CELL_CHARS {
        return cell.to_owned();
    }
    let mut out: String = cell.chars().take(MAX_CELL_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new(&["ID", "BODY"]);
        table.row(vec!["1".into(), "a\tb\nc".into()]);
        table.row(vec!["22".into(), "x".repeat(100)]);
        table
    }

    #[test]
    fn piped_rows_have_no_header_and_escape_separators() {
        let text = sample().render(false);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("1\ta\\tb\\nc"));
        assert_eq!(lines.next().map(|l| l.len()), Some(3 + 100));
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn terminal_rows_are_aligned_under_a_header_and_cut() {
        let text = sample().render(true);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "ID  BODY");
        assert_eq!(lines[1], "1   a\\tb\\nc");
        assert!(lines[2].starts_with("22  xxx"));
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), 4 + MAX_CELL_CHARS);
    }
}
