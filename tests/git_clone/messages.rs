//! What a sign-in page and a silent server get: git's words, real limits.

use super::*;

/// A server that accepts connections and answers each with `reply` (None:
/// never answers), on 127.0.0.1; returns its origin.
fn fake_server(reply: Option<&'static [u8]>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            match reply {
                Some(r) => {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 4096];
                    let _ = conn.read(&mut buf);
                    let _ = conn.write_all(r);
                }
                None => held.push(conn), // silent: keep it open
            }
        }
    });
    format!("http://127.0.0.1:{port}")
}

/// What git says, not a decoder's error: an HTML sign-in page is "not
/// valid: is this a git repository?", and a server that never answers
/// times out with the limit in the message (this waits the real 60 s).
#[tokio::test]
async fn a_sign_in_page_and_a_silent_server_get_clear_messages() {
    let env = TestEnv::new();
    let page: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 46\r\nConnection: close\r\n\r\n<html><body>Please sign in</body></html>\n\n\n\n\n\n";
    let origin = fake_server(Some(page));
    let run = env
        .run(
            &pipeline(&format!("{origin}/team/app.git"), &origin, "", ""),
            &[],
        )
        .await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("/team/app.git/info/refs not valid: is this a git repository?")
            && m.contains("HTML page"),
        "{m}"
    );

    let origin = fake_server(None);
    let yaml = pipeline(&format!("{origin}/app.git"), &origin, "", "")
        .replace("timeout: 20s", "timeout: 120s");
    let run = env.run(&yaml, &[]).await;
    assert_eq!(run.status_of("clone"), TaskStatus::Failed);
    let m = run.message("clone");
    assert!(
        m.contains("the server sent no response within 60 s (first-byte timeout)"),
        "{m}"
    );
}
