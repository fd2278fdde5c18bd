//! The manifest path (src/manifest): any stream is cut and read without a panic, the parts put
//! back together are the input byte for byte, and an edit either is refused or reads back, as
//! kubectl reads it, as exactly the patched document (the writer never writes a text that
//! means something else: documents, merge keys, anchors, flow and block styles, YAML 1.1 words).
#![no_main]

use libfuzzer_sys::fuzz_target;
use oomguard::manifest::{self, edit, Content};
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(docs) = manifest::documents(std::io::Cursor::new(text.to_string())) else {
        return;
    };
    let mut back = String::new();
    for d in docs {
        let Ok(d) = d else { return };
        back.push_str(&d.part.separator);
        back.push_str(&d.part.text);
        let Content::Objects { json: doc, .. } = &d.content else {
            continue;
        };
        if d.json || !doc.is_object() {
            continue;
        }
        // The edits oomguard makes: a value replaced, a key added, a mapping added.
        let adds: Vec<(Vec<String>, Value)> = if doc.pointer("/metadata/annotations").is_some_and(Value::is_object) {
            vec![(vec!["metadata".into(), "annotations".into(), "oomguard.io/x".into()], json!("no"))]
        } else if doc.get("metadata").is_some_and(Value::is_object) {
            vec![(vec!["metadata".into(), "annotations".into()], json!({"oomguard.io/x": "off", "y": "1e3"}))]
        } else {
            vec![(vec!["memory".into()], json!("347Mi"))]
        };
        let mut expected = doc.clone();
        for (p, v) in &adds {
            if edit::add_json(&mut expected, p, v.clone()).is_none() {
                return;
            }
        }
        match edit::apply(&d.part.text, &adds, &expected) {
            Ok(out) => {
                let again = manifest::parse_text(&out, 1);
                let Content::Objects { json, .. } = again else {
                    panic!("an edit made the document unreadable:\n{out}");
                };
                assert_eq!(json, expected, "{out}");
            }
            Err(edit::EditError::Mismatch) => {
                panic!("the writer wrote a text that reads differently:\n{}", d.part.text)
            }
            Err(_) => {}
        }
    }
    assert_eq!(back, text, "the parts do not put the stream back together");
});
