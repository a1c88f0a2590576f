//! A real single-node Kubernetes for tests, so Pods really run: the test
//! apiserver ([`KubeApi`]) plus kubelet, kube-scheduler and
//! kube-controller-manager (its Deployment and ReplicaSet controllers)
//! built from the same Debian source tree (`scripts/kube-apiserver.sh
//! --node`), Debian's containerd with runc, and a bridge CNI network of its
//! own whose gateway ([`GATEWAY`], on the host) Pods can reach. Images come
//! without a registry: the pause image is compiled from the tree's
//! `pause.c`, the test images are built from Debian packages, and all are
//! imported into containerd; a test's own registry on the gateway can be
//! trusted for pulls ([`KubeNode::trust_registry`]). Everything lives in a
//! temp dir on 127.0.0.1 and the bridge, and is torn down on drop (Pods,
//! processes, shims, mounts, the bridge).
//!
//! The PV controller is not run: a test's PersistentVolumeClaims are
//! pre-bound ([`KubeNode::claim`]), which is what it would do. Start one
//! node per test process (they share containerd's cgroups and the bridge
//! name).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::kube::{KubeApi, free_port, sh, tail};

const VERSION: &str = "v1.20.2";
const BRIDGE: &str = "cni-capstan0";
const PAUSE: &str = "k8s.gcr.io/pause:3.2";
/// The bridge's address on the host: Pods reach the host here.
pub const GATEWAY: &str = "10.245.0.1";

pub struct KubeNode {
    /// The cluster's API (admin kubeconfig, kubectl).
    pub api: KubeApi,
    dir: tempfile::TempDir,
    containerd: Option<Child>,
    kubelet: Option<Child>,
    scheduler: Option<Child>,
    controllers: Option<Child>,
}

/// The directory with the cached binaries (built once per machine).
fn binaries() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kube-apiserver.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--node")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "no Kubernetes node binaries: {} --node failed (see its output above); the tests on a \
         real node need kubelet and kube-scheduler built from Debian's kubernetes source package",
        script.display()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn openssl(d: &Path, args: &[&str]) {
    sh(Command::new("openssl").args(args).current_dir(d));
}

/// A certificate signed by the test CA in `d`: `NAME.crt`, `NAME.key`.
fn signed(d: &Path, name: &str, subject: &str, ext: &str) {
    std::fs::write(d.join(format!("{name}.ext")), ext).unwrap();
    let (key, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        d,
        &[
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject,
        ],
    );
    let ext_file = format!("{name}.ext");
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}

fn spawn(cmd: &mut Command, log: &Path) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

