//! The bad-input table: for every CLI command, rows of bad input, each with the exit code
//! modstate must answer (DESIGN.md, `cli::exit_code`), and the promises every row checks:
//!
//! * no panic (exit 101, "panicked" on stderr) and no death by signal;
//! * an error is ONE line on stderr (a success prints at most one);
//! * the database is unchanged: a digest of every row of every table (and the schema and
//!   user_version), read through a read-only connection on the file itself — no copy;
//! * every other file in the workspace is unchanged (bytes, mode, kind, symlink target) and
//!   nothing new appears — no temp file left behind, no path escaped — except what a row
//!   names in `changes` and then checks itself.
//!
//! Every row runs in a fresh copy of a template workspace, with the workspace as the current
//! directory, so row arguments are plain relative paths. The default database is
//! `state/state.db` holding two artifacts; `dagger.lock` is a real sample
//! (`fixtures/dagger-lock/dang-comments.dagger.lock`).
//!
//! Symlinks, as decided here and asserted by the rows:
//! * reading a user file through a symlink follows it (`check`, `import`, `lockfile get`);
//! * writing a user file (`artifact export`, lockfile writes) goes through `atomic.rs`, which
//!   renames a fresh temp file over the *path*: the symlink itself is replaced by a regular
//!   file, atomically, and whatever it pointed to is left untouched (never written through).
//!
//! Exit codes where DESIGN.md leaves room: a missing input file, a directory or a dangling
//! symlink where a file is expected is an I/O failure (1) — "not found" (3) is for absent keys
//! and for artifact files a loader cannot use (`artifact check`); clap's own refusals
//! (non-UTF-8 argv, missing or extra arguments) are usage errors (2). Keys, namespaces and
//! operations with `..` or `/` are opaque strings: accepted, and never a path.
//!
//! To add a command group (`memory …`, `snapshot …`): write `fn memory_rows() -> Vec<Row>`
//! with `Row::new("memory add", "why it is bad", [args…], exit)` rows, add it to `GROUPS`, and
//! add a three-line `#[test]` calling `check_group`. `every_cli_command_has_rows` fails until
//! each command the binary lists in `--help` has at least one row.

use crate::common::BIN;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest as _, Sha256};

/// A row that runs longer than this has hung; it is killed and fails.
const ROW_DEADLINE: Duration = Duration::from_secs(120);
/// The database every row gets unless it names another with `.db(…)`.
const DB: &str = "state/state.db";
/// The digest `fixtures/moduletypes/valid.json` is for.
const VALID_FIXTURE_DIGEST: &str =
    "sha256:721e3d1485011d4fe4bb939e608c6036d91442db94818655bd6ee65f29af63f6";

/// Makes the rows of one command group.
type Rows = fn() -> Vec<Row>;

/// The command groups and their rows. Add new groups here.
const GROUPS: &[(&str, Rows)] = &[
    ("init", init_rows),
    ("artifact", artifact_rows),
    ("lock", lock_rows),
    ("lockfile", lockfile_rows),
    ("memory", memory_rows),
    ("snapshot", snapshot_rows),
    ("mcp", mcp_rows),
    ("maintenance", maintenance_rows),
    ("serve", serve_rows),
    ("token", token_rows),
    ("hybrid", hybrid_rows),
];

#[test]
fn hybrid_bad_input() {
    check_group("hybrid");
}

#[test]
fn serve_and_token_bad_input() {
    check_group("serve");
    check_group("token");
}

#[test]
fn init_bad_input() {
    check_group("init");
}

#[test]
fn artifact_bad_input() {
    check_group("artifact");
}

#[test]
fn lock_bad_input() {
    check_group("lock");
}

#[test]
fn lockfile_bad_input() {
    check_group("lockfile");
}

#[test]
fn memory_bad_input() {
    check_group("memory");
}

#[test]
fn snapshot_bad_input() {
    check_group("snapshot");
}

#[test]
fn mcp_bad_input() {
    check_group("mcp");
}

#[test]
fn maintenance_bad_input() {
    check_group("maintenance");
}

// ---------------------------------------------------------------------------------------------
// The rows.

fn init_rows() -> Vec<Row> {
    let mut rows = global_option_rows("init", &["init"]);
    rows.push(Row::new("init", "an extra argument", ["init", "extra"], 2));
    rows
}

/// Bad global options and bad databases, for a command that opens the store.
fn global_option_rows(command: &'static str, args: &[&str]) -> Vec<Row> {
    let with = |before: &[&str]| -> Vec<String> {
        before.iter().chain(args).map(|s| (*s).to_owned()).collect()
    };
    vec![
        Row::new(
            command,
            "--lock-timeout nan",
            with(&["--lock-timeout", "nan"]),
            2,
        ),
        Row::new(
            command,
            "--lock-timeout -1",
            with(&["--lock-timeout=-1"]),
            2,
        ),
        Row::new(
            command,
            "--lock-timeout 1e9",
            with(&["--lock-timeout", "1e9"]),
            2,
        ),
        Row::new(
            command,
            "--lock-timeout words",
            with(&["--lock-timeout", "soon"]),
            2,
        ),
        Row::new(
            command,
            "--synchronous off",
            with(&["--synchronous", "off"]),
            2,
        ),
        Row::new(command, "database path is a directory", args, 6).db("dir"),
        Row::new(
            command,
            "database path is a symlink to a directory",
            args,
            6,
        )
        .db("link-to-dir")
        .setup(|root| symlink("dir", root.join("link-to-dir")).unwrap()),
        Row::new(command, "database is not a SQLite file", args, 7).db("junk.db"),
        Row::new(command, "database is a truncated SQLite file", args, 7)
            .db("truncated.db")
            .setup(|root| {
                let bytes = fs::read(root.join(DB)).unwrap();
                fs::write(root.join("truncated.db"), &bytes[..bytes.len() / 2]).unwrap();
            }),
        Row::new(command, "database has a newer schema", args, 6)
            .db("newer.db")
            .setup(|root| {
                fs::copy(root.join(DB), root.join("newer.db")).unwrap();
                let conn = Connection::open(root.join("newer.db")).unwrap();
                conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
                conn.pragma_update(None, "user_version", 99).unwrap();
            }),
        Row::new(command, "database's parent is a regular file", args, 1)
            .db("envelope.json/state.db"),
    ]
}

/// Digests that must be refused (exit 6) wherever a digest is taken, as `(why, digest)`.
fn bad_digests() -> Vec<(&'static str, String)> {
    let hex = "ab".repeat(32);
    vec![
        ("upper-case hex", format!("sha256:{}", hex.to_uppercase())),
        ("short hex", format!("sha256:{}", &hex[..63])),
        ("long hex", format!("sha256:{hex}0")),
        ("md5: algorithm", format!("md5:{}", &hex[..32])),
        ("empty digest", String::new()),
        ("bare hex", hex.clone()),
        ("prefix only", "sha256:".to_owned()),
        ("non-hex digit", format!("sha256:{}g", &hex[..63])),
        ("surrounding space", format!(" sha256:{hex}")),
        ("path traversal", "sha256:../../../../etc/passwd".to_owned()),
    ]
}

