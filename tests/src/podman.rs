//! A real container engine for tests: Debian's podman (runc), serving the
//! Docker Engine API on a socket in a temp dir (`podman system service`),
//! with a test image built from Debian packages (mmdebstrap: busybox on
//! bookworm; no registry is needed). `scripts/test-deps.sh` installs
//! podman, runc and mmdebstrap.
//!
//! One service per test binary, started on first use and killed when the
//! process exits (its parent-death signal); it exports
//! `CAPSTAN_CONTAINER_HOST` so the scheduler in the same process finds it.
//! The image is built once per machine (kept in podman's store).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The test image: busybox on Debian bookworm.
pub const IMAGE: &str = "localhost/capstan-busybox:bookworm";
/// The kaniko stand-in (tests/fixtures/kaniko-standin): no registry is
/// reachable to pull the real executor.
pub const KANIKO: &str = "localhost/capstan-kaniko-standin:test";
/// Debian's Go (golang-go, busybox, ca-certificates on bookworm): the image
/// examples/go-service names (its run-local.sh builds the same one).
pub const GOLANG: &str = "localhost/capstan-golang:bookworm";

pub struct Podman {
    pub socket: PathBuf,
    /// Its `containers.conf` (runc; ulimits this VM accepts).
    pub conf: PathBuf,
    /// `127.0.0.1:PORT`, a registry address the service pulls from over
    /// plain HTTP (its registries.conf says so): a test starts its own
    /// registry there ([`crate::oci::OciServer::start_at`]).
    pub registry: String,
}

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "the container tests need `{tool}`: run scripts/test-deps.sh (apt-get install podman runc mmdebstrap)"
    );
}

fn podman(conf: &PathBuf) -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", conf).arg("--runtime").arg("runc");
    c
}

/// The engine for this test process.
pub fn podman_engine() -> &'static Podman {
    static P: OnceLock<Podman> = OnceLock::new();
    P.get_or_init(start)
}

