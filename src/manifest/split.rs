//! A manifest stream cut into documents as kubectl cuts it (apimachinery's `YAMLReader`): at
//! lines that start with `---` followed by nothing but spaces or a comment. One part at a time
//! is held, never the whole stream; a part larger than [`MAX_DOCUMENT`] is skipped to its end
//! unread.

use std::io::BufRead;

/// The apiserver takes at most 3 MiB in one request; a YAML document 8 MiB long cannot become
/// one object. Larger parts are refused without being held.
pub const MAX_DOCUMENT: usize = 8 << 20;

/// One part of the stream, with the separator line before it, so that writing `separator`
/// then `text` for every part gives the input back byte for byte.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// The `---` line that opened this part, with its line break (empty for the first part).
    pub separator: String,
    /// The lines of the part, as read.
    pub text: String,
    /// 1-based line of the part's first line in the stream.
    pub first_line: usize,
    /// Why the part was not read (too large, not UTF-8, a separator kubectl refuses).
    pub refused: Option<String>,
}

pub struct Parts<R> {
    reader: R,
    line: usize,
    /// The separator line that ends the part being read, held for the next.
    next_separator: Option<(String, Option<String>)>,
    done: bool,
    max: usize,
}

impl<R: BufRead> Parts<R> {
    pub fn new(reader: R) -> Parts<R> {
        Parts {
            reader,
            line: 0,
            next_separator: None,
            done: false,
            max: MAX_DOCUMENT,
        }
    }

    /// The same with a smaller limit (tests).
    pub fn with_max(reader: R, max: usize) -> Parts<R> {
        Parts {
            max,
            ..Parts::new(reader)
        }
    }
}

/// Whether a line is a document separator to kubectl; Some(Err) names a `---` line it refuses
/// (`--- |`: kubectl stops reading the file there with "invalid Yaml document separator").
fn separator(line: &[u8]) -> Option<Result<(), String>> {
    let rest = line.strip_prefix(b"---")?;
    let trimmed = String::from_utf8_lossy(rest);
    let trimmed = trimmed.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        Some(Ok(()))
    } else {
        Some(Err(format!(
            "kubectl refuses the separator line \"---{trimmed}\" (invalid Yaml document separator) \
             and reads nothing after it; put `---` alone on its line"
        )))
    }
}

impl<R: BufRead> Iterator for Parts<R> {
    type Item = std::io::Result<Part>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let (sep, sep_refused) = self.next_separator.take().unwrap_or_default();
        let mut part = Part {
            separator: sep,
            first_line: self.line + 1,
            refused: sep_refused,
            ..Part::default()
        };
        let mut bytes: Vec<u8> = Vec::new();
        let mut too_large = false;
        let mut line: Vec<u8> = Vec::new();
        loop {
            line.clear();
            // A line is read up to the limit; a longer one is drained without being held.
            let mut taken = std::io::Read::take(&mut self.reader, self.max as u64 + 1);
            let n = match taken.read_until(b'\n', &mut line) {
                Ok(n) => n,
                Err(e) => return Some(Err(e)),
            };
            if n == 0 {
                self.done = true;
                break;
            }
            if !line.ends_with(b"\n") && n > self.max {
                too_large = true;
                if let Err(e) = drain_line(&mut self.reader) {
                    return Some(Err(e));
                }
                self.line += 1;
                continue;
            }
            self.line += 1;
            if let Some(ok) = separator(&line) {
                self.next_separator = Some((String::from_utf8_lossy(&line).into_owned(), ok.err()));
                break;
            }
            if too_large || bytes.len() + line.len() > self.max {
                too_large = true;
                bytes = Vec::new();
                continue;
            }
            bytes.extend_from_slice(&line);
        }
        if too_large {
            part.refused = Some(format!(
                "larger than {} MiB: more than the apiserver accepts in one request (3 MiB); not read",
                self.max >> 20
            ));
            return Some(Ok(part));
        }
        match String::from_utf8(bytes) {
            Ok(s) => part.text = s,
            Err(e) => {
                part.refused = Some(format!(
                    "not UTF-8 (byte {} of the document); not read",
                    e.utf8_error().valid_up_to()
                ));
                part.text = String::from_utf8_lossy(e.as_bytes()).into_owned();
            }
        }
        if self.done && part.text.is_empty() && part.separator.is_empty() && part.first_line > 1 {
            return None;
        }
        Some(Ok(part))
    }
}

fn drain_line<R: BufRead>(r: &mut R) -> std::io::Result<()> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            r.consume(i + 1);
            return Ok(());
        }
        let n = buf.len();
        r.consume(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<Part> {
        Parts::new(s.as_bytes()).map(|p| p.unwrap()).collect()
    }

    #[test]
    fn cut_as_kubectl_cuts_and_put_back_byte_for_byte() {
        let input = "a: 1\n---\nb: 2\n--- # two\r\nc: |\n  --- not a separator\n---\n";
        let p = parts(input);
        let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            ["a: 1\n", "b: 2\n", "c: |\n  --- not a separator\n", ""]
        );
        assert_eq!(p[2].first_line, 5);
        let back: String = p
            .iter()
            .map(|p| format!("{}{}", p.separator, p.text))
            .collect();
        assert_eq!(back, input);
        assert!(parts("").len() <= 1);
        let p = parts("a: 1\n--- |\nb\n");
        assert!(p[1].refused.as_deref().unwrap().contains("---|"));
        let back: String = p
            .iter()
            .map(|p| format!("{}{}", p.separator, p.text))
            .collect();
        assert_eq!(back, "a: 1\n--- |\nb\n");
    }

    #[test]
    fn a_part_past_the_limit_is_refused_unheld() {
        let input = format!("a: 1\n---\nb: {}\n---\nc: 3", "x".repeat(5000));
        let p: Vec<Part> = Parts::with_max(input.as_bytes(), 1000)
            .map(|p| p.unwrap())
            .collect();
        assert_eq!(p.len(), 3);
        assert!(p[1].refused.as_deref().unwrap().contains("larger than"));
        assert!(p[1].text.is_empty());
        assert_eq!(p[2].text, "c: 3");
    }
}
