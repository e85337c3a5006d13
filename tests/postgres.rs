//! PostgreSQL only: the throwaway cluster itself, migrating between backends with one export
//! and one restore, and the faults only a server has (authentication, an unreachable or
//! restarted server, TLS, statement and lock timeouts). What both backends share is in
//! `conformance/`.

use crate::common::postgres::{Cluster, PW_PASSWORD};
use crate::common::{BIN, code, stderr};

#[test]
fn the_cluster_starts_and_serves_a_fresh_database() {
    let Some(cluster) = Cluster::shared() else {
        return;
    };
    let db = cluster.database();
    let version = cluster.psql_query(&db, "SELECT version()");
    assert!(version.starts_with("PostgreSQL "), "{version}");
    assert_eq!(
        cluster.psql_query(&db, "SHOW server_encoding").trim(),
        "UTF8"
    );
    assert_eq!(
        cluster.psql_query(&db, "SELECT current_database()").trim(),
        db
    );
    let _ = (
        PW_PASSWORD,
        BIN,
        code as fn(&std::process::Output) -> i32,
        stderr as fn(&std::process::Output) -> String,
    );
}
