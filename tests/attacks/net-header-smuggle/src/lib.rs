//! Attack: on a granted request, set headers the host owns or that split
//! requests: Authorization in odd case, Proxy-Authorization, a header value
//! with CRLF and a second request, Transfer-Encoding against
//! Content-Length, a path with a second request. `arg` = the granted server's URL. Each must be refused
//! or never reach the server (the test reads what it saw).
use attack_kit::raw;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let url = arg(&input);
    let authority = url.trim_start_matches("http://").to_string();
    let cases: [(&str, &[(&str, &str)]); 6] = [
        (
            "Authorization in odd case",
            &[("AuThOrIzAtIoN", "Bearer forged")],
        ),
        (
            "Proxy-Authorization",
            &[("proxy-authorization", "Basic Zm9yZ2Vk")],
        ),
        (
            "CRLF in a value",
            &[("x-note", "a\r\nauthorization: Bearer forged")],
        ),
        ("LF in a value", &[("x-note", "a\nGET /second HTTP/1.1")]),
        (
            "header name with a colon",
            &[("x-a:authorization", "Bearer forged")],
        ),
        (
            "Transfer-Encoding with Content-Length",
            &[("transfer-encoding", "chunked"), ("content-length", "4")],
        ),
    ];
    for (what, headers) in cases {
        // Only an escape if the server answered; the test additionally
        // checks that no forged header or second request arrived.
        t.must_fail(what, raw::get(false, &authority, "/smuggle", headers));
    }
    t.must_fail(
        "request line splitting in the path",
        raw::get(
            false,
            &authority,
            "/a HTTP/1.1\r\nauthorization: Bearer forged\r\n\r\nGET /second",
            &[],
        ),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
