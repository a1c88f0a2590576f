//! Runs written straight into a store, for the UI's paging test and its
//! benchmark: many runs, or one run with a wide DAG.

use capstan::store::{NewTask, RunSpec, RunStatus, RunStore, TaskStatus, TriggeredBy};

fn spec() -> RunSpec {
    RunSpec {
        file: "seed.yaml".into(),
        source: String::new(),
        base_dir: "/".into(),
        overrides: vec![],
        workspaces: Default::default(),
        plugins: Default::default(),
        plugin_versions: Default::default(),
        parallelism: 1,
        kube: None,
        rerun_of: None,
        triggered_by: Some(TriggeredBy::Cli {
            user: "seed".into(),
        }),
        trigger: Default::default(),
    }
}

/// `n` runs of `pipelines` pipelines (`seed-0`…), every third Failed, the
/// rest Succeeded.
pub fn runs(store: &RunStore, n: usize, pipelines: usize) {
    let spec = spec();
    for i in 0..n {
        let id = format!("seed-{i:06}");
        store
            .create_run(&id, &format!("seed-{}", i % pipelines.max(1)), &spec, &[])
            .unwrap();
        let status = if i % 3 == 0 {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        store.set_run_status(&id, status, None).unwrap();
    }
}

/// One run `id` of `n` tasks: ten roots, then each task after the one a
/// tenth of its index (a wide, deep DAG), a `finally` task, statuses mixed.
pub fn wide_run(store: &RunStore, id: &str, n: usize) {
    let mut tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask {
            name: format!("t{i}"),
            finally: false,
            deps: if i < 10 {
                vec![]
            } else {
                vec![format!("t{}", i / 10)]
            },
            matrix_of: None,
        })
        .collect();
    tasks.push(NewTask {
        name: "report".into(),
        finally: true,
        ..Default::default()
    });
    store.create_run(id, "wide", &spec(), &tasks).unwrap();
    store.set_run_status(id, RunStatus::Running, None).unwrap();
    for i in 0..n {
        let status = match i % 4 {
            0 => TaskStatus::Succeeded,
            1 => TaskStatus::Running,
            2 => TaskStatus::Failed,
            _ => continue,
        };
        store
            .set_task_skipped(id, &format!("t{i}"), status, None, None)
            .unwrap();
    }
}
