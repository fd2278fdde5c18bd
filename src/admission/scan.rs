//! A fast path for reading a well-formed AdmissionReview: one pass over the text that checks the
//! JSON grammar and picks out the parts the engine uses, into the same types serde fills.
//!
//! It is never laxer than serde_json, only stricter: anything it does not read exactly as serde
//! would (a duplicate field, a struct written as an array, a number where a string goes, a lone
//! surrogate in a string it keeps, deep nesting, ...) makes it give up (`None`), and the caller
//! reads the body with serde as before. Strings and keys with escapes are unescaped by
//! serde_json itself, and only where they are kept or matched: the escaped keys of
//! `managedFields` (`k:{"name":"app"}`), in every object kubectl applies, are skipped as serde
//! skips them. So answers do not depend on which path read the body; `tests` below check that on
//! every fixture and on thousands of damaged copies.

use std::collections::BTreeMap;

use serde_json::Value;

use super::wire::{Envelope, GroupVersionKind, RequestFields};
use crate::workload::{
    OwnAnnotations, PartialContainer, PartialEmptyDir, PartialEnvFrom, PartialEnvSource,
    PartialEnvVar, PartialFieldRef, PartialJobSpec, PartialJobTemplate, PartialKeyRef, PartialMeta,
    PartialMount, PartialName, PartialObject, PartialOwner, PartialPodSpec, PartialQuantities,
    PartialResourceRef, PartialResources, PartialSpec, PartialTemplate, PartialVolume, Present,
    Scalar, OWN_ANNOTATION_PREFIX,
};

/// Nesting beyond this gives up (serde_json's limit is 128).
const MAX_DEPTH: u32 = 100;

/// Reads a review, or None to let serde read it.
pub(super) fn review(text: &str) -> Option<Envelope<RequestFields<PartialObject>>> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    s.ws();
    let mut api_version = Unset::new();
    let mut kind = Unset::new();
    let mut request = Unset::new();
    s.object(|s, key| match key {
        b"apiVersion" => api_version.set(s.opt_string()?),
        b"kind" => kind.set(s.opt_string()?),
        b"request" => request.set(s.opt(Scanner::request)?),
        _ => s.skip_value(),
    })?;
    s.ws();
    if s.i != s.b.len() {
        return None;
    }
    Some(Envelope {
        api_version: api_version.get().flatten(),
        kind: kind.get().flatten(),
        request: request.get().flatten(),
    })
}

/// A field read at most once (serde refuses duplicate fields; so does this, by giving up).
struct Unset<T>(Option<T>);

impl<T> Unset<T> {
    fn new() -> Self {
        Unset(None)
    }
    fn set(&mut self, v: T) -> Option<()> {
        if self.0.is_some() {
            return None;
        }
        self.0 = Some(v);
        Some(())
    }
    fn get(self) -> Option<T> {
        self.0
    }
}

