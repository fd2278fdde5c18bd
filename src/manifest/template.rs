//! An OpenShift `Template`'s objects as `oc process` makes them from the parameters' values:
//! `${NAME}` inside a string is replaced by the value's text, and a string that is exactly
//! `${{NAME}}` by the value read as JSON (a number, a boolean) when it is one. A parameter
//! without a value is empty, or generated (`generate: expression`): a generated value is
//! random, so oomguard names it rather than guessing it.

use std::collections::BTreeMap;

use serde_json::Value;

/// The parameters of a Template: name → value (None: generated, not known offline).
pub fn parameters(template: &Value) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    for p in template
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = p.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = match p.get("value") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Null) | None => {
                if p.get("generate").and_then(Value::as_str).is_some() {
                    None
                } else {
                    Some(String::new())
                }
            }
            Some(other) => Some(other.to_string()),
        };
        out.insert(name.to_string(), value);
    }
    out
}

/// One object with the parameters filled in; `generated` collects the generated parameters it
/// uses (their value is not known before `oc process` runs).
pub fn process(
    object: &Value,
    params: &BTreeMap<String, Option<String>>,
    generated: &mut Vec<String>,
) -> Value {
    match object {
        Value::String(s) => substitute(s, params, generated),
        Value::Array(a) => Value::Array(a.iter().map(|v| process(v, params, generated)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), process(v, params, generated)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn substitute(
    s: &str,
    params: &BTreeMap<String, Option<String>>,
    generated: &mut Vec<String>,
) -> Value {
    if !s.contains("${") {
        return Value::String(s.to_string());
    }
    // `${{NAME}}` alone: the value as JSON when it parses.
    if let Some(name) = s
        .strip_prefix("${{")
        .and_then(|r| r.strip_suffix("}}"))
        .filter(|n| is_name(n))
    {
        match params.get(name) {
            Some(Some(v)) => {
                return serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))
            }
            Some(None) => {
                generated.push(name.to_string());
                return Value::String(s.to_string());
            }
            None => {}
        }
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let braces = usize::from(after.starts_with('{'));
        let inner = &after[braces..];
        let close = if braces == 1 { "}}" } else { "}" };
        match inner.find(close).map(|e| (&inner[..e], e)) {
            Some((name, e)) if is_name(name) => match params.get(name) {
                Some(Some(v)) => {
                    out.push_str(v);
                    rest = &inner[e + close.len()..];
                }
                Some(None) => {
                    generated.push(name.to_string());
                    out.push_str(&rest[at..at + 2 + braces + e + close.len()]);
                    rest = &inner[e + close.len()..];
                }
                None => {
                    out.push_str("${");
                    rest = after;
                }
            },
            _ => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Value::String(out)
}

fn is_name(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The parameter a string is exactly (`${MEMORY_LIMIT}`), if it is one.
pub fn parameter_of(s: &str) -> Option<&str> {
    s.strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .map(|n| n.trim_start_matches('{').trim_end_matches('}'))
        .filter(|n| is_name(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameters_fill_objects_as_oc_process_does() {
        let t = json!({"parameters": [
            {"name": "MEMORY_LIMIT", "value": "512Mi"},
            {"name": "REPLICAS", "value": "2"},
            {"name": "PASSWORD", "generate": "expression", "from": "[a-z]{8}"},
            {"name": "EMPTY"}
        ]});
        let p = parameters(&t);
        let mut generated = Vec::new();
        let obj = json!({
            "limit": "${MEMORY_LIMIT}",
            "replicas": "${{REPLICAS}}",
            "text": "a-${EMPTY}-${UNKNOWN}-${PASSWORD}",
            "n": 3
        });
        assert_eq!(
            process(&obj, &p, &mut generated),
            json!({"limit": "512Mi", "replicas": 2, "text": "a--${UNKNOWN}-${PASSWORD}", "n": 3})
        );
        assert_eq!(generated, ["PASSWORD"]);
        assert_eq!(parameter_of("${MEMORY_LIMIT}"), Some("MEMORY_LIMIT"));
        assert_eq!(parameter_of("${{R}}"), Some("R"));
        assert_eq!(parameter_of("x${A}"), None);
    }
}
