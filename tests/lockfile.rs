//! dagger.lock: format, sessions, and the `modstate lockfile` commands. Concurrency and crash
//! claims run real `modstate` processes (`lockfile batch` keeps one session open on stdin).

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use modstate::Error;
use modstate::lockfile::{Json, Key, Lockfile, Session};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_modstate");

fn fixture() -> Vec<u8> {
    fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/dagger.lock")).unwrap()
}

/// A temp dir holding `dagger.lock` with `bytes`, its mtime pushed into the past so that any
/// later write is visible in the mtime.
fn workspace(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dagger.lock");
    fs::write(&path, bytes).unwrap();
    age(&path);
    (dir, path)
}

fn age(path: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

/// Bytes, mtime and inode: equal before and after means the file was not written or replaced.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime, u64) {
    let meta = fs::metadata(path).unwrap();
    (
        fs::read(path).unwrap(),
        meta.modified().unwrap(),
        meta.ino(),
    )
}

fn modstate(file: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("lockfile")
        .arg("--file")
        .arg(file)
        .args(args)
        .output()
        .unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited by signal")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn lock_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.lock", path.display()))
}

fn key(ns: &str, op: &str, inputs: serde_json::Value) -> Key {
    Key::new(ns, op, inputs).unwrap()
}

fn parse(bytes: &[u8]) -> Lockfile {
    Lockfile::parse(bytes, "test").unwrap()
}

/// One `modstate lockfile batch` process: a session kept open while the test drives it.
struct Batch {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Batch {
    fn spawn(file: &Path) -> Batch {
        let mut child = Command::new(BIN)
            .arg("lockfile")
            .arg("--file")
            .arg(file)
            .arg("batch")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Batch {
            child,
            stdin,
            stdout,
        }
    }

    /// Sends one request and waits for its answer; "" when the process ended instead.
    fn request(&mut self, line: &str) -> String {
        let stdin = self.stdin.as_mut().unwrap();
        // A process that already failed closed its end; its answer is then "".
        let _ = writeln!(stdin, "{line}").and_then(|()| stdin.flush());
        let mut answer = String::new();
        self.stdout.read_line(&mut answer).unwrap();
        answer.trim_end().to_owned()
    }

    /// Ends the input, which makes the session flush.
    fn close_input(&mut self) {
        self.stdin = None;
    }

    fn wait(mut self) -> Output {
        self.close_input();
        let status = self.child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(self.child.stderr.as_mut().unwrap(), &mut err).unwrap();
        Output {
            status,
            stdout: Vec::new(),
            stderr: err.into_bytes(),
        }
    }
}

// ---------------------------------------------------------------- format

#[test]
fn fixture_parses_and_rewrites_byte_for_byte() {
    let bytes = fixture();
    let lockfile = parse(&bytes);
    assert_eq!(lockfile.len(), 80);
    assert_eq!(lockfile.comments().len(), 3);
    assert_eq!(lockfile.to_text().as_bytes(), bytes.as_slice());

    let (_dir, path) = workspace(&bytes);
    let before = snapshot(&path);
    let check = modstate(&path, &["fmt", "--check"]);
    assert_eq!(code(&check), 0, "{}", stderr(&check));
    let fmt = modstate(&path, &["fmt"]);
    assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
    // Already canonical: not even rewritten with the same bytes.
    assert_eq!(snapshot(&path), before);
}

#[test]
fn shuffled_fixture_sorts_back_to_the_fixture() {
    let bytes = fixture();
    let text = String::from_utf8(bytes.clone()).unwrap();
    let (head, entries): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.starts_with('#') || l.starts_with("[[\"version\""));
    let mut shuffled = head.join("\n") + "\n";
    for line in entries.iter().rev() {
        shuffled.push_str(line);
        shuffled.push('\n');
    }
    let (_dir, path) = workspace(shuffled.as_bytes());
    let before = snapshot(&path);
    let check = modstate(&path, &["fmt", "--check"]);
    assert_eq!(code(&check), 1);
    assert!(stderr(&check).contains("not in canonical form"));
    assert_eq!(snapshot(&path), before, "fmt --check wrote");
    let fmt = modstate(&path, &["fmt"]);
    assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
    // `["…/dang-sdk",["version","v0.1"]]` sorts before `["…/dang-sdk"]`: ',' < ']'.
    assert_eq!(fs::read(&path).unwrap(), bytes);
}

