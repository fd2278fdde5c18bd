//! One YAML document as kubectl reads it, with where each node sits in the text.
//!
//! The parser is `libyaml-safer`, a safe line-by-line port of libyaml, whose scanner go-yaml v2
//! (what apimachinery's YAMLToJSON runs) is itself a port of: the same YAML 1.1 syntax, with
//! byte offsets for every node, which the in-place writer ([`super::edit`]) needs. The meaning
//! of scalars ([`super::resolve`]), merge keys, anchors and the alias budget follow go-yaml v2;
//! keys become JSON keys as YAMLToJSON makes them.
//!
//! Bounded: nesting deeper than [`MAX_DEPTH`] stops the parser at once (libyaml's scanner is
//! quadratic in the nesting of flow collections), and aliases are expanded under go-yaml's own
//! ratio, so a "billion laughs" document is refused as kubectl refuses it.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};

use super::resolve::{self, Scalar};

/// Deeper than any Kubernetes object (a CRD's schema reaches 40-60): refused.
pub const MAX_DEPTH: usize = 200;
/// Aliases can build deeper values than the text nests; JSON conversion stops here.
const MAX_VALUE_DEPTH: usize = 400;

pub type NodeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

#[derive(Debug)]
pub enum NodeKind {
    Scalar {
        value: String,
        style: Style,
        tag: Option<String>,
    },
    Seq {
        items: Vec<NodeId>,
        flow: bool,
    },
    Map {
        entries: Vec<(NodeId, NodeId)>,
        flow: bool,
    },
    /// `*name`: the anchored node.
    Alias(NodeId),
}

#[derive(Debug)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte offsets in the document's text (an anchor or tag included).
    pub start: usize,
    pub end: usize,
    /// Carries an anchor (`&name`) or a tag: editing it in place could change other nodes.
    pub anchored: bool,
    pub tagged: bool,
}

/// A parsed document: its nodes, the root, and the anchors other nodes refer to.
#[derive(Debug, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub root: Option<NodeId>,
    /// Nodes that some alias refers to.
    pub aliased: Vec<NodeId>,
    /// Keys written twice in one mapping: (line in the document, 1-based; key).
    pub duplicates: Vec<(usize, String)>,
    /// More documents followed the first in the same `---`-separated part (after `...` or an
    /// inline `--- x`): kubectl reads only the first.
    pub more_documents: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("line {line}: nested deeper than {MAX_DEPTH} levels; not read")]
    TooDeep { line: usize },
    #[error("line {line}: alias *{name} names no anchor before it")]
    UnknownAnchor { line: usize, name: String },
    #[error(
        "too many aliases expanded (go-yaml refuses it: \"document contains excessive aliasing\")"
    )]
    ExcessiveAliasing,
    #[error("line {line}: a merge key (<<) needs a mapping or a list of mappings")]
    BadMerge { line: usize },
    #[error("line {line}: {text} is not a value JSON can carry (kubectl refuses the document)")]
    NotJson { line: usize, text: String },
    #[error("line {line}: this key cannot be a JSON key (kubectl refuses the document)")]
    BadKey { line: usize },
    #[error("line {line}: !!{tag} {text}: the value does not fit its tag")]
    BadTag {
        line: usize,
        tag: String,
        text: String,
    },
    #[error("the YAML parser failed on this document ({0}); not read")]
    Internal(String),
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn node_line(text: &str, n: &Node) -> usize {
    line_of(text, n.start)
}

enum Open {
    Seq(NodeId),
    /// The mapping, its key waiting for a value, and the keys seen (for duplicates).
    Map(NodeId, Option<NodeId>, std::collections::HashSet<String>),
}

thread_local! {
    /// Set while this thread runs the parser: its panics are caught and reported as a document
    /// error, so the panic hook stays quiet for them.
    static IN_PARSER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Wraps the process' panic hook once so that it says nothing for a panic caught inside the
/// parser (every other panic is reported as before).
fn quiet_parser_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PARSER.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
}

