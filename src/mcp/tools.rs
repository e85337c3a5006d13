//! The tools the server offers: names, agent-facing descriptions, input schemas, and the
//! checking of call arguments against them.
//!
//! Each tool's arguments are declared once, in [`TOOLS`]; the JSON Schema sent in
//! `tools/list` and the checks a call goes through are both made from that declaration, so
//! they cannot disagree. A call whose arguments do not fit is a tool error (`isError`) that
//! names the argument and what it should be — the MCP spec (2025-11-25) asks for input
//! validation errors to reach the model that way, so it can correct itself.

use std::sync::Arc;

use modstate::Expect;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

/// Most memories one call returns.
pub const MAX_LIMIT: u64 = 1000;

/// Memories returned when the call does not say.
pub const DEFAULT_LIMIT: u64 = 20;

/// What a tool argument holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Text,
    /// An integer from 1 to [`MAX_LIMIT`].
    Limit,
    /// A namespace generation or a memory version: an integer ≥ 0.
    Stamp,
}

struct Param {
    name: &'static str,
    kind: Kind,
    required: bool,
    description: &'static str,
}

/// One tool, declared.
pub struct ToolSpec {
    pub name: &'static str,
    description: &'static str,
    params: &'static [Param],
    read_only: bool,
    destructive: bool,
    idempotent: bool,
}

const fn param(name: &'static str, kind: Kind, required: bool, description: &'static str) -> Param {
    Param {
        name,
        kind,
        required,
        description,
    }
}

const CATEGORY_FILTER: Param = param(
    "category",
    Kind::Text,
    false,
    "Only memories with this category (exact, ignoring ASCII case). Omit or leave empty for all.",
);
const LIMIT: Param = param(
    "limit",
    Kind::Limit,
    false,
    "Most memories returned, 1 to 1000 (default 20).",
);
const CURSOR: Param = param(
    "cursor",
    Kind::Text,
    false,
    "Continue after the previous page: its next_cursor, exactly as returned. Omit for the first page.",
);
const EXPECT_GENERATION: Param = param(
    "expect_generation",
    Kind::Stamp,
    false,
    "Write only if no memory of this namespace changed since you read: pass any `generation` a result returned. Otherwise nothing is written and the error gives the current generation.",
);
const EXPECT_VERSION: Param = param(
    "expect_version",
    Kind::Stamp,
    false,
    "Write only if this memory is still the one you read: pass its `version`. Otherwise nothing is written and the error gives the current version.",
);

/// Every tool, in the order `tools/list` gives them.
pub const TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "add_memory",
        description: "Save a memory: a short note worth recalling in a later session (a user preference, a fact, a decision). Returns the memory, with its id, version and the namespace's new generation.",
        params: &[
            param(
                "text",
                Kind::Text,
                true,
                "The text to remember: non-empty, at most 64 KiB.",
            ),
            param(
                "category",
                Kind::Text,
                false,
                "A label to group and filter by, e.g. preference, fact, decision (at most 256 bytes).",
            ),
        ],
        read_only: false,
        destructive: false,
        idempotent: false,
    },
    ToolSpec {
        name: "search_memories",
        description: "Search saved memories by words, best match first. Every word must occur, ignoring case, accents and English word endings (deploy finds Deploys); words inside Chinese or Japanese text are found too; the last word also matches as a prefix. Words are plain text: quotes and operators have no special meaning. Without a query, lists newest first. Returns {memories, generation, next_cursor}: pass next_cursor back as cursor for the next page, generation as expect_generation.",
        params: &[
            param(
                "query",
                Kind::Text,
                false,
                "The words to look for. Omit to list newest first. Symbols only (an emoji) find memories holding them as typed.",
            ),
            CATEGORY_FILTER,
            LIMIT,
            CURSOR,
        ],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    ToolSpec {
        name: "get_memories",
        description: "List saved memories, newest first, optionally of one category. Returns {memories, generation, next_cursor}: pass next_cursor back as cursor for the next page, generation as expect_generation.",
        params: &[CATEGORY_FILTER, LIMIT, CURSOR],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
    ToolSpec {
        name: "update_memory",
        description: "Replace the text of a memory by id, and its category if given. Pass expect_version to refuse the write if this memory changed since you read it, or expect_generation if any memory of this namespace did. Returns the memory as updated.",
        params: &[
            param(
                "id",
                Kind::Text,
                true,
                "The memory's id, as returned by add_memory, search_memories or get_memories.",
            ),
            param(
                "text",
                Kind::Text,
                true,
                "The new text: non-empty, at most 64 KiB.",
            ),
            param(
                "category",
                Kind::Text,
                false,
                "The new category; omit to keep the current one.",
            ),
            EXPECT_GENERATION,
            EXPECT_VERSION,
        ],
        read_only: false,
        destructive: true,
        idempotent: false,
    },
    ToolSpec {
        name: "delete_memory",
        description: "Delete a memory by id. Pass expect_version to refuse if this memory changed since you read it, or expect_generation if any memory of this namespace did. Returns {id, deleted, generation}.",
        params: &[
            param("id", Kind::Text, true, "The memory's id."),
            EXPECT_GENERATION,
            EXPECT_VERSION,
        ],
        read_only: false,
        destructive: true,
        idempotent: false,
    },
    ToolSpec {
        name: "get_module_state",
        description: "Fetch the saved module-state envelope {\"type\", \"version\", \"state\"} stored under a module source digest, exactly as stored. Answers with a not-found error if nothing is stored for that digest.",
        params: &[param(
            "digest",
            Kind::Text,
            true,
            "The module source digest: sha256: followed by 64 lowercase hex digits.",
        )],
        read_only: true,
        destructive: false,
        idempotent: true,
    },
];

/// The tool named `name`, if there is one.
pub fn find(name: &str) -> Option<&'static ToolSpec> {
    TOOLS.iter().find(|tool| tool.name == name)
}

