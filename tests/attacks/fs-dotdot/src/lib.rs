//! Attack: `..` paths from the workspace to a file next to it on the host
//! (`arg` is its name, the test puts it beside the workspace directory).
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    std::fs::create_dir_all("/workspace/ws/sub/deeper").ok();
    for p in [
        format!("/workspace/ws/../{name}"),
        format!("/workspace/ws/sub/../../{name}"),
        format!("/workspace/ws/sub/deeper/../../../{name}"),
        format!("/workspace/ws/./../{name}"),
        format!("/workspace/../ws/../{name}"),
        "/workspace/ws/../../../../../../../../etc/passwd".to_string(),
        "/workspace/../../etc/passwd".to_string(),
        format!("../{name}"),
        "../../../../etc/passwd".to_string(),
        format!("/workspace/ws//..//{name}"),
    ] {
        t.must_fail(&format!("read {p}"), std::fs::read(&p).map(|b| b.len()));
    }
    t.must_fail(
        "write /workspace/ws/../dropped",
        std::fs::write("/workspace/ws/../dropped", b"pwned"),
    );
    t.must_fail(
        "list /workspace/ws/..",
        std::fs::read_dir("/workspace/ws/..").map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.file_name()))
                .collect::<Vec<_>>()
        }),
    );
    t.must_fail(
        "chdir-style open of /workspace/ws/sub/../../..",
        std::fs::metadata("/workspace/ws/sub/../../..").map(|m| m.is_dir()),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
