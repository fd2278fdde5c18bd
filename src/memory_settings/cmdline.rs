//! What a container runs, read from its command, args and literal env: the program (a JVM, Node,
//! Redis, ...) and the arguments it is given, with Kubernetes' `$(VAR)` expansion and, for
//! `sh -c SCRIPT`, the script's simple commands and `$VAR` expansions.
//!
//! Hand-written rather than `shlex`: the script must be cut into commands at `;`, `&&`, `|` and
//! newlines, and `$VAR` expanded from the container's env with word splitting, which a
//! word-splitter does not do. Only what decides memory is read: shell variables the script
//! assigns itself, functions and control flow are not followed.

use std::borrow::Cow;

use super::{EnvValue, EnvVar, RuntimeSpec};

/// The program behind a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Program {
    Java,
    Node,
    Redis,
    Dotnet,
    /// Something else (a Go binary, a script): its own environment still counts.
    Other,
    /// No command in the spec: the image's entrypoint runs.
    Entrypoint,
}

/// The container's environment as the kubelet builds it: `env` entries (the last of a name
/// wins), their `$(VAR)` references expanded in order.
pub(super) struct Env<'a> {
    vars: Vec<(&'a str, Value<'a>)>,
}

/// A variable's value as far as the spec tells it (borrowed from the spec unless expanded).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Value<'a> {
    Literal(Cow<'a, str>),
    /// From a ConfigMap, a Secret or the downward API: what it holds is not read.
    Unread(From<'a>),
    /// `resourceFieldRef` of this container.
    Resource {
        resource: &'a str,
        divisor: Option<&'a str>,
    },
}

impl<'a> Env<'a> {
    pub(super) fn new(spec: &'a RuntimeSpec) -> Env<'a> {
        let mut vars: Vec<(&'a str, Value<'a>)> = Vec::with_capacity(spec.env.len());
        for EnvVar { name, value } in &spec.env {
            let v = match value {
                EnvValue::Literal(s) if s.contains("$(") => {
                    // Earlier variables only, as the kubelet expands them.
                    match expand_k8s(s, |n| lookup(&vars, n)) {
                        Ok(s) => Value::Literal(Cow::Owned(s)),
                        Err(from) => Value::Unread(From::Text(from)),
                    }
                }
                EnvValue::Literal(s) => Value::Literal(Cow::Borrowed(s)),
                EnvValue::Unread(from) => Value::Unread(From::Source(from)),
                EnvValue::Resource { resource, divisor } => Value::Resource {
                    resource,
                    divisor: divisor.as_deref(),
                },
            };
            match vars.iter_mut().find(|(n, _)| *n == name.as_str()) {
                Some(slot) => slot.1 = v,
                None => vars.push((name.as_str(), v)),
            }
        }
        Env { vars }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Value<'a>> {
        lookup(&self.vars, name)
    }

    /// A literal value, when set to one.
    pub(super) fn literal(&self, name: &str) -> Option<&str> {
        match self.get(name) {
            Some(Value::Literal(s)) => Some(s),
            _ => None,
        }
    }
}

fn lookup<'v, 'a>(vars: &'v [(&'a str, Value<'a>)], name: &str) -> Option<&'v Value<'a>> {
    vars.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v)
}

/// Where an unread value comes from: the spec's own description, or a reference to one.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum From<'a> {
    Source(&'a super::Unread),
    Text(String),
}

impl std::fmt::Display for From<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            From::Source(u) => u.fmt(f),
            From::Text(t) => f.write_str(t),
        }
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is `$`, a reference to an unknown variable stays as
/// written. Err names where an unread value would have gone.
fn expand_k8s<'v, 'a: 'v>(
    s: &str,
    get: impl Fn(&str) -> Option<&'v Value<'a>>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
            continue;
        }
        if let Some(inner) = tail.strip_prefix("$(") {
            if let Some(end) = inner.find(')') {
                let name = &inner[..end];
                match get(name) {
                    Some(Value::Literal(v)) => out.push_str(v),
                    Some(Value::Unread(from)) => return Err(format!("$({name}) ({from})")),
                    Some(Value::Resource { resource, .. }) => {
                        return Err(format!("$({name}) ({resource})"))
                    }
                    None => {
                        out.push_str("$(");
                        out.push_str(name);
                        out.push(')');
                    }
                }
                rest = &inner[end + 1..];
                continue;
            }
        }
        out.push('$');
        rest = &tail[1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One program invocation: what runs, with the arguments after its name.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Invocation<'a> {
    pub(super) program: Program,
    pub(super) args: Vec<Cow<'a, str>>,
    /// Variables a shell script expands on the command line (they are arguments there, not
    /// read by the image's own scripts).
    pub(super) expanded: Vec<String>,
}

