//! Nothing modstate creates lets anyone else in, whatever the umask; temp files are created
//! exclusively and never follow a planted symlink; no name a user passes escapes its directory.

use crate::common::BIN;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `modstate args…` under `umask 000`, in `cwd`, with `stdin` text.
fn run_umask0(cwd: &Path, args: &[&str], stdin: &str) -> Output {
    let mut script = String::from("umask 000; printf '%s' \"$STDIN\" | \"$BIN\"");
    for i in 0..args.len() {
        script.push_str(&format!(" \"${}\"", i + 1));
    }
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(args)
        .env("BIN", BIN)
        .env("STDIN", stdin)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every path under `root`, with its mode bits.
fn walk(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let meta = fs::symlink_metadata(&p).unwrap();
            out.push((p.clone(), meta.permissions().mode() & 0o777, meta.is_dir()));
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}

#[test]
fn everything_created_is_private_under_umask_000() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::set_permissions(&work, fs::Permissions::from_mode(0o755)).unwrap();
    let db = "state/nested/state.db";
    let digest = format!("sha256:{}", "a".repeat(64));
    let envelope = r#"{"type":"Module","version":1,"state":{}}"#;
    ok(&run_umask0(
        &work,
        &["--db", db, "artifact", "put", &digest, "-"],
        envelope,
    ));
    ok(&run_umask0(
        &work,
        &["--db", db, "memory", "add", "a secret"],
        "",
    ));
    ok(&run_umask0(
        &work,
        &["--db", db, "lock", "run", "some key", "--", "true"],
        "",
    ));
    ok(&run_umask0(
        &work,
        &[
            "--db",
            db,
            "artifact",
            "export",
            &digest,
            "dagger.moduletypes.json",
        ],
        "",
    ));
    ok(&run_umask0(
        &work,
        &[
            "lockfile",
            "--file",
            "dagger.lock",
            "set",
            "",
            "oci-sha",
            r#"["alpine"]"#,
            r#""sha256:1""#,
        ],
        "",
    ));
    for (path, mode, is_dir) in walk(&work) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", path.display());
    }
    let names: Vec<String> = walk(&work)
        .iter()
        .map(|(p, _, _)| p.strip_prefix(&work).unwrap().display().to_string())
        .collect();
    for expected in [
        "state",
        "state/nested",
        "state/nested/state.db",
        "state/nested/state.db.locks/write",
        "state/nested/state.db.locks/global",
        "dagger.moduletypes.json",
        "dagger.lock",
        "dagger.lock.lock",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not created: {names:?}"
        );
    }
    assert!(
        !names.iter().any(|n| n.contains(".tmp-")),
        "temp files left: {names:?}"
    );
}

/// `link` was a symlink to `victim`: now it is a regular file, and `victim` still holds `before`.
fn assert_replaced_not_followed(link: &Path, victim: &Path, before: &[u8]) {
    assert_eq!(
        fs::read(victim).unwrap(),
        before,
        "the symlink's target was written"
    );
    let kind = fs::symlink_metadata(link).unwrap().file_type();
    assert!(
        kind.is_file(),
        "{} is not a regular file now",
        link.display()
    );
}

#[test]
fn a_planted_symlink_at_the_target_is_replaced_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, "do not touch").unwrap();
    let work = dir.path().join("work");
    fs::create_dir(&work).unwrap();
    std::os::unix::fs::symlink(&victim, work.join("dagger.lock")).unwrap();
    std::os::unix::fs::symlink(&victim, work.join("dagger.moduletypes.json")).unwrap();

    // The lockfile is read through the symlink (reading a user's file is fine) but the write
    // replaces the link with a regular file: the link's target is never written.
    fs::write(&victim, "[[\"version\",\"2\"]]\n").unwrap();
    let before = fs::read(&victim).unwrap();
    ok(&run_umask0(
        &work,
        &[
            "lockfile",
            "set",
            "",
            "oci-sha",
            r#"["alpine"]"#,
            r#""sha256:1""#,
        ],
        "",
    ));
    assert_replaced_not_followed(&work.join("dagger.lock"), &victim, &before);

    let digest = format!("sha256:{}", "b".repeat(64));
    ok(&run_umask0(
        &work,
        &["--db", "state.db", "artifact", "put", &digest, "-"],
        r#"{"type":"Module","version":1,"state":{}}"#,
    ));
    ok(&run_umask0(
        &work,
        &[
            "--db",
            "state.db",
            "artifact",
            "export",
            &digest,
            "dagger.moduletypes.json",
        ],
        "",
    ));
    assert_replaced_not_followed(&work.join("dagger.moduletypes.json"), &victim, &before);
}

#[test]
fn a_planted_symlink_in_the_lock_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    ok(&Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .arg("init")
        .output()
        .unwrap());
    let victim = dir.path().join("victim.txt");
    fs::write(&victim, "do not touch").unwrap();
    let locks = dir.path().join("state.db.locks");
    // The key "k" lives in key-<sha256("k")>; plant a symlink there.
    let name = format!("key-{}", modstate::Digest::of(b"k").hex());
    std::os::unix::fs::symlink(&victim, locks.join(name)).unwrap();
    let out = Command::new(BIN)
        .arg("--db")
        .arg(&db)
        .args(["lock", "run", "k", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&victim).unwrap(), "do not touch");
}
