//! oomguard's changes written into the manifest's own text: a value replaced where it is
//! written (its quoting kept), a missing key added as one more line of its mapping (or one more
//! entry of a `{...}` mapping). Everything else — order, comments, quoting, anchors, the
//! other documents — stays as it was, byte for byte.
//!
//! A value that comes from an anchor (`*res`) or a merge key (`<<: *res`) is shared with other
//! nodes: it is not edited where the anchor is written; the key is written out in the mapping
//! that uses it (after the merge, so that it wins, as go-yaml reads it). Each edit is checked by
//! reading the result again as kubectl reads it: it must be the patched object exactly.

use serde_json::Value;

use super::resolve::{self, Scalar};
use super::yaml::{self, NodeId, NodeKind, Style, Tree};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("{0}")]
    Yaml(#[from] yaml::YamlError),
    #[error("/{0}: no such place in the document")]
    Missing(String),
    #[error("/{0}: written inside an anchor other nodes use; not edited in place")]
    SharedAnchor(String),
    #[error("/{0}: not a place oomguard can write")]
    Unsupported(String),
    #[error("the edited text does not read back as the patched object")]
    Mismatch,
}

/// One `add` of a JSON patch: tokens of the path, and the value.
pub type Add = (Vec<String>, Value);

/// Applies `adds` to a document's text; `expected` is the document with the patch applied, as
/// the result must read. The text is edited one add at a time (re-read between them).
pub fn apply(text: &str, adds: &[Add], expected: &Value) -> Result<String, EditError> {
    let mut text = text.to_string();
    for (path, value) in adds {
        let tree = yaml::parse(&text)?;
        // Text after the document that kubectl reads (a second document, or what follows an
        // implicit end) is not a place to write into.
        if tree.more_documents {
            return Err(EditError::Unsupported(path.join("/")));
        }
        let current = tree.to_json(&text)?;
        let mut after = current.clone();
        add_json(&mut after, path, value.clone())
            .ok_or_else(|| EditError::Missing(path.join("/")))?;
        let (start, end, with) = plan(&tree, &text, path, value, &after)?;
        text.replace_range(start..end, &with);
    }
    let tree = yaml::parse(&text)?;
    if &tree.to_json(&text)? != expected {
        return Err(EditError::Mismatch);
    }
    Ok(text)
}

