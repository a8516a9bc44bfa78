//! A minimal HTTP/1.1 client over `std::net`: keep-alive GETs for the load generator, one-shot
//! GETs for probes, and a streaming body (identity or chunked) for Server-Sent Events.
//! Only what the harness talks to: servers on 127.0.0.1.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The parts of a response head the harness needs.
#[derive(Debug, Default, Clone)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// `Content-Length`, if given.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
    /// `Connection: close`.
    pub close: bool,
    /// `Content-Type`, lower-cased.
    pub content_type: String,
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads a status line and headers up to the blank line.
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Head> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a response"));
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut head = Head { status, ..Head::default() };
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside the headers"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok(head);
        }
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => head.content_length = v.parse().ok(),
            "transfer-encoding" => head.chunked = v.to_ascii_lowercase().contains("chunked"),
            "connection" => head.close = v.eq_ignore_ascii_case("close"),
            "content-type" => head.content_type = v.to_ascii_lowercase(),
            _ => {}
        }
    }
}

/// A keep-alive connection for repeated GETs.
pub struct Conn {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    body: Vec<u8>,
}

impl Conn {
    /// Connects to `addr`; every call of [`Conn::get`] sends `GET path`.
    pub fn connect(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<Conn> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: jvmwatch-bench\r\n\r\n").into_bytes();
        Ok(Conn { reader: BufReader::with_capacity(64 * 1024, s), request, body: Vec::new() })
    }

    /// Sends the request and reads the whole response; returns (status, body length).
    pub fn get(&mut self) -> io::Result<(u16, usize)> {
        self.reader.get_mut().write_all(&self.request)?;
        let head = read_head(&mut self.reader)?;
        if head.chunked {
            self.body.clear();
            Chunked::new(&mut self.reader).read_to_end(&mut self.body)?;
            return Ok((head.status, self.body.len()));
        }
        let n = head.content_length.ok_or_else(|| bad("response without Content-Length".into()))?;
        self.body.resize(n, 0);
        self.reader.read_exact(&mut self.body)?;
        Ok((head.status, n))
    }
}

/// One GET with `Connection: close`; returns status and body as text.
pub fn get_once(addr: SocketAddr, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let mut r = BufReader::new(s);
    write!(r.get_mut(), "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let head = read_head(&mut r)?;
    let mut body = Vec::new();
    if head.chunked {
        Chunked::new(&mut r).read_to_end(&mut body)?;
    } else if let Some(n) = head.content_length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok((head.status, String::from_utf8_lossy(&body).into_owned()))
}

/// An open streaming response (e.g. `text/event-stream`): its head and a reader over the body.
/// Reads time out after the timeout given to [`open_stream`] with `WouldBlock`/`TimedOut`;
/// the reader can be read again after a timeout without losing data.
pub struct Stream {
    /// The response head.
    pub head: Head,
    /// The body, de-chunked when needed.
    pub body: BufReader<Body>,
}

/// A streaming body: identity or chunked.
pub enum Body {
    /// Read until the server closes.
    Identity(BufReader<TcpStream>),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked<BufReader<TcpStream>>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Identity(r) => r.read(buf),
            Body::Chunked(c) => c.read(buf),
        }
    }
}

/// `GET path` with `Accept: text/event-stream`, returning once the response head is in.
pub fn open_stream(addr: SocketAddr, path: &str, read_timeout: Duration) -> io::Result<Stream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut r = BufReader::new(s);
    write!(
        r.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    )?;
    let head = read_head(&mut r)?;
    r.get_ref().set_read_timeout(Some(read_timeout))?;
    let body = if head.chunked { Body::Chunked(Chunked::new(r)) } else { Body::Identity(r) };
    Ok(Stream { head, body: BufReader::new(body) })
}

/// True for the errors a read timeout produces.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

enum ChunkState {
    /// Reading a chunk-size line (bytes so far).
    Size(Vec<u8>),
    /// Inside a chunk: bytes left.
    Data(u64),
    /// Reading the CRLF after a chunk's data.
    DataEnd(Vec<u8>),
    /// The last chunk was read.
    Done,
}

/// A `Transfer-Encoding: chunked` decoder. Resumable: a read that fails (e.g. times out) in
/// the middle of a size line keeps what it had.
pub struct Chunked<R> {
    inner: R,
    state: ChunkState,
}

impl<R: BufRead> Chunked<R> {
    /// Decodes the chunked body read from `inner`.
    pub fn new(inner: R) -> Chunked<R> {
        Chunked { inner, state: ChunkState::Size(Vec::new()) }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match &mut self.state {
                ChunkState::Done => return Ok(0),
                ChunkState::Size(line) => {
                    if self.inner.read_until(b'\n', line)? == 0 || !line.ends_with(b"\n") {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body cut short"));
                    }
                    let text = String::from_utf8_lossy(line);
                    let hex = text.trim().split(';').next().unwrap_or("").trim();
                    let n = u64::from_str_radix(hex, 16).map_err(|_| bad(format!("bad chunk size {hex:?}")))?;
                    // A last chunk's trailers are not read: the harness only streams until it stops.
                    self.state = if n == 0 { ChunkState::Done } else { ChunkState::Data(n) };
                }
                ChunkState::Data(left) => {
                    if out.is_empty() {
                        return Ok(0);
                    }
                    let want = (*left).min(out.len() as u64) as usize;
                    let n = self.inner.read(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunk cut short"));
                    }
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd(Vec::new());
                    }
                    return Ok(n);
                }
                ChunkState::DataEnd(line) => {
                    if self.inner.read_until(b'\n', line)? == 0 || !line.ends_with(b"\n") {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "chunked body cut short"));
                    }
                    self.state = ChunkState::Size(Vec::new());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_parsed() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\nrest";
        let mut r = &raw[..];
        let h = read_head(&mut r).unwrap();
        assert_eq!(h.status, 200);
        assert!(h.chunked);
        assert_eq!(h.content_type, "text/event-stream");
        assert_eq!(r, b"rest");
    }

    #[test]
    fn chunked_body_is_decoded() {
        let raw = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        let mut out = String::new();
        Chunked::new(&raw[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, "hello, world");
    }
}
