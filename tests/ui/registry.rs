//! The registry in Chromium: plugins, a version's signature and trusted
//! signer, the capabilities each declares and what the platform policy
//! allows of them; a name that is not a plugin is a 404, not a path.

use capstan_tests::browser::Browser;
use capstan_tests::components;

use super::{CLI, Scene, http};

#[tokio::test(flavor = "multi_thread")]
async fn the_registry_shows_signatures_capabilities_and_policy() {
    let mut key_id = String::new();
    let scene = Scene::with(|state| {
        for c in [components::ECHO, components::HTTP_GET] {
            let out = capstan_tests::cli(CLI, state, &["plugin", "publish", c]);
            assert!(out.status.success(), "{out:?}");
        }
        let base = state.join("team");
        let out = capstan_tests::cli(
            CLI,
            state,
            &["plugin", "keygen", base.to_str().unwrap(), "-o", "json"],
        );
        let key: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        key_id = key["key_id"].as_str().unwrap().to_string();
        let sk = state.join("team.key");
        let out = capstan_tests::cli(
            CLI,
            state,
            &[
                "plugin",
                "sign",
                "echo@0.1.0",
                "--sign-key",
                sk.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{out:?}");
        let policy = state.join("policy.toml");
        std::fs::write(
            &policy,
            format!(
                "[[ceiling]]\nname = \"http-get\"\ncapabilities = []\n\n[[trust.key]]\npublic-key = \"{}\"\nplugins = \"*\"\n",
                key["public_key"].as_str().unwrap()
            ),
        )
        .unwrap();
        vec!["--policy".into(), policy.display().to_string()]
    });
    let token = scene.token("alice", &[]);
    let b = Browser::start().await;
    b.sign_in(&scene.url, &token).await;
    b.client
        .goto(&format!("{}/ui/registry", scene.url))
        .await
        .unwrap();
    let table = b.text("table.registry").await;
    assert!(
        table.contains("echo") && table.contains("http-get"),
        "{table}"
    );
    b.screenshot("registry").await;

    b.client
        .goto(&format!("{}/ui/registry/echo", scene.url))
        .await
        .unwrap();
    let v = b.text("section.version").await;
    assert!(v.contains(&format!("trusted key {key_id}")), "{v}");
    assert!(
        v.contains("None: it can only compute on its inputs."),
        "{v}"
    );

    b.client
        .goto(&format!("{}/ui/registry/http-get", scene.url))
        .await
        .unwrap();
    let v = b.text("section.version").await;
    assert!(v.contains("http") && v.contains("denied"), "{v}");
    assert!(v.contains("Signatures\nnone"), "{v}");
    b.screenshot("registry-plugin").await;
    b.assert_accessible("a plugin").await;

    // Not a plugin name: refused before the registry is touched.
    let cookie = b.client.get_named_cookie("capstan-session").await.unwrap();
    let jar = format!("capstan-session={}", cookie.value());
    for path in [
        "/ui/registry/..%2F..%2Fapi-tokens.toml",
        "/ui/registry/nope",
    ] {
        let (status, _, body) = http(&scene.url, "GET", path, &[("Cookie", &jar)], "");
        assert_eq!(status, 404, "{path}: {body}");
    }
}