/// JSON patch `add` on a value (objects only: oomguard never inserts into lists).
pub fn add_json(doc: &mut Value, path: &[String], value: Value) -> Option<()> {
    let (last, parent) = path.split_last()?;
    let mut cur = doc;
    for t in parent {
        cur = match cur {
            Value::Object(m) => m.get_mut(t)?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    cur.as_object_mut()?.insert(last.clone(), value);
    Some(())
}

fn pointer_get<'v>(v: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut cur = v;
    for t in path {
        cur = match cur {
            Value::Object(m) => m.get(t)?,
            Value::Array(a) => a.get(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Where a key's value comes from in a mapping, as go-yaml reads it (the last wins).
enum Source {
    Explicit { key: NodeId, value: NodeId },
    Merged,
}

fn source(tree: &Tree, text: &str, entries: &[(NodeId, NodeId)], key: &str) -> Option<Source> {
    let mut found = None;
    for &(k, v) in entries {
        if yaml::is_merge_key(tree, k) {
            let merged = tree.node_json(v, text).ok();
            let has = match &merged {
                Some(Value::Object(m)) => m.contains_key(key),
                Some(Value::Array(a)) => a.iter().any(|m| m.get(key).is_some()),
                _ => false,
            };
            if has {
                found = Some(Source::Merged);
            }
        } else if yaml::key_text(tree, k).as_deref() == Some(key) {
            found = Some(Source::Explicit { key: k, value: v });
        }
    }
    found
}

fn shared(tree: &Tree, id: NodeId) -> bool {
    tree.nodes[id].anchored && tree.aliased.contains(&id)
}

/// The replacement (start, end, text) that carries out one add.
fn plan(
    tree: &Tree,
    text: &str,
    path: &[String],
    value: &Value,
    after: &Value,
) -> Result<(usize, usize, String), EditError> {
    let here = |i: usize| path[..=i].join("/");
    let Some(mut cur) = tree.root else {
        return Err(EditError::Missing(String::new()));
    };
    for (i, tok) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        let new_value = || {
            pointer_get(after, &path[..=i])
                .cloned()
                .ok_or_else(|| EditError::Missing(here(i)))
        };
        if shared(tree, cur) {
            return Err(EditError::SharedAnchor(here(i)));
        }
        match &tree.nodes[cur].kind {
            NodeKind::Map { entries, flow } => match source(tree, text, entries, tok) {
                None if last => return insert(tree, text, cur, *flow, tok, value),
                None => return Err(EditError::Missing(here(i))),
                Some(Source::Merged) => return insert(tree, text, cur, *flow, tok, &new_value()?),
                Some(Source::Explicit { key, value: v }) => {
                    if last || matches!(tree.nodes[v].kind, NodeKind::Alias(_)) {
                        return replace(tree, text, key, v, &new_value()?, &here(i));
                    }
                    cur = v;
                }
            },
            NodeKind::Seq { items, .. } => {
                let item = tok
                    .parse::<usize>()
                    .ok()
                    .and_then(|n| items.get(n).copied())
                    .ok_or_else(|| EditError::Missing(here(i)))?;
                if last {
                    return Err(EditError::Unsupported(here(i)));
                }
                if matches!(tree.nodes[item].kind, NodeKind::Alias(_)) {
                    let n = &tree.nodes[item];
                    return Ok((n.start, n.end, flow(&new_value()?)));
                }
                cur = item;
            }
            _ => return Err(EditError::Unsupported(here(i))),
        }
    }
    Err(EditError::Unsupported(path.join("/")))
}

/// Replaces the value of `key` (node `v`) with `value`.
fn replace(
    tree: &Tree,
    text: &str,
    key: NodeId,
    v: NodeId,
    value: &Value,
    here: &str,
) -> Result<(usize, usize, String), EditError> {
    let n = &tree.nodes[v];
    if shared(tree, v) || (n.tagged && !matches!(n.kind, NodeKind::Alias(_))) {
        return Err(EditError::SharedAnchor(here.to_string()));
    }
    match &n.kind {
        NodeKind::Alias(_) => Ok((n.start, n.end, flow(value))),
        NodeKind::Scalar {
            value: old, style, ..
        } => {
            if old.is_empty() && *style == Style::Plain && n.start == n.end {
                // `key:` with nothing after it: the parser places the empty value at the next
                // token; write right after the key's colon instead.
                let k = &tree.nodes[key];
                let colon = text[k.end..]
                    .find(':')
                    .map(|c| k.end + c + 1)
                    .ok_or_else(|| EditError::Unsupported(here.to_string()))?;
                return Ok((colon, colon, format!(" {}", flow(value))));
            }
            if n.anchored {
                return Err(EditError::SharedAnchor(here.to_string()));
            }
            let with = match value {
                Value::String(s) => scalar_in_style(s, *style),
                Value::Array(_) | Value::Object(_) => flow(value),
                other => other.to_string(),
            };
            Ok((n.start, n.end, with))
        }
        NodeKind::Map { flow: true, .. } | NodeKind::Seq { flow: true, .. } if !n.anchored => {
            Ok((n.start, n.end, flow(value)))
        }
        _ => Err(EditError::Unsupported(here.to_string())),
    }
}

/// A string in the style the old value was written in, where that style can hold it.
fn scalar_in_style(s: &str, style: Style) -> String {
    match style {
        Style::Plain if plain_safe(s) => s.to_string(),
        Style::SingleQuoted if s.chars().all(|c| !c.is_control()) => {
            format!("'{}'", s.replace('\'', "''"))
        }
        _ => quoted(s),
    }
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{}\"", s.escape_default()))
}

/// Whether a string may be written without quotes and read back as the same string by
/// kubectl's YAML 1.1 reader (not `no`, `off`, `1e3`, `0755`, `~`, ...).
pub fn plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    resolve::plain(s) == Scalar::Str
        && !"-?:,[]{}#&*!|>'\"%@` ".contains(first)
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && !s.contains(" #")
        && s.chars().all(|c| c.is_ascii_graphic() || c == ' ')
}

fn key(s: &str) -> String {
    if plain_safe(s) {
        s.to_string()
    } else {
        quoted(s)
    }
}

/// A value in flow style (JSON, which YAML reads the same, with spaces after `:` and `,`).
pub fn flow(v: &Value) -> String {
    match v {
        Value::String(s) => quoted(s),
        Value::Array(a) => format!("[{}]", a.iter().map(flow).collect::<Vec<_>>().join(", ")),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", quoted(k), flow(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.to_string(),
    }
}

/// A value after `key:` in block style at `indent` (nested mappings one level deeper), lines
/// ending in `nl` (the document's own line break).
fn block(v: &Value, indent: usize, nl: &str) -> String {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let pad = " ".repeat(indent + 2);
            m.iter()
                .map(|(k, v)| format!("{nl}{pad}{}:{}", key(k), block(v, indent + 2, nl)))
                .collect()
        }
        Value::String(s) => format!(" {}", scalar_in_style(s, Style::Plain)),
        other => format!(" {}", flow(other)),
    }
}

