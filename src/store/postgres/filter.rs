//! A `where` filter ([`Where`]) as PostgreSQL conditions on alias `m`, with its parameters:
//! metadata through jsonb operators (the key is a parameter, never spliced), tags by jsonb
//! containment, category folded as the column's other comparisons fold it. Same results as
//! SQLite's (`sqlite/filter.rs`): strings compare by code point (COLLATE "C"), numbers as
//! numbers, and a value of another type than the operand never matches an order comparison.

use super::memories::Args;
use crate::memory::filter::{Field, Op, Scalar, SqlLeaves, Where};

/// Appends ` AND (condition)` for `filter`.
pub(super) fn push_where(args: &mut Args, filter: &Where) {
    let mut sql = String::new();
    filter.to_sql(&mut sql, &mut Leaves(args));
    args.sql.push_str(" AND ");
    args.sql.push_str(&sql);
}

/// PostgreSQL's spelling of a filter's leaves, binding into the query's parameters.
struct Leaves<'a>(&'a mut Args);

impl SqlLeaves for Leaves<'_> {
    const TRUE: &'static str = "true";
    const FALSE: &'static str = "false";

    fn compare(&mut self, sql: &mut String, field: &Field, op: Op, value: &Scalar) {
        compare(sql, self.0, field, op, value);
    }

    fn exists(&mut self, field: &Field) -> String {
        match field {
            Field::Category => "m.category <> ''".to_owned(),
            Field::Tags => "jsonb_array_length(m.tags) > 0".to_owned(),
            Field::Metadata(key) => {
                let k = self.0.push(key.clone());
                format!("(m.metadata -> {k}::text) IS NOT NULL")
            }
            Field::CreatedAt | Field::UpdatedAt => "true".to_owned(),
        }
    }
}

fn compare(sql: &mut String, args: &mut Args, field: &Field, op: Op, value: &Scalar) {
    match field {
        Field::Category => {
            let Scalar::Text(text) = value else {
                sql.push_str("false");
                return;
            };
            let p = args.push(text.clone());
            if op == Op::Contains {
                sql.push_str(&format!(
                    "(strpos(modstate_fold(m.category), modstate_fold({p}::text)) > 0)"
                ));
            } else {
                sql.push_str(&format!(
                    "(modstate_fold(m.category) COLLATE \"C\" {} modstate_fold({p}::text))",
                    op.sql()
                ));
            }
        }
        Field::CreatedAt | Field::UpdatedAt => {
            let column = if *field == Field::CreatedAt {
                "m.created_at"
            } else {
                "m.updated_at"
            };
            let Scalar::Text(text) = value else {
                sql.push_str("false");
                return;
            };
            let p = args.push(text.clone());
            sql.push_str(&format!("({column} {} {p}::text)", op.sql()));
        }
        Field::Tags => {
            let Scalar::Text(text) = value else {
                sql.push_str("false");
                return;
            };
            let p = args.push(text.clone());
            let has = format!("m.tags @> jsonb_build_array({p}::text)");
            if op == Op::Ne {
                sql.push_str(&format!("(NOT {has})"));
            } else {
                sql.push_str(&format!("({has})"));
            }
        }
        Field::Metadata(key) => {
            let k = args.push(key.clone());
            let v = format!("(m.metadata -> {k}::text)");
            let test = match op {
                Op::Eq | Op::Ne => {
                    let p = args.push(value.to_json());
                    let eq = format!("coalesce({v} = {p}::text::jsonb, false)");
                    if op == Op::Ne {
                        format!("(NOT {eq})")
                    } else {
                        format!("({eq})")
                    }
                }
                Op::Contains => {
                    let p = args.push(value.to_json());
                    let substring = if let Scalar::Text(text) = value {
                        let s = args.push(text.clone());
                        format!(
                            "WHEN 'string' THEN strpos(m.metadata ->> {k}::text, {s}::text) > 0"
                        )
                    } else {
                        String::new()
                    };
                    format!(
                        "(coalesce(CASE jsonb_typeof({v}) WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({v}) x WHERE x = {p}::text::jsonb) {substring} ELSE false END, false))"
                    )
                }
                Op::Gt | Op::Gte | Op::Lt | Op::Lte => match value {
                    Scalar::Number(_) => {
                        let p = args.push(value.to_json());
                        format!(
                            "(coalesce(jsonb_typeof({v}) = 'number' AND {v} {} {p}::text::jsonb, false))",
                            op.sql()
                        )
                    }
                    Scalar::Text(text) => {
                        let p = args.push(text.clone());
                        format!(
                            "(coalesce(jsonb_typeof({v}) = 'string' AND (m.metadata ->> {k}::text) COLLATE \"C\" {} {p}::text, false))",
                            op.sql()
                        )
                    }
                    _ => "false".to_owned(),
                },
            };
            sql.push_str(&test);
        }
    }
}