/// One row per bad digest for `command`; `args` builds the arguments around the digest.
fn bad_digest_rows(command: &'static str, args: impl Fn(&str) -> Vec<String>) -> Vec<Row> {
    let mut rows: Vec<Row> = bad_digests()
        .into_iter()
        .map(|(why, digest)| Row::new(command, why, args(&digest), 6))
        .collect();
    // argv can carry any bytes but NUL; clap refuses non-UTF-8 where it wants a string.
    let marker = "sha256:MARKER";
    let with_marker: Vec<OsString> = args(marker)
        .into_iter()
        .map(|arg| {
            if arg == marker {
                OsStr::from_bytes(b"sha256:\xff\xfe").to_owned()
            } else {
                OsString::from(arg)
            }
        })
        .collect();
    rows.push(Row::new(command, "digest is not UTF-8", with_marker, 2));
    rows
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

fn artifact_rows() -> Vec<Row> {
    [
        artifact_put_rows(),
        artifact_put_many_rows(),
        artifact_get_rm_rows(),
        artifact_ls_rows(),
        artifact_import_rows(),
        artifact_export_rows(),
        artifact_check_rows(),
        artifact_resolve_rows(),
        artifact_prune_rows(),
        artifact_cache_rows(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// `artifact put`.
fn artifact_put_rows() -> Vec<Row> {
    let limit = modstate::Options::default().max_artifact_bytes;
    let absent = digest_of(99);
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact put", |d| {
        strings(&["artifact", "put", d, "envelope.json"])
    }));
    let put = |why: &str, body: &[u8]| {
        Row::new("artifact put", why, ["artifact", "put", &absent, "-"], 6).stdin(body)
    };
    let envelope = envelope(7);
    rows.extend([
        put("empty stdin", b""),
        put("truncated JSON", &envelope.as_bytes()[..envelope.len() - 3]),
        put(
            "malformed JSON",
            b"{\"type\": \"Module\", \"version\": 1,, }",
        ),
        put("a JSON array", b"[1,2,3]"),
        put("type is a number", br#"{"type":1,"version":1,"state":{}}"#),
        put(
            "version is a string",
            br#"{"type":"Module","version":"1","state":{}}"#,
        ),
        put(
            "version is a fraction",
            br#"{"type":"Module","version":1.5,"state":{}}"#,
        ),
        put(
            "state is an array",
            br#"{"type":"Module","version":1,"state":[]}"#,
        ),
        put("no state", br#"{"type":"Module","version":1}"#),
        put(
            "invalid UTF-8",
            b"{\"type\":\"Mod\xffule\",\"version\":1,\"state\":{}}",
        ),
        put(
            "raw NUL in a string",
            b"{\"type\":\"Mod\0ule\",\"version\":1,\"state\":{}}",
        ),
        put("NUL after the document", format!("{envelope}\0").as_bytes()),
        put("two documents", format!("{envelope}{envelope}").as_bytes()),
        put("limit + 1 bytes", &padded_envelope(limit + 1)),
        Row::new(
            "artifact put",
            "input file missing",
            ["artifact", "put", &absent, "nope.json"],
            1,
        ),
        Row::new(
            "artifact put",
            "input file is a directory",
            ["artifact", "put", &absent, "dir"],
            1,
        ),
        Row::new(
            "artifact put",
            "input is a symlink to a directory",
            ["artifact", "put", &absent, "link"],
            1,
        )
        .setup(|root| symlink("dir", root.join("link")).unwrap()),
        Row::new(
            "artifact put",
            "input is a dangling symlink",
            ["artifact", "put", &absent, "link"],
            1,
        )
        .setup(|root| symlink("nowhere.json", root.join("link")).unwrap()),
        Row::new(
            "artifact put",
            "input is /dev/null",
            ["artifact", "put", &absent, "/dev/null"],
            6,
        ),
        Row::new(
            "artifact put",
            "input is /dev/zero",
            ["artifact", "put", &absent, "/dev/zero"],
            6,
        ),
        Row::new(
            "artifact put",
            "an extra argument",
            ["artifact", "put", &absent, "-", "x"],
            2,
        ),
    ]);
    rows
}

/// `artifact put-many`.
fn artifact_put_many_rows() -> Vec<Row> {
    let limit = modstate::Options::default().max_artifact_bytes;
    let absent = digest_of(99);
    let envelope = envelope(7);
    let mut rows = Vec::new();
    let line =
        |digest: &str, state: &str| format!("{{\"digest\":\"{digest}\",\"state\":{state}}}\n");
    let good_line = line(&absent, &envelope);
    let many = |why: &str, body: Vec<u8>| {
        Row::new("artifact put-many", why, ["artifact", "put-many", "-"], 6).stdin(body)
    };
    let after_good = |bad: &str| format!("{good_line}{bad}").into_bytes();
    let mut huge_line = format!("{{\"digest\":\"{absent}\",\"state\":").into_bytes();
    huge_line.extend(padded_envelope(limit + 1));
    huge_line.extend(b"}\n");
    rows.extend([
        many(
            "truncated line",
            after_good(&good_line[..good_line.len() / 2]),
        ),
        many("not an object", after_good("[1]\n")),
        many(
            "digest is a number",
            after_good(&line("1", &envelope).replace("\"1\"", "1")),
        ),
        many(
            "upper-case digest",
            after_good(&line(&absent.to_uppercase(), &envelope)),
        ),
        many(
            "md5 digest",
            after_good(&line(&format!("md5:{}", "a".repeat(32)), &envelope)),
        ),
        many("empty digest", after_good(&line("", &envelope))),
        many("state is a string", after_good(&line(&absent, "\"x\""))),
        many(
            "state has a wrong-typed version",
            after_good(&line(
                &absent,
                r#"{"type":"Module","version":"1","state":{}}"#,
            )),
        ),
        many(
            "no state",
            after_good(&format!("{{\"digest\":\"{absent}\"}}\n")),
        ),
        many(
            "invalid UTF-8",
            [good_line.as_bytes(), b"{\"digest\":\"\xff\"}\n"].concat(),
        ),
        many("raw NUL", [good_line.as_bytes(), b"\0\n"].concat()),
        many(
            "envelope of limit + 1 bytes",
            [good_line.as_bytes(), &huge_line].concat(),
        ),
        Row::new(
            "artifact put-many",
            "directory missing",
            ["artifact", "put-many", "nope"],
            1,
        ),
        Row::new(
            "artifact put-many",
            "source is a regular file",
            ["artifact", "put-many", "valid.json"],
            1,
        ),
        Row::new(
            "artifact put-many",
            "a malformed file among good ones",
            ["artifact", "put-many", "batch"],
            6,
        )
        .setup(|root| batch_dir(root, "malformed.json")),
        Row::new(
            "artifact put-many",
            "an unsupported file among good ones",
            ["artifact", "put-many", "batch"],
            6,
        )
        .setup(|root| batch_dir(root, "unsupported-artifact-version.json")),
        Row::new(
            "artifact put-many",
            "an invalid UTF-8 file among good ones",
            ["artifact", "put-many", "batch"],
            6,
        )
        .setup(|root| batch_dir(root, "invalid-utf8.json")),
    ]);
    rows
}

/// `artifact get` and `artifact rm`.
fn artifact_get_rm_rows() -> Vec<Row> {
    let absent = digest_of(99);
    let stored = digest_of(1);
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact get", |d| {
        strings(&["artifact", "get", d])
    }));
    rows.push(Row::new(
        "artifact get",
        "absent digest",
        ["artifact", "get", &absent],
        3,
    ));
    rows.push(Row::new(
        "artifact get",
        "an extra argument",
        ["artifact", "get", &stored, "x"],
        2,
    ));
    rows.extend(bad_digest_rows("artifact rm", |d| {
        strings(&["artifact", "rm", d])
    }));
    rows.push(
        Row::new(
            "artifact rm",
            "the write lock file is a FIFO",
            ["artifact", "rm", &stored],
            1,
        )
        .setup(|root| plant_fifo(&root.join("state/state.db.locks/write"))),
    );
    rows.push(Row::new(
        "artifact rm",
        "absent digest",
        ["artifact", "rm", &absent],
        3,
    ));
    rows
}

/// `artifact ls`: its only input is the database.
fn artifact_ls_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(global_option_rows("artifact ls", &["artifact", "ls"]));
    rows.push(Row::new(
        "artifact ls",
        "an extra argument",
        ["artifact", "ls", "x"],
        2,
    ));
    rows
}

/// `artifact import`.
fn artifact_import_rows() -> Vec<Row> {
    let limit = modstate::Options::default().max_artifact_bytes;
    let mut rows = Vec::new();
    let import = |why: &str, file: &str, exit: i32| {
        Row::new("artifact import", why, ["artifact", "import", file], exit)
    };
    rows.extend([
        import("file missing", "nope.json", 1),
        import("file is a directory", "dir", 1),
        import("malformed file", "malformed.json", 6),
        import("truncated file", "truncated.json", 6),
        import("empty file", "empty.json", 6),
        import("artifactVersion is a string", "wrong-types.json", 6),
        import("invalid UTF-8", "invalid-utf8.json", 6),
        import("raw NUL byte", "nul.json", 6),
        import(
            "unsupported artifact version",
            "unsupported-artifact-version.json",
            6,
        ),
        import("unsupported state type", "unsupported-state-type.json", 6),
        import(
            "unsupported state version",
            "unsupported-state-version.json",
            6,
        ),
        import("envelope of limit + 1 bytes", "huge.json", 6).setup(move |root| {
            fs::write(
                root.join("huge.json"),
                artifact_file_with(&padded_envelope(limit + 1)),
            )
            .unwrap()
        }),
        import("endless input (/dev/zero)", "/dev/zero", 6),
        import("a path with a newline", "new\nline.json", 1),
        import("dangling symlink", "link.json", 1)
            .setup(|root| symlink("nowhere.json", root.join("link.json")).unwrap()),
        import("symlink to a directory", "link.json", 1)
            .setup(|root| symlink("dir", root.join("link.json")).unwrap()),
    ]);
    rows
}

/// `artifact export`.
fn artifact_export_rows() -> Vec<Row> {
    let absent = digest_of(99);
    let stored = digest_of(1);
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact export", |d| {
        strings(&["artifact", "export", d, "out.json"])
    }));
    let export = |why: &str, digest: &str, file: &str, exit: i32| {
        Row::new(
            "artifact export",
            why,
            ["artifact", "export", digest, file],
            exit,
        )
    };
    rows.extend([
        export(
            "absent digest leaves the target alone",
            &absent,
            "valid.json",
            3,
        ),
        export("target is a directory", &stored, "dir", 1),
        export("target's directory is missing", &stored, "nope/out.json", 1),
        export(
            "target's parent is a file",
            &stored,
            "envelope.json/out.json",
            1,
        ),
        export("target is an empty path", &stored, "", 2),
        export("target names no file", &stored, "nope/..", 6),
        export("target is a symlink to a directory", &stored, "link", 1)
            .setup(|root| symlink("dir", root.join("link")).unwrap()),
        // A write replaces the symlink itself, atomically; its target is never written.
        export(
            "target is a symlink to a file: replaced, target untouched",
            &stored,
            "link.json",
            0,
        )
        .setup(|root| symlink("valid.json", root.join("link.json")).unwrap())
        .changes(["link.json"])
        .check(|root, _| {
            expect_regular(root, "link.json", mode_of(root, "valid.json"))?;
            let written = fs::read_to_string(root.join("link.json")).unwrap();
            if !written.contains(&digest_of(1)) {
                return Err(format!("link.json does not hold the export: {written}"));
            }
            Ok(())
        }),
        export(
            "target is a dangling symlink: replaced, nothing created through it",
            &stored,
            "link.json",
            0,
        )
        .setup(|root| symlink("created-through-link.json", root.join("link.json")).unwrap())
        .changes(["link.json"])
        .check(|root, _| expect_regular(root, "link.json", 0o600)),
    ]);
    rows
}

/// `artifact check`: answers, not errors; never writes.
fn artifact_check_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact check", |d| {
        strings(&["artifact", "check", "valid.json", "--digest", d])
    }));
    let check = |why: &str, file: &str, exit: i32| {
        Row::new(
            "artifact check",
            why,
            ["artifact", "check", file, "--digest", VALID_FIXTURE_DIGEST],
            exit,
        )
    };
    rows.extend([
        check("file missing", "nope.json", 3),
        check("malformed file", "malformed.json", 3),
        check("truncated file", "truncated.json", 3),
        check("stale file", "stale.json", 3),
        check("invalid UTF-8", "invalid-utf8.json", 3),
        check("raw NUL byte", "nul.json", 3),
        check(
            "unsupported artifact version",
            "unsupported-artifact-version.json",
            3,
        ),
        check("unsupported state type", "unsupported-state-type.json", 3),
        check(
            "unsupported state version",
            "unsupported-state-version.json",
            3,
        ),
        check("endless input (/dev/zero)", "/dev/zero", 3),
        check("file is a directory", "dir", 1),
        check("a symlink is followed for a read", "link.json", 0)
            .setup(|root| symlink("valid.json", root.join("link.json")).unwrap()),
        check("a path with a newline", "new\nline.json", 3),
        Row::new(
            "artifact check",
            "no --digest",
            ["artifact", "check", "valid.json"],
            2,
        ),
    ]);
    rows
}

