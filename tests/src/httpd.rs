//! A loopback HTTP/1.1 server for capability tests: records each request's
//! head and answers with what the test's responder says.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// What to answer: status line (`200 OK`), extra header lines, body.
pub struct Reply {
    pub status: &'static str,
    pub headers: Vec<String>,
    pub body: String,
}

impl Reply {
    pub fn ok(body: &str) -> Reply {
        Reply {
            status: "200 OK",
            headers: Vec::new(),
            body: body.to_string(),
        }
    }
}

pub struct Server {
    pub port: u16,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Answer every request with `respond(head)`.
    pub fn start(respond: impl Fn(&str) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut head = String::new();
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                let reply = respond(&head);
                seen.lock().unwrap().push(head);
                let mut extra = String::new();
                for h in &reply.headers {
                    extra.push_str(h);
                    extra.push_str("\r\n");
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 {}\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{}",
                    reply.status,
                    reply.body.len(),
                    reply.body
                );
            }
        });
        Server { port, requests }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The heads of the requests seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