struct Scanner<'a> {
    /// The review's text (UTF-8: it came as a &str).
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl<'a> Scanner<'a> {
    /// JSON whitespace, as serde_json knows it.
    fn ws(&mut self) {
        let mut i = self.i;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(i) {
            i += 1;
        }
        self.i = i;
    }

    /// Moves to the next `"`, `\\` or control character (or the end), eight bytes at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = u64::MAX / 255;
        const HIGH: u64 = ONES << 7;
        let mut i = self.i;
        let rest = self.b.get(i..).unwrap_or_default();
        for chunk in rest.chunks_exact(8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            // A high bit for bytes < 0x20, '"' or '\\' (as serde_json's skip_to_escape): the
            // lowest one is exact, as a borrow only comes from a lower flagged byte.
            let ctrl = w.wrapping_sub(ONES * 0x20) & !w;
            let q = w ^ (ONES * u64::from(b'"'));
            let quote = q.wrapping_sub(ONES) & !q;
            let bs = w ^ (ONES * u64::from(b'\\'));
            let backslash = bs.wrapping_sub(ONES) & !bs;
            let hit = (ctrl | quote | backslash) & HIGH;
            if hit != 0 {
                self.i = i + hit.trailing_zeros() as usize / 8;
                return;
            }
            i += 8;
        }
        while let Some(&c) = self.b.get(i) {
            if c == b'"' || c == b'\\' || c < 0x20 {
                break;
            }
            i += 1;
        }
        self.i = i;
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A string at the cursor: its raw text and whether it has escapes (checked as serde_json
    /// checks the strings it skips: no control characters, known escapes, `\u` and 4 hex digits).
    fn raw_string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.skip_plain();
            let c = *self.b.get(self.i)?;
            match c {
                b'"' => {
                    let raw = self.b.get(start..self.i)?;
                    self.i += 1;
                    return Some((raw, escaped));
                }
                b'\\' => {
                    escaped = true;
                    match *self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 2,
                        b'u' => {
                            let hex = self.b.get(self.i + 2..self.i + 6)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return None;
                            }
                            self.i += 6;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// A string kept as a value. One with escapes is unescaped by serde_json itself (a lone
    /// surrogate, which serde refuses in a string it keeps, gives up).
    fn string(&mut self) -> Option<String> {
        let start = self.i;
        match self.raw_string()? {
            // Cut at ASCII quotes out of a &str: UTF-8.
            (s, false) => std::str::from_utf8(s).ok().map(str::to_owned),
            (_, true) => self.unescape(start),
        }
    }

    /// The string from `start` (its opening quote) to the cursor, unescaped as serde does.
    #[cold]
    #[inline(never)]
    fn unescape(&self, start: usize) -> Option<String> {
        let quoted = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        serde_json::from_str::<String>(quoted).ok()
    }

    /// `null` as None, else what `f` reads.
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Some(None);
        }
        f(self).map(Some)
    }

    fn opt_string(&mut self) -> Option<Option<String>> {
        self.opt(Self::string)
    }

    fn opt_bool(&mut self) -> Option<Option<bool>> {
        self.opt(|s| match s.peek()? {
            b't' => s.literal(b"true").map(|_| true),
            b'f' => s.literal(b"false").map(|_| false),
            _ => None,
        })
    }

    /// An object, calling `field` with the cursor on each value (which it must consume) and its
    /// key, unescaped as serde matches it.
    fn object(&mut self, field: impl FnMut(&mut Self, &[u8]) -> Option<()>) -> Option<()> {
        self.object_with(true, field)
    }

    /// An object whose keys do not matter (skipped as serde skips them: checked, not decoded).
    fn object_with(
        &mut self,
        decode_keys: bool,
        mut field: impl FnMut(&mut Self, &[u8]) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        self.enter()?;
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                self.ws();
                let start = self.i;
                let (key, escaped) = self.raw_string()?;
                if escaped && decode_keys {
                    // Rare: a key with escapes is matched as serde matches it, unescaped.
                    let decoded = self.unescape(start)?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    field(self, decoded.as_bytes())?;
                } else {
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    field(self, key)?;
                }
                self.ws();
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// An array, calling `element` with the cursor on each element.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        self.enter()?;
        self.ws();
        if self.eat(b']').is_none() {
            loop {
                self.ws();
                element(self)?;
                self.ws();
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    /// Any JSON value, checked and skipped.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object_with(false, |s, _| s.skip_value()),
            b'[' => self.array(Self::skip_value),
            b'"' => self.raw_string().map(|_| ()),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let _ = self.eat(b'-');
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.eat(b'.').is_some() {
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        // A digit right after a leading zero ("01") is not JSON.
        match self.peek() {
            Some(c) if c.is_ascii_digit() => None,
            _ => Some(()),
        }
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn request(&mut self) -> Option<RequestFields<PartialObject>> {
        let mut uid = Unset::new();
        let mut kind = Unset::new();
        let mut namespace = Unset::new();
        let mut name = Unset::new();
        let mut operation = Unset::new();
        let mut sub_resource = Unset::new();
        let mut object = Unset::new();
        let mut old_object = Unset::new();
        let mut dry_run = Unset::new();
        self.object(|s, key| match key {
            b"uid" => uid.set(s.string()?),
            b"kind" => kind.set(s.gvk()?),
            b"namespace" => namespace.set(s.opt_string()?),
            b"name" => name.set(s.opt_string()?),
            b"operation" => operation.set(s.string()?),
            b"subResource" => sub_resource.set(s.opt_string()?),
            b"object" => object.set(s.opt(Scanner::partial_object)?),
            b"oldObject" => old_object.set(s.opt(Scanner::partial_object)?),
            b"dryRun" => dry_run.set(s.opt_bool()?),
            _ => s.skip_value(),
        })?;
        Some(RequestFields {
            // Required, as in serde.
            uid: uid.get()?,
            kind: kind.get().unwrap_or_default(),
            namespace: namespace.get().flatten(),
            name: name.get().flatten(),
            operation: operation.get().unwrap_or_default(),
            sub_resource: sub_resource.get().flatten(),
            object: object.get().flatten(),
            old_object: old_object.get().flatten(),
            dry_run: dry_run.get().flatten(),
        })
    }

    fn gvk(&mut self) -> Option<GroupVersionKind> {
        let mut group = Unset::new();
        let mut version = Unset::new();
        let mut kind = Unset::new();
        self.object(|s, key| match key {
            b"group" => group.set(s.string()?),
            b"version" => version.set(s.string()?),
            b"kind" => kind.set(s.string()?),
            _ => s.skip_value(),
        })?;
        Some(GroupVersionKind {
            group: group.get().unwrap_or_default(),
            version: version.get().unwrap_or_default(),
            kind: kind.get().unwrap_or_default(),
        })
    }

    fn partial_object(&mut self) -> Option<PartialObject> {
        let mut metadata = Unset::new();
        let mut spec = Unset::new();
        self.object(|s, key| match key {
            b"metadata" => metadata.set(s.opt(Scanner::meta)?),
            b"spec" => spec.set(s.opt(Scanner::spec)?),
            _ => s.skip_value(),
        })?;
        Some(PartialObject {
            metadata: metadata.get().flatten(),
            spec: spec.get().flatten(),
        })
    }

    fn meta(&mut self) -> Option<PartialMeta> {
        let mut name = Unset::new();
        let mut generate_name = Unset::new();
        let mut namespace = Unset::new();
        let mut annotations = Unset::new();
        let mut owner_references = Unset::new();
        let mut deletion_timestamp = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            b"generateName" => generate_name.set(s.opt_string()?),
            b"namespace" => namespace.set(s.opt_string()?),
            b"annotations" => annotations.set(s.opt(Scanner::own_annotations)?),
            b"ownerReferences" => owner_references.set(s.opt(|s| s.list(Scanner::owner))?),
            b"deletionTimestamp" => {
                deletion_timestamp.set(s.opt(|s| s.skip_value().map(|_| Present))?)
            }
            _ => s.skip_value(),
        })?;
        Some(PartialMeta {
            name: name.get().flatten(),
            generate_name: generate_name.get().flatten(),
            namespace: namespace.get().flatten(),
            annotations: annotations.get().flatten(),
            owner_references: owner_references.get().flatten(),
            deletion_timestamp: deletion_timestamp.get().flatten(),
        })
    }

    /// The `oomguard.io/` annotations (a repeated key: the last one, as serde into a map).
    fn own_annotations(&mut self) -> Option<OwnAnnotations> {
        let mut own = BTreeMap::new();
        self.object(|s, key| {
            if key.starts_with(OWN_ANNOTATION_PREFIX.as_bytes()) {
                if let Some(v) = s.opt_string()? {
                    own.insert(std::str::from_utf8(key).ok()?.to_owned(), v);
                }
                Some(())
            } else {
                s.skip_value()
            }
        })?;
        Some(OwnAnnotations(own))
    }

    fn owner(&mut self) -> Option<PartialOwner> {
        let mut kind = Unset::new();
        let mut name = Unset::new();
        let mut controller = Unset::new();
        self.object(|s, key| match key {
            b"kind" => kind.set(s.opt_string()?),
            b"name" => name.set(s.opt_string()?),
            b"controller" => controller.set(s.opt_bool()?),
            _ => s.skip_value(),
        })?;
        Some(PartialOwner {
            kind: kind.get().flatten(),
            name: name.get().flatten(),
            controller: controller.get().flatten(),
        })
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        let mut out = Vec::new();
        self.array(|s| {
            out.push(item(s)?);
            Some(())
        })?;
        Some(out)
    }

    fn spec(&mut self) -> Option<PartialSpec> {
        let mut template = Unset::new();
        let mut job_template = Unset::new();
        let mut containers = Unset::new();
        let mut init_containers = Unset::new();
        let mut volumes = Unset::new();
        let mut resources = Unset::new();
        self.object(|s, key| match key {
            b"template" => template.set(s.opt(Scanner::template)?),
            b"jobTemplate" => job_template.set(s.opt(Scanner::job_template)?),
            b"containers" => containers.set(s.opt(|s| s.list(Scanner::container))?),
            b"initContainers" => init_containers.set(s.opt(|s| s.list(Scanner::container))?),
            b"volumes" => volumes.set(s.opt(|s| s.list(Scanner::volume))?),
            b"resources" => resources.set(s.opt(Scanner::resources)?),
            _ => s.skip_value(),
        })?;
        Some(PartialSpec {
            template: template.get().flatten(),
            job_template: job_template.get().flatten(),
            containers: containers.get().flatten(),
            init_containers: init_containers.get().flatten(),
            volumes: volumes.get().flatten(),
            resources: resources.get().flatten(),
        })
    }

    fn job_template(&mut self) -> Option<PartialJobTemplate> {
        let mut spec = Unset::new();
        self.object(|s, key| match key {
            b"spec" => spec.set(s.opt(Scanner::job_spec)?),
            _ => s.skip_value(),
        })?;
        Some(PartialJobTemplate {
            spec: spec.get().flatten(),
        })
    }

    fn job_spec(&mut self) -> Option<PartialJobSpec> {
        let mut template = Unset::new();
        self.object(|s, key| match key {
            b"template" => template.set(s.opt(Scanner::template)?),
            _ => s.skip_value(),
        })?;
        Some(PartialJobSpec {
            template: template.get().flatten(),
        })
    }

    fn template(&mut self) -> Option<PartialTemplate> {
        let mut spec = Unset::new();
        self.object(|s, key| match key {
            b"spec" => spec.set(s.opt(Scanner::pod_spec)?),
            _ => s.skip_value(),
        })?;
        Some(PartialTemplate {
            spec: spec.get().flatten(),
        })
    }

    fn pod_spec(&mut self) -> Option<PartialPodSpec> {
        let mut containers = Unset::new();
        let mut init_containers = Unset::new();
        let mut volumes = Unset::new();
        let mut resources = Unset::new();
        self.object(|s, key| match key {
            b"containers" => containers.set(s.opt(|s| s.list(Scanner::container))?),
            b"initContainers" => init_containers.set(s.opt(|s| s.list(Scanner::container))?),
            b"volumes" => volumes.set(s.opt(|s| s.list(Scanner::volume))?),
            b"resources" => resources.set(s.opt(Scanner::resources)?),
            _ => s.skip_value(),
        })?;
        Some(PartialPodSpec {
            containers: containers.get().flatten(),
            init_containers: init_containers.get().flatten(),
            volumes: volumes.get().flatten(),
            resources: resources.get().flatten(),
        })
    }

    fn volume(&mut self) -> Option<PartialVolume> {
        let mut name = Unset::new();
        let mut empty_dir = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            b"emptyDir" => empty_dir.set(s.opt(Scanner::empty_dir)?),
            _ => s.skip_value(),
        })?;
        Some(PartialVolume {
            name: name.get().flatten(),
            empty_dir: empty_dir.get().flatten(),
        })
    }

    fn empty_dir(&mut self) -> Option<PartialEmptyDir> {
        let mut medium = Unset::new();
        let mut size_limit = Unset::new();
        self.object(|s, key| match key {
            b"medium" => medium.set(s.opt_string()?),
            b"sizeLimit" => size_limit.set(s.opt(Scanner::quantity)?),
            _ => s.skip_value(),
        })?;
        Some(PartialEmptyDir {
            medium: medium.get().flatten(),
            size_limit: size_limit.get().flatten(),
        })
    }

    fn container(&mut self) -> Option<PartialContainer> {
        let mut name = Unset::new();
        let mut restart_policy = Unset::new();
        let mut resources = Unset::new();
        let mut command = Unset::new();
        let mut args = Unset::new();
        let mut env = Unset::new();
        let mut env_from = Unset::new();
        let mut volume_mounts = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            b"restartPolicy" => restart_policy.set(s.opt_string()?),
            b"resources" => resources.set(s.opt(Scanner::resources)?),
            b"command" => command.set(s.opt(|s| s.list(Scanner::scalar))?),
            b"args" => args.set(s.opt(|s| s.list(Scanner::scalar))?),
            b"env" => env.set(s.opt(|s| s.list(Scanner::env_var))?),
            b"envFrom" => env_from.set(s.opt(|s| s.list(Scanner::env_from))?),
            b"volumeMounts" => volume_mounts.set(s.opt(|s| s.list(Scanner::mount))?),
            _ => s.skip_value(),
        })?;
        Some(PartialContainer {
            name: name.get().flatten(),
            restart_policy: restart_policy.get().flatten(),
            resources: resources.get().flatten(),
            command: command.get().flatten(),
            args: args.get().flatten(),
            env: env.get().flatten(),
            env_from: env_from.get().flatten(),
            volume_mounts: volume_mounts.get().flatten(),
        })
    }

    /// A string (a number or a boolean, which serde reads as its text, is left to serde).
    fn scalar(&mut self) -> Option<Scalar> {
        self.string().map(Scalar)
    }

    fn env_var(&mut self) -> Option<PartialEnvVar> {
        let mut name = Unset::new();
        let mut value = Unset::new();
        let mut value_from = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            b"value" => value.set(s.opt(Scanner::scalar)?),
            b"valueFrom" => value_from.set(s.opt(Scanner::env_source)?),
            _ => s.skip_value(),
        })?;
        Some(PartialEnvVar {
            name: name.get().flatten(),
            value: value.get().flatten(),
            value_from: value_from.get().flatten(),
        })
    }

    fn env_source(&mut self) -> Option<PartialEnvSource> {
        let mut config_map_key_ref = Unset::new();
        let mut secret_key_ref = Unset::new();
        let mut field_ref = Unset::new();
        let mut resource_field_ref = Unset::new();
        self.object(|s, key| match key {
            b"configMapKeyRef" => config_map_key_ref.set(s.opt(Scanner::key_ref)?),
            b"secretKeyRef" => secret_key_ref.set(s.opt(Scanner::key_ref)?),
            b"fieldRef" => field_ref.set(s.opt(Scanner::field_ref)?),
            b"resourceFieldRef" => resource_field_ref.set(s.opt(Scanner::resource_ref)?),
            _ => s.skip_value(),
        })?;
        Some(PartialEnvSource {
            config_map_key_ref: config_map_key_ref.get().flatten(),
            secret_key_ref: secret_key_ref.get().flatten(),
            field_ref: field_ref.get().flatten(),
            resource_field_ref: resource_field_ref.get().flatten(),
        })
    }

    fn key_ref(&mut self) -> Option<PartialKeyRef> {
        let mut name = Unset::new();
        let mut key_ = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            b"key" => key_.set(s.opt_string()?),
            _ => s.skip_value(),
        })?;
        Some(PartialKeyRef {
            name: name.get().flatten(),
            key: key_.get().flatten(),
        })
    }

    fn field_ref(&mut self) -> Option<PartialFieldRef> {
        let mut field_path = Unset::new();
        self.object(|s, key| match key {
            b"fieldPath" => field_path.set(s.opt_string()?),
            _ => s.skip_value(),
        })?;
        Some(PartialFieldRef {
            field_path: field_path.get().flatten(),
        })
    }

    fn resource_ref(&mut self) -> Option<PartialResourceRef> {
        let mut container_name = Unset::new();
        let mut resource = Unset::new();
        let mut divisor = Unset::new();
        self.object(|s, key| match key {
            b"containerName" => container_name.set(s.opt_string()?),
            b"resource" => resource.set(s.opt_string()?),
            b"divisor" => divisor.set(s.opt(Scanner::quantity)?),
            _ => s.skip_value(),
        })?;
        Some(PartialResourceRef {
            container_name: container_name.get().flatten(),
            resource: resource.get().flatten(),
            divisor: divisor.get().flatten(),
        })
    }

    fn env_from(&mut self) -> Option<PartialEnvFrom> {
        let mut config_map_ref = Unset::new();
        let mut secret_ref = Unset::new();
        let mut prefix = Unset::new();
        self.object(|s, key| match key {
            b"configMapRef" => config_map_ref.set(s.opt(Scanner::name_ref)?),
            b"secretRef" => secret_ref.set(s.opt(Scanner::name_ref)?),
            b"prefix" => prefix.set(s.opt_string()?),
            _ => s.skip_value(),
        })?;
        Some(PartialEnvFrom {
            config_map_ref: config_map_ref.get().flatten(),
            secret_ref: secret_ref.get().flatten(),
            prefix: prefix.get().flatten(),
        })
    }

    fn name_ref(&mut self) -> Option<PartialName> {
        let mut name = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            _ => s.skip_value(),
        })?;
        Some(PartialName {
            name: name.get().flatten(),
        })
    }

    fn mount(&mut self) -> Option<PartialMount> {
        let mut name = Unset::new();
        self.object(|s, key| match key {
            b"name" => name.set(s.opt_string()?),
            _ => s.skip_value(),
        })?;
        Some(PartialMount {
            name: name.get().flatten(),
        })
    }

    fn resources(&mut self) -> Option<PartialResources> {
        let mut limits = Unset::new();
        let mut requests = Unset::new();
        self.object(|s, key| match key {
            b"limits" => limits.set(s.opt(Scanner::quantities)?),
            b"requests" => requests.set(s.opt(Scanner::quantities)?),
            _ => s.skip_value(),
        })?;
        Some(PartialResources {
            limits: limits.get().flatten(),
            requests: requests.get().flatten(),
        })
    }

    /// `memory` as a string (a number or anything else is left to serde).
    fn quantities(&mut self) -> Option<PartialQuantities> {
        let mut memory = Unset::new();
        self.object(|s, key| match key {
            b"memory" => memory.set(s.opt(Scanner::quantity)?),
            _ => s.skip_value(),
        })?;
        Some(PartialQuantities {
            memory: memory.get().flatten(),
        })
    }

    /// A quantity kept as serde keeps it (`Value`): a string here; a number is left to serde.
    fn quantity(&mut self) -> Option<Value> {
        self.string().map(Value::String)
    }
}