fn start() -> Podman {
    for tool in ["podman", "runc", "mmdebstrap"] {
        need(tool);
    }
    let dir = tempfile::Builder::new()
        .prefix("capstan-podman-")
        .tempdir()
        .expect("temp dir")
        .keep();
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    ensure_image(&conf, &dir);
    build_kaniko_standin(&conf);
    // Below the ephemeral range (32768+), so no port-0 bind in the
    // meantime takes it before the test's registry does.
    let registry = (0..200)
        .map(|_| 20000 + fastrand::u16(..10000))
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .map(|p| format!("127.0.0.1:{p}"))
        .expect("a free port below 30000");
    let registries = dir.join("registries.conf");
    std::fs::write(
        &registries,
        format!("[[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"),
    )
    .unwrap();
    let socket = dir.join("podman.sock");
    let (s, c) = (socket.clone(), conf.clone());
    // A thread that lives as long as the process owns the service: the
    // parent-death signal fires when the spawning thread ends.
    let (tx, rx) = std::sync::mpsc::channel();
    #[allow(unsafe_code)]
    std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = podman(&c);
        cmd.env("CONTAINERS_REGISTRIES_CONF", &registries)
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", s.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn();
        let ok = child.is_ok();
        tx.send(child.map(|_| ()).map_err(|e| e.to_string()))
            .unwrap();
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    rx.recv()
        .unwrap()
        .unwrap_or_else(|e| panic!("starting `podman system service`: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        assert!(
            Instant::now() < deadline,
            "podman system service did not create {} in 30 s",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: set once, before any scheduler in this process reads it: the
    // container tests run one at a time and call this first; no other
    // thread reads the environment meanwhile.
    #[allow(unsafe_code)]
    unsafe {
        std::env::set_var(
            "CAPSTAN_CONTAINER_HOST",
            format!("unix://{}", socket.display()),
        )
    };
    Podman {
        socket,
        conf,
        registry,
    }
}

/// Build and import the test image unless podman's store has it.
fn ensure_image(conf: &PathBuf, dir: &std::path::Path) {
    debian_image(conf, dir, IMAGE, "busybox");
}

/// Build `name` from Debian bookworm's essential packages and `include`
/// (mmdebstrap, then `podman import`) unless podman's store has it.
fn debian_image(conf: &PathBuf, dir: &std::path::Path, name: &str, include: &str) {
    let exists = podman(conf)
        .args(["image", "exists", name])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return;
    }
    let tar = dir.join("rootfs.tar");
    let out = Command::new("mmdebstrap")
        .args(["--variant=essential", "--format=tar", "bookworm"])
        .arg(format!("--include={include}"))
        .arg(&tar)
        .output()
        .expect("mmdebstrap");
    assert!(
        out.status.success(),
        "building {name} with mmdebstrap failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(conf)
        .args(["import", "-q"])
        .arg(&tar)
        .arg(name)
        .output()
        .expect("podman import");
    assert!(
        out.status.success(),
        "podman import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&tar);
}

/// The test images (built if podman's store lacks them) and the image
/// `name` imported from a root file system `tar` (with `entrypoint`), saved
/// as docker archives in `dir` for a node's containerd: their paths.
pub fn save_images(
    dir: &std::path::Path,
    extra: &[(&str, &std::path::Path, &str)],
) -> Vec<PathBuf> {
    need("podman");
    need("mmdebstrap");
    let conf = dir.join("containers.conf");
    std::fs::write(
        &conf,
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n[engine]\nruntime = \"runc\"\n",
    )
    .unwrap();
    ensure_image(&conf, dir);
    debian_image(&conf, dir, GOLANG, "busybox,golang-go,ca-certificates");
    build_kaniko_standin(&conf);
    for (name, tar, entrypoint) in extra {
        let exists = podman(&conf)
            .args(["image", "exists", name])
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            continue;
        }
        let out = podman(&conf)
            .args(["import", "-q", "--change"])
            .arg(format!("ENTRYPOINT [\"{entrypoint}\"]"))
            .arg(tar)
            .arg(name)
            .output()
            .expect("podman import");
        assert!(
            out.status.success(),
            "podman import {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut saved = Vec::new();
    for (i, name) in [IMAGE, KANIKO, GOLANG]
        .into_iter()
        .chain(extra.iter().map(|e| e.0))
        .enumerate()
    {
        let path = dir.join(format!("image-{i}.tar"));
        let out = podman(&conf)
            .args(["save", "-q", "--format", "docker-archive", "-o"])
            .arg(&path)
            .arg(name)
            .output()
            .expect("podman save");
        assert!(
            out.status.success(),
            "podman save {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        saved.push(path);
    }
    saved
}

/// The kaniko stand-in, from the test image (COPY only; ~1 s, cached by
/// podman's build cache).
fn build_kaniko_standin(conf: &PathBuf) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/kaniko-standin");
    let ctx = tempfile::tempdir().unwrap();
    let dir = ctx.path();
    std::fs::create_dir_all(dir.join("busybox")).unwrap();
    std::fs::create_dir_all(dir.join("kaniko")).unwrap();
    std::os::unix::fs::symlink("/bin/busybox", dir.join("busybox/sh")).unwrap();
    for f in ["Containerfile", "kaniko/executor"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let out = podman(conf)
        .args(["build", "-q", "--pull=never", "-t", KANIKO])
        .arg(dir)
        .output()
        .expect("podman build");
    assert!(
        out.status.success(),
        "building the kaniko stand-in: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Podman {
    /// The podman CLI on this service's store and configuration.
    pub fn command(&self) -> Command {
        podman(&self.conf)
    }

    /// Containers Capstan made that still exist (should be none after a
    /// task).
    pub fn leftovers(&self) -> Vec<String> {
        let out = podman(&self.conf)
            .args(["ps", "-a", "-q", "--filter", "label=dev.capstan.task"])
            .output()
            .expect("podman ps");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}