/// `artifact resolve`: a bad computation stores nothing.
fn artifact_resolve_rows() -> Vec<Row> {
    let limit = modstate::Options::default().max_artifact_bytes;
    let absent = digest_of(99);
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact resolve", |d| {
        strings(&["artifact", "resolve", d, "--", "cat", "envelope.json"])
    }));
    let resolve = |why: &str, command: &[&str], exit: i32| {
        let mut args = strings(&["artifact", "resolve", &absent, "--"]);
        args.extend(strings(command));
        Row::new("artifact resolve", why, args, exit)
    };
    rows.extend([
        resolve(
            "computation prints malformed JSON",
            &["cat", "truncated.json"],
            6,
        ),
        resolve(
            "computation prints an artifact file, not an envelope",
            &["cat", "valid.json"],
            6,
        ),
        resolve(
            "computation prints invalid UTF-8",
            &["cat", "invalid-utf8.json"],
            6,
        ),
        resolve("computation prints nothing", &["true"], 6),
        resolve(
            "computation prints limit + 1 bytes",
            &["cat", "huge-envelope.json"],
            6,
        )
        .setup(move |root| {
            fs::write(root.join("huge-envelope.json"), padded_envelope(limit + 1)).unwrap()
        }),
        resolve("computation prints forever", &["cat", "/dev/zero"], 6),
        resolve(
            "computation fails",
            &["sh", "-c", "cat envelope.json; exit 3"],
            1,
        ),
        resolve("computation does not exist", &["./no-such-program"], 127),
        Row::new(
            "artifact resolve",
            "--file is a directory",
            [
                "artifact",
                "resolve",
                &absent,
                "--file",
                "dir",
                "--",
                "cat",
                "envelope.json",
            ],
            1,
        ),
        Row::new(
            "artifact resolve",
            "no command: lookup only, and the digest is absent",
            ["artifact", "resolve", &absent, "--file", "valid.json"],
            3,
        ),
    ]);
    rows
}

