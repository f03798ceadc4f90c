//! `expect:` and `until:` of a step: the status to accept and the assertions on JSON,
//! headers and body (`==`, `<`, `exists`, `matches`, `length`, …), their operands'
//! templates checked against what the step may read.

use regex::Regex;
use serde_json::Value;
use serde_json_path::JsonPath;

use super::primitives::check_templates_in_value;
use super::{Checker, Scope};
use crate::config::diagnostic::did_you_mean;
use crate::config::raw::ExpectConfig;
use crate::config::yaml::FieldPath;
use crate::model::{Expect, JsonAssertion, OPERATORS, Op, StatusMatch};

/// `expect:` or `until:`: status, JSONPath assertions, headers and body.
pub(super) fn check_expect(
    c: &mut Checker<'_>,
    path: &FieldPath,
    raw: &ExpectConfig,
    scope: &Scope<'_>,
) -> Option<Expect> {
    let mut ok = true;
    let status = match &raw.status {
        None => StatusMatch::Success,
        Some(v) => match parse_status(v) {
            Some(s) => s,
            None => {
                c.err(
                    &path.key("status"),
                    format!("`{v}` is not a status"),
                    Some("e.g. `201`, `[200, 204]` or `2xx`".into()),
                );
                ok = false;
                StatusMatch::Success
            }
        },
    };
    let mut json = Vec::new();
    for (query, spec) in &raw.json {
        let jp = path.key("json").key(query);
        let parsed = match JsonPath::parse(query) {
            Ok(p) => Some(p),
            Err(e) => {
                c.err_key(
                    &jp,
                    format!("invalid JSONPath `{query}`: {e}"),
                    Some("RFC 9535 syntax, e.g. `$.items[0].number`".into()),
                );
                None
            }
        };
        let ops = check_ops(c, &jp, spec, scope);
        match (parsed, ops) {
            (Some(p), Some(ops)) => json.push(JsonAssertion {
                path_text: query.clone(),
                path: p,
                ops,
            }),
            _ => ok = false,
        }
    }
    let mut headers = Vec::new();
    for (name, spec) in &raw.headers {
        match check_ops(c, &path.key("headers").key(name), spec, scope) {
            Some(ops) => headers.push((name.to_ascii_lowercase(), ops)),
            None => ok = false,
        }
    }
    let body = match &raw.body {
        Some(spec) => check_ops(c, &path.key("body"), spec, scope).unwrap_or_else(|| {
            ok = false;
            Vec::new()
        }),
        None => Vec::new(),
    };
    ok.then_some(Expect {
        status,
        json,
        headers,
        body,
    })
}

/// `201`, `[200, 204]`, `2xx` (which is `Success`, as is no status at all).
fn parse_status(v: &Value) -> Option<StatusMatch> {
    let code = |v: &Value| {
        v.as_u64()
            .filter(|c| (100..=599).contains(c))
            .map(|c| c as u16)
    };
    match v {
        Value::Number(_) => code(v).map(|c| StatusMatch::Codes(vec![c])),
        Value::Array(a) if !a.is_empty() => a
            .iter()
            .map(code)
            .collect::<Option<Vec<_>>>()
            .map(StatusMatch::Codes),
        Value::String(s) => {
            let s = s.to_ascii_lowercase();
            let d = s.strip_suffix("xx")?.parse::<u16>().ok()?;
            (1..=5).contains(&d).then_some(if d == 2 {
                StatusMatch::Success
            } else {
                StatusMatch::Class(d)
            })
        }
        _ => None,
    }
}