/// The `tools/list` entries.
pub fn list() -> Vec<Tool> {
    TOOLS.iter().map(ToolSpec::describe).collect()
}

/// A tool call with its arguments checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Call {
    AddMemory {
        text: String,
        category: String,
    },
    SearchMemories {
        query: String,
        category: Option<String>,
        limit: usize,
        cursor: Option<String>,
    },
    GetMemories {
        category: Option<String>,
        limit: usize,
        cursor: Option<String>,
    },
    UpdateMemory {
        id: String,
        text: String,
        category: Option<String>,
        expect: Expect,
    },
    DeleteMemory {
        id: String,
        expect: Expect,
    },
    GetModuleState {
        digest: String,
    },
}

impl ToolSpec {
    fn describe(&self) -> Tool {
        let annotations = ToolAnnotations::new()
            .read_only(self.read_only)
            .destructive(self.destructive)
            .idempotent(self.idempotent)
            .open_world(false);
        Tool::new(self.name, self.description, Arc::new(self.input_schema()))
            .with_annotations(annotations)
    }

    fn input_schema(&self) -> JsonObject {
        let mut properties = Map::new();
        for p in self.params {
            let mut schema = match p.kind {
                Kind::Text => json!({"type": "string"}),
                Kind::Limit => json!({"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}),
                Kind::Stamp => json!({"type": "integer", "minimum": 0}),
            };
            schema["description"] = json!(p.description);
            properties.insert(p.name.into(), schema);
        }
        let required: Vec<&str> = self
            .params
            .iter()
            .filter(|p| p.required)
            .map(|p| p.name)
            .collect();
        let mut schema = Map::new();
        schema.insert("type".into(), json!("object"));
        schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".into(), json!(required));
        }
        schema.insert("additionalProperties".into(), json!(false));
        schema
    }

    /// Checks `arguments` against the declaration and builds the call, or says in one line
    /// what is wrong with them.
    pub fn parse(&'static self, arguments: Option<JsonObject>) -> Result<Call, String> {
        let args = Args::check(self, arguments.unwrap_or_default())?;
        Ok(match self.name {
            "add_memory" => Call::AddMemory {
                text: args.text("text").unwrap_or_default(),
                category: args.text("category").unwrap_or_default(),
            },
            "search_memories" => Call::SearchMemories {
                query: args.text("query").unwrap_or_default(),
                category: args.text("category").filter(|c| !c.is_empty()),
                limit: args.limit(),
                cursor: args.text("cursor"),
            },
            "get_memories" => Call::GetMemories {
                category: args.text("category").filter(|c| !c.is_empty()),
                limit: args.limit(),
                cursor: args.text("cursor"),
            },
            "update_memory" => Call::UpdateMemory {
                id: args.text("id").unwrap_or_default(),
                text: args.text("text").unwrap_or_default(),
                category: args.text("category"),
                expect: args.expect(),
            },
            "delete_memory" => Call::DeleteMemory {
                id: args.text("id").unwrap_or_default(),
                expect: args.expect(),
            },
            "get_module_state" => Call::GetModuleState {
                digest: args.text("digest").unwrap_or_default(),
            },
            other => return Err(format!("tool {other} has no implementation")),
        })
    }
}

/// Arguments that passed the checks: every declared one has the declared kind, every
/// required one is present, nothing else is there. A `null` counts as absent (models often
/// send it for an optional argument they do not use).
struct Args {
    values: JsonObject,
}

impl Args {
    fn check(tool: &ToolSpec, mut values: JsonObject) -> Result<Args, String> {
        let name = tool.name;
        values.retain(|_, value| !value.is_null());
        if let Some(unknown) = values
            .keys()
            .find(|key| !tool.params.iter().any(|p| p.name == key.as_str()))
        {
            let known: Vec<&str> = tool.params.iter().map(|p| p.name).collect();
            return Err(format!(
                "{name}: unknown argument {unknown:?}; it takes {}",
                known.join(", ")
            ));
        }
        for p in tool.params {
            let Some(value) = values.get(p.name) else {
                if p.required {
                    return Err(format!(
                        "{name}: missing required argument {:?} ({})",
                        p.name,
                        expected(p.kind)
                    ));
                }
                continue;
            };
            let fits = match p.kind {
                Kind::Text => value.is_string(),
                Kind::Limit => value.as_u64().is_some_and(|n| (1..=MAX_LIMIT).contains(&n)),
                Kind::Stamp => value.as_u64().is_some(),
            };
            if !fits {
                return Err(format!(
                    "{name}: argument {:?} must be {}, not {}",
                    p.name,
                    expected(p.kind),
                    shorten(value)
                ));
            }
        }
        Ok(Args { values })
    }

