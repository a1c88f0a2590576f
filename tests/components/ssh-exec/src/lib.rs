//! Test component: one SSH session: put, exec, get.
use capstan_plugin_sdk::capstan::plugin::ssh;
use capstan_plugin_sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::param_str;

struct SshExec;

impl Guest for SshExec {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let host = param_str(&input, "host", None)?;
        let port: u16 = param_str(&input, "port", None)?
            .parse()
            .map_err(|_| TaskError::InvalidParams("port".into()))?;
        let user = param_str(&input, "user", None)?;
        let command = param_str(&input, "command", None)?;
        let s = ssh::connect(&host, port, &user)?;
        let path = format!("/tmp/capstan-ssh-exec-{}/probe.txt", input.info.run_id);
        s.put(&path, b"round trip\n", 0o640)?;
        let r = s.exec(&command, &[("GREETING".into(), "it's here".into())])?;
        let back = s.get(&path)?;
        Ok(vec![
            TaskResult {
                name: "exit-code".into(),
                value: r.exit_code.to_string(),
            },
            TaskResult {
                name: "stdout".into(),
                value: r.stdout_tail,
            },
            TaskResult {
                name: "roundtrip".into(),
                value: String::from_utf8_lossy(&back).into_owned(),
            },
        ])
    }
}

capstan_plugin_sdk::export!(SshExec with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
