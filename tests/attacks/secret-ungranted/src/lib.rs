//! Attack: open secrets the task was not granted (by name, by path-like and
//! empty names, by case variants), and reveal `arg`, which is granted
//! without `reveal`.
use attack_kit::sdk::capstan::plugin::secrets;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let granted = arg(&input);
    let e = |e: TaskError| format!("{e:?}");
    for name in [
        "admin-token",
        "",
        "../admin-token",
        "secrets/admin-token",
        "*",
        &granted.to_uppercase(),
        &format!("{granted} "),
        &format!("{granted}\0"),
    ] {
        t.must_fail(
            &format!("open {name:?}"),
            secrets::open(name).map(|s| s.name()).map_err(e),
        );
    }
    match secrets::open(&granted) {
        Ok(s) => t.must_fail(
            "reveal without the reveal grant",
            secrets::reveal(&s).map(|v| v.len()).map_err(e),
        ),
        Err(err) => {
            return Err(TaskError::Failed(format!(
                "the granted secret did not open: {err:?}"
            )));
        }
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
