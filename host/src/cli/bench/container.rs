//! `capstan bench --container IMAGE`: the overhead of a container step
//! (`image:` + `script:`, through the scheduler, the `script` plugin and the
//! `container` capability) over running the same command in the same image
//! directly on the engine — through its API as any client does (create,
//! start, follow, wait, remove), and with `podman run` when podman is on
//! the PATH. Same engine, same run, medians of `--container-samples`;
//! printed as ratios (target ≤ 1.1×).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

use super::{percentile, run_pipeline};
use crate::caps::container::Engine;
use crate::scheduler::Scheduler;

#[derive(Debug, Serialize)]
pub struct ContainerBench {
    pub image: String,
    pub socket: String,
    pub samples: usize,
    /// A one-task pipeline running `true` as a container step, end to end
    /// (validate, record, dispatch, container, results): median ms.
    pub step_p50_ms: f64,
    /// The same container through the Engine API directly: median ms.
    pub engine_api_p50_ms: f64,
    pub step_vs_engine_api: f64,
    /// `podman run --rm IMAGE true`, when podman is installed: median ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub podman_run_p50_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_vs_podman_run: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// Time `samples` runs each way, interleaved (so drift hits both alike).
pub async fn container_bench(
    sched: &Scheduler,
    script_plugin: &Path,
    image: &str,
    samples: usize,
    dir: &Path,
    say: &(dyn Fn(&str) + Sync),
) -> Result<ContainerBench> {
    let engine = Engine::connect().map_err(anyhow::Error::msg)?;
    let yaml = format!(
        "apiVersion: capstan.dev/v1alpha1\nkind: Pipeline\nmetadata: {{ name: bench-container }}\nspec:\n  tasks:\n    - name: step\n      uses: {}\n      params: [{{ name: image, value: \"{image}\" }}, {{ name: args, value: [\"true\"] }}]\n      grants: {{ container: [{{ image: \"{image}\" }}] }}\n",
        script_plugin.display()
    );
    let podman = which_podman();
    say(&format!(
        "container: `true` in {image} on {}, {samples} times each: a container step, the Engine API{}",
        engine.socket,
        if podman { ", podman run" } else { "" }
    ));
    // Warm both paths (image layers in the page cache, the plugin compiled).
    run_pipeline(sched, dir, &yaml, 1).await?;
    engine
        .bare_run(image, vec!["true".into()])
        .await
        .map_err(anyhow::Error::msg)?;
    let (mut step, mut api, mut cli) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..samples {
        let t = Instant::now();
        run_pipeline(sched, dir, &yaml, 1).await?;
        step.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let code = engine
            .bare_run(image, vec!["true".into()])
            .await
            .map_err(anyhow::Error::msg)?;
        api.push(t.elapsed().as_secs_f64() * 1000.0);
        if code != 0 {
            bail!("`true` in {image} exited with {code} through the Engine API");
        }
        if podman {
            let t = Instant::now();
            let st = std::process::Command::new("podman")
                .args(["run", "--rm", "--pull=never", image, "true"])
                .stdout(std::process::Stdio::null())
                .status()
                .context("podman run")?;
            cli.push(t.elapsed().as_secs_f64() * 1000.0);
            if !st.success() {
                bail!("`podman run --rm --pull=never {image} true` failed ({st})");
            }
        }
    }
    let (step, api) = (median(step), median(api));
    let podman_run = (!cli.is_empty()).then(|| median(cli));
    Ok(ContainerBench {
        image: image.to_string(),
        socket: engine.socket.clone(),
        samples,
        step_p50_ms: step,
        engine_api_p50_ms: api,
        step_vs_engine_api: step / api,
        podman_run_p50_ms: podman_run,
        step_vs_podman_run: podman_run.map(|p| step / p),
    })
}

fn which_podman() -> bool {
    std::process::Command::new("podman")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl ContainerBench {
    /// The report lines for people.
    pub fn print(&self) {
        println!(
            "  container step       p50 {:>7.1} ms   engine API {:.1} ms   {:.2}× (target ≤ 1.1×; `true` in {}, {} runs each)",
            self.step_p50_ms,
            self.engine_api_p50_ms,
            self.step_vs_engine_api,
            self.image,
            self.samples
        );
        if let (Some(ms), Some(x)) = (self.podman_run_p50_ms, self.step_vs_podman_run) {
            println!("  vs `podman run`      p50 {ms:>7.1} ms   {x:.2}×");
        }
    }
}
