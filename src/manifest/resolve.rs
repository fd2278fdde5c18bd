//! What a plain YAML scalar means to kubectl: the YAML 1.1 resolution of go-yaml v2
//! (`sigs.k8s.io/yaml/goyaml.v2`, `resolve.go`), which apimachinery's YAMLToJSON runs. `no`,
//! `off`, `y` are booleans; `0755` is octal; `1_000` is a thousand; `2026-01-02` stays a string;
//! `1e400` (out of range) stays a string.

/// A scalar's meaning.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    /// A string, or a timestamp (kept as its text when read into JSON).
    Str,
    /// `<<`: a merge key.
    Merge,
}

/// Resolves a plain scalar (no tag) as go-yaml v2 does.
pub fn plain(s: &str) -> Scalar {
    let hint = match s.as_bytes().first() {
        None => return Scalar::Null,
        Some(b'+' | b'-') => b'S',
        Some(b'0'..=b'9') => b'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => b'M',
        Some(b'.') => b'.',
        Some(b'<') => b'<',
        _ => return Scalar::Str,
    };
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Scalar::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Scalar::Bool(false)
        }
        "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        ".nan" | ".NaN" | ".NAN" => return Scalar::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Scalar::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Scalar::Float(f64::NEG_INFINITY),
        "<<" => return Scalar::Merge,
        _ => {}
    }
    match hint {
        b'.' => go_float(s).map_or(Scalar::Str, Scalar::Float),
        b'D' | b'S' => {
            if is_timestamp(s) {
                return Scalar::Str;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            match go_int(&plain) {
                Ok(v) => return Scalar::Int(v),
                Err(_) => {
                    if let Ok(v) = go_uint(&plain) {
                        return Scalar::Uint(v);
                    }
                }
            }
            if yaml_style_float(&plain) {
                if let Some(f) = go_float(&plain) {
                    return Scalar::Float(f);
                }
            }
            Scalar::Str
        }
        _ => Scalar::Str,
    }
}

