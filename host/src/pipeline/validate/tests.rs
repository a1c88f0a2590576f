//! Validators from YAML fixtures with fake manifests (no registry, no
//! wasm): each concern's rules, and that every problem is reported at once.

use super::*;
use crate::manifest::Manifest;

/// A fake plugin: `tool` with a required `mode` (enum fast|slow), an
/// optional array `args`, a required workspace `src` and an optional
/// `cache`, results `out` and `digest`.
const TOOL: &str = r#"
name = "tool"
version = "1.0.0"
world = "base"
[[params]]
name = "mode"
enum = ["fast", "slow"]
[[params]]
name = "args"
type = "array"
default = []
[[workspaces]]
name = "src"
[[workspaces]]
name = "cache"
optional = true
[[results]]
name = "out"
[[results]]
name = "digest"
"#;

fn manifest() -> Manifest {
    toml::from_str(TOOL).expect("fake manifest")
}

fn check(yaml: &str, overrides: &[(&str, &str)]) -> Result<Plan, Vec<String>> {
    let doc = Document::parse("p.yaml", yaml).map_err(|d| lines(&d))?;
    let m = manifest();
    let of = move |_: &str| Some(m.clone());
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    validate(&doc, &of, &overrides, &|_, _| Ok(())).map_err(|d| lines(&d))
}

fn lines(d: &Diagnostics) -> Vec<String> {
    d.0.iter()
        .map(|x| format!("{}:{}: {}: {}", x.line, x.column, x.path, x.message))
        .collect()
}

/// The problems, each of which must contain one of `want` (in order).
fn problems(yaml: &str, overrides: &[(&str, &str)], want: &[&str]) {
    let got = check(yaml, overrides).err().unwrap_or_default();
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(want) {
        assert!(g.contains(w), "`{g}` should contain `{w}`");
    }
}

const HEAD: &str = "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {name: p}\nspec:\n";

