//! API attacks on `capstan serve` (the same listener serves
//! `capstan controller --listen`): hundreds of idle and half-sent,
//! unauthenticated connections, an oversized body. The server must close
//! what it cannot serve, keep answering `/healthz`, and never read a body
//! past its limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

const CLI: &str = env!("CARGO_BIN_EXE_capstan-cli");

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `capstan serve` with small limits; (server, host:port).
fn serve(state: &Path) -> (Server, String) {
    let (child, url) = capstan_tests::serve(
        CLI,
        state,
        &["--max-connections", "32", "--header-timeout", "2s"],
    );
    (Server(child), url.trim_start_matches("http://").to_string())
}

/// One request on a fresh connection; the whole response, or why not.
fn request(addr: &str, raw: &[u8]) -> Result<String, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        Err(e) if !out.is_empty() => eprintln!("after {} bytes: {e}", out.len()),
        Err(e) => return Err(e.to_string()),
    }
    if out.is_empty() {
        return Err("closed without an answer".into());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn healthz(addr: &str) -> Result<String, String> {
    request(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
}

/// Health answers within `within` (retrying on a fresh connection).
fn assert_healthy(addr: &str, within: Duration) {
    let start = Instant::now();
    loop {
        match healthz(addr) {
            Ok(r) if r.starts_with("HTTP/1.1 200") && r.ends_with("ok\n") => return,
            other if start.elapsed() > within => panic!("/healthz: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The API itself (a main slot, not the health reserve, which answers 503
/// to `/v1`) answers within `within`: 401 without a token.
fn assert_api_answers(addr: &str, within: Duration) {
    let start = Instant::now();
    loop {
        let r = request(
            addr,
            b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if matches!(&r, Ok(t) if t.starts_with("HTTP/1.1 401")) {
            return;
        }
        assert!(start.elapsed() < within, "API still held: {r:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_connection_flood_does_not_take_the_api_down() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(&dir.path().join("state"));
    assert_healthy(&addr, Duration::from_secs(10));
    // 600 connections: half idle, half with a request head never finished.
    let mut flood = Vec::new();
    for i in 0..600 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            continue;
        };
        if i % 2 == 0 {
            let _ = s.write_all(b"GET /v1/runs HTTP/1.1\r\nHost: x\r\nX-Slow: ");
        }
        flood.push(s);
    }
    assert!(flood.len() > 500, "the test opened its connections");
    // Health still answers while they are all open (the reserve, then the
    // main slots once the header timeout has closed the slow ones).
    assert_healthy(&addr, Duration::from_secs(15));
    // A half-sent connection is closed by the server, not kept forever.
    let slow = &mut flood[0];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let closed = match slow.read_to_end(&mut buf) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the slow connection was not closed");
    // Ordinary API calls work again (401: no token) once the flood is gone.
    drop(flood);
    assert_api_answers(&addr, Duration::from_secs(15));
}

/// Clients that pipeline requests and never read the answers: the server's
/// writes stall, and the write timeout frees the slots.
#[test]
fn clients_that_never_read_do_not_hold_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, addr) = serve(&dir.path().join("state"));
    assert_healthy(&addr, Duration::from_secs(10));
    let many: Vec<u8> = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20_000);
    let mut stalled = Vec::new();
    for _ in 0..60 {
        let Ok(mut s) = TcpStream::connect(&addr) else {
            continue;
        };
        s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
        let _ = s.write_all(&many);
        stalled.push(s);
    }
    // While they are all still open and unread, health answers (reserve),
    // and the API itself comes back once the stalled writes time out
    // (the reserve answers 503 to anything but /healthz).
    assert_healthy(&addr, Duration::from_secs(30));
    assert_api_answers(&addr, Duration::from_secs(40));
    drop(stalled);
}

#[test]
fn an_oversized_body_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = capstan_tests::cli(CLI, &state, &["token", "add", "alice", "-o", "json"]);
    let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let (_server, addr) = serve(&state);
    assert_healthy(&addr, Duration::from_secs(10));
    // Only the head is sent: the server must answer from the declared
    // length, without waiting for (or reading) 4 MiB of body.
    let raw = format!(
        "POST /v1/runs/r/tasks/t/approve HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        4 << 20
    );
    let r = request(&addr, raw.as_bytes()).unwrap_or_default();
    assert!(r.starts_with("HTTP/1.1 413"), "{}", &r[..r.len().min(300)]);
    // A head over the limit is refused too.
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "y".repeat(200_000)
    );
    let r = request(&addr, huge.as_bytes());
    assert!(
        !matches!(&r, Ok(t) if t.starts_with("HTTP/1.1 200")),
        "{r:?}"
    );
    assert_healthy(&addr, Duration::from_secs(10));
}