/// `batch/` holding valid.json and one bad file, so the bad one must reject the whole batch.
/// `memory …` of issue 27: bad TTLs, expiry times, metadata, tags, filters and history
/// arguments; nothing may be written.
fn memory_model_rows() -> Vec<Row> {
    const ABSENT: &str = "0190aaaa-0000-7000-8000-000000000000";
    let big = format!(r#"{{"k": "{}"}}"#, "x".repeat(17 * 1024));
    vec![
        Row::new(
            "memory add",
            "a TTL that is not a duration",
            ["memory", "add", "--ttl", "soon", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "a zero TTL",
            ["memory", "add", "--ttl", "0s", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "a TTL over 100 years",
            ["memory", "add", "--ttl", "200y", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "an expiry that is not RFC 3339",
            ["memory", "add", "--expires-at", "tomorrow", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "an expiry in the past (the memory would be invisible at once)",
            ["memory", "add", "--expires-at", "2020-01-01T00:00:00Z", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "both --ttl and --expires-at",
            [
                "memory",
                "add",
                "--ttl",
                "1h",
                "--expires-at",
                "2030-01-01T00:00:00Z",
                "x",
            ],
            2,
        ),
        Row::new(
            "memory add",
            "refresh-on-read without a TTL",
            ["memory", "add", "--refresh-on-read", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "metadata that is not JSON",
            ["memory", "add", "--metadata", "{", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "metadata that is not an object",
            ["memory", "add", "--metadata", "[1,2]", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "a metadata key starting with $",
            ["memory", "add", "--metadata", r#"{"$eq": 1}"#, "x"],
            6,
        ),
        Row::new(
            "memory add",
            "metadata over 16 KiB",
            ["memory", "add", "--metadata", big.as_str(), "x"],
            6,
        ),
        Row::new(
            "memory add",
            "an empty tag",
            ["memory", "add", "--tag", "", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "a tag with a newline",
            ["memory", "add", "--tag", "a\nb", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "superseding a malformed id",
            ["memory", "add", "--supersedes", "nonsense", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "superseding an absent memory",
            ["memory", "add", "--supersedes", ABSENT, "x"],
            3,
        ),
        Row::new(
            "memory update",
            "nothing to change",
            ["memory", "update", ABSENT],
            6,
        ),
        Row::new(
            "memory update",
            "a TTL that is not a duration",
            ["memory", "update", ABSENT, "--ttl", "7 fortnights"],
            6,
        ),
        Row::new(
            "memory ls",
            "a filter that is not JSON",
            ["memory", "ls", "--where", "{"],
            6,
        ),
        Row::new(
            "memory ls",
            "a filter that is not an object",
            ["memory", "ls", "--where", "[1]"],
            6,
        ),
        Row::new(
            "memory ls",
            "an unknown operator",
            ["memory", "ls", "--where", r#"{"a": {"$regex": "x"}}"#],
            6,
        ),
        Row::new(
            "memory ls",
            "an unknown combinator",
            ["memory", "ls", "--where", r#"{"$xor": []}"#],
            6,
        ),
        Row::new(
            "memory ls",
            "$in without a list",
            ["memory", "ls", "--where", r#"{"a": {"$in": 1}}"#],
            6,
        ),
        Row::new(
            "memory ls",
            "an ordered comparison of tags",
            ["memory", "ls", "--where", r#"{"tags": {"$gt": "a"}}"#],
            6,
        ),
        Row::new(
            "memory ls",
            "a time that is not RFC 3339",
            [
                "memory",
                "ls",
                "--where",
                r#"{"created_at": {"$gt": "monday"}}"#,
            ],
            6,
        ),
        Row::new(
            "memory search",
            "$or of an object",
            ["memory", "search", "x", "--where", r#"{"$or": {"a": 1}}"#],
            6,
        ),
        Row::new(
            "memory search",
            "$exists of a string",
            [
                "memory",
                "search",
                "x",
                "--where",
                r#"{"a": {"$exists": "yes"}}"#,
            ],
            6,
        ),
        Row::new(
            "memory history",
            "a malformed id",
            ["memory", "history", "nonsense"],
            6,
        ),
        Row::new(
            "memory history",
            "an id with no history",
            ["memory", "history", ABSENT],
            3,
        ),
        Row::new("memory history", "no id", ["memory", "history"], 6),
        Row::new(
            "memory history",
            "an age that is not a duration",
            ["memory", "history", "prune", "--older-than", "old"],
            6,
        ),
        Row::new(
            "memory history",
            "no age",
            ["memory", "history", "prune"],
            2,
        ),
        Row::new(
            "memory sweep",
            "an extra argument",
            ["memory", "sweep", "now"],
            2,
        ),
        Row::new(
            "memory namespaces",
            "--prefix without a value",
            ["memory", "namespaces", "--prefix"],
            2,
        ),
        Row::new(
            "memory default-ttl",
            "a TTL that is not a duration",
            ["memory", "default-ttl", "soon"],
            6,
        ),
        Row::new(
            "memory default-ttl",
            "an instant instead of a lifetime",
            ["memory", "default-ttl", "2030-01-01T00:00:00Z"],
            6,
        ),
    ]
}

/// `memory …`: bad text, labels, ids and numbers; nothing may be written.
fn memory_rows() -> Vec<Row> {
    const ABSENT: &str = "0190aaaa-0000-7000-8000-000000000000";
    let long_label = "n".repeat(257);
    let mut rows = global_option_rows("memory add", &["memory", "add", "a note"]);
    rows.extend([
        Row::new("memory add", "empty text", ["memory", "add", ""], 6),
        Row::new("memory add", "empty stdin", ["memory", "add", "-"], 6),
        Row::new("memory add", "text over 64 KiB", ["memory", "add", "-"], 6).stdin(vec![
            b'x';
            64 * 1024
                + 1
        ]),
        Row::new(
            "memory add",
            "invalid UTF-8 on stdin",
            ["memory", "add", "-"],
            6,
        )
        .stdin(b"note \xff\xfe".to_vec()),
        Row::new("memory add", "NUL byte on stdin", ["memory", "add", "-"], 6)
            .stdin(b"note \0 with a NUL".to_vec()),
        Row::new(
            "memory add",
            "namespace over 256 bytes",
            ["memory", "add", "--namespace", &long_label, "x"],
            6,
        ),
        Row::new(
            "memory add",
            "category with a control character",
            ["memory", "add", "--category", "a\tb", "x"],
            6,
        ),
        Row::new("memory add", "no text", ["memory", "add"], 2),
        Row::new("memory get", "absent id", ["memory", "get", ABSENT], 3),
        Row::new(
            "memory get",
            "an id like a path",
            ["memory", "get", "../../x"],
            6,
        ),
        Row::new(
            "memory get",
            "a malformed id",
            ["memory", "get", "nonsense"],
            6,
        ),
        Row::new(
            "memory ls",
            "a malformed cursor",
            ["memory", "ls", "--cursor", "nonsense"],
            6,
        ),
        Row::new(
            "memory search",
            "a malformed cursor",
            ["memory", "search", "x", "--cursor", "nonsense"],
            6,
        ),
        Row::new(
            "memory update",
            "a malformed id",
            ["memory", "update", "nonsense", "x"],
            6,
        ),
        Row::new(
            "memory rm",
            "a malformed id",
            ["memory", "rm", "nonsense"],
            6,
        ),
        Row::new("memory get", "no id", ["memory", "get"], 2),
        Row::new(
            "memory ls",
            "a negative limit",
            ["memory", "ls", "--limit", "-1"],
            2,
        ),
        Row::new(
            "memory ls",
            "a limit that is not a number",
            ["memory", "ls", "--limit", "ten"],
            2,
        ),
        Row::new(
            "memory search",
            "a limit that is not a number",
            ["memory", "search", "x", "--limit", "x"],
            2,
        ),
        Row::new(
            "memory search",
            "query syntax is plain text, never an error",
            ["memory", "search", "\"*^(NEAR AND OR NOT -x %_:"],
            0,
        ),
        Row::new(
            "memory update",
            "absent id",
            ["memory", "update", ABSENT, "new text"],
            3,
        ),
        Row::new(
            "memory update",
            "empty text",
            ["memory", "update", ABSENT, ""],
            6,
        ),
        Row::new(
            "memory update",
            "a generation that is not a number",
            [
                "memory",
                "update",
                ABSENT,
                "x",
                "--expect-generation",
                "abc",
            ],
            2,
        ),
        Row::new(
            "memory update",
            "an absent id, whatever the generation (the guard is per namespace)",
            ["memory", "update", ABSENT, "x", "--expect-generation", "41"],
            3,
        ),
        Row::new("memory rm", "absent id", ["memory", "rm", ABSENT], 3),
        Row::new(
            "memory rm",
            "a negative generation",
            ["memory", "rm", ABSENT, "--expect-generation", "-1"],
            2,
        ),
        Row::new(
            "memory generation",
            "an extra argument",
            ["memory", "generation", "x"],
            2,
        ),
    ]);
    rows.extend(memory_transfer_rows());
    rows.extend(memory_model_rows());
    rows
}

/// `snapshot …`: unreadable, corrupt or impossible snapshots; the database is never touched.
fn snapshot_rows() -> Vec<Row> {
    vec![
        Row::new(
            "snapshot verify",
            "not a database",
            ["snapshot", "verify", "junk.db"],
            7,
        ),
        Row::new(
            "snapshot verify",
            "a missing file",
            ["snapshot", "verify", "absent.db"],
            1,
        ),
        Row::new(
            "snapshot verify",
            "a directory",
            ["snapshot", "verify", "dir"],
            1,
        ),
        Row::new(
            "snapshot verify",
            "an artifact file",
            ["snapshot", "verify", "valid.json"],
            7,
        ),
        Row::new("snapshot verify", "no path", ["snapshot", "verify"], 2),
        Row::new(
            "snapshot restore",
            "not a database",
            ["snapshot", "restore", "junk.db"],
            7,
        ),
        Row::new(
            "snapshot restore",
            "a missing file",
            ["snapshot", "restore", "absent.db"],
            1,
        ),
        Row::new(
            "snapshot restore",
            "a directory",
            ["snapshot", "restore", "dir"],
            1,
        ),
        Row::new(
            "snapshot export",
            "onto the live database",
            ["snapshot", "export", DB],
            6,
        ),
        Row::new(
            "snapshot export",
            "--keep 0",
            ["snapshot", "export", "dir", "--keep", "0"],
            2,
        ),
        Row::new(
            "snapshot export",
            "--keep not a number",
            ["snapshot", "export", "dir", "--keep", "x"],
            2,
        ),
        Row::new("snapshot export", "no path", ["snapshot", "export"], 2),
        // A URL is never taken as a local path (no `gs:` directory appears).
        Row::new(
            "snapshot export",
            "an unsupported URL scheme",
            ["snapshot", "export", "gs://backups/team/"],
            6,
        ),
        Row::new(
            "snapshot export",
            "an s3 URL with an invalid bucket name",
            ["snapshot", "export", "s3://Bad_Bucket/team/"],
            6,
        ),
        Row::new(
            "snapshot export",
            "an s3 URL with an empty key segment",
            ["snapshot", "export", "s3://backups/a//b/"],
            6,
        ),
        Row::new(
            "snapshot export",
            "an s3 key that is neither a prefix nor a .db file",
            ["snapshot", "export", "s3://backups/team"],
            6,
        ),
        Row::new(
            "snapshot verify",
            "an unsupported URL scheme",
            ["snapshot", "verify", "https://example.com/x.db"],
            6,
        ),
        Row::new(
            "snapshot restore",
            "an unsupported URL scheme",
            ["snapshot", "restore", "ftp://example.com/x.db"],
            6,
        ),
        Row::new(
            "snapshot ls",
            "an unsupported URL scheme",
            ["snapshot", "ls", "gs://backups/"],
            6,
        ),
        Row::new(
            "snapshot ls",
            "a missing directory",
            ["snapshot", "ls", "absent"],
            1,
        ),
        Row::new("snapshot ls", "no path", ["snapshot", "ls"], 2),
        // --verify: one bad snapshot fails the listing (exit 7, one line naming it); the
        // listing itself still prints.
        Row::new(
            "snapshot ls",
            "--verify over a snapshot that is not a database",
            ["snapshot", "ls", "snaps", "--verify"],
            7,
        )
        .setup(|root| {
            fs::create_dir(root.join("snaps")).unwrap();
            fs::write(
                root.join("snaps/state-20260101T000000.000Z.db"),
                b"not a database\n".repeat(300),
            )
            .unwrap();
        })
        .check(|_, out| {
            let stdout = String::from_utf8_lossy(&out.stdout);
            if stdout.contains("state-20260101T000000.000Z.db") {
                Ok(())
            } else {
                Err(format!("the listing is missing: {stdout:?}"))
            }
        }),
        Row::new(
            "snapshot restore",
            "--keep-pre-restore 0",
            ["snapshot", "restore", "junk.db", "--keep-pre-restore", "0"],
            2,
        ),
        Row::new(
            "snapshot restore",
            "--keep-pre-restore with --no-safety-snapshot",
            [
                "snapshot",
                "restore",
                "junk.db",
                "--keep-pre-restore",
                "2",
                "--no-safety-snapshot",
            ],
            2,
        ),
    ]
}

/// `artifact prune`: it needs a rule, and the rule must read.
fn artifact_prune_rows() -> Vec<Row> {
    let mut rows = global_option_rows(
        "artifact prune",
        &["artifact", "prune", "--keep-newest", "1"],
    );
    rows.extend([
        Row::new("artifact prune", "no rule", ["artifact", "prune"], 2),
        Row::new(
            "artifact prune",
            "a duration that is not one",
            ["artifact", "prune", "--older-than", "soon"],
            2,
        ),
        Row::new(
            "artifact prune",
            "a negative count",
            ["artifact", "prune", "--keep-newest=-1"],
            2,
        ),
        Row::new(
            "artifact prune",
            "an age before 1970",
            ["artifact", "prune", "--older-than", "100000years"],
            6,
        ),
        Row::new(
            "artifact prune",
            "no database",
            ["artifact", "prune", "--keep-newest", "1"],
            3,
        )
        .db("missing/state.db"),
    ]);
    rows
}

/// `artifact policy`, `pin` and `unpin`: sizes and durations must read; only a stored
/// artifact can be pinned; `--min-free` and a size together with `--clear` are refused.
fn artifact_cache_rows() -> Vec<Row> {
    let absent = digest_of(99);
    let mut rows = Vec::new();
    rows.extend(bad_digest_rows("artifact pin", |d| {
        strings(&["artifact", "pin", d])
    }));
    rows.extend(bad_digest_rows("artifact unpin", |d| {
        strings(&["artifact", "unpin", d])
    }));
    rows.extend([
        Row::new(
            "artifact policy",
            "a size that is not one",
            ["artifact", "policy", "--max-size", "big"],
            2,
        ),
        Row::new(
            "artifact policy",
            "an unknown size unit",
            ["artifact", "policy", "--max-size", "5XB"],
            2,
        ),
        Row::new(
            "artifact policy",
            "a rule and --clear",
            ["artifact", "policy", "--max-size", "5MB", "--clear"],
            2,
        ),
        Row::new(
            "artifact policy",
            "a touch interval that is not one",
            ["artifact", "policy", "--touch-interval", "often"],
            2,
        ),
        Row::new(
            "artifact prune",
            "a size too large",
            ["artifact", "prune", "--max-size", "99999999999TB"],
            2,
        ),
        Row::new(
            "artifact pin",
            "not stored",
            ["artifact", "pin", &absent],
            3,
        ),
        Row::new(
            "artifact pin",
            "a lease that is not a duration",
            ["artifact", "pin", &absent, "--for", "ever"],
            2,
        ),
        Row::new(
            "artifact unpin",
            "not pinned",
            ["artifact", "unpin", &absent],
            3,
        ),
        Row::new("artifact policy", "no database", ["artifact", "policy"], 3)
            .db("missing/state.db"),
    ]);
    rows
}

/// `memory export` and `memory import`: an import is all or nothing, and names its bad line.
fn memory_transfer_rows() -> Vec<Row> {
    const ID: &str = "0190aaaa-0000-7000-8000-000000000001";
    let line = |id: &str, text: &str, version: u64| {
        format!(
            "{{\"id\":\"{id}\",\"namespace\":\"a\",\"category\":\"\",\"text\":\"{text}\",\"created_at\":\"2026-01-01T00:00:00.000001Z\",\"updated_at\":\"2026-01-01T00:00:00.000001Z\",\"version\":{version}}}\n"
        )
    };
    let good = line(ID, "kept", 3);
    let import = |why: &'static str, stdin: String| {
        Row::new("memory import", why, ["memory", "import", "-"], 6).stdin(stdin)
    };
    vec![
        Row::new(
            "memory export",
            "an extra argument",
            ["memory", "export", "x"],
            2,
        ),
        Row::new("memory export", "no database", ["memory", "export"], 3).db("missing/state.db"),
        Row::new(
            "memory export",
            "a namespace with a newline",
            ["memory", "export", "--namespace", "a\nb"],
            6,
        ),
        Row::new("memory import", "no file", ["memory", "import"], 2),
        Row::new(
            "memory import",
            "a missing file",
            ["memory", "import", "nope.jsonl"],
            1,
        ),
        Row::new(
            "memory import",
            "a directory",
            ["memory", "import", "dir"],
            1,
        ),
        import("not JSON", format!("{good}{{oops\n")),
        import(
            "an unknown field",
            good.replace("\"version\"", "\"extra\":1,\"version\""),
        ),
        import("a missing field", good.replace(",\"version\":3", "")),
        import("a malformed id", line("not-an-id", "x", 3)),
        import("an empty text", line(ID, "", 3)),
        import("version 0", line(ID, "x", 0)),
        import("a version past i64", line(ID, "x", u64::MAX)),
        import(
            "a time that is not RFC 3339",
            good.replace("2026-01-01T00:00:00.000001Z", "yesterday"),
        ),
        import(
            "the same id twice",
            format!("{good}{}", line(ID, "other", 4)),
        ),
        import("a NUL in the text", line(ID, "a\\u0000b", 3)),
    ]
}

/// `doctor`, `stats`, `vacuum`, `completions`, `man`.
fn maintenance_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    rows.extend(global_option_rows("stats", &["stats"]));
    rows.extend(global_option_rows("vacuum", &["vacuum"]));
    rows.extend([
        Row::new("stats", "an extra argument", ["stats", "x"], 2),
        Row::new("stats", "no database", ["stats"], 3).db("missing/state.db"),
        Row::new("vacuum", "an extra argument", ["vacuum", "x"], 2),
        Row::new("vacuum", "no database", ["vacuum"], 3).db("missing/state.db"),
        Row::new("doctor", "an extra argument", ["doctor", "x"], 2),
        Row::new(
            "doctor",
            "--lock-timeout words",
            ["doctor", "--lock-timeout", "soon"],
            2,
        ),
        // doctor reports a bad database as a failed check: exit 1, one line on stderr.
        Row::new("doctor", "no database", ["doctor"], 1).db("missing/state.db"),
        Row::new("doctor", "database is not a SQLite file", ["doctor"], 1).db("junk.db"),
        Row::new("doctor", "database path is a directory", ["doctor"], 1).db("dir"),
        Row::new("completions", "no shell", ["completions"], 2),
        Row::new(
            "completions",
            "an unknown shell",
            ["completions", "tcsh"],
            2,
        ),
        Row::new("man", "an extra argument", ["man", "x"], 2),
    ]);
    rows
}

/// `mcp`: bad options; protocol-level bad input is tested in tests/mcp.rs.
fn mcp_rows() -> Vec<Row> {
    vec![
        Row::new(
            "mcp",
            "namespace over 256 bytes",
            ["mcp", "--namespace", &"n".repeat(257)],
            6,
        ),
        Row::new("mcp", "an extra argument", ["mcp", "extra"], 2),
    ]
}

/// `serve` refuses before it listens (so no row can hang), `token` before it writes.
fn serve_rows() -> Vec<Row> {
    vec![
        Row::new(
            "serve",
            "listen address without a port",
            ["serve", "--listen", "127.0.0.1"],
            2,
        ),
        Row::new(
            "serve",
            "a URL where an address and port were expected",
            ["serve", "--listen", "http://127.0.0.1:8787"],
            2,
        ),
        Row::new(
            "serve",
            "plain HTTP off loopback without --insecure-http",
            ["serve", "--listen", "0.0.0.0:0"],
            6,
        ),
        Row::new(
            "serve",
            "off loopback with no tokens",
            ["serve", "--listen", "0.0.0.0:0", "--insecure-http"],
            6,
        ),
        Row::new(
            "serve",
            "--require-token with no tokens",
            ["serve", "--listen", "127.0.0.1:0", "--require-token"],
            6,
        ),
        Row::new(
            "serve",
            "namespace over 256 bytes",
            [
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--namespace",
                &"n".repeat(257),
            ],
            6,
        ),
    ]
}

/// Embedder settings and search modes (issue 25): refused before anything is written or asked.
fn hybrid_rows() -> Vec<Row> {
    let embedder = "http://127.0.0.1:9/v1";
    vec![
        Row::new(
            "memory embed",
            "no embedder configured",
            ["memory", "embed"],
            6,
        ),
        Row::new(
            "memory embed",
            "a batch of zero",
            ["--embedder", embedder, "memory", "embed", "--batch", "0"],
            6,
        ),
        Row::new(
            "memory embed",
            "a batch that is not a number",
            ["--embedder", embedder, "memory", "embed", "--batch", "many"],
            2,
        ),
        Row::new(
            "memory search",
            "semantic search without an embedder",
            ["memory", "search", "x", "--mode", "semantic"],
            6,
        ),
        Row::new(
            "memory search",
            "an unknown mode",
            ["memory", "search", "x", "--mode", "fuzzy"],
            2,
        ),
        Row::new(
            "memory add",
            "an embedder URL that is not http",
            ["--embedder", "ftp://host/v1", "memory", "add", "x"],
            6,
        ),
        Row::new(
            "memory add",
            "an unknown embedder setting",
            [
                "--embedder",
                "http://127.0.0.1:9/v1?colour=red",
                "memory",
                "add",
                "x",
            ],
            6,
        ),
        Row::new(
            "memory add",
            "an embedder timeout that is not a duration",
            [
                "--embedder",
                "http://127.0.0.1:9/v1?timeout=soon",
                "memory",
                "add",
                "x",
            ],
            6,
        ),
    ]
}

fn token_rows() -> Vec<Row> {
    let create = |why: &str, extra: &[&str], exit: i32| {
        let mut args = vec!["token", "create", "t"];
        args.extend_from_slice(extra);
        Row::new("token create", why, args, exit)
    };
    vec![
        create("no namespace", &["--scope", "read"], 2),
        create("no scope", &["--namespace", "a"], 2),
        create(
            "unknown scope",
            &["--namespace", "a", "--scope", "admin"],
            2,
        ),
        create(
            "namespace over 256 bytes",
            &["--namespace", &"n".repeat(257), "--scope", "read"],
            6,
        ),
        create(
            "token file missing",
            &[
                "--namespace",
                "a",
                "--scope",
                "read",
                "--from-file",
                "/nonexistent/token",
            ],
            1,
        ),
        Row::new("token ls", "an extra argument", ["token", "ls", "extra"], 2),
        Row::new(
            "token revoke",
            "no such token",
            ["token", "revoke", "nobody"],
            3,
        ),
    ]
}

fn batch_dir(root: &Path, bad: &str) {
    fs::create_dir(root.join("batch")).unwrap();
    fs::copy(root.join("valid.json"), root.join("batch/a-valid.json")).unwrap();
    fs::copy(root.join(bad), root.join("batch/b-bad.json")).unwrap();
}

fn lock_rows() -> Vec<Row> {
    let run = |why: &str, key: &str, exit: i32| {
        Row::new("lock run", why, ["lock", "run", key, "--", "true"], exit)
    };
    // Keys are opaque strings hashed into file names, so path-like keys are fine (exit 0)
    // and can never reach outside the lock directory.
    let confined = |root: &Path, _: &Output| lock_dir_holds_only_lock_files(root);
    vec![
        run("key with ..", "../../escape", 0).check(confined),
        run("absolute-path key", "/tmp/escape", 0).check(confined),
        run("key with / and ..", "a/../../../b", 0).check(confined),
        run("key over 1 KiB", &"k".repeat(1025), 6).check(confined),
        Row::new(
            "lock run",
            "key is not UTF-8",
            [
                OsStr::new("lock"),
                OsStr::new("run"),
                OsStr::from_bytes(b"\xff"),
                OsStr::new("--"),
                OsStr::new("true"),
            ],
            2,
        ),
        Row::new(
            "lock run",
            "command does not exist",
            ["lock", "run", "k", "--", "./no-such-program"],
            127,
        ),
        Row::new(
            "lock run",
            "--timeout -1",
            ["lock", "run", "k", "--timeout=-1", "--", "true"],
            2,
        ),
        Row::new(
            "lock run",
            "--timeout nan",
            ["lock", "run", "k", "--timeout", "nan", "--", "true"],
            2,
        ),
        Row::new(
            "lock run",
            "--shared with --global",
            ["lock", "run", "--global", "--shared", "--", "true"],
            2,
        ),
        Row::new(
            "lock run",
            "key with --global",
            ["lock", "run", "k", "--global", "--", "true"],
            2,
        ),
        Row::new(
            "lock run",
            "lock directory is a regular file",
            ["lock", "run", "k", "--", "true"],
            1,
        )
        .setup(plant_lock_dir_file),
        Row::new(
            "lock status",
            "an extra argument",
            ["lock", "status", "x"],
            2,
        ),
        Row::new(
            "lock status",
            "lock directory is a regular file",
            ["lock", "status"],
            1,
        )
        .setup(plant_lock_dir_file),
        Row::new(
            "lock status",
            "a planted symlink in the lock directory is not followed",
            ["lock", "status"],
            0,
        )
        .setup(|root| {
            fs::create_dir(root.join("state/state.db.locks")).unwrap();
            symlink(
                "../../valid.json",
                root.join(format!("state/state.db.locks/key-{}", "0".repeat(64))),
            )
            .unwrap();
        }),
        Row::new(
            "lock status",
            "a planted directory in the lock directory is skipped",
            ["lock", "status"],
            0,
        )
        .setup(|root| {
            fs::create_dir_all(root.join(format!("state/state.db.locks/key-{}", "0".repeat(64))))
                .unwrap();
        }),
        // A FIFO in a lock file's place must not hang anyone reading holder records.
        Row::new(
            "lock status",
            "a planted FIFO in the lock directory is skipped",
            ["lock", "status"],
            0,
        )
        .setup(|root| plant_fifo(&root.join(key_lock_file("k")))),
        Row::new(
            "lock run",
            "the key's lock file is a FIFO",
            ["lock", "run", "k", "--", "true"],
            1,
        )
        .setup(|root| plant_fifo(&root.join(key_lock_file("k")))),
        Row::new(
            "lock run",
            "the global lock file is a FIFO",
            ["lock", "run", "k", "--", "true"],
            1,
        )
        .setup(|root| plant_fifo(&root.join("state/state.db.locks/global"))),
    ]
}

/// `state/state.db.locks/key-<sha256 of key>`, where the lock for `key` lives.
fn key_lock_file(key: &str) -> String {
    format!(
        "state/state.db.locks/key-{}",
        hex(&Sha256::digest(key.as_bytes()))
    )
}

/// Makes a FIFO at `path`, creating its directory.
fn plant_fifo(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
}

/// Replaces `state/state.db.locks` with a regular file.
fn plant_lock_dir_file(root: &Path) {
    let dir = root.join("state/state.db.locks");
    let _ = fs::remove_dir_all(&dir);
    fs::write(dir, b"not a directory").unwrap();
}

fn lockfile_rows() -> Vec<Row> {
    let mut rows = Vec::new();
    // Inputs that are not a JSON array of scalars and arrays, for get, set and rm.
    let bad_inputs: &[(&str, &str)] = &[
        ("inputs truncated", r#"["docker.io/library/alpine""#),
        ("inputs empty", ""),
        ("inputs a string", r#""alpine""#),
        ("inputs an object", r#"{"image":"alpine"}"#),
        ("inputs nest an object", r#"["alpine",[["tag",{"v":1}]]]"#),
        ("inputs not JSON", "alpine"),
        ("inputs followed by junk", r#"["alpine"] x"#),
    ];
    for (verb, extra) in [("get", None), ("set", Some(r#""v""#)), ("rm", None)] {
        let command = match verb {
            "get" => "lockfile get",
            "set" => "lockfile set",
            _ => "lockfile rm",
        };
        for (why, inputs) in bad_inputs {
            let mut args = strings(&["lockfile", verb, "", "oci-sha", inputs]);
            args.extend(extra.map(str::to_owned));
            rows.push(Row::new(command, why, args, 6));
        }
        // Path-like namespaces and operations are just strings: absent, not escaping.
        let mut args = strings(&["lockfile", verb, "../../etc", "a/../../b", r#"["x"]"#]);
        args.extend(extra.map(str::to_owned));
        if verb != "set" {
            rows.push(Row::new(
                command,
                "path-like namespace and operation",
                args,
                3,
            ));
        }
        // A file this binary cannot read is an error, and a write never replaces it.
        for (why, file, exit) in bad_lockfiles() {
            let mut args = strings(&["lockfile", "--file", file, verb, "", "g", r#"["x"]"#]);
            args.extend(extra.map(str::to_owned));
            rows.push(Row::new(command, why, args, exit));
        }
    }
    rows.extend([
        Row::new(
            "lockfile get",
            "absent entry",
            ["lockfile", "get", "", "g", r#"["x"]"#],
            3,
        ),
        Row::new(
            "lockfile get",
            "file named with --file is missing: no lockfile, not an empty one",
            ["lockfile", "--file", "nope.lock", "get", "", "g", "[]"],
            3,
        ),
        Row::new(
            "lockfile ls",
            "file named with --file is missing: no lockfile, not an empty one",
            ["lockfile", "--file", "nope.lock", "ls"],
            3,
        ),
        Row::new(
            "lockfile get",
            "a symlink is followed for a read",
            [
                "lockfile",
                "--file",
                "link.lock",
                "get",
                "",
                "git-latest",
                r#"["github.com/vito/editor"]"#,
            ],
            0,
        )
        .setup(|root| symlink("dagger.lock", root.join("link.lock")).unwrap()),
        Row::new(
            "lockfile get",
            "namespace is not UTF-8",
            [
                OsStr::new("lockfile"),
                OsStr::new("get"),
                OsStr::from_bytes(b"\xff"),
                OsStr::new("g"),
                OsStr::new("[]"),
            ],
            2,
        ),
    ]);
    let set = |why: &str, value: &str| {
        Row::new(
            "lockfile set",
            why,
            ["lockfile", "set", "", "g", r#"["x"]"#, value],
            6,
        )
    };
    rows.extend([
        set("value not JSON (unquoted string)", "sha256:abc"),
        set("value truncated", r#"{"a":"#),
        set("value empty", ""),
        set("value followed by junk", r#""v" "w""#),
        Row::new(
            "lockfile set",
            "file's directory is missing",
            [
                "lockfile",
                "--file",
                "nope/dagger.lock",
                "set",
                "",
                "g",
                "[]",
                "1",
            ],
            1,
        ),
        Row::new(
            "lockfile set",
            "file's parent is a file",
            [
                "lockfile",
                "--file",
                "envelope.json/dagger.lock",
                "set",
                "",
                "g",
                "[]",
                "1",
            ],
            1,
        ),
        Row::new(
            "lockfile set",
            "a symlinked file is replaced, its target untouched",
            ["lockfile", "--file", "link.lock", "set", "", "g", "[]", "1"],
            0,
        )
        .setup(|root| symlink("dagger.lock", root.join("link.lock")).unwrap())
        .changes(["link.lock"])
        .check(|root, _| {
            expect_regular(root, "link.lock", mode_of(root, "dagger.lock"))?;
            let text = fs::read_to_string(root.join("link.lock")).unwrap();
            if !text.contains(r#"["","g",[],1]"#) || !text.contains("git-latest") {
                return Err(format!(
                    "link.lock is not the fixture plus the new entry:\n{text}"
                ));
            }
            Ok(())
        }),
        Row::new(
            "lockfile set",
            "a dangling symlink is replaced, nothing created through it",
            ["lockfile", "--file", "link.lock", "set", "", "g", "[]", "1"],
            0,
        )
        .setup(|root| symlink("created-through-link.lock", root.join("link.lock")).unwrap())
        .changes(["link.lock"])
        .check(|root, _| expect_regular(root, "link.lock", 0o600)),
        Row::new(
            "lockfile set",
            "missing value",
            ["lockfile", "set", "", "g", "[]"],
            2,
        ),
    ]);
    rows.push(Row::new(
        "lockfile rm",
        "absent entry",
        ["lockfile", "rm", "", "g", r#"["x"]"#],
        3,
    ));
    for (why, file, exit) in bad_lockfiles() {
        rows.push(Row::new(
            "lockfile ls",
            why,
            ["lockfile", "--file", file, "ls"],
            exit,
        ));
        rows.push(Row::new(
            "lockfile fmt",
            why,
            ["lockfile", "--file", file, "fmt", "--check"],
            exit,
        ));
        // fmt takes `<file>.lock` before reading; never create one in /dev.
        if !file.starts_with("/dev/") {
            rows.push(Row::new(
                "lockfile fmt",
                why,
                ["lockfile", "--file", file, "fmt"],
                exit,
            ));
        }
    }
    rows.extend([
        Row::new(
            "lockfile fmt",
            "missing file",
            ["lockfile", "--file", "nope.lock", "fmt"],
            3,
        ),
        Row::new(
            "lockfile fmt",
            "--check on a file that is not canonical",
            ["lockfile", "--file", "unsorted.lock", "fmt", "--check"],
            1,
        ),
        Row::new(
            "lockfile ls",
            "--namespace without a value",
            ["lockfile", "ls", "--namespace"],
            2,
        ),
    ]);

    // batch: a bad request stops the session and writes nothing, even after good sets.
    let set_first = r#"["set","","g",["x"],"v"]"#;
    let batch = |why: &str, bad: &[u8]| {
        let mut stdin = format!("{set_first}\n").into_bytes();
        stdin.extend(bad);
        stdin.push(b'\n');
        Row::new("lockfile batch", why, ["lockfile", "batch"], 6).stdin(stdin)
    };
    let mut long_line = br#"["get","","g",[""#.to_vec();
    long_line.extend(std::iter::repeat_n(b'a', 16 << 20));
    long_line.extend(br#""]]"#);
    rows.extend([
        batch("truncated request", br#"["set","","g",["y"],"#),
        batch("not an array", br#"{"op":"get"}"#),
        batch("empty array", b"[]"),
        batch("unknown verb", br#"["put","","g",["x"],"v"]"#),
        batch("verb is a number", br#"[1,"","g",["x"]]"#),
        batch("namespace is a number", br#"["get",1,"g",["x"]]"#),
        batch("inputs hold an object", br#"["get","","g",[{"a":1}]]"#),
        batch("too many elements", br#"["get","","g",["x"],"v"]"#),
        batch("value missing", br#"["set","","g",["x"]]"#),
        batch("invalid UTF-8", b"[\"get\",\"\xff\",\"g\",[]]"),
        batch("raw NUL", b"[\"get\",\"\0\",\"g\",[]]"),
        batch("a line over 16 MiB", &long_line),
    ]);
    for (why, file, exit) in bad_lockfiles() {
        {
            rows.push(
                Row::new(
                    "lockfile batch",
                    why,
                    ["lockfile", "--file", file, "batch"],
                    exit,
                )
                .stdin(format!("{set_first}\n")),
            );
        }
    }
    // The over-the-limit file is sparse but still costs a copy: only rows that name it get it.
    for row in &mut rows {
        if row.args.iter().any(|a| a == "huge.lock") {
            row.setup = Some(Box::new(|root: &Path| {
                fs::File::create(root.join("huge.lock"))
                    .unwrap()
                    .set_len(modstate::lockfile::session::MAX_LOCKFILE_BYTES + 1)
                    .unwrap()
            }));
        }
    }
    rows
}

/// Lockfiles every lockfile command must refuse (or, missing, treat as empty), as
/// `(why, file, exit for get/set/rm/ls)`. Their bytes must survive every command.
fn bad_lockfiles() -> Vec<(&'static str, &'static str, i32)> {
    // huge.lock is made at the end of `lockfile_rows`, only for the rows that use it.
    vec![
        ("file is a directory", "dir", 1),
        ("file is a symlink to a directory", "link-dir.lock", 1),
        ("file of an unknown version", "v3.lock", 6),
        ("file with an unknown header field", "v2-field.lock", 6),
        ("file not UTF-8", "bad-utf8.lock", 6),
        ("file with a raw NUL", "nul.lock", 6),
        ("file cut mid-entry", "truncated.lock", 6),
        (
            "file with a comment after the header",
            "late-comment.lock",
            6,
        ),
        ("file with an object in inputs", "object-inputs.lock", 6),
        ("file without a header", "headless.lock", 6),
        ("file over the size limit", "huge.lock", 6),
        ("file is endless (/dev/zero)", "/dev/zero", 6),
    ]
}

// ---------------------------------------------------------------------------------------------
// Rows and how one is run and judged.

type Setup = Box<dyn Fn(&Path)>;
type Check = Box<dyn Fn(&Path, &Output) -> Result<(), String>>;

/// One bad input: the command it exercises (`group command`, as `--help` lists it), why the
/// input is bad, the arguments after the global options, stdin, and the exit code expected.
struct Row {
    command: &'static str,
    why: String,
    args: Vec<OsString>,
    stdin: Vec<u8>,
    expect: i32,
    db: &'static str,
    setup: Option<Setup>,
    changes: Vec<&'static str>,
    check: Option<Check>,
}

impl Row {
    fn new<A: AsRef<OsStr>>(
        command: &'static str,
        why: &str,
        args: impl IntoIterator<Item = A>,
        expect: i32,
    ) -> Row {
        Row {
            command,
            why: why.to_owned(),
            args: args.into_iter().map(|a| a.as_ref().to_owned()).collect(),
            stdin: Vec::new(),
            expect,
            db: DB,
            setup: None,
            changes: Vec::new(),
            check: None,
        }
    }

    fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Row {
        self.stdin = bytes.into();
        self
    }

    /// Runs with `--db path` (relative to the workspace) instead of the default database.
    fn db(mut self, path: &'static str) -> Row {
        self.db = path;
        self
    }

    /// Prepares the workspace copy before the "before" picture is taken.
    fn setup(mut self, f: impl Fn(&Path) + 'static) -> Row {
        self.setup = Some(Box::new(f));
        self
    }

    /// Paths this row is allowed to change; `check` must then say what they must hold.
    fn changes<const N: usize>(mut self, paths: [&'static str; N]) -> Row {
        self.changes = paths.to_vec();
        self
    }

    fn check(mut self, f: impl Fn(&Path, &Output) -> Result<(), String> + 'static) -> Row {
        self.check = Some(Box::new(f));
        self
    }

    fn describe(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| {
                let text = a.to_string_lossy();
                if text.len() > 60 {
                    format!("{}…", &text[..text.floor_char_boundary(60)])
                } else {
                    text.into_owned()
                }
            })
            .collect();
        format!("[{}] {} — modstate {:?}", self.command, self.why, args)
    }
}

fn check_group(name: &str) {
    let rows = rows_of(name);
    assert!(!rows.is_empty(), "group {name} has no rows");
    let template = Template::build();
    let mut failures = Vec::new();
    for row in &rows {
        if let Err(why) = run_row(&template, row) {
            failures.push(format!("{}\n    {why}", row.describe()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {name} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

fn rows_of(name: &str) -> Vec<Row> {
    let (_, rows) = GROUPS
        .iter()
        .find(|(group, _)| *group == name)
        .unwrap_or_else(|| panic!("no group {name} in GROUPS"));
    rows()
}

fn run_row(template: &Template, row: &Row) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    copy_tree(template.root(), root);
    if let Some(setup) = &row.setup {
        setup(root);
    }
    let db_before = db_fingerprint(&root.join(DB));
    let mut files_before = tree_fingerprint(root);

    let mut cmd = Command::new(BIN);
    cmd.current_dir(root)
        .env_remove("MODSTATE_DB")
        .arg("--db")
        .arg(row.db)
        .args(&row.args);
    let out = run_bounded(cmd, &row.stdin)?;

    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = match out.status.code() {
        Some(code) => code,
        None => {
            return Err(format!(
                "killed by a signal ({:?}); stderr: {stderr}",
                out.status
            ));
        }
    };
    if code == 101 || stderr.contains("panicked") {
        return Err(format!("panicked (exit {code}): {stderr}"));
    }
    if code != row.expect {
        return Err(format!(
            "exit {code}, expected {}; stderr: {stderr}",
            row.expect
        ));
    }
    let lines = stderr.lines().count();
    if code != 0 && (lines != 1 || !stderr.ends_with('\n')) {
        return Err(format!("stderr is {lines} lines, expected one: {stderr:?}"));
    }
    if code == 0 && lines > 1 {
        return Err(format!(
            "success printed {lines} lines on stderr: {stderr:?}"
        ));
    }

    let db_after = db_fingerprint(&root.join(DB));
    if db_after != db_before {
        return Err(format!("database changed: {db_before} -> {db_after}"));
    }
    let mut files_after = tree_fingerprint(root);
    for path in &row.changes {
        files_before.remove(Path::new(path));
        files_after.remove(Path::new(path));
    }
    if files_after != files_before {
        return Err(format!(
            "workspace files changed: {}",
            describe_tree_change(&files_before, &files_after)
        ));
    }
    if let Some(check) = &row.check {
        check(root, &out)?;
    }
    if code != 0 {
        json_twin(template, row, code)?;
    }
    Ok(())
}

/// The row again with `--json`, in a fresh workspace: the same exit, its one line on stderr,
/// and exactly one JSON document on stdout — `{"error": {"exit", "kind", "message"}}` whose
/// exit is the exit code and whose message is the stderr line, unless the command's own
/// output document reports the failure (`artifact check`, `lockfile fmt --check`, `doctor`).
/// `lockfile batch` answers one document a line, and its error document is the last line.
fn json_twin(template: &Template, row: &Row, code: i32) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();
    let root = work.path();
    copy_tree(template.root(), root);
    if let Some(setup) = &row.setup {
        setup(root);
    }
    let mut cmd = Command::new(BIN);
    cmd.current_dir(root)
        .env_remove("MODSTATE_DB")
        .arg("--db")
        .arg(row.db)
        .arg("--json")
        .args(&row.args);
    let out = run_bounded(cmd, &row.stdin)?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(code) {
        return Err(format!(
            "with --json: exit {:?}, expected {code}; stderr: {stderr}",
            out.status.code()
        ));
    }
    if stderr.lines().count() != 1 {
        return Err(format!("with --json: stderr is not one line: {stderr:?}"));
    }
    let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_slice(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| {
            format!(
                "with --json: stdout is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
    // `lockfile batch` streams one answer document a line; a failure ends the stream with
    // the error document.
    let docs = if row.command == "lockfile batch" {
        docs.into_iter().last().into_iter().collect()
    } else {
        docs
    };
    if docs.len() != 1 || !out.stdout.ends_with(b"\n") {
        return Err(format!(
            "with --json: stdout holds {} documents, expected one: {:?}",
            docs.len(),
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let Some(error) = docs[0].get("error") else {
        return Ok(());
    };
    let message = stderr.trim_end().strip_prefix("error: ").unwrap_or(&stderr);
    if error["exit"] != code
        || error["kind"].as_str().is_none_or(|k| k.is_empty())
        || error["message"] != message
    {
        return Err(format!(
            "with --json: error document {error} does not match exit {code} and stderr {stderr:?}"
        ));
    }
    Ok(())
}

/// Runs `cmd` feeding `stdin`; kills it and fails if it outlives `ROW_DEADLINE`.
fn run_bounded(mut cmd: Command, stdin: &[u8]) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn modstate");
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // A command may exit before reading all of its stdin; a broken pipe is fine.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > ROW_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("still running after {ROW_DEADLINE:?}: hung"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    writer.join().unwrap();
    Ok(Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    })
}

// ---------------------------------------------------------------------------------------------
// The template workspace.

struct Template {
    dir: tempfile::TempDir,
}

impl Template {
    /// A database holding two artifacts, the fixtures, and the bad files rows point at.
    fn build() -> Template {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let lines: String = (1..=2)
            .map(|n| {
                format!(
                    "{{\"digest\":\"{}\",\"state\":{}}}\n",
                    digest_of(n),
                    envelope(n)
                )
            })
            .collect();
        let mut cmd = Command::new(BIN);
        cmd.current_dir(root)
            .env_remove("MODSTATE_DB")
            .args(["--db", DB, "artifact", "put-many", "-"]);
        let out = run_bounded(cmd, lines.as_bytes()).unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::remove_dir_all(root.join("state/state.db.locks")).unwrap();

        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
        for name in [
            "valid.json",
            "malformed.json",
            "stale.json",
            "unsupported-artifact-version.json",
            "unsupported-state-type.json",
            "unsupported-state-version.json",
        ] {
            fs::copy(fixtures.join("moduletypes").join(name), root.join(name)).unwrap();
        }
        let valid = fs::read(fixtures.join("moduletypes/valid.json")).unwrap();
        let lockfile = fs::read(fixtures.join("dagger-lock/dang-comments.dagger.lock")).unwrap();
        let write = |name: &str, bytes: &[u8]| fs::write(root.join(name), bytes).unwrap();

        fs::create_dir(root.join("dir")).unwrap();
        write("envelope.json", envelope(7).as_bytes());
        write(
            "junk.db",
            b"this is not a SQLite database, and must stay as it is\n",
        );
        write("empty.json", b"");
        write("truncated.json", &valid[..valid.len() / 2]);
        write(
            "wrong-types.json",
            &artifact_file_with(envelope(7).as_bytes())
                .replace("\"artifactVersion\":1", "\"artifactVersion\":\"1\"")
                .into_bytes(),
        );
        let mut bad_utf8 = valid.clone();
        let at = find(&bad_utf8, b"hello");
        bad_utf8[at] = 0xff;
        write("invalid-utf8.json", &bad_utf8);
        let mut nul = valid.clone();
        nul[at] = 0;
        write("nul.json", &nul);

        let header = b"[[\"version\",\"2\"]]\n";
        write("dagger.lock", &lockfile);
        write(
            "v3.lock",
            b"[[\"version\",\"3\"]]\n[\"\",\"g\",[\"x\"],1,2]\n",
        );
        write("v2-field.lock", b"[[\"version\",\"2\"],[\"hash\",\"x\"]]\n");
        write(
            "bad-utf8.lock",
            // Outside a string: Go refuses it (inside one it reads as U+FFFD, as Dagger does).
            &[header.as_slice(), b"[\"\",\"g\",[\"x\"],1\xff]\n"].concat(),
        );
        write(
            "nul.lock",
            &[header.as_slice(), b"[\"\",\"g\",[\"\0\"],1]\n"].concat(),
        );
        let cut = find(&lockfile, b"git-latest") + 5;
        write("truncated.lock", &lockfile[..cut]);
        write(
            "late-comment.lock",
            &[lockfile.as_slice(), b"\n# late\n"].concat(),
        );
        write(
            "object-inputs.lock",
            &[header.as_slice(), b"[\"\",\"g\",[{\"a\":1}],1]\n"].concat(),
        );
        write(
            "headless.lock",
            b"# only a comment\n[\"\",\"g\",[\"x\"],1]\n",
        );
        write(
            "unsorted.lock",
            &[
                header.as_slice(),
                b"[\"\",\"g\",[\"b\"],1]\n[\"\",\"g\",[\"a\"],1]\n",
            ]
            .concat(),
        );
        symlink("dir", root.join("link-dir.lock")).unwrap();
        Template { dir }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in fixture")
}

/// Copies files, directories and symlinks (as symlinks); a sparse file stays sparse enough
/// through `fs::copy` (copy_file_range) for these sizes.
fn copy_tree(from: &Path, to: &Path) {
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            fs::create_dir(&dst).unwrap();
            copy_tree(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fingerprints: the database by its rows, the rest of the workspace by its files.

/// sha256 over the schema, user_version and every row of every table, rows sorted so the
/// fingerprint does not depend on scan order. Opened read-only on the file itself; a file
/// that is absent or not a database has no fingerprint to change.
fn db_fingerprint(db: &Path) -> String {
    if !db.exists() {
        return "absent".to_owned();
    }
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut hasher = Sha256::new();
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    hasher.update(user_version.to_le_bytes());
    let mut tables: Vec<(String, String)> = conn
        .prepare(
            "SELECT name, coalesce(sql, '') FROM sqlite_schema WHERE type = 'table' ORDER BY name",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    // Virtual tables (FTS5) keep their rows in shadow tables, which are listed too.
    tables.retain(|(_, sql)| !sql.to_ascii_uppercase().starts_with("CREATE VIRTUAL"));
    let mut total = 0;
    for (name, sql) in &tables {
        hasher.update(sql.as_bytes());
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{}\"", name.replace('"', "\"\"")))
            .unwrap();
        let columns = stmt.column_count();
        let mut rows: Vec<Vec<u8>> = Vec::new();
        let mut query = stmt.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let mut bytes = Vec::new();
            for i in 0..columns {
                encode_value(&mut bytes, row.get_ref(i).unwrap());
            }
            rows.push(bytes);
        }
        rows.sort();
        total += rows.len();
        for row in rows {
            hasher.update((row.len() as u64).to_le_bytes());
            hasher.update(row);
        }
    }
    format!(
        "{} rows in {} tables, sha256 {}",
        total,
        tables.len(),
        hex(&hasher.finalize())
    )
}

fn encode_value(out: &mut Vec<u8>, value: ValueRef<'_>) {
    let (tag, bytes): (u8, Vec<u8>) = match value {
        ValueRef::Null => (0, Vec::new()),
        ValueRef::Integer(i) => (1, i.to_le_bytes().to_vec()),
        ValueRef::Real(f) => (2, f.to_le_bytes().to_vec()),
        ValueRef::Text(t) => (3, t.to_vec()),
        ValueRef::Blob(b) => (4, b.to_vec()),
    };
    out.push(tag);
    out.extend((bytes.len() as u64).to_le_bytes());
    out.extend(bytes);
}

/// What one workspace entry is: kind, mode and content hash or link target.
type Tree = BTreeMap<PathBuf, String>;

/// Every entry under `root` except the default database's own files (fingerprinted by rows),
/// lock directories and lockfile lock files (modstate's own bookkeeping).
fn tree_fingerprint(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, out: &mut Tree) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_bookkeeping(dir, &name, &rel) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let kind = meta.file_type();
            let what = if kind.is_symlink() {
                format!("symlink -> {}", fs::read_link(&path).unwrap().display())
            } else if kind.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:o}")
            } else if kind.is_file() {
                file_fingerprint(&path, &meta, mode)
            } else if kind.is_fifo() {
                format!("fifo {mode:o}")
            } else {
                format!("other {mode:o}")
            };
            out.insert(rel, what);
        }
    }
    let mut out = Tree::new();
    walk(root, root, &mut out);
    out
}

/// Small files by content; big ones (only the sparse size-limit files) by size, mtime and
/// inode, which any write or replacement changes, to keep a debug-build run fast.
fn file_fingerprint(path: &Path, meta: &fs::Metadata, mode: u32) -> String {
    use std::os::unix::fs::MetadataExt;
    if meta.len() > 1 << 20 {
        return format!(
            "file {mode:o} {} bytes mtime {}.{} inode {}",
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
            meta.ino()
        );
    }
    let bytes = fs::read(path).unwrap();
    format!(
        "file {mode:o} {} bytes sha256 {}",
        bytes.len(),
        hex(&Sha256::digest(&bytes))
    )
}

/// modstate's own files, not the user's: the default database and its -wal/-shm (fingerprinted
/// by rows instead), lock directories `<db>.locks/`, and lockfile session locks `<file>.lock`
/// beside an existing `<file>`.
fn is_bookkeeping(dir: &Path, name: &str, rel: &Path) -> bool {
    let db_files = ["", "-wal", "-shm", "-journal"].map(|suffix| format!("{DB}{suffix}"));
    name.ends_with(".locks")
        || db_files.iter().any(|f| Path::new(f) == rel)
        || name
            .strip_suffix(".lock")
            .is_some_and(|stem| fs::symlink_metadata(dir.join(stem)).is_ok())
}

fn describe_tree_change(before: &Tree, after: &Tree) -> String {
    let keys: BTreeSet<&PathBuf> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| {
            format!(
                "{}: {} -> {}",
                k.display(),
                before.get(k).map_or("absent", String::as_str),
                after.get(k).map_or("absent", String::as_str)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

fn digest_of(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn envelope(n: usize) -> String {
    format!(r#"{{"type":"Module","version":1,"state":{{"name":"m{n}","objects":[]}}}}"#)
}

/// A valid envelope of exactly `len` bytes: only its size can be wrong with it.
fn padded_envelope(len: usize) -> Vec<u8> {
    let head = br#"{"type":"Module","version":1,"state":{"pad":""#;
    let tail = br#""}}"#;
    let mut bytes = head.to_vec();
    bytes.resize(len - tail.len(), b'x');
    bytes.extend(tail);
    assert_eq!(bytes.len(), len);
    bytes
}

/// An artifact file (for the fixture digest) around `envelope`, compact.
fn artifact_file_with(envelope: &[u8]) -> String {
    format!(
        "{{\"artifactVersion\":1,\"moduleSourceDigest\":\"{VALID_FIXTURE_DIGEST}\",\"state\":{}}}\n",
        String::from_utf8_lossy(envelope)
    )
}

fn mode_of(root: &Path, name: &str) -> u32 {
    fs::metadata(root.join(name)).unwrap().permissions().mode() & 0o777
}

/// `name` is now a regular file of `mode`, no longer a symlink: a replaced file keeps the mode
/// of what it replaced (through the symlink), a new one is 0600 (`atomic.rs`).
fn expect_regular(root: &Path, name: &str, mode: u32) -> Result<(), String> {
    let meta = fs::symlink_metadata(root.join(name)).unwrap();
    if !meta.file_type().is_file() {
        return Err(format!(
            "{name} should now be a regular file, is {:?}",
            meta.file_type()
        ));
    }
    let found = meta.permissions().mode() & 0o777;
    if found != mode {
        return Err(format!("{name} has mode {found:o}, expected {mode:o}"));
    }
    Ok(())
}

/// The lock directory holds only `write`, `global` and `key-<64 hex>` files.
fn lock_dir_holds_only_lock_files(root: &Path) -> Result<(), String> {
    let dir = root.join("state/state.db.locks");
    if !dir.exists() {
        return Ok(()); // nothing was locked, so nothing was created
    }
    for entry in fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let hashed = name
            .strip_prefix("key-")
            .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
        if !(name == "write" || name == "global" || hashed) {
            return Err(format!("unexpected entry {name:?} in the lock directory"));
        }
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Coverage: every command the binary lists has rows, and every row names a real command.

#[test]
fn every_cli_command_has_rows() {
    let cli = cli_commands();
    let covered: BTreeSet<String> = GROUPS
        .iter()
        .flat_map(|(_, rows)| rows().into_iter().map(|r| r.command.to_owned()))
        .collect();
    let missing: Vec<&String> = cli.difference(&covered).collect();
    let unknown: Vec<&String> = covered.difference(&cli).collect();
    assert!(
        missing.is_empty(),
        "commands without bad-input rows (add a group to GROUPS): {missing:?}"
    );
    assert!(
        unknown.is_empty(),
        "rows name commands the CLI lacks: {unknown:?}"
    );
}

/// `init`, `artifact put`, … as `modstate --help` and `modstate <group> --help` list them.
fn cli_commands() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for top in help_commands(&[]) {
        let subs = help_commands(&[&top]);
        if subs.is_empty() {
            out.insert(top);
        } else {
            out.extend(subs.into_iter().map(|sub| format!("{top} {sub}")));
        }
    }
    out
}

fn help_commands(path: &[&str]) -> Vec<String> {
    let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}
