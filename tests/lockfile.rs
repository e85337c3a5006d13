//! dagger.lock: format, sessions, and the `modstate lockfile` commands. Concurrency and crash
//! claims run real `modstate` processes (`lockfile batch` keeps one session open on stdin).
//!
//! The fixtures are real lockfiles copied byte for byte from public repositories
//! (`fixtures/dagger-lock/SOURCES.txt`): Dagger's own `dagger.lock`, a version 1 `.dagger/lock`
//! with policies, and a dialect with a comment block and nested option pairs in inputs.

use crate::common::{BIN, code, stderr};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use modstate::Error;
use modstate::lockfile::{Json, Key, Lockfile, Session, SetOutcome};
use serde_json::json;

/// `dagger.lock` from github.com/dagger/dagger: version 2, object values, no comments.
const DAGGER_MAIN: &str = "dagger-main.dagger.lock";
/// `.dagger/lock` from github.com/dagger/python-sdk: version 1 with pin/float policies.
const PYTHON_SDK_V1: &str = "python-sdk-v1.dagger-lock";
/// `dagger.lock` from github.com/vito/dang: a comment block, nested option pairs in inputs.
const DANG_COMMENTS: &str = "dang-comments.dagger.lock";

fn sample(name: &str) -> Vec<u8> {
    fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/dagger-lock")
            .join(name),
    )
    .unwrap()
}

/// The sample most session tests start from (15 entries under a comment block).
fn fixture() -> Vec<u8> {
    sample(DANG_COMMENTS)
}

/// An entry of [`fixture`], and its value.
const APKO: &str = r#"["cgr.dev/chainguard/apko"]"#;
const FIXTURE_ENTRIES: usize = 15;

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

/// `modstate lockfile ARGS` run in `dir` without `--file`.
fn modstate_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("lockfile")
        .args(args)
        .output()
        .unwrap()
}

/// `modstate lockfile --file FILE batch` fed `stdin` all at once.
fn batch_with(file: &Path, stdin: &str) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("lockfile").arg("--file").arg(file).arg("batch");
    crate::common::output_with_stdin(&mut cmd, stdin.as_bytes())
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

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
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

/// The version 1 sample as Dagger rewrites it: version 2, the policies gone, sorted, no
/// trailing newline.
const PYTHON_SDK_AS_V2: &str = concat!(
    r#"[["version","2"]]"#,
    "\n",
    r#"["","container.from",["docker.io/library/golang:1.25-alpine","linux/arm64"],"sha256:8d22e29d960bc50cd025d93d5b7c7d220b1ee9aa7a239b3c8f55a57e987e8d45"]"#,
    "\n",
    r#"["","git.head",["https://github.com/dagger/sdk-sdk"],"d6ab6406586e6b3853b8936b2b3a96bba2554071"]"#,
);

#[test]
fn real_version_2_samples_round_trip_byte_for_byte() {
    for (name, entries, comments) in [(DAGGER_MAIN, 16, false), (DANG_COMMENTS, 15, true)] {
        let bytes = sample(name);
        assert!(
            !bytes.ends_with(b"\n"),
            "{name}: Dagger writes no trailing newline"
        );
        let lockfile = parse(&bytes);
        assert_eq!(lockfile.len(), entries, "{name}");
        assert_eq!(!lockfile.comments().is_empty(), comments, "{name}");
        assert!(
            lockfile.notices().is_empty(),
            "{name}: {:?}",
            lockfile.notices()
        );
        assert_eq!(lockfile.to_text().as_bytes(), bytes.as_slice(), "{name}");

        let (_dir, path) = workspace(&bytes);
        let before = snapshot(&path);
        let check = modstate(&path, &["fmt", "--check"]);
        assert_eq!(code(&check), 0, "{name}: {}", stderr(&check));
        let fmt = modstate(&path, &["fmt"]);
        assert_eq!(
            (code(&fmt), stdout(&fmt).as_str()),
            (0, ""),
            "{name}: {}",
            stderr(&fmt)
        );
        assert_eq!(
            stderr(&fmt),
            "",
            "{name}: a rewrite that changed nothing said something"
        );
        // Already canonical: not even rewritten with the same bytes.
        assert_eq!(snapshot(&path), before, "{name}");
    }
    // The dang sample's nested option pairs are inputs like any other, and findable.
    let (_dir, path) = workspace(&sample(DANG_COMMENTS));
    let get = modstate(
        &path,
        &[
            "get",
            "",
            "git-latest",
            r#"["github.com/vito/agents",["tagPrefix","staff"]]"#,
        ],
    );
    assert_eq!(stdout(&get), "\"refs/heads/main\"\n", "{}", stderr(&get));
    // Object values (Dagger's git.ref results) are read and kept.
    let (_dir, path) = workspace(&sample(DAGGER_MAIN));
    let get = modstate(
        &path,
        &[
            "get",
            "",
            "git.ref",
            r#"["https://github.com/vito/editor","HEAD"]"#,
        ],
    );
    assert_eq!(
        stdout(&get),
        "{\"sha\":\"1e1ded886d1252071f8b50ada6a4580af8c53866\"}\n"
    );
}