/// Parses the first document of `text`. A panic inside the parser is a document error, not a
/// crash: libyaml-safer 0.3 still has a `panic!("TODO")` where libyaml reads a tag followed by
/// `,` in a flow collection (`{a: !t, b: 1}`), found by fuzz/fuzz_targets/manifest.rs.
pub fn parse(text: &str) -> Result<Tree, YamlError> {
    quiet_parser_panics();
    IN_PARSER.with(|f| f.set(true));
    let result = std::panic::catch_unwind(|| parse_inner(text));
    IN_PARSER.with(|f| f.set(false));
    result.unwrap_or_else(|p| {
        let what = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        // The one known case, in words a user can act on.
        Err(YamlError::Internal(if what.starts_with("TODO") {
            "a tag followed by `,` inside a flow collection, which libyaml-safer cannot read yet"
                .to_string()
        } else {
            what
        }))
    })
}

fn parse_inner(text: &str) -> Result<Tree, YamlError> {
    use libyaml_safer::{EventData, MappingStyle, Parser, ScalarStyle, SequenceStyle};
    let mut input = text.as_bytes();
    let mut parser = Parser::new();
    parser.set_input_string(&mut input);
    let mut tree = Tree::default();
    let mut anchors: HashMap<String, NodeId> = HashMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut pending: Vec<(NodeId, String)> = Vec::new();
    loop {
        let ev = match parser.parse() {
            Ok(ev) => ev,
            Err(e) => {
                let line = e
                    .problem_mark()
                    .map_or(1, |m| line_of(text, m.index as usize));
                let message = match e.context() {
                    Some(c) => format!("{} {c}", e.problem()),
                    None => e.problem().to_string(),
                };
                return Err(YamlError::Syntax { line, message });
            }
        };
        let (start, end) = (ev.start_mark.index as usize, ev.end_mark.index as usize);
        let id = tree.nodes.len();
        let (node, anchor) = match ev.data {
            EventData::StreamStart { .. } | EventData::DocumentStart { .. } => continue,
            EventData::StreamEnd => break,
            EventData::DocumentEnd { .. } => {
                // go-yaml's Unmarshal reads the first document and nothing after it.
                tree.more_documents = text[start.min(text.len())..]
                    .trim_start_matches("...")
                    .lines()
                    .any(|l| {
                        let l = l.trim();
                        !l.is_empty() && !l.starts_with('#') && l != "..."
                    });
                break;
            }
            EventData::Alias { anchor } => {
                let Some(&target) = anchors.get(&anchor) else {
                    return Err(YamlError::UnknownAnchor {
                        line: line_of(text, start),
                        name: anchor,
                    });
                };
                tree.aliased.push(target);
                let node = Node {
                    kind: NodeKind::Alias(target),
                    start,
                    end,
                    anchored: false,
                    tagged: false,
                };
                (node, None)
            }
            EventData::Scalar {
                anchor,
                tag,
                value,
                style,
                ..
            } => {
                let style = match style {
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                    _ => Style::Plain,
                };
                let node = Node {
                    tagged: tag.is_some(),
                    kind: NodeKind::Scalar { value, style, tag },
                    start,
                    end,
                    anchored: anchor.is_some(),
                };
                (node, anchor)
            }
            EventData::SequenceStart {
                anchor, tag, style, ..
            } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        line: line_of(text, start),
                    });
                }
                tree.nodes.push(Node {
                    kind: NodeKind::Seq {
                        items: Vec::new(),
                        flow: style == SequenceStyle::Flow,
                    },
                    start,
                    end,
                    anchored: anchor.is_some(),
                    tagged: tag.is_some(),
                });
                stack.push(Open::Seq(id));
                if let Some(a) = anchor {
                    // Registered when the collection ends: an alias inside it is an error,
                    // as go-yaml's "anchor value contains itself".
                    pending.push((id, a));
                }
                continue;
            }
            EventData::MappingStart {
                anchor, tag, style, ..
            } => {
                if stack.len() >= MAX_DEPTH {
                    return Err(YamlError::TooDeep {
                        line: line_of(text, start),
                    });
                }
                tree.nodes.push(Node {
                    kind: NodeKind::Map {
                        entries: Vec::new(),
                        flow: style == MappingStyle::Flow,
                    },
                    start,
                    end,
                    anchored: anchor.is_some(),
                    tagged: tag.is_some(),
                });
                stack.push(Open::Map(id, None, Default::default()));
                if let Some(a) = anchor {
                    pending.push((id, a));
                }
                continue;
            }
            EventData::SequenceEnd | EventData::MappingEnd => {
                let Some(open) = stack.pop() else {
                    return Err(YamlError::Internal("unbalanced collection".into()));
                };
                let done = match open {
                    Open::Seq(n) | Open::Map(n, _, _) => n,
                };
                tree.nodes[done].end = end;
                if let Some(i) = pending.iter().rposition(|(n, _)| *n == done) {
                    let (_, name) = pending.swap_remove(i);
                    anchors.insert(name, done);
                }
                attach(&mut tree, &mut stack, done, text);
                continue;
            }
        };
        tree.nodes.push(node);
        if let Some(a) = anchor {
            anchors.insert(a, id);
        }
        attach(&mut tree, &mut stack, id, text);
    }
    Ok(tree)
}