/// What the container runs. `unread` collects what could not be read (a `$(VAR)` from a
/// Secret, ...).
pub(super) fn invocation<'a>(
    spec: &'a RuntimeSpec,
    env: &Env<'a>,
    unread: &mut Vec<String>,
) -> Invocation<'a> {
    let mut argv: Vec<Cow<'a, str>> = Vec::with_capacity(spec.command.len() + spec.args.len());
    for a in spec.command.iter().chain(&spec.args) {
        if a.contains("$(") {
            match expand_k8s(a, |n| env.get(n)) {
                Ok(s) => argv.push(Cow::Owned(s)),
                Err(from) => {
                    unread.push(from);
                    argv.push(Cow::Borrowed(a));
                }
            }
        } else {
            argv.push(Cow::Borrowed(a));
        }
    }
    let from_entrypoint = spec.command.is_empty();
    let Some(first) = argv.first() else {
        return Invocation {
            program: Program::Entrypoint,
            args: Vec::new(),
            expanded: Vec::new(),
        };
    };
    if is_shell(first) {
        if let Some(script) = shell_script(&argv) {
            let script = script.to_string();
            let mut expanded = Vec::new();
            for words in commands(&script, env, &mut expanded, unread) {
                if let Some((program, args)) = program_of(&words) {
                    return Invocation {
                        program,
                        args,
                        expanded,
                    };
                }
            }
            return Invocation {
                program: Program::Other,
                args: Vec::new(),
                expanded,
            };
        }
    }
    if let Some((program, args)) = program_of(&argv) {
        return Invocation {
            program,
            args,
            expanded: Vec::new(),
        };
    }
    // Args alone go to the image's entrypoint: the official images pass options on to the
    // program (java images with ENTRYPOINT java, redis' and node's docker-entrypoint.sh).
    if from_entrypoint {
        let program = if looks_like_jvm_option(first) {
            Program::Java
        } else if argv
            .iter()
            .any(|a| a.starts_with("--max-old-space-size") || a.starts_with("--max_old_space_size"))
        {
            Program::Node
        } else if (first.starts_with('-') || first.ends_with(".conf"))
            && argv.iter().any(|a| a.starts_with("--maxmemory"))
        {
            Program::Redis
        } else {
            Program::Entrypoint
        };
        let args = if program == Program::Entrypoint {
            Vec::new()
        } else {
            argv
        };
        return Invocation {
            program,
            args,
            expanded: Vec::new(),
        };
    }
    Invocation {
        program: Program::Other,
        args: Vec::new(),
        expanded: Vec::new(),
    }
}

fn basename(s: &str) -> &str {
    s.rsplit('/').next().unwrap_or(s)
}

fn is_shell(s: &str) -> bool {
    matches!(
        basename(s),
        "sh" | "bash" | "ash" | "dash" | "zsh" | "ksh" | "busybox"
    )
}

