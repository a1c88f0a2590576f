//! examples/go-service/kubernetes.yaml, whole, on the real node: git-clone
//! from a git http-backend, `go vet`/`go test`/`go build` as a step Pod in
//! Debian's Go, kaniko-build (the stand-in, which really builds and pushes
//! the Dockerfile's image to a docker-registry on the node's gateway) as a
//! root Pod, and kube-deploy setting the Deployment's image to the pushed
//! digest: the controller-manager rolls it out, containerd pulls it from
//! the registry, and the service answers on its Pod's address.
//!
//! The example's own file is applied; only what names the example's hosts
//! (its grants and the run's parameters) is replaced with the test's.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use capstan_tests::git::{GitServer, git};
use capstan_tests::node::{GATEWAY, KubeNode, until};
use capstan_tests::oci::OciServer;
use capstan_tests::podman::KANIKO;

use super::{controller, ended_within, phase, run_log, scenario, task};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/go-service");

/// A repository with the example's Go service at the path the pipeline
/// builds (examples/go-service), pushed to `server` as go-service.git.
fn service_repository(server: &GitServer) -> String {
    let (bare, work) = server.repo("go-service.git");
    let dst = work.path().join("examples/go-service");
    std::fs::create_dir_all(&dst).unwrap();
    for f in [
        "go.mod",
        "main.go",
        "main_test.go",
        "Dockerfile",
        ".gitignore",
    ] {
        std::fs::copy(Path::new(EXAMPLE).join(f), dst.join(f)).unwrap();
    }
    git(work.path(), &["add", "-A"]);
    git(
        work.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.org",
            "commit",
            "-q",
            "-m",
            "go-service",
        ],
    );
    server.push(work.path(), &bare, &["main"]);
    git(work.path(), &["rev-parse", "HEAD"]).trim().to_string()
}

/// GET `path` from `addr`; the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

/// The example's file with the test's git server, registry and kaniko
/// stand-in in place of its hosts; and the image it will push.
fn example_for(server: &GitServer, registry: &OciServer) -> (String, String) {
    let image = format!("{}/team/go-service", registry.host);
    let example = std::fs::read_to_string(Path::new(EXAMPLE).join("kubernetes.yaml")).unwrap();
    let mut yaml = example
        .replace(
            "https://git.example.internal/team/go-service.git",
            &server.url("go-service.git"),
        )
        .replace("https://git.example.internal", &server.origin())
        .replace("registry.example.internal/team/go-service", &image)
        .replace(
            "gcr.io/kaniko-project/executor:*",
            "localhost/capstan-kaniko-standin:*",
        );
    // The run's own parameters: the stand-in, and plain HTTP.
    let tag = "    - { name: tag, value: latest }\n";
    assert!(yaml.contains(tag), "the example's run moved");
    yaml = yaml.replace(
        tag,
        &format!(
            "{tag}    - {{ name: kaniko-image, value: \"{KANIKO}\" }}\n    - {{ name: kaniko-args, value: [--insecure] }}\n"
        ),
    );
    assert_ne!(yaml, example, "the example's hosts moved");
    (yaml, image)
}

pub fn the_go_service_example_runs_whole(node: &KubeNode) {
    let ns = "gosvc";
    let state = scenario(node, ns);
    let registry = OciServer::start_on(GATEWAY);
    node.trust_registry(&registry.host);
    let server = GitServer::start(true);
    let commit = service_repository(&server);
    // kube-deploy runs as `runner`: it may read and patch this Deployment.
    node.api.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: deployer, namespace: {ns}}}\n\
         rules: [{{apiGroups: [apps], resources: [deployments], resourceNames: [go-service], verbs: [get, patch]}}]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: runner-deploys, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}}\n\
         subjects: [{{kind: ServiceAccount, name: runner, namespace: {ns}}}]\n"
    ));
    let kubectl_apply = |file: &Path| {
        let out = node
            .api
            .kubectl(&["-n", ns, "apply", "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "kubectl apply -f {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    kubectl_apply(&Path::new(EXAMPLE).join("deployment.yaml"));
    let (yaml, image) = example_for(&server, &registry);
    let file = state.path().join("go-service.yaml");
    std::fs::write(&file, &yaml).unwrap();
    // The platform allows what the example's build asks for: a root
    // container with a network (kaniko).
    let policy = state.path().join("policy.toml");
    std::fs::write(&policy, "[container]\nroot = true\nnetwork = true\n").unwrap();
    let policy_arg = format!("--policy={}", policy.display());
    let ctl = controller(
        node,
        state.path(),
        ns,
        "solo",
        &["--no-leader-election", &policy_arg],
    );
    kubectl_apply(&file);
    let v = ended_within(node, ns, "go-service", 300, &|| ctl.log());
    let run_id = v["status"]["runId"].as_str().unwrap_or_default();
    let log = run_log(state.path(), run_id);
    assert_eq!(
        phase(&v),
        "Succeeded",
        "{v:#}\n{log}\n{}\n{}",
        ctl.log(),
        node.logs()
    );
    assert_eq!(task(&v, "clone")["results"]["commit"], commit.as_str());
    assert!(log.contains("PASS") || log.contains("ok "), "{log}");
    let digest = task(&v, "image")["results"]["IMAGE_DIGEST"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        log.contains(&format!("Pushed {image}:latest@{digest}")),
        "{log}"
    );
    // The Deployment runs the pushed image, which serves.
    let want = format!("{image}:latest@{digest}");
    let d = node
        .api
        .kubectl(&["-n", ns, "get", "deployment", "go-service", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap_or_default();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        want.as_str()
    );
    let mut ip = String::new();
    until(node, 60, "the go-service Pod ready", || {
        let pod = node.pods(ns).into_iter().find(|p| {
            p["spec"]["containers"][0]["image"] == want.as_str()
                && p["status"]["containerStatuses"][0]["ready"] == true
        });
        ip = pod
            .and_then(|p| p["status"]["podIP"].as_str().map(str::to_string))
            .unwrap_or_default();
        !ip.is_empty()
    });
    assert_eq!(
        http_get(&format!("{ip}:8080"), "/greet?name=capstan"),
        "hello, capstan"
    );
    // No step Pod is left (only the Deployment's).
    until(node, 30, "step Pods deleted", || {
        node.pods(ns)
            .iter()
            .all(|p| p["metadata"]["labels"]["app"] == "go-service")
    });
}
