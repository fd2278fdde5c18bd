//! JSON patches for the verdict's actions. Every `add` has its parent: the apiserver rejects a
//! patch whose parent is missing with an internal error, even under `failurePolicy: Ignore`.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::{Pointer, PointerBuf};
use serde_json::{json, Value};

use crate::quantity::{format_bytes, to_quantity};
use crate::verdict::{Action, ContainerVerdict, Verdict};
use crate::workload::Workload;

/// Annotation naming what oomguard changed (`web: 256Mi -> 347Mi`).
pub const CHANGED_ANNOTATION: &str = "oomguard.io/limits-changed";
/// Annotation with the reasons.
pub const REASON_ANNOTATION: &str = "oomguard.io/reason";

/// One container change, for annotations and warnings.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub container: String,
    pub from: Option<u64>,
    pub to: u64,
    pub reason: String,
}

/// The containers whose limit the verdict raises or adds: index in `workload.containers`, the
/// container's verdict, the new limit in bytes.
fn limits_set<'a>(
    workload: &'a Workload,
    verdict: &'a Verdict,
) -> impl Iterator<Item = (usize, &'a ContainerVerdict, u64)> + 'a {
    verdict.containers.iter().filter_map(|cv| {
        let to = match cv.action {
            Action::Raise { to } | Action::Add { to } => to,
            Action::None | Action::Deny => return None,
        };
        let i = workload
            .containers
            .iter()
            .position(|c| c.name == cv.container && c.role == cv.role)?;
        Some((i, cv, to))
    })
}

/// The workload as [`build`]'s patch leaves it: each raised or added limit set (the
/// annotations it adds are not read by the decision). What the validating webhook is sent after
/// the mutating one, for the one-call `/admit`.
pub fn apply_to(workload: &mut Workload, verdict: &Verdict) {
    let set: Vec<(usize, u64)> = limits_set(workload, verdict)
        .map(|(i, _, to)| (i, to))
        .collect();
    for (i, to) in set {
        let spec = &mut workload.containers[i];
        spec.limit = crate::workload::MemoryField::of_bytes(to);
        spec.has_resources = true;
        spec.has_limits = true;
    }
}

/// The patch that carries out the verdict's raise/add actions, and what it changes. Empty when
/// nothing is to change, which makes re-admission of a patched object a no-op.
pub fn build(workload: &Workload, verdict: &Verdict) -> (Patch, Vec<Change>) {
    let mut ops = Vec::new();
    let mut changes = Vec::new();
    for (i, cv, to) in limits_set(workload, verdict) {
        let spec = &workload.containers[i];
        let q = json!(to_quantity(to));
        let (suffix, value) = if !spec.has_resources {
            ("/resources", json!({ "limits": { "memory": q } }))
        } else if !spec.has_limits {
            ("/resources/limits", json!({ "memory": q }))
        } else {
            ("/resources/limits/memory", q)
        };
        let mut path = workload.container_path(spec);
        path.push_str(suffix);
        // The tokens need no escaping (a fixed path and an index), so this always parses.
        let path = PointerBuf::parse(path).unwrap_or_else(|_| {
            let mut p = workload.container_pointer(spec);
            for t in suffix.split('/').skip(1) {
                p.push_back(t);
            }
            p
        });
        ops.push(PatchOperation::Add(AddOperation { path, value }));
        let reason = cv
            .reasons
            .first()
            .map(|r| strip_recommended(r))
            .unwrap_or_default();
        changes.push(Change {
            container: cv.container.clone(),
            from: cv.limit,
            to,
            reason,
        });
    }
    if changes.is_empty() {
        return (Patch(Vec::new()), changes);
    }
    let summary = changes
        .iter()
        .map(|c| {
            format!(
                "{}: {} -> {}",
                c.container,
                c.from
                    .map_or("none".to_string(), |f| format_bytes(f as f64)),
                format_bytes(c.to as f64)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let reasons = changes
        .iter()
        .map(|c| c.reason.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if workload.has_annotations {
        for (path, v) in [(CHANGED_POINTER, summary), (REASON_POINTER, reasons)] {
            ops.push(PatchOperation::Add(AddOperation {
                path: path.to_buf(),
                value: Value::String(v),
            }));
        }
    } else {
        let value = json!({ CHANGED_ANNOTATION: summary, REASON_ANNOTATION: reasons });
        if !workload.has_metadata {
            ops.push(PatchOperation::Add(AddOperation {
                path: METADATA_POINTER.to_buf(),
                value: json!({}),
            }));
        }
        ops.push(PatchOperation::Add(AddOperation {
            path: ANNOTATIONS_POINTER.to_buf(),
            value,
        }));
    }
    (Patch(ops), changes)
}

// The annotations' pointers, escaped once (`/` in a key is `~1`); checked when compiled.
const METADATA_POINTER: &Pointer = Pointer::from_static("/metadata");
const ANNOTATIONS_POINTER: &Pointer = Pointer::from_static("/metadata/annotations");
const CHANGED_POINTER: &Pointer =
    Pointer::from_static("/metadata/annotations/oomguard.io~1limits-changed");
const REASON_POINTER: &Pointer = Pointer::from_static("/metadata/annotations/oomguard.io~1reason");

/// "container web: limit 256Mi is below ...; recommended 347Mi" → "limit 256Mi is below ...":
/// what a reason says is wrong, before the numbers of its fix.
fn strip_recommended(reason: &str) -> String {
    let body = reason.split_once(": ").map_or(reason, |(_, b)| b);
    body.split_once("; ").map_or(body, |(b, _)| b).to_string()
}

/// The warning line that tells the user what the mutation did.
pub fn change_warning(c: &Change) -> String {
    format!(
        "oomguard raised the memory limit of container {} from {} to {}: {}",
        c.container,
        c.from
            .map_or("none".to_string(), |f| format_bytes(f as f64)),
        format_bytes(c.to as f64),
        c.reason
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotation_pointers_are_the_escaped_keys() {
        assert_eq!(*METADATA_POINTER, PointerBuf::from_tokens(["metadata"]));
        assert_eq!(
            *ANNOTATIONS_POINTER,
            PointerBuf::from_tokens(["metadata", "annotations"])
        );
        assert_eq!(
            *CHANGED_POINTER,
            PointerBuf::from_tokens(["metadata", "annotations", CHANGED_ANNOTATION])
        );
        assert_eq!(
            *REASON_POINTER,
            PointerBuf::from_tokens(["metadata", "annotations", REASON_ANNOTATION])
        );
    }
}