#[test]
fn version_1_is_read_and_rewritten_as_version_2_without_policies() {
    let v1 = "# pins\n[[\"version\",\"1\"]]\n\
              [\"\",\"oci-sha\",[\"alpine:3.20\"],\"sha256:aa\",\"pin\"]\n\
              [\"\",\"git-sha\",[\"github.com/x/y\",\"main\"],\"abc\",\"float\"]\n";
    let v2 = "# pins\n[[\"version\",\"2\"]]\n\
              [\"\",\"git-sha\",[\"github.com/x/y\",\"main\"],\"abc\"]\n\
              [\"\",\"oci-sha\",[\"alpine:3.20\"],\"sha256:aa\"]\n";
    let (_dir, path) = workspace(v1.as_bytes());
    let before = snapshot(&path);

    let get = modstate(&path, &["get", "", "oci-sha", r#"["alpine:3.20"]"#]);
    assert_eq!((code(&get), stdout(&get).as_str()), (0, "\"sha256:aa\"\n"));
    assert_eq!(snapshot(&path), before, "a read rewrote the file");

    assert_eq!(code(&modstate(&path, &["fmt", "--check"])), 1);
    let fmt = modstate(&path, &["fmt"]);
    assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
    assert_eq!(fs::read_to_string(&path).unwrap(), v2);

    // Any write rewrites a version 1 file as version 2, too.
    fs::write(&path, v1).unwrap();
    let set = modstate(
        &path,
        &["set", "", "oci-latest", r#"["alpine"]"#, r#""3.20""#],
    );
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let expected = v2.replace(
        "[\"\",\"oci-sha\"",
        "[\"\",\"oci-latest\",[\"alpine\"],\"3.20\"]\n[\"\",\"oci-sha\"",
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
}

#[test]
fn unknown_version_is_refused_and_never_written() {
    let v3 = "# future\n[[\"version\",\"3\"]]\n{\"whatever\":\"a newer modstate writes\"}\n";
    let (_dir, path) = workspace(v3.as_bytes());
    let before = snapshot(&path);
    let commands: &[&[&str]] = &[
        &["get", "", "oci-sha", r#"["alpine"]"#],
        &["set", "", "oci-sha", r#"["alpine"]"#, r#""sha256:bb""#],
        &["rm", "", "oci-sha", r#"["alpine"]"#],
        &["ls"],
        &["fmt"],
        &["fmt", "--check"],
    ];
    for args in commands {
        let out = modstate(&path, args);
        assert_eq!(code(&out), 6, "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("version \"3\""),
            "{args:?}: {}",
            stderr(&out)
        );
        assert_eq!(snapshot(&path), before, "{args:?} touched the file");
    }
    let mut batch = Batch::spawn(&path);
    let answer = batch.request(r#"["set","","oci-sha",["alpine"],"x"]"#);
    assert_eq!(answer, "", "a batch set on a v3 file answered");
    assert_eq!(code(&batch.wait()), 6);
    assert_eq!(snapshot(&path), before);
    assert!(matches!(
        Session::open(&path).get(&key("", "oci-sha", json!(["alpine"]))),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn objects_in_inputs_are_refused_and_nested_arrays_accepted() {
    let (_dir, path) = workspace(&fixture());
    let before = snapshot(&path);
    for inputs in [
        r#"[{"a":1}]"#,
        r#"["x",[["y",{"a":1}]]]"#,
        r#"{"a":1}"#,
        r#""x""#,
    ] {
        let out = modstate(&path, &["set", "", "g", inputs, "1"]);
        assert_eq!(code(&out), 6, "{inputs}: {}", stderr(&out));
        assert_eq!(snapshot(&path), before);
    }
    assert!(
        stderr(&modstate(
            &path,
            &["set", "", "g", r#"["x",[["y",{"a":1}]]]"#, "1"]
        ))
        .contains("object at [1][0][1]")
    );

    let nested = r#"["github.com/dagger/go-sdk",["version","v0.2"],[["deep",[1,2]]]]"#;
    let out = modstate(
        &path,
        &["set", "", "git-latest", nested, r#""refs/tags/v0.2""#],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = fs::read_to_string(&path).unwrap();
    let line = format!("[\"\",\"git-latest\",{nested},\"refs/tags/v0.2\"]");
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing"))
    };
    // Sorted as the fixture sorts: after the v0.1 pin, before the bare go-sdk entry.
    assert!(at("[\"github.com/dagger/go-sdk\",[\"version\",\"v0.1\"]]") < at(&line));
    assert!(at(&line) < at("[\"\",\"git-latest\",[\"github.com/dagger/go-sdk\"],"));

    // A file with an object in some inputs names the line.
    let bad = "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[{\"k\":1}],2]\n";
    fs::write(&path, bad).unwrap();
    let out = modstate(&path, &["ls"]);
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("dagger.lock:3:"), "{}", stderr(&out));
}

#[test]
fn malformed_files_exit_6_naming_the_line() {
    let h = "[[\"version\",\"2\"]]\n";
    let cases: &[(String, &str)] = &[
        (format!("# c\n{h}[\"\",\"g\",[\"a\"],1\n"), ":3:"), // bad JSON
        (format!("{h}[\"\",\"g\",[\"a\"]]\n"), ":2:"),       // wrong arity
        (format!("{h}[\"\",\"g\",[\"a\"],1,\"pin\"]\n"), ":2:"), // a policy in version 2
        (format!("{h}[\"\",\"g\",[\"a\"],1] junk\n"), ":2:"), // trailing garbage
        ("[\"\",\"g\",[\"a\"],1]\n".into(), ":1:"),          // missing header
        ("# only comments\n".into(), ":1:"),                 // missing header
        (format!("{h}[\"\",\"g\",[\"a\"],1]\n# late\n"), ":3:"), // comment after the header
        (format!("{h}[\"\",7,[\"a\"],1]\n"), ":2:"),         // operation not a string
        (format!("{h}{h}"), ":2:"),                          // header twice
        (format!("{h}\n\n[\"\",\"g\",\"a\",1]\n"), ":4:"),   // inputs not an array
        ("[[\"version\"]]\n".into(), ":1:"),                 // bad header
    ];
    for (text, line) in cases {
        let (_dir, path) = workspace(text.as_bytes());
        let before = snapshot(&path);
        for args in [&["ls"][..], &["set", "", "g", "[\"z\"]", "1"], &["fmt"]] {
            let out = modstate(&path, args);
            assert_eq!(code(&out), 6, "{text:?} {args:?}: {}", stderr(&out));
            let err = stderr(&out);
            assert!(
                err.contains(&format!("dagger.lock{line}")),
                "{text:?}: {err}"
            );
            assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
            assert_eq!(snapshot(&path), before);
        }
    }
}

#[test]
fn numbers_and_spellings_are_kept_exactly() {
    let (_dir, path) = workspace(b"");
    let inputs = r#"["n", 1.0, 1E5, "\u0026"]"#;
    let value = r#"{"z": 1.50, "a": [-0, 123456789012345678901234567890, 1e-7, 2.5E+10]}"#;
    let out = modstate(&path, &["set", "ns", "op", inputs, value]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let compact_inputs = r#"["n",1.0,1E5,"\u0026"]"#;
    let compact_value = r#"{"z":1.50,"a":[-0,123456789012345678901234567890,1e-7,2.5E+10]}"#;
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("[[\"version\",\"2\"]]\n[\"ns\",\"op\",{compact_inputs},{compact_value}]\n")
    );
    let get = modstate(&path, &["get", "ns", "op", compact_inputs]);
    assert_eq!(stdout(&get), format!("{compact_value}\n"));
    // `1` is not `1.0`: a different lookup.
    let other = modstate(&path, &["get", "ns", "op", r#"["n",1,1E5,"&"]"#]);
    assert_eq!(code(&other), 3);
    let respelled = modstate(&path, &["get", "ns", "op", r#"["n",1.0,100000e0,"&"]"#]);
    assert_eq!(
        code(&respelled),
        3,
        "1E5 and 100000e0 are spelled differently"
    );
    // `"&"` and `"\u0026"` are the same string, so the same lookup.
    let same = modstate(&path, &["get", "ns", "op", r#"["n",1.0,1E5,"&"]"#]);
    assert_eq!(code(&same), 0, "{}", stderr(&same));

    let ls = Command::new(BIN)
        .args(["--json", "lockfile", "--file"])
        .arg(&path)
        .arg("ls")
        .output()
        .unwrap();
    assert_eq!(
        stdout(&ls),
        format!(
            "[{{\"namespace\":\"ns\",\"operation\":\"op\",\"inputs\":{compact_inputs},\"value\":{compact_value}}}]\n"
        )
    );
}

#[test]
fn duplicates_last_wins_and_comments_survive_writes() {
    let text = "# keep me\n#\n[[\"version\",\"2\"]]\n\
                [\"\",\"g\",[\"a\"],\"first\"]\n[\"\",\"g\",[\"a\"],\"second\"]\n";
    let (_dir, path) = workspace(text.as_bytes());
    let get = modstate(&path, &["get", "", "g", r#"["a"]"#]);
    assert_eq!(stdout(&get), "\"second\"\n");
    let set = modstate(&path, &["set", "", "g", r#"["b"]"#, "true"]);
    assert_eq!(code(&set), 0);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# keep me\n#\n[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],\"second\"]\n[\"\",\"g\",[\"b\"],true]\n"
    );
    let rm = modstate(&path, &["rm", "", "g", r#"["a"]"#]);
    assert_eq!(code(&rm), 0);
    let rm = modstate(&path, &["rm", "", "g", r#"["a"]"#]);
    assert_eq!(code(&rm), 3);
    let rm = modstate(&path, &["rm", "", "g", r#"["b"]"#]);
    assert_eq!(code(&rm), 0);
    // An empty lockfile is its comments and header.
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# keep me\n#\n[[\"version\",\"2\"]]\n"
    );
}

#[test]
fn ls_filters_and_get_of_a_missing_file_is_absent() {
    let (_dir, path) = workspace(&fixture());
    let ls = modstate(&path, &["ls", "--operation", "oci-latest"]);
    assert_eq!(code(&ls), 0);
    assert_eq!(stdout(&ls).lines().count(), 4);
    assert!(
        stdout(&ls)
            .lines()
            .all(|l| l.starts_with("[\"\",\"oci-latest\","))
    );
    assert_eq!(stdout(&modstate(&path, &["ls", "--namespace", "x"])), "");

    let missing = path.with_file_name("other.lock");
    assert_eq!(code(&modstate(&missing, &["get", "", "g", "[]"])), 3);
    assert_eq!(code(&modstate(&missing, &["fmt"])), 3);
    assert_eq!(stdout(&modstate(&missing, &["ls"])), "");
    assert!(!missing.exists() && !lock_path(&missing).exists());
}

// ---------------------------------------------------------------- sessions

#[test]
fn session_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Session>();
}

#[test]
fn a_reading_session_reads_once_and_never_writes() {
    let bytes = fixture();
    let (_dir, path) = workspace(&bytes);
    let before = snapshot(&path);
    let keys: Vec<Key> = parse(&bytes).iter().map(|(k, _)| k.clone()).collect();
    let session = Session::open(&path);
    assert_eq!(session.file_reads(), 0, "opening read the file");
    std::thread::scope(|scope| {
        for t in 0..16 {
            let (session, keys) = (&session, &keys);
            scope.spawn(move || {
                for (i, key) in keys.iter().enumerate().skip(t % 4) {
                    assert!(session.get(key).unwrap().is_some(), "entry {i}");
                }
                let miss = key("", "git-sha", json!(["nope", t]));
                assert!(session.get(&miss).unwrap().is_none());
                assert_eq!(session.entries().unwrap().len(), 80);
            });
        }
    });
    assert_eq!(session.file_reads(), 1);
    // Setting what is already pinned changes nothing.
    let (k, v) = parse(&bytes)
        .iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .unwrap();
    assert!(!session.set(k, v).unwrap());
    assert!(!session.is_dirty());
    session.close().unwrap();
    assert_eq!(snapshot(&path), before);
    assert!(
        !lock_path(&path).exists(),
        "a read-only session took the lock"
    );
}

#[test]
fn an_untouched_session_does_no_io() {
    // The directory does not exist: any read, lock or write would fail.
    let session = Session::open("/nonexistent-modstate-dir/dagger.lock");
    assert_eq!(session.file_reads(), 0);
    session.close().unwrap();
}

#[test]
fn hundred_threads_set_on_one_session_then_one_flush() {
    let (_dir, path) = workspace(&fixture());
    let session = Session::open(&path);
    std::thread::scope(|scope| {
        for t in 0..100 {
            let session = &session;
            scope.spawn(move || {
                let k = key("threads", "set", json!([format!("thread-{t:03}")]));
                assert!(session.set(k, Json::from_value(json!(t))).unwrap());
            });
        }
    });
    assert_eq!(session.file_writes(), 0, "a set wrote before the flush");
    assert_eq!(session.file_reads(), 1);
    session.flush().unwrap();
    // One read on first access, one re-read under the lock, one write.
    assert_eq!((session.file_reads(), session.file_writes()), (2, 1));
    session.close().unwrap();
    let after = parse(&fs::read(&path).unwrap());
    assert_eq!(after.len(), 80 + 100);
    for t in 0..100 {
        let k = key("threads", "set", json!([format!("thread-{t:03}")]));
        assert_eq!(after.get(&k).unwrap().value(), &json!(t));
    }
    let mode = fs::metadata(lock_path(&path)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn dropping_a_session_flushes_and_discard_does_not() {
    let (_dir, path) = workspace(b"");
    {
        let session = Session::open(&path);
        session
            .set(key("", "g", json!(["dropped"])), json!(1).into())
            .unwrap();
    }
    assert!(fs::read_to_string(&path).unwrap().contains("dropped"));
    let before = snapshot(&path);
    let session = Session::open(&path);
    session
        .set(key("", "g", json!(["discarded"])), json!(1).into())
        .unwrap();
    session.discard();
    assert_eq!(snapshot(&path), before);
}

// ---------------------------------------------------------------- processes

#[test]
fn two_processes_merge_and_a_third_writers_entry_survives() {
    let bytes = fixture();
    let (_dir, path) = workspace(&bytes);
    let busybox = r#"["","oci-latest",["docker.io/library/busybox"]"#;
    let mut a = Batch::spawn(&path);
    let mut b = Batch::spawn(&path);
    // Both sessions load the file as it is now.
    for batch in [&mut a, &mut b] {
        let answer = batch.request(&format!("[\"get\",{}]", &busybox[1..]));
        assert_eq!(answer, r#"["ok","1.38.0"]"#);
    }
    // A third process rewrites an unrelated entry after they loaded, before they flush.
    let c = modstate(
        &path,
        &[
            "set",
            "",
            "oci-latest",
            r#"["docker.io/library/busybox"]"#,
            r#""1.39.0""#,
        ],
    );
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    for i in 0..50 {
        assert_eq!(
            a.request(&format!(r#"["set","a","pin",["k{i}"],{i}]"#)),
            r#"["ok"]"#
        );
        assert_eq!(
            b.request(&format!(r#"["set","b","pin",["k{i}"],{i}]"#)),
            r#"["ok"]"#
        );
    }
    // Both still see their own view (not C's write): they read once.
    assert_eq!(
        a.request(&format!("[\"get\",{}]", &busybox[1..])),
        r#"["ok","1.38.0"]"#
    );
    // Flush at nearly the same time.
    a.close_input();
    b.close_input();
    for batch in [a, b] {
        let out = batch.wait();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let after = parse(&fs::read(&path).unwrap());
    assert_eq!(after.len(), 80 + 100);
    for ns in ["a", "b"] {
        for i in 0..50 {
            let v = after
                .get(&key(ns, "pin", json!([format!("k{i}")])))
                .unwrap();
            assert_eq!(v.value(), &json!(i));
        }
    }
    let k = key("", "oci-latest", json!(["docker.io/library/busybox"]));
    assert_eq!(after.get(&k).unwrap().value(), &json!("1.39.0"));
    // Every other fixture entry is intact, and the comments too.
    for (k, v) in parse(&bytes).iter() {
        if k.operation() != "oci-latest" || k.inputs().text() != r#"["docker.io/library/busybox"]"# {
            assert_eq!(after.get(k), Some(v), "{}", k.text());
        }
    }
    assert_eq!(after.comments(), parse(&bytes).comments());
}

#[test]
fn for_one_key_the_last_flusher_wins() {
    let (_dir, path) = workspace(&fixture());
    let mut first = Batch::spawn(&path);
    let mut last = Batch::spawn(&path);
    assert_eq!(
        first.request(r#"["set","","g",["same"],"first"]"#),
        r#"["ok"]"#
    );
    assert_eq!(
        last.request(r#"["set","","g",["same"],"last"]"#),
        r#"["ok"]"#
    );
    assert_eq!(code(&first.wait()), 0);
    assert_eq!(code(&last.wait()), 0);
    let get = modstate(&path, &["get", "", "g", r#"["same"]"#]);
    assert_eq!(stdout(&get), "\"last\"\n");
}

#[test]
fn a_session_killed_before_close_leaves_the_file_as_it_was() {
    let (_dir, path) = workspace(&fixture());
    let before = snapshot(&path);
    let mut batch = Batch::spawn(&path);
    for i in 0..50 {
        assert_eq!(
            batch.request(&format!(r#"["set","k","pin",["{i}"],{i}]"#)),
            r#"["ok"]"#
        );
    }
    assert_eq!(
        batch.request(r#"["rm","","oci-latest",["docker.io/library/busybox"]]"#),
        r#"["ok"]"#
    );
    batch.child.kill().unwrap(); // SIGKILL
    let status = batch.child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(snapshot(&path), before);
    // Nothing else was left behind either: it never got as far as the lock.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["dagger.lock"]);
}

#[test]
fn a_session_killed_while_flushing_leaves_the_old_or_the_new_file() {
    let mut base = parse(&fixture());
    for i in 0..5_000 {
        base.set(
            key("bulk", "pin", json!([i])),
            json!(format!("{i:0>64}")).into(),
        );
    }
    let old = base.to_text();
    // Starts a session with 20 changes, ends its input (so it flushes) and returns it with the
    // file the flush would write.
    let start = |round: u64, path: &Path| {
        let mut batch = Batch::spawn(path);
        let mut new = base.clone();
        for i in 0..20 {
            let k = key("round", "pin", json!([round, i]));
            batch.request(&format!(r#"["set","round","pin",{},{i}]"#, k.inputs()));
            new.set(k, json!(i).into());
        }
        batch.close_input();
        (batch, new.to_text())
    };
    // How long an undisturbed flush takes here, to spread the kills over it.
    let (_dir, path) = workspace(old.as_bytes());
    let (batch, new) = start(99, &path);
    let started = std::time::Instant::now();
    assert_eq!(code(&batch.wait()), 0);
    let flush_time = started.elapsed();
    assert_eq!(fs::read_to_string(&path).unwrap(), new);

    let rounds = 12u32;
    for round in 0..rounds {
        let (_dir, path) = workspace(old.as_bytes());
        let (mut batch, new) = start(round.into(), &path);
        std::thread::sleep(flush_time * round / (rounds - 2));
        let _ = batch.child.kill();
        let _ = batch.child.wait();
        let now = fs::read_to_string(&path).unwrap();
        assert!(
            now == old || now == new,
            "round {round}: a torn file ({} bytes)",
            now.len()
        );
    }
}

#[test]
fn a_flush_refuses_a_file_that_became_unreadable_and_leaves_it_alone() {
    for replacement in [
        "[[\"version\",\"3\"]]\nnew format\n",
        "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1,\n",
    ] {
        let (_dir, path) = workspace(&fixture());
        let mut batch = Batch::spawn(&path);
        assert_eq!(batch.request(r#"["set","","g",["b"],2]"#), r#"["ok"]"#);
        fs::write(&path, replacement).unwrap();
        age(&path);
        let before = snapshot(&path);
        let out = batch.wait();
        assert_eq!(code(&out), 6, "{}", stderr(&out));
        assert_eq!(snapshot(&path), before);
    }
}

#[test]
fn a_held_lock_makes_a_writer_wait_then_time_out_with_exit_5() {
    let (_dir, path) = workspace(&fixture());
    let before = snapshot(&path);
    let holder = fs::File::create(lock_path(&path)).unwrap();
    fs2::FileExt::lock_exclusive(&holder).unwrap();
    let out = Command::new(BIN)
        .args(["--lock-timeout", "1.5", "lockfile", "--file"])
        .arg(&path)
        .args(["set", "", "g", r#"["a"]"#, "1"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Blocking waiting for lock on"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&path), before);
    // Readers never take the lock.
    assert_eq!(
        code(&modstate(
            &path,
            &["get", "", "oci-latest", r#"["docker.io/library/busybox"]"#]
        )),
        0
    );
    fs2::FileExt::unlock(&holder).unwrap();
    assert_eq!(
        code(&modstate(&path, &["set", "", "g", r#"["a"]"#, "1"])),
        0
    );
}

#[test]
fn a_bad_batch_request_writes_nothing() {
    let (_dir, path) = workspace(&fixture());
    let before = snapshot(&path);
    let mut batch = Batch::spawn(&path);
    assert_eq!(batch.request(r#"["set","","g",["a"],1]"#), r#"["ok"]"#);
    assert_eq!(batch.request(r#"["get","","g",["a"]]"#), r#"["ok",1]"#);
    assert_eq!(batch.request(r#"["get","","g",["zz"]]"#), r#"["absent"]"#);
    assert_eq!(batch.request(r#"["set","","g",["b"]]"#), "");
    let out = batch.wait();
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("stdin line 4"), "{}", stderr(&out));
    assert_eq!(snapshot(&path), before);
}

#[test]
fn batch_flush_request_writes_mid_session() {
    let (_dir, path) = workspace(b"");
    let mut batch = Batch::spawn(&path);
    assert_eq!(batch.request(r#"["set","","g",["a"],1]"#), r#"["ok"]"#);
    assert_eq!(batch.request(r#"["flush"]"#), r#"["ok"]"#);
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .contains(r#"["","g",["a"],1]"#)
    );
    assert_eq!(batch.request(r#"["rm","","g",["a"]]"#), r#"["ok"]"#);
    assert_eq!(code(&batch.wait()), 0);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[[\"version\",\"2\"]]\n"
    );
}
