//! Attack: the plugin writes the container's whole description, so it
//! tries to describe one the host should never run: privileges smuggled in
//! the image string, an image next to the granted one, a digest the grant
//! does not name, environment names the engine would misparse or the host
//! owns, a secret the grant does not give, a relative working directory, a
//! NUL byte. With `arg` set, it runs `arg` as a script in the granted
//! image instead (the tests judge what that script could do), and reports
//! its exit code and results (where a secret given to the container could
//! come back to the plugin).
use attack_kit::sdk::capstan::plugin::container::{CacheMount, EnvVar, RunSpec, SecretEnv, run};
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg, outcome};

const IMAGE: &str = "localhost/capstan-busybox:bookworm";

fn spec(image: &str) -> RunSpec {
    RunSpec {
        image: image.into(),
        script: Some("echo RAN-WHAT-SHOULD-NOT".into()),
        command: Vec::new(),
        args: Vec::new(),
        env: Vec::new(),
        secret_env: Vec::new(),
        caches: Vec::new(),
        working_dir: None,
        cpu_millis: None,
        memory_bytes: None,
        timeout_seconds: Some(20),
    }
}

fn env(name: &str) -> Vec<EnvVar> {
    vec![EnvVar {
        name: name.into(),
        value: "x".into(),
    }]
}

fn script(input: &TaskInput, body: String) -> Result<Vec<TaskResult>, TaskError> {
    let mut s = spec(IMAGE);
    s.script = Some(body);
    s.cpu_millis = Some(500);
    s.timeout_seconds = Some(15);
    s.working_dir = input.workspaces.first().map(|w| w.path.clone());
    s.secret_env = vec![SecretEnv {
        name: "TOKEN".into(),
        secret: "api-token".into(),
    }];
    let out = run(&s)?;
    let results: Vec<String> = out
        .results
        .iter()
        .map(|r| format!("{}={}", r.name, r.value))
        .collect();
    outcome(format!(
        "exit={} timed_out={} results={}",
        out.exit_code,
        out.timed_out,
        results.join(",")
    ))
}

fn run_attack(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let body = arg(&input);
    if !body.is_empty() {
        return script(&input, body);
    }
    let e = |e: TaskError| format!("{e:?}");
    let mut t = Tries::new();
    let try_spec = |t: &mut Tries, trick: &str, s: RunSpec| {
        t.must_fail(trick, run(&s).map(|o| o.exit_code).map_err(e));
    };
    for (trick, image) in [
        (
            "privileges in the image string",
            "localhost/capstan-busybox:bookworm --privileged",
        ),
        ("a host path as the image", "/var/run/docker.sock"),
        (
            "a repository next to the granted one",
            "localhost/capstan-busybox-evil:bookworm",
        ),
        (
            "a parent directory in the repository",
            "localhost/x/../capstan-busybox:bookworm",
        ),
        (
            "a digest the grant does not name",
            "localhost/capstan-busybox:bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000",
        ),
        (
            "another registry with the same path",
            "docker.io/localhost/capstan-busybox:bookworm",
        ),
    ] {
        try_spec(&mut t, trick, spec(image));
    }
    for (trick, name) in [
        ("an env name with `=`", "LD_PRELOAD=/tmp/x.so A"),
        ("the host's CAPSTAN_RESULTS", "CAPSTAN_RESULTS"),
        ("an env name with a newline", "A\nB"),
        ("an empty env name", ""),
    ] {
        let mut s = spec(IMAGE);
        s.env = env(name);
        try_spec(&mut t, trick, s);
    }
    let mut s = spec(IMAGE);
    s.secret_env = vec![SecretEnv {
        name: "T".into(),
        secret: "other-secret".into(),
    }];
    try_spec(&mut t, "a secret the grant does not give", s);
    let mut s = spec(IMAGE);
    s.env = env("TOKEN");
    s.secret_env = vec![SecretEnv {
        name: "TOKEN".into(),
        secret: "api-token".into(),
    }];
    try_spec(&mut t, "a secret's name set twice (which wins?)", s);
    let mut s = spec(IMAGE);
    s.working_dir = Some("../../etc".into());
    try_spec(&mut t, "a relative working directory", s);
    let mut s = spec(IMAGE);
    s.args = vec!["a\0--privileged".into()];
    try_spec(&mut t, "a NUL byte in an argument", s);
    for (trick, name, path) in [
        ("a cache the grant does not give", "other", "/cache"),
        ("a cache over the workspaces", "deps", "/workspace"),
        ("a cache over the root", "deps", "/"),
        ("a cache path climbing out", "deps", "/tmp/../workspace/ws"),
        ("a cache named to climb the state directory", "..", "/cache"),
    ] {
        let mut s = spec(IMAGE);
        s.caches = vec![CacheMount {
            name: name.into(),
            path: path.into(),
        }];
        try_spec(&mut t, trick, s);
    }
    let mut s = spec(IMAGE);
    s.memory_bytes = Some(0);
    try_spec(&mut t, "a memory limit of 0 (unlimited to some engines)", s);
    t.finish()
}

attack_kit::attack!(run_attack);
#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
