//! The tools the server offers: names, agent-facing descriptions, input schemas, and the
//! checking of call arguments against them.
//!
//! Each tool's arguments are one Rust type (`AddMemoryArgs`, …) deriving serde's
//! `Deserialize` and schemars' `JsonSchema` (the schemars rmcp itself uses, through its
//! re-export). The JSON Schema sent in `tools/list` is derived from that type, a call's
//! arguments are checked against that same schema and then deserialized into the type, and the
//! type turns into the [`Call`] the handler runs. [`TOOLS`] is the one table of tools: an
//! entry needs an argument type that converts into a `Call`, and the handler matches every
//! `Call` exhaustively, so the compiler refuses a tool without an implementation.
//!
//! A call whose arguments do not fit is a tool error (`isError`) that names the argument and
//! what it should be — the MCP spec (2025-11-25) asks for input validation errors to reach the
//! model that way, so it can correct itself. The message is made from the derived schema
//! rather than taken from serde, whose texts ("invalid type: string, expected u64") name Rust
//! types instead of what the model should send.
//!
//! rmcp's `#[tool_router]`/`#[tool]` macros (its `macros` feature) are not used: their
//! `Parameters<T>` extractor answers arguments that do not deserialize with a `-32602`
//! protocol error ("failed to deserialize parameters: …", rmcp 3.11), which the host handles
//! and the model never reads, and it does not read `null` as absent. The schema they would
//! send is the same: [`input_schema`] calls the function they use.

use std::sync::Arc;

use modstate::Expect;
use rmcp::handler::server::common::schema_for_input;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use rmcp::schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Most memories one call returns.
pub const MAX_LIMIT: u64 = 1000;

/// Memories returned when the call does not say.
pub const DEFAULT_LIMIT: u64 = 20;

const CATEGORY_FILTER: &str =
    "Only memories with this category (exact, ignoring ASCII case). Omit or leave empty for all.";
const LIMIT: &str = "Most memories returned, 1 to 1000 (default 20).";
const CURSOR: &str = "Continue after the previous page: its next_cursor, exactly as returned. Omit for the first page.";
const EXPECT_GENERATION: &str = "Write only if no memory of this namespace changed since you read: pass any `generation` a result returned. Otherwise nothing is written and the error gives the current generation.";
const FENCE: &str = "KEY=TOKEN: write only if TOKEN is still the newest fencing token issued for lock KEY (the MODSTATE_LOCK_TOKEN that `modstate lock run KEY` gave you). Otherwise nothing is written: a newer holder of that lock exists.";
const EXPECT_VERSION: &str = "Write only if this memory is still the one you read: pass its `version`. Otherwise nothing is written and the error gives the current version.";
const METADATA: &str = "Metadata: a JSON object (at most 16 KiB) you can filter on later with `where`, e.g. {\"project\": \"x\", \"priority\": 2}.";
const TAGS: &str = "Tags, e.g. [\"work\", \"urgent\"]; filter with where {\"tags\": \"work\"}.";
const TTL: &str = "Expire after this long: 30m, 12h, 7d. An expired memory disappears from every read at once. Omit for the namespace's default (usually never).";
const EXPIRES_AT: &str = "Expire at this time instead, RFC 3339 UTC (2026-01-31T12:00:00Z).";
const REFRESH: &str = "With ttl: each read of this memory (get, or being returned by a search or listing) pushes its expiry forward by the ttl.";
const WHERE: &str = "Only memories matching this filter: {\"key\": value} on metadata keys (bare or metadata.KEY), tags, category, created_at, updated_at; operators $eq $ne $gt $gte $lt $lte $in $nin $exists $contains, e.g. {\"priority\": {\"$gte\": 2}, \"tags\": {\"$in\": [\"a\", \"b\"]}}; combine with $and, $or, $not. A bare value means $eq.";
const INCLUDE_SUPERSEDED: &str =
    "Also return memories another memory superseded (hidden by default).";

