//! README.md's first command prints README.md's example output (issue 27, point 11): the
//! command is the README's own first ```sh block that runs `check`, and the expected output is
//! the first ``` block after it, word for word. Neither can drift from the other again.

mod common;

use std::process::Command;

use common::{repo, BIN};

/// The README's first `check` command (continuation lines joined, `cargo run --release --`
/// replaced by the binary under test) and the block after it.
fn command_and_example(readme: &str) -> (Vec<String>, String) {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if let Some(lang) = l.strip_prefix("```") {
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .collect();
            blocks.push((lang.trim().to_string(), body.join("\n")));
        }
    }
    let at = blocks
        .iter()
        .position(|(lang, body)| lang == "sh" && body.contains(" check "))
        .expect("README.md has a ```sh block running check");
    let command = blocks[at].1.replace("\\\n", " ");
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    let start = words
        .iter()
        .position(|w| w == "check")
        .expect("the command runs check");
    let example = blocks
        .get(at + 1)
        .map(|(_, body)| format!("{body}\n"))
        .expect("a ``` block follows the command");
    (words[start..].to_vec(), example)
}

#[test]
fn the_readme_first_command_prints_the_readme_example() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let (args, example) = command_and_example(&readme);
    let out = Command::new(BIN)
        .current_dir(repo())
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout,
        example,
        "README.md's example is not what `oomguard {}` prints",
        args.join(" ")
    );
}

#[test]
fn the_readme_command_is_found() {
    let readme = "intro\n```sh\ncargo run --release -- check -f a.yaml \\\n  --history h.json\n```\n\n```\nout 1\nout 2\n```\n";
    let (args, example) = command_and_example(readme);
    assert_eq!(args, ["check", "-f", "a.yaml", "--history", "h.json"]);
    assert_eq!(example, "out 1\nout 2\n");
}
