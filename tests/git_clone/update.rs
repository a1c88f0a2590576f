//! `deleteExisting: false`: updating a checkout in place.

use super::*;

/// Modification times (ns) of every file and link under `dir`, minus `.git`.
fn mtimes(dir: &Path) -> std::collections::BTreeMap<String, (i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if rel == ".git" {
                continue;
            } else if m.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, (m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

/// `deleteExisting: false` on an existing checkout fetches into it, as
/// Tekton's git-init does: only what the new commit changed is written
/// (unchanged files keep their modification times), deleted files go,
/// a locally damaged tracked file is restored, untracked files stay, and
/// the result is what git has (files, index, fsck) — shallow, then
/// deepened to the full history.
#[tokio::test]
async fn an_existing_checkout_is_updated_in_place() {
    let server = GitServer::start(true);
    let (bare, work) = sample_repo(&server, "inc.git");
    let url = server.url("inc.git");
    let env = TestEnv::new();
    let dir = tempfile::tempdir().unwrap();
    let opts = || capstan::scheduler::RunOptions {
        workspaces: [("src".to_string(), dir.path().to_path_buf())].into(),
        ..Default::default()
    };
    let yaml = |depth: &str| {
        pipeline(
            &url,
            &server.origin(),
            &(param("deleteExisting", "false") + &param("depth", depth)),
            "",
        )
    };
    let run = env.run_with(&yaml("1"), &[], opts()).await;
    check_clone(&run, &bare, "main");
    let before = mtimes(dir.path());

    let w = work.path();
    std::fs::write(w.join("README.md"), "fifth\n").unwrap();
    std::fs::write(w.join("added.txt"), "new file\n").unwrap();
    std::fs::remove_file(w.join("src/nested/lib.rs")).unwrap();
    git(w, &["add", "-A"]);
    git(w, &["commit", "-q", "-m", "five"]);
    server.push(w, &bare, &["main"]);
    // Local damage to a file the commit does not touch, and an untracked
    // build product.
    std::fs::write(dir.path().join("build.sh"), "tampered\n").unwrap();
    std::fs::write(dir.path().join("untracked.o"), "object\n").unwrap();

    let run = env.run_with(&yaml("1"), &[], opts()).await;
    assert_eq!(
        run.status_of("clone"),
        TaskStatus::Succeeded,
        "{}",
        run.log_text()
    );
    // README.md and added.txt from the commit, build.sh restored; the
    // rest (two symlinks, the submodule directory) left alone; lib.rs
    // removed.
    assert!(
        run.log_text()
            .contains("updated the checkout in place: 3 file(s) written, 3 unchanged, 1 removed"),
        "{}",
        run.log_text()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("untracked.o")).unwrap(),
        "object\n"
    );
    std::fs::remove_file(dir.path().join("untracked.o")).unwrap();
    check_clone(&run, &bare, "main");
    let after = mtimes(dir.path());
    for (path, time) in &before {
        let touched = ["README.md", "build.sh", "src/nested/lib.rs"].contains(&path.as_str());
        if !touched {
            assert_eq!(after.get(path), Some(time), "{path} was left alone");
        }
    }
    assert!(!after.contains_key("src/nested/lib.rs"));
    assert!(after.contains_key("added.txt"));

    // Nothing new: nothing fetched, nothing written.
    let run = env.run_with(&yaml("1"), &[], opts()).await;
    assert!(
        run.log_text().contains("nothing to fetch"),
        "{}",
        run.log_text()
    );
    assert_eq!(mtimes(dir.path()), after);

    // Depth 0 deepens the shallow checkout to the whole history.
    let run = env.run_with(&yaml("0"), &[], opts()).await;
    let ws = check_clone(&run, &bare, "main");
    assert_eq!(
        git(&ws, &["rev-list", "--count", "HEAD"]),
        git(&bare, &["rev-list", "--count", "main"])
    );
    assert!(!ws.join(".git/shallow").exists());
}