/// `add_memory`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct AddMemoryArgs {
    #[schemars(description = "The text to remember: non-empty, at most 64 KiB.")]
    text: String,
    #[schemars(
        description = "A label to group and filter by, e.g. preference, fact, decision (at most 256 bytes)."
    )]
    category: Option<String>,
    #[schemars(description = METADATA)]
    metadata: Option<serde_json::Map<String, Value>>,
    #[schemars(description = TAGS)]
    tags: Option<Vec<String>>,
    #[schemars(description = TTL)]
    ttl: Option<String>,
    #[schemars(description = EXPIRES_AT)]
    expires_at: Option<String>,
    #[schemars(description = REFRESH)]
    refresh_on_read: Option<bool>,
    #[schemars(
        description = "Ids of memories this one replaces (a corrected or contradicted fact): they are hidden from searches and listings in the same write, kept for history. Refused if one was already superseded (someone else replaced it first)."
    )]
    supersedes: Option<Vec<String>>,
    #[schemars(description = EXPECT_GENERATION)]
    expect_generation: Option<u64>,
    #[schemars(
        description = "With one id in supersedes: replace it only if it is still at this version."
    )]
    expect_version: Option<u64>,
    #[schemars(description = FENCE)]
    fence: Option<String>,
}

/// `search_memories`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct SearchMemoriesArgs {
    #[schemars(
        description = "A question or the words to look for. Omit to list newest first. Symbols only (an emoji) find memories holding them as typed."
    )]
    query: Option<String>,
    #[schemars(description = CATEGORY_FILTER)]
    category: Option<String>,
    #[schemars(description = LIMIT, range(min = 1, max = MAX_LIMIT))]
    limit: Option<u64>,
    #[schemars(description = CURSOR)]
    cursor: Option<String>,
    #[serde(rename = "where")]
    #[schemars(rename = "where", description = WHERE)]
    where_: Option<serde_json::Map<String, Value>>,
    #[schemars(description = INCLUDE_SUPERSEDED)]
    include_superseded: Option<bool>,
    #[schemars(
        description = "keyword (memories sharing the query's words), semantic (by meaning, through the server's embedding model) or hybrid (both, fused). Default: hybrid when the server has an embedding model, keyword otherwise (and keyword, with a note, when the model does not answer)."
    )]
    mode: Option<String>,
    #[schemars(
        description = "true: give each memory a `why`: its keyword score and rank, its similarity and rank, and the fused score (as `memory search --explain`)."
    )]
    explain: Option<bool>,
}

/// `get_memories`' arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct GetMemoriesArgs {
    #[schemars(description = CATEGORY_FILTER)]
    category: Option<String>,
    #[schemars(description = LIMIT, range(min = 1, max = MAX_LIMIT))]
    limit: Option<u64>,
    #[schemars(description = CURSOR)]
    cursor: Option<String>,
    #[serde(rename = "where")]
    #[schemars(rename = "where", description = WHERE)]
    where_: Option<serde_json::Map<String, Value>>,
    #[schemars(description = INCLUDE_SUPERSEDED)]
    include_superseded: Option<bool>,
}

/// `update_memory`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct UpdateMemoryArgs {
    #[schemars(
        description = "The memory's id, as returned by add_memory, search_memories or get_memories."
    )]
    id: String,
    #[schemars(description = "The new text: non-empty, at most 64 KiB; omit to keep it.")]
    text: Option<String>,
    #[schemars(description = "The new category; omit to keep the current one.")]
    category: Option<String>,
    #[schemars(description = "New metadata, replacing the old object; omit to keep it.")]
    metadata: Option<serde_json::Map<String, Value>>,
    #[schemars(description = "New tags, replacing the old ones; omit to keep them.")]
    tags: Option<Vec<String>>,
    #[schemars(description = "New lifetime from now (30m, 12h, 7d), or \"never\".")]
    ttl: Option<String>,
    #[schemars(description = EXPIRES_AT)]
    expires_at: Option<String>,
    #[schemars(description = REFRESH)]
    refresh_on_read: Option<bool>,
    #[schemars(description = EXPECT_GENERATION)]
    expect_generation: Option<u64>,
    #[schemars(description = EXPECT_VERSION)]
    expect_version: Option<u64>,
    #[schemars(description = FENCE)]
    fence: Option<String>,
}

