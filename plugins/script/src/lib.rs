//! `script`: run a script or command in a container image through the
//! host's `container` capability. The plugin only describes the run
//! (image, script, args, env, limits); the host checks the image against
//! the task's grants, mounts the task's workspaces and runs it.
//!
//! The parsing lives in plain functions with native unit tests.

use capstan_plugin_sdk::capstan::plugin::container::{
    self, CacheMount, EnvVar, RunSpec, SecretEnv,
};
use capstan_plugin_sdk::capstan::plugin::log::{Level, log};
use capstan_plugin_sdk::capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{param_list, param_str, seconds};

struct Script;

/// `500m` → 500, `2` → 2000, `0.5` → 500 (thousandths of a core).
pub fn cpu_millis(s: &str) -> Result<Option<u32>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("cpu `{s}`: `500m`, `2` or `0.5` (cores)");
    let millis = match s.strip_suffix('m') {
        Some(m) => m.parse::<u32>().map_err(|_| bad())?,
        None => {
            let cores: f64 = s.parse().map_err(|_| bad())?;
            if !(cores.is_finite() && cores > 0.0 && cores <= 1024.0) {
                return Err(bad());
            }
            (cores * 1000.0).round() as u32
        }
    };
    if millis == 0 {
        return Err(bad());
    }
    Ok(Some(millis))
}

/// `512Mi`, `2Gi`, `1G`, `1000000` → bytes (Kubernetes quantities).
pub fn memory_bytes(s: &str) -> Result<Option<u64>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("memory `{s}`: a size like `512Mi`, `2Gi` or bytes");
    let units: &[(&str, u64)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    let n: u64 = num.parse().map_err(|_| bad())?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(bad()),
        Some(b) => Ok(Some(b)),
    }
}

/// An object param as (key, value) pairs.
fn object(input: &TaskInput, name: &str) -> Result<Vec<(String, String)>, TaskError> {
    match input
        .params
        .iter()
        .find(|p| p.name == name)
        .map(|p| &p.value)
    {
        None => Ok(Vec::new()),
        Some(ParamValue::Object(kv)) => Ok(kv.clone()),
        Some(_) => Err(TaskError::InvalidParams(format!(
            "`{name}` must be an object"
        ))),
    }
}

fn spec(input: &TaskInput) -> Result<RunSpec, TaskError> {
    let invalid = TaskError::InvalidParams;
    let script = param_str(input, "script", Some(""))?;
    let command = param_list(input, "command")?;
    if !script.is_empty() && !command.is_empty() {
        return Err(invalid(
            "`command` and `script` cannot both be set (as in Tekton)".into(),
        ));
    }
    let working_dir = match param_str(input, "workingDir", Some(""))?.as_str() {
        "" => input
            .workspaces
            .iter()
            .find(|w| w.name == "source")
            .map(|w| w.path.clone()),
        w => Some(w.to_string()),
    };
    Ok(RunSpec {
        image: param_str(input, "image", None)?,
        script: (!script.is_empty()).then_some(script),
        command,
        args: param_list(input, "args")?,
        env: object(input, "env")?
            .into_iter()
            .map(|(name, value)| EnvVar { name, value })
            .collect(),
        secret_env: object(input, "secretEnv")?
            .into_iter()
            .map(|(name, secret)| SecretEnv { name, secret })
            .collect(),
        caches: object(input, "caches")?
            .into_iter()
            .map(|(name, path)| CacheMount { name, path })
            .collect(),
        working_dir,
        cpu_millis: cpu_millis(&param_str(input, "cpu", Some(""))?).map_err(invalid)?,
        memory_bytes: memory_bytes(&param_str(input, "memory", Some(""))?).map_err(invalid)?,
        timeout_seconds: seconds(&param_str(input, "timeout", Some(""))?).map_err(invalid)?,
    })
}

impl Guest for Script {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let spec = spec(&input)?;
        let image = spec.image.clone();
        let outcome = container::run(&spec)?;
        if outcome.timed_out {
            return Err(TaskError::Failed(format!(
                "the container ({image}) was killed: its timeout passed"
            )));
        }
        if outcome.exit_code != 0 {
            return Err(TaskError::Failed(format!(
                "the script exited with {} in {image}",
                outcome.exit_code
            )));
        }
        log(Level::Info, &format!("the script succeeded in {image}"));
        // The task's declared results, as the command wrote them (the host
        // refuses any the task does not declare).
        let mut results: Vec<TaskResult> = outcome
            .results
            .into_iter()
            .filter(|r| r.name != "exit-code")
            .collect();
        results.push(TaskResult {
            name: "exit-code".into(),
            value: outcome.exit_code.to_string(),
        });
        Ok(results)
    }
}

capstan_plugin_sdk::export!(Script with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_as_kubernetes_writes_them() {
        assert_eq!(cpu_millis("500m"), Ok(Some(500)));
        assert_eq!(cpu_millis("2"), Ok(Some(2000)));
        assert_eq!(cpu_millis("0.25"), Ok(Some(250)));
        assert_eq!(cpu_millis(""), Ok(None));
        for bad in ["0", "0m", "-1", "x", "NaN", "inf", "1e9"] {
            assert!(cpu_millis(bad).is_err(), "{bad}");
        }
        assert_eq!(memory_bytes("512Mi"), Ok(Some(512 << 20)));
        assert_eq!(memory_bytes("1G"), Ok(Some(1_000_000_000)));
        assert_eq!(memory_bytes("4096"), Ok(Some(4096)));
        for bad in ["0", "1Xi", "-5Mi", "99999999999999Ti"] {
            assert!(memory_bytes(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("90s"), Ok(Some(90)));
        assert_eq!(seconds("1h30m"), Ok(Some(5400)));
        for bad in ["10", "m", "0s", "1y", "99999999999d"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }
}
