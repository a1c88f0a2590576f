//! Image pulls on the local engine: from Debian's docker-registry on the
//! port the podman service's registries.conf names (plain HTTP).

use capstan::store::RunStatus;
use capstan_tests::TestEnv;
use capstan_tests::podman::{IMAGE, podman_engine};

use super::{SERIAL, assert_build_failed, indent, pipeline};

/// An image the engine does not have is pulled (from Debian's
/// docker-registry on 127.0.0.1, where the test pushed the busybox image
/// under another name), the engine's status lines in the task log; an
/// image the registry does not have either fails the task naming it.
#[tokio::test]
async fn a_missing_image_is_pulled_from_its_registry() {
    let _one = SERIAL.lock().await;
    let engine = podman_engine();
    let registry = capstan_tests::oci::OciServer::start_at(&engine.registry);
    let name = format!("{}/team/busybox:pulled", registry.host);
    let sh = |args: &[&str]| {
        let out = engine.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "podman {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    sh(&[
        "push",
        "-q",
        "--tls-verify=false",
        IMAGE,
        &format!("docker://{name}"),
    ]);
    // Not in the store by that name: the step must pull it.
    let _ = engine.command().args(["rmi", "-f", &name]).output();
    let env = TestEnv::new();
    let grant = format!("{}/team/*:*", registry.host);
    let yaml = pipeline(&name, &grant, &indent("echo ran-pulled"), "");
    let run = env.run(&yaml, &[]).await;
    let log = run.log_text();
    let _ = engine.command().args(["rmi", "-f", &name]).output();
    assert_eq!(run.status, RunStatus::Succeeded, "{log}");
    assert!(log.contains(&format!("capstan: pulling {name}")), "{log}");
    assert!(log.contains(&format!("capstan: pulled {name} in")), "{log}");
    assert!(log.contains("ran-pulled"), "{log}");
    let missing = format!("{}/team/nothing:1", registry.host);
    let yaml = pipeline(&missing, &grant, &indent("echo never"), "");
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, &format!("pulling image `{missing}`"));
    assert!(!run.log_text().contains("never\n"), "{}", run.log_text());
    // An image outside the grant is denied before any pull.
    let other = format!("{}/other/busybox:pulled", registry.host);
    sh(&[
        "push",
        "-q",
        "--tls-verify=false",
        IMAGE,
        &format!("docker://{other}"),
    ]);
    let yaml = pipeline(&other, &grant, &indent("echo never"), "");
    let run = env.run(&yaml, &[]).await;
    assert_build_failed(&run, "denied");
    let pulled = engine
        .command()
        .args(["image", "exists", &other])
        .status()
        .unwrap();
    assert!(!pulled.success(), "{other} was pulled though not granted");
    assert_eq!(engine.leftovers(), Vec::<String>::new());
}
