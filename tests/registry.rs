//! The local registry as plugin and pipeline authors use it, through the
//! real CLI: publish, resolve by range, lock, `--locked`, yank, deprecate,
//! pull, immutability, bad artifacts and a corrupted store.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Output;

use capstan::digest::Digest;
use capstan::store::RunStore;
use capstan_tests::components;
use capstan_tests::oci::OciServer;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_capstan-cli");

fn capstan(state: &Path, args: &[&str]) -> Output {
    capstan_tests::cli(BIN, state, args)
}

/// The registry a journey runs against: the local directory (the default)
/// or a real OCI registry (Debian's docker-registry on loopback).
struct Reg {
    url: Option<String>,
    docker_config: Option<PathBuf>,
    server: Option<OciServer>,
}

impl Reg {
    fn local() -> Reg {
        Reg {
            url: None,
            docker_config: None,
            server: None,
        }
    }

    fn oci() -> Reg {
        let server = OciServer::start();
        Reg {
            url: Some(server.url("capstan")),
            docker_config: None,
            server: Some(server),
        }
    }

    fn oci_with_auth() -> Reg {
        let server = OciServer::start_with_auth();
        Reg {
            url: Some(server.url("team/plugins")),
            docker_config: server.docker_config.clone(),
            server: Some(server),
        }
    }

    /// The CLI with `--registry` (and `DOCKER_CONFIG`) set for this registry.
    fn run(&self, state: &Path, args: &[&str]) -> Output {
        let mut env: Vec<(&str, &OsStr)> = vec![];
        if let Some(u) = &self.url {
            env.push(("CAPSTAN_REGISTRY", u.as_ref()));
        }
        if let Some(d) = &self.docker_config {
            env.push(("DOCKER_CONFIG", d.as_os_str()));
        }
        capstan_tests::cli_env(BIN, state, args, &env)
    }
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Two tests running `journey`: on the local directory and on a real OCI
/// registry.
macro_rules! on_both_backends {
    ($local:ident, $oci:ident, $journey:ident) => {
        #[test]
        fn $local() {
            $journey(&Reg::local());
        }

        #[test]
        fn $oci() {
            $journey(&Reg::oci());
        }
    };
}

/// The command exited with `code` and its stderr says `needle`.
fn fails(out: &Output, code: i32, needle: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", stderr(out));
    assert!(stderr(out).contains(needle), "{}", stderr(out));
}

/// The echo component with its embedded manifest's version changed: a real,
/// different component (new digest) of the same plugin.
fn echo_version(dir: &Path, version: &str) -> String {
    let bytes = std::fs::read(components::ECHO).unwrap();
    let from = b"version = \"0.1.0\"";
    let to = format!("version = \"{version}\"");
    assert_eq!(to.len(), from.len(), "keep the section length");
    // The manifest text is in the custom section (and, as the static's
    // bytes, in the data segment too): change every copy.
    let mut patched = bytes.clone();
    let at: Vec<usize> = bytes
        .windows(from.len())
        .enumerate()
        .filter(|(_, w)| *w == from)
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty(), "manifest version in the component");
    for i in at {
        patched[i..i + from.len()].copy_from_slice(to.as_bytes());
    }
    let path = dir.join(format!("echo-{version}.wasm"));
    std::fs::write(&path, patched).unwrap();
    path.display().to_string()
}

const PIPELINE: &str = r#"apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: { name: reg }
spec:
  tasks:
    - { name: a, uses: "echo@0.1", params: [{ name: message, value: hi }] }
"#;

fn digest_used(state: &Path, run_id: &str) -> String {
    RunStore::open(state)
        .unwrap()
        .run(run_id)
        .unwrap()
        .spec
        .plugins["echo@0.1"]
        .clone()
}

fn run_json(reg: &Reg, state: &Path, file: &str, extra: &[&str]) -> (Output, Option<Value>) {
    let mut args = vec!["run", file, "-o", "json"];
    args.extend_from_slice(extra);
    let out = reg.run(state, &args);
    let v = serde_json::from_slice(&out.stdout).ok();
    (out, v)
}

on_both_backends!(
    pipeline_author_locks_and_runs_by_version_local,
    pipeline_author_locks_and_runs_by_version_oci,
    author_journey
);

