//! Kubernetes memory quantities, parsed exactly.
//!
//! `kube_quantity` goes through `f64` and cannot turn milli or fractional values into bytes, so
//! this follows apimachinery's grammar directly with integer arithmetic:
//! `<sign><digits>[.<digits>]<suffix>`, suffix one of `Ki Mi Gi Ti Pi Ei`, `m "" k M G T P E`,
//! or `e<int>`/`E<int>`. Bytes are rounded up, as `Quantity.Value()` does.

use std::fmt;

pub const KI: u64 = 1024;
pub const MI: u64 = 1024 * 1024;
pub const GI: u64 = 1024 * 1024 * 1024;
/// The largest quantity Kubernetes holds as bytes (an int64).
pub const MAX_BYTES: u64 = i64::MAX as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid memory quantity {input:?}: {reason} (use a form such as 256Mi, 1Gi, 512M or 1e9)")]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses a memory quantity into bytes, rounding fractional bytes up.
pub fn parse_bytes(input: &str) -> Result<u64, QuantityError> {
    match parse_plain(input) {
        Some(bytes) => Ok(bytes),
        None => parse_general(input),
    }
}

/// The whole grammar (the fast path [`parse_plain`] is a subset of it).
fn parse_general(input: &str) -> Result<u64, QuantityError> {
    let err = |reason| QuantityError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(num_end);
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        // Kubernetes reads a missing number as 0 ("Mi" is a 0-byte limit): surely a typo.
        return Err(err("it has no number (Kubernetes would read it as 0)"));
    }
    if frac_part.contains('.') {
        return Err(err("it has more than one decimal point"));
    }
    let (exp10, exp2): (i32, u32) = match suffix {
        "" => (0, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        other if other.starts_with(['e', 'E']) => {
            let e: i32 = other[1..]
                .parse()
                .map_err(|_| err("its exponent is not a whole number"))?;
            (e, 0)
        }
        _ => {
            return Err(err(
                "its unit is not one of Ki Mi Gi Ti Pi Ei m k M G T P E",
            ))
        }
    };
    let digits: String = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return Err(err("it has too many digits"));
    }
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| err("it is not a number"))?
    };
    if mantissa == 0 {
        return Ok(0);
    }
    if negative {
        return Err(err("memory cannot be negative"));
    }
    // In i64: an exponent near i32::MIN minus the fraction's digits must not overflow.
    let frac_len = i64::try_from(frac_part.len()).map_err(|_| err("it has too many digits"))?;
    let scale10 = i64::from(exp10) - frac_len;
    let too_large = || err("it exceeds 2^63-1 bytes, the most Kubernetes holds");
    let mut num = mantissa.checked_shl(exp2).ok_or_else(too_large)?;
    if exp2 > 0 && (num >> exp2) != mantissa {
        return Err(too_large());
    }
    let bytes = if scale10 >= 0 {
        let e = u32::try_from(scale10).map_err(|_| too_large())?;
        let p = 10u128.checked_pow(e).ok_or_else(too_large)?;
        num = num.checked_mul(p).ok_or_else(too_large)?;
        num
    } else {
        match u32::try_from(scale10.unsigned_abs())
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(den) => num.div_ceil(den),
            // The value is far below one byte but not zero.
            None => 1,
        }
    };
    // Kubernetes stores quantities as int64 (it caps larger ones, or cannot give their value).
    u64::try_from(bytes)
        .ok()
        .filter(|&b| b <= MAX_BYTES)
        .ok_or_else(too_large)
}

/// The fast path against the general grammar on one input (the fuzz target `quantity` in
/// fuzz/): whatever [`parse_plain`] reads, [`parse_general`] reads to the same bytes. Panics
/// on a difference; returns [`parse_bytes`]' answer.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub fn fuzz_plain_agrees(input: &str) -> Result<u64, QuantityError> {
    let general = parse_general(input);
    if let Some(plain) = parse_plain(input) {
        assert_eq!(
            general,
            Ok(plain),
            "{input:?}: the fast path and the general grammar disagree"
        );
    }
    let bytes = parse_bytes(input);
    // What oomguard writes back into a manifest reads as the same bytes.
    if let Ok(b) = bytes {
        let q = to_quantity(b);
        assert_eq!(parse_bytes(&q), Ok(b), "{input:?} -> {q:?}");
    }
    bytes
}

/// The common forms (`256Mi`, `1Gi`, `512M`, `1000000`: whole digits and a unit) without the
/// general grammar's allocation; None for anything else, which [`parse_bytes`] then reads.
fn parse_plain(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    // Up to 18 digits fit in a u64 with room; more go the general way.
    if digits == 0 || digits > 18 {
        return None;
    }
    let mut n: u64 = 0;
    for c in &b[..digits] {
        n = n * 10 + u64::from(c - b'0');
    }
    let multiplier: u64 = match &s[digits..] {
        "" => 1,
        "Ki" => KI,
        "Mi" => MI,
        "Gi" => GI,
        "Ti" => GI << 10,
        "Pi" => GI << 20,
        "Ei" => GI << 30,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        _ => return None,
    };
    n.checked_mul(multiplier).filter(|&b| b <= MAX_BYTES)
}

/// Bytes rounded up to whole MiB.
pub fn round_up_mi(bytes: f64) -> u64 {
    if !bytes.is_finite() || bytes <= 0.0 {
        return 0;
    }
    let mi = (bytes / MI as f64).ceil();
    (mi as u64).saturating_mul(MI)
}