fn attach(tree: &mut Tree, stack: &mut [Open], id: NodeId, text: &str) {
    match stack.last_mut() {
        None => {
            if tree.root.is_none() {
                tree.root = Some(id);
            }
        }
        Some(Open::Seq(s)) => {
            if let NodeKind::Seq { items, .. } = &mut tree.nodes[*s].kind {
                items.push(id);
            }
        }
        Some(Open::Map(m, pending, seen)) => match pending.take() {
            None => *pending = Some(id),
            Some(key) => {
                if let Some(k) = key_text(tree, key) {
                    if k != "<<" && !seen.insert(k.clone()) {
                        let line = node_line(text, &tree.nodes[key]);
                        tree.duplicates.push((line, k));
                    }
                }
                if let NodeKind::Map { entries, .. } = &mut tree.nodes[*m].kind {
                    entries.push((key, id));
                }
            }
        },
    }
}

/// A scalar key's text as the JSON key YAMLToJSON makes of it (None: not a scalar, or a key
/// JSON cannot have).
pub fn key_text(tree: &Tree, id: NodeId) -> Option<String> {
    let node = match &tree.nodes[id].kind {
        NodeKind::Alias(t) => &tree.nodes[*t],
        _ => &tree.nodes[id],
    };
    let NodeKind::Scalar { value, style, tag } = &node.kind else {
        return None;
    };
    let r = match (style, tag) {
        (_, Some(t)) => resolve::tagged(t, value)?,
        (Style::Plain, None) => resolve::plain(value),
        _ => Scalar::Str,
    };
    Some(match r {
        Scalar::Str | Scalar::Merge => value.clone(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Int(i) => i.to_string(),
        Scalar::Uint(u) => u.to_string(),
        // Go: strconv.FormatFloat(v, 'g', -1, 32), with YAML's names for the specials.
        Scalar::Float(f) if f.is_nan() => ".nan".to_string(),
        Scalar::Float(f) if f == f64::INFINITY => ".inf".to_string(),
        Scalar::Float(f) if f == f64::NEG_INFINITY => "-.inf".to_string(),
        Scalar::Float(f) => format!("{}", f as f32),
        Scalar::Null => return None,
    })
}

/// Whether a map key is the merge key `<<`.
pub fn is_merge_key(tree: &Tree, id: NodeId) -> bool {
    match &tree.nodes[id].kind {
        NodeKind::Scalar {
            value,
            style: Style::Plain,
            tag: None,
        } => value == "<<",
        NodeKind::Scalar {
            tag: Some(t),
            value,
            ..
        } => resolve::tagged(t, value) == Some(Scalar::Merge),
        _ => false,
    }
}

/// go-yaml v2's budget for aliases: past 100 nodes read through aliases and 1000 nodes in all,
/// the share read through aliases may be 99% up to 400,000 nodes, falling to 10% at 4,000,000.
#[derive(Default)]
struct Budget {
    decoded: u64,
    /// Nodes read inside an alias' expansion.
    aliases: u64,
    alias_depth: u32,
}

impl Budget {
    fn allowed_ratio(decoded: u64) -> f64 {
        const LOW: f64 = 400_000.0;
        const HIGH: f64 = 4_000_000.0;
        let d = decoded as f64;
        if d <= LOW {
            0.99
        } else if d >= HIGH {
            0.10
        } else {
            0.99 - 0.89 * ((d - LOW) / (HIGH - LOW))
        }
    }

    fn check(&self) -> Result<(), YamlError> {
        if self.aliases > 100
            && self.decoded > 1000
            && self.aliases as f64 / self.decoded as f64 > Self::allowed_ratio(self.decoded)
        {
            return Err(YamlError::ExcessiveAliasing);
        }
        Ok(())
    }
}

impl Tree {
    /// The document as JSON, as YAMLToJSON makes it (Null for an empty document).
    pub fn to_json(&self, text: &str) -> Result<Value, YamlError> {
        let Some(root) = self.root else {
            return Ok(Value::Null);
        };
        let mut budget = Budget::default();
        self.value(root, text, 0, &mut budget)
    }

    /// One node as JSON.
    pub fn node_json(&self, id: NodeId, text: &str) -> Result<Value, YamlError> {
        let mut budget = Budget::default();
        self.value(id, text, 0, &mut budget)
    }

    fn value(
        &self,
        id: NodeId,
        text: &str,
        depth: usize,
        budget: &mut Budget,
    ) -> Result<Value, YamlError> {
        let node = &self.nodes[id];
        if depth > MAX_VALUE_DEPTH {
            return Err(YamlError::TooDeep {
                line: node_line(text, node),
            });
        }
        budget.decoded += 1;
        if budget.alias_depth > 0 {
            budget.aliases += 1;
        }
        budget.check()?;
        Ok(match &node.kind {
            NodeKind::Alias(t) => {
                budget.alias_depth += 1;
                let v = self.value(*t, text, depth + 1, budget);
                budget.alias_depth -= 1;
                return v;
            }
            NodeKind::Scalar { value, style, tag } => {
                let r = match (style, tag) {
                    (_, Some(t)) => resolve::tagged(t, value).ok_or_else(|| YamlError::BadTag {
                        line: node_line(text, node),
                        tag: t
                            .strip_prefix("tag:yaml.org,2002:")
                            .unwrap_or(t)
                            .to_string(),
                        text: value.clone(),
                    })?,
                    (Style::Plain, None) => resolve::plain(value),
                    _ => Scalar::Str,
                };
                match r {
                    Scalar::Null => Value::Null,
                    Scalar::Bool(b) => Value::Bool(b),
                    Scalar::Int(i) => Value::from(i),
                    Scalar::Uint(u) => Value::from(u),
                    Scalar::Float(f) => json_float(f).ok_or_else(|| YamlError::NotJson {
                        line: node_line(text, node),
                        text: value.clone(),
                    })?,
                    Scalar::Str | Scalar::Merge => Value::String(value.clone()),
                }
            }
            NodeKind::Seq { items, .. } => {
                let mut out = Vec::with_capacity(items.len());
                for &i in items {
                    out.push(self.value(i, text, depth + 1, budget)?);
                }
                Value::Array(out)
            }
            NodeKind::Map { entries, .. } => {
                let mut out = Map::new();
                for &(k, v) in entries {
                    if is_merge_key(self, k) {
                        self.merge(v, text, depth + 1, budget, &mut out)?;
                        continue;
                    }
                    let key = self.key_json(k, text)?;
                    let value = self.value(v, text, depth + 1, budget)?;
                    out.insert(key, value);
                }
                Value::Object(out)
            }
        })
    }

    fn key_json(&self, k: NodeId, text: &str) -> Result<String, YamlError> {
        key_text(self, k).ok_or_else(|| YamlError::BadKey {
            line: node_line(text, &self.nodes[k]),
        })
    }

    /// go-yaml v2's merge: into the map being built, in the order the entries come (a key set
    /// after `<<` wins over it); of a list of mappings, the earlier ones win.
    fn merge(
        &self,
        v: NodeId,
        text: &str,
        depth: usize,
        budget: &mut Budget,
        out: &mut Map<String, Value>,
    ) -> Result<(), YamlError> {
        let bad = || YamlError::BadMerge {
            line: node_line(text, &self.nodes[v]),
        };
        let is_map = |id: NodeId| match &self.nodes[id].kind {
            NodeKind::Map { .. } => true,
            NodeKind::Alias(t) => matches!(self.nodes[*t].kind, NodeKind::Map { .. }),
            _ => false,
        };
        let sources: Vec<NodeId> = match &self.nodes[v].kind {
            NodeKind::Seq { items, .. } => {
                if !items.iter().all(|&i| is_map(i)) {
                    return Err(bad());
                }
                items.iter().rev().copied().collect()
            }
            _ if is_map(v) => vec![v],
            _ => return Err(bad()),
        };
        for s in sources {
            if let Value::Object(m) = self.value(s, text, depth, budget)? {
                out.extend(m);
            }
        }
        Ok(())
    }
}

/// A float as encoding/json writes it: integral values as integers; NaN and infinities are
/// not JSON.
fn json_float(f: f64) -> Option<Value> {
    if !f.is_finite() {
        return None;
    }
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return Some(Value::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json(text: &str) -> Value {
        parse(text).unwrap().to_json(text).unwrap()
    }

    #[test]
    fn reads_as_yamltojson_does() {
        assert_eq!(
            json("args: [--appendonly, no, \"no\", off, 'on', 0755, 1_000]\nGOGC: off\n"),
            json!({"args": ["--appendonly", false, "no", false, "on", 493, 1000], "GOGC": false})
        );
        assert_eq!(
            json("1: a\ntrue: b\n1.5: c\n"),
            json!({"1": "a", "true": "b", "1.5": "c"})
        );
        assert_eq!(json(""), Value::Null);
        assert_eq!(json("# only a comment\n"), Value::Null);
        assert_eq!(json("a: 2026-01-02\n"), json!({"a": "2026-01-02"}));
        assert_eq!(
            json("a: !!str 12\nb: !!int '7'\n"),
            json!({"a": "12", "b": 7})
        );
        assert!(matches!(
            parse("a: .nan\n").unwrap().to_json("a: .nan\n"),
            Err(YamlError::NotJson { line: 1, .. })
        ));
    }

    #[test]
    fn merge_keys_and_anchors() {
        let text = "\
base: &res
  limits: {memory: 256Mi}
  requests: {memory: 128Mi}
a:
  <<: *res
  requests: {memory: 64Mi}
b: {<<: [{x: 1}, {x: 2, z: 2}]}
c: *res
d:
  requests: {memory: 1Mi}
  <<: *res
";
        let v = json(text);
        assert_eq!(v["a"]["limits"]["memory"], "256Mi");
        assert_eq!(v["a"]["requests"]["memory"], "64Mi");
        assert_eq!(v["b"], json!({"x": 1, "z": 2}));
        // `y` is a YAML 1.1 boolean, as a key too.
        assert_eq!(json("y: 1\n"), json!({"true": 1}));
        assert_eq!(v["c"], v["base"]);
        // go-yaml v2: a merge after a key overwrites it.
        assert_eq!(v["d"]["requests"]["memory"], "128Mi");
        assert!(matches!(
            parse("a: {<<: 1}\n").unwrap().to_json("a: {<<: 1}\n"),
            Err(YamlError::BadMerge { .. })
        ));
        assert!(matches!(
            parse("a: *nope\n"),
            Err(YamlError::UnknownAnchor { .. })
        ));
        assert!(matches!(
            parse("a: &x [1, *x]\n"),
            Err(YamlError::UnknownAnchor { .. })
        ));
    }

    #[test]
    fn spans_are_byte_offsets() {
        let text = "é: x\nmemory: 256Mi  # c\n";
        let t = parse(text).unwrap();
        let scalars: Vec<&str> = t
            .nodes
            .iter()
            .filter(|n| matches!(n.kind, NodeKind::Scalar { .. }))
            .map(|n| &text[n.start..n.end])
            .collect();
        assert_eq!(scalars, ["é", "x", "memory", "256Mi"]);
    }

    #[test]
    fn duplicates_and_second_documents_are_noted() {
        let t = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(t.duplicates, [(3, "a".to_string())]);
        assert_eq!(json("a: 1\na: 3\n"), json!({"a": 3}));
        let t = parse("a: 1\n...\nb: 2\n").unwrap();
        assert!(t.more_documents);
    }

    #[test]
    fn the_parsers_own_panics_are_document_errors() {
        let text = "a: {b: !t, c: 1}\n";
        assert!(matches!(parse(text), Err(YamlError::Internal(_))));
        // The next document is read as usual.
        assert!(parse("a: 1\n").is_ok());
    }

    #[test]
    fn hostile_nesting_is_refused_quickly() {
        let start = std::time::Instant::now();
        let text = "[".repeat(200_000);
        assert!(matches!(parse(&text), Err(YamlError::TooDeep { .. })));
        let text = format!("a: {}", "{b: ".repeat(100_000));
        assert!(matches!(parse(&text), Err(YamlError::TooDeep { .. })));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // A billion laughs.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = format!("*a{}", i - 1);
            text.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let t = parse(&text).unwrap();
        assert_eq!(t.to_json(&text), Err(YamlError::ExcessiveAliasing));
    }
}
