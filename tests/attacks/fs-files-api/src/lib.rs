//! Attack: the `files` interface runs on the host, so trick it (scan,
//! pack, is/set-executable, write-files): escape
//! paths, absolute paths, a planted symlink (`abs` → an outside file;
//! `root` → `/`), and a read-only workspace. `arg` is the outside file's
//! name (beside the workspace).
use attack_kit::sdk::capstan::plugin::files;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};
use attack_kit::{Tries, arg};

fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let name = arg(&input);
    let e = |e: TaskError| format!("{e:?}");
    t.must_fail(
        "scan /workspace/ws/..",
        files::scan("/workspace/ws/..").map_err(e),
    );
    t.must_fail("scan /", files::scan("/").map_err(e));
    t.must_fail("scan /etc", files::scan("/etc").map_err(e));
    t.must_fail(
        "scan ws/root (symlink to /)",
        files::scan("/workspace/ws/root").map_err(e),
    );
    match files::scan("/workspace/ws") {
        Ok(list) => {
            let names: Vec<String> = list.into_iter().map(|f| f.path).collect();
            let escaped = names
                .iter()
                .any(|n| n.contains(&name) || n.contains("passwd") || n.starts_with("root/"));
            t.check("scan ws lists only ws files", escaped, format!("{names:?}"));
        }
        Err(err) => t.check("scan ws", false, e(err)),
    }
    for (dir, path) in [
        ("/workspace/ws", format!("../{name}")),
        ("/workspace/ws", "/etc/passwd".to_string()),
        ("/workspace/ws", "abs".to_string()),
        ("/workspace/ws", "root/etc/passwd".to_string()),
        ("/workspace/ws/..", name.clone()),
    ] {
        t.must_fail(
            &format!("pack {dir} [{path}]"),
            files::pack(dir, std::slice::from_ref(&path))
                .map(|b| b.len())
                .map_err(e),
        );
    }
    t.must_fail(
        "is-executable ../outside",
        files::is_executable(&format!("/workspace/ws/../{name}")).map_err(e),
    );
    t.must_fail(
        "is-executable /etc/passwd",
        files::is_executable("/etc/passwd").map_err(e),
    );
    t.must_fail(
        "set-executable on the planted symlink",
        files::set_executable("/workspace/ws/abs", true).map_err(e),
    );
    t.must_fail(
        "set-executable ../outside",
        files::set_executable(&format!("/workspace/ws/../{name}"), true).map_err(e),
    );
    t.must_fail(
        "set-executable in the read-only workspace",
        files::set_executable("/workspace/ro/file", true).map_err(e),
    );
    // write-files: through the planted links, out by `..`, absolute, into
    // the read-only workspace, from a directory outside.
    let new = |path: String| files::NewFile {
        path,
        contents: b"pwned\n".to_vec(),
        executable: true,
    };
    for (dir, path) in [
        ("/workspace/ws", format!("../{name}")),
        ("/workspace/ws", "abs".to_string()),
        ("/workspace/ws", "root/tmp/capstan-pwned".to_string()),
        ("/workspace/ws", "/etc/capstan-pwned".to_string()),
        ("/workspace/ws", "a/../../x".to_string()),
        ("/workspace/ws/..", name.clone()),
        ("/workspace/ws/root", "tmp/capstan-pwned".to_string()),
        ("/workspace/ro", "file".to_string()),
        ("/", "tmp/capstan-pwned".to_string()),
    ] {
        t.must_fail(
            &format!("write-files {dir} [{path}]"),
            files::write_files(dir, &[new(path.clone())]).map_err(e),
        );
    }
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
