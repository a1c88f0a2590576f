//! Attack: change the read-only workspace `ro` (which holds `file` and
//! `dir/`): create, overwrite, append, truncate, mkdir, remove, rename,
//! symlink, hard link, set-executable.
use attack_kit::Tries;
use attack_kit::sdk::capstan::plugin::files;
use attack_kit::sdk::capstan::plugin::types::{TaskError, TaskInput, TaskResult};

fn run(_input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
    let mut t = Tries::new();
    let ro = "/workspace/ro";
    t.must_fail("create", std::fs::write(format!("{ro}/new"), b"pwned"));
    t.must_fail("overwrite", std::fs::write(format!("{ro}/file"), b"pwned"));
    t.must_fail(
        "append",
        std::fs::OpenOptions::new()
            .append(true)
            .open(format!("{ro}/file")),
    );
    t.must_fail(
        "truncate",
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(format!("{ro}/file")),
    );
    t.must_fail(
        "set_len via read handle",
        std::fs::File::open(format!("{ro}/file")).and_then(|f| f.set_len(0)),
    );
    t.must_fail("mkdir", std::fs::create_dir(format!("{ro}/newdir")));
    t.must_fail("remove file", std::fs::remove_file(format!("{ro}/file")));
    t.must_fail("remove dir", std::fs::remove_dir_all(format!("{ro}/dir")));
    t.must_fail(
        "rename",
        std::fs::rename(format!("{ro}/file"), format!("{ro}/moved")),
    );
    t.must_fail(
        "rename into rw",
        std::fs::rename(format!("{ro}/file"), "/workspace/ws/stolen"),
    );
    #[allow(deprecated)]
    let link = std::fs::soft_link("file", format!("{ro}/link"));
    t.must_fail("symlink", link);
    t.must_fail(
        "hard link",
        std::fs::hard_link(format!("{ro}/file"), format!("{ro}/h")),
    );
    t.must_fail(
        "set mtime",
        std::fs::File::open(format!("{ro}/file"))
            .and_then(|f| f.set_modified(std::time::SystemTime::UNIX_EPOCH)),
    );
    t.must_fail(
        "files.set-executable",
        files::set_executable(&format!("{ro}/file"), true).map_err(|e| format!("{e:?}")),
    );
    t.finish()
}

attack_kit::attack!(run);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
