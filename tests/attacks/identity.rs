//! Identity attacks: a component that calls itself by a trusted plugin's
//! name (`git-clone`, whose policy ceiling includes `secrets`), run from a
//! file, from another OCI registry under its own repository name
//! (`hs-evil`, which the policy denies), and from the configured registry
//! listed under a name or stored manifest that is not its own. The policy
//! must judge where it came from, never what it says about itself.

use std::sync::Arc;

use capstan::caps::secrets::LocalSecrets;
use capstan_registry::{ComponentWorld, OciOptions, Registry};
use capstan_tests::TestEnv;
use capstan_tests::oci::OciServer;

const POLICY: &str = r#"
[[deny]]
name = "hs-*"
reason = "quarantined"
[[ceiling]]
name = "git-clone"
capabilities = ["http", "secrets"]
[[ceiling]]
name = "*"
capabilities = []
"#;

fn env_with_policy(extra: &str) -> TestEnv {
    let mut env = TestEnv::new();
    LocalSecrets::new(&env.sched.state_dir.join("secrets"))
        .set("deploy-token", b"IDENTITY-SECRET")
        .unwrap();
    let policy = env.path("policy.toml");
    std::fs::write(&policy, format!("{POLICY}{extra}")).unwrap();
    env.sched.policy = Arc::new(capstan::policy::PolicyFile::load(&policy).unwrap());
    env
}

fn pipeline(uses: &str) -> String {
    format!(
        r#"
apiVersion: capstan.dev/v1alpha1
kind: Pipeline
metadata: {{ name: impostor }}
spec:
  tasks:
    - name: attack
      uses: "{uses}"
      params: [{{ name: arg, value: deploy-token }}]
      grants: {{ secrets: [{{ name: deploy-token, reveal: true }}] }}
"#
    )
}

fn impostor_bytes() -> Vec<u8> {
    let path = capstan_tests::expand("{{id_impostor}}");
    std::fs::read(path).unwrap()
}

fn manifest_of(bytes: &[u8]) -> serde_json::Value {
    let info = capstan::manifest::inspect(bytes, "impostor").unwrap();
    assert_eq!(
        info.manifest.name, "git-clone",
        "the impostor claims git-clone"
    );
    serde_json::to_value(&info.manifest).unwrap()
}

fn refused(env: &TestEnv, uses: &str, want: &str) {
    let e = env
        .prepare(&pipeline(uses), &[])
        .err()
        .unwrap_or_else(|| panic!("`{uses}` was admitted"));
    assert!(e.contains(want), "`{uses}`: want {want:?} in:\n{e}");
    assert!(!e.contains("IDENTITY-SECRET"));
}

#[tokio::test]
async fn a_component_file_gets_nothing_by_claiming_a_trusted_name() {
    let env = env_with_policy("");
    refused(&env, "{{id_impostor}}", "runs registry plugins only");
    // Allowed by the policy, a file still gets only `[paths] capabilities`.
    let env = env_with_policy("[paths]\nallow = true\ncapabilities = [\"http\"]\n");
    refused(
        &env,
        "{{id_impostor}}",
        "ceiling for component files (`[paths] capabilities`) does not include `secrets`",
    );
    // A deny rule catches the name it declares, too.
    let env = env_with_policy(
        "[paths]\nallow = true\ncapabilities = [\"secrets\"]\n[[deny]]\nname = \"git-*\"\n",
    );
    refused(&env, "{{id_impostor}}", "denied by the platform policy");
}

#[tokio::test]
async fn an_oci_repository_cannot_lend_its_component_another_name() {
    let env = env_with_policy("");
    let server = OciServer::start();
    let opts = OciOptions {
        timeout: std::time::Duration::from_secs(10),
        cache_dir: env.path("oci-cache"),
    };
    let bytes = impostor_bytes();
    let world = ComponentWorld {
        imports: vec![],
        exports: vec![],
    };
    let v = semver::Version::new(1, 0, 0);
    // Pushed by another tool under the repository `hs-evil`.
    let evil = Registry::open(&server.url("team"), &opts).unwrap();
    evil.publish("hs-evil", &v, &bytes, manifest_of(&bytes), &world)
        .unwrap();
    let uses = format!("{}/hs-evil:1.0.0", server.url("team"));
    refused(
        &env,
        &uses,
        "declares itself `git-clone` 1.0.0 but is listed as `hs-evil` 1.0.0",
    );
    // Under its claimed name in a registry that is not the configured one,
    // it gets none of `git-clone`'s privileges (the `*` ceiling applies).
    evil.publish("git-clone", &v, &bytes, manifest_of(&bytes), &world)
        .unwrap();
    let uses = format!("{}/git-clone:1.0.0", server.url("team"));
    refused(&env, &uses, "rule `*`) does not include `secrets`");
}

#[tokio::test]
async fn the_configured_registry_is_checked_against_the_component() {
    let env = env_with_policy("");
    let v = semver::Version::new(1, 0, 0);
    let bytes = impostor_bytes();
    // Listed as `hs-evil`: refused (not believed to be git-clone).
    env.sched
        .registry
        .publish(
            "hs-evil",
            &v,
            &bytes,
            manifest_of(&bytes),
            &ComponentWorld {
                imports: vec![],
                exports: vec![],
            },
        )
        .unwrap();
    refused(&env, "hs-evil@1", "declares itself `git-clone`");
    // Listed under its own name but with a stored manifest that hides its
    // `secrets` capability: refused, and `plugin versions` says so.
    let mut lying = manifest_of(&bytes);
    lying["capabilities"] = serde_json::json!([]);
    env.sched
        .registry
        .publish(
            "git-clone",
            &v,
            &bytes,
            lying,
            &ComponentWorld {
                imports: vec![],
                exports: vec![],
            },
        )
        .unwrap();
    refused(&env, "git-clone@1", "the manifest stored with it");
    let out = capstan_tests::cli_env(
        env!("CARGO_BIN_EXE_capstan-cli"),
        &env.sched.state_dir,
        &["plugin", "versions", "git-clone"],
        &[(
            "CAPSTAN_REGISTRY",
            std::ffi::OsStr::new(&env.sched.registry.location()),
        )],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("REFUSED"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
