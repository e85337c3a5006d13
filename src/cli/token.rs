//! `modstate token …`: the bearer tokens `modstate serve` accepts (see `modstate::token`).

use clap::Subcommand;
use serde_json::json;

use modstate::token::Scope;
use modstate::{Error, Result};

use super::{Context, Table, notice, print_json, print_text};

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create a token and print it, once: the store keeps only its hash.
    Create {
        /// Who uses it (a person, a host, an agent); recorded as the writer of its writes.
        name: String,
        /// A namespace the token reaches; repeat for several.
        #[arg(long = "namespace", value_name = "NS", required = true)]
        namespaces: Vec<String>,
        /// read: search, list, history, module state; write: also add, update, delete.
        #[arg(long, value_name = "read|write", value_parser = parse_scope)]
        scope: Scope,
        /// Register the token in this file (its first line; made by a secret manager,
        /// at least 32 characters) instead of generating one; nothing is printed but the
        /// name. Only its hash is stored, as for a generated token.
        #[arg(long, value_name = "PATH")]
        from_file: Option<std::path::PathBuf>,
    },
    /// List tokens: name, scope, namespaces, created, last used — never the token.
    Ls,
    /// Revoke a token: its next request is refused with 401.
    Revoke {
        /// The token's name.
        name: String,
    },
}

fn parse_scope(text: &str) -> std::result::Result<Scope, String> {
    Scope::parse(text).map_err(|e| e.to_string())
}

pub fn run(ctx: &Context, cmd: TokenCommand) -> Result<i32> {
    match cmd {
        TokenCommand::Create {
            name,
            namespaces,
            scope,
            from_file: Some(path),
        } => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::io("reading the token file", &path, e))?;
            let secret = text.lines().next().unwrap_or("").trim();
            let store = ctx.open()?;
            let info = store.import_token(&name, scope, &namespaces, secret)?;
            if ctx.json {
                print_json(&json!({ "token": info }))?;
            } else {
                notice(&format!(
                    "token {name:?} ({scope}, namespaces {}) registered from {}",
                    info.namespaces.join(", "),
                    path.display()
                ));
            }
            Ok(0)
        }
        TokenCommand::Create {
            name,
            namespaces,
            scope,
            from_file: None,
        } => {
            let store = ctx.open()?;
            let token = store.create_token(&name, scope, &namespaces)?;
            if ctx.json {
                print_json(&json!({
                    "token": token.secret,
                    "name": token.info.name,
                    "scope": token.info.scope,
                    "namespaces": token.info.namespaces,
                    "created_at": token.info.created_at,
                }))?;
            } else {
                print_text(&format!("{}\n", token.secret))?;
                notice(&format!(
                    "token {name:?} ({scope}, namespaces {}) created; it is shown only now, keep it in a secret store",
                    token.info.namespaces.join(", ")
                ));
            }
            Ok(0)
        }
        TokenCommand::Ls => {
            let store = ctx.open_existing()?;
            let tokens = store.tokens()?;
            if ctx.json {
                print_json(&json!({ "tokens": tokens }))?;
            } else {
                let mut table =
                    Table::new(&["NAME", "SCOPE", "NAMESPACES", "CREATED", "LAST USED"]);
                for token in tokens {
                    table.row(vec![
                        token.name,
                        token.scope.to_string(),
                        token.namespaces.join(","),
                        token.created_at,
                        token.last_used_at.unwrap_or_else(|| "-".into()),
                    ]);
                }
                table.print()?;
            }
            Ok(0)
        }
        TokenCommand::Revoke { name } => {
            let store = ctx.open_existing()?;
            store.revoke_token(&name)?;
            if ctx.json {
                print_json(&json!({"name": name, "revoked": true}))?;
            } else {
                notice(&format!("token {name:?} revoked"));
            }
            Ok(0)
        }
    }
}
