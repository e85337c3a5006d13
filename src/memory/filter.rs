//! The `where` filter of `memory ls` and `memory search` (and the MCP tools): a JSON object
//! parsed and checked here into a small tree, which each backend turns into conditions of the
//! same SQL query that pages (so a filter never runs after a LIMIT and paging stays exact).
//!
//! Shape, as in LangGraph's and mem0's stores:
//!
//! * `{"field": value}` — a bare value means `$eq`; several keys in one object are all required.
//! * `{"field": {"$op": value, …}}` with `$eq $ne $gt $gte $lt $lte $in $nin $exists $contains`.
//! * `{"$and": [filter, …]}`, `{"$or": [filter, …]}`, `{"$not": filter}`.
//!
//! Fields: `category` (compared ignoring ASCII case), `tags` (a memory's tag list: `$eq`,
//! `$contains` and `$in` mean "has the tag"/"has any of"), `created_at`, `updated_at` (RFC 3339
//! times), and metadata: `metadata.KEY`, or any other bare `KEY`, is the top-level metadata key
//! `KEY`. `$ne` and `$nin` also match a memory that lacks the key (as MongoDB's do). Order
//! comparisons take a number (compared as numbers) or a string (compared by code point);
//! `$contains` on metadata is a substring of a string value or an element of an array value.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// Most conditions (leaves and combinators) in one filter.
pub const MAX_FILTER_NODES: usize = 256;
/// Deepest nesting of combinators.
pub const MAX_FILTER_DEPTH: usize = 16;

/// What a condition looks at.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// The category, ignoring ASCII case.
    Category,
    /// The tag list.
    Tags,
    /// When the memory was added.
    CreatedAt,
    /// When it was last written.
    UpdatedAt,
    /// A top-level metadata key.
    Metadata(String),
}

/// A value a condition compares with.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A string.
    Text(String),
    /// A number.
    Number(Number),
    /// `true` or `false`.
    Bool(bool),
    /// JSON `null`.
    Null,
}

impl Scalar {
    /// The scalar as JSON text (for engines that compare JSON values).
    pub fn to_json(&self) -> String {
        match self {
            Scalar::Text(s) => Value::String(s.clone()).to_string(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Null => "null".into(),
        }
    }
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal (or absent).
    Ne,
    /// Greater than.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// Substring of a string, element of an array, or a tag held.
    Contains,
}

impl Op {
    /// The SQL comparison operator of an order comparison.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq | Op::Contains => "=",
            Op::Ne => "<>",
            Op::Gt => ">",
            Op::Gte => ">=",
            Op::Lt => "<",
            Op::Lte => "<=",
        }
    }
}

/// A parsed, checked filter.
#[derive(Clone, Debug, PartialEq)]
pub enum Where {
    /// All of them (an empty list: everything).
    And(Vec<Where>),
    /// Any of them (an empty list: nothing).
    Or(Vec<Where>),
    /// Not this one.
    Not(Box<Where>),
    /// `field op value`.
    Compare(Field, Op, Scalar),
    /// `field` equal to one of the values (`$in`), or to none of them (`$nin`, `negated`).
    In(Field, Vec<Scalar>, bool),
    /// `field` present (metadata key held, tags or category non-empty) or absent.
    Exists(Field, bool),
}

/// How an engine spells a filter's leaves (a comparison, a presence test) and its truth
/// values in SQL. [`Where::to_sql`] writes the combinators (`$and`, `$or`, `$not`, `$in`,
/// `$nin`) once for every engine, so their semantics cannot drift apart between engines.
pub trait SqlLeaves {
    /// The engine's condition that always holds.
    const TRUE: &'static str;
    /// The engine's condition that never holds.
    const FALSE: &'static str;
    /// Appends the condition `field op value`, binding what it needs.
    fn compare(&mut self, sql: &mut String, field: &Field, op: Op, value: &Scalar);
    /// The condition "`field` is present", binding what it needs.
    fn exists(&mut self, field: &Field) -> String;
}

