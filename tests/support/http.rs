//! A minimal HTTP/1.1 client for the tests: one request per connection, the whole
//! answer read. Enough to see exactly what Prometheus would see, with no client library
//! in between (and to speak WebDriver's JSON to chromedriver).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// `GET http://127.0.0.1:<port><target>` (target: path and query, sent as given).
pub fn get(port: u16, target: &str) -> std::io::Result<Reply> {
    request(port, "GET", target, None)
}

/// `method http://127.0.0.1:<port><target>`, with a JSON body when given.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    json_body: Option<&str>,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = json_body.unwrap_or("");
    let content = if json_body.is_some() {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{content}Connection: close\r\n\r\n{body}"
    )?;
    read_reply(stream)
}

/// `GET` with a request target given as raw bytes (not necessarily UTF-8 or valid
/// HTTP: what a hostile client may send).
pub fn get_raw(port: u16, target: &[u8]) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = b"GET ".to_vec();
    head.extend_from_slice(target);
    head.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    stream.write_all(&head)?;
    read_reply(stream)
}

fn read_reply(mut stream: TcpStream) -> std::io::Result<Reply> {
    // Read to the end of the body: by Content-Length when given (some servers keep
    // the connection open despite `Connection: close`), else to EOF.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let split = loop {
        let n = stream.read(&mut chunk)?;
        raw.extend_from_slice(&chunk[..n]);
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let length = String::from_utf8_lossy(&raw[..split])
                .split("\r\n")
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok());
            match length {
                Some(len) => {
                    while raw.len() < split + 4 + len {
                        let n = stream.read(&mut chunk)?;
                        if n == 0 {
                            break;
                        }
                        raw.extend_from_slice(&chunk[..n]);
                    }
                }
                None => {
                    stream.read_to_end(&mut raw)?;
                }
            }
            break split;
        }
        if n == 0 {
            return Err(std::io::Error::other("no end of headers"));
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&data[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
