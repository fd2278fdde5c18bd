//! Manifests read as kubectl reads them, and written back as they were written.
//!
//! - [`split`]: the stream cut into documents where kubectl cuts it, one held at a time;
//! - [`yaml`] and [`resolve`]: one document parsed with byte offsets and read as apimachinery's
//!   YAMLToJSON reads it (YAML 1.1 booleans, merge keys, anchors);
//! - objects: a `List` (or `DeploymentList`, nested Lists) gives its items, an OpenShift
//!   `Template` its objects as `oc process` fills them ([`template`]);
//! - [`edit`]: oomguard's patch written into the document's own text.
//!
//! A stream whose first character is `{` is JSON, as for kubectl: a sequence of JSON values.

pub mod edit;
pub mod resolve;
pub mod split;
pub mod template;
pub mod yaml;

use std::io::BufRead;

use serde_json::Value;

pub use split::Part;

/// One object of a document, and where it sits in it.
#[derive(Debug, Clone)]
pub struct Object {
    pub value: Value,
    /// JSON pointer tokens of the object in its document (empty: the document itself).
    pub path: Vec<String>,
    /// What holds it: `List`, `Template NAME`.
    pub within: Option<String>,
    /// The object of a Template: `value` is processed; the document holds it unprocessed.
    pub from_template: bool,
    /// Generated parameters (random at `oc process`) the object uses.
    pub generated: Vec<String>,
}

/// What a document holds.
#[derive(Debug)]
pub enum Content {
    /// Nothing (comments, `---` alone): kubectl skips it.
    Empty,
    Objects {
        /// The document as JSON (a List's or a Template's whole text).
        json: Value,
        objects: Vec<Object>,
        /// Things kubectl would read differently from what the text suggests (duplicate keys,
        /// a second document after `...`).
        notes: Vec<String>,
    },
    /// Not read: the reason, with a line number in the stream when there is one.
    Error(String),
}

/// One document of the stream, in order.
#[derive(Debug)]
pub struct Document {
    /// 1-based position among the stream's parts.
    pub index: usize,
    pub part: Part,
    pub content: Content,
    /// Written as JSON (a JSON stream): an edited document is written back as JSON.
    pub json: bool,
}

/// How deep Lists may nest in Lists.
const MAX_LIST_NESTING: usize = 8;

/// Reads the stream document by document.
pub fn documents<R: BufRead + 'static>(
    mut reader: R,
) -> std::io::Result<Box<dyn Iterator<Item = std::io::Result<Document>>>> {
    if starts_with_brace(&mut reader)? {
        let mut text = String::new();
        reader.read_to_string(&mut text)?;
        return Ok(Box::new(json_documents(text).into_iter().map(Ok)));
    }
    let mut index = 0;
    Ok(Box::new(split::Parts::new(reader).map(move |part| {
        index += 1;
        part.map(|p| read_part(index, p))
    })))
}

