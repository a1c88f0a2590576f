//! `git-clone`: clone a repository over git smart HTTP inside the sandbox.
//!
//! The git protocol runs here, in the plugin; the host only carries HTTP to
//! the one authority the pipeline granted (and adds its credentials). The
//! logic lives in plain modules with native unit tests: [`protocol`]
//! (smart HTTP v2 with v0 fallback), [`pack`] (index + object reads),
//! [`worktree`] (checkout + `.git`), [`clone`]; this file is the binding.

pub mod clone;
pub mod gitdir;
pub mod gitmodules;
pub mod idx;
pub mod local;
pub mod pack;
pub mod protocol;
pub mod refs;
pub mod refspec;
pub mod sparse;
pub mod submodules;
pub mod update;
pub mod worktree;

use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::types::{
    Denial, GrantLayer, TaskError, TaskInput, TaskResult,
};
use capstan_plugin_sdk::exports::capstan::plugin::task::Guest;
use capstan_plugin_sdk::{http, param_str, workspace};

struct GitClone;

/// The protocol's HTTP over wasi:http.
struct WasiHttp {
    denied: Option<String>,
}

impl WasiHttp {
    fn call(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        match http::send(method, url, headers, body) {
            Ok(r) => {
                let status = r.status;
                let body = r.bytes(2 << 30).map_err(|e| e.to_string())?;
                Ok((status, body))
            }
            Err(http::Error::Denied(a)) => {
                self.denied = Some(a.clone());
                Err(http::Error::Denied(a).to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

impl protocol::Http for WasiHttp {
    fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
        self.call("GET", url, headers, None)
    }

    fn post(
        &mut self,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Vec<u8>), String> {
        self.call("POST", url, headers, Some(body))
    }
}

struct HostReport;

impl clone::Report for HostReport {
    fn progress(&mut self, step: &str, current: u64, total: Option<u64>) {
        progress(step, current, total);
    }

    fn log(&mut self, message: &str) {
        log(Level::Info, message);
    }

    fn set_executable(&mut self, path: &std::path::Path) -> Result<bool, String> {
        let p = path.to_str().ok_or("non-UTF-8 path")?;
        capstan_plugin_sdk::capstan::plugin::files::set_executable(p, true)
            .map_err(|e| format!("making {p} executable: {e:?}"))?;
        Ok(true)
    }

    fn stat(
        &mut self,
        root: &std::path::Path,
        paths: &[String],
    ) -> Result<Vec<Option<clone::FileStat>>, String> {
        let dir = root.to_str().ok_or("non-UTF-8 path")?;
        let mut out = Vec::with_capacity(paths.len());
        // In slices, well under the host's per-call bound.
        for chunk in paths.chunks(4096) {
            let stats = capstan_plugin_sdk::capstan::plugin::files::stat(dir, chunk)
                .map_err(|e| format!("reading the checkout's stat data: {e:?}"))?;
            out.extend(stats.into_iter().map(|s| {
                s.map(|s| clone::FileStat {
                    mtime_ns: s.mtime_ns,
                    ctime_ns: s.ctime_ns,
                    dev: s.dev,
                    ino: s.ino,
                    uid: s.uid,
                    gid: s.gid,
                    size: s.size,
                })
            }));
        }
        Ok(out)
    }
}

fn bool_param(input: &TaskInput, name: &str, default: &str) -> Result<bool, TaskError> {
    match param_str(input, name, Some(default))?.as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(TaskError::InvalidParams(format!(
            "`{name}` must be true or false, not `{other}`"
        ))),
    }
}

fn git_clone_sparse(input: &TaskInput) -> Result<Option<sparse::Sparse>, TaskError> {
    sparse::Sparse::parse(&param_str(input, "sparseCheckoutDirectories", Some(""))?)
        .map_err(TaskError::InvalidParams)
}

/// URL forms this plugin does not clone, with what to do instead.
fn unsupported_url(url: &str) -> Option<String> {
    let scp_like = !url.contains("://")
        && url
            .split_once(':')
            .is_some_and(|(host, _)| !host.is_empty() && !host.contains('/'));
    if url.starts_with("ssh://") || url.starts_with("git+ssh://") || scp_like {
        return Some(format!(
            "`{url}`: SSH remotes are not supported yet; use the repository's https:// URL \
             with a token in grants.http"
        ));
    }
    if url.starts_with("git://") {
        return Some(format!(
            "`{url}`: the unauthenticated git:// protocol is not supported; use https://"
        ));
    }
    None
}

impl Guest for GitClone {
    fn run(input: TaskInput) -> Result<Vec<TaskResult>, TaskError> {
        let url = param_str(&input, "url", None)?;
        if !bool_param(&input, "sslVerify", "true")? {
            return Err(TaskError::InvalidParams(
                "sslVerify=false is refused: the host always verifies TLS certificates".into(),
            ));
        }
        let depth = param_str(&input, "depth", Some("1"))?
            .parse::<u32>()
            .map_err(|_| TaskError::InvalidParams("`depth` must be a whole number".into()))?;
        let sub = param_str(&input, "subdirectory", Some(""))?;
        if sub.split('/').any(|s| s == "..") || sub.starts_with('/') {
            return Err(TaskError::InvalidParams(
                "`subdirectory` must stay inside the workspace".into(),
            ));
        }
        let root = std::path::PathBuf::from(workspace(&input, "output")?);
        let dir = if sub.is_empty() {
            root
        } else {
            root.join(&sub)
        };
        let opts = clone::Options {
            delete_existing: bool_param(&input, "deleteExisting", "true")?,
            submodules: bool_param(&input, "submodules", "true")?,
            refspec: param_str(&input, "refspec", Some(""))?,
            sparse: git_clone_sparse(&input)?,
            ..clone::Options::new(&url, &param_str(&input, "revision", Some(""))?, depth)
        };
        if let Some(why) = unsupported_url(&url) {
            return Err(TaskError::InvalidParams(why));
        }
        let mut transport = WasiHttp { denied: None };
        let result = match url.strip_prefix("file://") {
            Some(path) => {
                clone::clone_local(std::path::Path::new(path), &dir, &opts, &mut HostReport)
            }
            None => clone::clone(&mut transport, &dir, &opts, &mut HostReport),
        };
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                if let Some(a) = transport.denied {
                    return Err(TaskError::Denied(Denial {
                        capability: "http".into(),
                        target: a,
                        layer: GrantLayer::Pipeline,
                    }));
                }
                return Err(TaskError::Failed(e));
            }
        };
        log(
            Level::Info,
            &format!(
                "cloned {url} at {} (protocol v{}, {} objects, {} files, {} symlinks)",
                out.commit, out.protocol, out.objects, out.checkout.files, out.checkout.symlinks
            ),
        );
        if !out.checkout.executables.is_empty() {
            log(
                Level::Warn,
                &format!(
                    "{} executable file(s) written without the executable bit: {}",
                    out.checkout.executables.len(),
                    out.checkout.executables.join(", ")
                ),
            );
        }
        Ok(vec![
            TaskResult {
                name: "commit".into(),
                value: out.commit.to_string(),
            },
            TaskResult {
                name: "url".into(),
                value: url,
            },
            TaskResult {
                name: "committer-date".into(),
                value: out.committer_date.to_string(),
            },
        ])
    }
}

capstan_plugin_sdk::export!(GitClone with_types_in capstan_plugin_sdk);

#[used]
#[unsafe(link_section = "capstan-manifest")]
static MANIFEST: [u8; include_bytes!("../capstan.toml").len()] = *include_bytes!("../capstan.toml");
