//! Real network middle-boxes for tests, from Debian's packages
//! (`scripts/test-deps.sh` installs them): `stunnel4` terminating TLS with a
//! certificate from a private CA (made with the `openssl` CLI) in front of a
//! plain-HTTP server, and `tinyproxy` as an HTTP proxy (plain requests and
//! `CONNECT`) that logs what it carried. Each runs in the foreground on
//! 127.0.0.1 with a temp dir, and is killed on drop.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e} (run scripts/test-deps.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait until something listens on `port`, or fail naming `what` and its log.
fn wait_listening(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        let exited = child.try_wait().ok().flatten();
        if exited.is_some() || Instant::now() > deadline {
            panic!(
                "{what} did not start ({exited:?}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A private CA and a server certificate it signed for IP 127.0.0.1.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM), what a client must trust.
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        run(Command::new("openssl")
            .args(["req", "-x509", "-nodes", "-days", "2"])
            .args(ec)
            .args(["-subj", "/CN=Capstan Test CA"])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
            .args(["-keyout", "ca.key", "-out", "ca.pem"])
            .current_dir(d));
        run(Command::new("openssl")
            .args(["req", "-nodes"])
            .args(ec)
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-keyout",
                "srv.key",
                "-out",
                "srv.csr",
            ])
            .current_dir(d));
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-in", "srv.csr"])
            .args(["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"])
            .args(["-extfile", "ext.cnf", "-out", "srv.pem"])
            .current_dir(d));
        let ca_pem = std::fs::read_to_string(d.join("ca.pem")).unwrap();
        Pki { dir, ca_pem }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

/// `stunnel4` serving TLS on `port`, forwarding to a plain server.
pub struct TlsFront {
    child: Child,
    pub port: u16,
    pub pki: Pki,
}

impl TlsFront {
    /// TLS on a free port in front of `127.0.0.1:backend`.
    pub fn start(backend: u16) -> TlsFront {
        let pki = Pki::new();
        let d = pki.dir.path();
        let port = free_port();
        let log = d.join("stunnel.log");
        let conf = format!(
            "foreground = yes\npid =\noutput = {log}\ndebug = 5\n\
             [git]\naccept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{backend}\n\
             cert = {d}/srv.pem\nkey = {d}/srv.key\n",
            log = log.display(),
            d = d.display()
        );
        std::fs::write(d.join("stunnel.conf"), conf).unwrap();
        let mut child = Command::new("stunnel4")
            .arg(d.join("stunnel.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("stunnel4 is not installed; run scripts/test-deps.sh");
        wait_listening(port, &mut child, "stunnel4", &log);
        TlsFront { child, port, pki }
    }

    pub fn origin(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tinyproxy` on a free port, logging each request it carries.
pub struct Proxy {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Proxy {
    pub fn start() -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        // No ConnectPort line: CONNECT to any port (the test servers' ports
        // are random). Listen and Allow: loopback only.
        let conf = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\n\
             LogFile \"{}\"\nLogLevel Connect\nMaxClients 20\nDisableViaHeader Yes\n",
            log.display()
        );
        std::fs::write(dir.path().join("tinyproxy.conf"), conf).unwrap();
        let mut child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(dir.path().join("tinyproxy.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy is not installed; run scripts/test-deps.sh");
        wait_listening(port, &mut child, "tinyproxy", &log);
        Proxy { child, dir, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the proxy logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tinyproxy.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
