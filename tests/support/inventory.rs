//! A tiny inventory API on loopback, for generators that fetch their hosts over HTTP.
//! Plain HTTP/1.1 over std sockets, one thread per connection, `Connection: close`.
//!
//! | path | answer |
//! |---|---|
//! | `/hosts` | 200, [`HOSTS`] (401 without the right bearer token, when one is set) |
//! | `/echo/hosts` | 403, the body repeats the request's `Authorization` header |
//! | `/slow/hosts` | 200 after [`SLOW`] |
//! | `/big/hosts` | 200 with a 2 MB body |

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Four hosts in two data centres; see the inventory example for the groups they make.
pub const HOSTS: &str = r#"[
  {"name": "web-1", "address": "10.0.0.1", "role": "web", "dc": "fra1",
   "exporters": {"node": 9100, "nginx": 9113}, "labels": {"team": "shop"}},
  {"name": "web-2", "address": "10.0.0.2", "role": "web", "dc": "fra1",
   "exporters": {"node": 9100, "nginx": 9113}, "labels": {"team": "shop"}},
  {"name": "db-1", "address": "10.0.1.1", "role": "db", "dc": "ams1",
   "exporters": {"node": 9100, "postgres": 9187}, "labels": {"team": "data"}},
  {"name": "edge-1", "address": "10.0.2.1", "role": "edge", "dc": "ams1",
   "exporters": {"node": 9100}}
]"#;

/// How long `/slow/hosts` takes to answer.
pub const SLOW: Duration = Duration::from_secs(4);

/// One request as the inventory saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

pub struct Inventory {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Inventory {
    /// Starts the API on a free loopback port; `token` makes `/hosts` require it.
    pub fn start(token: Option<&str>) -> Inventory {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the inventory API");
        let port = listener.local_addr().expect("local addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let token = token.map(str::to_string);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (seen, token) = (seen2.clone(), token.clone());
                std::thread::spawn(move || {
                    let _ = answer(conn, &seen, token.as_deref());
                });
            }
        });
        Inventory { port, seen, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Inventory {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(conn: TcpStream, seen: &Mutex<Vec<Seen>>, token: Option<&str>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    if let Ok(mut s) = seen.lock() {
        s.push(Seen {
            path: path.clone(),
            authorization: authorization.clone(),
        });
    }
    let (status, body) = match path.as_str() {
        "/hosts" => match token {
            Some(t) if authorization.as_deref() != Some(&format!("Bearer {t}")) => {
                ("401 Unauthorized", "missing or wrong token".to_string())
            }
            _ => ("200 OK", HOSTS.to_string()),
        },
        "/echo/hosts" => (
            "403 Forbidden",
            format!(
                "forbidden for authorization {}",
                authorization.unwrap_or_default()
            ),
        ),
        "/slow/hosts" => {
            std::thread::sleep(SLOW);
            ("200 OK", HOSTS.to_string())
        }
        "/big/hosts" => ("200 OK", format!("[{}]", " ".repeat(2_000_000))),
        _ => ("404 Not Found", "no such path".to_string()),
    };
    let mut out = conn;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