/// An assertion: a scalar or list (meaning `==`) or a map of operators.
fn check_ops(
    c: &mut Checker<'_>,
    path: &FieldPath,
    spec: &Value,
    scope: &Scope<'_>,
) -> Option<Vec<Op>> {
    let Value::Object(map) = spec else {
        check_templates_in_value(c, path, spec, scope);
        return Some(vec![Op::Eq(spec.clone())]);
    };
    if map.is_empty() {
        c.err(
            path,
            "an assertion needs at least one operator",
            Some(format!("operators: {}", OPERATORS.join(", "))),
        );
        return None;
    }
    let mut ops = Vec::new();
    let mut ok = true;
    for (op, operand) in map {
        let op_path = path.key(op);
        let parsed = match op.as_str() {
            "==" | "!=" | "contains" => {
                check_templates_in_value(c, &op_path, operand, scope);
                Some(match op.as_str() {
                    "==" => Op::Eq(operand.clone()),
                    "!=" => Op::Ne(operand.clone()),
                    _ => Op::Contains(operand.clone()),
                })
            }
            "<" | "<=" | ">" | ">=" => {
                if !(operand.is_number() || operand.is_string()) {
                    c.err(
                        &op_path,
                        format!("`{op}` compares with a number or a string"),
                        Some(format!(
                            "e.g. `{op}: 100` or `{op}: \"2026-01-01T00:00:00Z\"`"
                        )),
                    );
                    None
                } else {
                    check_templates_in_value(c, &op_path, operand, scope);
                    Some(match op.as_str() {
                        "<" => Op::Lt(operand.clone()),
                        "<=" => Op::Le(operand.clone()),
                        ">" => Op::Gt(operand.clone()),
                        _ => Op::Ge(operand.clone()),
                    })
                }
            }
            "exists" => match operand.as_bool() {
                Some(b) => Some(Op::Exists(b)),
                None => {
                    c.err(
                        &op_path,
                        "`exists` takes `true` or `false`",
                        Some("e.g. `\"$.id\": {exists: true}`".into()),
                    );
                    None
                }
            },
            "matches" => match operand.as_str().map(Regex::new) {
                Some(Ok(r)) => Some(Op::Matches(r)),
                Some(Err(e)) => {
                    c.err(
                        &op_path,
                        format!("invalid regular expression: {e}"),
                        Some("Rust regex syntax, e.g. `^RO-[0-9]+$`".into()),
                    );
                    None
                }
                None => {
                    c.err(
                        &op_path,
                        "`matches` takes a regular expression string",
                        Some("e.g. `matches: \"^RO-[0-9]+$\"`".into()),
                    );
                    None
                }
            },
            "length" => match operand.as_u64() {
                Some(n) => Some(Op::Length(n as usize)),
                None => {
                    c.err(
                        &op_path,
                        "`length` takes a non-negative integer",
                        Some("e.g. `\"$.items\": {length: 1}`".into()),
                    );
                    None
                }
            },
            other => {
                c.err_key(
                    &op_path,
                    format!("unknown assertion operator `{other}`"),
                    did_you_mean(other, OPERATORS.iter().copied())
                        .map(|h| format!("{h} (to compare with an object, write `==: {{...}}`)")),
                );
                None
            }
        };
        match parsed {
            Some(o) => ops.push(o),
            None => ok = false,
        }
    }
    ok.then_some(ops)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testing::{paths_and_messages, probe, probe_errors};
    use super::*;

    fn expect_of(expect: &str) -> Expect {
        let p = probe(&format!(
            "name: p\nsteps:\n  - name: one\n    request: {{url: \"https://x\"}}\n    expect: {expect}\n"
        ));
        p.steps[0].expect.clone()
    }

    fn errors(expect: &str) -> Vec<(String, String)> {
        paths_and_messages(&probe_errors(&format!(
            "name: p\nsteps:\n  - name: one\n    request: {{url: \"https://x\"}}\n    expect: {expect}\n"
        )))
    }

    #[test]
    fn statuses_are_codes_lists_or_classes() {
        assert_eq!(
            parse_status(&json!(201)),
            Some(StatusMatch::Codes(vec![201]))
        );
        assert_eq!(
            parse_status(&json!([200, 204])),
            Some(StatusMatch::Codes(vec![200, 204]))
        );
        assert_eq!(parse_status(&json!("2xx")), Some(StatusMatch::Success));
        assert_eq!(parse_status(&json!("4XX")), Some(StatusMatch::Class(4)));
        for bad in [
            json!(99),
            json!(600),
            json!([]),
            json!([200, "x"]),
            json!("6xx"),
            json!("20x"),
            json!(true),
        ] {
            assert_eq!(parse_status(&bad), None, "{bad}");
        }
        assert!(matches!(expect_of("{}").status, StatusMatch::Success));
        assert_eq!(
            errors("{status: 99}"),
            [(
                "steps[0].expect.status".into(),
                "`99` is not a status".into()
            )]
        );
    }

    #[test]
    fn assertions_are_values_or_operator_maps() {
        let e = expect_of(
            "{json: {\"$.id\": {exists: true}, \"$.n\": 3, \"$.items\": {length: 1, \">=\": 1}, \"$.ro\": {matches: \"^RO-\"}}, headers: {Content-Type: {contains: json}}, body: {\"!=\": \"\"}}",
        );
        assert_eq!(e.json.len(), 4);
        assert_eq!(e.json[0].path_text, "$.id");
        assert!(matches!(e.json[0].ops[..], [Op::Exists(true)]));
        assert!(matches!(&e.json[1].ops[..], [Op::Eq(v)] if *v == json!(3)));
        assert!(matches!(&e.json[2].ops[..], [Op::Length(1), Op::Ge(_)]));
        assert!(matches!(&e.json[3].ops[..], [Op::Matches(_)]));
        assert_eq!(e.headers[0].0, "content-type");
        assert!(matches!(&e.body[..], [Op::Ne(_)]));
    }

    #[test]
    fn assertion_mistakes_name_the_operator() {
        let e = probe_errors(
            "name: p\nsteps:\n  - name: one\n    request: {url: \"https://x\"}\n    expect: {json: {\"$.a\": {}, \"$.b\": {exists: yes}, \"$.c\": {matches: \"(\"}, \"$.d\": {length: -1}, \"$.e\": {\"<\": [1]}, \"$.f\": {contians: x}, \"$[\": 1}}\n",
        );
        let got: Vec<String> = e
            .iter()
            .map(|d| {
                format!(
                    "{}: {}",
                    d.path,
                    d.message.lines().next().unwrap_or_default()
                )
            })
            .map(|l| l.split(": ").take(2).collect::<Vec<_>>().join(": "))
            .collect();
        assert_eq!(
            got,
            [
                "steps[0].expect.json[\"$.a\"]: an assertion needs at least one operator",
                "steps[0].expect.json[\"$.b\"].exists: `exists` takes `true` or `false`",
                "steps[0].expect.json[\"$.c\"].matches: invalid regular expression",
                "steps[0].expect.json[\"$.d\"].length: `length` takes a non-negative integer",
                "steps[0].expect.json[\"$.e\"][\"<\"]: `<` compares with a number or a string",
                "steps[0].expect.json[\"$.f\"].contians: unknown assertion operator `contians`",
                "steps[0].expect.json[\"$[\"]: invalid JSONPath `$[`",
            ]
        );
        let hint = e[5].hint.as_deref().unwrap_or_default();
        assert!(hint.contains("did you mean `contains`?"), "{hint}");
    }

    #[test]
    fn operands_are_checked_as_templates() {
        assert_eq!(
            errors("{json: {\"$.id\": \"{{ appointment }}\"}}"),
            [(
                "steps[0].expect.json[\"$.id\"]".into(),
                "unknown variable `appointment`".into()
            )]
        );
    }
}