/// Where a node's written content ends (a block collection ends at its last value).
fn content_end(tree: &Tree, id: NodeId) -> usize {
    let n = &tree.nodes[id];
    match &n.kind {
        NodeKind::Map {
            entries,
            flow: false,
        } => match entries.last() {
            Some(&(k, v)) => {
                let vn = &tree.nodes[v];
                if vn.start == vn.end {
                    tree.nodes[k].end
                } else {
                    content_end(tree, v).max(tree.nodes[k].end)
                }
            }
            None => n.end,
        },
        NodeKind::Seq { items, flow: false } => {
            items.last().map_or(n.end, |&i| content_end(tree, i))
        }
        _ => n.end,
    }
}

/// Whether a key of a block mapping is written explicitly (`? key`): a `?` stands between the
/// entry before it (or the mapping's start) and the key, outside comments.
fn explicit_key(tree: &Tree, text: &str, map: NodeId) -> bool {
    let NodeKind::Map { entries, .. } = &tree.nodes[map].kind else {
        return false;
    };
    let mut from = tree.nodes[map].start;
    for &(k, v) in entries {
        let to = tree.nodes[k].start;
        let between = text.get(from.min(to)..to).unwrap_or("");
        if between
            .lines()
            .any(|l| l.split('#').next().is_some_and(|l| l.contains('?')))
        {
            return true;
        }
        from = tree.nodes[v].end.max(to);
    }
    false
}

