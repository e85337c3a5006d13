//! Bad input that reaches the store, on any backend: each row gets its documented exit code,
//! ONE line on stderr, no panic, and the store is left exactly as it was (read back through
//! the CLI). tests/bad_input.rs covers every command on SQLite, down to the bytes of the file.

use super::Db;

/// What a user can read back of the store: artifacts, memories, generations.
fn fingerprint(db: &Db) -> String {
    let mut out = String::new();
    out.push_str(&db.json(&["artifact", "ls"]).to_string());
    for ns in ["", "ns"] {
        out.push_str(&db.json(&["memory", "ls", "--namespace", ns]).to_string());
    }
    out
}

pub fn bad_input_gets_its_exit_code_one_line_and_changes_nothing(db: &Db) {
    let d1 = format!("sha256:{}", "1".repeat(64));
    let env = r#"{"type":"Module","version":1,"state":{"a":1}}"#;
    assert_eq!(
        db.run_in(&["artifact", "put", &d1], env.as_bytes())
            .status
            .code(),
        Some(0)
    );
    let id = String::from_utf8(
        db.run(&["memory", "add", "--namespace", "ns", "kept"])
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    let d2 = format!("sha256:{}", "2".repeat(64));
    let absent_id = "01a22f16-1aef-763e-9b30-25715bfe62e2";
    let big = "x".repeat(70 * 1024);
    let long_category = "c".repeat(300);
    let rows: Vec<(Vec<&str>, &[u8], i32)> = vec![
        (vec!["artifact", "put", "sha256:abc"], env.as_bytes(), 6),
        (vec!["artifact", "put", "md5:abc"], env.as_bytes(), 6),
        (vec!["artifact", "put", &d1], b"not json", 6),
        (
            vec!["artifact", "put", &d1],
            br#"{"type":"Workspace","version":1,"state":{}}"#,
            6,
        ),
        (vec!["artifact", "put", &d1], b"\xff\xfe", 6),
        (
            vec!["artifact", "put-many", "-"],
            b"{\"digest\":\"sha256:bad\",\"state\":{}}\n",
            6,
        ),
        (vec!["artifact", "get", "sha256:zz"], b"", 6),
        (vec!["artifact", "get", &d2], b"", 3),
        (vec!["artifact", "rm", &d2], b"", 3),
        (vec!["memory", "get", "not-an-id"], b"", 6),
        (vec!["memory", "get", absent_id], b"", 3),
        (vec!["memory", "rm", absent_id], b"", 3),
        (vec!["memory", "update", absent_id, "x"], b"", 3),
        (vec!["memory", "add", ""], b"", 6),
        (vec!["memory", "add", "-"], big.as_bytes(), 6),
        (vec!["memory", "add", "-"], b"bad \xff utf8", 6),
        (
            vec!["memory", "add", "--category", &long_category, "t"],
            b"",
            6,
        ),
        (
            vec!["memory", "update", &id, "x", "--expect-generation", "99"],
            b"",
            4,
        ),
        (
            vec!["memory", "update", &id, "x", "--expect-version", "99"],
            b"",
            4,
        ),
        (
            vec!["memory", "rm", &id, "--expect-generation", "0"],
            b"",
            4,
        ),
        (vec!["memory", "ls", "--cursor", "garbage"], b"", 6),
        (vec!["memory", "search", "x", "--cursor", "garbage"], b"", 6),
    ];
    let before = fingerprint(db);
    for (args, stdin, code) in &rows {
        let out = db.run_in(args, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
        assert_eq!(fingerprint(db), before, "{args:?} changed the store");
    }
}
