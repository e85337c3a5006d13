//! The conformance suite: behaviour a user relies on that must not depend on the backend, one
//! copy of each test, run against both. Each test is a `fn name(db: &Db)` in a submodule;
//! [`conformance!`] below makes `sqlite::<module>::<name>` and `postgres::<module>::<name>`
//! test cases of it, so `cargo test --test tests conformance::postgres::` runs the PostgreSQL
//! side and `conformance::sqlite::locks::` one group on SQLite.
//!
//! A test talks to the store only through the built binary ([`Db::cmd`], [`Db::run`]), never
//! by opening the SQLite file: what it checks must hold for any backend. Tests about SQLite
//! files, the WAL, flock and lock directories, file modes or hard links stay in the other
//! modules.
//!
//! The PostgreSQL side takes a fresh database on the test process's throwaway cluster
//! (`common::postgres`); without PostgreSQL installed it is skipped with one line (and fails
//! with `CI` set).

use crate::common::BIN;
use crate::common::postgres::{Cluster, clear_pg_env};
use std::path::Path;
use std::process::{Command, Output};

mod artifact;
mod bad_input;
mod crash;
mod locks;
mod mcp;
mod memory;
pub mod snapshot;
mod vectors;

/// Which backend a [`Db`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One empty store for one test, and a scratch directory beside it.
pub struct Db {
    pub backend: Backend,
    /// The `--db` value: a file path, or a `postgres://` URL.
    url: String,
    dir: tempfile::TempDir,
    /// The PostgreSQL database's name (empty for SQLite).
    pub name: String,
    /// Whether it lives on the cluster with pgvector (`common::pgvector`).
    pgvector: bool,
}

#[allow(dead_code)]
impl Db {
    /// A SQLite store: a file (not yet created) in a fresh temp dir.
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = dir
            .path()
            .join("state")
            .join("state.db")
            .to_str()
            .expect("a UTF-8 temp dir")
            .to_owned();
        Db {
            backend: Backend::Sqlite,
            url,
            dir,
            name: String::new(),
            pgvector: false,
        }
    }

    /// A PostgreSQL store: a fresh empty database on the shared cluster, reached over its Unix
    /// socket; `None` when PostgreSQL is not installed (and this is not CI).
    pub fn postgres() -> Option<Db> {
        Db::postgres_on(Cluster::shared()?, false)
    }

    /// A PostgreSQL store on the cluster with pgvector; `None` when that is not installed
    /// (and this is not CI).
    pub fn postgres_vector() -> Option<Db> {
        Db::postgres_on(Cluster::shared_vector()?, true)
    }

    /// The PostgreSQL store the tests of conformance module `module` run on: with pgvector
    /// for `vectors`, else the shared cluster.
    pub fn postgres_for(module: &str) -> Option<Db> {
        match module {
            "vectors" => Db::postgres_vector(),
            _ => Db::postgres(),
        }
    }

    fn postgres_on(cluster: &Cluster, pgvector: bool) -> Option<Db> {
        let name = cluster.database();
        Some(Db {
            backend: Backend::Postgres,
            url: cluster.socket_url(&name),
            dir: tempfile::tempdir().unwrap(),
            name,
            pgvector,
        })
    }

    pub fn is_postgres(&self) -> bool {
        self.backend == Backend::Postgres
    }

    /// The shared cluster this store lives on (PostgreSQL only).
    pub fn cluster(&self) -> &'static Cluster {
        assert!(self.is_postgres());
        let cluster = if self.pgvector {
            Cluster::shared_vector()
        } else {
            Cluster::shared()
        };
        cluster.expect("a PostgreSQL Db has a cluster")
    }

    /// The `--db` value.
    pub fn arg(&self) -> &str {
        &self.url
    }

    /// A scratch directory for the test's files (outside the store).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Another store of the same backend (a restore target, say).
    pub fn another(&self) -> Db {
        match self.backend {
            Backend::Sqlite => Db::sqlite(),
            Backend::Postgres if self.pgvector => Db::postgres_vector().expect("the cluster is up"),
            Backend::Postgres => Db::postgres().expect("the cluster is up"),
        }
    }

    /// `modstate --db <db>`, with nothing of the caller's MODSTATE_DB or PG* environment.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_remove("MODSTATE_DB");
        clear_pg_env(&mut cmd);
        // In the scratch dir: nothing a command creates lands in the source tree.
        cmd.current_dir(self.dir()).arg("--db").arg(&self.url);
        cmd
    }

    /// `modstate` with the store given as `MODSTATE_DB` instead of `--db`.
    pub fn cmd_env(&self) -> Command {
        let mut cmd = Command::new(BIN);
        clear_pg_env(&mut cmd);
        cmd.current_dir(self.dir()).env("MODSTATE_DB", &self.url);
        cmd
    }

    /// Runs `modstate --db <db> args…` with empty stdin.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_in(args, b"")
    }

    /// Runs `modstate --db <db> args…` with `stdin` as standard input.
    pub fn run_in(&self, args: &[&str], stdin: &[u8]) -> Output {
        crate::common::output_with_stdin(self.cmd().args(args), stdin)
    }

    /// Runs `modstate --db <db> --json args…`, asserts exit 0 and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// How many artifacts the store holds (through `artifact ls`).
    pub fn artifact_count(&self) -> usize {
        self.json(&["artifact", "ls"]).as_array().unwrap().len()
    }
}

