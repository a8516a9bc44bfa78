//! Server-Sent Events: a resumable parser over a byte stream, and the fields the harness reads
//! from `jvmwatch serve`'s events (`/api/v1/stream`: `id: <seq>`, `event: <type>`,
//! `data: {"seq", "type", "time", "time_ns", "jvm", ...}`).

use std::io::{self, BufRead};

use crate::timefmt::parse_rfc3339_ns;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_parsed_across_reads() {
        let raw = ": keep-alive\n\nid: 7\nevent: gc_pause_end\ndata: {\"seq\":7,\r\ndata: \"type\":\"gc_pause_end\"}\n\ndata: x\n\n";
        let mut r = Reader::new(raw.as_bytes());
        let e = r.next().unwrap().unwrap();
        assert_eq!(e.id.as_deref(), Some("7"));
        assert_eq!(e.event, "gc_pause_end");
        assert_eq!(e.data, "{\"seq\":7,\n\"type\":\"gc_pause_end\"}");
        let e = r.next().unwrap().unwrap();
        assert_eq!((e.event.as_str(), e.data.as_str()), ("message", "x"));
        assert!(r.next().unwrap().is_none());
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
