//! PostgreSQL and vectors (issue 25): the throwaway cluster with pgvector (`common::pgvector`),
//! the store's vectors table on a server with and without the extension, and that semantic
//! search refuses where pgvector is missing while keyword search keeps working.

use crate::common::postgres::Cluster;

#[test]
fn the_pgvector_cluster_has_the_extensions_a_store_needs() {
    let Some(cluster) = Cluster::shared_vector() else {
        return;
    };
    let db = cluster.database();
    let version = cluster.psql_query(&db, "SHOW server_version_num");
    assert!(
        version.trim().parse::<u32>().unwrap() >= 180000,
        "{version}"
    );
    cluster.psql_exec(&db, "CREATE EXTENSION vector");
    cluster.psql_exec(&db, "CREATE EXTENSION unaccent");
    let found = cluster.psql_query(
        &db,
        "SELECT extname || ' ' || extversion FROM pg_extension WHERE extname IN ('vector', 'unaccent') ORDER BY 1",
    );
    let found: Vec<&str> = found.lines().collect();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0], "unaccent 1.1");
    let (major, minor) = found[1]
        .strip_prefix("vector 0.")
        .and_then(|v| v.split_once('.'))
        .unwrap_or_else(|| panic!("{found:?}"));
    // HNSW came with pgvector 0.5, iterative index scans with 0.8.
    assert!(major.parse::<u32>().unwrap() >= 8, "{found:?} ({minor})");
    // The operator and an HNSW cosine index on a cast of real[], as the store uses them.
    cluster.psql_exec(
        &db,
        "CREATE TABLE t (dimension int, v real[]);
         INSERT INTO t VALUES (3, '{1,0,0}'), (3, '{0,1,0}'), (2, '{1,1}');
         CREATE INDEX t_hnsw ON t USING hnsw ((v::vector(3)) vector_cosine_ops) WHERE dimension = 3",
    );
    let nearest = cluster.psql_query(
        &db,
        "SELECT v::text FROM t WHERE dimension = 3 ORDER BY v::vector(3) <=> '[0.9,0.1,0]' LIMIT 1",
    );
    assert_eq!(nearest.trim(), "{1,0,0}");
}

#[test]
fn debian_postgresql_15_lacks_pgvector() {
    // The refusal tests below run on the Debian cluster because it has no pgvector; if that
    // changes they would prove nothing, so say so here.
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let available = cluster.psql_query(
        "postgres",
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'",
    );
    assert_eq!(
        available.trim(),
        "0",
        "the Debian cluster has pgvector now; the refusal tests need a server without it"
    );
}