/// kubectl's test: the first character that is not white space is `{`.
fn starts_with_brace<R: BufRead>(reader: &mut R) -> std::io::Result<bool> {
    let buf = reader.fill_buf()?;
    Ok(buf
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{'))
}

/// A JSON stream: one document per value (the text between values kept for writing back).
fn json_documents(text: String) -> Vec<Document> {
    let mut out = Vec::new();
    let mut stream =
        serde_json::Deserializer::from_str(&text).into_iter::<&serde_json::value::RawValue>();
    let mut prev_end = 0;
    loop {
        let index = out.len() + 1;
        match stream.next() {
            None => break,
            Some(Ok(raw)) => {
                let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
                let end = start + raw.get().len();
                let part = Part {
                    separator: text[prev_end..start].to_string(),
                    text: raw.get().to_string(),
                    first_line: yaml::line_of(&text, start),
                    refused: None,
                };
                prev_end = end;
                let content = match serde_json::from_str::<Value>(raw.get()) {
                    Ok(v) => objects_of(v, Vec::new()),
                    Err(e) => Content::Error(format!("not valid JSON: {e}")),
                };
                out.push(Document {
                    index,
                    part,
                    content,
                    json: true,
                });
            }
            Some(Err(e)) => {
                let part = Part {
                    separator: String::new(),
                    text: text[prev_end..].to_string(),
                    first_line: yaml::line_of(&text, prev_end),
                    refused: None,
                };
                out.push(Document {
                    index,
                    part,
                    content: Content::Error(format!(
                        "not valid JSON: {e}; kubectl stops reading the stream here"
                    )),
                    json: true,
                });
                return out;
            }
        }
    }
    if prev_end < text.len() {
        if let Some(last) = out.last_mut() {
            last.part.text.push_str(&text[prev_end..]);
        }
    }
    out
}

/// Reads one part of a YAML stream.
pub fn read_part(index: usize, part: Part) -> Document {
    let content = match &part.refused {
        Some(why) => Content::Error(format!("line {}: {why}", part.first_line)),
        None => parse_text(&part.text, part.first_line),
    };
    Document {
        index,
        part,
        content,
        json: false,
    }
}

/// Reads one document's text (`first_line`: its line in the stream, for messages).
pub fn parse_text(text: &str, first_line: usize) -> Content {
    let stream_line = |l: usize| l + first_line - 1;
    let shift = |e: yaml::YamlError| -> String {
        use yaml::YamlError as E;
        match e {
            E::Syntax { line, message } => {
                format!("not valid YAML: line {}: {message}", stream_line(line))
            }
            E::TooDeep { line } => E::TooDeep {
                line: stream_line(line),
            }
            .to_string(),
            E::UnknownAnchor { line, name } => E::UnknownAnchor {
                line: stream_line(line),
                name,
            }
            .to_string(),
            E::BadMerge { line } => E::BadMerge {
                line: stream_line(line),
            }
            .to_string(),
            E::NotJson { line, text } => E::NotJson {
                line: stream_line(line),
                text,
            }
            .to_string(),
            E::BadKey { line } => E::BadKey {
                line: stream_line(line),
            }
            .to_string(),
            E::BadTag { line, tag, text } => E::BadTag {
                line: stream_line(line),
                tag,
                text,
            }
            .to_string(),
            other => other.to_string(),
        }
    };
    let tree = match yaml::parse(text) {
        Ok(t) => t,
        Err(e) => return Content::Error(shift(e)),
    };
    let json = match tree.to_json(text) {
        Ok(v) => v,
        Err(e) => return Content::Error(shift(e)),
    };
    let mut notes: Vec<String> = tree
        .duplicates
        .iter()
        .map(|(line, key)| {
            format!(
                "line {}: key {key} is written twice in one mapping; kubectl keeps the last",
                stream_line(*line)
            )
        })
        .collect();
    if tree.more_documents {
        notes.push(
            "a second YAML document follows in the same part (after `...` or `--- x`): kubectl \
             reads only the first; separate documents with `---` alone on a line"
                .to_string(),
        );
    }
    match objects_of(json, notes) {
        Content::Objects {
            json,
            objects,
            notes,
        } if json.is_null() && notes.is_empty() => {
            let _ = objects;
            Content::Empty
        }
        c => c,
    }
}

/// The objects of a document: the document itself, a List's items, a Template's objects.
pub fn objects_of(json: Value, notes: Vec<String>) -> Content {
    let mut objects = Vec::new();
    if !json.is_null() {
        collect(&json, Vec::new(), None, 0, &mut objects);
    }
    Content::Objects {
        json,
        objects,
        notes,
    }
}

fn kind_of(v: &Value) -> (&str, &str) {
    (
        v.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
        v.get("kind").and_then(Value::as_str).unwrap_or(""),
    )
}

/// Whether an object is a Template kubectl would create and `oc process` would fill.
pub fn is_template(v: &Value) -> bool {
    let (api_version, kind) = kind_of(v);
    kind == "Template" && matches!(api_version, "template.openshift.io/v1" | "v1")
}

/// A list kind kubectl flattens: `List`, or any `*List` with `items`.
pub fn is_list(v: &Value) -> bool {
    let (_, kind) = kind_of(v);
    kind.ends_with("List") && v.get("items").is_some_and(Value::is_array)
}

fn collect(
    v: &Value,
    path: Vec<String>,
    within: Option<String>,
    depth: usize,
    out: &mut Vec<Object>,
) {
    if is_list(v) && depth < MAX_LIST_NESTING {
        let (_, kind) = kind_of(v);
        let within = match &within {
            Some(w) => format!("{w} > {kind}"),
            None => kind.to_string(),
        };
        for (i, item) in v
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut p = path.clone();
            p.extend(["items".to_string(), i.to_string()]);
            collect(item, p, Some(within.clone()), depth + 1, out);
        }
        return;
    }
    if is_template(v) {
        let params = template::parameters(v);
        let name = v
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let within = Some(match &within {
            Some(w) => format!("{w} > Template {name}"),
            None => format!("Template {name}"),
        });
        // The Template itself is an object kubectl creates (on OpenShift).
        out.push(Object {
            value: v.clone(),
            path: path.clone(),
            within: None,
            from_template: false,
            generated: Vec::new(),
        });
        for (i, o) in v
            .get("objects")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let mut generated = Vec::new();
            let value = template::process(o, &params, &mut generated);
            generated.sort();
            generated.dedup();
            let mut p = path.clone();
            p.extend(["objects".to_string(), i.to_string()]);
            out.push(Object {
                value,
                path: p,
                within: within.clone(),
                from_template: true,
                generated,
            });
        }
        return;
    }
    out.push(Object {
        value: v.clone(),
        path,
        within,
        from_template: false,
        generated: Vec::new(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(s: &str) -> Vec<Document> {
        documents(std::io::Cursor::new(s.to_string()))
            .unwrap()
            .map(|d| d.unwrap())
            .collect()
    }

    fn objects(d: &Document) -> Vec<(String, Vec<String>)> {
        match &d.content {
            Content::Objects { objects, .. } => objects
                .iter()
                .map(|o| (kind_of(&o.value).1.to_string(), o.path.clone()))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lists_and_templates_give_their_objects() {
        let docs = read(
            "\
apiVersion: v1
kind: List
items:
- {apiVersion: apps/v1, kind: DeploymentList, items: [{apiVersion: apps/v1, kind: Deployment}]}
- {apiVersion: v1, kind: ReplicationController}
---
apiVersion: template.openshift.io/v1
kind: Template
metadata: {name: t}
parameters: [{name: MEM, value: 1Gi}]
objects:
- {apiVersion: apps.openshift.io/v1, kind: DeploymentConfig, spec: {m: '${MEM}'}}
",
        );
        assert_eq!(
            objects(&docs[0]),
            [
                (
                    "Deployment".to_string(),
                    vec!["items".into(), "0".into(), "items".into(), "0".into()]
                ),
                (
                    "ReplicationController".to_string(),
                    vec!["items".into(), "1".into()]
                ),
            ]
        );
        let Content::Objects { objects: o, .. } = &docs[1].content else {
            panic!()
        };
        assert_eq!(o.len(), 2);
        assert_eq!(o[1].value["spec"]["m"], "1Gi");
        assert_eq!(o[1].within.as_deref(), Some("Template t"));
    }

    #[test]
    fn one_bad_document_leaves_the_others_read() {
        let docs = read("a: 1\n---\nb: [\n---\nc: 99999999999999999999\n---\n# nothing\n");
        assert!(matches!(docs[0].content, Content::Objects { .. }));
        assert!(
            matches!(&docs[1].content, Content::Error(e) if e.starts_with("not valid YAML: line 4:")),
            "{:?}",
            docs[1].content
        );
        let Content::Objects { json, .. } = &docs[2].content else {
            panic!("{:?}", docs[2].content)
        };
        assert_eq!(json["c"], json!(1e20));
        assert!(matches!(docs[3].content, Content::Empty));
    }

    #[test]
    fn json_streams_are_json() {
        let docs = read("{\"kind\": \"A\"}\n{\"kind\": \"B\"}\n");
        assert_eq!(docs.len(), 2);
        assert!(docs[0].json);
        let back: String = docs
            .iter()
            .map(|d| format!("{}{}", d.part.separator, d.part.text))
            .collect();
        assert_eq!(back, "{\"kind\": \"A\"}\n{\"kind\": \"B\"}\n");
    }
}