impl KubeNode {
    /// Start the cluster and wait for the node to be Ready (~15 s warm).
    pub fn start() -> KubeNode {
        let bins = binaries();
        for tool in ["containerd", "ctr", "runc", "gcc"] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "the node tests need `{tool}`: scripts/kube-apiserver.sh --node installs it"
            );
        }
        let mut pki = PathBuf::new();
        let api = KubeApi::start_with(|d| {
            pki = d.to_path_buf();
            signed(
                d,
                "kubelet",
                "/CN=127.0.0.1",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            );
            signed(
                d,
                "kubelet-client",
                "/CN=kube-apiserver-kubelet-client/O=system:masters",
                "extendedKeyUsage=clientAuth\n",
            );
            let p = |f: &str| d.join(f).display().to_string();
            vec![
                format!("--kubelet-client-certificate={}", p("kubelet-client.crt")),
                format!("--kubelet-client-key={}", p("kubelet-client.key")),
                format!("--kubelet-certificate-authority={}", p("ca.crt")),
                "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            ]
        });
        let dir = tempfile::Builder::new()
            .prefix("capstan-node-")
            .tempdir()
            .unwrap();
        let mut node = KubeNode {
            api,
            dir,
            containerd: None,
            kubelet: None,
            scheduler: None,
            controllers: None,
        };
        node.start_containerd();
        node.import_images(&bins);
        node.start_kubelet(&bins, &pki);
        let mut sched = Command::new(bins.join(format!("kube-scheduler-{VERSION}")));
        sched
            .arg(format!("--kubeconfig={}", node.api.kubeconfig.display()))
            .args([
                "--leader-elect=false",
                "--port=0",
                "--bind-address=127.0.0.1",
            ])
            .arg(format!("--secure-port={}", free_port()));
        node.scheduler = Some(spawn(&mut sched, &node.dir.path().join("scheduler.log")));
        let mut cm = Command::new(bins.join(format!("kube-controller-manager-{VERSION}")));
        cm.arg(format!("--kubeconfig={}", node.api.kubeconfig.display()))
            .args([
                "--controllers=deployment,replicaset",
                "--leader-elect=false",
                "--port=0",
                "--bind-address=127.0.0.1",
                "--use-service-account-credentials=false",
            ])
            .arg(format!("--secure-port={}", free_port()));
        node.controllers = Some(spawn(&mut cm, &node.dir.path().join("controllers.log")));
        node.wait_ready();
        node
    }

    fn d(&self) -> &Path {
        self.dir.path()
    }

    fn socket(&self) -> PathBuf {
        self.d().join("containerd.sock")
    }

    fn start_containerd(&mut self) {
        let d = self.d().to_path_buf();
        // The bridge, with the gateway address, before any Pod: a test's
        // servers listen there (the CNI plugin finds and keeps it).
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        sh(Command::new("ip").args(["link", "add", BRIDGE, "type", "bridge"]));
        sh(Command::new("ip").args(["addr", "add", &format!("{GATEWAY}/24"), "dev", BRIDGE]));
        sh(Command::new("ip").args(["link", "set", BRIDGE, "up"]));
        std::fs::create_dir_all(d.join("cni/net.d")).unwrap();
        std::fs::write(
            d.join("cni/net.d/10-capstan.conflist"),
            serde_json::json!({
                "cniVersion": "0.4.0",
                "name": "capstan-test",
                "plugins": [
                    { "type": "bridge", "bridge": BRIDGE, "isGateway": true, "ipMasq": false,
                      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.245.0.0/24" }]],
                                "dataDir": d.join("cni/ipam") } },
                    { "type": "loopback" }
                ]
            })
            .to_string(),
        )
        .unwrap();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             [grpc]\n  address = \"{sock}\"\n\
             [{cri}]\n  sandbox_image = \"{PAUSE}\"\n  stream_server_address = \"127.0.0.1\"\n  \
             disable_apparmor = true\n  restrict_oom_score_adj = true\n  netns_mounts_under_state_dir = true\n\
             [{cri}.containerd]\n  snapshotter = \"overlayfs\"\n  default_runtime_name = \"runc\"\n\
             [{cri}.containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n\
             [{cri}.containerd.runtimes.runc.options]\n  SystemdCgroup = false\n\
             [{cri}.cni]\n  bin_dir = \"/usr/lib/cni\"\n  conf_dir = \"{cni}\"\n\
             [{cri}.registry]\n  config_path = \"{certs}\"\n",
            root = d.join("containerd/root").display(),
            state = d.join("containerd/state").display(),
            sock = self.socket().display(),
            cni = d.join("cni/net.d").display(),
            certs = d.join("certs.d").display(),
        );
        std::fs::write(d.join("containerd.toml"), config).unwrap();
        let mut cmd = Command::new("containerd");
        cmd.arg("--config").arg(d.join("containerd.toml"));
        let mut child = spawn(&mut cmd, &d.join("containerd.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket().exists() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!(
                    "containerd exited ({st}):\n{}",
                    tail(&d.join("containerd.err"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not listen in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.containerd = Some(child);
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("--address").arg(self.socket()).args(["-n", "k8s.io"]);
        c
    }

    /// The pause image (compiled from the tree's pause.c) and the test
    /// image, into containerd.
    fn import_images(&self, bins: &Path) {
        let d = self.d();
        let rootfs = d.join("pause-rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        sh(Command::new("gcc")
            .args(["-Os", "-static", "-o"])
            .arg(rootfs.join("pause"))
            .arg(bins.join(format!("pause-{VERSION}.c"))));
        sh(Command::new("tar")
            .arg("-cf")
            .arg(d.join("pause.tar"))
            .arg("-C")
            .arg(&rootfs)
            .arg("pause"));
        let pause_tar = d.join("pause.tar");
        let saved = crate::podman::save_images(d, &[(PAUSE, &pause_tar, "/pause")]);
        for archive in &saved {
            let mut c = self.ctr();
            c.args(["images", "import"]).arg(archive);
            sh(&mut c);
        }
        let listed = sh(self.ctr().args(["images", "ls", "-q"]));
        for name in [
            PAUSE,
            crate::podman::IMAGE,
            crate::podman::KANIKO,
            crate::podman::GOLANG,
        ] {
            assert!(
                listed.lines().any(|l| l == name),
                "{name} is not in the node's containerd after the import:\n{listed}"
            );
        }
    }

    fn start_kubelet(&mut self, bins: &Path, pki: &Path) {
        let d = self.d().to_path_buf();
        let p = |f: &str| pki.join(f).display().to_string();
        let sock = format!("unix://{}", self.socket().display());
        let mut cmd = Command::new(bins.join(format!("kubelet-{VERSION}")));
        cmd.arg(format!("--kubeconfig={}", self.api.kubeconfig.display()))
            .args(["--container-runtime=remote", "--runtime-request-timeout=2m"])
            .arg(format!("--container-runtime-endpoint={sock}"))
            .arg(format!("--containerd={}", self.socket().display()))
            .arg(format!("--root-dir={}", d.join("kubelet").display()))
            .arg(format!("--cert-dir={}", d.join("kubelet-pki").display()))
            .arg(format!("--volume-plugin-dir={}", d.join("vp").display()))
            .args(["--hostname-override=127.0.0.1", "--address=127.0.0.1"])
            .arg(format!("--port={}", free_port()))
            .args(["--read-only-port=0", "--healthz-port=0"])
            .args(["--anonymous-auth=false", "--authorization-mode=AlwaysAllow"])
            .arg(format!("--client-ca-file={}", p("ca.crt")))
            .arg(format!("--tls-cert-file={}", p("kubelet.crt")))
            .arg(format!("--tls-private-key-file={}", p("kubelet.key")))
            .args(["--fail-swap-on=false", "--cgroups-per-qos=false"])
            .args(["--enforce-node-allocatable=", "--cgroup-driver=cgroupfs"])
            .arg("--make-iptables-util-chains=false")
            .args([
                "--image-gc-high-threshold=100",
                "--image-gc-low-threshold=99",
            ])
            .arg("--eviction-hard=memory.available<10Mi,nodefs.available<1%,imagefs.available<1%")
            .arg("--node-status-update-frequency=1s")
            .arg(format!("--pod-infra-container-image={PAUSE}"));
        self.kubelet = Some(spawn(&mut cmd, &d.join("kubelet.log")));
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let out = self
                .api
                .kubectl(&["get", "node", "127.0.0.1", "-o", "json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                let ready = v["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                if ready {
                    // The kubelet registers the node tainted not-ready; the
                    // node lifecycle controller (in the controller-manager,
                    // not run here) lifts it once Ready: do that here.
                    let taints = v["spec"]["taints"].as_array().cloned().unwrap_or_default();
                    if taints
                        .iter()
                        .any(|t| t["key"] == "node.kubernetes.io/not-ready")
                    {
                        self.api.kubectl(&[
                            "taint",
                            "nodes",
                            "127.0.0.1",
                            "node.kubernetes.io/not-ready-",
                        ]);
                        continue;
                    }
                    return;
                }
            }
            let exited = [
                ("kubelet", &mut self.kubelet),
                ("kube-scheduler", &mut self.scheduler),
                ("kube-controller-manager", &mut self.controllers),
            ]
            .into_iter()
            .find_map(|(name, child)| match child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(st))) => Some(format!("{name} exited ({st})")),
                _ => None,
            });
            if let Some(e) = exited {
                panic!("{e}:\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "the node was not Ready in 90 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The tails of the node's logs (for failure messages).
    pub fn logs(&self) -> String {
        let mut s = String::from("--- Pods:\n");
        let out = self.api.kubectl(&["get", "pods", "-A", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for p in v["items"].as_array().into_iter().flatten() {
            s.push_str(&format!(
                "{}/{} node={} status={}\n",
                p["metadata"]["namespace"].as_str().unwrap_or(""),
                p["metadata"]["name"].as_str().unwrap_or(""),
                p["spec"]["nodeName"],
                p["status"]
            ));
        }
        let events = self.api.kubectl(&["get", "events", "-A"]);
        s.push_str(&format!(
            "--- events:\n{}\n",
            String::from_utf8_lossy(&events.stdout)
        ));
        for f in [
            "kubelet.err",
            "scheduler.err",
            "controllers.err",
            "containerd.err",
        ] {
            s.push_str(&format!("--- {f}:\n{}\n", tail(&self.d().join(f))));
        }
        s
    }

    /// A PersistentVolumeClaim `name` in `ns` bound to a hostPath volume
    /// at `path` (bound here, as the PV controller would).
    pub fn claim(&self, ns: &str, name: &str, path: &Path) {
        let pv = format!("{ns}-{name}");
        self.api.apply(&format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: {name}\n  namespace: {ns}\n  \
             annotations: {{pv.kubernetes.io/bind-completed: \"yes\"}}\n\
             spec:\n  accessModes: [ReadWriteMany]\n  resources: {{requests: {{storage: 1Gi}}}}\n  \
             volumeName: {pv}\n  storageClassName: \"\"\n"
        ));
        let out = self.api.kubectl(&[
            "-n",
            ns,
            "get",
            "pvc",
            name,
            "-o",
            "jsonpath={.metadata.uid}",
        ]);
        let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!uid.is_empty(), "no uid for PVC {ns}/{name}");
        self.api.apply(&format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata: {{name: {pv}}}\n\
             spec:\n  capacity: {{storage: 1Gi}}\n  accessModes: [ReadWriteMany]\n  \
             persistentVolumeReclaimPolicy: Retain\n  hostPath: {{path: \"{}\", type: Directory}}\n  \
             claimRef: {{namespace: {ns}, name: {name}, uid: {uid}}}\n",
            path.display()
        ));
        let bound = r#"{"status":{"phase":"Bound"}}"#;
        for path in [
            format!("/api/v1/persistentvolumes/{pv}/status"),
            format!("/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}/status"),
        ] {
            let (code, body) =
                self.api
                    .request("PATCH", &path, Some(bound), "application/merge-patch+json");
            assert_eq!(code, 200, "binding {path}: {body}");
        }
    }

    /// Let containerd pull from the plain-HTTP registry `host` (`IP:PORT`).
    pub fn trust_registry(&self, host: &str) {
        let dir = self.d().join("certs.d").join(host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"http://{host}\"\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            ),
        )
        .unwrap();
    }

    /// The Pods in `ns`, as JSON.
    pub fn pods(&self, ns: &str) -> Vec<serde_json::Value> {
        let out = self.api.kubectl(&["-n", ns, "get", "pods", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["items"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for KubeNode {
    fn drop(&mut self) {
        let _ = self.api.kubectl(&[
            "delete",
            "pods",
            "--all",
            "-A",
            "--grace-period=0",
            "--force",
            "--wait=false",
        ]);
        for child in [
            &mut self.controllers,
            &mut self.scheduler,
            &mut self.kubelet,
        ]
        .into_iter()
        .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Sandboxes and containers outlive the kubelet: their shims are
        // processes of their own.
        let list = |what: &str| -> Vec<String> {
            let mut c = self.ctr();
            c.args([what, "list", "-q"]);
            c.output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        for id in list("tasks") {
            let _ = self
                .ctr()
                .args(["tasks", "kill", "-s", "SIGKILL", &id])
                .output();
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.ctr().args(["tasks", "rm", "-f", &id]).output();
        }
        for id in list("containers") {
            let _ = self.ctr().args(["containers", "rm", &id]).output();
        }
        if let Some(mut c) = self.containerd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The kubelet bind-mounts its root and the Pods' volumes.
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let prefix = self.d().display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(1))
            .filter(|m| m.starts_with(&prefix))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").arg("-l").arg(m).output();
        }
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    }
}

/// `ns` with a ServiceAccount `runner` that may run step Pods there (the
/// `capstan-step` ClusterRole of deploy/steps.yaml, applied once by the
/// caller, bound to it).
pub fn step_namespace(api: &KubeApi, ns: &str) {
    api.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\n\
         apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: runner, namespace: {ns}}}\n"
    ));
    api.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\n\
         metadata: {{name: runner-steps, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: capstan-step}}\n\
         subjects: [{{kind: ServiceAccount, name: runner, namespace: {ns}}}]\n"
    ));
}

/// Wait until `f` holds (or panic with `what` and the node's logs).
pub fn until(node: &KubeNode, secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {secs} s\n{}",
            node.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