/// `delete_memory`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct DeleteMemoryArgs {
    #[schemars(description = "The memory's id.")]
    id: String,
    #[schemars(description = EXPECT_GENERATION)]
    expect_generation: Option<u64>,
    #[schemars(description = EXPECT_VERSION)]
    expect_version: Option<u64>,
    #[schemars(description = FENCE)]
    fence: Option<String>,
}

/// `memory_history`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct MemoryHistoryArgs {
    #[schemars(description = "The memory's id (also of a deleted or expired one).")]
    id: String,
}

/// `get_module_state`'s arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(crate = "rmcp::schemars")]
pub struct GetModuleStateArgs {
    #[schemars(
        description = "The module source digest: sha256: followed by 64 lowercase hex digits."
    )]
    digest: String,
}

/// What a tool does to the store, for the tool annotations a host shows or acts on.
#[derive(Clone, Copy, Debug)]
enum Effect {
    /// Reads only; asking twice changes nothing.
    Reads,
    /// Adds something new, overwriting nothing.
    Adds,
    /// Replaces or removes what is there.
    Overwrites,
}

/// One tool: its name and description, and through its argument type both its input schema
/// and the [`Call`] it makes.
pub struct ToolSpec {
    pub name: &'static str,
    description: &'static str,
    effect: Effect,
    /// The input schema derived from the argument type.
    schema: fn() -> Arc<JsonObject>,
    /// Deserializes checked arguments into the argument type and turns that into a [`Call`].
    build: fn(JsonObject) -> Result<Call, serde_json::Error>,
}

impl ToolSpec {
    /// The tool whose arguments are `A`.
    const fn of<A>(name: &'static str, effect: Effect, description: &'static str) -> ToolSpec
    where
        A: DeserializeOwned + JsonSchema + Into<Call> + 'static,
    {
        ToolSpec {
            name,
            description,
            effect,
            schema: input_schema::<A>,
            build: build::<A>,
        }
    }
}

/// Every tool, in the order `tools/list` gives them.
pub const TOOLS: &[ToolSpec] = &[
    ToolSpec::of::<AddMemoryArgs>(
        "add_memory",
        Effect::Adds,
        "Save a memory: a short note worth recalling in a later session (a user preference, a fact, a decision). Returns the memory, with its id, version and the namespace's new generation.",
    ),
    ToolSpec::of::<SearchMemoriesArgs>(
        "search_memories",
        Effect::Reads,
        "Search saved memories, best match first: ask a natural question (What did Caroline research?) or give keywords. Every memory holding any of its words is ranked by BM25 (rare words weigh more, repeats less and less, length normalised; query words side by side score a bonus), ignoring case, accents, English word endings and common irregular forms (went finds go); function words like what, did, the are left out; words inside Chinese or Japanese text are found too; the last word also matches as a prefix unless the query ends with ? ! or . Words are plain text: quotes and operators have no special meaning. Without a query, lists newest first. Returns {memories, generation, next_cursor}; each memory has a score (higher is better): pass next_cursor back as cursor for the next page (pages stay exact while others write), generation as expect_generation.",
    ),
    ToolSpec::of::<GetMemoriesArgs>(
        "get_memories",
        Effect::Reads,
        "List saved memories, newest first, optionally of one category. Returns {memories, generation, next_cursor}: pass next_cursor back as cursor for the next page, generation as expect_generation.",
    ),
    ToolSpec::of::<UpdateMemoryArgs>(
        "update_memory",
        Effect::Overwrites,
        "Change a memory by id: its text, category, metadata, tags or expiry (what is omitted stays). Pass expect_version to refuse the write if this memory changed since you read it, or expect_generation if any memory of this namespace did. Returns the memory as updated.",
    ),
    ToolSpec::of::<DeleteMemoryArgs>(
        "delete_memory",
        Effect::Overwrites,
        "Delete a memory by id. Pass expect_version to refuse if this memory changed since you read it, or expect_generation if any memory of this namespace did. Returns {id, deleted, generation}.",
    ),
    ToolSpec::of::<MemoryHistoryArgs>(
        "memory_history",
        Effect::Reads,
        "Every recorded change of a memory, oldest first: add, update, supersede, delete, expire, import, each with the old and new text, the fields that changed, the version, the time and who wrote it. Returns {id, events}.",
    ),
    ToolSpec::of::<GetModuleStateArgs>(
        "get_module_state",
        Effect::Reads,
        "Fetch the saved module-state envelope {\"type\", \"version\", \"state\"} stored under a module source digest, exactly as stored. Answers with a not-found error if nothing is stored for that digest.",
    ),
];