/// The script of `sh [-opts] -c SCRIPT ...` (options may be combined: `-ec`, `-xc`).
fn shell_script<'v>(argv: &'v [Cow<'_, str>]) -> Option<&'v str> {
    let mut i = 1;
    // `busybox sh -c`
    if basename(&argv[0]) == "busybox" {
        if argv.get(1).map(|s| s.as_ref()) != Some("sh") {
            return None;
        }
        i = 2;
    }
    while let Some(a) = argv.get(i) {
        if !a.starts_with('-') || a == "-" || a == "--" {
            return None;
        }
        if a.len() > 1 && !a.starts_with("--") && a[1..].contains('c') {
            return argv.get(i + 1).map(|s| s.as_ref());
        }
        i += 1;
    }
    None
}

/// The program of a command's words, skipping wrappers (`exec`, `env`, `tini --`,
/// `dumb-init`, `gosu USER`, variable assignments), and its arguments.
fn program_of<'a>(words: &[Cow<'a, str>]) -> Option<(Program, Vec<Cow<'a, str>>)> {
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let name = basename(w);
        match name {
            "exec" | "nohup" | "time" | "command" => i += 1,
            "env" => {
                i += 1;
                while words
                    .get(i)
                    .is_some_and(|a| a.starts_with('-') || is_assignment(a))
                {
                    i += 1;
                }
            }
            "tini" | "dumb-init" | "catatonit" => {
                i += 1;
                while let Some(a) = words.get(i) {
                    i += 1;
                    if a == "--" {
                        break;
                    }
                    if !a.starts_with('-') {
                        i -= 1;
                        break;
                    }
                }
            }
            "gosu" | "su-exec" => i += 2,
            _ if is_assignment(w) => i += 1,
            // An image's launch script that runs its arguments (`exec "$@"`), when a known
            // program follows it: `[/entrypoint.sh, java, -Xmx1g, ...]`.
            _ if is_launch_script(name)
                && words
                    .get(i + 1)
                    .is_some_and(|n| known_program(basename(n)).is_some()) =>
            {
                i += 1
            }
            _ => {
                let program = known_program(name)?;
                return Some((program, words[i + 1..].to_vec()));
            }
        }
    }
    None
}

fn known_program(name: &str) -> Option<Program> {
    Some(match name {
        "java" => Program::Java,
        "node" | "nodejs" => Program::Node,
        "redis-server" | "valkey-server" | "redis-stack-server" => Program::Redis,
        "dotnet" => Program::Dotnet,
        _ => return None,
    })
}

/// A start script (`/entrypoint.sh`, `docker-entrypoint.sh`, `/run.sh`).
fn is_launch_script(name: &str) -> bool {
    name.ends_with(".sh") || matches!(name, "entrypoint" | "docker-entrypoint" | "run")
}

fn is_assignment(w: &str) -> bool {
    match w.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit()
        }
        None => false,
    }
}

/// A first argument only a JVM takes (an image whose entrypoint is `java`).
fn looks_like_jvm_option(a: &str) -> bool {
    a.starts_with("-X")
        || a.starts_with("-D")
        || a.starts_with("-javaagent:")
        || matches!(a, "-jar" | "-cp" | "-classpath" | "-server")
}

