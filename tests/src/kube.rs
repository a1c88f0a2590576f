//! A real Kubernetes API server for tests: Debian's etcd and a
//! kube-apiserver v1.20.2 built from Debian's `kubernetes` source package
//! (`scripts/kube-apiserver.sh` builds it once per machine and caches it),
//! both on 127.0.0.1 with temp dirs, token auth, RBAC. Started per test,
//! stopped on drop. There is no kubelet and no controller-manager: Pods stay
//! Pending unless a test patches their status, and cascading deletes do not
//! complete.
//!
//! A test that needs it and cannot start it fails with the reason (the
//! build log, or the server's log).

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The bearer token of the cluster admin (`system:masters`).
pub const ADMIN_TOKEN: &str = "capstan-admin-token";

/// Extra users known to the token file: `(token, user, groups)`.
pub const USERS: &[(&str, &str, &str)] = &[
    ("alice-token", "alice", "developers"),
    ("bob-token", "bob", "releasers"),
    ("mallory-token", "mallory", "outsiders"),
];

pub struct KubeApi {
    etcd: Child,
    apiserver: Child,
    pub dir: tempfile::TempDir,
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// PEM of the CA that signed the serving certificate.
    pub ca_pem: String,
    /// A kubeconfig for the admin (`KUBECONFIG=…`).
    pub kubeconfig: PathBuf,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

pub(crate) fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kube-apiserver binary: built (or found in the cache) once per test
/// process by `scripts/kube-apiserver.sh`.
pub fn apiserver_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube-apiserver.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stderr(Stdio::inherit())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
        assert!(
            out.status.success(),
            "no kube-apiserver: {} failed (see its output above); the Kubernetes-mode tests \
             need it (it builds v1.20.2 from Debian's kubernetes source package)",
            script.display()
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
    .clone()
}

/// A CA and a serving certificate for 127.0.0.1 (openssl), plus the
/// service-account signing key pair.
pub(crate) fn make_pki(d: &Path) {
    let openssl = |args: &[&str]| {
        sh(Command::new("openssl").args(args).current_dir(d));
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=capstan-test-ca",
    ]);
    std::fs::write(
        d.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
    openssl(&["genrsa", "-out", "sa.key", "2048"]);
    openssl(&["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

fn wait_port(port: u16, child: &mut Child, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "{what} exited ({st}) before listening; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not listen on 127.0.0.1:{port} within 60 s; log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

impl KubeApi {
    /// Start etcd and kube-apiserver; returns once `/readyz` answers ok.
    pub fn start() -> KubeApi {
        Self::start_with(|_| Vec::new())
    }

    /// As [`KubeApi::start`], with more apiserver flags: `extra` gets the
    /// directory holding the test CA (`ca.crt`, `ca.key`) before the
    /// server starts, and may write files there for its flags.
    pub fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> KubeApi {
        let bin = apiserver_binary();
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "etcd is not installed; scripts/kube-apiserver.sh installs it (apt-get install etcd-server)"
        );
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_pki(d);
        let extra = extra(d);
        let mut tokens = format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n");
        for (i, (token, user, group)) in USERS.iter().enumerate() {
            tokens.push_str(&format!("{token},{user},uid-{i},\"{group}\"\n"));
        }
        std::fs::write(d.join("tokens.csv"), tokens).unwrap();

        let (client, peer) = (free_port(), free_port());
        let etcd_log = d.join("etcd.log");
        let mut etcd = Command::new("/usr/bin/etcd")
            .args(["--name", "capstan-test", "--data-dir"])
            .arg(d.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{client}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!(
                "--initial-cluster=capstan-test=http://127.0.0.1:{peer}"
            ))
            .arg("--unsafe-no-fsync")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&etcd_log).unwrap())
            .stderr(std::fs::File::create(d.join("etcd.err")).unwrap())
            .spawn()
            .expect("starting etcd");
        wait_port(client, &mut etcd, "etcd", &d.join("etcd.err"));

        let port = free_port();
        let log = d.join("apiserver.log");
        let mut apiserver = Command::new(&bin)
            .arg(format!("--etcd-servers=http://127.0.0.1:{client}"))
            .args(["--bind-address=127.0.0.1", "--insecure-port=0"])
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", d.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                d.join("server.crt").display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                d.join("server.key").display()
            ))
            .arg(format!(
                "--token-auth-file={}",
                d.join("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                d.join("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                d.join("sa.key").display()
            ))
            .arg("--api-audiences=https://kubernetes.default.svc")
            .arg("--service-cluster-ip-range=10.0.0.0/24")
            .arg("--disable-admission-plugins=ServiceAccount")
            .args(&extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("apiserver.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        wait_port(port, &mut apiserver, "kube-apiserver", &log);
        let ca_pem = std::fs::read_to_string(d.join("ca.crt")).unwrap();
        let url = format!("https://127.0.0.1:{port}");
        let kubeconfig = d.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url, &ca_pem, ADMIN_TOKEN);
        let api = KubeApi {
            etcd,
            apiserver,
            dir,
            url,
            ca_pem,
            kubeconfig,
        };
        api.wait_ready(&log);
        api
    }

    fn wait_ready(&self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            // `/readyz` goes ok once the RBAC bootstrap roles exist.
            let out = Command::new("curl")
                .args(["-sS", "--max-time", "5", "--cacert"])
                .arg(self.dir.path().join("ca.crt"))
                .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
                .arg(format!("{}/readyz", self.url))
                .output();
            if let Ok(o) = out {
                last = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                if last.trim() == "ok" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "kube-apiserver did not become ready within 60 s (last answer: {last}); log tail:\n{}",
            tail(log)
        );
    }

    /// A kubeconfig for another user of [`USERS`] (by token).
    pub fn kubeconfig_for(&self, token: &str) -> PathBuf {
        let p = self.dir.path().join(format!("kubeconfig-{token}"));
        write_kubeconfig(&p, &self.url, &self.ca_pem, token);
        p
    }

    /// Run `kubectl` (Debian's kubernetes-client) as the admin.
    pub fn kubectl(&self, args: &[&str]) -> std::process::Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(args)
            .output()
            .expect("running kubectl (apt-get install kubernetes-client)")
    }

    /// `kubectl apply -f -` of `yaml`, asserting success.
    pub fn apply(&self, yaml: &str) {
        let mut child = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl (apt-get install kubernetes-client)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A raw API request as the admin (curl): `(HTTP status, body)`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> (u16, String) {
        self.requester().call(method, path, body, content_type)
    }

    /// Admin requests that can move to another thread.
    pub fn requester(&self) -> Requester {
        Requester {
            url: self.url.clone(),
            ca: self.dir.path().join("ca.crt"),
        }
    }

    /// Play the deployment controller and kubelet for `deployment` in
    /// `ns` until `stop` is set: whenever its generation is ahead of
    /// `status.observedGeneration`, report every replica updated and
    /// available.
    pub fn complete_rollouts(
        &self,
        ns: &str,
        deployment: &str,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> std::thread::JoinHandle<u32> {
        let path = format!("/apis/apps/v1/namespaces/{ns}/deployments/{deployment}");
        let api = self.requester();
        std::thread::spawn(move || {
            let mut done = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (code, body) = api.call("GET", &path, None, "application/json");
                if code == 200 {
                    let d: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
                    if d["status"]["observedGeneration"].as_i64().unwrap_or(0) < generation {
                        let n = d["spec"]["replicas"].as_i64().unwrap_or(1);
                        let patch = serde_json::json!({"status": {"observedGeneration": generation,
                            "replicas": n, "updatedReplicas": n, "readyReplicas": n, "availableReplicas": n}});
                        let (c, b) = api.call(
                            "PATCH",
                            &format!("{path}/status"),
                            Some(&patch.to_string()),
                            "application/merge-patch+json",
                        );
                        assert_eq!(c, 200, "patching the deployment status: {b}");
                        done += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            done
        })
    }

    /// The server's log tail (for failure messages).
    pub fn log_tail(&self) -> String {
        tail(&self.dir.path().join("apiserver.log"))
    }
}

/// Admin requests from another thread.
pub struct Requester {
    url: String,
    ca: PathBuf,
}

impl Requester {
    /// `(HTTP status, body)`.
    pub fn call(&self, method: &str, path: &str, body: Option<&str>, ct: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "--cacert",
        ])
        .arg(&self.ca)
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        .args(["-H", &format!("Content-Type: {ct}")])
        .args(["-X", method]);
        if let Some(b) = body {
            cmd.args(["--data-binary", b]);
        }
        let Ok(out) = cmd.arg(format!("{}{path}", self.url)).output() else {
            return (0, String::new());
        };
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = out.trim_end().rsplit_once('\n').unwrap_or(("", out.trim()));
        (code.parse().unwrap_or(0), body.to_string())
    }
}

pub(crate) fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn write_kubeconfig(path: &Path, url: &str, ca_pem: &str, token: &str) {
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {url}\n    \
             certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: u\n    namespace: default\n\
             current-context: test\n"
        ),
    )
    .unwrap();
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// A `capstan controller` child process (killed on drop), logging to
/// `STATE/controller-IDENTITY.log`.
pub struct Controller {
    pub child: Child,
    log: PathBuf,
}

impl Controller {
    pub fn start(
        cli: &str,
        kubeconfig: &Path,
        state: &Path,
        ns: &str,
        identity: &str,
        extra: &[&str],
    ) -> Controller {
        let log = state.join(format!("controller-{identity}.log"));
        let child = Command::new(cli)
            .env("KUBECONFIG", kubeconfig)
            .env("CAPSTAN_LOG", "info,capstan=debug,kube=warn")
            .arg("--state-dir")
            .arg(state)
            .args(["controller", "--identity", identity])
            // An empty `ns`: every namespace.
            .args(if ns.is_empty() {
                vec![]
            } else {
                vec!["--namespace", ns, "--lease-namespace", ns]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting capstan controller");
        Controller { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The address of the API the controller serves (`--listen
    /// 127.0.0.1:0`), from its log.
    pub fn api_url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(rest) = self.log().split("API listening on ").nth(1) {
                return rest.split_whitespace().next().unwrap().to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no API address in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}