/// The tool named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|tool| tool.name == name)
}

/// Whether the tool named `name` writes: `modstate serve` refuses such a call from a
/// read-only token with 403 before it runs (the store refuses it too).
pub fn writes(name: &str) -> bool {
    find(name).is_some_and(|tool| !matches!(tool.effect, Effect::Reads))
}

/// The `tools/list` entries.
pub fn list() -> Vec<Tool> {
    TOOLS.iter().map(ToolSpec::describe).collect()
}

/// A tool call with its arguments checked, in the form the handler runs: defaults filled in,
/// an empty category filter read as none.
#[derive(Debug, PartialEq)]
pub enum Call {
    AddMemory {
        text: String,
        category: String,
        model: Model,
        supersedes: Vec<String>,
        expect: Expect,
        fence: Option<String>,
    },
    SearchMemories {
        query: String,
        category: Option<String>,
        limit: usize,
        cursor: Option<String>,
        filter: Option<Value>,
        include_superseded: bool,
        mode: Option<String>,
        explain: bool,
    },
    GetMemories {
        category: Option<String>,
        limit: usize,
        cursor: Option<String>,
        filter: Option<Value>,
        include_superseded: bool,
    },
    UpdateMemory {
        id: String,
        text: Option<String>,
        category: Option<String>,
        model: Model,
        expect: Expect,
        fence: Option<String>,
    },
    MemoryHistory {
        id: String,
    },
    DeleteMemory {
        id: String,
        expect: Expect,
        fence: Option<String>,
    },
    GetModuleState {
        digest: String,
    },
}

/// Metadata, tags and expiry of `add_memory` and `update_memory`, as given (checked by the
/// store, as the CLI's are).
#[derive(Debug, Default, PartialEq)]
pub struct Model {
    pub metadata: Option<serde_json::Map<String, Value>>,
    pub tags: Option<Vec<String>>,
    pub ttl: Option<String>,
    pub expires_at: Option<String>,
    pub refresh_on_read: Option<bool>,
}

impl From<AddMemoryArgs> for Call {
    fn from(args: AddMemoryArgs) -> Call {
        Call::AddMemory {
            text: args.text,
            category: args.category.unwrap_or_default(),
            model: Model {
                metadata: args.metadata,
                tags: args.tags,
                ttl: args.ttl,
                expires_at: args.expires_at,
                refresh_on_read: args.refresh_on_read,
            },
            supersedes: args.supersedes.unwrap_or_default(),
            expect: Expect {
                generation: args.expect_generation,
                version: args.expect_version,
            },
            fence: args.fence,
        }
    }
}

impl From<SearchMemoriesArgs> for Call {
    fn from(args: SearchMemoriesArgs) -> Call {
        Call::SearchMemories {
            query: args.query.unwrap_or_default(),
            category: category_filter(args.category),
            limit: limit(args.limit),
            cursor: args.cursor,
            filter: args.where_.map(Value::Object),
            include_superseded: args.include_superseded.unwrap_or(false),
            mode: args.mode,
            explain: args.explain.unwrap_or(false),
        }
    }
}

