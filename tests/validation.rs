//! Validation before anything runs: every problem is reported with the
//! file, line and column, and nothing is executed.

use capstan::store::RunStore;
use capstan_tests::TestEnv;

/// Prepare `yaml` (with params) and return the diagnostics text.
fn problems(env: &TestEnv, yaml: &str, params: &[(&str, &str)]) -> String {
    match env.prepare(yaml, params) {
        Ok(_) => panic!("expected validation errors for:\n{yaml}"),
        Err(e) => e,
    }
}

const HEAD: &str =
    "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: { name: v }\nspec:\n";

#[test]
fn cycles_are_reported_with_the_path() {
    let env = TestEnv::new();
    let yaml = format!(
        "{HEAD}  tasks:\n    - name: a\n      uses: \"{{{{echo}}}}\"\n      runAfter: [c]\n      params: [{{ name: message, value: x }}]\n    - name: b\n      uses: \"{{{{echo}}}}\"\n      params: [{{ name: message, value: \"$(tasks.a.results.message)\" }}]\n    - name: c\n      uses: \"{{{{echo}}}}\"\n      runAfter: [b]\n      params: [{{ name: message, value: x }}]\n"
    );
    let p = problems(&env, &yaml, &[]);
    assert!(p.contains("dependency cycle"), "{p}");
    assert!(
        p.contains("a → c → b → a") || p.contains("a → b → c → a") || p.contains("→"),
        "{p}"
    );
    assert!(p.contains("pipeline.yaml:6:"), "{p}");
}

#[test]
fn unknown_references_each_name_their_line() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEAD}  params:
    - {{ name: p, default: x }}
  tasks:
    - name: a
      uses: "{{{{echo}}}}"
      params:
        - name: message
          value: "$(params.nope)"
        - name: items
          value: ["$(tasks.ghost.results.r)"]
    - name: b
      uses: "{{{{echo}}}}"
      runAfter: [missing]
      params:
        - name: message
          value: "$(tasks.a.results.not-declared)"
        - name: bogus
          value: x
      workspaces: [{{ name: output, workspace: nowhere }}]
    - name: c
      uses: "{{{{echo}}}}"
      timeout: 5 minutes
      params: [{{ name: message, value: "$(tasks.status)" }}]
"#
    );
    let p = problems(&env, &yaml, &[]);
    let expect = [
        ("pipeline.yaml:12:", "no param `nope`"),
        ("pipeline.yaml:14:", "no task `ghost`"),
        ("pipeline.yaml:17:", "no task `missing`"),
        ("pipeline.yaml:20:", "has no result `not-declared`"),
        ("pipeline.yaml:21:", "has no param `bogus`"),
        ("pipeline.yaml:23:", "declares no workspace `nowhere`"),
        ("pipeline.yaml:26:", "is not a duration"),
        ("pipeline.yaml:27:", "only available in finally tasks"),
    ];
    for (at, what) in expect {
        assert!(
            p.lines().any(|l| l.contains(at) && l.contains(what)),
            "missing `{what}` at {at} in:\n{p}"
        );
    }
}

#[test]
fn params_required_and_typed() {
    let env = TestEnv::new();
    let yaml = format!(
        r#"{HEAD}  params:
    - {{ name: needed }}
    - {{ name: list, type: array, default: "not-a-list" }}
  tasks:
    - name: a
      uses: "{{{{echo}}}}"
      params:
        - {{ name: items, value: "a string where an array goes" }}
    - name: b
      uses: "{{{{write_file}}}}"
      params: [{{ name: path, value: x }}]
"#
    );
    let p = problems(&env, &yaml, &[("ghost", "1")]);
    for what in [
        "param `needed` has no default and no value was given",
        "default is string but the type is array",
        "param `items` is array but the value is string",
        "plugin `echo` requires param `message`",
        "plugin `write-file` needs workspace `output` bound",
        "-p ghost: the pipeline has no param `ghost`",
    ] {
        assert!(p.contains(what), "missing `{what}` in:\n{p}");
    }
}