impl Where {
    /// Appends this filter as one SQL condition, its leaves spelled by `leaves`.
    pub fn to_sql<L: SqlLeaves>(&self, sql: &mut String, leaves: &mut L) {
        match self {
            Where::And(parts) if parts.is_empty() => sql.push_str(L::TRUE),
            Where::Or(parts) if parts.is_empty() => sql.push_str(L::FALSE),
            Where::And(parts) | Where::Or(parts) => {
                let join = if matches!(self, Where::And(_)) {
                    " AND "
                } else {
                    " OR "
                };
                sql.push('(');
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(join);
                    }
                    part.to_sql(sql, leaves);
                }
                sql.push(')');
            }
            Where::Not(inner) => {
                sql.push_str("(NOT ");
                inner.to_sql(sql, leaves);
                sql.push(')');
            }
            Where::Compare(field, op, value) => leaves.compare(sql, field, *op, value),
            Where::In(field, values, negated) => {
                if *negated {
                    sql.push_str("(NOT ");
                }
                sql.push('(');
                if values.is_empty() {
                    sql.push_str(L::FALSE);
                }
                for (i, value) in values.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(" OR ");
                    }
                    leaves.compare(sql, field, Op::Eq, value);
                }
                sql.push(')');
                if *negated {
                    sql.push(')');
                }
            }
            Where::Exists(field, present) => {
                let test = leaves.exists(field);
                if *present {
                    sql.push_str(&format!("({test})"));
                } else {
                    sql.push_str(&format!("(NOT {test})"));
                }
            }
        }
    }

    /// Parses and checks a filter from its JSON text.
    pub fn parse_str(text: &str) -> Result<Where> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "is not JSON ({e}); give an object such as {{\"project\": \"x\", \"priority\": {{\"$gte\": 2}}}}"
            ))
        })?;
        Where::parse(&value)
    }

    /// Parses and checks a filter from JSON.
    pub fn parse(value: &Value) -> Result<Where> {
        let mut nodes = 0;
        let parsed = parse_object(value, "", 0, &mut nodes)?;
        Ok(parsed)
    }

    /// A stable text of the filter, for cursors: a cursor continues only the same filter.
    pub fn key(&self) -> String {
        let mut out = String::new();
        let _ = write!(out, "{self:?}");
        out
    }
}

fn invalid(message: String) -> Error {
    Error::Invalid(format!("--where {message}"))
}

fn at(path: &str) -> String {
    if path.is_empty() {
        "the filter".to_owned()
    } else {
        format!("at {path}")
    }
}

fn parse_object(value: &Value, path: &str, depth: usize, nodes: &mut usize) -> Result<Where> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(format!(
            "{}: nested deeper than {MAX_FILTER_DEPTH} levels; flatten the filter",
            at(path)
        )));
    }
    let Value::Object(map) = value else {
        return Err(invalid(format!(
            "{}: expected an object such as {{\"key\": value}}, found {}",
            at(path),
            kind(value)
        )));
    };
    let mut all = Vec::with_capacity(map.len());
    for (key, v) in map {
        *nodes += 1;
        if *nodes > MAX_FILTER_NODES {
            return Err(invalid(format!(
                "has more than {MAX_FILTER_NODES} conditions; split the query"
            )));
        }
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        match key.as_str() {
            "$and" | "$or" => {
                let Value::Array(items) = v else {
                    return Err(invalid(format!(
                        "{key} takes a list of filters, found {}",
                        kind(v)
                    )));
                };
                let parts = items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| parse_object(item, &format!("{here}[{i}]"), depth + 1, nodes))
                    .collect::<Result<Vec<_>>>()?;
                all.push(if key == "$and" {
                    Where::And(parts)
                } else {
                    Where::Or(parts)
                });
            }
            "$not" => all.push(Where::Not(Box::new(parse_object(
                v,
                &here,
                depth + 1,
                nodes,
            )?))),
            k if k.starts_with('$') => {
                return Err(invalid(format!(
                    "{}: {k:?} is not a combinator; use $and, $or or $not here, or an operator inside a field's object",
                    at(path)
                )));
            }
            k => {
                let field = field(k)?;
                all.extend(parse_conditions(&field, k, v)?);
            }
        }
    }
    Ok(if all.len() == 1 {
        all.pop().unwrap_or(Where::And(Vec::new()))
    } else {
        Where::And(all)
    })
}

fn field(key: &str) -> Result<Field> {
    Ok(match key {
        "category" => Field::Category,
        "tags" | "tag" => Field::Tags,
        "created_at" => Field::CreatedAt,
        "updated_at" => Field::UpdatedAt,
        other => {
            let name = other.strip_prefix("metadata.").unwrap_or(other);
            if name.is_empty() || name.contains('\0') {
                return Err(invalid(format!(
                    "key {other:?} names no metadata key; write metadata.KEY or KEY"
                )));
            }
            Field::Metadata(name.to_owned())
        }
    })
}