fn author_journey(reg: &Reg) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let v010 = echo_version(dir.path(), "0.1.0");
    let v011 = echo_version(dir.path(), "0.1.1");
    let d010 = Digest::of(&std::fs::read(&v010).unwrap()).to_string();
    let d011 = Digest::of(&std::fs::read(&v011).unwrap()).to_string();

    let out = ok(&reg.run(&state, &["plugin", "publish", &v010]));
    assert!(out.contains("published echo 0.1.0"), "{out}");
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let file = file.display().to_string();

    // No lock: resolves; --locked refuses.
    let (out, v) = run_json(reg, &state, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        digest_used(&state, v.unwrap()["run_id"].as_str().unwrap()),
        d010
    );
    let (out, _) = run_json(reg, &state, &file, &["--locked"]);
    fails(&out, 2, "run `capstan lock` first");

    // Lock pins 0.1.0; a newer publish does not change a locked run.
    ok(&reg.run(&state, &["lock", &file]));
    let lock = std::fs::read_to_string(dir.path().join("capstan.lock")).unwrap();
    assert!(
        lock.contains(&d010) && lock.contains("reference = \"echo@0.1\""),
        "{lock}"
    );
    ok(&reg.run(&state, &["plugin", "publish", &v011]));
    let (out, v) = run_json(reg, &state, &file, &["--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        digest_used(&state, v.unwrap()["run_id"].as_str().unwrap()),
        d010
    );

    // Re-locking picks the newest; yanking it keeps locked runs working but
    // new resolution falls back.
    ok(&reg.run(&state, &["lock", &file]));
    ok(&reg.run(&state, &["plugin", "yank", "echo@0.1.1"]));
    let (out, v) = run_json(reg, &state, &file, &["--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        digest_used(&state, v.unwrap()["run_id"].as_str().unwrap()),
        d011,
        "yanked, but locked"
    );
    assert!(
        stderr(&out).contains("echo 0.1.1") && stderr(&out).contains("which has been yanked"),
        "a yanked locked version runs with a warning: {}",
        stderr(&out)
    );
    // Re-locking passes over the yanked version, and says so.
    let out = reg.run(&state, &["lock", &file]);
    ok(&out);
    assert!(
        stderr(&out).contains("skipped yanked 0.1.1"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(dir.path().join("capstan.lock")).unwrap();
    let (_, v) = run_json(reg, &state, &file, &[]);
    assert_eq!(
        digest_used(&state, v.unwrap()["run_id"].as_str().unwrap()),
        d010,
        "yanked: not chosen"
    );

    // versions shows both, with the yank; deprecation warns on use.
    let versions: Value = serde_json::from_str(&ok(
        &reg.run(&state, &["plugin", "versions", "echo", "-o", "json"])
    ))
    .unwrap();
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[1]["yanked"], true);
    ok(&reg.run(
        &state,
        &["plugin", "deprecate", "echo@0.1.0", "-m", "use echo 2"],
    ));
    let out = reg.run(&state, &["run", &file]);
    assert!(
        stderr(&out).contains("deprecated: use echo 2"),
        "{}",
        stderr(&out)
    );

    // pull and inspect by reference.
    let pulled = dir.path().join("pulled.wasm");
    ok(&reg.run(
        &state,
        &[
            "plugin",
            "pull",
            "echo@=0.1.0",
            "--out",
            pulled.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        Digest::of(&std::fs::read(&pulled).unwrap()).to_string(),
        d010
    );
    let info: Value = serde_json::from_str(&ok(&reg.run(
        &state,
        &["plugin", "inspect", &format!("echo@{d011}"), "-o", "json"],
    )))
    .unwrap();
    assert_eq!(info["manifest"]["version"], "0.1.1");
}

on_both_backends!(
    publishing_refuses_bad_artifacts_and_keeps_versions_immutable_local,
    publishing_refuses_bad_artifacts_and_keeps_versions_immutable_oci,
    publish_refusals
);

fn publish_refusals(reg: &Reg) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let v010 = echo_version(dir.path(), "0.1.0");
    ok(&reg.run(&state, &["plugin", "publish", &v010]));
    // Same bytes again: a no-op. Different bytes, same version: refused.
    ok(&reg.run(&state, &["plugin", "publish", &v010]));
    let mut other = std::fs::read(&v010).unwrap();
    let n = other.len();
    other[n - 1] ^= 0xff; // the last byte is in a trailing custom section
    let other_path = dir.path().join("other.wasm");
    std::fs::write(&other_path, &other).unwrap();
    let out = reg.run(&state, &["plugin", "publish", other_path.to_str().unwrap()]);
    if out.status.code() == Some(2) && stderr(&out).contains("versions are immutable") {
        // expected
    } else {
        panic!(
            "republish with different bytes: {:?} {}",
            out.status,
            stderr(&out)
        );
    }

    for (file, want) in [
        (
            components::MAL_UNDECLARED_IMPORT.to_string(),
            "does not declare",
        ),
        (
            write(dir.path(), "core.wasm", b"\0asm\x01\0\0\0"),
            "not a component",
        ),
        (
            write(dir.path(), "text.wasm", b"hello"),
            "not a WebAssembly file",
        ),
    ] {
        let out = reg.run(&state, &["plugin", "publish", &file]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        assert!(stderr(&out).contains(want), "{file}: {}", stderr(&out));
    }
    let list: Value =
        serde_json::from_str(&ok(&reg.run(&state, &["plugin", "list", "-o", "json"]))).unwrap();
    assert_eq!(
        list.as_array().unwrap().len(),
        1,
        "nothing else was published: {list}"
    );

    let out = reg.run(&state, &["plugin", "yank", "echo@9.9.9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no version 9.9.9"));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

#[test]
fn a_corrupted_registry_blob_is_refused_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let v010 = echo_version(dir.path(), "0.1.0");
    ok(&capstan(&state, &["plugin", "publish", &v010]));
    let digest = Digest::of(&std::fs::read(&v010).unwrap());
    let blob = state.join("registry/blobs/sha256").join(digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&blob, bytes).unwrap();
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let out = capstan(&state, &["run", file.to_str().unwrap()]);
    fails(&out, 2, "does not match its digest");
}

#[tokio::test]
async fn resume_uses_the_digest_recorded_when_the_run_began() {
    let env = capstan_tests::TestEnv::new();
    let v010 = echo_version(env.dir.path(), "0.1.0");
    let v011 = echo_version(env.dir.path(), "0.1.1");
    let publish = |path: &str| {
        let bytes = std::fs::read(path).unwrap();
        let m = capstan::manifest::inspect(&bytes, path).unwrap().manifest;
        env.sched
            .registry
            .publish(
                &m.name,
                &m.version,
                &bytes,
                serde_json::to_value(&m).unwrap(),
                &Default::default(),
            )
            .unwrap()
    };
    let first = publish(&v010);
    let prepared = env.prepare(PIPELINE, &[]).unwrap();
    let id = env.sched.create(&prepared, &Default::default()).unwrap();
    publish(&v011);
    // As after a crash before the run started: resume re-prepares it.
    let again = env.sched.reload(&id).map_err(|e| e.to_string()).unwrap();
    assert_eq!(again.plugins["echo@0.1"].digest(), &first.digest);
    let status = env.sched.execute(&id, &again, None).await.unwrap();
    assert_eq!(status, capstan::store::RunStatus::Succeeded);
}

on_both_backends!(
    platform_policy_denies_and_allows_local,
    platform_policy_denies_and_allows_oci,
    policy_journey
);

fn policy_journey(reg: &Reg) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    ok(&reg.run(
        &state,
        &["plugin", "publish", &echo_version(dir.path(), "0.1.0")],
    ));
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let file = file.display().to_string();
    let policy = dir.path().join("policy.toml");
    let policy_arg = policy.display().to_string();
    let run = |p: &str| {
        std::fs::write(&policy, p).unwrap();
        reg.run(&state, &["--policy", &policy_arg, "run", &file])
    };

    let out = run("[[deny]]\nname = \"ec*\"\nversions = \"<0.2\"\nreason = \"CVE-2026-1\"\n");
    fails(
        &out,
        2,
        "denied by layer `policy`: plugin `echo` 0.1.0 is denied by the platform policy: CVE-2026-1 (rule `ec*`)",
    );
    assert!(
        stderr(&out).contains("pipeline.yaml:6:"),
        "names the task's line: {}",
        stderr(&out)
    );

    let out = run("[[allow]]\nname = \"git-*\"\n");
    fails(&out, 2, "not on the platform policy's allow list");

    let out = run(
        "[[allow]]\nname = \"echo\"\nversions = \"^0.1\"\n[[ceiling]]\nname = \"*\"\ncapabilities = []\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let out = run("[[allow]]\nnmae = \"echo\"\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("policy file") && stderr(&out).contains("nmae"),
        "{}",
        stderr(&out)
    );
}

on_both_backends!(
    signatures_are_required_and_keys_rotate_local,
    signatures_are_required_and_keys_rotate_oci,
    signature_journey
);

fn signature_journey(reg: &Reg) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key = |name: &str| {
        let base = dir.path().join(name);
        let out = ok(&capstan(
            &state,
            &["plugin", "keygen", base.to_str().unwrap()],
        ));
        assert!(out.contains("public-key = \"ed25519:"), "{out}");
        let public = std::fs::read_to_string(base.with_extension("pub"))
            .unwrap()
            .trim()
            .to_string();
        (base.with_extension("key").display().to_string(), public)
    };
    let (old_key, old_pub) = key("old");
    let (new_key, new_pub) = key("new");
    let v010 = echo_version(dir.path(), "0.1.0");
    let v011 = echo_version(dir.path(), "0.1.1");
    let d011 = Digest::of(&std::fs::read(&v011).unwrap()).to_string();
    let file = dir.path().join("pipeline.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let file = file.display().to_string();
    let policy = dir.path().join("policy.toml");
    let policy_arg = policy.display().to_string();
    let trust = |keys: &[&str]| {
        let mut p = String::from("[trust]\nrequire-signature = true\n");
        for k in keys {
            p.push_str(&format!(
                "[[trust.key]]\npublic-key = \"{k}\"\nplugins = \"ec*\"\n"
            ));
        }
        std::fs::write(&policy, p).unwrap();
    };
    let run = || reg.run(&state, &["--policy", &policy_arg, "run", &file]);

    let out = ok(&reg.run(
        &state,
        &["plugin", "publish", &v010, "--sign-key", &old_key],
    ));
    assert!(out.contains("signed by ed25519:"), "{out}");
    trust(&[&old_pub]);
    ok(&run());
    ok(&reg.run(&state, &["--policy", &policy_arg, "lock", &file]));
    let lock = std::fs::read_to_string(dir.path().join("capstan.lock")).unwrap();
    assert!(
        lock.contains("signer = \"ed25519:"),
        "the lock records who signed: {lock}"
    );
    std::fs::remove_file(dir.path().join("capstan.lock")).unwrap();

    // An unsigned newer version is refused, naming plugin, digest and keys.
    ok(&reg.run(&state, &["plugin", "publish", &v011]));
    let out = run();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("plugin `echo`") && err.contains(&d011) && err.contains("signed by: none"),
        "{err}"
    );

    // Rotation: trust both, sign with the new key, then retire the old one.
    trust(&[&old_pub, &new_pub]);
    ok(&reg.run(
        &state,
        &["plugin", "sign", "echo@0.1.1", "--sign-key", &new_key],
    ));
    ok(&run());
    trust(&[&new_pub]);
    ok(&run());
    ok(&reg.run(&state, &["plugin", "yank", "echo@0.1.1"]));
    let out = run();
    assert_eq!(
        out.status.code(),
        Some(2),
        "0.1.0 is signed only by the retired key"
    );
    assert!(
        stderr(&out).contains("not signed by a key trusted for it"),
        "{}",
        stderr(&out)
    );
    ok(&reg.run(
        &state,
        &["plugin", "sign", "echo@0.1.0", "--sign-key", &new_key],
    ));
    ok(&run());

    // A file reference carries no signature: refused when one is required.
    std::fs::write(
        dir.path().join("file.yaml"),
        PIPELINE.replace("echo@0.1", &v010),
    )
    .unwrap();
    let out = reg.run(
        &state,
        &[
            "--policy",
            &policy_arg,
            "run",
            dir.path().join("file.yaml").to_str().unwrap(),
        ],
    );
    fails(&out, 2, "signed by: none");

    // A policy with a malformed key is itself refused.
    std::fs::write(&policy, "[[trust.key]]\npublic-key = \"ed25519:nothex\"\n").unwrap();
    let out = run();
    fails(&out, 2, "trust.key");
}

fn pipeline_using(dir: &Path, uses: &str) -> String {
    let file = dir.join("pipeline.yaml");
    std::fs::write(&file, PIPELINE.replace("echo@0.1", uses)).unwrap();
    file.display().to_string()
}

#[test]
fn oci_basic_auth_takes_credentials_from_the_docker_config() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let reg = Reg::oci_with_auth();
    let v010 = echo_version(dir.path(), "0.1.0");
    let anonymous = Reg {
        url: reg.url.clone(),
        docker_config: Some(dir.path().join("no-docker-config")),
        server: None,
    };
    let out = anonymous.run(&state, &["plugin", "publish", &v010]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Not authorized") && stderr(&out).contains("docker login"),
        "{}",
        stderr(&out)
    );
    let out = ok(&reg.run(&state, &["plugin", "publish", &v010]));
    assert!(out.contains("published echo 0.1.0"), "{out}");
    let file = pipeline_using(dir.path(), "echo@0.1");
    let (out, v) = run_json(&reg, &state, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(v.unwrap()["status"], "Succeeded");
    // The blob was stored where the server keeps it, under the path prefix.
    let server = reg.server.as_ref().unwrap();
    assert!(
        server
            .storage()
            .join("repositories/team/plugins/echo/_manifests/tags/0.1.0")
            .is_dir()
    );
}

#[test]
fn oci_references_resolve_lock_and_refuse_bad_tags() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let server = OciServer::start();
    let reg = Reg::local();
    let v010 = echo_version(dir.path(), "0.1.0");
    let d010 = Digest::of(&std::fs::read(&v010).unwrap()).to_string();
    let url = server.url("ci");
    ok(&reg.run(&state, &["--registry", &url, "plugin", "publish", &v010]));

    // A direct oci:// reference, with the local directory as the default.
    let uses = format!("{}/echo:0.1.0", server.url("ci"));
    let file = pipeline_using(dir.path(), &uses);
    let (out, v) = run_json(&reg, &state, &file, &["--locked"]);
    fails(&out, 2, "capstan lock");
    ok(&reg.run(&state, &["lock", &file]));
    let lock = std::fs::read_to_string(dir.path().join("capstan.lock")).unwrap();
    assert!(
        lock.contains(&d010) && lock.contains(&format!("registry = \"{url}\"")),
        "{lock}"
    );
    let (out, v2) = run_json(&reg, &state, &file, &["--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let _ = v;
    let run_id = v2.unwrap()["run_id"].as_str().unwrap().to_string();
    let used = RunStore::open(&state)
        .unwrap()
        .run(&run_id)
        .unwrap()
        .spec
        .plugins[&uses]
        .clone();
    assert_eq!(used, d010);

    let info: Value = serde_json::from_str(&ok(
        &reg.run(&state, &["plugin", "inspect", &uses, "-o", "json"])
    ))
    .unwrap();
    assert_eq!(info["manifest"]["name"], "echo");

    // The pulled component is cached by digest: the server can go away.
    drop(server);
    let cached = state
        .join("cache/oci/blobs/sha256")
        .join(&d010["sha256:".len()..]);
    assert!(cached.is_file(), "cached at {}", cached.display());
    let (out, v) = run_json(&reg, &state, &file, &["--locked"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(v.unwrap()["status"], "Succeeded");
    assert!(
        stderr(&out).contains("using the metadata remembered"),
        "{}",
        stderr(&out)
    );
    // Nothing remembered in a fresh state dir: a clear error.
    let out = reg.run(&dir.path().join("fresh"), &["run", &file]);
    fails(&out, 2, "echo:0.1.0: pulling manifest");

    // Tags must be versions.
    let bad = pipeline_using(dir.path(), "oci://127.0.0.1:1/ci/echo:latest");
    let out = reg.run(&state, &["run", &bad]);
    fails(&out, 2, "tag `latest` is not a semver version");
}

#[test]
fn oci_corrupt_blobs_and_manifests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Reg::oci();
    let server = reg.server.as_ref().unwrap();
    let v010 = echo_version(dir.path(), "0.1.0");
    let digest = Digest::of(&std::fs::read(&v010).unwrap());
    ok(&reg.run(&dir.path().join("publisher"), &["plugin", "publish", &v010]));
    let file = pipeline_using(dir.path(), "echo@0.1");

    // The registry serves other bytes for the layer: refused, and not cached.
    let blob = server.blob_file(digest.hex());
    let good = std::fs::read(&blob).unwrap();
    let mut evil = good.clone();
    evil[100] ^= 1;
    std::fs::write(&blob, &evil).unwrap();
    let state = dir.path().join("fresh");
    let out = reg.run(&state, &["run", &file]);
    fails(&out, 2, "digest");
    assert!(
        !state
            .join("cache/oci/blobs/sha256")
            .join(digest.hex())
            .exists(),
        "a bad blob is never cached"
    );
    std::fs::write(&blob, &good).unwrap();
    ok(&reg.run(&state, &["run", &file]));

    // A truncated manifest: the registry notices its size no longer matches
    // and answers 500; the error names the plugin, tag and URL.
    let link = server
        .storage()
        .join("repositories/capstan/echo/_manifests/tags/0.1.0/current/link");
    let manifest_digest = std::fs::read_to_string(&link).unwrap();
    let manifest_blob = server.blob_file(&manifest_digest.trim()["sha256:".len()..]);
    let text = std::fs::read(&manifest_blob).unwrap();
    std::fs::write(&manifest_blob, &text[..text.len() / 2]).unwrap();
    let out = reg.run(&dir.path().join("fresh2"), &["run", &file]);
    assert_ne!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("echo:0.1.0: pulling manifest") && err.contains("pipeline.yaml:6:"),
        "{err}"
    );
}

#[test]
fn an_unreachable_registry_times_out() {
    // Accepts connections, never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("oci://{}/x", listener.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let t = std::time::Instant::now();
    let out = capstan(
        &state,
        &[
            "--registry",
            &url,
            "--registry-timeout",
            "1s",
            "plugin",
            "versions",
            "echo",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("timed out") || stderr(&out).contains("timeout"),
        "{}",
        stderr(&out)
    );
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "bounded");
    drop(listener);
    // Nothing listening at all.
    let out = capstan(&state, &["--registry", &url, "plugin", "versions", "echo"]);
    fails(&out, 3, &url[6..]);
}

#[test]
fn platform_team_mirrors_with_signatures() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let upstream = Reg::oci();
    let upstream_url = upstream.url.clone().unwrap();
    let internal = dir.path().join("internal");
    let internal_arg = internal.display().to_string();
    let key = dir.path().join("k");
    ok(&capstan(
        &state,
        &["plugin", "keygen", key.to_str().unwrap()],
    ));
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let sign_key = key.with_extension("key").display().to_string();
    for v in ["0.1.0", "0.2.0"] {
        ok(&upstream.run(
            &state,
            &[
                "plugin",
                "publish",
                &echo_version(dir.path(), v),
                "--sign-key",
                &sign_key,
            ],
        ));
    }
    ok(&upstream.run(&state, &["plugin", "yank", "echo@0.2.0"]));

    // Only ^0.1 into the internal registry.
    let out = capstan(
        &state,
        &[
            "registry",
            "mirror",
            "--from",
            &upstream_url,
            "--to",
            &internal_arg,
            "--filter",
            "ec*@^0.1",
            "-o",
            "json",
        ],
    );
    let report: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(report.as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report[0]["version"], "0.1.0");
    assert_eq!(report[0]["signatures"], 1);

    // Everything, OCI to OCI: the yank travels too; running again is a no-op.
    let second = OciServer::start();
    let second_url = second.url("mirror");
    for round in 0..2 {
        let out = capstan(
            &state,
            &[
                "registry",
                "mirror",
                "--from",
                &upstream_url,
                "--to",
                &second_url,
                "-o",
                "json",
            ],
        );
        let report: Value = serde_json::from_str(&ok(&out)).unwrap();
        let actions: Vec<&str> = report
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["action"].as_str().unwrap())
            .collect();
        let want = if round == 0 { "copied" } else { "unchanged" };
        assert!(
            actions.iter().all(|a| *a == want),
            "round {round}: {report}"
        );
    }
    // A source that is not a registry is an error, not "mirrored 0".
    let nowhere = dir.path().join("no-such-registry").display().to_string();
    fails(
        &capstan(
            &state,
            &[
                "registry",
                "mirror",
                "--from",
                &nowhere,
                "--to",
                &second_url,
            ],
        ),
        2,
        "is not a Capstan registry",
    );
    assert!(
        !dir.path().join("no-such-registry").exists(),
        "created by reading it"
    );
    let versions: Value = serde_json::from_str(&ok(&capstan(
        &state,
        &[
            "--registry",
            &second_url,
            "plugin",
            "versions",
            "echo",
            "-o",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(versions[1]["yanked"], true, "{versions}");

    // A pipeline that requires signatures runs from either mirror.
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[trust]\nrequire-signature = true\n[[trust.key]]\npublic-key = \"{}\"\n",
            public.trim()
        ),
    )
    .unwrap();
    let file = pipeline_using(dir.path(), "echo@0.1");
    for r in [&internal_arg, &second_url] {
        ok(&capstan(
            &state,
            &[
                "--registry",
                r,
                "--policy",
                policy.to_str().unwrap(),
                "run",
                &file,
            ],
        ));
    }

    // A target that holds a version with other content: reported, kept.
    let conflict = dir.path().join("conflict");
    let other = std::fs::read(echo_version(dir.path(), "0.1.0")).unwrap();
    let mut other = other;
    let n = other.len();
    other[n - 1] ^= 0xff;
    let other_path = write(dir.path(), "other.wasm", &other);
    ok(&capstan(
        &state,
        &[
            "--registry",
            conflict.to_str().unwrap(),
            "plugin",
            "publish",
            &other_path,
        ],
    ));
    let out = capstan(
        &state,
        &[
            "registry",
            "mirror",
            "--from",
            &upstream_url,
            "--to",
            conflict.to_str().unwrap(),
        ],
    );
    fails(&out, 3, "versions are immutable");
}

/// The plugin author's journey, as the README writes it: `plugin new`, the
/// template's own test, `plugin publish DIR` (builds, checks, publishes
/// 1.0.0), bump the version, publish 1.1.0; pipelines pick it up by range.
#[test]
fn plugin_author_goes_from_nothing_to_two_published_versions() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let crate_dir = dir.path().join("hello");
    let crate_arg = crate_dir.display().to_string();
    let reg = Reg::oci();
    let run = |args: &[&str]| {
        let mut env: Vec<(&str, &OsStr)> = vec![];
        if let Some(u) = &reg.url {
            env.push(("CAPSTAN_REGISTRY", u.as_ref()));
        }
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_remove("CARGO_TARGET_DIR")
            .envs(env)
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .stdin(std::process::Stdio::null());
        cmd.output().unwrap()
    };
    let out = ok(&run(&["plugin", "new", "hello", "--path", &crate_arg]));
    assert!(out.contains("created plugin hello"), "{out}");
    let test = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["test", "--manifest-path"])
        .arg(crate_dir.join("Cargo.toml"))
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    assert!(
        test.status.success() && String::from_utf8_lossy(&test.stdout).contains("1 passed"),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
    let out = ok(&run(&["plugin", "publish", &crate_arg]));
    assert!(out.contains("published hello 1.0.0"), "{out}");

    // The template's own pipeline runs the built component.
    let out = run(&[
        "run",
        crate_dir.join("pipeline.yaml").to_str().unwrap(),
        "-o",
        "json",
    ]);
    let v: Value = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(v["tasks"][0]["results"]["greeting"], "Hello, Capstan!");

    let manifest = crate_dir.join("capstan.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("version = \"1.0.0\"", "version = \"1.1.0\""),
    )
    .unwrap();
    let out = ok(&run(&["plugin", "publish", &crate_arg]));
    assert!(out.contains("published hello 1.1.0"), "{out}");

    let file = dir.path().join("p.yaml");
    std::fs::write(
        &file,
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: t }\nspec:\n  tasks:\n    - { name: g, uses: hello@1, params: [{ name: name, value: Ada }] }\n",
    )
    .unwrap();
    let v: Value =
        serde_json::from_str(&ok(&run(&["run", file.to_str().unwrap(), "-o", "json"]))).unwrap();
    assert_eq!(v["tasks"][0]["results"]["greeting"], "Hello, Ada!");
    let versions: Value =
        serde_json::from_str(&ok(&run(&["plugin", "versions", "hello", "-o", "json"]))).unwrap();
    assert_eq!(versions[1]["version"], "1.1.0");

    // Republishing the same version with changed code is refused…
    let lib = crate_dir.join("src/lib.rs");
    let code = std::fs::read_to_string(&lib).unwrap();
    std::fs::write(&lib, code.replace("Hello, {}!", "Hi, {}!")).unwrap();
    let out = run(&["plugin", "publish", &crate_arg]);
    fails(&out, 2, "versions are immutable");
    // …unless asked to keep the existing one.
    let out = ok(&run(&["plugin", "publish", &crate_arg, "--skip-existing"]));
    assert!(out.contains("skipped hello 1.1.0"), "{out}");
    // A name that is not a plugin name.
    let out = run(&["plugin", "new", "Bad_Name"]);
    fails(&out, 2, "not a plugin name");
}
