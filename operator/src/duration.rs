//! Durations as a StreamJob writes them: a whole number and a unit, `500ms`, `10s`, `5m`,
//! `1h` (the CRD's pattern allows exactly these).

use std::time::Duration;

/// `text` as a duration, or why not (for a status message that names the field).
pub fn parse(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("'{text}' is not a duration: write a whole number and ms, s, m or h, e.g. 10s")
    })?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        _ => None,
    };
    ms.map(Duration::from_millis).ok_or_else(|| {
        format!("'{text}' is not a duration: write a whole number and ms, s, m or h, e.g. 10s")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_number_and_a_unit() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "10", "s", "1.5s", "10 s", "-1s", "10d"] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains("e.g. 10s"), "{bad}: {e}");
        }
    }
}
