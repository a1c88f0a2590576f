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
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Answer every request with `respond(head)`.
    pub fn start(respond: impl Fn(&str) -> Reply + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen_bodies = bodies.clone();
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
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                let _ = std::io::Read::read_exact(&mut reader, &mut body);
                let reply = respond(&head);
                // The request is recorded before the reply is written: a
                // client that has its answer finds it here.
                seen_bodies
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
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
        Server {
            port,
            requests,
            bodies,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The heads of the requests seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests seen so far: head and body of each.
    pub fn exchanges(&self) -> Vec<(String, String)> {
        let heads = self.requests.lock().unwrap().clone();
        let bodies = self.bodies.lock().unwrap().clone();
        heads.into_iter().zip(bodies).collect()
    }
}
