//! Module-state artifacts through the CLI on any backend: round trips byte for byte, imports
//! and exports, validation, put-many all or nothing, resolve, and eight writing processes.

use super::Db;
use crate::common::{code, stderr};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Barrier;

const VALID_DIGEST: &str =
    "sha256:721e3d1485011d4fe4bb939e608c6036d91442db94818655bd6ee65f29af63f6";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/moduletypes")
        .join(name)
}

fn digest_of(n: usize) -> String {
    format!("sha256:{n:064x}")
}

fn envelope(n: usize) -> String {
    format!(r#"{{"type":"Module","version":1,"state":{{"name":"m{n}","objects":[]}}}}"#)
}

pub fn put_get_ls_rm_round_trip_is_byte_exact_and_idempotent(db: &Db) {
    // Odd spacing and key order must come back exactly as given.
    let body = b"{ \"version\": 1,\n  \"type\": \"Module\", \"state\": {\"z\": 1.50, \"a\": [] } }";
    let d = digest_of(1);

    let put = db.run_in(&["artifact", "put", &d, "-"], body);
    assert_eq!(code(&put), 0, "{}", stderr(&put));
    assert_eq!(String::from_utf8_lossy(&put.stdout).trim(), d);

    let get = db.run(&["artifact", "get", &d]);
    assert_eq!(code(&get), 0, "{}", stderr(&get));
    assert_eq!(get.stdout, body);

    // Same bytes again: unchanged.
    let again = db.run_in(&["--json", "artifact", "put", &d], body);
    assert_eq!(code(&again), 0);
    let doc: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged");

    // Different bytes: replaced, and it says so.
    let other = envelope(2);
    let replaced = db.run_in(&["--json", "artifact", "put", &d], other.as_bytes());
    assert_eq!(code(&replaced), 0);
    let doc: serde_json::Value = serde_json::from_slice(&replaced.stdout).unwrap();
    assert_eq!(doc["outcome"], "replaced");
    let replaced_text = db.run_in(&["artifact", "put", &d], body);
    assert!(
        stderr(&replaced_text).contains("replaced"),
        "{}",
        stderr(&replaced_text)
    );

    // A file argument works as well as stdin.
    let file = db.dir().join("env.json");
    fs::write(&file, envelope(3)).unwrap();
    let d3 = digest_of(3);
    assert_eq!(
        code(&db.run(&["artifact", "put", &d3, file.to_str().unwrap()])),
        0
    );

    let ls = db.run(&["--json", "artifact", "ls"]);
    assert_eq!(code(&ls), 0);
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&ls.stdout).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["digest"], d);
    assert_eq!(rows[0]["type"], "Module");
    assert_eq!(rows[0]["version"], 1);
    assert_eq!(rows[0]["bytes"], body.len());
    let text = db.run(&["artifact", "ls"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains(&d3));

    assert_eq!(code(&db.run(&["artifact", "rm", &d])), 0);
    assert_eq!(code(&db.run(&["artifact", "rm", &d])), 3);
    assert_eq!(code(&db.run(&["artifact", "get", &d])), 3);
    assert_eq!(db.artifact_count(), 1);
}