#[test]
fn the_version_1_sample_is_rewritten_as_daggers_version_2_bytes() {
    let bytes = sample(PYTHON_SDK_V1);
    assert_eq!(parse(&bytes).to_text(), PYTHON_SDK_AS_V2);

    let (_dir, path) = workspace(&bytes);
    let before = snapshot(&path);
    let get = modstate(
        &path,
        &[
            "get",
            "",
            "git.head",
            r#"["https://github.com/dagger/sdk-sdk"]"#,
        ],
    );
    assert_eq!(
        (code(&get), stdout(&get).as_str()),
        (0, "\"d6ab6406586e6b3853b8936b2b3a96bba2554071\"\n")
    );
    assert_eq!(snapshot(&path), before, "a read rewrote the file");
    let check = modstate(&path, &["fmt", "--check"]);
    assert_eq!(code(&check), 1);
    assert_eq!(snapshot(&path), before, "fmt --check wrote");

    let fmt = modstate(&path, &["fmt"]);
    assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
    assert_eq!(fs::read_to_string(&path).unwrap(), PYTHON_SDK_AS_V2);
    // The rewrite says what it dropped, one line, naming the file.
    assert_eq!(
        stderr(&fmt),
        format!(
            "{}: version 1 lockfile rewritten as version 2: dropped the pin/float policy of 2 entries (1 \"float\"); they are now pins\n",
            path.display()
        )
    );
    // And from then on it is stable, silently.
    let again = modstate(&path, &["fmt"]);
    assert_eq!((code(&again), stderr(&again).as_str()), (0, ""));
    assert_eq!(fs::read_to_string(&path).unwrap(), PYTHON_SDK_AS_V2);

    // Any write rewrites a version 1 file as version 2, and says so too.
    fs::write(&path, &bytes).unwrap();
    let set = modstate(
        &path,
        &[
            "set",
            "",
            "git.head",
            r#"["https://github.com/a/b"]"#,
            r#""abc""#,
        ],
    );
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    assert!(
        stderr(&set).contains("dropped the pin/float policy of 2 entries"),
        "{}",
        stderr(&set)
    );
    let expected = PYTHON_SDK_AS_V2.replace(
        "[\"\",\"git.head\"",
        "[\"\",\"git.head\",[\"https://github.com/a/b\"],\"abc\"]\n[\"\",\"git.head\"",
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), expected);
}

