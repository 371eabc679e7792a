//! HTTP/1.1 as the test API server speaks it: read one request head, answer with a whole JSON
//! body or a chunked stream (watches), always `Connection: close`. It knows bytes and headers;
//! it never knows what a request means.

use std::collections::HashMap;
use std::io::{Read, Write};

/// One request head.
#[derive(Debug, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: HashMap<String, String>,
    /// `path?query` as sent, for fault matching and the request log.
    pub target: String,
    pub headers: HashMap<String, String>,
}

const MAX_HEAD: usize = 64 * 1024;

fn decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request head; `None` when the client closed or sent something else than HTTP.
pub fn read_request(s: &mut impl Read) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 || buf.len() > MAX_HEAD {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?.to_string();
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let query = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Request {
        method,
        path: path.to_string(),
        query,
        target: target.clone(),
        headers,
    })
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// A whole answer.
pub fn respond(s: &mut impl Write, code: u16, body: &[u8]) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 {code} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(code),
        body.len()
    )?;
    s.write_all(body)?;
    s.flush()
}

/// The head of a streamed (chunked) answer.
pub fn start_stream(s: &mut impl Write) -> std::io::Result<()> {
    write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()
}

pub fn chunk(s: &mut impl Write, data: &[u8]) -> std::io::Result<()> {
    write!(s, "{:x}\r\n", data.len())?;
    s.write_all(data)?;
    s.write_all(b"\r\n")?;
    s.flush()
}

pub fn end_stream(s: &mut impl Write) -> std::io::Result<()> {
    s.write_all(b"0\r\n\r\n")?;
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kube_rs_watch_request() {
        let raw = b"GET /apis/apps/v1/namespaces/kube-system/daemonsets?&watch=true&timeoutSeconds=290&fieldSelector=metadata.name%3Dcalico-node&allowWatchBookmarks=true&resourceVersion=12 HTTP/1.1\r\nauthorization: Bearer abc\r\nhost: 127.0.0.1\r\n\r\n";
        let r = read_request(&mut &raw[..]).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/apis/apps/v1/namespaces/kube-system/daemonsets");
        assert_eq!(r.query["fieldSelector"], "metadata.name=calico-node");
        assert_eq!(r.query["resourceVersion"], "12");
        assert_eq!(r.headers["authorization"], "Bearer abc");
        assert_eq!(decode("a%2"), "a%2");
    }
}
