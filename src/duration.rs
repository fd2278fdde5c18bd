//! Durations as oomguard reads them everywhere (policy files, flags, API parameters): a whole
//! number and one unit, `500ms`, `90s`, `10m`, `3h`, `14d` or `2w`.

/// Reads a duration; the error says what was expected.
pub fn parse(text: &str) -> Result<std::time::Duration, String> {
    let s = text.trim();
    let expected =
        "expected a whole number with ms, s, m, h, d or w (e.g. 500ms, 90s, 10m, 3h, 14d)";
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; {expected}"))?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "w" => 7 * 86_400_000,
        "" => return Err(format!("{s:?} has no unit; {expected}")),
        _ => return Err(format!("{s:?} has no valid unit; {expected}")),
    };
    n.checked_mul(ms)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn one_unit_whole_numbers() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse(" 500ms "), Ok(Duration::from_millis(500)));
        assert_eq!(parse("14d"), Ok(Duration::from_secs(14 * 86_400)));
        assert_eq!(parse("2w"), Ok(Duration::from_secs(14 * 86_400)));
        for bad in [
            "2",
            "s",
            "2y",
            "1.5h",
            "-1s",
            "1h30m",
            "",
            "99999999999999999999d",
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{e}");
        }
        assert!(parse("18446744073709551615w")
            .unwrap_err()
            .contains("too long"));
    }
}