impl From<GetMemoriesArgs> for Call {
    fn from(args: GetMemoriesArgs) -> Call {
        Call::GetMemories {
            category: category_filter(args.category),
            limit: limit(args.limit),
            cursor: args.cursor,
            filter: args.where_.map(Value::Object),
            include_superseded: args.include_superseded.unwrap_or(false),
        }
    }
}

impl From<UpdateMemoryArgs> for Call {
    fn from(args: UpdateMemoryArgs) -> Call {
        Call::UpdateMemory {
            id: args.id,
            text: args.text,
            category: args.category,
            model: Model {
                metadata: args.metadata,
                tags: args.tags,
                ttl: args.ttl,
                expires_at: args.expires_at,
                refresh_on_read: args.refresh_on_read,
            },
            expect: Expect {
                generation: args.expect_generation,
                version: args.expect_version,
            },
            fence: args.fence,
        }
    }
}

impl From<MemoryHistoryArgs> for Call {
    fn from(args: MemoryHistoryArgs) -> Call {
        Call::MemoryHistory { id: args.id }
    }
}

impl From<DeleteMemoryArgs> for Call {
    fn from(args: DeleteMemoryArgs) -> Call {
        Call::DeleteMemory {
            id: args.id,
            expect: Expect {
                generation: args.expect_generation,
                version: args.expect_version,
            },
            fence: args.fence,
        }
    }
}

impl From<GetModuleStateArgs> for Call {
    fn from(args: GetModuleStateArgs) -> Call {
        Call::GetModuleState {
            digest: args.digest,
        }
    }
}

/// An empty category filter means "all", as the argument's description says.
fn category_filter(category: Option<String>) -> Option<String> {
    category.filter(|c| !c.is_empty())
}

fn limit(limit: Option<u64>) -> usize {
    usize::try_from(limit.unwrap_or(DEFAULT_LIMIT)).unwrap_or(usize::MAX)
}

/// The input schema of `A`, as rmcp's own `#[tool]` macro would derive it (JSON Schema
/// 2020-12, the wrapper's title and doc stripped).
fn input_schema<A: JsonSchema + 'static>() -> Arc<JsonObject> {
    // rmcp refuses a schema whose root is not an object; every argument type is a struct, so
    // this cannot happen at run time (the unit tests derive every tool's schema).
    schema_for_input::<A>()
        .unwrap_or_else(|e| panic!("a tool's argument type must be a struct: {e}"))
}

fn build<A: DeserializeOwned + Into<Call>>(values: JsonObject) -> Result<Call, serde_json::Error> {
    serde_json::from_value::<A>(Value::Object(values)).map(Into::into)
}

impl ToolSpec {
    fn describe(&self) -> Tool {
        let (read_only, destructive, idempotent) = match self.effect {
            Effect::Reads => (true, false, true),
            Effect::Adds => (false, false, false),
            Effect::Overwrites => (false, true, false),
        };
        let annotations = ToolAnnotations::new()
            .read_only(read_only)
            .destructive(destructive)
            .idempotent(idempotent)
            .open_world(false);
        Tool::new(self.name, self.description, (self.schema)()).with_annotations(annotations)
    }

    /// Checks `arguments` against the tool's derived schema and builds the call, or says in
    /// one line what is wrong with them. A `null` counts as absent (models often send it for
    /// an optional argument they do not use).
    pub fn parse(&self, arguments: Option<JsonObject>) -> Result<Call, String> {
        let mut values = arguments.unwrap_or_default();
        values.retain(|_, value| !value.is_null());
        check(self.name, &(self.schema)(), &values)?;
        // The schema check has the message for everything these types declare; serde's
        // error is the fallback for anything it does not model.
        (self.build)(values).map_err(|e| format!("{}: {e}", self.name))
    }
}