pub fn import_export_round_trip(db: &Db) {
    let import = db.run(&[
        "artifact",
        "import",
        fixture("valid.json").to_str().unwrap(),
    ]);
    assert_eq!(code(&import), 0, "{}", stderr(&import));
    assert_eq!(String::from_utf8_lossy(&import.stdout).trim(), VALID_DIGEST);

    let out = db.dir().join("out").join("dagger.moduletypes.json");
    fs::create_dir(out.parent().unwrap()).unwrap();
    let export = db.run(&["artifact", "export", VALID_DIGEST, out.to_str().unwrap()]);
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let written = fs::read_to_string(&out).unwrap();
    assert!(
        written.ends_with("}\n"),
        "pretty-printed with a trailing newline"
    );
    assert!(written.starts_with("{\n  \"artifactVersion\": 1,\n  \"moduleSourceDigest\""));
    // Same JSON as the fixture (which is also pretty-printed, in the same key order).
    let a: serde_json::Value = serde_json::from_str(&written).unwrap();
    let b: serde_json::Value =
        serde_json::from_slice(&fs::read(fixture("valid.json")).unwrap()).unwrap();
    assert_eq!(a, b);
    // Key order is kept, not sorted.
    assert!(
        written.find("\"name\": \"hello\"").unwrap() < written.find("\"description\"").unwrap()
    );

    let check = db.run(&[
        "artifact",
        "check",
        out.to_str().unwrap(),
        "--digest",
        VALID_DIGEST,
    ]);
    assert_eq!(code(&check), 0);
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "loaded");

    // The exported file imports again to the same bytes.
    let before = db.run(&["artifact", "get", VALID_DIGEST]).stdout;
    let reimport = db.run(&["--json", "artifact", "import", out.to_str().unwrap()]);
    let doc: serde_json::Value = serde_json::from_slice(&reimport.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged");
    assert_eq!(db.run(&["artifact", "get", VALID_DIGEST]).stdout, before);

    // Export of an absent digest: exit 3, no file.
    let missing = db.dir().join("missing.json");
    let e = db.run(&[
        "artifact",
        "export",
        &digest_of(9),
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code(&e), 3);
    assert!(!missing.exists());
}

pub fn import_refuses_anything_but_a_well_formed_v1_file(db: &Db) {
    for name in [
        "malformed.json",
        "unsupported-artifact-version.json",
        "unsupported-state-type.json",
        "unsupported-state-version.json",
    ] {
        let out = db.run(&["artifact", "import", fixture(name).to_str().unwrap()]);
        assert_eq!(code(&out), 6, "{name}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "one-line error: {}",
            stderr(&out)
        );
    }
    assert_eq!(db.artifact_count(), 0);
}

pub fn put_validates_the_envelope_and_the_limit(db: &Db) {
    let d = digest_of(1);
    for bad in [
        &b"not json"[..],
        b"{\"type\":\"Module\",\"version\":1,\"state\":{}",
        b"[]",
        b"{\"type\":1,\"version\":1,\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":\"1\",\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":1.5,\"state\":{}}",
        b"{\"type\":\"Module\",\"version\":1,\"state\":[]}",
        b"{\"type\":\"Module\",\"version\":1}",
        b"\xff\xfe",
    ] {
        let out = db.run_in(&["artifact", "put", &d], bad);
        assert_eq!(
            code(&out),
            6,
            "{:?}: {}",
            String::from_utf8_lossy(bad),
            stderr(&out)
        );
    }
    // 16 MiB + 1 byte is refused before anything is stored.
    let mut huge = b"{\"type\":\"Module\",\"version\":1,\"state\":{\"pad\":\"".to_vec();
    huge.resize(16 * 1024 * 1024 - 3, b'x');
    huge.extend_from_slice(b"\"}}");
    huge.push(b' ');
    assert_eq!(huge.len(), 16 * 1024 * 1024 + 1);
    let out = db.run_in(&["artifact", "put", &d], &huge);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("limit"), "{}", stderr(&out));
    huge.pop();
    let out = db.run_in(&["artifact", "put", &d], &huge);
    assert_eq!(
        code(&out),
        0,
        "exactly the limit is accepted: {}",
        stderr(&out)
    );

    for bad_digest in [
        "",
        "sha256:",
        "md5:abc",
        &format!("sha256:{}", "A".repeat(64)),
        "../../x",
    ] {
        let out = db.run_in(&["artifact", "put", bad_digest], envelope(1).as_bytes());
        assert_eq!(code(&out), 6, "{bad_digest:?}");
    }
    assert_eq!(db.artifact_count(), 1);
}

pub fn eight_processes_put_fifty_each(db: &Db) {
    let barrier = Barrier::new(8);
    std::thread::scope(|s| {
        for w in 0..8 {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..50 {
                    let n = w * 1000 + i;
                    let out =
                        db.run_in(&["artifact", "put", &digest_of(n)], envelope(n).as_bytes());
                    assert_eq!(code(&out), 0, "worker {w} put {i}: {}", stderr(&out));
                }
            });
        }
    });
    assert_eq!(db.artifact_count(), 400);
}