#[test]
fn shuffled_crlf_samples_sort_back_to_the_samples() {
    for name in [DAGGER_MAIN, DANG_COMMENTS] {
        let bytes = sample(name);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let (head, entries): (Vec<&str>, Vec<&str>) = text
            .lines()
            .partition(|l| l.starts_with('#') || l.starts_with("[[\"version\""));
        let comments: String = head
            .iter()
            .filter(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        // Entries reversed, CRLF endings, blank lines and stray spaces: Dagger reads it all.
        let mut shuffled = format!("{comments}\r\n  [[\"version\", \"2\"]] \r\n");
        for line in entries.iter().rev() {
            shuffled.push_str(&format!("\r\n {line}\r\n"));
        }
        let (_dir, path) = workspace(shuffled.as_bytes());
        let before = snapshot(&path);
        let check = modstate(&path, &["fmt", "--check"]);
        assert_eq!(code(&check), 1, "{name}");
        assert!(stderr(&check).contains("not in canonical form"));
        assert_eq!(snapshot(&path), before, "fmt --check wrote");
        let fmt = modstate(&path, &["fmt"]);
        assert_eq!(code(&fmt), 0, "{}", stderr(&fmt));
        // In the dang sample `[…sdk-helpers",["version","v1"]]` sorts before a bare
        // `[…vito/editor"]` only by its text; ',' < ']' decides between equal prefixes.
        assert_eq!(fs::read(&path).unwrap(), bytes, "{name}");
    }
}

/// A file Dagger wrote, stated literally: every rule of its writer shows in it.
const DAGGER_WROTE: &str = concat!(
    "[[\"version\",\"2\"]]\n",
    "[\"\",\"git-latest\",[\"github.com/a/b\",[\"tagPrefix\",\"v\"]],\"refs/tags/v1\"]\n",
    "[\"\",\"git-latest\",[\"github.com/a/b\"],\"refs/heads/main\"]\n",
    "[\"\",\"git.ref\",[\"https://github.com/a/b\",\"HEAD\"],{\"ref\":\"refs/heads/main\",\"sha\":\"abc\"}]\n",
    "[\"\",\"oci-sha\",[\"\\u003cimg\\u003e\\u0026co\",\"é/ü\"],\"line\\u2028sep \\\"q\\\" \\\\ \\n\\t\\u0001\"]\n",
    "[\"ns\",\"n\",[1.50,1E5,-0,[]],{\"a\":[true,null],\"z\":2.5e-3}]",
);

/// The same entries as another writer might spell them: unsorted, spaced, other escapes,
/// object keys out of order, CRLF.
const SAME_ENTRIES_RESPELLED: &[&str] = &[
    r#"["set","ns","n",[1.50, 1E5, -0, []],{"z":2.5e-3,"a":[true,null]}]"#,
    r#"["set","","oci-sha",["<img>&co","\u00e9\/\u00fc"],"line\u2028sep \"q\" \\ \n\t\u0001"]"#,
    r#"["set","","git.ref",["https://github.com/a/b","HEAD"],{"sha":"abc","ref":"refs/heads/main"}]"#,
    r#"["set","","git-latest",["github.com/a/b"],"refs/heads/main"]"#,
    r#"["set","","git-latest",["github.com/a/b",["tagPrefix","v"]],"refs/tags/v1"]"#,
];

#[test]
fn a_file_alternating_between_dagger_and_modstate_writes_never_changes() {
    // modstate writes the entries, from nothing: exactly Dagger's bytes.
    let (_dir, path) = workspace(b"");
    fs::remove_file(&path).unwrap();
    let out = batch_with(&path, &(SAME_ENTRIES_RESPELLED.join("\r\n") + "\r\n"));
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(fs::read_to_string(&path).unwrap(), DAGGER_WROTE);

    for round in 0..3 {
        // Dagger writes the file (the same entries, its bytes).
        fs::write(&path, DAGGER_WROTE).unwrap();
        age(&path);
        let before = snapshot(&path);
        // modstate reads it, checks it, pins the same values again, formats it: nothing moves.
        let check = modstate(&path, &["fmt", "--check"]);
        assert_eq!(code(&check), 0, "round {round}: {}", stderr(&check));
        let out = batch_with(&path, &SAME_ENTRIES_RESPELLED.join("\n"));
        assert_eq!(code(&out), 0, "{}", stderr(&out));
        assert_eq!(code(&modstate(&path, &["fmt"])), 0);
        assert_eq!(
            snapshot(&path),
            before,
            "round {round}: modstate touched Dagger's file"
        );
        // modstate writes (a pin added and removed again, two real writes): Dagger's bytes.
        let set = modstate(&path, &["set", "zz", "tmp", "[]", "1"]);
        assert_eq!(code(&set), 0, "{}", stderr(&set));
        assert_ne!(fs::read_to_string(&path).unwrap(), DAGGER_WROTE);
        let rm = modstate(&path, &["rm", "zz", "tmp", "[]"]);
        assert_eq!(code(&rm), 0, "{}", stderr(&rm));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            DAGGER_WROTE,
            "round {round}"
        );
    }
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

    let nested = r#"["github.com/dagger/sdk-helpers",["version","v2"],[["deep",[1,2]]]]"#;
    let out = modstate(
        &path,
        &["set", "", "git-latest", nested, r#""refs/tags/v2.0.0""#],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = fs::read_to_string(&path).unwrap();
    let line = format!("[\"\",\"git-latest\",{nested},\"refs/tags/v2.0.0\"]");
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle} missing"))
    };
    // Sorted as Dagger sorts: after the v1 option pair, before the vito/agents entries.
    assert!(at("[\"github.com/dagger/sdk-helpers\",[\"version\",\"v1\"]]") < at(&line));
    assert!(at(&line) < at("[\"\",\"git-latest\",[\"github.com/vito/agents\","));
    // Everything else is the sample, byte for byte.
    assert_eq!(
        text.replace(&format!("{line}\n"), ""),
        String::from_utf8(fixture()).unwrap()
    );

    // A file with an object in some inputs names the line.
    let bad = "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[{\"k\":1}],2]\n";
    fs::write(&path, bad).unwrap();
    let out = modstate(&path, &["ls"]);
    assert_eq!(code(&out), 6);
    assert!(stderr(&out).contains("dagger.lock:3:"), "{}", stderr(&out));
}

