use super::*;
use crate::pipeline::Document;

fn parse(task: &str) -> Result<Document, Vec<String>> {
    let text = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{name: p}}\nspec:\n  params: [{{name: tag, default: x}}]\n  tasks:\n{task}"
    );
    Document::parse("p.yaml", &text).map_err(|d| {
        d.0.iter()
            .map(|d| format!("{}:{} {}: {}", d.line, d.column, d.path, d.message))
            .collect()
    })
}

fn param<'a>(t: &'a PipelineTask, name: &str) -> Option<&'a ParamValue> {
    t.params.iter().find(|p| p.name == name).map(|p| &p.value)
}

/// A Tekton step (image, script with `$(results.…path)` and
/// `$(workspaces.…path)`, env with a secret, computeResources) is the
/// `script` plugin with those params and the image granted as written.
#[test]
fn a_tekton_step_is_the_script_plugin() {
    let doc = parse(
        "    - name: unit\n      image: localhost/golang:1.19\n      script: |\n        go test ./... > $(workspaces.source.path)/out\n        printf ok > $(results.verdict.path)\n        echo $(params.tag) $(results['verdict'].path)\n      env:\n        - {name: CGO_ENABLED, value: \"0\"}\n        - {name: TOKEN, secret: api-token}\n      computeResources: {limits: {cpu: 2, memory: 1Gi}, requests: {cpu: 500m}}\n      results: [{name: verdict, type: string}]\n      caches: [{name: gomod, path: /root/go/pkg/mod}]\n      workspaces: [{name: source, workspace: src}]\n",
    )
    .unwrap();
    let t = &doc.spec.tasks[0];
    assert_eq!(t.uses, SCRIPT_PLUGIN);
    assert!(t.image.is_none() && t.script.is_none() && t.env.is_empty());
    let Some(ParamValue::String(script)) = param(t, "script") else {
        panic!("{:?}", t.params)
    };
    assert_eq!(
        script,
        "go test ./... > /workspace/source/out\nprintf ok > /capstan/results/verdict\necho $(params.tag) /capstan/results/verdict\n"
    );
    assert_eq!(
        param(t, "env"),
        Some(&ParamValue::Object(
            [("CGO_ENABLED".to_string(), "0".to_string())].into()
        ))
    );
    assert_eq!(
        param(t, "secretEnv"),
        Some(&ParamValue::Object(
            [("TOKEN".to_string(), "api-token".to_string())].into()
        ))
    );
    assert_eq!(param(t, "cpu"), Some(&ParamValue::String("2".into())));
    assert_eq!(
        param(t, "caches"),
        Some(&ParamValue::Object(
            [("gomod".to_string(), "/root/go/pkg/mod".to_string())].into()
        ))
    );
    assert_eq!(param(t, "memory"), Some(&ParamValue::String("1Gi".into())));
    assert_eq!(
        t.grants.container,
        [ContainerGrant {
            image: "localhost/golang:1.19".into(),
            network: false,
            secrets: vec!["api-token".into()],
            caches: vec!["gomod".into()],
            root: false,
        }]
    );
}

#[test]
fn command_and_args_are_the_argv() {
    let doc = parse(
        "    - name: t\n      image: busybox\n      command: [sh, -c]\n      args: [\"echo $(params.tag)\"]\n      workingDir: /src\n",
    )
    .unwrap();
    let t = &doc.spec.tasks[0];
    assert_eq!(
        param(t, "command"),
        Some(&ParamValue::Array(vec!["sh".into(), "-c".into()]))
    );
    assert_eq!(
        param(t, "args"),
        Some(&ParamValue::Array(vec!["echo $(params.tag)".into()]))
    );
    assert_eq!(
        param(t, "workingDir"),
        Some(&ParamValue::String("/src".into()))
    );
    assert!(param(t, "script").is_none());
}

/// Each mistake is reported at its field, with the line it is on.
#[test]
fn mistakes_name_their_field() {
    let cases = [
        (
            "    - name: t\n      script: echo\n",
            "tasks[0]",
            "needs `image:`",
        ),
        ("    - name: t\n", "tasks[0]", "needs `uses:`"),
        (
            "    - name: t\n      uses: x@1\n      image: busybox\n      script: echo\n",
            "tasks[0].uses",
            "not both",
        ),
        (
            "    - name: t\n      image: busybox\n      script: echo\n      command: [sh]\n",
            "tasks[0].command",
            "cannot both",
        ),
        (
            "    - name: t\n      image: busybox\n      script: cat $(results.nope.path)\n",
            "tasks[0].script",
            "no result `nope`",
        ),
        (
            "    - name: t\n      image: busybox\n      script: ls $(workspaces.cache.path)\n",
            "tasks[0].script",
            "no workspace `cache`",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      env: [{name: A, value: b, secret: c}]\n",
            "tasks[0].env[0]",
            "one of them",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      env: [{name: CAPSTAN_RESULTS, value: /}]\n",
            "tasks[0].env[0].name",
            "host's",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      resources: {limits: {memory: lots}}\n",
            "tasks[0].resources.limits.memory",
            "not a size",
        ),
        (
            "    - name: t\n      image: \"localhost/$(params.tag)\"\n      script: x\n",
            "tasks[0].image",
            "grants.container",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      env: [{name: T, secret: tok}]\n      grants: {container: [{image: busybox}]}\n",
            "tasks[0].env[0].secret",
            "not in the `secrets`",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      params: [{name: image, value: other}]\n",
            "tasks[0].params",
            "not params",
        ),
        (
            "    - name: t\n      image: \"localhost/go:*\"\n      script: x\n",
            "tasks[0].image",
            "only letters",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      workingDir: src\n",
            "tasks[0].workingDir",
            "absolute",
        ),
        (
            "    - name: t\n      image: busybox\n      script: x\n      matrix: {params: [{name: image, value: [a, b]}]}\n",
            "tasks[0].matrix",
            "uses: script",
        ),
        (
            "    - name: t\n      image: localhost/go:1\n      script: x\n      env: [{name: T, secret: tok}]\n      grants: {container: [{image: localhost/go:1}, {image: localhost/other:1, secrets: [tok]}]}\n",
            "tasks[0].env[0].secret",
            "allowing `localhost/go:1`",
        ),
    ];
    for (task, path, message) in cases {
        let errs = parse(task).expect_err(task);
        assert!(
            errs.iter()
                .any(|e| e.contains(&format!(" spec.{path}: ")) && e.contains(message)),
            "{task}\n{errs:?}"
        );
        assert!(errs.iter().all(|e| !e.starts_with("0:")), "{errs:?}");
    }
}

/// An explicit grant is kept as written (a pattern, a network, secrets).
#[test]
fn an_explicit_grant_is_kept() {
    let doc = parse(
        "    - name: t\n      image: localhost/go:1\n      script: x\n      env: [{name: T, secret: tok}]\n      grants: {container: [{image: \"localhost/go:*\", network: true, secrets: [tok]}]}\n",
    )
    .unwrap();
    let g = &doc.spec.tasks[0].grants.container;
    assert_eq!(g.len(), 1);
    assert!(g[0].network && g[0].image == "localhost/go:*");
}

/// References nested in a command substitution are replaced too.
#[test]
fn nested_references_are_replaced() {
    let doc = parse(
        "    - name: t\n      image: busybox\n      results: [{name: r}]\n      script: echo $(cat $(results.r.path)) $(params.tag)\n",
    )
    .unwrap();
    assert_eq!(
        param(&doc.spec.tasks[0], "script"),
        Some(&ParamValue::String(
            "echo $(cat /capstan/results/r) $(params.tag)".into()
        ))
    );
}
