//! Server-Sent Events: a resumable parser over a byte stream, and the fields the harness reads
//! from `jvmwatch serve`'s events (`/api/v1/stream`: `id: <seq>`, `event: <type>`,
//! `data: {"seq", "type", "time", "time_ns", "jvm", ...}`).

use std::io::{self, BufRead};

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `id:` field, if any.
    pub id: Option<String>,
    /// `event:` field (`message` when absent, as the spec says).
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
}

/// Parses events from `r`. A read error (e.g. a timeout) leaves a partial line and a partial
/// event in place; call [`Reader::next`] again to go on.
pub struct Reader<R> {
    r: R,
    line: Vec<u8>,
    cur: Event,
    has_data: bool,
}

impl<R: BufRead> Reader<R> {
    /// A parser over `r`.
    pub fn new(r: R) -> Reader<R> {
        Reader { r, line: Vec::new(), cur: Event::default(), has_data: false }
    }

    /// The next event; `Ok(None)` at the end of the stream.
    pub fn next(&mut self) -> io::Result<Option<Event>> {
        loop {
            let n = self.r.read_until(b'\n', &mut self.line)?;
            if n == 0 && self.line.is_empty() {
                return Ok(None);
            }
            let mut l: &[u8] = &self.line;
            if l.ends_with(b"\n") {
                l = &l[..l.len() - 1];
            }
            if l.ends_with(b"\r") {
                l = &l[..l.len() - 1];
            }
            let l = String::from_utf8_lossy(l).into_owned();
            self.line.clear();
            if l.is_empty() {
                if self.has_data {
                    let mut ev = std::mem::take(&mut self.cur);
                    if ev.event.is_empty() {
                        ev.event = "message".into();
                    }
                    self.has_data = false;
                    return Ok(Some(ev));
                }
                self.cur = Event::default();
                continue;
            }
            if l.starts_with(':') {
                continue; // comment / keep-alive
            }
            let (field, value) = match l.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (l.as_str(), ""),
            };
            match field {
                "event" => self.cur.event = value.to_string(),
                "id" => self.cur.id = Some(value.to_string()),
                "data" => {
                    if self.has_data {
                        self.cur.data.push('\n');
                    }
                    self.cur.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
    }
}

/// The event's type and time (ns since the Unix epoch) from a `jvmwatch serve` event: `type`
/// from the SSE `event:` field or the data's `"type"`; time from `"time_ns"` if present, else
/// from the RFC 3339 `"time"`.
pub fn type_and_time(ev: &Event) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_str(&ev.data).ok()?;
    let ty = if ev.event != "message" {
        ev.event.clone()
    } else {
        v.get("type").and_then(|t| t.as_str()).unwrap_or("message").to_string()
    };
    let time = match v.get("time_ns").and_then(|t| t.as_u64()) {
        Some(t) => t,
        None => parse_rfc3339_ns(v.get("time")?.as_str()?)?,
    };
    Some((ty, time))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Civil date (y, m, d) of days since 1970-01-01 (Hinnant's `civil_from_days`).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)` into ns since the Unix epoch.
pub fn parse_rfc3339_ns(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        t.bytes().all(|c| c.is_ascii_digit()).then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let mut i = 19;
    let mut frac_ns: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        let mut scale = 100_000_000;
        for c in digits.bytes().take(9) {
            frac_ns += i64::from(c - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' => 0,
        sign @ (b'+' | b'-') => {
            let off = num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    u64::try_from(secs).ok().map(|s| s * 1_000_000_000 + frac_ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_reads() {
        let raw = ": keep-alive\n\nid: 7\nevent: gc_pause_end\ndata: {\"seq\":7,\r\ndata: \"type\":\"gc_pause_end\"}\n\ndata: x\n\n";
        let mut r = Reader::new(&raw.as_bytes()[..]);
        let e = r.next().unwrap().unwrap();
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.event, "gc_pause_end");
        assert_eq!(e.data, "{\"seq\":7,\n\"type\":\"gc_pause_end\"}");
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "x"));
        assert!(r.next().unwrap().is_none());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ns("2025-11-25T13:11:19.123Z"), Some(1_764_076_279_123_000_000));
        assert_eq!(parse_rfc3339_ns("2025-11-25T14:11:19.123+01:00"), Some(1_764_076_279_123_000_000));
        assert_eq!(parse_rfc3339_ns("2025-11-25T13:11:19.123456789Z"), Some(1_764_076_279_123_456_789));
        assert_eq!(parse_rfc3339_ns("yesterday"), None);
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }

    #[test]
    fn time_ns_wins_over_time() {
        let ev = Event {
            id: None,
            event: "gc_pause_end".into(),
            data: r#"{"type":"gc_pause_end","time":"1970-01-01T00:00:01Z","time_ns":5}"#.into(),
        };
        assert_eq!(type_and_time(&ev), Some(("gc_pause_end".into(), 5)));
        let ev = Event { data: r#"{"type":"gc_pause_end","time":"1970-01-01T00:00:01.5Z"}"#.into(), ..ev };
        assert_eq!(type_and_time(&ev), Some(("gc_pause_end".into(), 1_500_000_000)));
    }
}
