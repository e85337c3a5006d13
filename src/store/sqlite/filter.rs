//! A `where` filter ([`Where`]) as SQLite conditions on alias `m`, with its values: metadata
//! through `json_each` (so any key is a bound value, never spliced into a JSON path), tags
//! through `json_each` over the tag array, category under the column's NOCASE collation.

use rusqlite::types::Value;

use crate::memory::filter::{Field, Op, Scalar, SqlLeaves, Where};

/// Appends ` AND (condition)` for `filter`.
pub(super) fn push_where(sql: &mut String, args: &mut Vec<Value>, filter: &Where) {
    sql.push_str(" AND ");
    filter.to_sql(sql, &mut Leaves(args));
}

/// SQLite's spelling of a filter's leaves, binding into the query's arguments.
struct Leaves<'a>(&'a mut Vec<Value>);

impl SqlLeaves for Leaves<'_> {
    const TRUE: &'static str = "1";
    const FALSE: &'static str = "0";

    fn compare(&mut self, sql: &mut String, field: &Field, op: Op, value: &Scalar) {
        compare(sql, self.0, field, op, value);
    }

    fn exists(&mut self, field: &Field) -> String {
        match field {
            Field::Category => "m.category <> ''".to_owned(),
            Field::Tags => "json_array_length(m.tags) > 0".to_owned(),
            Field::Metadata(key) => {
                self.0.push(Value::Text(key.clone()));
                "EXISTS (SELECT 1 FROM json_each(m.metadata) e WHERE e.key = ?)".to_owned()
            }
            Field::CreatedAt | Field::UpdatedAt => "1".to_owned(),
        }
    }
}

fn compare(sql: &mut String, args: &mut Vec<Value>, field: &Field, op: Op, value: &Scalar) {
    match field {
        Field::Category => {
            let Scalar::Text(text) = value else {
                sql.push('0');
                return;
            };
            args.push(Value::Text(text.clone()));
            if op == Op::Contains {
                sql.push_str("(instr(lower(m.category), lower(?)) > 0)");
            } else {
                sql.push_str(&format!("(m.category {} ?)", op.sql()));
            }
        }
        Field::CreatedAt | Field::UpdatedAt => {
            let column = if *field == Field::CreatedAt {
                "m.created_at"
            } else {
                "m.updated_at"
            };
            args.push(scalar_value(value));
            sql.push_str(&format!("({column} {} ?)", op.sql()));
        }
        Field::Tags => {
            args.push(scalar_value(value));
            let has = "EXISTS (SELECT 1 FROM json_each(m.tags) t WHERE t.value = ?)";
            if op == Op::Ne {
                sql.push_str(&format!("(NOT {has})"));
            } else {
                sql.push_str(&format!("({has})"));
            }
        }
        Field::Metadata(key) => {
            args.push(Value::Text(key.clone()));
            let (negated, test) = match op {
                Op::Eq => (false, equal("e", args, value)),
                Op::Ne => (true, equal("e", args, value)),
                Op::Contains => {
                    let element = equal("x", args, value);
                    let substring = if let Scalar::Text(text) = value {
                        args.push(Value::Text(text.clone()));
                        "(e.type = 'text' AND instr(e.value, ?) > 0)"
                    } else {
                        "0"
                    };
                    (
                        false,
                        format!(
                            "((e.type = 'array' AND EXISTS (SELECT 1 FROM json_each(e.value) x WHERE {element})) OR {substring})"
                        ),
                    )
                }
                Op::Gt | Op::Gte | Op::Lt | Op::Lte => {
                    let types = match value {
                        Scalar::Number(_) => "('integer', 'real')",
                        _ => "('text')",
                    };
                    args.push(scalar_value(value));
                    (
                        false,
                        format!("(e.type IN {types} AND e.value {} ?)", op.sql()),
                    )
                }
            };
            let exists = format!(
                "EXISTS (SELECT 1 FROM json_each(m.metadata) e WHERE e.key = ? AND {test})"
            );
            if negated {
                sql.push_str(&format!("(NOT {exists})"));
            } else {
                sql.push_str(&format!("({exists})"));
            }
        }
    }
}

/// `alias` (a json_each row) equals `value`, type included (1 equals 1.0; "1" does not).
fn equal(alias: &str, args: &mut Vec<Value>, value: &Scalar) -> String {
    match value {
        Scalar::Text(text) => {
            args.push(Value::Text(text.clone()));
            format!("({alias}.type = 'text' AND {alias}.value = ?)")
        }
        Scalar::Number(_) => {
            args.push(scalar_value(value));
            format!("({alias}.type IN ('integer', 'real') AND {alias}.value = ?)")
        }
        Scalar::Bool(true) => format!("({alias}.type = 'true')"),
        Scalar::Bool(false) => format!("({alias}.type = 'false')"),
        Scalar::Null => format!("({alias}.type = 'null')"),
    }
}

fn scalar_value(value: &Scalar) -> Value {
    match value {
        Scalar::Text(text) => Value::Text(text.clone()),
        Scalar::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        Scalar::Bool(b) => Value::Integer(i64::from(*b)),
        Scalar::Null => Value::Null,
    }
}