    fn text(&self, name: &str) -> Option<String> {
        self.values
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    fn integer(&self, name: &str) -> Option<u64> {
        self.values.get(name).and_then(Value::as_u64)
    }

    fn expect(&self) -> Expect {
        Expect {
            generation: self.integer("expect_generation"),
            version: self.integer("expect_version"),
        }
    }

    fn limit(&self) -> usize {
        let limit = self.integer("limit").unwrap_or(DEFAULT_LIMIT);
        usize::try_from(limit).unwrap_or(usize::MAX)
    }
}

fn expected(kind: Kind) -> String {
    match kind {
        Kind::Text => "a string".into(),
        Kind::Limit => format!("an integer from 1 to {MAX_LIMIT}"),
        Kind::Stamp => "an integer ≥ 0".into(),
    }
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
                category: String::new()
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
                cursor: Some("c".into())
            })
        );
        assert_eq!(
            find("get_memories").unwrap().parse(None),
            Ok(Call::GetMemories {
                category: None,
                limit: 20,
                cursor: None
            })
        );
        assert_eq!(
            parse(
                "update_memory",
                json!({"id": "i", "text": "m", "category": "c", "expect_generation": 0, "expect_version": 7})
            ),
            Ok(Call::UpdateMemory {
                id: "i".into(),
                text: "m".into(),
                category: Some("c".into()),
                expect: Expect {
                    generation: Some(0),
                    version: Some(7)
                }
            })
        );
        assert_eq!(
            parse("delete_memory", json!({"id": "i"})),
            Ok(Call::DeleteMemory {
                id: "i".into(),
                expect: Expect::default()
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
            r#"add_memory: unknown argument "memory"; it takes text, category"#
        );
    }

    #[test]
    fn schemas_declare_every_argument() {
        for tool in list() {
            let schema = &tool.input_schema;
            assert_eq!(schema["type"], "object");
            assert_eq!(schema["additionalProperties"], false);
            let spec = find(&tool.name).unwrap();
            let properties = schema["properties"].as_object().unwrap();
            assert_eq!(properties.len(), spec.params.len());
            for p in spec.params {
                assert!(properties[p.name]["description"].is_string());
            }
        }
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