/// A human form of a byte count for messages: whole `Gi`/`Mi` when exact, else MiB rounded.
pub fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() || bytes < 0.0 {
        return "?".to_string();
    }
    let b = bytes.round() as u64;
    if b >= GI && b % GI == 0 {
        return with_unit(b / GI, "Gi");
    }
    if b >= 10 * GI {
        return format!("{:.1}Gi", bytes / GI as f64);
    }
    if b >= MI {
        return with_unit((bytes / MI as f64).round() as u64, "Mi");
    }
    if b >= KI {
        return with_unit((bytes / KI as f64).round() as u64, "Ki");
    }
    b.to_string()
}

/// `{n}{unit}` without the formatting machinery (these go into every admission's messages).
fn with_unit(n: u64, unit: &str) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut s = String::with_capacity(digits.len() - start + unit.len());
    s.extend(digits[start..].iter().map(|&d| char::from(d)));
    s.push_str(unit);
    s
}

/// A quantity string to put into a manifest: exact, in the largest binary unit that divides it.
pub fn to_quantity(bytes: u64) -> String {
    for (unit, size) in [("Ti", GI * 1024), ("Gi", GI), ("Mi", MI), ("Ki", KI)] {
        if bytes >= size && bytes % size == 0 {
            return with_unit(bytes / size, unit);
        }
    }
    bytes.to_string()
}

/// A byte count that prints as [`format_bytes`].
#[derive(Clone, Copy, PartialEq, PartialOrd)]
pub struct Bytes(pub f64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} B)", format_bytes(self.0), self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_units_print_as_format_does() {
        for n in [0, 1, 9, 10, 99, 100, 347, 1_000_000, u64::MAX] {
            assert_eq!(with_unit(n, "Mi"), format!("{n}Mi"));
        }
    }

    #[test]
    fn the_plain_forms_read_as_the_general_grammar_does() {
        for n in [
            "0",
            "1",
            "7",
            "256",
            "999999999999999999",
            "000128",
            "18446744073",
        ] {
            for unit in [
                "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E", "m", "e3",
                "x", " ",
            ] {
                let s = format!("{n}{unit}");
                if let Some(b) = parse_plain(&s) {
                    // The general way, without the fast path.
                    let general = parse_bytes(&format!(" {s}"));
                    assert_eq!(general, Ok(b), "{s}");
                }
            }
        }
        assert_eq!(parse_plain("256Mi"), Some(256 * MI));
        assert_eq!(parse_plain("16Ei"), None);
        assert_eq!(parse_plain("8Ei"), None);
        assert_eq!(parse_plain("7Ei"), Some(7 << 60));
        assert_eq!(parse_plain("1.5Gi"), None);
        assert_eq!(parse_plain("-1Mi"), None);
        assert_eq!(parse_plain(" 1Mi"), None);
    }

    #[test]
    fn every_form_kubernetes_accepts() {
        let cases: &[(&str, u64)] = &[
            ("128Mi", 128 * MI),
            ("1G", 1_000_000_000),
            ("1e9", 1_000_000_000),
            ("1E9", 1_000_000_000),
            ("0.5Gi", GI / 2),
            ("129M", 129_000_000),
            ("1000000000m", 1_000_000),
            ("1500m", 2),
            ("1m", 1),
            ("0", 0),
            ("0Mi", 0),
            ("+64Mi", 64 * MI),
            (".5Ki", 512),
            ("1.", 1),
            ("2Ki", 2048),
            ("1Ti", 1024 * GI),
            ("1Ei", 1 << 60),
            ("12345", 12345),
            ("1k", 1000),
            ("1.5e3", 1500),
            ("1e-3", 1),
            ("  256Mi ", 256 * MI),
            ("0.1", 1),
            ("1e-40", 1),
            // Exponents at the ends of i32 (an overflow once: a panic, or 16Ei in release).
            ("1e-2147483648", 1),
            ("0.5e-2147483648", 1),
            ("0.00000e-2147483648", 0),
        ];
        for (input, want) in cases {
            assert_eq!(parse_bytes(input), Ok(*want), "{input}");
        }
    }

    #[test]
    fn invalid_quantities_are_reported_not_panicked() {
        for input in [
            "",
            "Mi",
            "abc",
            "12Q",
            "1.2.3Mi",
            "-1Mi",
            "1e",
            "1eX",
            "16Ei",
            "8Ei",
            "9223372036854775808",
            "1e30",
            "1e2147483647",
            "0.1e2147483647",
            "1e2147483648",
            "1KiB",
            "1 Mi",
            "\u{0}",
            "9999999999999999999999999999999999999",
        ] {
            let e = parse_bytes(input).expect_err(input);
            assert_eq!(e.input, input);
            assert!(e.to_string().contains("256Mi"), "{e}");
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(301.0 * MI as f64), "301Mi");
        assert_eq!(format_bytes(GI as f64), "1Gi");
        assert_eq!(to_quantity(347 * MI), "347Mi");
        assert_eq!(to_quantity(2 * GI), "2Gi");
        assert_eq!(to_quantity(1000), "1000");
        assert_eq!(round_up_mi(346.15 * MI as f64), 347 * MI);
        assert_eq!(round_up_mi(256.0 * MI as f64), 256 * MI);
    }
}
