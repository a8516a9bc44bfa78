//! A minimal HTTP/1.1 client over real sockets for the service tests: one request per
//! connection, plus a Server-Sent Events reader.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body bytes (de-chunked).
    pub body: Vec<u8>,
}

impl Resp {
    /// Body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request_body(addr, method, path, headers, b"")
}

/// Like [`request`], with a body.
pub fn request_body(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body_out: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body_out.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body_out).unwrap();
    let mut r = BufReader::new(s);
    let (status, headers) = read_head(&mut r);
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let n = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).unwrap();
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.iter().find(|(k, _)| k == "content-length").and_then(|(_, v)| v.parse().ok()) {
        body = vec![0u8; n];
        r.read_exact(&mut body).unwrap();
    } else {
        r.read_to_end(&mut body).unwrap();
    }
    Resp { status, headers, body }
}

/// GET.
pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[])
}

fn read_head(r: &mut impl BufRead) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

/// One SSE message.
#[derive(Clone, Debug, Default)]
pub struct SseMsg {
    /// `id:` field.
    pub id: Option<String>,
    /// `event:` field.
    pub event: String,
    /// `data:` lines joined.
    pub data: String,
}

impl SseMsg {
    /// Data parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).expect("SSE data is JSON")
    }
}

/// An open SSE stream.
pub struct Sse {
    r: BufReader<TcpStream>,
    lines: std::collections::VecDeque<String>,
    /// Status of the response.
    pub status: u16,
}

impl Sse {
    /// Opens `path`, optionally resuming after `last_event_id`.
    pub fn open(addr: SocketAddr, path: &str, last_event_id: Option<&str>) -> Sse {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(id) = last_event_id {
            req.push_str(&format!("Last-Event-ID: {id}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        let (status, headers) = read_head(&mut r);
        if status == 200 {
            assert!(headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
        }
        Sse { r, lines: Default::default(), status }
    }

    /// Reads one chunk of the chunked body into `lines`; false at the end or on timeout.
    fn fill(&mut self) -> bool {
        let mut size = String::new();
        if self.r.read_line(&mut size).unwrap_or(0) == 0 {
            return false;
        }
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { return false };
        if n == 0 {
            return false;
        }
        let mut chunk = vec![0u8; n + 2];
        if self.r.read_exact(&mut chunk).is_err() {
            return false;
        }
        let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
        let mut parts: Vec<&str> = text.split('\n').collect();
        // The last element after the final newline is empty (a chunk ends with a line end).
        if parts.last() == Some(&"") {
            parts.pop();
        }
        self.lines.extend(parts.into_iter().map(str::to_string));
        true
    }

    /// Reads the next message (skipping comments); `None` at end of stream or timeout.
    pub fn next_msg(&mut self) -> Option<SseMsg> {
        let mut msg = SseMsg::default();
        let mut any = false;
        loop {
            let Some(line) = self.lines.pop_front() else {
                if !self.fill() {
                    return None;
                }
                continue;
            };
            if line.is_empty() {
                if any {
                    return Some(msg);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (k, v) =
                line.split_once(':').map(|(k, v)| (k, v.strip_prefix(' ').unwrap_or(v))).unwrap_or((&line, ""));
            any = true;
            match k {
                "id" => msg.id = Some(v.to_string()),
                "event" => msg.event = v.to_string(),
                "data" => {
                    if !msg.data.is_empty() {
                        msg.data.push('\n');
                    }
                    msg.data.push_str(v);
                }
                _ => {}
            }
        }
    }
}

/// Decodes standard base64 (for WebDriver screenshots).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