/// The scanner against serde_json on one text (the unit tests below and the fuzz target
/// `admission_scan` in fuzz/): whenever the scanner reads a text, serde must read it too, to the
/// same values; a scanner that gives up (None) defers to serde. Panics on a difference, naming
/// the text; returns whether the scanner read it.
#[cfg(any(test, fuzzing))]
pub(super) fn differential(text: &str) -> bool {
    type Read = Envelope<RequestFields<PartialObject>>;
    fn same(a: &Read, b: &Read) -> bool {
        let (Some(x), Some(y)) = (&a.request, &b.request) else {
            return a.request.is_none() && b.request.is_none();
        };
        a.api_version == b.api_version
            && a.kind == b.kind
            && x.uid == y.uid
            && x.kind == y.kind
            && x.namespace == y.namespace
            && x.name == y.name
            && x.operation == y.operation
            && x.sub_resource == y.sub_resource
            && x.object == y.object
            && x.old_object == y.old_object
            && x.dry_run == y.dry_run
    }
    let Some(fast) = review(text) else {
        return false;
    };
    match serde_json::from_str::<Read>(text) {
        Ok(slow) => assert!(same(&fast, &slow), "read differently: {text}"),
        Err(e) => panic!("the scanner read what serde refuses ({e}): {text}"),
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whenever the scanner reads a text, serde reads it too, to the same values.
    fn check(text: &str) -> bool {
        differential(text)
    }

    fn fixtures() -> Vec<String> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reviews");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let compact = serde_json::to_string(&serde_json::from_str::<Value>(&text).unwrap());
            out.push(text);
            out.push(compact.unwrap());
        }
        out
    }

    #[test]
    fn every_fixture_is_read_as_serde_reads_it() {
        let all = fixtures();
        assert!(all.len() >= 10);
        for text in &all {
            assert!(check(text), "the scanner gave up on a fixture: {text}");
        }
    }

    #[test]
    fn odd_but_valid_reviews_are_read_as_serde_reads_them_or_left_to_it() {
        let r = |req: &str| {
            format!(
                r#"{{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{req}}}"#
            )
        };
        let obj = |o: &str| {
            r(&format!(
                r#"{{"uid":"u","kind":{{"group":"apps","kind":"Deployment"}},"operation":"CREATE","object":{o}}}"#
            ))
        };
        let read = [
            r("null"),
            r(r#"{"uid":"u"}"#),
            r(r#"{"uid":"u","dryRun":true,"namespace":null,"name":"n","subResource":"scale"}"#),
            obj("null"),
            obj("{}"),
            obj(r#"{"metadata":null,"spec":null}"#),
            obj(
                r#"{"metadata":{"annotations":{"oomguard.io/exclude":"true","oomguard.io/x":null,"ab":"c\u00e9\n\"","x":"\ud800"}}}"#,
            ),
            obj(r#"{"metadata":{"annotations":{"oomguard.io/a":"1","oomguard.io/a":"2"}}}"#),
            obj(
                r#"{"metadata":{"ownerReferences":[{"kind":"ReplicaSet","name":"r","controller":true},{}]}}"#,
            ),
            obj(
                r#"{"spec":{"containers":[{"name":"a","resources":{"limits":{"memory":"1Gi"},"requests":null}}],"initContainers":[]}}"#,
            ),
            obj(
                r#"{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"containers":[{"restartPolicy":"Always"}]}}}}}}"#,
            ),
            obj(
                r#"{"spec":{"template":{"spec":{"containers":[{"resources":{"limits":{"memory":null}}}]}}}}"#,
            ),
            obj(r#"{"x":[1,-0.5e+3,0,-0,1E9,true,false,null,"é",{"":[[]]}],"spec":{}}"#),
            // Escapes in what is matched or kept are unescaped as serde unescapes them.
            r(r#"{"u\u0069d":"u"}"#),
            r(r#"{"uid":"\u0075\n\"\\\/\b\f\r\t\ud83d\ude00"}"#),
            obj(r#"{"metadata":{"name":"a\u0062","annotations":{"oomguard.io\/exclude":"true"}}}"#),
            // The managedFields of every object kubectl applies: escaped keys, skipped.
            obj(
                r#"{"metadata":{"managedFields":[{"fieldsV1":{"f:spec":{"k:{\"name\":\"app\"}":{".":{},"k:{\"x\":\"\ud800\"}":{}}}}}]}}"#,
            ),
            // What the runtime checks read: command, args, env, envFrom, mounts, volumes.
            obj(
                r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","command":["sh","-c"],"args":["exec java \"-Dx=a b\"\n-Xmx1g","\u00e9"],"env":[{"name":"A","value":"1"},{"name":"B","value":null},{"name":"C"},{"name":"D","valueFrom":{"configMapKeyRef":{"name":"cm","key":"k","optional":true}}},{"name":"E","valueFrom":{"secretKeyRef":{"name":"s","key":"k"}}},{"name":"F","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.name"}}},{"name":"G","valueFrom":{"resourceFieldRef":{"containerName":"app","resource":"limits.memory","divisor":"1Mi"}}}],"envFrom":[{"configMapRef":{"name":"c"}},{"prefix":"P_","secretRef":{"name":"s","optional":false}}],"volumeMounts":[{"name":"shm","mountPath":"/dev/shm"},{"name":"tmp","mountPath":"/tmp","subPath":"x"}]}],"volumes":[{"name":"shm","emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}},{"name":"tmp","emptyDir":{}},{"name":"cfg","configMap":{"name":"c","items":[{"key":"a","path":"b"}]}},{"name":"n","emptyDir":null}]}}}}"#,
            ),
            obj(
                r#"{"spec":{"containers":[{"command":null,"args":[],"env":null,"envFrom":[],"volumeMounts":null}],"volumes":[{"emptyDir":{"medium":null,"sizeLimit":null}}]}}"#,
            ),
            format!(" \n\t{}\r\n ", obj("{}")),
            r#"{}"#.to_string(),
            r#"{"request":{"uid":"u"}}"#.to_string(),
        ];
        for text in &read {
            assert!(check(text), "the scanner gave up: {text}");
        }
        // Left to serde (which reads some and refuses others).
        let left = [
            r(r#"{"uid":"u","uid":"v"}"#),
            r(r#"{"uid":"u","u\u0069d":"v"}"#),
            r(r#"{"uid":"\ud800"}"#),
            r(r#"{"u\udc00id":"u"}"#),
            r(r#"{"uid":1}"#),
            r(r#"{"kind":null,"uid":"u"}"#),
            r(r#"{"uid":"u","operation":null}"#),
            r(r#"{"name":"n"}"#),
            r(r#"["u"]"#),
            obj(r#"{"spec":{"containers":[{"resources":{"limits":{"memory":256}}}]}}"#),
            obj(r#"{"metadata":{"annotations":{"oomguard.io/exclude":true}}}"#),
            obj(r#"{"metadata":{"annotations":{"oomguard.io/\ud800":"x"}}}"#),
            obj(r#"{"spec":{"containers":[{"args":["-Xmx1g",1]}]}}"#),
            obj(r#"{"spec":{"containers":[{"command":"java"}]}}"#),
            obj(r#"{"spec":{"containers":[{"env":[{"name":"A","value":true}]}]}}"#),
            obj(r#"{"spec":{"containers":[{"env":[{"name":"A","value":"\udbff"}]}]}}"#),
            obj(r#"{"spec":{"volumes":[{"name":"a","emptyDir":{"sizeLimit":1024}}]}}"#),
            obj(r#"{"metadata":["n"]}"#),
            obj(r#"{"x":01}"#),
            obj(r#"{"x":1.}"#),
            obj(r#"{"x":"\x"}"#),
            obj(r#"{"x":"\u12"}"#),
            obj(r#"{"x":[1,]}"#),
            obj(r#"{"x":1,}"#),
            obj(&format!(
                r#"{{"x":{}{}}}"#,
                "[".repeat(120),
                "]".repeat(120)
            )),
            format!("{} x", obj("{}")),
            obj("{\"x\":\"a\u{1}b\"}"),
            "[]".to_string(),
            "".to_string(),
        ];
        for text in &left {
            assert!(
                !check(text),
                "the scanner read what it should leave: {text}"
            );
        }
    }

    #[test]
    fn damaged_reviews_are_never_read_differently() {
        let mut read = 0;
        let mut total = 0;
        for text in fixtures() {
            let b = text.as_bytes();
            // A stride keeps this quick in debug builds, and still visits every kind of place
            // (about 300 places in the large recorded review, every 7th byte in the others).
            for i in (0..b.len()).step_by((b.len() / 300).max(7)) {
                for c in [
                    None,
                    Some(b'"'),
                    Some(b'\\'),
                    Some(b'{'),
                    Some(b'}'),
                    Some(b'['),
                    Some(b']'),
                    Some(b','),
                    Some(b':'),
                    Some(b'0'),
                    Some(b'n'),
                    Some(b' '),
                    Some(1),
                ] {
                    let mut m = b.to_vec();
                    match c {
                        None => {
                            m.remove(i);
                        }
                        Some(c) => m[i] = c,
                    }
                    let Ok(t) = std::str::from_utf8(&m) else {
                        continue;
                    };
                    total += 1;
                    read += usize::from(check(t));
                }
            }
        }
        // Most damage breaks the JSON; some lands in a value and is read.
        assert!(read > 0 && read < total, "{read} of {total}");
    }
}