pub fn put_many_is_all_or_nothing(db: &Db) {
    let lines: String = (0..1000)
        .map(|n| {
            format!(
                "{{\"digest\":\"{}\",\"state\":{}}}\n",
                digest_of(n),
                envelope(n)
            )
        })
        .collect();
    let out = db.run_in(&["--json", "artifact", "put-many", "-"], lines.as_bytes());
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["inserted"], 1000);
    assert_eq!(db.artifact_count(), 1000);
    // Byte-exact from the line.
    assert_eq!(
        db.run(&["artifact", "get", &digest_of(5)]).stdout,
        envelope(5).as_bytes()
    );

    // One bad item (the third) rejects the whole batch, naming it.
    for bad in [
        format!("{{\"digest\":\"sha256:bad\",\"state\":{}}}", envelope(1)),
        format!("{{\"digest\":\"{}\",\"state\":[1]}}", digest_of(1)),
        "{\"digest\":".to_owned(),
    ] {
        let batch = format!(
            "{{\"digest\":\"{}\",\"state\":{}}}\n\n{{\"digest\":\"{}\",\"state\":{}}}\n{bad}\n",
            digest_of(5000),
            envelope(5000),
            digest_of(5001),
            envelope(5001)
        );
        let out = db.run_in(&["artifact", "put-many", "-"], batch.as_bytes());
        assert_eq!(code(&out), 6, "{}", stderr(&out));
        assert!(stderr(&out).contains("line 4"), "{}", stderr(&out));
        assert_eq!(db.artifact_count(), 1000, "nothing stored");
    }

    // A directory of artifact files.
    let files = db.dir().join("files");
    fs::create_dir(&files).unwrap();
    fs::copy(fixture("valid.json"), files.join("a.json")).unwrap();
    fs::write(files.join("notes.txt"), "ignored").unwrap();
    let out = db.run(&["artifact", "put-many", files.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(db.artifact_count(), 1001);
    fs::copy(fixture("unsupported-state-type.json"), files.join("b.json")).unwrap();
    let out = db.run(&["artifact", "put-many", files.to_str().unwrap()]);
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(stderr(&out).contains("item 2"), "{}", stderr(&out));
    let out = db.run(&[
        "artifact",
        "put-many",
        db.dir().join("absent").to_str().unwrap(),
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
}

/// One rule at every entrance: only a saved `Module` state envelope of version 1 is stored.
pub fn only_module_state_version_1_enters_the_store_at_any_entrance(db: &Db) {
    let others = [
        r#"{"type":"Workspace","version":1,"state":{}}"#,
        r#"{"type":"module","version":1,"state":{}}"#,
        r#"{"type":"Module","version":99,"state":{}}"#,
    ];
    for (i, bad) in others.iter().enumerate() {
        let put = db.run_in(&["artifact", "put", &digest_of(i)], bad.as_bytes());
        assert_eq!(code(&put), 6, "put {bad}: {}", stderr(&put));
        assert!(stderr(&put).contains("not supported"), "{}", stderr(&put));
        assert_eq!(stderr(&put).lines().count(), 1);

        let line = format!("{{\"digest\":\"{}\",\"state\":{bad}}}\n", digest_of(i));
        let many = db.run_in(&["artifact", "put-many", "-"], line.as_bytes());
        assert_eq!(code(&many), 6, "put-many {bad}: {}", stderr(&many));

        let resolve = db.run(&[
            "artifact",
            "resolve",
            &digest_of(i),
            "--",
            "printf",
            "%s",
            bad,
        ]);
        assert_eq!(code(&resolve), 6, "resolve {bad}: {}", stderr(&resolve));
    }
    assert_eq!(db.artifact_count(), 0, "an unsupported envelope was stored");
}

/// `resolve` serves the same bytes from the artifact file, the store and a computation.
pub fn resolve_prints_the_same_bytes_whichever_source_serves_it(db: &Db) {
    let file = db.dir().join("dagger.moduletypes.json");
    // Stored pretty-printed, with spacing a file or a computation would not reproduce.
    let pretty = "{\n  \"type\": \"Module\",\n  \"version\": 1,\n  \"state\": {\"b\": 1.50, \"a\": [1, 2]}\n}\n";
    let d = digest_of(1);
    let computed = db.run(&["artifact", "resolve", &d, "--", "printf", "%s", pretty]);
    assert_eq!(code(&computed), 0, "{}", stderr(&computed));
    assert!(stderr(&computed).contains("from computed"));
    let from_store = db.run(&["artifact", "resolve", &d]);
    assert_eq!(code(&from_store), 0, "{}", stderr(&from_store));
    assert!(stderr(&from_store).contains("from store"));
    let export = db.run(&["artifact", "export", &d, file.to_str().unwrap()]);
    assert_eq!(code(&export), 0, "{}", stderr(&export));
    let from_file = db.run(&["artifact", "resolve", &d, "--file", file.to_str().unwrap()]);
    assert_eq!(code(&from_file), 0, "{}", stderr(&from_file));
    assert!(stderr(&from_file).contains("from file"));
    assert_eq!(computed.stdout, from_store.stdout);
    assert_eq!(from_store.stdout, from_file.stdout);
    assert_eq!(
        String::from_utf8(from_file.stdout).unwrap(),
        "{\"type\":\"Module\",\"version\":1,\"state\":{\"b\":1.50,\"a\":[1,2]}}\n"
    );
}

/// Exporting an artifact and importing the file again is a round trip: `unchanged`, and the
/// stored bytes are left as they were.
pub fn export_then_import_of_an_unchanged_artifact_reports_unchanged_and_writes_nothing(db: &Db) {
    let file = db.dir().join("f.json");
    let stored = "{ \"type\" : \"Module\", \"version\" : 1, \"state\" : {\"x\": \"é\"} }";
    let d = digest_of(5);
    assert_eq!(
        code(&db.run_in(&["artifact", "put", &d], stored.as_bytes())),
        0
    );
    let ls_before = db.run(&["--json", "artifact", "ls"]);
    assert_eq!(
        code(&db.run(&["artifact", "export", &d, file.to_str().unwrap()])),
        0
    );
    let import = db.run(&["--json", "artifact", "import", file.to_str().unwrap()]);
    assert_eq!(code(&import), 0, "{}", stderr(&import));
    let doc: serde_json::Value = serde_json::from_slice(&import.stdout).unwrap();
    assert_eq!(doc["outcome"], "unchanged", "{doc}");
    let text = db.run(&["artifact", "import", file.to_str().unwrap()]);
    assert!(!stderr(&text).contains("replaced"), "{}", stderr(&text));
    assert_eq!(db.run(&["artifact", "get", &d]).stdout, stored.as_bytes());
    assert_eq!(
        db.run(&["--json", "artifact", "ls"]).stdout,
        ls_before.stdout
    );
    // A real change is still a replacement.
    let changed = "{\"type\":\"Module\",\"version\":1,\"state\":{\"x\":\"e\"}}";
    let put = db.run_in(&["--json", "artifact", "put", &d], changed.as_bytes());
    let doc: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(doc["outcome"], "replaced");
}

pub fn resolve_says_why_it_skipped_a_file_and_can_write_it(db: &Db) {
    let file = db.dir().join("dagger.moduletypes.json");
    let f = file.to_str().unwrap();
    assert_eq!(
        code(&db.run(&[
            "artifact",
            "import",
            fixture("valid.json").to_str().unwrap()
        ])),
        0
    );
    // Stale: the file is for another module source.
    fs::copy(fixture("stale.json"), &file).unwrap();
    let out = db.run(&["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("skipped artifact file"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("stale"), "{}", stderr(&out));
    // Malformed.
    fs::write(&file, b"{not json").unwrap();
    let out = db.run(&["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert!(stderr(&out).contains("malformed"), "{}", stderr(&out));
    assert_eq!(
        fs::read(&file).unwrap(),
        b"{not json",
        "written without --write-file"
    );

    // --write-file after a store hit: the next load is served from the file.
    let out = db.run(&[
        "artifact",
        "resolve",
        VALID_DIGEST,
        "--file",
        f,
        "--write-file",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = db.run(&["artifact", "check", f, "--digest", VALID_DIGEST]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let again = db.run(&["artifact", "resolve", VALID_DIGEST, "--file", f]);
    assert!(stderr(&again).contains("from file"), "{}", stderr(&again));
    assert_eq!(again.stdout, out.stdout);

    // --write-file after a computation.
    let other = digest_of(9);
    let file2 = db.dir().join("second.json");
    let out = db.run(&[
        "artifact",
        "resolve",
        &other,
        "--file",
        file2.to_str().unwrap(),
        "--write-file",
        "--",
        "printf",
        "%s",
        &envelope(9),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let check = db.run(&[
        "artifact",
        "check",
        file2.to_str().unwrap(),
        "--digest",
        &other,
    ]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));

    // Lookup only: no command, a miss exits 3 and computes nothing.
    let miss = db.run(&["artifact", "resolve", &digest_of(10)]);
    assert_eq!(code(&miss), 3, "{}", stderr(&miss));
    assert!(miss.stdout.is_empty());
}

/// Two writers storing batches of the same digests in opposite orders, round after round,
/// both always commit: the store takes each batch's rows in one order (on SQLite the write
/// lock runs them one after the other; on a server, rows locked in digest order cannot
/// deadlock).
pub fn batches_sharing_digests_in_opposite_orders_never_deadlock(db: &Db) {
    assert_eq!(code(&db.run(&["init"])), 0);
    let writer = |reverse: bool| {
        for round in 0..8 {
            let mut numbers: Vec<usize> = (0..40).collect();
            if reverse {
                numbers.reverse();
            }
            // Other content each round and writer, so every row is written, not skipped.
            let lines: String = numbers
                .iter()
                .map(|&n| {
                    format!(
                        "{{\"digest\":\"{}\",\"state\":{}}}\n",
                        digest_of(n),
                        envelope(n * 1000 + round * 10 + usize::from(reverse))
                    )
                })
                .collect();
            let out = db.run_in(&["artifact", "put-many", "-"], lines.as_bytes());
            assert_eq!(code(&out), 0, "round {round}: {}", stderr(&out));
        }
    };
    std::thread::scope(|scope| {
        scope.spawn(|| writer(false));
        scope.spawn(|| writer(true));
    });
    assert_eq!(db.artifact_count(), 40);
}
