//! Small formatting helpers shared by the modules.

use std::fmt::Write as _;

/// Formats milliseconds compactly: `100ms`, `30s`, `5m`, `1h`, `1m30s`.
pub(crate) fn fmt_ms(ms: u64) -> String {
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, len) in [("h", 3_600_000u64), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= len {
            let _ = write!(out, "{}{unit}", rest / len);
            rest %= len;
        }
    }
    out
}

/// Formats a figure for humans: at most 3 decimals, no trailing zeros.
pub(crate) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v != 0.0 && (v.abs() >= 1e12 || v.abs() < 1e-3) {
        return format!("{v:.3e}");
    }
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(fmt_ms(0), "0s");
        assert_eq!(fmt_ms(100), "100ms");
        assert_eq!(fmt_ms(300_000), "5m");
        assert_eq!(fmt_ms(90_000), "1m30s");
        assert_eq!(fmt_num(142.3), "142.3");
        assert_eq!(fmt_num(100.0), "100");
        assert_eq!(fmt_num(0.05), "0.05");
        assert_eq!(fmt_num(1.0 / 3.0), "0.333");
    }
}