/// Makes `sqlite::<module>::<test>` and `postgres::<module>::<test>` cases of each listed
/// `<module>::<test>(db: &Db)`.
macro_rules! conformance {
    ($($module:ident { $($test:ident),* $(,)? })*) => {
        mod sqlite {
            $(mod $module {
                $(#[test]
                fn $test() {
                    let db = crate::conformance::Db::sqlite();
                    crate::conformance::$module::$test(&db);
                })*
            })*
        }
        mod postgres {
            $(mod $module {
                $(#[test]
                fn $test() {
                    let Some(db) = crate::conformance::Db::postgres_for(stringify!($module)) else {
                        return;
                    };
                    crate::conformance::$module::$test(&db);
                })*
            })*
        }
    };
}

conformance! {
    artifact {
        put_get_ls_rm_round_trip_is_byte_exact_and_idempotent,
        import_export_round_trip,
        import_refuses_anything_but_a_well_formed_v1_file,
        put_validates_the_envelope_and_the_limit,
        eight_processes_put_fifty_each,
        put_many_is_all_or_nothing,
        only_module_state_version_1_enters_the_store_at_any_entrance,
        resolve_prints_the_same_bytes_whichever_source_serves_it,
        export_then_import_of_an_unchanged_artifact_reports_unchanged_and_writes_nothing,
        resolve_says_why_it_skipped_a_file_and_can_write_it,
        batches_sharing_digests_in_opposite_orders_never_deadlock,
    }
    memory {
        cli_round_trip_and_exit_codes,
        invalid_utf8_in_an_argument_is_invalid_input,
        cli_text_and_queries_may_start_with_a_dash,
        cli_listing_pages_with_a_cursor_and_the_documented_shape,
        stemming_finds_other_forms_of_english_words_and_accents_still_fold,
        words_inside_cjk_text_are_found,
        symbol_queries_find_what_was_typed_or_nothing_with_a_note,
        stdin_text_loses_one_trailing_newline_only,
        generations_are_per_namespace_and_versions_per_memory,
        malformed_ids_and_cursors_are_invalid_input,
        a_restore_never_brings_back_a_generation_already_handed_out,
        memories_holding_more_of_the_words_come_first_and_function_words_do_not_count,
        function_words_of_a_question_do_not_outvote_its_content_words,
        irregular_forms_match_both_ways,
        eight_processes_adding_at_once_lose_nothing,
        eight_processes_with_one_expected_version_one_wins_and_namespaces_never_conflict,
        cli_search_pages_in_rank_order_without_repeats_or_skips_while_others_write,
        search_ranks_better_matches_first,
        an_exact_phrase_ranks_first_even_in_a_longer_memory,
        keyword_stuffing_does_not_beat_a_natural_sentence,
        a_long_repetitive_memory_scores_by_all_of_its_words,
    }
    mcp {
        tools_are_listed_and_write_and_read_the_store,
        the_protocol_version_is_negotiated,
        two_servers_and_a_cli_add_memories_at_once_and_all_are_present,
        eof_on_stdin_exits_zero_promptly,
    }
    snapshot {
        export_verify_restore_round_trip,
        corrupted_or_newer_snapshots_are_refused_and_change_nothing,
    }
    crash {
        sigkill_during_writes_loses_no_acknowledged_write,
    }
    bad_input {
        bad_input_gets_its_exit_code_one_line_and_changes_nothing,
    }
    vectors {
        semantic_search_ranks_by_similarity_and_pages_exactly,
    }
    locks {
        same_key_never_overlaps,
        different_keys_run_in_parallel,
        global_exclusive_waits_for_keyed_and_keeps_new_keyed_out,
        sigkilled_holder_frees_the_lock_at_once,
        timeout_names_the_holder,
        a_waiter_says_what_it_waits_for,
        lock_run_passes_the_exit_code_through,
        shared_holders_coexist,
        resolve_computes_once_across_eight_processes,
        lock_run_keeps_the_lock_until_its_command_exits_on_sigterm,
        lock_run_keeps_the_lock_until_its_command_exits_on_sigint,
        lock_run_keeps_the_lock_until_its_command_exits_on_sighup,
        lock_run_reports_a_command_killed_by_the_forwarded_signal_as_128_plus_n,
        lock_run_exits_127_for_a_missing_command_and_126_for_one_not_executable,
        resolve_keeps_the_key_until_its_interrupted_compute_exits,
    }
}
