//! Semantic and hybrid search (issue 25) through the CLI on any backend, with an embedding
//! server of fixed answers (`common::embedder::HashedServer`): both engines rank by the stored
//! vectors' similarity, highest first, and page exactly. On PostgreSQL the store lives on the
//! cluster with pgvector (`common::pgvector`); without pgvector it would refuse (see
//! `pg_vectors.rs`).

use super::Db;
use crate::common::embedder::{Hashed, HashedServer};
use crate::common::{assert_exit, json};
use modstate::embed::Quantized;

const DIMENSION: usize = 16;

/// `modstate --db DB --embedder URL --json ARGS`, exit 0, its JSON.
fn with_embedder(db: &Db, url: &str, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--embedder", url, "--json"];
    all.extend_from_slice(args);
    let out = db.run(&all);
    assert_exit(&out, 0);
    json(&out)
}

/// Every page of `query` in `mode`, `limit` at a time: (id, text, score) per hit.
fn pages(db: &Db, url: &str, query: &str, mode: &str, limit: usize) -> Vec<(String, String, f64)> {
    let limit = limit.to_string();
    let mut cursor: Option<String> = None;
    let mut out = Vec::new();
    loop {
        let mut args = vec!["memory", "search", "--mode", mode, "--limit", &limit];
        if let Some(c) = &cursor {
            args.extend(["--cursor", c.as_str()]);
        }
        args.extend(["--", query]);
        let page = with_embedder(db, url, &args);
        for m in page["memories"].as_array().unwrap() {
            out.push((
                m["id"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
                m["score"].as_f64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return out,
        }
    }
}

/// The cosine similarity of two texts' vectors as the embedder answers them.
fn cosine(a: &str, b: &str) -> f64 {
    let embedder = Hashed {
        dimension: DIMENSION,
    };
    let (a, b) = (embedder.vector(a), embedder.vector(b));
    let dot: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(&a) * norm(&b))
}

pub fn semantic_search_ranks_by_similarity_and_pages_exactly(db: &Db) {
    let server = HashedServer::start(DIMENSION);
    let url = server.url();
    let texts: Vec<String> = (0..25)
        .map(|i| {
            format!(
                "fact {i} about the {} service",
                ["deploy", "backup", "billing"][i % 3]
            )
        })
        .collect();
    for text in &texts {
        let out = db.run(&[
            "--embedder",
            &url,
            "memory",
            "add",
            "--namespace",
            "ns",
            "--",
            text,
        ]);
        assert_exit(&out, 0);
    }
    let query = texts[7].as_str();
    let all = pages(db, &url, query, "semantic", 100);
    assert_eq!(all.len(), texts.len());
    // The memory with the query's own text first; then by similarity, as computed here from
    // the embedder's vectors (the stored ones are quantised: within a few thousandths).
    assert_eq!(all[0].1, query);
    for pair in all.windows(2) {
        assert!(pair[0].2 >= pair[1].2, "{pair:?}");
    }
    for (_, text, score) in &all {
        let expected = cosine(query, text);
        assert!(
            (score - expected).abs() < 5e-3,
            "{text}: {score} vs {expected}"
        );
    }
    // The scores are the stored values' similarity, the same on every engine.
    let q = Quantized::of(
        &Hashed {
            dimension: DIMENSION,
        }
        .vector(query),
    )
    .unwrap();
    assert!((all[0].2 - q.similarity(&q)).abs() < 1e-2, "{}", all[0].2);
    // Pages of 4 continue exactly, in semantic and in hybrid mode.
    assert_eq!(pages(db, &url, query, "semantic", 4), all);
    let hybrid = pages(db, &url, "deploy service", "hybrid", 100);
    assert_eq!(hybrid.len(), texts.len());
    assert_eq!(pages(db, &url, "deploy service", "hybrid", 4), hybrid);
}