/// Checks `values` against a derived input schema, reading the parts of JSON Schema the
/// argument types produce: `properties`, `required`, `additionalProperties: false`, and per
/// property a type of string or integer with an optional `minimum` and `maximum`.
fn check(tool: &str, schema: &JsonObject, values: &JsonObject) -> Result<(), String> {
    let no_properties = JsonObject::new();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&no_properties);
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    if closed && let Some(unknown) = values.keys().find(|key| !properties.contains_key(*key)) {
        let known: Vec<&str> = properties.keys().map(String::as_str).collect();
        return Err(format!(
            "{tool}: unknown argument {unknown:?}; it takes {}",
            known.join(", ")
        ));
    }
    let required = |name: &str| {
        schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|names| names.iter().any(|n| n == name))
    };
    for (name, property) in properties {
        let expected = Expected::of(property);
        match (values.get(name), expected) {
            (None, expected) if required(name) => {
                let what = expected.map(|e| format!(" ({e})")).unwrap_or_default();
                return Err(format!("{tool}: missing required argument {name:?}{what}"));
            }
            (Some(value), Some(expected)) if !expected.fits(value) => {
                return Err(format!(
                    "{tool}: argument {name:?} must be {expected}, not {}",
                    shorten(value)
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// What a property's schema asks for, as far as the check reads it.
#[derive(Clone, Copy, Debug)]
enum Expected {
    Text,
    Boolean,
    Object,
    TextList,
    Integer {
        minimum: Option<i128>,
        maximum: Option<i128>,
    },
}

impl Expected {
    /// `None` for a schema the check does not read; serde then has the last word.
    fn of(property: &Value) -> Option<Expected> {
        let types: Vec<&str> = match property.get("type") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        // `null` is allowed for optional arguments and removed before the check.
        let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        match types.as_slice() {
            ["string"] => Some(Expected::Text),
            ["boolean"] => Some(Expected::Boolean),
            ["object"] => Some(Expected::Object),
            ["array"] if property.pointer("/items/type") == Some(&Value::from("string")) => {
                Some(Expected::TextList)
            }
            ["integer"] => Some(Expected::Integer {
                minimum: property.get("minimum").and_then(integer),
                maximum: property.get("maximum").and_then(integer),
            }),
            _ => None,
        }
    }

    fn fits(self, value: &Value) -> bool {
        match self {
            Expected::Text => value.is_string(),
            Expected::Boolean => value.is_boolean(),
            Expected::Object => value.is_object(),
            Expected::TextList => value
                .as_array()
                .is_some_and(|items| items.iter().all(Value::is_string)),
            Expected::Integer { minimum, maximum } => integer(value).is_some_and(|n| {
                minimum.is_none_or(|low| n >= low) && maximum.is_none_or(|high| n <= high)
            }),
        }
    }
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Expected::Text => f.write_str("a string"),
            Expected::Boolean => f.write_str("true or false"),
            Expected::Object => f.write_str("a JSON object"),
            Expected::TextList => f.write_str("a list of strings"),
            Expected::Integer {
                minimum: Some(low),
                maximum: Some(high),
            } => write!(f, "an integer from {low} to {high}"),
            Expected::Integer {
                minimum: Some(low),
                maximum: None,
            } => write!(f, "an integer ≥ {low}"),
            Expected::Integer {
                minimum: None,
                maximum: Some(high),
            } => write!(f, "an integer ≤ {high}"),
            Expected::Integer {
                minimum: None,
                maximum: None,
            } => f.write_str("an integer"),
        }
    }
}

/// A JSON integer (not 2.5, not "5").
fn integer(value: &Value) -> Option<i128> {
    value
        .as_u64()
        .map(i128::from)
        .or_else(|| value.as_i64().map(i128::from))
}

/// A short rendering of a wrong value for an error message.
fn shorten(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(40) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Option<JsonObject> {
        match value {
            Value::Object(map) => Some(map),
            _ => panic!("not an object"),
        }
    }

    fn parse(tool: &str, value: Value) -> Result<Call, String> {
        find(tool).unwrap().parse(args(value))
    }

    #[test]
    fn every_tool_parses_its_own_arguments() {
        assert_eq!(
            parse("add_memory", json!({"text": "m", "category": null})),
            Ok(Call::AddMemory {
                text: "m".into(),
                category: String::new(),
                model: Model::default(),
                supersedes: Vec::new(),
                expect: Expect::default(),
                fence: None,
            })
        );
        assert_eq!(
            parse(
                "search_memories",
                json!({"query": "q", "category": "", "limit": 5, "cursor": "c"})
            ),
            Ok(Call::SearchMemories {
                query: "q".into(),
                category: None,
                limit: 5,
                cursor: Some("c".into()),
                filter: None,
                include_superseded: false,
                mode: None,
                explain: false,
            })
        );
        assert_eq!(
            find("get_memories").unwrap().parse(None),
            Ok(Call::GetMemories {
                category: None,
                limit: 20,
                cursor: None,
                filter: None,
                include_superseded: false,
            })
        );
        assert_eq!(
            parse(
                "update_memory",
                json!({"id": "i", "text": "m", "category": "c", "expect_generation": 0, "expect_version": 7})
            ),
            Ok(Call::UpdateMemory {
                id: "i".into(),
                text: Some("m".into()),
                category: Some("c".into()),
                model: Model::default(),
                expect: Expect {
                    generation: Some(0),
                    version: Some(7)
                },
                fence: None
            })
        );
        assert_eq!(
            parse("delete_memory", json!({"id": "i"})),
            Ok(Call::DeleteMemory {
                id: "i".into(),
                expect: Expect::default(),
                fence: None
            })
        );
        assert_eq!(
            parse("get_module_state", json!({"digest": "d"})),
            Ok(Call::GetModuleState { digest: "d".into() })
        );
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let missing = parse("add_memory", json!({})).unwrap_err();
        assert_eq!(
            missing,
            r#"add_memory: missing required argument "text" (a string)"#
        );
        let wrong = parse("search_memories", json!({"limit": "ten"})).unwrap_err();
        assert_eq!(
            wrong,
            r#"search_memories: argument "limit" must be an integer from 1 to 1000, not "ten""#
        );
        assert!(parse("get_memories", json!({"limit": 0})).is_err());
        assert!(parse("get_memories", json!({"limit": 2.5})).is_err());
        assert!(parse("delete_memory", json!({"id": "i", "expect_generation": -1})).is_err());
        let unknown = parse("add_memory", json!({"memory": "m"})).unwrap_err();
        assert_eq!(
            unknown,
            r#"add_memory: unknown argument "memory"; it takes text, category, metadata, tags, ttl, expires_at, refresh_on_read, supersedes, expect_generation, expect_version, fence"#
        );
    }

    /// The schema `tools/list` sends for `tool`.
    fn schema(tool: &str) -> Value {
        let tool = list().into_iter().find(|t| t.name == tool).unwrap();
        Value::Object(tool.input_schema.as_ref().clone())
    }

    #[test]
    fn derived_schemas_declare_every_argument_and_its_limits() {
        let mut names: Vec<&str> = TOOLS.iter().map(|tool| tool.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), TOOLS.len(), "tool names are unique");
        for tool in list() {
            let schema = &tool.input_schema;
            assert_eq!(schema["type"], "object", "{}", tool.name);
            assert_eq!(schema["additionalProperties"], false, "{}", tool.name);
            assert!(schema.get("title").is_none(), "{}", tool.name);
            for (name, property) in schema["properties"].as_object().unwrap() {
                assert!(
                    property["description"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty()),
                    "{}.{name} has no description",
                    tool.name
                );
                assert!(
                    Expected::of(property).is_some(),
                    "{}.{name}: the check reads its type",
                    tool.name
                );
            }
        }
        let arguments = |tool: &str| -> Vec<String> {
            schema(tool)["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            arguments("add_memory"),
            [
                "text",
                "category",
                "metadata",
                "tags",
                "ttl",
                "expires_at",
                "refresh_on_read",
                "supersedes",
                "expect_generation",
                "expect_version",
                "fence"
            ]
        );
        assert_eq!(
            arguments("search_memories"),
            [
                "query",
                "category",
                "limit",
                "cursor",
                "where",
                "include_superseded",
                "mode",
                "explain"
            ]
        );
        assert_eq!(
            arguments("get_memories"),
            ["category", "limit", "cursor", "where", "include_superseded"]
        );
        assert_eq!(
            arguments("update_memory"),
            [
                "id",
                "text",
                "category",
                "metadata",
                "tags",
                "ttl",
                "expires_at",
                "refresh_on_read",
                "expect_generation",
                "expect_version",
                "fence"
            ]
        );
        assert_eq!(
            arguments("delete_memory"),
            ["id", "expect_generation", "expect_version", "fence"]
        );
        assert_eq!(arguments("get_module_state"), ["digest"]);
        assert_eq!(schema("add_memory")["required"], json!(["text"]));
        assert_eq!(schema("update_memory")["required"], json!(["id"]));
        assert!(schema("get_memories").get("required").is_none());
        for tool in ["search_memories", "get_memories"] {
            let limit = &schema(tool)["properties"]["limit"];
            assert_eq!(limit["minimum"], 1, "{tool}: {limit}");
            assert_eq!(limit["maximum"], MAX_LIMIT, "{tool}: {limit}");
        }
        for tool in ["update_memory", "delete_memory"] {
            for stamp in ["expect_generation", "expect_version"] {
                let stamp = &schema(tool)["properties"][stamp];
                assert_eq!(stamp["minimum"], 0, "{tool}: {stamp}");
                assert!(stamp.get("maximum").is_none(), "{tool}: {stamp}");
            }
        }
        let text = &schema("add_memory")["properties"]["text"];
        assert_eq!(
            text["type"], "string",
            "a required argument is not nullable"
        );
    }

    /// The check reads the schema and serde reads the type: every argument the schema accepts
    /// at the edge of its limits, or as `null`, the type accepts too.
    #[test]
    fn what_the_schema_accepts_the_type_accepts() {
        for tool in TOOLS {
            let schema = (tool.schema)();
            let properties = schema["properties"].as_object().unwrap();
            for edge in ["low", "high", "null"] {
                let mut arguments = JsonObject::new();
                for (name, property) in properties {
                    let required = schema
                        .get("required")
                        .and_then(Value::as_array)
                        .is_some_and(|names| names.iter().any(|n| n == name));
                    let value = match (Expected::of(property).unwrap(), edge) {
                        (_, "null") if !required => Value::Null,
                        (Expected::Text, _) => json!("x"),
                        (Expected::Boolean, _) => json!(true),
                        (Expected::Object, _) => json!({}),
                        (Expected::TextList, _) => json!([]),
                        (Expected::Integer { minimum, .. }, "low") => json!(minimum.unwrap_or(0)),
                        (Expected::Integer { maximum, .. }, _) => {
                            json!(maximum.unwrap_or(i128::from(u64::MAX)))
                        }
                    };
                    arguments.insert(name.clone(), value);
                }
                let parsed = tool.parse(Some(arguments.clone()));
                assert!(parsed.is_ok(), "{} {arguments:?}: {parsed:?}", tool.name);
            }
        }
        assert_eq!(
            parse("get_memories", json!({"limit": null, "cursor": null})),
            parse("get_memories", json!({}))
        );
    }

    #[test]
    fn the_documented_memory_limit_is_the_store_default() {
        assert_eq!(
            modstate::Options::default().max_memory_bytes,
            64 * 1024,
            "the memory parameter descriptions say 64 KiB"
        );
        assert_eq!(modstate::memory::MAX_LABEL_BYTES, 256);
    }
}