fn parse_conditions(field: &Field, key: &str, value: &Value) -> Result<Vec<Where>> {
    let operators = match value {
        Value::Object(map) if map.keys().any(|k| k.starts_with('$')) => map,
        Value::Object(_) | Value::Array(_) => {
            return Err(invalid(format!(
                "{key}: a bare value must be a string, number, boolean or null (or an object of operators such as {{\"$in\": [...]}}), found {}",
                kind(value)
            )));
        }
        scalar => return Ok(vec![compare(field, key, "$eq", scalar)?]),
    };
    let mut out = Vec::with_capacity(operators.len());
    for (op, operand) in operators {
        out.push(compare(field, key, op, operand)?);
    }
    Ok(out)
}

fn compare(field: &Field, key: &str, op: &str, operand: &Value) -> Result<Where> {
    let op_kind = match op {
        "$eq" => Op::Eq,
        "$ne" => Op::Ne,
        "$gt" => Op::Gt,
        "$gte" => Op::Gte,
        "$lt" => Op::Lt,
        "$lte" => Op::Lte,
        "$contains" => Op::Contains,
        "$in" | "$nin" => {
            let Value::Array(items) = operand else {
                return Err(invalid(format!(
                    "{key}.{op} takes a list of values, found {}",
                    kind(operand)
                )));
            };
            if items.len() > MAX_FILTER_NODES {
                return Err(invalid(format!(
                    "{key}.{op} lists more than {MAX_FILTER_NODES} values"
                )));
            }
            let values = items
                .iter()
                .map(|item| scalar_for(field, key, op, Op::Eq, item))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Where::In(field.clone(), values, op == "$nin"));
        }
        "$exists" => {
            let Value::Bool(present) = operand else {
                return Err(invalid(format!(
                    "{key}.$exists takes true or false, found {}",
                    kind(operand)
                )));
            };
            if matches!(field, Field::CreatedAt | Field::UpdatedAt) {
                return Err(invalid(format!(
                    "{key}.$exists: every memory has {key}; compare it with $gt or $lt instead"
                )));
            }
            return Ok(Where::Exists(field.clone(), *present));
        }
        other => {
            return Err(invalid(format!(
                "{key}: {other:?} is not an operator; use one of $eq $ne $gt $gte $lt $lte $in $nin $exists $contains"
            )));
        }
    };
    let value = scalar_for(field, key, op, op_kind, operand)?;
    Ok(Where::Compare(field.clone(), op_kind, value))
}