#[test]
fn what_dagger_refuses_exits_6_naming_the_line_and_leaves_the_file() {
    let h = "[[\"version\",\"2\"]]\n";
    let v1 = "[[\"version\",\"1\"]]\n";
    let cases: &[(String, &str)] = &[
        (format!("# c\n{h}[\"\",\"g\",[\"a\"],1\n"), ":3:"), // bad JSON
        (format!("{h}not-json\n"), ":2:"),                   // not JSON at all
        (format!("{h}[\"\",\"g\",[\"a\"]]\n"), ":2:"),       // wrong length
        (format!("{h}[\"\",\"g\",[\"a\"],1,\"pin\"]\n"), ":2:"), // a policy in version 2
        (format!("{v1}[\"\",\"g\",[\"a\"],1]\n"), ":2:"),    // no policy in version 1
        (format!("{h}[\"\",\"g\",[\"a\"],1] junk\n"), ":2:"), // trailing garbage
        (format!("{h}[\"\",\"g\",[\"a\"],1][2]\n"), ":2:"),  // two values on a line
        ("[\"\",\"g\",[\"a\"],1]\n".into(), ":1:"),          // missing header
        (format!("{h}[\"\",\"g\",[\"a\"],1]\n# late\n"), ":3:"), // comment after the header
        (format!("{h}[\"\",7,[\"a\"],1]\n"), ":2:"),         // operation not a string
        (format!("{h}{h}"), ":2:"),                          // header twice
        (format!("{h}\n\n[\"\",\"g\",\"a\",1]\n"), ":4:"),   // inputs not an array
        (format!("{h}[\"\",\"g\",[[{{\"k\":1}}]],1]\n"), ":2:"), // an object in inputs
        ("[[\"version\"]]\n".into(), ":1:"),                 // bad header
        ("[[\"version\",\"2\"],[\"hash\",\"x\"]]\n".into(), ":1:"), // header with more
        (format!("{h}[\"\",\"g\",[\"a\"],\"\u{1}\"]\n"), ":2:"), // raw control character
    ];
    for (text, line) in cases {
        let (_dir, path) = workspace(text.as_bytes());
        let before = snapshot(&path);
        for args in [
            &["ls"][..],
            &["set", "", "g", "[\"z\"]", "1"],
            &["fmt"],
            &["fmt", "--check"],
        ] {
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
fn numbers_and_spellings_are_written_as_go_writes_them() {
    let (_dir, path) = workspace(b"");
    let inputs = r#"["n", 1.0, 1E5, "\u0026"]"#;
    let value = r#"{"z": 1.50, "a": [-0, 123456789012345678901234567890, 1e-7, 2.5E+10]}"#;
    let out = modstate(&path, &["set", "ns", "op", inputs, value]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let canonical_inputs = r#"["n",1.0,1E5,"\u0026"]"#;
    let canonical_value = r#"{"a":[-0,123456789012345678901234567890,1e-7,2.5E+10],"z":1.50}"#;
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        format!("[[\"version\",\"2\"]]\n[\"ns\",\"op\",{canonical_inputs},{canonical_value}]")
    );
    let get = modstate(&path, &["get", "ns", "op", canonical_inputs]);
    assert_eq!(stdout(&get), format!("{canonical_value}\n"));
    // `1` is not `1.0`, and 1E5 is not 100000e0: json.Number keeps the spelling.
    let other = modstate(&path, &["get", "ns", "op", r#"["n",1,1E5,"&"]"#]);
    assert_eq!(code(&other), 3);
    let respelled = modstate(&path, &["get", "ns", "op", r#"["n",1.0,100000e0,"&"]"#]);
    assert_eq!(code(&respelled), 3);
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
            "[{{\"namespace\":\"ns\",\"operation\":\"op\",\"inputs\":{canonical_inputs},\"value\":{canonical_value}}}]\n"
        )
    );
}

#[test]
fn duplicates_collapse_saying_so_and_comments_survive_writes() {
    let text = "# keep me\n#\n[[\"version\",\"2\"]]\n\
                [\"\",\"g\",[\"a\"],\"first\"]\n[\"\",\"g\",[\"\\u0061\"],\"second\"]\n";
    let (_dir, path) = workspace(text.as_bytes());
    let get = modstate(&path, &["get", "", "g", r#"["a"]"#]);
    assert_eq!(stdout(&get), "\"second\"\n");
    assert_eq!(stderr(&get), "", "a read rewrote nothing and says nothing");
    let set = modstate(&path, &["set", "", "g", r#"["b"]"#, "true"]);
    assert_eq!(code(&set), 0);
    assert_eq!(
        stderr(&set),
        format!(
            "{}: entry [\"\",\"g\",[\"a\"]] appears on lines 4 and 5; kept line 5 (the last one wins, as in Dagger)\n",
            path.display()
        )
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "# keep me\n#\n[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],\"second\"]\n[\"\",\"g\",[\"b\"],true]"
    );
    let rm = modstate(&path, &["rm", "", "g", r#"["a"]"#]);
    assert_eq!((code(&rm), stderr(&rm).as_str()), (0, ""));
    let rm = modstate(&path, &["rm", "", "g", r#"["a"]"#]);
    assert_eq!(code(&rm), 3);
    let rm = modstate(&path, &["rm", "", "g", r#"["b"]"#]);
    assert_eq!(code(&rm), 0);
    // No entries: Dagger writes nothing at all; the comment block stays.
    assert_eq!(fs::read_to_string(&path).unwrap(), "# keep me\n#\n");
    let (_dir, bare) = workspace(b"[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]");
    assert_eq!(code(&modstate(&bare, &["rm", "", "g", r#"["a"]"#])), 0);
    assert_eq!(
        fs::read(&bare).unwrap(),
        b"",
        "an emptied lockfile is 0 bytes"
    );
}

#[test]
fn set_over_an_existing_pin_says_what_it_replaced() {
    let (_dir, path) = workspace(&fixture());
    let set = modstate(&path, &["set", "", "oci-latest", APKO, r#""v1.2""#]);
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    assert_eq!(
        stderr(&set),
        format!(
            "{}: replaced \"latest\" with \"v1.2\" for [\"\",\"oci-latest\",[\"cgr.dev/chainguard/apko\"]]\n",
            path.display()
        )
    );
    assert_eq!(
        stdout(&set),
        "[\"\",\"oci-latest\",[\"cgr.dev/chainguard/apko\"],\"v1.2\"]\n"
    );
    let json = Command::new(BIN)
        .args(["--json", "lockfile", "--file"])
        .arg(&path)
        .args(["set", "", "oci-latest", APKO, r#""v1.3""#])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["replaced"], json!("v1.2"));
    assert_eq!(doc["changed"], json!(true));
    // A new pin, or the same value again, replaced nothing.
    let new = modstate(&path, &["set", "", "oci-latest", r#"["new"]"#, "1"]);
    assert_eq!(stderr(&new), "");
    let same = modstate(&path, &["set", "", "oci-latest", r#"["new"]"#, "1"]);
    assert_eq!(stderr(&same), "");
}

#[test]
fn without_file_dagger_lock_then_the_legacy_dagger_lock_is_used_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let inputs = r#"["https://github.com/dagger/sdk-sdk"]"#;
    // Only the legacy .dagger/lock: read (and written) there, and said so.
    fs::create_dir(root.join(".dagger")).unwrap();
    fs::write(root.join(".dagger/lock"), sample(PYTHON_SDK_V1)).unwrap();
    let get = modstate_in(root, &["get", "", "git.head", inputs]);
    assert_eq!(code(&get), 0, "{}", stderr(&get));
    assert_eq!(
        stdout(&get),
        "\"d6ab6406586e6b3853b8936b2b3a96bba2554071\"\n"
    );
    assert_eq!(
        stderr(&get),
        "using .dagger/lock (the legacy location; there is no dagger.lock here)\n"
    );
    let set = modstate_in(root, &["set", "", "git.head", r#"["x"]"#, r#""y""#]);
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    assert!(
        !root.join("dagger.lock").exists(),
        "a legacy file's write went elsewhere"
    );
    assert!(
        fs::read_to_string(root.join(".dagger/lock"))
            .unwrap()
            .contains("[\"x\"],\"y\"]")
    );

    // dagger.lock beside .dagger/ wins over the legacy file.
    fs::write(root.join("dagger.lock"), sample(DAGGER_MAIN)).unwrap();
    let get = modstate_in(root, &["get", "", "git.head", inputs]);
    assert_eq!(code(&get), 3, "{}", stderr(&get));
    assert!(stderr(&get).contains("in dagger.lock"), "{}", stderr(&get));
    let ls = modstate_in(root, &["ls", "--operation", "git.ref"]);
    assert_eq!(stdout(&ls).lines().count(), 8);
    assert_eq!(stderr(&ls), "using dagger.lock\n");

    // Neither: dagger.lock, created by the first write.
    let empty = tempfile::tempdir().unwrap();
    let ls = modstate_in(empty.path(), &["ls"]);
    assert_eq!((code(&ls), stdout(&ls).as_str()), (0, ""));
    assert_eq!(
        stderr(&ls),
        "using dagger.lock (not there yet, nor .dagger/lock)\n"
    );
    let set = modstate_in(empty.path(), &["set", "", "g", "[]", "1"]);
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    assert_eq!(
        fs::read_to_string(empty.path().join("dagger.lock")).unwrap(),
        "[[\"version\",\"2\"]]\n[\"\",\"g\",[],1]"
    );
}

#[test]
fn a_missing_file_named_with_file_is_not_an_empty_lockfile() {
    let (_dir, path) = workspace(&fixture());
    let missing = path.with_file_name("other.lock");
    for args in [
        &["get", "", "g", "[]"][..],
        &["ls"],
        &["rm", "", "g", "[]"],
        &["fmt"],
        &["fmt", "--check"],
    ] {
        let out = modstate(&missing, args);
        assert_eq!(code(&out), 3, "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out),
            format!(
                "error: no lockfile at {}; check the path, or `modstate lockfile set` creates one\n",
                missing.display()
            ),
            "{args:?}"
        );
        assert_eq!(stdout(&out), "");
    }
    assert!(!missing.exists() && !lock_path(&missing).exists());

    let ls = modstate(&path, &["ls", "--operation", "git-latest"]);
    assert_eq!(code(&ls), 0);
    assert_eq!(stdout(&ls).lines().count(), 6);
    assert!(
        stdout(&ls)
            .lines()
            .all(|l| l.starts_with("[\"\",\"git-latest\","))
    );
    assert_eq!(stdout(&modstate(&path, &["ls", "--namespace", "x"])), "");
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
                assert_eq!(session.entries().unwrap().len(), FIXTURE_ENTRIES);
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
    assert_eq!(session.set(k, v).unwrap(), SetOutcome::Unchanged);
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
                let outcome = session.set(k, Json::from_value(json!(t))).unwrap();
                assert_eq!(outcome, SetOutcome::Added);
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
    assert_eq!(after.len(), FIXTURE_ENTRIES + 100);
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
    let apko = format!(r#"["","oci-latest",{APKO}"#);
    let mut a = Batch::spawn(&path);
    let mut b = Batch::spawn(&path);
    // Both sessions load the file as it is now.
    for batch in [&mut a, &mut b] {
        let answer = batch.request(&format!("[\"get\",{}]", &apko[1..]));
        assert_eq!(answer, r#"["ok","latest"]"#);
    }
    // A third process rewrites an unrelated entry after they loaded, before they flush.
    let c = modstate(&path, &["set", "", "oci-latest", APKO, r#""v1.39.0""#]);
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
        a.request(&format!("[\"get\",{}]", &apko[1..])),
        r#"["ok","latest"]"#
    );
    // Flush at nearly the same time.
    a.close_input();
    b.close_input();
    for batch in [a, b] {
        let out = batch.wait();
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let after = parse(&fs::read(&path).unwrap());
    assert_eq!(after.len(), FIXTURE_ENTRIES + 100);
    for ns in ["a", "b"] {
        for i in 0..50 {
            let v = after
                .get(&key(ns, "pin", json!([format!("k{i}")])))
                .unwrap();
            assert_eq!(v.value(), &json!(i));
        }
    }
    let k = key("", "oci-latest", json!(["cgr.dev/chainguard/apko"]));
    assert_eq!(after.get(&k).unwrap().value(), &json!("v1.39.0"));
    // Every other fixture entry is intact, and the comments too.
    for (k, v) in parse(&bytes).iter() {
        if k.operation() != "oci-latest" || k.inputs().text() != APKO {
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
        batch.request(&format!(r#"["rm","","oci-latest",{APKO}]"#)),
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
#[allow(clippy::disallowed_methods)] // the test holds the lock itself, as a foreign process would
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
    assert_eq!(code(&modstate(&path, &["get", "", "oci-latest", APKO])), 0);
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
    assert!(
        stderr(&out).contains("nothing was written"),
        "{}",
        stderr(&out)
    );
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
    // Every entry removed: Dagger's empty lockfile, 0 bytes.
    assert_eq!(fs::read(&path).unwrap(), b"");
}

#[test]
fn a_batch_that_flushed_then_failed_says_what_was_written() {
    let (_dir, path) = workspace(b"");
    let out = batch_with(
        &path,
        concat!(
            "[\"set\",\"\",\"g\",[\"a\"],1]\n",
            "[\"set\",\"\",\"g\",[\"b\"],2]\n",
            "[\"flush\"]\n",
            "[\"set\",\"\",\"g\",[\"c\"],3]\n",
            "[\"get\",\"\",\"g\"]\n",
        ),
    );
    assert_eq!(code(&out), 6);
    assert_eq!(
        stderr(&out),
        format!(
            "error: stdin line 5: expected [\"get\",NS,OP,INPUTS], [\"set\",NS,OP,INPUTS,VALUE], [\"rm\",NS,OP,INPUTS] or [\"flush\"]; \
             the flush on stdin line 3 wrote 2 changes to {} and they stay; the 1 change after it was not written (last flush: line 3)\n",
            path.display()
        )
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],1]\n[\"\",\"g\",[\"b\"],2]"
    );
    // A flush that wrote nothing (the same pins again) is no "written" claim.
    let out = batch_with(
        &path,
        "[\"set\",\"\",\"g\",[\"a\"],1]\n[\"flush\"]\n[\"bad\"]\n",
    );
    assert_eq!(code(&out), 6);
    assert!(
        stderr(&out).ends_with("; nothing was written\n"),
        "{}",
        stderr(&out)
    );
    // The final flush failing after an earlier one wrote says so too.
    let (_dir, path) = workspace(b"");
    let mut batch = Batch::spawn(&path);
    assert_eq!(batch.request(r#"["set","","g",["a"],1]"#), r#"["ok"]"#);
    assert_eq!(batch.request(r#"["flush"]"#), r#"["ok"]"#);
    assert_eq!(batch.request(r#"["set","","g",["b"],2]"#), r#"["ok"]"#);
    fs::write(&path, "[[\"version\",\"3\"]]").unwrap();
    let out = batch.wait();
    assert_eq!(code(&out), 6);
    assert!(
        stderr(&out).contains("the flush on stdin line 2 wrote 1 change to"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_flush_returns_what_it_changed_as_data() {
    use modstate::lockfile::{Flush, Notice};
    let text =
        "[[\"version\",\"1\"]]\n[\"\",\"g\",[\"a\"],1,\"pin\"]\n[\"\",\"g\",[\"a\"],2,\"float\"]";
    let (_dir, path) = workspace(text.as_bytes());
    let session = Session::open(&path);
    assert_eq!(
        session
            .set(key("", "g", json!(["b"])), json!(3).into())
            .unwrap(),
        SetOutcome::Added
    );
    assert_eq!(
        session
            .set(key("", "g", json!(["a"])), json!(4).into())
            .unwrap(),
        SetOutcome::Replaced(json!(2).into())
    );
    let flush = session.close().unwrap();
    assert_eq!(
        flush,
        Flush {
            written: true,
            changes: 2,
            notices: vec![
                Notice::DuplicateEntry {
                    key: r#"["","g",["a"]]"#.into(),
                    lines: vec![2, 3],
                },
                Notice::PoliciesDropped {
                    entries: 2,
                    floats: 1
                },
            ],
        }
    );
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[[\"version\",\"2\"]]\n[\"\",\"g\",[\"a\"],4]\n[\"\",\"g\",[\"b\"],3]"
    );
    // Nothing left to say: a rewrite of Dagger's bytes writes nothing and notices nothing.
    let session = Session::open(&path);
    assert_eq!(session.rewrite().unwrap(), Flush::default());
    assert_eq!(session.file_writes(), 0);
}