#[test]
fn unknown_fields_and_bad_yaml_name_the_line() {
    let env = TestEnv::new();
    let p = problems(
        &env,
        &format!("{HEAD}  tasks:\n    - name: a\n      uses: \"{{{{echo}}}}\"\n      retires: 3\n"),
        &[],
    );
    assert!(
        p.contains("pipeline.yaml:8:") && p.contains("unknown field `retires`"),
        "{p}"
    );

    let p = problems(
        &env,
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: [oops\n",
        &[],
    );
    assert!(p.contains("pipeline.yaml:"), "{p}");

    let p = problems(&env, "apiVersion: tekton.dev/v1\nkind: Pipeline\n", &[]);
    assert!(
        p.contains("pipeline.yaml:1:1:") && p.contains("must be `capstan.dev/v1alpha1`"),
        "{p}"
    );

    let p = problems(
        &env,
        &format!("{HEAD}  tasks:\n    - name: a\n      uses: git-clone@1.2\n"),
        &[],
    );
    assert!(
        p.contains("pipeline.yaml:7:7") && p.contains("no plugin `git-clone` in the registry"),
        "{p}"
    );
    let p = problems(
        &env,
        &format!(
            "{HEAD}  tasks:\n    - name: a\n      uses: oci://127.0.0.1:1/p/git-clone:1.2.0\n"
        ),
        &[],
    );
    assert!(
        p.contains("pipeline.yaml:7:7")
            && p.contains("registry oci://127.0.0.1:1/p: git-clone:1.2.0: pulling manifest")
            && p.contains("Connection refused"),
        "{p}"
    );
    let p = problems(
        &env,
        &format!("{HEAD}  tasks:\n    - name: a\n      uses: git-clone\n"),
        &[],
    );
    assert!(p.contains("expected name@version-range"), "{p}");
}

#[test]
fn grants_for_undeclared_or_unavailable_capabilities_are_refused() {
    let env = TestEnv::new();
    let p = problems(
        &env,
        &format!(
            "{HEAD}  tasks:\n    - name: a\n      uses: \"{{{{echo}}}}\"\n      params: [{{ name: message, value: x }}]\n      grants:\n        http: [\"https://example.com\"]\n"
        ),
        &[],
    );
    assert!(
        p.contains("denied by layer `manifest`: plugin `echo` does not declare capability `http`"),
        "{p}"
    );
    assert!(p.contains("pipeline.yaml:10:"), "{p}");
}

#[test]
fn nothing_is_recorded_for_an_invalid_pipeline() {
    let env = TestEnv::new();
    let _ = problems(
        &env,
        &format!("{HEAD}  tasks:\n    - name: BAD NAME\n      uses: \"{{{{echo}}}}\"\n"),
        &[],
    );
    let store = RunStore::open(&env.sched.state_dir).unwrap();
    assert!(store.list_runs(10).unwrap().is_empty());
}

/// PipelineRun bindings as Tekton treats them: an extra param is ignored
/// with a warning (triggers pass a fixed set), a workspace the pipeline
/// does not declare is an error, and a wrong-typed value is one problem,
/// not also "no value was given".
#[test]
fn pipeline_run_params_and_workspaces() {
    let env = TestEnv::new();
    let run = |params: &str, workspaces: &str| {
        format!(
            r#"apiVersion: capstan.dev/v1alpha1
kind: PipelineRun
metadata: {{ name: r }}
spec:
  params: [{params}]
  workspaces: [{workspaces}]
  pipelineSpec:
    params: [{{ name: list, type: array }}]
    workspaces: [{{ name: src }}]
    tasks:
      - {{ name: a, uses: "{{{{echo}}}}", params: [{{ name: message, value: x }}] }}
"#
        )
    };
    let ok = env
        .prepare(
            &run(
                "{ name: list, value: [a] }, { name: git-revision, value: abc }",
                "{ name: src, emptyDir: {} }",
            ),
            &[],
        )
        .unwrap();
    assert!(
        ok.warnings
            .iter()
            .any(|w| w.contains("`git-revision` is not declared by the pipeline; ignored")),
        "{:?}",
        ok.warnings
    );
    let p = problems(
        &env,
        &run(
            "{ name: list, value: not-a-list }",
            "{ name: srcc, emptyDir: {} }",
        ),
        &[],
    );
    assert!(
        p.contains("declares no workspace `srcc` (it declares: src)"),
        "{p}"
    );
    assert!(
        p.contains("param `list` is array but the value is string"),
        "{p}"
    );
    assert!(
        !p.contains("no value was given"),
        "a false second problem:\n{p}"
    );
}
