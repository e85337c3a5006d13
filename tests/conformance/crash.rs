//! A crash loop on any backend: writer processes (`artifact put`, `artifact put-many`,
//! `memory add`) SIGKILLed at random moments lose no acknowledged write, and leave nothing
//! half-written. (tests/crash.rs drives the library and the lockfile on SQLite.)

use super::Db;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// What a writer process was asked to do.
enum Write {
    Put(String, String),
    PutMany(Vec<(String, String)>),
    Memory(String),
}

fn envelope(tag: &str) -> String {
    // Big enough that a write takes a moment.
    format!(
        r#"{{"type":"Module","version":1,"state":{{"tag":"{tag}","pad":"{}"}}}}"#,
        "x".repeat(20_000)
    )
}

pub fn sigkill_during_writes_loses_no_acknowledged_write(db: &Db) {
    assert_eq!(db.run(&["init"]).status.code(), Some(0));
    let mut seed: u64 = 0x5eed_1234_abcd;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut acked: Vec<Write> = Vec::new();
    let mut unacked: Vec<Write> = Vec::new();
    let mut killed = 0;
    for round in 0..15 {
        let mut running: Vec<(Child, Write)> = Vec::new();
        for w in 0..4 {
            let tag = format!("r{round}w{w}");
            let digest = |t: &str| modstate::Digest::of(t.as_bytes()).as_str().to_owned();
            let (args, stdin, write): (Vec<String>, String, Write) = match (round + w) % 3 {
                0 => {
                    let (d, e) = (digest(&tag), envelope(&tag));
                    (
                        vec!["artifact".into(), "put".into(), d.clone(), "-".into()],
                        e.clone(),
                        Write::Put(d, e),
                    )
                }
                1 => {
                    let items: Vec<(String, String)> = (0..5)
                        .map(|i| {
                            let t = format!("{tag}i{i}");
                            (digest(&t), envelope(&t))
                        })
                        .collect();
                    let lines: String = items
                        .iter()
                        .map(|(d, e)| format!("{{\"digest\":\"{d}\",\"state\":{e}}}\n"))
                        .collect();
                    (
                        vec!["artifact".into(), "put-many".into(), "-".into()],
                        lines,
                        Write::PutMany(items),
                    )
                }
                _ => {
                    let text = format!("memory {tag}");
                    (
                        vec!["memory".into(), "add".into(), text.clone()],
                        String::new(),
                        Write::Memory(text),
                    )
                }
            };
            let mut child = db
                .cmd()
                .args(&args)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut input = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write as _;
                let _ = input.write_all(stdin.as_bytes());
            });
            running.push((child, write));
        }
        std::thread::sleep(Duration::from_millis(next(60)));
        for (child, _) in &mut running {
            let _ = child.kill();
        }
        for (mut child, write) in running {
            let status = child.wait().unwrap();
            if status.success() {
                acked.push(write);
            } else {
                killed += 1;
                unacked.push(write);
            }
        }
    }
    eprintln!("crash loop: {} acknowledged, {killed} killed", acked.len());

    // Every acknowledged write is there, byte for byte.
    let deadline = Instant::now() + Duration::from_secs(30);
    let memories = loop {
        // A killed writer's session may take a moment to go away on a server.
        let out = db
            .cmd()
            .args(["--json", "memory", "ls", "--limit", "10000"])
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            break page["memories"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["text"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let get = |d: &str| {
        let out = db.run(&["artifact", "get", d]);
        out.status.success().then_some(out.stdout)
    };
    for write in &acked {
        match write {
            Write::Put(d, e) => assert_eq!(get(d).as_deref(), Some(e.as_bytes()), "{d}"),
            Write::PutMany(items) => {
                for (d, e) in items {
                    assert_eq!(get(d).as_deref(), Some(e.as_bytes()), "{d}");
                }
            }
            Write::Memory(text) => assert!(memories.contains(text), "{text} lost"),
        }
    }
    // A killed write is all there or not there at all.
    for write in &unacked {
        match write {
            Write::Put(d, e) => {
                if let Some(bytes) = get(d) {
                    assert_eq!(bytes, e.as_bytes(), "{d} half-written");
                }
            }
            Write::PutMany(items) => {
                let present: Vec<bool> = items.iter().map(|(d, _)| get(d).is_some()).collect();
                assert!(
                    present.iter().all(|p| *p) || present.iter().all(|p| !*p),
                    "a killed put-many left part of its batch: {present:?}"
                );
            }
            Write::Memory(text) => {
                assert!(memories.iter().filter(|m| *m == text).count() <= 1);
            }
        }
    }
}