#[test]
fn a_valid_pipeline_plans_its_edges() {
    let yaml = format!(
        "{HEAD}  workspaces: [{{name: ws}}]\n  tasks:\n\
         \x20   - {{name: a, uses: t, params: [{{name: mode, value: fast}}], workspaces: [{{name: src, workspace: ws}}]}}\n\
         \x20   - {{name: b, uses: t, params: [{{name: mode, value: slow}}, {{name: args, value: [\"$(tasks.a.results.out)\"]}}], \
         workspaces: [{{name: src, workspace: ws, subPath: \"$(tasks.a.results.digest)\"}}]}}\n"
    );
    let plan = check(&yaml, &[]).unwrap();
    let b = &plan.tasks[1];
    assert_eq!(b.deps.iter().collect::<Vec<_>>(), ["a"]);
    assert_eq!(b.result_deps.iter().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn enums_on_pipeline_params_and_plugin_params() {
    let yaml = |default: &str, value: &str| {
        format!(
            "{HEAD}  params: [{{name: speed, enum: [fast, slow], default: {default}}}]\n  workspaces: [{{name: ws}}]\n  tasks:\n\
             \x20   - {{name: a, uses: t, params: [{{name: mode, value: \"{value}\"}}], workspaces: [{{name: src, workspace: ws}}]}}\n"
        )
    };
    assert!(check(&yaml("fast", "$(params.speed)"), &[]).is_ok());
    problems(
        &yaml("quick", "$(params.speed)"),
        &[],
        &["`quick` is not one of its enum values"],
    );
    problems(
        &yaml("fast", "medium"),
        &[],
        &["plugin `tool` param `mode`: `medium` is not one of fast, slow"],
    );
    problems(
        &yaml("fast", "$(params.speed)"),
        &[("speed", "warp")],
        &["-p speed: param `speed`: `warp`"],
    );
    // A pipeline enum wider than the plugin's is refused (Tekton).
    let wide =
        yaml("fast", "$(params.speed)").replace("enum: [fast, slow]", "enum: [fast, slow, warp]");
    problems(&wide, &[], &["not a subset of fast, slow"]);
}

#[test]
fn index_out_of_range_and_missing_keys_are_caught_before_the_run() {
    let yaml = format!(
        "{HEAD}  params: [{{name: list, type: array, default: [x]}}, {{name: obj, type: object, default: {{k: v}}}}]\n\
         \x20 workspaces: [{{name: ws}}]\n  tasks:\n\
         \x20   - {{name: a, uses: t, params: [{{name: mode, value: fast}}, {{name: args, value: [\"$(params.list[3])\", \"$(params.obj.nope)\"]}}], \
         workspaces: [{{name: src, workspace: ws}}]}}\n"
    );
    problems(
        &yaml,
        &[],
        &[
            "index 3 is out of range: `list` has 1 item(s)",
            "`obj` has no key `nope` in this run (it has: k)",
        ],
    );
    // With more items given for this run, the same index is fine.
    assert!(
        check(
            &yaml.replace("obj.nope", "obj.k"),
            &[("list", r#"["a","b","c","d"]"#)]
        )
        .is_ok()
    );
}

#[test]
fn workspaces_subpaths_and_optional_ones() {
    let yaml = |decl: &str, binding: &str| {
        format!(
            "{HEAD}  workspaces: [{decl}]\n  tasks:\n\
             \x20   - {{name: a, uses: t, params: [{{name: mode, value: fast}}], workspaces: [{binding}]}}\n"
        )
    };
    assert!(
        check(
            &yaml(
                "{name: ws}",
                "{name: src, workspace: ws, subPath: \"$(context.run.id)\"}"
            ),
            &[]
        )
        .is_ok()
    );
    problems(
        &yaml("{name: ws}", "{name: src, workspace: ws, subPath: ../up}"),
        &[],
        &["must be relative"],
    );
    // A workspace name is a directory of the run: no way out of it.
    for bad in ["\"../../caches\"", "\"a/b\"", "\"..\"", "\"\""] {
        problems(
            &yaml(
                &format!("{{name: {bad}}}"),
                &format!("{{name: src, workspace: {bad}}}"),
            ),
            &[],
            &["must be lowercase letters, digits, `-` and `_`"],
        );
    }
    problems(
        &yaml(
            "{name: ws}",
            "{name: src, workspace: ws, subPath: \"$(params.nope)\"}",
        ),
        &[],
        &["no param `nope`"],
    );
    // A required plugin workspace on an optional pipeline workspace.
    problems(
        &yaml("{name: ws, optional: true}", "{name: src, workspace: ws}"),
        &[],
        &["plugin `tool` needs workspace `src`, but pipeline workspace `ws` is optional"],
    );
    problems(
        &yaml("{name: ws}", "{name: cache, workspace: ws}"),
        &[],
        &["needs workspace `src` bound"],
    );
}

#[test]
fn param_defaults_may_use_only_the_runs_context() {
    let yaml = |default: &str| {
        format!(
            "{HEAD}  params: [{{name: tag, default: \"{default}\"}}]\n  workspaces: [{{name: ws}}]\n  tasks:\n\
             \x20   - {{name: a, uses: t, params: [{{name: mode, value: fast}}], workspaces: [{{name: src, workspace: ws}}]}}\n"
        )
    };
    assert!(check(&yaml("build-$(context.pipelineRun.name)"), &[]).is_ok());
    problems(
        &yaml("$(context.task.name)"),
        &[],
        &["a default may only use the run's context"],
    );
    problems(
        &yaml("$(params.other)"),
        &[],
        &["a default may only use the run's context"],
    );
}

#[test]
fn on_error_continue_excludes_retries_and_grants_are_not_substituted() {
    let yaml = format!(
        "{HEAD}  workspaces: [{{name: ws}}]\n  tasks:\n\
         \x20   - name: a\n      uses: t\n      onError: continue\n      retries: 2\n      params: [{{name: mode, value: fast}}]\n      workspaces: [{{name: src, workspace: ws}}]\n      grants: {{secrets: [\"$(params.x)\"]}}\n"
    );
    let got = check(&yaml, &[]).unwrap_err();
    assert!(
        got.iter()
            .any(|g| g.contains("cannot be combined with `retries`")),
        "{got:#?}"
    );
    assert!(
        got.iter().any(|g| g.contains("grants are not substituted")),
        "{got:#?}"
    );
}

#[test]
fn timeouts_follow_tektons_rules() {
    let run = |t: &str| {
        format!(
            "apiVersion: capstan.dev/v1alpha1\nkind: PipelineRun\nmetadata: {{name: r}}\nspec:\n  {t}\n  pipelineSpec:\n    workspaces: [{{name: ws}}]\n    tasks:\n\
             \x20     - {{name: a, uses: t, params: [{{name: mode, value: fast}}], workspaces: [{{name: src, workspace: ws}}]}}\n"
        )
    };
    let plan = check(&run("timeouts: {pipeline: 1h, finally: 10m}"), &[]).unwrap();
    assert_eq!(plan.timeouts.tasks, Some(Duration::from_secs(50 * 60)));
    problems(
        &run("timeouts: {pipeline: 1h, tasks: 2h}"),
        &[],
        &["timeouts.tasks: is longer than timeouts.pipeline"],
    );
    problems(
        &run("timeouts: {pipeline: 1h, tasks: 40m, finally: 30m}"),
        &[],
        &["tasks + finally is longer than pipeline"],
    );
    problems(
        &run("timeouts: {pipeline: 1h, tasks: \"0\"}"),
        &[],
        &["needs timeouts.pipeline \"0\" too"],
    );
    problems(
        &run("timeout: 1h\n  timeouts: {pipeline: 1h}"),
        &[],
        &["not both"],
    );
    let plan = check(&run("timeout: \"0\""), &[]).unwrap();
    assert_eq!(plan.timeouts, Timeouts::default());
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = format!(
        "{HEAD}  workspaces: [{{name: ws}}, {{name: ws}}]\n  tasks:\n\
         \x20   - {{name: a, uses: t, runAfter: [ghost], params: [{{name: mode, value: fast}}], workspaces: [{{name: src, workspace: ws}}]}}\n\
         \x20   - {{name: a, uses: t, timeout: soon, params: [{{name: nope, value: x}}], workspaces: [{{name: src, workspace: other}}]}}\n"
    );
    problems(
        &yaml,
        &[],
        &[
            "workspace `ws` is declared twice",
            "task `a` is defined twice",
            "no task `ghost`",
            "plugin `tool` has no param `nope`",
            "plugin `tool` requires param `mode`",
            "declares no workspace `other`",
            "timeout",
        ],
    );
}

#[test]
fn matrix_values_from_the_run_are_text_not_references() {
    let yaml = format!(
        "{HEAD}  params: [{{name: modes, type: array}}]\n  workspaces: [{{name: ws}}]\n  tasks:\n\
         \x20   - {{name: a, uses: t, matrix: {{params: [{{name: mode, value: \"$(params.modes[*])\"}}]}}, workspaces: [{{name: src, workspace: ws}}]}}\n"
    );
    // A run value that looks like a reference: no edge to `ghost`, no
    // "no task `ghost`": it is a value (the plugin's enum refuses it when
    // the task starts).
    let plan = check(&yaml, &[("modes", r#"["$(tasks.ghost.results.x)"]"#)]).unwrap();
    assert!(plan.tasks[0].deps.is_empty());
    assert!(plan.tasks[0].literal_params.contains("mode"));
}
