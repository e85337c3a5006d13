//! The prose of `--help` that is not one argument's description: the exit-code table and each
//! group's examples. The man page and completions are generated from the same definitions.

pub const EXIT_CODES: &str = "\
Exit codes:
  0         success
  1         any other failure (I/O, a server that cannot be reached or refuses the login
            or TLS, a lost connection); `doctor` found a problem
  2         usage error
  3         not found / not usable (absent key, no database or no store in the server's
            database, an artifact file not `loaded`)
  4         conflict: the drift guard refused a write, a --fence token is stale, or a
            memory to supersede was already superseded
  5         busy: a lock or the database stayed busy past the timeout (also a server's lock
            or statement timeout)
  6         invalid input: bad digest or id, malformed JSON, too large, unsupported version;
            a bad TTL, expiry time, --where filter, metadata or tag
  7         integrity failure: corrupted row, failed integrity check, checksum mismatch
  8         lock lost: a server lock was lost while `lock run`'s command ran (it was
            stopped), or while `artifact resolve` computed (nothing stored)
  126, 127  `lock run`: the command could not be executed / was not found
  128+N     `lock run`, `artifact resolve`: the command was ended by signal N

With --json, a failure prints one document on stdout:
  {\"error\": {\"exit\": N, \"kind\": \"…\", \"message\": \"…\"}}
and its one line on stderr.";

pub const ROOT_EXAMPLES: &str = "\
Examples:
  modstate init
  modstate artifact put sha256:<64 hex> envelope.json
  modstate memory add --namespace my-agent 'prefers tabs'
  modstate snapshot export backups/ --keep 7
  modstate doctor
  modstate completions bash > ~/.local/share/bash-completion/completions/modstate";

pub const ARTIFACT_EXAMPLES: &str = "\
Examples:
  modstate artifact put sha256:<64 hex> envelope.json
  modstate artifact get sha256:<64 hex> | jq .state
  modstate artifact ls | cut -f1
  modstate artifact resolve sha256:<64 hex> --file dagger.moduletypes.json --write-file -- ./compute.sh
  modstate artifact check dagger.moduletypes.json --digest sha256:<64 hex>
  modstate artifact prune --older-than 30d
  modstate artifact policy --max-size 2GiB
  modstate artifact pin sha256:<64 hex> --for 2h";

pub const LOCK_EXAMPLES: &str = "\
Examples:
  modstate lock status
  modstate lock run deploy -- ./deploy.sh --prod
  modstate lock run --shared cache --timeout 5 -- make build
  modstate lock run --global -- modstate vacuum";

pub const LOCKFILE_EXAMPLES: &str = "\
Examples:
  modstate lockfile get core container.from '[\"docker.io/library/alpine:3.20\"]'
  modstate lockfile set core container.from '[\"alpine:3.20\"]' '\"sha256:…\"'
  modstate lockfile rm core container.from '[\"alpine:3.20\"]'
  modstate lockfile ls --namespace core
  modstate lockfile fmt --check
  printf '%s\\n' '[\"get\",\"core\",\"container.from\",[\"alpine\"]]' | modstate lockfile batch";

pub const MEMORY_EXAMPLES: &str = "\
Examples:
  modstate memory add --namespace my-agent --category preference 'prefers tabs'
  modstate memory search --namespace my-agent tabs
  modstate memory search 'What does the user prefer for indentation?'
  modstate memory ls --namespace my-agent --limit 10
  modstate memory update <ID> 'prefers spaces' --expect-generation 7
  modstate memory rm <ID>";

pub const SNAPSHOT_EXAMPLES: &str = "\
Examples:
  modstate snapshot export backups/ --keep 7
  modstate snapshot verify backups/state-20260101T000000.000Z.db
  modstate snapshot restore backups/state-20260101T000000.000Z.db";

pub const MCP_EXAMPLES: &str = "\
Examples:
  modstate --db ~/.local/share/modstate/state.db mcp --namespace my-agent";

pub const MAINTENANCE_EXAMPLES: &str = "\
Examples:
  modstate doctor
  modstate doctor --json | jq '.checks[] | select(.ok | not)'
  modstate stats
  modstate artifact prune --keep-newest 1000
  modstate vacuum";

pub const SERVE_EXAMPLES: &str = "\
Examples:
  modstate serve                                   # http://127.0.0.1:8787/mcp, tokens optional
  modstate serve --listen 127.0.0.1:0 --require-token
  modstate --db postgres://db/memories serve --listen 0.0.0.0:8787 --insecure-http --allow-host mem.example.com
  modstate serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem --allow-host mem.example.com
  curl -s http://127.0.0.1:8787/healthz

A client names its namespace with the header Modstate-Namespace: NS (else the token's only
namespace, else --namespace). On any address but loopback, serve refuses to start without
tokens, and without --tls-cert/--tls-key or --insecure-http (a TLS proxy in front). SIGTERM
answers the requests in flight, then exits 0.";

pub const TOKEN_EXAMPLES: &str = "\
Examples:
  modstate token create ci-runner --namespace team --scope write   # prints the token once
  modstate token create dashboard --namespace team --namespace ops --scope read
  modstate token create deploy-bot --namespace team --scope write --from-file /run/secrets/token
  modstate token ls
  modstate token revoke ci-runner";