/// Adds `key: value` to a mapping.
fn insert(
    tree: &Tree,
    text: &str,
    map: NodeId,
    is_flow: bool,
    k: &str,
    value: &Value,
) -> Result<(usize, usize, String), EditError> {
    let NodeKind::Map { entries, .. } = &tree.nodes[map].kind else {
        return Err(EditError::Unsupported(k.to_string()));
    };
    if tree.nodes[map].anchored {
        return Err(EditError::SharedAnchor(k.to_string()));
    }
    if is_flow {
        let entry = format!("{}: {}", quoted(k), flow(value));
        return Ok(match entries.last() {
            Some(&(_, v)) => {
                let at = content_end(tree, v);
                (at, at, format!(", {entry}"))
            }
            None => {
                let close = tree.nodes[map].end.saturating_sub(1);
                if text.as_bytes().get(close) != Some(&b'}') {
                    return Err(EditError::Unsupported(k.to_string()));
                }
                (close, close, entry)
            }
        });
    }
    let Some(&(first_key, _)) = entries.first() else {
        return Err(EditError::Unsupported(k.to_string()));
    };
    // Lines are found by `\n`; YAML also breaks lines at a lone CR, NEL, LS and PS.
    let lone_cr = text
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'\r' && w[1] != b'\n')
        || text.ends_with('\r');
    if lone_cr || text.contains(['\u{85}', '\u{2028}', '\u{2029}']) {
        return Err(EditError::Unsupported(k.to_string()));
    }
    let key_start = tree.nodes[first_key].start;
    let line_start = text[..key_start].rfind('\n').map_or(0, |i| i + 1);
    // Only spaces and sequence dashes may stand before the first key (not `? ` of a complex
    // key, not a key that is itself a block scalar); no key of the mapping may be explicit (its
    // `?` may stand on a line of its own, and the key's column is then not the mapping's).
    let prefix = &text[line_start..key_start];
    if !prefix.chars().all(|c| c == ' ' || c == '-')
        || explicit_key(tree, text, map)
        || matches!(
            tree.nodes[first_key].kind,
            NodeKind::Scalar {
                style: Style::Literal | Style::Folded,
                ..
            }
        )
    {
        return Err(EditError::Unsupported(k.to_string()));
    }
    let indent = prefix.chars().count();
    let end = content_end(tree, map);
    let before = &text[..end];
    let line_begin = before.rfind('\n').map_or(0, |i| i + 1);
    // A CRLF document gets CRLF lines.
    let nl = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let line = format!(
        "{}{}:{}{nl}",
        " ".repeat(indent),
        key(k),
        block(value, indent, nl)
    );
    if before[line_begin..].trim().is_empty() && end > 0 {
        // The content ended with its line break (a block scalar): the next line is ours.
        return Ok((line_begin, line_begin, line));
    }
    Ok(match text[end..].find('\n') {
        Some(nl) => (end + nl + 1, end + nl + 1, line),
        None => (text.len(), text.len(), format!("{nl}{line}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(text: &str, adds: &[(&str, Value)]) -> String {
        let adds: Vec<Add> = adds
            .iter()
            .map(|(p, v)| {
                (
                    p.split('/').skip(1).map(str::to_string).collect(),
                    v.clone(),
                )
            })
            .collect();
        let tree = yaml::parse(text).unwrap();
        let mut expected = tree.to_json(text).unwrap();
        for (p, v) in &adds {
            add_json(&mut expected, p, v.clone()).unwrap();
        }
        apply(text, &adds, &expected).unwrap()
    }

    const DEPLOYMENT: &str = "\
# a comment that stays
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web   # the name
  labels: {app: web}
spec:
  template:
    spec:
      containers:
      - name: redis
        args: [--appendonly, \"no\"]
        env:
        - {name: GOGC, value: \"off\"}
        resources:
          limits:
            memory: \"256Mi\"   # raised by hand once
      - name: side
        image: x
";

    #[test]
    fn a_raised_limit_changes_one_line_and_keeps_the_rest() {
        let out = edit(
            DEPLOYMENT,
            &[
                (
                    "/spec/template/spec/containers/0/resources/limits/memory",
                    json!("347Mi"),
                ),
                (
                    "/metadata/annotations",
                    json!({"oomguard.io/limits-changed": "redis: 256Mi -> 347Mi", "oomguard.io/reason": "no: it is below"}),
                ),
                (
                    "/spec/template/spec/containers/1/resources",
                    json!({"limits": {"memory": "64Mi"}}),
                ),
            ],
        );
        let expected = DEPLOYMENT
            .replace("memory: \"256Mi\"", "memory: \"347Mi\"")
            .replace(
                "  labels: {app: web}\n",
                "  labels: {app: web}\n  annotations:\n    oomguard.io/limits-changed: \"redis: 256Mi -> 347Mi\"\n    oomguard.io/reason: \"no: it is below\"\n",
            )
            .replace(
                "        image: x\n",
                "        image: x\n        resources:\n          limits:\n            memory: 64Mi\n",
            );
        assert_eq!(out, expected);
    }

    #[test]
    fn shared_values_are_written_where_they_are_used() {
        let text = "\
res: &res
  limits: {memory: 256Mi}
a:
  resources:
    <<: *res
b:
  resources: *res
";
        let out = edit(text, &[("/a/resources/limits/memory", json!("300Mi"))]);
        assert_eq!(
            out,
            text.replace(
                "    <<: *res\n",
                "    <<: *res\n    limits:\n      memory: 300Mi\n"
            )
        );
        let out = edit(text, &[("/b/resources/limits/memory", json!("300Mi"))]);
        assert_eq!(
            out,
            text.replace(
                "resources: *res",
                "resources: {\"limits\": {\"memory\": \"300Mi\"}}"
            )
        );
    }

    #[test]
    fn flow_mappings_empty_values_and_eof() {
        let out = edit("a: {b: 1}", &[("/a/c", json!("no"))]);
        assert_eq!(out, "a: {b: 1, \"c\": \"no\"}");
        let out = edit("a: {}\n", &[("/a/c", json!(1))]);
        assert_eq!(out, "a: {\"c\": 1}\n");
        let out = edit("a:\nb: 1\n", &[("/a", json!({"x": "y"}))]);
        assert_eq!(out, "a: {\"x\": \"y\"}\nb: 1\n");
        let out = edit("a:\n  b: 1", &[("/a/c", json!("on"))]);
        assert_eq!(out, "a:\n  b: 1\n  c: \"on\"\n");
        let out = edit("a:\n  s: |\n    text\n\n  b: 1\n", &[("/a/c", json!("x"))]);
        assert_eq!(out, "a:\n  s: |\n    text\n\n  b: 1\n  c: x\n");
        let out = edit("a:\r\n  b: 1\r\n", &[("/a/c", json!({"d": "e"}))]);
        assert_eq!(out, "a:\r\n  b: 1\r\n  c:\r\n    d: e\r\n");
        let out = edit("a:\n  s: |\n    text\nz: 1\n", &[("/a/c", json!("x"))]);
        assert_eq!(out, "a:\n  s: |\n    text\n  c: x\nz: 1\n");
    }

    #[test]
    fn only_safe_strings_go_unquoted() {
        for s in ["347Mi", "1Gi", "web 256Mi -> 347Mi"] {
            assert!(plain_safe(s), "{s}");
        }
        for s in [
            "no",
            "off",
            "Y",
            "1e3",
            "0755",
            "~",
            "",
            "-x",
            "a: b",
            "a #b",
            " x",
            "x:",
            "1024",
            "web: 256Mi -> 347Mi",
        ] {
            assert!(!plain_safe(s), "{s}");
        }
    }

    /// An explicit key (`? key` then `: value`) is one no line-based insertion can follow safely,
    /// wherever its `?` stands (its own line included): refused, never written wrong.
    #[test]
    fn explicit_keys_are_refused_not_miswritten() {
        for text in [
            "?\n  \"k:}\nr69'41 [y\"\n::::::::::::::::::::::::::::\n",
            "?\n  k\n: 1\n",
            "? k\n: 1\n",
            "a: 1\n?\n  k\n: 1\n",
            "a:\n  ?\n    k\n  : 1\n",
        ] {
            let Ok(tree) = yaml::parse(text) else {
                continue;
            };
            let Ok(Value::Object(mut expected)) = tree.to_json(text) else {
                continue;
            };
            expected.insert("memory".into(), json!("347Mi"));
            let adds = vec![(vec!["memory".to_string()], json!("347Mi"))];
            match apply(text, &adds, &Value::Object(expected)) {
                Err(EditError::Mismatch) => panic!("written wrong: {text:?}"),
                Ok(out) => assert!(out.starts_with(text), "{text:?} -> {out:?}"),
                Err(_) => {}
            }
        }
        // A `?` in a comment or a value is no explicit key: the key is added.
        let out = edit("# why?\na: what? # who?\nb: 1\n", &[("/c", json!("x"))]);
        assert_eq!(out, "# why?\na: what? # who?\nb: 1\nc: x\n");
    }
}