/// Splits a shell script into simple commands of words: quotes honoured, `$VAR`, `${VAR}` and
/// `${VAR:-default}` expanded from the container's env (unquoted: split into words).
fn commands(
    script: &str,
    env: &Env<'_>,
    expanded: &mut Vec<String>,
    unread: &mut Vec<String>,
) -> Vec<Vec<Cow<'static, str>>> {
    let mut out: Vec<Vec<Cow<'static, str>>> = Vec::new();
    let mut words: Vec<Cow<'static, str>> = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = script.chars().peekable();
    let end_word = |words: &mut Vec<Cow<'static, str>>, word: &mut String, in_word: &mut bool| {
        if *in_word {
            words.push(Cow::Owned(std::mem::take(word)));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => end_word(&mut words, &mut word, &mut in_word),
            '\n' | ';' | '&' | '|' | '(' | ')' => {
                end_word(&mut words, &mut word, &mut in_word);
                if !words.is_empty() {
                    out.push(std::mem::take(&mut words));
                }
            }
            '#' if !in_word => {
                // A comment runs to the end of the line.
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                if !words.is_empty() {
                    out.push(std::mem::take(&mut words));
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    if n != '\n' {
                        word.push(n);
                        in_word = true;
                    }
                }
            }
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        '$' => {
                            if let Some(v) = variable(&mut chars, env, expanded, unread) {
                                word.push_str(&v);
                            }
                        }
                        c => word.push(c),
                    }
                }
            }
            '$' => {
                // Unquoted: the value is split into words.
                if let Some(v) = variable(&mut chars, env, expanded, unread) {
                    let mut parts = v.split_whitespace();
                    if let Some(p) = parts.next() {
                        word.push_str(p);
                        in_word = true;
                    }
                    for p in parts {
                        end_word(&mut words, &mut word, &mut in_word);
                        word.push_str(p);
                        in_word = true;
                    }
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    end_word(&mut words, &mut word, &mut in_word);
    if !words.is_empty() {
        out.push(words);
    }
    out
}

/// After a `$`: the variable's value (None: unset, unread, or not a variable).
fn variable(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &Env<'_>,
    expanded: &mut Vec<String>,
    unread: &mut Vec<String>,
) -> Option<String> {
    let (name, default) = match chars.peek() {
        Some('{') => {
            chars.next();
            let mut inner = String::new();
            for c in chars.by_ref() {
                if c == '}' {
                    break;
                }
                inner.push(c);
            }
            match inner.split_once(":-").or_else(|| inner.split_once('-')) {
                Some((n, d)) => (n.to_string(), Some(d.to_string())),
                None => (inner, None),
            }
        }
        Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            (name, None)
        }
        _ => return Some("$".to_string()),
    };
    expanded.push(name.clone());
    match env.get(&name) {
        Some(Value::Literal(v)) if !(v.is_empty() && default.is_some()) => Some(v.to_string()),
        Some(Value::Unread(from)) => {
            unread.push(format!("${name} ({from})"));
            None
        }
        Some(Value::Resource { resource, .. }) => {
            unread.push(format!("${name} ({resource})"));
            None
        }
        _ => default,
    }
}

