//! `remote-shell`: build on a machine reached over SSH — the Tekton
//! remote-shell recipe (`sshpass … ssh -o StrictHostKeyChecking=no`, rsync
//! up, run, rsync back) without its flaws: the host holds the credentials
//! and verifies host keys; the plugin only sees a session handle.
//!
//! Flow: create the remote workspace → send new/changed files up in one tar
//! stream and mirror deletions ([`plan`]) → run the script there with the
//! env → bring the requested paths back (a tar, unpacked inside the
//! workspace only) → results.

pub mod plan;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use capstan_plugin_sdk::capstan::plugin::files;
use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::ssh;
use capstan_plugin_sdk::capstan::plugin::types::{ParamValue, TaskError, TaskInput, TaskResult};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{param_str, workspace};

use plan::{FileState, MANIFEST};

struct RemoteShell;

fn invalid(m: impl Into<String>) -> TaskError {
    TaskError::InvalidParams(m.into())
}

fn failed(m: impl Into<String>) -> TaskError {
    TaskError::Failed(m.into())
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn bool_param(input: &TaskInput, name: &str, default: &str) -> Result<bool, TaskError> {
    match param_str(input, name, Some(default))?.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        v => Err(invalid(format!(
            "`{name}` must be true or false, not `{v}`"
        ))),
    }
}

/// Every regular file under `root` (relative paths), minus excludes: one
/// host call (`files.scan`) rather than one per file.
fn scan(root: &Path, exclude: &[String]) -> Result<BTreeMap<String, FileState>, TaskError> {
    let mut out = BTreeMap::new();
    for f in files::scan(&root.to_string_lossy())? {
        if f.path == MANIFEST || exclude.iter().any(|g| plan::glob(g, &f.path)) {
            continue;
        }
        out.insert(
            f.path,
            FileState {
                size: f.size,
                mtime: f.mtime_ns,
                executable: f.executable,
            },
        );
    }
    Ok(out)
}

fn run_checked(s: &ssh::Session, what: &str, command: &str) -> Result<ssh::ExecResult, TaskError> {
    let r = s.exec(command, &[])?;
    if r.exit_code != 0 {
        return Err(failed(format!(
            "{what} failed (exit {}): {}",
            r.exit_code,
            r.stderr_tail.trim()
        )));
    }
    Ok(r)
}

/// An archive entry's modification time: the PAX `mtime` record (with
/// its fraction) when there is one, else the header's whole seconds.
fn entry_mtime<R: Read>(entry: &mut tar::Entry<'_, R>) -> std::time::SystemTime {
    let pax = entry.pax_extensions().ok().flatten().and_then(|exts| {
        exts.filter_map(Result::ok)
            .find(|e| e.key() == Ok("mtime"))
            .and_then(|e| e.value().ok().map(str::to_string))
    });
    let secs = entry.header().mtime().unwrap_or(0);
    let at = pax
        .and_then(|v| plan::parse_pax_time(&v))
        .unwrap_or((secs, 0));
    std::time::UNIX_EPOCH + std::time::Duration::new(at.0, at.1)
}

impl Guest for RemoteShell {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let host = param_str(&input, "host", None)?;
        let port: u16 = param_str(&input, "port", Some("22"))?
            .parse()
            .map_err(|_| invalid("`port` must be a port number"))?;
        let user = param_str(&input, "user", None)?;
        let remote = param_str(&input, "remote-workspace", None)?;
        if remote.is_empty() || remote == "/" || remote.split('/').any(|s| s == "..") {
            return Err(invalid(
                "`remote-workspace` must be a directory path without `..`",
            ));
        }
        let script = param_str(&input, "script", None)?;
        let env: Vec<(String, String)> = match input
            .params
            .iter()
            .find(|p| p.name == "env")
            .map(|p| &p.value)
        {
            Some(ParamValue::Object(o)) => o.clone(),
            None => vec![],
            Some(_) => return Err(invalid("`env` must be an object")),
        };
        let back = capstan_plugin_sdk::param_list(&input, "sync-back")?;
        for p in &back {
            plan::check_back_path(p).map_err(invalid)?;
        }
        let exclude = capstan_plugin_sdk::param_list(&input, "exclude")?;
        let root = PathBuf::from(workspace(&input, "source")?);
        let ws = quote(&remote);