/// Checks an operand against what the field can hold.
fn scalar_for(field: &Field, key: &str, op: &str, kind_of: Op, operand: &Value) -> Result<Scalar> {
    let scalar = match operand {
        Value::String(s) => Scalar::Text(s.clone()),
        Value::Number(n) => Scalar::Number(n.clone()),
        Value::Bool(b) => Scalar::Bool(*b),
        Value::Null => Scalar::Null,
        other => {
            return Err(invalid(format!(
                "{key}.{op}: compare with a string, number, boolean or null, found {}",
                kind(other)
            )));
        }
    };
    if let Scalar::Text(s) = &scalar
        && s.contains('\0')
    {
        return Err(invalid(format!(
            "{key}.{op}: the value contains a NUL byte"
        )));
    }
    let ordered = matches!(kind_of, Op::Gt | Op::Gte | Op::Lt | Op::Lte);
    match field {
        Field::Tags => {
            if ordered {
                return Err(invalid(format!(
                    "{key}.{op}: tags are not ordered; use $eq, $ne, $in, $nin, $contains or $exists"
                )));
            }
            if !matches!(scalar, Scalar::Text(_)) {
                return Err(invalid(format!("{key}.{op}: a tag is a string")));
            }
        }
        Field::Category => {
            if !matches!(scalar, Scalar::Text(_)) {
                return Err(invalid(format!("{key}.{op}: a category is a string")));
            }
        }
        Field::CreatedAt | Field::UpdatedAt => {
            if kind_of == Op::Contains {
                return Err(invalid(format!(
                    "{key}.$contains: times are compared with $eq, $gt, $gte, $lt or $lte"
                )));
            }
            let Scalar::Text(s) = &scalar else {
                return Err(invalid(format!(
                    "{key}.{op}: a time is an RFC 3339 string such as 2026-01-31T12:00:00Z"
                )));
            };
            let parsed = humantime::parse_rfc3339_weak(s).map_err(|_| {
                invalid(format!(
                    "{key}.{op}: {s:?} is not an RFC 3339 time; write it as 2026-01-31T12:00:00Z (UTC)"
                ))
            })?;
            return Ok(Scalar::Text(crate::time::timestamp(parsed)));
        }
        Field::Metadata(_) => {
            if ordered && !matches!(scalar, Scalar::Text(_) | Scalar::Number(_)) {
                return Err(invalid(format!(
                    "{key}.{op}: order comparisons take a number or a string"
                )));
            }
        }
    }
    Ok(scalar)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Largest metadata object accepted, as compact JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most tags on one memory.
pub const MAX_TAGS: usize = 64;

/// Checks metadata: a JSON object of at most [`MAX_METADATA_BYTES`] bytes (compact JSON), with
/// keys that are non-empty, hold no NUL, and do not start with `$` (operators do).
pub fn check_metadata(metadata: &Map<String, Value>) -> Result<()> {
    let size = Value::Object(metadata.clone()).to_string().len();
    if size > MAX_METADATA_BYTES {
        return Err(Error::Invalid(format!(
            "metadata is {size} bytes as JSON, over the {MAX_METADATA_BYTES}-byte limit; keep large data in the text or elsewhere"
        )));
    }
    for key in metadata.keys() {
        if key.is_empty() || key.starts_with('$') || key.contains('\0') {
            return Err(Error::Invalid(format!(
                "metadata key {key:?} is not allowed; keys are non-empty, without NUL, and do not start with $"
            )));
        }
    }
    if Value::Object(metadata.clone())
        .to_string()
        .contains("\\u0000")
    {
        return Err(Error::Invalid(
            "metadata contains a NUL character; remove it".into(),
        ));
    }
    Ok(())
}

/// Parses `--metadata` text: a JSON object.
pub fn parse_metadata(text: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => {
            check_metadata(&map)?;
            Ok(map)
        }
        Ok(other) => Err(Error::Invalid(format!(
            "metadata must be a JSON object such as {{\"project\": \"x\"}}, found {}",
            kind(&other)
        ))),
        Err(e) => Err(Error::Invalid(format!(
            "metadata is not JSON ({e}); give an object such as {{\"project\": \"x\"}}"
        ))),
    }
}

/// Checks and normalises tags: each a label (see [`check_label`](super::check_label)),
/// non-empty; at most [`MAX_TAGS`]; returned sorted without duplicates.
pub fn check_tags(tags: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for tag in tags {
        super::check_label("tag", tag)?;
        if tag.trim().is_empty() {
            return Err(Error::Invalid(
                "a tag is empty; give a word such as --tag work".into(),
            ));
        }
        out.push(tag.clone());
    }
    out.sort();
    out.dedup();
    if out.len() > MAX_TAGS {
        return Err(Error::Invalid(format!(
            "{} tags given, over the limit of {MAX_TAGS}; use metadata for more structure",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Where> {
        Where::parse(&v)
    }

    #[test]
    fn bare_values_are_eq_and_keys_are_anded() {
        let w = parse(json!({"project": "x", "category": "fact"})).unwrap();
        assert_eq!(
            w,
            Where::And(vec![
                Where::Compare(
                    Field::Metadata("project".into()),
                    Op::Eq,
                    Scalar::Text("x".into())
                ),
                Where::Compare(Field::Category, Op::Eq, Scalar::Text("fact".into())),
            ])
        );
    }

    #[test]
    fn errors_name_the_bad_part() {
        let e = parse(json!({"a": {"$foo": 1}})).unwrap_err().to_string();
        assert!(e.contains("\"$foo\" is not an operator"), "{e}");
        let e = parse(json!({"$or": [{"a": 1}, 3]}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("$or[1]"), "{e}");
        let e = parse(json!({"tags": {"$gt": "a"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tags are not ordered"), "{e}");
        let e = parse(json!({"created_at": {"$gt": "yesterday"}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an RFC 3339 time"), "{e}");
        let e = parse(json!([1])).unwrap_err().to_string();
        assert!(e.contains("expected an object"), "{e}");
        let e = parse(json!({"a": {"$in": 3}})).unwrap_err().to_string();
        assert!(e.contains("a.$in takes a list"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn tags_are_sorted_and_deduplicated() {
        let tags = check_tags(&["b".into(), "a".into(), "b".into()]).unwrap();
        assert_eq!(tags, vec!["a".to_owned(), "b".to_owned()]);
        assert!(check_tags(&["".into()]).is_err());
    }
}