/// Splits an options variable (`JAVA_TOOL_OPTIONS`, `NODE_OPTIONS`) at white space, with single
/// and double quotes grouping, as the JVM and Node read them.
pub(super) fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(command: &[&str], args: &[&str], env: &[(&str, &str)]) -> RuntimeSpec {
        RuntimeSpec {
            command: command.iter().map(|s| s.to_string()).collect(),
            args: args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(n, v)| EnvVar {
                    name: n.to_string(),
                    value: EnvValue::Literal(v.to_string()),
                })
                .collect(),
            ..RuntimeSpec::default()
        }
    }

    /// What ran, owned (the invocation borrows the spec).
    struct Inv {
        program: Program,
        args: Vec<String>,
        expanded: Vec<String>,
    }

    fn run(s: &RuntimeSpec) -> (Inv, Vec<String>) {
        let env = Env::new(s);
        let mut unread = Vec::new();
        let i = invocation(s, &env, &mut unread);
        let inv = Inv {
            program: i.program,
            args: i.args.iter().map(|a| a.to_string()).collect(),
            expanded: i.expanded,
        };
        (inv, unread)
    }

    #[test]
    fn programs_are_found_behind_wrappers_and_shells() {
        type Case<'a> = (&'a [&'a str], &'a [&'a str], Program, &'a [&'a str]);
        let cases: [Case; 8] = [
            (
                &["java"],
                &["-Xmx1g", "-jar", "a.jar"],
                Program::Java,
                &["-Xmx1g", "-jar", "a.jar"],
            ),
            (
                &["/usr/bin/tini", "--", "/opt/java/bin/java", "-Xmx1g"],
                &[],
                Program::Java,
                &["-Xmx1g"],
            ),
            (
                &["dumb-init", "node", "--max-old-space-size=512", "s.js"],
                &[],
                Program::Node,
                &["--max-old-space-size=512", "s.js"],
            ),
            (
                &[],
                &["redis-server", "--maxmemory", "1gb"],
                Program::Redis,
                &["--maxmemory", "1gb"],
            ),
            (
                &[],
                &["--maxmemory", "1gb"],
                Program::Redis,
                &["--maxmemory", "1gb"],
            ),
            (
                &[],
                &["-Xmx2g", "-jar", "/app.jar"],
                Program::Java,
                &["-Xmx2g", "-jar", "/app.jar"],
            ),
            (
                &["/bin/sh", "-ec"],
                &["echo start; exec java -Xmx512m -jar a.jar --x"],
                Program::Java,
                &["-Xmx512m", "-jar", "a.jar", "--x"],
            ),
            (
                &[
                    "bash",
                    "-c",
                    "MODE=x env A=b node --max_old_space_size=300 app.js && echo done",
                ],
                &[],
                Program::Node,
                &["--max_old_space_size=300", "app.js"],
            ),
        ];
        for (command, args, program, expect) in cases {
            let (inv, _) = run(&spec(command, args, &[]));
            assert_eq!(inv.program, program, "{command:?} {args:?}");
            assert_eq!(inv.args, expect, "{command:?} {args:?}");
        }
        assert_eq!(run(&spec(&[], &[], &[])).0.program, Program::Entrypoint);
        assert_eq!(
            run(&spec(&[], &["--port", "80"], &[])).0.program,
            Program::Entrypoint
        );
        assert_eq!(
            run(&spec(&["/app/server"], &["-v"], &[])).0.program,
            Program::Other
        );
        assert_eq!(
            run(&spec(&["sh", "-c", "python app.py"], &[], &[]))
                .0
                .program,
            Program::Other
        );
    }

    #[test]
    fn variables_are_expanded_as_the_kubelet_and_the_shell_do() {
        let env = [
            ("HEAP", "768m"),
            ("JAVA_OPTS", "-Xms1g  -Xmx1536m"),
            ("EMPTY", ""),
        ];
        let (inv, _) = run(&spec(
            &["java"],
            &["-Xmx$(HEAP)", "$$(HEAP)", "$(NOPE)"],
            &env,
        ));
        assert_eq!(inv.args, ["-Xmx768m", "$(HEAP)", "$(NOPE)"]);
        let (inv, _) = run(&spec(
            &["sh", "-c"],
            &["exec java $JAVA_OPTS \"-Dq=$HEAP x\" -Xss${STACK:-2m} ${EMPTY:-a} '$HEAP' -jar a.jar # -Xmx9g"],
            &env,
        ));
        assert_eq!(
            inv.args,
            [
                "-Xms1g",
                "-Xmx1536m",
                "-Dq=768m x",
                "-Xss2m",
                "a",
                "$HEAP",
                "-jar",
                "a.jar"
            ]
        );
        assert!(inv.expanded.contains(&"JAVA_OPTS".to_string()));
        // An env value refers to earlier variables only.
        let mut s = spec(&["java"], &["$(B)"], &[("B", "-Xmx$(A)"), ("A", "1g")]);
        assert_eq!(run(&s).0.args, ["-Xmx$(A)"]);
        s.env.swap(0, 1);
        assert_eq!(run(&s).0.args, ["-Xmx1g"]);
        // The last of two entries of a name wins.
        let s = spec(&["java"], &["$(A)"], &[("A", "-Xmx1g"), ("A", "-Xmx2g")]);
        assert_eq!(run(&s).0.args, ["-Xmx2g"]);
    }

    #[test]
    fn unread_values_are_named() {
        let mut s = spec(&["java"], &["-Xmx$(HEAP)"], &[]);
        s.env.push(EnvVar {
            name: "HEAP".into(),
            value: EnvValue::Unread(crate::memory_settings::Unread {
                kind: "configMap",
                name: "app".into(),
                key: Some("heap".into()),
            }),
        });
        let (inv, unread) = run(&s);
        assert_eq!(inv.args, ["-Xmx$(HEAP)"]);
        assert_eq!(unread, ["$(HEAP) (configMap app key heap)"]);
    }

    #[test]
    fn options_variables_split_like_the_jvm() {
        assert_eq!(
            split_options(" -Xmx1g  -Dname=\"a b\" '-Dc=d e'\t-XX:+UseG1GC "),
            ["-Xmx1g", "-Dname=a b", "-Dc=d e", "-XX:+UseG1GC"]
        );
        assert!(split_options("   ").is_empty());
    }
}
