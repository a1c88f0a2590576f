//! Network attacks: raw sockets, UDP, DNS, and HTTP to hosts, ports and
//! address spellings that were not granted, redirects, authority confusion,
//! header smuggling. Every listener the task must not reach records
//! connections, and the test checks that it saw none.

use std::net::{TcpListener, UdpSocket};

use capstan_tests::TestEnv;
use capstan_tests::httpd::{Reply, Server};

use super::{Attack, assert_all_denied, outcome};

/// A TCP listener that must never see a connection.
struct Tripwire(TcpListener);

impl Tripwire {
    fn new() -> Tripwire {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Tripwire(l)
    }
    fn addr(&self) -> String {
        self.0.local_addr().unwrap().to_string()
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("the tripwire listener saw a connection: {other:?}"),
        }
    }
}

fn grant(urls: &[String]) -> String {
    format!(
        "      grants:\n        http: [{}]",
        urls.iter()
            .map(|u| format!("\"{u}\""))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

#[tokio::test]
async fn raw_tcp_is_denied_and_logged() {
    let env = TestEnv::new();
    let wire = Tripwire::new();
    let run = Attack::new("net_raw_tcp").arg(wire.addr()).run(&env).await;
    assert_all_denied(&run, 7);
    wire.assert_untouched();
    assert!(
        run.task_log("attack")
            .iter()
            .any(|l| l.starts_with("denied: network tcp")),
        "{}",
        run.log_text()
    );
}

#[tokio::test]
async fn udp_is_denied() {
    let env = TestEnv::new();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let run = Attack::new("net_udp")
        .arg(sock.local_addr().unwrap().to_string())
        .run(&env)
        .await;
    assert_all_denied(&run, 8);
    let mut buf = [0u8; 64];
    assert!(sock.recv_from(&mut buf).is_err(), "a datagram arrived");
}

#[tokio::test]
async fn name_lookups_are_denied() {
    let env = TestEnv::new();
    let run = Attack::new("net_dns").arg("c2VjcmV0").run(&env).await;
    assert_all_denied(&run, 4);
}

#[tokio::test]
async fn http_to_a_host_not_granted_is_denied_before_connecting() {
    let env = TestEnv::new();
    let wire = Tripwire::new();
    let run = Attack::new("net_ungranted_host")
        .arg(format!("http://{}", wire.addr()))
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    wire.assert_untouched();
    assert!(
        outcome(&run).contains("denied the request"),
        "{}",
        outcome(&run)
    );
}

#[tokio::test]
async fn a_granted_host_on_another_port_or_scheme_is_denied() {
    let env = TestEnv::new();
    let server = Server::start(|_| Reply::ok("granted"));
    let wire = Tripwire::new();
    let run = Attack::new("net_other_port")
        .arg(format!("{}|{}", server.port, wire.port()))
        .extra(&grant(&[server.url()]))
        .run(&env)
        .await;
    assert_all_denied(&run, 5);
    assert!(
        outcome(&run).contains("allowed, status 200"),
        "{}",
        outcome(&run)
    );
    wire.assert_untouched();
    assert_eq!(server.requests().len(), 1, "only the granted request");
}

#[tokio::test]
async fn an_address_literal_of_a_granted_name_is_denied() {
    let env = TestEnv::new();
    let server = Server::start(|_| Reply::ok("granted"));
    let granted = format!("http://localhost:{}", server.port);
    let run = Attack::new("net_ip_literal")
        .arg(server.port.to_string())
        .extra(&grant(&[granted]))
        .run(&env)
        .await;
    assert_all_denied(&run, 9);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[tokio::test]
async fn redirects_to_a_host_not_granted_are_not_followed() {
    let env = TestEnv::new();
    let wire = Tripwire::new();
    let target = format!("http://{}/steal", wire.addr());
    let server = Server::start(move |_| Reply {
        status: "302 Found",
        headers: vec![format!("location: {target}")],
        body: String::new(),
    });
    let run = Attack::new("net_redirect")
        .arg(server.url())
        .extra(&grant(&[server.url()]))
        .run(&env)
        .await;
    assert_all_denied(&run, 2);
    wire.assert_untouched();
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn authority_confusion_and_host_headers_do_not_redirect_requests() {
    let env = TestEnv::new();
    let server = Server::start(|_| Reply::ok("granted"));
    let wire = Tripwire::new();
    let run = Attack::new("net_host_tricks")
        .arg(format!("{}|{}", server.port, wire.port()))
        .extra(&grant(&[format!("http://localhost:{}", server.port)]))
        .run(&env)
        .await;
    assert_all_denied(&run, 17);
    wire.assert_untouched();
    // Whatever reached the granted server said Host: localhost:P.
    for head in server.requests() {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("evil.example"), "{head}");
    }
}

#[tokio::test]
async fn smuggled_headers_never_reach_the_server() {
    let env = TestEnv::new();
    let server = Server::start(|_| Reply::ok("granted"));
    capstan::caps::secrets::LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("api-token", b"real-token-value")
        .unwrap();
    let extra = format!(
        "      grants:\n        http:\n          - {{ url: \"{}\", secret: api-token, auth: bearer }}",
        server.url()
    );
    let run = Attack::new("net_header_smuggle")
        .arg(server.url())
        .extra(&extra)
        .run(&env)
        .await;
    let o = outcome(&run);
    eprintln!("{o}");
    for head in server.requests() {
        let lower = head.to_ascii_lowercase();
        assert!(!lower.contains("forged"), "{head}");
        assert!(!lower.contains("/second"), "{head}");
        assert!(!lower.contains("proxy-authorization"), "{head}");
    }
    assert_all_denied(&run, 7);
}