/// Resolves a scalar with an explicit tag (`!!str 1`, `!!int "3"`); None when the tag does not
/// fit the value (go-yaml refuses the document), Some(Str) for tags it does not resolve.
pub fn tagged(tag: &str, s: &str) -> Option<Scalar> {
    let short = tag
        .strip_prefix("tag:yaml.org,2002:")
        .or_else(|| tag.strip_prefix("!!"))
        .unwrap_or(tag);
    let r = plain(s);
    match short {
        "str" | "binary" => Some(Scalar::Str),
        "bool" => matches!(r, Scalar::Bool(_)).then_some(r),
        "null" => matches!(r, Scalar::Null).then_some(r),
        "int" => matches!(r, Scalar::Int(_) | Scalar::Uint(_)).then_some(r),
        "float" => match r {
            Scalar::Int(i) => Some(Scalar::Float(i as f64)),
            Scalar::Uint(u) => Some(Scalar::Float(u as f64)),
            Scalar::Float(_) => Some(r),
            _ => None,
        },
        "timestamp" => Some(Scalar::Str),
        "merge" => Some(Scalar::Merge),
        // Local and unknown tags are not resolved: the value is the text.
        _ => Some(Scalar::Str),
    }
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms YAML reaches it with: out of range is
/// an error (Go returns ErrRange and go-yaml keeps the text).
fn go_float(s: &str) -> Option<f64> {
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    let f: f64 = s.parse().ok()?;
    f.is_finite().then_some(f)
}

#[derive(Debug, PartialEq)]
enum IntError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseInt(s, 0, 64)` (underscores already removed).
fn go_int(s: &str) -> Result<i64, IntError> {
    let (neg, body) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let u = go_digits(body)?;
    if neg {
        if u > i64::MAX as u64 + 1 {
            return Err(IntError::Range);
        }
        Ok((u as i64).wrapping_neg())
    } else {
        i64::try_from(u).map_err(|_| IntError::Range)
    }
}

/// Go's `strconv.ParseUint(s, 0, 64)`: no sign.
fn go_uint(s: &str) -> Result<u64, IntError> {
    if s.starts_with(['+', '-']) {
        return Err(IntError::Syntax);
    }
    go_digits(s)
}

/// Digits with Go's base prefixes: `0x`, `0o`, `0b`, and a leading `0` for octal.
fn go_digits(s: &str) -> Result<u64, IntError> {
    let (radix, digits) = if let Some(r) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (16, r)
    } else if let Some(r) = s.strip_prefix("0o").or_else(|| s.strip_prefix("0O")) {
        (8, r)
    } else if let Some(r) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        (2, r)
    } else if s.len() > 1 && s.starts_with('0') {
        (8, &s[1..])
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(IntError::Syntax);
    }
    u64::from_str_radix(digits, radix).map_err(|_| IntError::Range)
}

/// go-yaml's timestamp forms (RFC 3339 with short fields, `2006-1-2 15:4:5`, a date): four
/// digits and a dash first, then one of the layouts.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let num = |t: &str, max_len: usize| -> Option<u32> {
        (!t.is_empty() && t.len() <= max_len && t.bytes().all(|c| c.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let date_ok = |d: &str| -> bool {
        let mut p = d.splitn(3, '-');
        let (Some(y), Some(m), Some(day)) = (p.next(), p.next(), p.next()) else {
            return false;
        };
        y.len() == 4
            && num(m, 2).is_some_and(|m| (1..=12).contains(&m))
            && num(day, 2).is_some_and(|d| (1..=31).contains(&d))
    };
    let time_ok = |t: &str| -> bool {
        let mut p = t.splitn(3, ':');
        let (Some(h), Some(m), Some(sec)) = (p.next(), p.next(), p.next()) else {
            return false;
        };
        let (sec, frac) = sec.split_once('.').unwrap_or((sec, "0"));
        num(h, 2).is_some_and(|h| h < 24)
            && num(m, 2).is_some_and(|m| m < 60)
            && num(sec, 2).is_some_and(|s| s < 60)
            && !frac.is_empty()
            && frac.bytes().all(|c| c.is_ascii_digit())
    };
    if date_ok(s) {
        return true;
    }
    // `2006-1-2T15:4:5.999999999Z07:00` (T or t) and `2006-1-2 15:4:5.999999999`.
    if let Some((d, t)) = s.split_once(['T', 't']) {
        if !date_ok(d) {
            return false;
        }
        let (t, zone) = if let Some(t) = t.strip_suffix('Z') {
            (t, "")
        } else if let Some(i) = t.rfind(['+', '-']) {
            (&t[..i], &t[i + 1..])
        } else {
            return false;
        };
        let zone_ok = zone.is_empty() || {
            let (h, m) = zone.split_once(':').unwrap_or(("", ""));
            num(h, 2).is_some() && num(m, 2).is_some()
        };
        return zone_ok && time_ok(t);
    }
    if let Some((d, t)) = s.split_once(' ') {
        return date_ok(d) && time_ok(t);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_as_go_yaml_v2_resolves_it() {
        for s in [
            "y", "Y", "yes", "Yes", "YES", "on", "On", "ON", "true", "True",
        ] {
            assert_eq!(plain(s), Scalar::Bool(true), "{s}");
        }
        for s in [
            "n", "N", "no", "No", "NO", "off", "Off", "OFF", "false", "FALSE",
        ] {
            assert_eq!(plain(s), Scalar::Bool(false), "{s}");
        }
        for s in ["yES", "oN", "nO", "Nope", "offf", "t", "f"] {
            assert_eq!(plain(s), Scalar::Str, "{s}");
        }
        for s in ["", "~", "null", "Null", "NULL"] {
            assert_eq!(plain(s), Scalar::Null, "{s}");
        }
        assert_eq!(plain("0755"), Scalar::Int(0o755));
        assert_eq!(plain("0x1F"), Scalar::Int(31));
        assert_eq!(plain("0b101"), Scalar::Int(5));
        assert_eq!(plain("1_000"), Scalar::Int(1000));
        assert_eq!(plain("-12"), Scalar::Int(-12));
        assert_eq!(plain("+12"), Scalar::Int(12));
        assert_eq!(plain("18446744073709551615"), Scalar::Uint(u64::MAX));
        assert_eq!(plain("99999999999999999999"), Scalar::Float(1e20));
        assert_eq!(plain("08"), Scalar::Float(8.0));
        assert_eq!(plain("1e3"), Scalar::Float(1000.0));
        assert_eq!(plain(".5"), Scalar::Float(0.5));
        assert_eq!(plain("1e400"), Scalar::Str);
        assert_eq!(plain("1.2.3"), Scalar::Str);
        assert_eq!(plain("256Mi"), Scalar::Str);
        assert_eq!(plain("1Gi"), Scalar::Str);
        assert_eq!(plain("2026-01-02"), Scalar::Str);
        assert_eq!(plain("2026-1-2T10:00:00Z"), Scalar::Str);
        assert_eq!(plain("<<"), Scalar::Merge);
        assert!(matches!(plain(".nan"), Scalar::Float(f) if f.is_nan()));
        assert_eq!(plain("-.inf"), Scalar::Float(f64::NEG_INFINITY));
        assert_eq!(tagged("tag:yaml.org,2002:str", "no"), Some(Scalar::Str));
        assert_eq!(tagged("!!int", "x"), None);
        assert_eq!(tagged("!custom", "5"), Some(Scalar::Str));
    }
}
