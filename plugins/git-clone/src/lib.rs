//! `git-clone`: clone a repository over git smart HTTP or SSH inside the
//! sandbox.
//!
//! The git protocol runs here, in the plugin; the host only carries HTTP to
//! the authorities the pipeline granted (and adds its credentials), or runs
//! upload-pack over SSH on a granted host (authenticating it, verifying its
//! host key). The
//! logic lives in plain modules with native unit tests: [`protocol`]
//! (smart HTTP v2 with v0 fallback), [`pack`] (index + object reads),
//! [`worktree`] (checkout + `.git`), [`clone`]; this file is the binding.

pub mod clone;
pub mod digest;
pub mod gitdir;
pub mod gitmodules;
pub mod idx;
pub mod local;
pub mod pack;
pub mod protocol;
pub mod refs;
pub mod refspec;
pub mod sparse;
pub mod ssh;
pub mod submodules;
pub mod update;
pub mod worktree;

use capstan_plugin_sdk::capstan::plugin::log::{Level, log, progress};
use capstan_plugin_sdk::capstan::plugin::ssh as host_ssh;
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

/// SSH remotes through the host's `ssh` capability: a session to the
/// granted host (authenticated by the host, host key verified), and
/// upload-pack started on it.
struct HostPipe {
    // Dropped first: the process, then its session.
    process: host_ssh::Process,
    _session: host_ssh::Session,
}

impl HostPipe {
    fn error(e: TaskError) -> String {
        match e {
            TaskError::Failed(m) | TaskError::InvalidParams(m) => m,
            other => format!("{other:?}"),
        }
    }
}

impl crate::ssh::Pipe for HostPipe {
    fn write(&mut self, data: &[u8]) -> Result<(), String> {
        self.process.write(data).map_err(Self::error)
    }
    fn close_stdin(&mut self) -> Result<(), String> {
        self.process.close_stdin().map_err(Self::error)
    }
    fn read(&mut self) -> Result<Vec<u8>, String> {
        self.process.read(1 << 20).map_err(Self::error)
    }
    fn finish(&mut self) -> Result<(i32, String), String> {
        let r = self.process.wait().map_err(Self::error)?;
        Ok((r.exit_code, r.stderr_tail))
    }
}

/// Opens http(s) remotes over wasi:http and SSH remotes over the `ssh`
/// capability; remembers a denial so the task fails as denied.
struct Remotes {
    http: WasiHttp,
    denied: Option<(&'static str, String)>,
}

impl protocol::Connect for Remotes {
    fn open<'a>(&'a mut self, url: &str) -> Result<Box<dyn protocol::Transport + 'a>, String> {
        let Some(remote) = crate::ssh::SshUrl::parse(url) else {
            return Ok(Box::new(protocol::SmartHttp {
                http: &mut self.http,
                url: url.to_string(),
            }));
        };
        let session = host_ssh::connect(&remote.host, remote.port, &remote.user).map_err(|e| {
            if let TaskError::Denied(d) = &e {
                self.denied = Some(("ssh", d.target.clone()));
            }
            format!("{url}: {}", HostPipe::error(e))
        })?;
        let env = [("GIT_PROTOCOL".to_string(), "version=2".to_string())];
        let process = session
            .start(&remote.upload_pack(), &env)
            .map_err(|e| format!("{url}: {}", HostPipe::error(e)))?;
        Ok(Box::new(crate::ssh::SshTransport::new(
            HostPipe {
                process,
                _session: session,
            },
            url,
        )))
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

    fn write_files(
        &mut self,
        root: &std::path::Path,
        files: &[clone::NewFile],
    ) -> Result<(), String> {
        use capstan_plugin_sdk::capstan::plugin::files;
        let dir = root.to_str().ok_or("non-UTF-8 path")?;
        let files: Vec<files::NewFile> = files
            .iter()
            .map(|f| files::NewFile {
                path: f.path.clone(),
                contents: f.contents.to_vec(),
                executable: f.executable,
            })
            .collect();
        files::write_files(dir, &files).map_err(|e| match e {
            TaskError::Failed(m) | TaskError::InvalidParams(m) => m,
            e => format!("{e:?}"),
        })
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
    if url.starts_with("git://") {
        return Some(format!(
            "`{url}`: the unauthenticated git:// protocol is not supported; use https:// or ssh://"
        ));
    }
    let known = ["http://", "https://", "file://"];
    if !known.iter().any(|k| url.starts_with(k)) && crate::ssh::SshUrl::parse(url).is_none() {
        return Some(format!(
            "`{url}`: not a repository URL this plugin clones (https://, ssh://, user@host:path, \
             or file:///workspace/repository/…)"
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
        let mut remotes = Remotes {
            http: WasiHttp { denied: None },
            denied: None,
        };
        let result = match url.strip_prefix("file://") {
            Some(path) => {
                clone::clone_local(std::path::Path::new(path), &dir, &opts, &mut HostReport)
            }
            None => clone::clone(&mut remotes, &dir, &opts, &mut HostReport),
        };
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                let denied = (remotes.http.denied.map(|a| ("http", a))).or(remotes.denied);
                if let Some((capability, target)) = denied {
                    return Err(TaskError::Denied(Denial {
                        capability: capability.into(),
                        target,
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