        let s = ssh::connect(&host, port, &user)?;
        run_checked(
            &s,
            "creating the remote workspace",
            &format!("mkdir -p {ws}"),
        )?;

        let mut bytes_up = 0u64;
        // What the remote holds after the sync up: the manifest's path and
        // contents, updated below with the files brought back.
        let mut synced: Option<(String, BTreeMap<String, FileState>)> = None;
        if bool_param(&input, "sync-up", "true")? {
            progress("scanning", 0, None);
            let local = scan(&root, &exclude)?;
            log(Level::Debug, &format!("scanned {} files", local.len()));
            let manifest = format!("{}/{MANIFEST}", remote.trim_end_matches('/'));
            let exists = s
                .exec(&format!("test -f {}", quote(&manifest)), &[])?
                .exit_code
                == 0;
            let known = if exists {
                plan::parse_manifest(&String::from_utf8_lossy(&s.get(&manifest)?))
            } else {
                BTreeMap::new()
            };
            let p = plan::plan(&local, &known, bool_param(&input, "delete", "true")?);
            // A few files are named (the usual one-commit case).
            let named = if (1..=5).contains(&p.upload.len()) {
                format!(" ({})", p.upload.join(", "))
            } else {
                String::new()
            };
            log(
                Level::Info,
                &format!(
                    "sync up: {} to send{named}, {} to delete, {} unchanged",
                    p.upload.len(),
                    p.delete.len(),
                    local.len() - p.upload.len()
                ),
            );
            if !p.upload.is_empty() {
                bytes_up = p.upload.iter().map(|path| local[path].size).sum();
                // The host reads the files and streams the tar straight
                // into the remote `tar -x` (reading overlaps sending).
                let r = s.exec_files(
                    &format!("tar -xf - -C {ws}"),
                    &[],
                    &root.to_string_lossy(),
                    &p.upload,
                )?;
                log(Level::Debug, "unpacked on the remote side");
                if r.exit_code != 0 {
                    return Err(failed(format!(
                        "unpacking on the remote side failed (exit {}): {}",
                        r.exit_code,
                        r.stderr_tail.trim()
                    )));
                }
            }
            for chunk in p.delete.chunks(200) {
                let list: Vec<String> = chunk.iter().map(|p| quote(p)).collect();
                run_checked(
                    &s,
                    "deleting remote files",
                    &format!("cd {ws} && rm -f -- {}", list.join(" ")),
                )?;
            }
            s.put(&manifest, plan::render_manifest(&local).as_bytes(), 0o644)?;
            synced = Some((manifest, local));
        }

        log(Level::Debug, "sync up done");
        progress("running the script", 0, None);
        let r = s.exec(&format!("cd {ws} && {script}"), &env)?;
        if r.exit_code != 0 {
            return Err(failed(format!(
                "the remote script exited with {}: {}",
                r.exit_code,
                r.stderr_tail.trim()
            )));
        }

        let mut bytes_back = 0u64;
        if !back.is_empty() {
            progress("sync back", 0, None);
            let tmp = format!("{}.capstan-back.tar", remote.trim_end_matches('/'));
            let paths: Vec<String> = back.iter().map(|p| quote(p)).collect();
            run_checked(
                &s,
                "packing the results",
                // PAX keeps modification times to the nanosecond (GNU tar
                // and bsdtar both write it).
                &format!(
                    "cd {ws} && tar --format=pax -cf {t} --exclude=./{MANIFEST} -- {}",
                    paths.join(" "),
                    t = quote(&tmp)
                ),
            )?;
            let data = s.get(&tmp)?;
            let _ = s.exec(&format!("rm -f {}", quote(&tmp)), &[]);
            let mut brought = Vec::new();
            let mut archive = tar::Archive::new(data.as_slice());
            for entry in archive
                .entries()
                .map_err(|e| failed(format!("results archive: {e}")))?
            {
                let mut entry = entry.map_err(|e| failed(format!("results archive: {e}")))?;
                let path = entry
                    .path()
                    .map_err(|e| failed(e.to_string()))?
                    .into_owned();
                let rel = path.to_string_lossy().trim_start_matches("./").to_string();
                if rel.is_empty() {
                    continue;
                }
                plan::check_back_path(&rel).map_err(failed)?;
                let target = root.join(&rel);
                match entry.header().entry_type() {
                    tar::EntryType::Directory => {
                        std::fs::create_dir_all(&target)
                            .map_err(|e| failed(format!("{rel}: {e}")))?;
                    }
                    tar::EntryType::Regular => {
                        if let Some(parent) = target.parent() {
                            std::fs::create_dir_all(parent)
                                .map_err(|e| failed(format!("{rel}: {e}")))?;
                        }
                        let mut buf = Vec::new();
                        entry
                            .read_to_end(&mut buf)
                            .map_err(|e| failed(format!("{rel}: {e}")))?;
                        bytes_back += buf.len() as u64;
                        let mtime = entry_mtime(&mut entry);
                        let file = std::fs::File::create(&target)
                            .and_then(|mut f| std::io::Write::write_all(&mut f, &buf).map(|_| f))
                            .map_err(|e| failed(format!("writing {rel}: {e}")))?;
                        // Keep the build machine's time: the next sync
                        // sees the file as unchanged, and make as built.
                        file.set_modified(mtime)
                            .map_err(|e| failed(format!("setting the time of {rel}: {e}")))?;
                        let exec = entry.header().mode().unwrap_or(0) & 0o111 != 0;
                        files::set_executable(&target.to_string_lossy(), exec)?;
                        brought.push((rel, exec));
                    }
                    other => log(
                        Level::Warn,
                        &format!(
                            "sync back: skipping {rel} ({other:?}; only files and directories come back)"
                        ),
                    ),
                }
            }
            // The files brought back are now the same on both sides: record
            // them, so the next sync does not send them up again.
            if let Some((manifest, mut known)) = synced
                && !brought.is_empty()
            {
                // Their state as the local side now sees it: one stat of
                // just those files, not a rescan of the workspace.
                brought.retain(|(rel, _)| {
                    rel != MANIFEST && !exclude.iter().any(|g| plan::glob(g, rel))
                });
                let paths: Vec<String> = brought.iter().map(|(rel, _)| rel.clone()).collect();
                let stats = files::stat(&root.to_string_lossy(), &paths)?;
                for ((rel, executable), stat) in brought.into_iter().zip(stats) {
                    if let Some(st) = stat {
                        known.insert(
                            rel,
                            FileState {
                                size: st.size,
                                mtime: st.mtime_ns,
                                executable,
                            },
                        );
                    }
                }
                s.put(&manifest, plan::render_manifest(&known).as_bytes(), 0o644)?;
            }
        }
        Ok(vec![
            TaskResult {
                name: "exit-code".into(),
                value: r.exit_code.to_string(),
            },
            TaskResult {
                name: "remote-workspace".into(),
                value: remote,
            },
            TaskResult {
                name: "bytes-up".into(),
                value: bytes_up.to_string(),
            },
            TaskResult {
                name: "bytes-back".into(),
                value: bytes_back.to_string(),
            },
        ])
    }
}

capstan_plugin_sdk::export!(RemoteShell with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST_SECTION: [u8; include_bytes!("../capstan.toml").len()] =
    *include_bytes!("../capstan.toml");
